#!/usr/bin/env bash
# Walks through lxc-snap on a throwaway busybox container:
# overlay clone -> change -> snapshot (twice, with comments) -> list ->
# restore an older snapshot as a new container -> start it and look inside.
#
# Usage: scripts/demo.sh [PATH-TO-lxc-snap]   (default target/release/lxc-snap)
#
# Everything lives in a temp dir with its own lxcpath and snapdir; the
# containers are stopped and the dir removed on exit, also after a failure.
# Needs root and LXC (apt-get install lxc busybox-static, or `make deps`).
set -euo pipefail

BIN=${1:-target/release/lxc-snap}

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: needs root (it creates and starts LXC containers): run it as root" >&2
    exit 1
fi
if [[ ! -x $BIN ]]; then
    echo "demo.sh: $BIN: no such executable (build it with 'make build')" >&2
    exit 1
fi
for tool in lxc-create lxc-copy lxc-start lxc-stop lxc-attach lxc-wait lxc-ls busybox; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "demo.sh: $tool not found (apt-get install lxc busybox-static, or 'make deps')" >&2
        exit 1
    fi
done

if [[ -t 1 ]]; then
    BOLD=$'\e[1m'
    RESET=$'\e[0m'
else
    BOLD=
    RESET=
fi

# Prints `+ command` (shell-quoted where needed), then runs it.
run() {
    local line="+" arg
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            line+=" $arg"
        else
            line+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s%s%s\n' "$BOLD" "$line" "$RESET"
    "$@"
}

say() {
    printf '\n# %s\n' "$*"
}

TMP=$(mktemp -d /tmp/lxc-snap-demo.XXXXXX)
LXCPATH=$TMP/lxc
SNAPDIR=$TMP/snaps

cleanup() {
    local rc=$?
    set +e
    local path c
    for path in "$LXCPATH" "$SNAPDIR"; do
        [[ -d $path ]] || continue
        for c in $(lxc-ls -P "$path" -1 --active 2>/dev/null); do
            lxc-stop -P "$path" -n "$c" -k
        done
    done
    # --one-file-system: never descend into anything still mounted below.
    rm -rf --one-file-system -- "$TMP"
    if [[ $rc -ne 0 ]]; then
        echo "demo.sh: failed (exit $rc); cleaned up $TMP" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir "$LXCPATH"
NETCONF=$TMP/net.conf
echo 'lxc.net.0.type = empty' >"$NETCONF"
COMMENT=$TMP/comment

snap() {
    run "$BIN" -P "$LXCPATH" --snapdir "$SNAPDIR" "$@"
}

start() {
    run lxc-start -P "$LXCPATH" -n "$1"
    lxc-wait -P "$LXCPATH" -n "$1" -s RUNNING -t 30
}

in_container() {
    local name=$1
    shift
    run lxc-attach -P "$LXCPATH" -n "$name" -- "$@"
}

say "a busybox base container and an overlay clone of it, mysql"
run lxc-create -P "$LXCPATH" -t busybox -n base -f "$NETCONF"
run lxc-copy -P "$LXCPATH" -s -B overlayfs -n base -N mysql

say "first round of changes inside mysql"
start mysql
in_container mysql sh -c 'mkdir -p /srv/db && echo "version 1: table doohickey" >/srv/db/schema'
run lxc-stop -P "$LXCPATH" -n mysql -k

say "snapshot with a comment from a file: mysql_0"
echo "Initial definition of table doohickey" >"$COMMENT"
snap -c "$COMMENT" mysql

say "second round of changes, snapshot with a comment on the command line: mysql_1"
start mysql
in_container mysql sh -c 'echo "version 2: table doohickey, column size" >/srv/db/schema'
run lxc-stop -P "$LXCPATH" -n mysql -k
snap snap -m "Added column size to doohickey" mysql

say "mysql moves on (not snapshotted)"
start mysql
in_container mysql sh -c 'echo "version 3: broken" >/srv/db/schema'
run lxc-stop -P "$LXCPATH" -n mysql -k

say "containers that have snapshots, and the snapshots of mysql"
snap -l
snap -l mysql

say "restore mysql_1 as a new container, mysql_tmp"
snap -r mysql_1 mysql_tmp

say "mysql_tmp has the files as they were in mysql_1"
start mysql_tmp
in_container mysql_tmp cat /srv/db/schema
in_container mysql_tmp hostname
run lxc-stop -P "$LXCPATH" -n mysql_tmp -k

say "done"
