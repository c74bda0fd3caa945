# lxc-snap: build, lint, test and demo.
#
#   make            build the release binary (target/release/lxc-snap)
#   make test       install missing system packages (as root), lint, check the
#                   man page, run every cargo test
#   make demo       walk through snapshot / list / restore on a throwaway
#                   busybox container (root)
#   make bench      benchmarks against lxc-snapshot, cp -a and rsync; writes
#                   BENCHMARKS.md (root; BENCH_QUICK=1 for a small tree)
#
# The system tests need root and LXC. LXC_SNAP_SKIP_SYSTEM_TESTS=1 skips them
# (each skipped test says so) and skips the package installation.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO ?= cargo
BIN := target/release/lxc-snap
MAN := man/lxc-snap.1

.PHONY: all build deps lint check-man check-root test demo bench bench-deps clean

all: build

build:
	$(CARGO) build --release

# Debian packages for the system tests: lxc (lxc-create, lxc-copy, lxc-start,
# lxc-attach, ...) and busybox-static (the busybox template's /bin/busybox),
# groff-base for check-man. Installed only when missing.
deps:
	@if [ "$${LXC_SNAP_SKIP_SYSTEM_TESTS:-}" = 1 ]; then \
	    echo "deps: LXC_SNAP_SKIP_SYSTEM_TESTS=1: not installing system packages"; \
	else \
	    pkgs=""; \
	    if ! command -v lxc-start >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then \
	        pkgs="lxc busybox-static"; \
	    fi; \
	    if ! command -v groff >/dev/null 2>&1; then pkgs="$$pkgs groff-base"; fi; \
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

clean:
	$(CARGO) clean
