#!/usr/bin/env bash
# Checks a built lxc-snap .deb on this machine, as `make test-package` runs it:
#
#   lintian reports no errors;
#   the package holds the same files as `make install DESTDIR=... PREFIX=/usr`
#   (plus Debian's copyright and changelog.gz), and `make uninstall` removes
#   them all again;
#   `dpkg -i` installs it: lxc-snap --version prints the package version,
#   man -w finds the page, the completion scripts are where the shells look
#   and load;
#   `dpkg --purge` removes every file again.
#
# Needs root (dpkg -i). Usage: scripts/test-package.sh dist/lxc-snap_V_ARCH.deb
set -euo pipefail

deb=${1:?usage: $0 PACKAGE.deb}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
    echo "test-package: FAILED: $*" >&2
    exit 1
}

[[ $(id -u) == 0 ]] || fail "dpkg -i needs root (or set LXC_SNAP_SKIP_SYSTEM_TESTS=1 to skip)"
[[ -f $deb ]] || fail "$deb not found (make deb builds it)"

version=$(dpkg-deb -f "$deb" Version)
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ $version == "$cargo_version" ]] ||
    fail "package version $version is not Cargo.toml's $cargo_version (debian/changelog)"
echo "test-package: $deb, version $version"

# --- lintian -----------------------------------------------------------------
echo "test-package: lintian $deb"
lintian_out=$(lintian --fail-on error "$deb" 2>&1) || {
    printf '%s\n' "$lintian_out" >&2
    fail "lintian reports errors"
}
[[ -z $lintian_out ]] || printf '%s\n' "$lintian_out"
errors=$(grep -c '^E: ' <<<"$lintian_out" || true)
echo "test-package: lintian: $errors errors, $(grep -c '^W: ' <<<"$lintian_out" || true) warnings"

# --- same files as make install ------------------------------------------------
tmp=$(mktemp -d /tmp/lxc-snap-test-package.XXXXXX)
cleanup() {
    rm -rf "$tmp"
    if dpkg-query -W -f='${Status}' lxc-snap 2>/dev/null | grep -q 'installed'; then
        if [[ ${keep_installed:-} != 1 ]]; then
            dpkg --purge lxc-snap >/dev/null || true
        fi
    fi
}
trap cleanup EXIT

# Files and symlinks, as ./usr/..., sorted.
package_files() {
    dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -v '/$' | sed 's|^\./|/|' | sort
}
make --no-print-directory install DESTDIR="$tmp/root" PREFIX=/usr >/dev/null
installed_files=$(cd "$tmp/root" && find . ! -type d | sed 's|^\./|/|' | sort)
debian_only="/usr/share/doc/lxc-snap/changelog.gz
/usr/share/doc/lxc-snap/copyright"
expected=$(sort <<<"$installed_files"$'\n'"$debian_only")
if [[ $(package_files) != "$expected" ]]; then
    diff <(echo "$expected") <(package_files) >&2 || true
    fail "the package's files (>) differ from make install's plus copyright and changelog.gz (<)"
fi
echo "test-package: the package holds make install's $(wc -l <<<"$installed_files") files" \
    "plus copyright and changelog.gz"
for f in /usr/bin/lxc-snap /usr/share/man/man1/lxc-snap.1.gz \
    /usr/share/bash-completion/completions/lxc-snap \
    /usr/share/zsh/vendor-completions/_lxc-snap \
    /usr/share/fish/vendor_completions.d/lxc-snap.fish \
    /usr/share/doc/lxc-snap/README.md /usr/share/doc/lxc-snap/CHANGELOG.md \
    /usr/share/doc/lxc-snap/SECURITY.md /usr/lib/systemd/system/lxc-snap-auto.service \
    /usr/lib/systemd/system/lxc-snap-auto.timer; do
    grep -qx "$f" <<<"$installed_files" || fail "make install did not install $f"
done
# The man page make install compresses is the one dh compresses.
cmp -s "$tmp/root/usr/share/man/man1/lxc-snap.1.gz" \
    <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/man/man1/lxc-snap.1.gz) ||
    fail "make install's lxc-snap.1.gz differs from the package's"
make --no-print-directory uninstall DESTDIR="$tmp/root" PREFIX=/usr >/dev/null
left=$(cd "$tmp/root" && find . ! -type d)
[[ -z $left ]] || fail "make uninstall left: $left"
echo "test-package: make uninstall removed every file"

# --- install, check, purge ---------------------------------------------------
if dpkg-query -W -f='${Status}' lxc-snap 2>/dev/null | grep -q 'installed'; then
    echo "test-package: note: lxc-snap was already installed; it is replaced and purged"
fi
dpkg -i "$deb"

# The timer is there, runs the installed binary, and is not enabled.
grep -qx 'ExecStart=/usr/bin/lxc-snap -q auto' /usr/lib/systemd/system/lxc-snap-auto.service ||
    fail "lxc-snap-auto.service does not run /usr/bin/lxc-snap -q auto"
[[ ! -e /etc/systemd/system/timers.target.wants/lxc-snap-auto.timer ]] ||
    fail "installing the package enabled lxc-snap-auto.timer"
echo "test-package: lxc-snap-auto.timer installed, not enabled"

out=$(/usr/bin/lxc-snap --version)
[[ $out == "lxc-snap $version" ]] || fail "lxc-snap --version printed '$out', not 'lxc-snap $version'"
echo "test-package: lxc-snap --version: $out"

page=$(man -w lxc-snap) || fail "man -w lxc-snap finds no page"
[[ $page == /usr/share/man/man1/lxc-snap.1.gz ]] || fail "man -w lxc-snap: $page"
echo "test-package: man -w lxc-snap: $page"
# The page renders without warnings from man itself too.
warnings=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) || true
[[ -z $warnings ]] || fail "man reports: $warnings"

bash_completion=/usr/share/bash-completion/completions/lxc-snap
[[ -s $bash_completion ]] || fail "$bash_completion is missing or empty"
cmp -s "$bash_completion" <(/usr/bin/lxc-snap completions bash) ||
    fail "$bash_completion is not what lxc-snap completions bash prints"
got=$(bash -c "source $bash_completion
    COMP_WORDS=(lxc-snap rest); COMP_CWORD=1
    _lxc_snap lxc-snap rest lxc-snap; echo \"\${COMPREPLY[*]}\"")
[[ $got == restore ]] || fail "bash completion of 'lxc-snap rest' gave '$got'"
echo "test-package: $bash_completion completes 'lxc-snap rest' to '$got'"
for shell in zsh fish; do
    case $shell in
    zsh) f=/usr/share/zsh/vendor-completions/_lxc-snap ;;
    fish) f=/usr/share/fish/vendor_completions.d/lxc-snap.fish ;;
    esac
    [[ -s $f ]] || fail "$f is missing or empty"
    if command -v "$shell" >/dev/null; then
        "$shell" -n "$f" || fail "$shell -n $f"
    fi
done

dpkg --purge lxc-snap
for f in $installed_files; do
    [[ ! -e $f ]] || fail "$f is still there after dpkg --purge"
done
[[ ! -e /usr/share/doc/lxc-snap ]] || fail "/usr/share/doc/lxc-snap is still there after purge"
echo "test-package: dpkg --purge removed every file"
echo "test-package: OK"
