# lxc-snap: build, install, package, lint, test and demo.
#
#   make            build the release binary (target/release/lxc-snap) and
#                   the completion scripts (target/completions/)
#   make install    install them, the man page and the docs under
#                   $(DESTDIR)$(PREFIX) (PREFIX=/usr/local); make uninstall
#   make deb        build the Debian package into dist/ (root, or debhelper
#                   already installed)
#   make test       install missing system packages (as root), lint, check the
#                   man page, run every cargo test, then test-package
#   make test-package  build the .deb, check it with lintian, install it,
#                   check what it installed, purge it (root)
#   make demo       walk through snapshot / list / restore on a throwaway
#                   busybox container (root)
#   make bench      benchmarks against lxc-snapshot, cp -a and rsync; writes
#                   BENCHMARKS.md (root; BENCH_QUICK=1 for a small tree)
#   make fuzz       runs each fuzz target (fuzz/) for FUZZ_SECONDS (600)
#                   with cargo fuzz; not part of make test
#
# The system tests need root and LXC. LXC_SNAP_SKIP_SYSTEM_TESTS=1 skips them
# (each skipped test says so), the package test and the package installation.
# CARGO_TARGET_DIR, when set, replaces target/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO ?= cargo
# rustup's cargo is in ~/.cargo/bin, which a root shell, sudo or
# dpkg-buildpackage may not have in PATH.
ifeq ($(shell command -v $(CARGO) 2>/dev/null),)
ifneq ($(wildcard $(HOME)/.cargo/bin/cargo),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif
endif

TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/lxc-snap
COMPLETIONS := $(TARGET_DIR)/completions
MAN := man/lxc-snap.1
SOURCES := Cargo.toml Cargo.lock $(shell find src -name '*.rs')
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

PREFIX ?= /usr/local
DESTDIR ?=
bindir := $(PREFIX)/bin
datadir := $(PREFIX)/share
man1dir := $(datadir)/man/man1
docdir := $(datadir)/doc/lxc-snap
unitdir := $(PREFIX)/lib/systemd/system
bashcompdir := $(datadir)/bash-completion/completions
zshcompdir := $(datadir)/zsh/vendor-completions
fishcompdir := $(datadir)/fish/vendor_completions.d

.PHONY: all build completions install install-bin install-man install-systemd \
	install-completions install-doc uninstall deb deb-deps test-package \
	deps lint check-man check-root test demo bench bench-deps fuzz clean

all: build completions

build:
	$(CARGO) build --release --locked

# A file target as well, so that `sudo make install` after `make` does not
# need cargo (or rebuild as root) when nothing changed.
$(BIN): $(SOURCES)
	$(CARGO) build --release --locked
	@touch $@

# Generated from the binary's own clap definition: they cannot drift.
completions: $(COMPLETIONS)/lxc-snap.bash $(COMPLETIONS)/lxc-snap.zsh $(COMPLETIONS)/lxc-snap.fish

$(COMPLETIONS)/lxc-snap.%: $(BIN)
	@mkdir -p $(COMPLETIONS)
	$(BIN) completions $* > $@.tmp
	@mv $@.tmp $@

# The Debian package installs the same files under /usr (debian/rules runs
# these targets, except install-man: dh_installman compresses the page).
install: install-bin install-man install-completions install-doc install-systemd

install-bin: $(BIN)
	install -D -m 0755 $(BIN) $(DESTDIR)$(bindir)/lxc-snap

install-man:
	install -d -m 0755 $(DESTDIR)$(man1dir)
	gzip -9n < $(MAN) > $(DESTDIR)$(man1dir)/lxc-snap.1.gz
	chmod 0644 $(DESTDIR)$(man1dir)/lxc-snap.1.gz

install-completions: completions
	install -D -m 0644 $(COMPLETIONS)/lxc-snap.bash $(DESTDIR)$(bashcompdir)/lxc-snap
	install -D -m 0644 $(COMPLETIONS)/lxc-snap.zsh $(DESTDIR)$(zshcompdir)/_lxc-snap
	install -D -m 0644 $(COMPLETIONS)/lxc-snap.fish $(DESTDIR)$(fishcompdir)/lxc-snap.fish

# The timer that runs `lxc-snap auto`, disabled: systemctl enable --now
# lxc-snap-auto.timer turns it on.
install-systemd:
	install -d -m 0755 $(DESTDIR)$(unitdir)
	sed 's|@BINDIR@|$(bindir)|g' systemd/lxc-snap-auto.service > $(DESTDIR)$(unitdir)/lxc-snap-auto.service
	install -m 0644 systemd/lxc-snap-auto.timer $(DESTDIR)$(unitdir)/lxc-snap-auto.timer
	chmod 0644 $(DESTDIR)$(unitdir)/lxc-snap-auto.service

install-doc:
	install -D -m 0644 README.md $(DESTDIR)$(docdir)/README.md
	install -D -m 0644 CHANGELOG.md $(DESTDIR)$(docdir)/CHANGELOG.md
	install -D -m 0644 SECURITY.md $(DESTDIR)$(docdir)/SECURITY.md

# Removes exactly what install installed, and the doc directory if empty.
uninstall:
	rm -f $(DESTDIR)$(bindir)/lxc-snap \
	    $(DESTDIR)$(man1dir)/lxc-snap.1.gz \
	    $(DESTDIR)$(bashcompdir)/lxc-snap \
	    $(DESTDIR)$(zshcompdir)/_lxc-snap \
	    $(DESTDIR)$(fishcompdir)/lxc-snap.fish \
	    $(DESTDIR)$(docdir)/README.md \
	    $(DESTDIR)$(docdir)/CHANGELOG.md \
	    $(DESTDIR)$(docdir)/SECURITY.md \
	    $(DESTDIR)$(unitdir)/lxc-snap-auto.service \
	    $(DESTDIR)$(unitdir)/lxc-snap-auto.timer
	if [ -d $(DESTDIR)$(docdir) ]; then rmdir --ignore-fail-on-non-empty $(DESTDIR)$(docdir); fi

# Debian's build tools, installed only when missing (and only as root).
deb-deps:
	@pkgs=""; \
	command -v dpkg-buildpackage >/dev/null 2>&1 || pkgs="dpkg-dev"; \
	command -v dh >/dev/null 2>&1 || pkgs="$$pkgs debhelper"; \
	command -v cc >/dev/null 2>&1 || pkgs="$$pkgs build-essential"; \
	if [ "$${LXC_SNAP_LINTIAN:-}" = 1 ]; then \
	    command -v lintian >/dev/null 2>&1 || pkgs="$$pkgs lintian"; \
	fi; \
	pkgs="$${pkgs# }"; \
	if [ -n "$$pkgs" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	        echo "deb: missing packages: $$pkgs (run as root, or apt-get install $$pkgs)" >&2; \
	        exit 1; \
	    fi; \
	    echo "deb: installing $$pkgs"; \
	    apt-get update; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkgs; \
	fi

# dpkg-buildpackage writes the package next to the source tree; it is moved
# to dist/lxc-snap_VERSION_ARCH.deb (with its .buildinfo and .changes).
deb: deb-deps
	dpkg-buildpackage -us -uc -b
	@arch=$$(dpkg --print-architecture); \
	mkdir -p dist; \
	for f in ../lxc-snap_$(VERSION)_$$arch.deb ../lxc-snap_$(VERSION)_$$arch.buildinfo \
	         ../lxc-snap_$(VERSION)_$$arch.changes; do \
	    mv -f "$$f" dist/; \
	done; \
	echo "deb: dist/lxc-snap_$(VERSION)_$$arch.deb"

# Builds the package, checks it with lintian, installs it with dpkg, checks
# what it installed against `make install`, and purges it. Needs root.
test-package:
	@if [ "$${LXC_SNAP_SKIP_SYSTEM_TESTS:-}" = 1 ]; then \
	    echo "SKIPPED test-package: LXC_SNAP_SKIP_SYSTEM_TESTS=1"; \
	else \
	    $(MAKE) --no-print-directory deb LXC_SNAP_LINTIAN=1 && \
	    bash scripts/test-package.sh dist/lxc-snap_$(VERSION)_$$(dpkg --print-architecture).deb; \
	fi

# Debian packages for the system tests: lxc (lxc-create, lxc-copy, lxc-start,
# lxc-attach, ...) and busybox-static (the busybox template's /bin/busybox),
# groff-base for check-man, xfsprogs and btrfs-progs for the copier tests on
# filesystems with reflinks, skopeo, umoci and docker-registry (the CNCF
# distribution registry) for the OCI tests, zstd for tar to read streams,
# python3 to craft hostile images. Installed only when missing.
deps:
	@if [ "$${LXC_SNAP_SKIP_SYSTEM_TESTS:-}" = 1 ]; then \
	    echo "deps: LXC_SNAP_SKIP_SYSTEM_TESTS=1: not installing system packages"; \
	else \
	    pkgs=""; \
	    if ! command -v lxc-start >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then \
	        pkgs="lxc busybox-static"; \
	    fi; \
	    if ! command -v groff >/dev/null 2>&1; then pkgs="$$pkgs groff-base"; fi; \
	    if ! command -v mkfs.xfs >/dev/null 2>&1; then pkgs="$$pkgs xfsprogs"; fi; \
	    if ! command -v mkfs.btrfs >/dev/null 2>&1; then pkgs="$$pkgs btrfs-progs"; fi; \
	    for tool in skopeo umoci docker-registry zstd python3; do \
	        command -v $$tool >/dev/null 2>&1 || pkgs="$$pkgs $$tool"; \
	    done; \
	    pkgs="$${pkgs# }"; \
	    if [ -n "$$pkgs" ]; then \
	        if [ "$$(id -u)" != 0 ]; then \
	            echo "deps: missing packages: $$pkgs" >&2; \
	            echo "deps: run 'make deps' as root (it runs apt-get install $$pkgs)," \
	                 "or set LXC_SNAP_SKIP_SYSTEM_TESTS=1 to skip the system tests" >&2; \
	            exit 1; \
	        fi; \
	        echo "deps: installing $$pkgs"; \
	        apt-get update; \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y $$pkgs; \
	    fi; \
	fi
	@if ! $(CARGO) --version >/dev/null 2>&1; then \
	    echo "deps: $(CARGO) not found: install Rust (cargo)" >&2; exit 1; \
	fi
	@if ! $(CARGO) fmt --version >/dev/null 2>&1 || ! $(CARGO) clippy --version >/dev/null 2>&1; then \
	    if command -v rustup >/dev/null 2>&1; then \
	        rustup component add rustfmt clippy; \
	    else \
	        echo "deps: cargo fmt and cargo clippy are needed for 'make lint'" \
	             "(install rustfmt and clippy for your Rust toolchain)" >&2; \
	        exit 1; \
	    fi; \
	fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# groff must print nothing: any warning fails the check.
check-man:
	@command -v groff >/dev/null 2>&1 || \
	    { echo "check-man: groff not found (apt-get install groff-base)" >&2; exit 1; }
	@if ! out=$$(groff -man -ww -z $(MAN) 2>&1); then \
	    printf '%s\n' "$$out" >&2; echo "check-man: groff failed on $(MAN)" >&2; exit 1; \
	fi; \
	if [ -n "$$out" ]; then \
	    printf '%s\n' "$$out" >&2; echo "check-man: groff warnings in $(MAN)" >&2; exit 1; \
	fi; \
	echo "check-man: $(MAN): no groff warnings"

# Not root (and not skipping) is a failure, not a silent skip.
check-root:
	@if [ "$${LXC_SNAP_SKIP_SYSTEM_TESTS:-}" != 1 ] && [ "$$(id -u)" != 0 ]; then \
	    echo "test: the system tests need root: run 'make test' as root," \
	         "or set LXC_SNAP_SKIP_SYSTEM_TESTS=1 to skip them" >&2; \
	    exit 1; \
	fi

test: check-root deps
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory check-man
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	$(MAKE) --no-print-directory test-package

demo: deps build
	bash scripts/demo.sh $(BIN)

# Benchmarks: bench/run.sh builds a throwaway lxcpath under /var/tmp, fills
# an overlay clone with the gen_tree example's tree and times lxc-snap
# against lxc-snapshot, cp -a and rsync with hyperfine, then writes
# BENCHMARKS.md. Knobs: BENCH_QUICK=1, BENCH_ENTRIES, BENCH_BYTES, BENCH_SEED,
# BENCH_RUNS, BENCH_PHASES (see bench/run.sh). Not part of `make test`.
bench: bench-deps
	$(CARGO) build --release
	$(CARGO) build --release --example gen_tree
	@td=$$($(CARGO) metadata --format-version 1 --no-deps | jq -r .target_directory); \
	bash bench/run.sh --bin "$$td/release/lxc-snap" --gen "$$td/release/examples/gen_tree"

# What the benchmarks run, installed only when missing (needs root anyway).
bench-deps:
	@if [ "$$(id -u)" != 0 ]; then \
	    echo "bench: needs root (it creates containers and mounts an XFS image): run 'make bench' as root" >&2; \
	    exit 1; \
	fi
	@pkgs=""; \
	command -v hyperfine >/dev/null 2>&1 || pkgs="$$pkgs hyperfine"; \
	command -v lxc-snapshot >/dev/null 2>&1 || pkgs="$$pkgs lxc"; \
	command -v busybox >/dev/null 2>&1 || pkgs="$$pkgs busybox-static"; \
	command -v mkfs.xfs >/dev/null 2>&1 || pkgs="$$pkgs xfsprogs"; \
	command -v rsync >/dev/null 2>&1 || pkgs="$$pkgs rsync"; \
	command -v jq >/dev/null 2>&1 || pkgs="$$pkgs jq"; \
	command -v python3 >/dev/null 2>&1 || pkgs="$$pkgs python3"; \
	[ -x /usr/bin/time ] || pkgs="$$pkgs time"; \
	pkgs="$${pkgs# }"; \
	if [ -n "$$pkgs" ]; then \
	    echo "bench: installing $$pkgs"; \
	    apt-get update; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y $$pkgs; \
	fi

# Coverage-guided fuzzing of the parsers that read what users and
# containers write: config reader/rewriter, names, prune durations,
# metadata. cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the
# one stable toolchain build them. New inputs go to fuzz/corpus/ (not
# kept); a crash stops the run and is left in fuzz/artifacts/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := config names durations metadata
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	    mkdir -p corpus/$$t; \
	    RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t corpus/$$t seeds/$$t -- \
	        -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean:
	$(CARGO) clean
	rm -rf dist
