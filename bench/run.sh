#!/usr/bin/env bash
# The lxc-snap benchmarks; `make bench` runs this after building.
#
#   bench/run.sh [--bin PATH] [--gen PATH] [--out FILE]
#
# --bin: the lxc-snap to measure (default target/release/lxc-snap), --gen:
# the gen_tree example (default target/release/examples/gen_tree), --out:
# the report (default BENCHMARKS.md in the repository).
#
# In a throwaway directory under $BENCH_TMPDIR (default /var/tmp) it makes a
# fresh ext4 filesystem (mkfs.ext4 defaults, so with a journal) in an image
# file, loop-mounts it, and there makes an lxcpath with a busybox base
# container and an overlay clone `bench`, writes a reproducible tree into
# the clone's delta (gen_tree), and times with hyperfine. BENCH_FS=here
# uses the filesystem of BENCH_TMPDIR itself instead. Each comparison runs side by side in
# one hyperfine invocation, BENCH_ROUNDS times with the order of the
# commands rotated (whoever goes first or last gets no lasting advantage on
# a machine whose state drifts); the first round starts with one warmup run
# per command. Every run does a complete copy: the --prepare command
# removes the previous run's output and syncs.
#
#   full         lxc-snap snap [--full] vs lxc-snapshot vs cp -a vs rsync -aHXS
#                (and `cp -a; sync` with BENCH_CP_SYNC=1)
#   restore      lxc-snap -r vs lxc-snapshot -r
#   incremental  one file changed after a full snapshot: lxc-snap snap vs
#                lxc-snapshot, and how much the snapdir grows
#   list         lxc-snap -l over BENCH_LIST_SNAPSHOTS snapshots
#   lookup       lxc-snap cat and ls -l of the deepest file of the tree in a
#                layer over a whole snapshot of it (one path looked up
#                through snapshot, anchor and base)
#   freeze       how long `snap --freeze` keeps the running container frozen:
#                one file changed since a whole snapshot (a layer), and the
#                container's first snapshot (the whole tree copied frozen)
#   clone        lxc-snap clone of the whole snapshot of the tree: one clone,
#                and 20 in one command; rebuild of one (stopped) clone onto
#                it; with BENCH_CLONE_BIG=1 (the default) one clone of a
#                snapshot of a tree of 10 times the entries
#   memory       peak RSS of one full snapshot (/usr/bin/time -v), of the
#                default tree and of one with half the entries
#   reflink      the full comparison on an XFS image with reflinks (loop mount)
#
# Then it writes the report (bench/report.py) with the machine, filesystem,
# tree, every median/min/max and the ratios against the project's targets.
# Raw results (hyperfine JSON, gen_tree summaries) stay in BENCH_RESULTS
# (default target/bench-results).
#
# Knobs (environment):
#   BENCH_ENTRIES=50000  BENCH_BYTES=650M  BENCH_SEED=1   the tree
#   BENCH_ROUNDS=3       hyperfine invocations per comparison, order rotated
#   BENCH_RUNS=1         timed runs per command in each round
#   BENCH_CP_SYNC=1      also time `cp -a; sync` in the full comparison
#   BENCH_LIST_SNAPSHOTS=1000  BENCH_LIST_RUNS=30
#   BENCH_QUICK=1        small tree (5,000 entries, 65 MiB), 2 runs a round,
#                        unless set explicitly
#   BENCH_PHASES="full restore incremental list lookup freeze clone memory reflink"  a subset
#   BENCH_CLONE_RUNS=10  runs of each clone and rebuild command
#   BENCH_CLONE_BIG=1|0  also clone a snapshot of a 10x larger tree
#   BENCH_TMPDIR=/var/tmp  BENCH_XFS_SIZE (default max(4G, 5 x tree))
#   BENCH_FS=image|here  a fresh ext4 image (default) or BENCH_TMPDIR's
#                        filesystem as it is
#   BENCH_EXT4_SIZE      the ext4 image (default max(8G, 12 x tree))
#   BENCH_OUT            the report (default BENCHMARKS.md; also --out)
#   BENCH_KEEP=1         keep the throwaway directory (and the XFS image
#                        unmounted) for a look afterwards
#   BENCH_DEFER_DELETE=1|0  move each run's output aside and delete it all
#                        at the end (1), or delete it between runs (0);
#                        by default 0 on the ext4 image, and with
#                        BENCH_FS=here 1 when the disk has room for it
#
# The default run takes about 10 minutes on a 2-CPU VM (one copy of the
# default tree: 2-5 s) and, while it runs, keeps every run's output under
# BENCH_TMPDIR: about 30 GiB (see BENCH_DEFER_DELETE). BENCH_ROUNDS and
# BENCH_RUNS scale both.
#
# Why a fresh image: a long-used filesystem times its own state (free
# space fragmentation, and on ext4 without a journal, as the root
# filesystem of some VMs, an inode allocator that skips inodes freed in the
# last minute or more, so creating 50,000 files right after deleting 50,000
# costs 10-20x what it costs otherwise). Why defer, with BENCH_FS=here:
# deleting the previous output just before each run would time that, not
# the copy.
#
# Internal: `bench/run.sh --reset WHAT ARGS...` is what hyperfine's
# --prepare/--cleanup commands call to remove a run's output.
#
# Needs root, LXC, busybox-static, hyperfine, rsync, jq, python3, xfsprogs
# and GNU time (`make bench` installs the missing ones). Never timed by
# `make test`.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SELF")")

# --reset: remove one kind of output, then sync so the next run starts
# without dirty pages. Called by hyperfine, between runs. With
# BENCH_TRASH_DIR set (and on its filesystem) outputs are moved there
# instead of deleted; see BENCH_DEFER_DELETE above.
if [[ ${1:-} == --reset ]]; then
    shift
    what=$1
    shift
    trash=${BENCH_TRASH_DIR:-}
    # True when PATH can be moved into the trash (same filesystem).
    to_trash() { # PATH
        [[ -n $trash && -d $trash && -e $1 ]] &&
            [[ $(stat -c %d "$trash") == $(stat -c %d "$1") ]]
    }
    discard() { # PATH
        if to_trash "$1"; then
            mv -- "$1" "$(mktemp -d "$trash/x.XXXXXX")/"
        else
            rm -rf --one-file-system -- "$1"
        fi
    }
    case $what in
        lxc-snap) # BIN LXCPATH SNAPDIR NAME KEEP: remove NAME_N for N > KEEP
            bin=$1 lxcpath=$2 snapdir=$3 name=$4 keep=$5
            fs=$snapdir
            victims=()
            for d in "$snapdir/${name}"_*; do
                n=${d##*_}
                if [[ -d $d && $n =~ ^[0-9]+$ ]] && ((n > keep)); then
                    victims+=("${name}_$n")
                fi
            done
            if ((${#victims[@]} > 0)); then
                if to_trash "$snapdir"; then
                    for v in "${victims[@]}"; do
                        discard "$snapdir/$v"
                    done
                else
                    "$bin" -P "$lxcpath" --snapdir "$snapdir" -q delete "${victims[@]}"
                fi
            fi
            ;;
        lxc-snapshot) # LXCPATH NAME KEEP: remove snapN for N > KEEP
            lxcpath=$1 name=$2 keep=$3
            fs=$lxcpath
            for d in "$lxcpath/$name/snaps"/snap*; do
                n=${d##*/snap}
                if [[ -d $d && $n =~ ^[0-9]+$ ]] && ((n > keep)); then
                    if to_trash "$d"; then
                        discard "$d"
                    else
                        lxc-snapshot -P "$lxcpath" -n "$name" -d "snap$n"
                    fi
                fi
            done
            ;;
        container) # LXCPATH NAME
            fs=$1
            if [[ -e $1/$2 ]]; then
                if to_trash "$1/$2"; then
                    discard "$1/$2"
                else
                    lxc-destroy -P "$1" -n "$2" >/dev/null
                fi
            fi
            ;;
        clones) # LXCPATH PREFIX N: lxc-destroy PREFIX1..PREFIXN (unregistering them)
            fs=$1
            for ((i = 1; i <= $3; i++)); do
                if [[ -e $1/$2$i ]]; then
                    lxc-destroy -P "$1" -n "$2$i" >/dev/null
                fi
            done
            ;;
        dir) # PATH
            fs=$(dirname "$1")
            if [[ -e $1 ]]; then
                discard "$1"
            fi
            ;;
        *)
            echo "run.sh: --reset: unknown kind $what" >&2
            exit 2
            ;;
    esac
    while [[ ! -e $fs ]]; do
        fs=$(dirname "$fs")
    done
    sync -f "$fs"
    exit 0
fi

BIN=$REPO/target/release/lxc-snap
GEN=$REPO/target/release/examples/gen_tree
OUT=${BENCH_OUT:-$REPO/BENCHMARKS.md}
while (($# > 0)); do
    case $1 in
        --bin) BIN=$2; shift 2 ;;
        --gen) GEN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
BIN=$(readlink -f "$BIN")
GEN=$(readlink -f "$GEN")
OUT=$(readlink -m "$OUT")

if [[ ${BENCH_QUICK:-} == 1 ]]; then
    : "${BENCH_ENTRIES:=5000}" "${BENCH_BYTES:=65M}" "${BENCH_RUNS:=2}" "${BENCH_LIST_RUNS:=20}"
fi
ENTRIES=${BENCH_ENTRIES:-50000}
BYTES=${BENCH_BYTES:-650M}
SEED=${BENCH_SEED:-1}
ROUNDS=${BENCH_ROUNDS:-3}
RUNS=${BENCH_RUNS:-1}
LIST_SNAPSHOTS=${BENCH_LIST_SNAPSHOTS:-1000}
LIST_RUNS=${BENCH_LIST_RUNS:-30}
PHASES=${BENCH_PHASES:-full restore incremental list lookup freeze clone memory reflink}
TMPBASE=${BENCH_TMPDIR:-/var/tmp}
RESULTS=${BENCH_RESULTS:-$REPO/target/bench-results}

die() {
    echo "run.sh: $*" >&2
    exit 1
}
say() {
    printf '\n== %s\n' "$*"
}
# Shell-quotes a command line for hyperfine (which runs it with sh -c).
q() {
    local out
    printf -v out '%q ' "$@"
    printf '%s' "${out% }"
}

[[ $(id -u) -eq 0 ]] || die "needs root (it creates containers and mounts an XFS image): run it as root"
[[ -x $BIN ]] || die "$BIN: no such executable (make build)"
[[ -x $GEN ]] || die "$GEN: no such executable (cargo build --release --example gen_tree)"
for tool in hyperfine lxc-create lxc-copy lxc-snapshot lxc-destroy rsync jq python3 \
    mkfs.xfs xfs_info losetup findmnt busybox; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (make bench installs it)"
done
command -v mkfs.ext4 >/dev/null 2>&1 || die "mkfs.ext4 not found (apt-get install e2fsprogs)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"
for p in $PHASES; do
    case $p in
        full | restore | incremental | list | lookup | freeze | clone | memory | reflink) ;;
        *) die "BENCH_PHASES: unknown phase $p" ;;
    esac
done
# The tree's plan; fails early on a bad size, before anything is created.
TREE_APPARENT=$("$GEN" --dry-run --seed "$SEED" --entries "$ENTRIES" --bytes "$BYTES" /nonexistent |
    jq .apparent_bytes)

# --full (an explicit full copy) where this lxc-snap has it; without it a
# default snapshot is a full copy anyway.
FULL=()
snap_help=$("$BIN" snap --help 2>&1 || true)
if grep -q -- --full <<<"$snap_help"; then
    FULL=(--full)
fi

mkdir -p "$TMPBASE" "$RESULTS"
W=$(mktemp -d "$TMPBASE/lxc-snap-bench.XXXXXX")
rm -f "$RESULTS"/*.json "$RESULTS"/*.txt "$RESULTS"/*.status
XFS_IMG=$W/xfs.img
XFS_MNT=$W/xfs
BIG_IMG=$W/big.img
BIG_MNT=$W/big
EXT4_IMG=$W/ext4.img
EXT4_MNT=$W/ext4
FS_MODE=${BENCH_FS:-image}
case $FS_MODE in
    image | here) ;;
    *) die "BENCH_FS: image or here, not $FS_MODE" ;;
esac

# Unmounts MOUNT and detaches the loop device of IMAGE, if any.
detach_image() { # IMAGE MOUNT
    if mountpoint -q "$2" 2>/dev/null; then
        umount "$2" || umount -l "$2" || true
    fi
    if [[ -e $1 ]]; then
        local dev
        for dev in $(losetup -j "$1" -O NAME -n 2>/dev/null); do
            losetup -d "$dev" || true
        done
    fi
}
detach_xfs() {
    detach_image "$XFS_IMG" "$XFS_MNT"
}
# The 10x tree's filesystem, its clones destroyed first.
stop_big() {
    if mountpoint -q "$BIG_MNT" 2>/dev/null; then
        bash "$SELF" --reset clones "$BIG_MNT/lxc" bigclone 1 || true
    fi
    detach_image "$BIG_IMG" "$BIG_MNT"
}

# A fresh filesystem made by MKFS... in an image of SIZE bytes, mounted
# on MOUNT. The image is sparse, its blocks reserved on the disk when the
# filesystem can (fallocate), so writing into it does not time the disk's
# own allocation.
new_image() { # IMAGE MOUNT SIZE MKFS...
    local image=$1 mount=$2 size=$3
    shift 3
    fallocate -l "$size" "$image" 2>/dev/null || truncate -s "$size" "$image"
    "$@" "$image"
    mkdir -p "$mount"
    mount -o loop "$image" "$mount"
}

# TERM to PID and every process below it (listed first, then signalled).
kill_tree() { # PID
    local pids=("$1") i=0
    while ((i < ${#pids[@]})); do
        # shellcheck disable=SC2207
        pids+=($(pgrep -P "${pids[i]}"))
        i=$((i + 1))
    done
    kill -TERM "${pids[@]}" 2>/dev/null
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # Stop the phase still running (and its hyperfine) before unmounting.
    if [[ -n ${PHASE_PID:-} ]]; then
        kill_tree "$PHASE_PID"
        wait "$PHASE_PID" 2>/dev/null
    fi
    stop_big
    detach_xfs
    detach_image "$EXT4_IMG" "$EXT4_MNT"
    if [[ ${BENCH_KEEP:-} == 1 ]]; then
        echo "run.sh: kept $W" >&2
    else
        rm -rf --one-file-system -- "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "lxc-snap: $BIN ($("$BIN" --version))${FULL:+, full snapshots with ${FULL[*]}}"
echo "work dir: $W; results: $RESULTS"
echo "tree: seed $SEED, $ENTRIES entries, $BYTES; $ROUNDS rounds of $RUNS runs per command"

# Metadata for the report.
git_commit=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git_dirty=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
jq -n \
    --arg version "$("$BIN" --version)" \
    --arg bin "$BIN" \
    --arg bin_sha256 "$(sha256sum "$BIN" | cut -c1-16)" \
    --arg bin_mtime "$(date -r "$BIN" '+%Y-%m-%d %H:%M:%S %z')" \
    --arg commit "$git_commit" \
    --arg dirty "$git_dirty" \
    --arg branch "$(git -C "$REPO" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)" \
    --arg full_flag "${FULL[*]:-}" \
    --arg date "$(date '+%Y-%m-%d %H:%M:%S %z')" \
    --arg nproc "$(nproc)" \
    --arg cpu "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    --arg mem_kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" \
    --arg kernel "$(uname -r)" \
    --arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" \
    --arg lxc "$(lxc-create --version)" \
    --arg hyperfine "$(hyperfine --version)" \
    --arg rsync "$(rsync --version | sed -n 1p)" \
    --arg cp "$(cp --version | sed -n 1p)" \
    --arg loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --arg fs "$(findmnt -n -T "$W" -o SOURCE,FSTYPE,OPTIONS)" \
    --arg tmpdir "$TMPBASE" \
    --arg entries "$ENTRIES" --arg bytes "$BYTES" --arg seed "$SEED" --arg runs "$RUNS" --arg rounds "$ROUNDS" \
    --arg list_snapshots "$LIST_SNAPSHOTS" --arg list_runs "$LIST_RUNS" \
    --arg quick "${BENCH_QUICK:-}" --arg phases "$PHASES" --arg cp_sync "${BENCH_CP_SYNC:-}" \
    '$ARGS.named' >"$RESULTS/meta.json"

# One busybox base and an overlay clone of it in LXCPATH; the tree goes
# into the clone's delta. Prints the gen_tree summary to FILE.
make_lab() { # LXCPATH CLONE ENTRIES SUMMARY-FILE
    local lxcpath=$1 clone=$2 entries=$3 summary=$4
    mkdir -p "$lxcpath"
    if [[ ! -d $lxcpath/base ]]; then
        printf 'lxc.net.0.type = empty\n' >"$W/net.conf"
        lxc-create -P "$lxcpath" -t busybox -n base -f "$W/net.conf" >/dev/null
    fi
    lxc-copy -P "$lxcpath" -s -B overlayfs -n base -N "$clone"
    local delta=$lxcpath/$clone/overlay/delta
    [[ -d $delta ]] || die "lxc-copy made no $delta"
    "$GEN" --seed "$SEED" --entries "$entries" --bytes "$BYTES" "$delta" >"$summary"
    # The same tree as du sees it, hard links once.
    local du_bytes du_apparent
    du_bytes=$(du -sB1 "$delta" | cut -f1)
    du_apparent=$(du -sB1 --apparent-size "$delta" | cut -f1)
    jq --arg du "$du_bytes" --arg apparent "$du_apparent" \
        '. + {du_bytes: ($du | tonumber), du_apparent_bytes: ($apparent | tonumber)}' \
        "$summary" >"$summary.tmp"
    mv "$summary.tmp" "$summary"
    sync -f "$lxcpath"
}

# The commands of one comparison: name, prepare command, command line.
CMD_NAMES=()
CMD_PREPS=()
CMD_LINES=()
add_cmd() { # NAME PREPARE COMMAND
    CMD_NAMES+=("$1")
    CMD_PREPS+=("$2")
    CMD_LINES+=("$3")
}

# Runs the commands added with add_cmd side by side, ROUNDS times, rotating
# their order; round R goes to RESULTS/NAME-rR.json.
compare() { # NAME CLEANUP
    local name=$1 cleanup=$2 n=${#CMD_NAMES[@]} r i j
    local args
    for ((r = 0; r < ROUNDS; r++)); do
        args=()
        for ((i = 0; i < n; i++)); do
            j=$(((i + r) % n))
            args+=(-n "${CMD_NAMES[j]}" --prepare "${CMD_PREPS[j]}" "${CMD_LINES[j]}")
        done
        say "$name: round $((r + 1)) of $ROUNDS"
        hyperfine --warmup $((r == 0 ? 1 : 0)) --runs "$RUNS" --cleanup "$cleanup" \
            --export-json "$RESULTS/$name-r$((r + 1)).json" "${args[@]}"
    done
    CMD_NAMES=()
    CMD_PREPS=()
    CMD_LINES=()
}

# How many directories DIR/PREFIX* there are (0 when DIR does not exist).
count_dirs() { # DIR PREFIX
    local d n=0
    for d in "$1/$2"*; do
        if [[ -d $d ]]; then
            n=$((n + 1))
        fi
    done
    echo "$n"
}

# The newest lxc-snap snapshot number of NAME in SNAPDIR.
newest() { # SNAPDIR NAME
    local d n best=-1
    for d in "$1/$2"_*; do
        n=${d##*_}
        if [[ -d $d && $n =~ ^[0-9]+$ ]] && ((n > best)); then
            best=$n
        fi
    done
    ((best >= 0)) || die "no snapshot of $2 in $1"
    echo "$best"
}

# The full-snapshot comparison in LXCPATH/SNAPDIR, results in NAME-r*.json;
# with PEERS=1 also rsync (and with BENCH_CP_SYNC=1 cp -a followed by sync).
full_comparison() { # NAME LXCPATH SNAPDIR OUTDIR [PEERS]
    local name=$1 lxcpath=$2 snapdir=$3 outdir=$4 peers=${5:-}
    local delta=$lxcpath/bench/overlay/delta
    local reset_snap reset_lxc reset_cp reset_rsync reset_cps
    reset_snap=$(q bash "$SELF" --reset lxc-snap "$BIN" "$lxcpath" "$snapdir" bench -1)
    reset_lxc=$(q bash "$SELF" --reset lxc-snapshot "$lxcpath" bench -1)
    reset_cp=$(q bash "$SELF" --reset dir "$outdir/cp")
    mkdir -p "$outdir"
    add_cmd "lxc-snap" "$reset_snap" \
        "$(q "$BIN" -P "$lxcpath" --snapdir "$snapdir" -q snap "${FULL[@]}" bench)"
    add_cmd "lxc-snapshot" "$reset_lxc" "$(q lxc-snapshot -P "$lxcpath" -n bench)"
    add_cmd "cp -a" "$reset_cp" "$(q cp -a "$delta" "$outdir/cp")"
    local cleanup="$reset_snap && $reset_lxc && $reset_cp"
    if [[ $peers == 1 ]]; then
        reset_rsync=$(q bash "$SELF" --reset dir "$outdir/rsync")
        add_cmd "rsync -aHXS" "$reset_rsync" "$(q rsync -aHXS "$delta/" "$outdir/rsync/")"
        cleanup+=" && $reset_rsync"
        if [[ ${BENCH_CP_SYNC:-} == 1 ]]; then
            reset_cps=$(q bash "$SELF" --reset dir "$outdir/cp-sync")
            add_cmd "cp -a; sync" "$reset_cps" \
                "$(q cp -a "$delta" "$outdir/cp-sync") && $(q sync -f "$outdir")"
            cleanup+=" && $reset_cps"
        fi
    fi
    compare "$name" "$cleanup"
}

# Seconds to create 10,000 empty files in a new directory DIR (left there
# until the end, see BENCH_DEFER_DELETE): how expensive inode creation is
# on this machine right now, for reading the results.
probe_create() { # DIR
    local t0 t1
    mkdir -p "$1"
    t0=$(date +%s.%N)
    (cd "$1" && seq -f 'f%.0f' 10000 | xargs touch)
    t1=$(date +%s.%N)
    sync -f "$1"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# Where the main phases run: a fresh ext4 image, or $W itself.
HERE=$W
if [[ $FS_MODE == image ]]; then
    ext4_size=${BENCH_EXT4_SIZE:-$((TREE_APPARENT * 12 > 8 << 30 ? TREE_APPARENT * 12 : 8 << 30))}
    new_image "$EXT4_IMG" "$EXT4_MNT" "$ext4_size" mkfs.ext4 -q -F
    HERE=$EXT4_MNT
fi
L=$HERE/lxc
S=$HERE/snapdir # not lxcsnaps: lxc-snapshot would switch to that layout
OUTD=$HERE/out
DELTA=$L/bench/overlay/delta

phase_full() {
    full_comparison full "$L" "$S" "$OUTD" 1
}

# Exactly one full snapshot of `bench` of each kind: bench_K (lxc-snap; its
# peak RSS recorded for the memory phase) and snap0 (lxc-snapshot). Kept
# when restore made them, so incremental does not copy the tree twice more.
ensure_base_snapshots() {
    if [[ $(count_dirs "$S" bench_) == 1 && $(count_dirs "$L/bench/snaps" snap) == 1 &&
        -d $L/bench/snaps/snap0 ]]; then
        return
    fi
    bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench -1
    bash "$SELF" --reset lxc-snapshot "$L" bench -1
    measure_rss lxc-snap "$BIN" -P "$L" --snapdir "$S" -q snap "${FULL[@]}" bench
    lxc-snapshot -P "$L" -n bench
    sync -f "$L"
}

phase_restore() {
    ensure_base_snapshots
    local k reset_a reset_b
    k=$(newest "$S" bench)
    reset_a=$(q bash "$SELF" --reset container "$L" rsnap)
    reset_b=$(q bash "$SELF" --reset container "$L" rlxc)
    add_cmd "lxc-snap -r" "$reset_a" "$(q "$BIN" -P "$L" --snapdir "$S" -q -r "bench_$k" rsnap)"
    add_cmd "lxc-snapshot -r" "$reset_b" "$(q lxc-snapshot -P "$L" -n bench -r snap0 -N rlxc)"
    compare restore "$reset_a && $reset_b"
}

phase_incremental() {
    # One full snapshot of each kind to start from, then one file changes.
    ensure_base_snapshots
    local k changed
    k=$(newest "$S" bench)
    # sed, not head: head would quit early and fail the pipeline (SIGPIPE
    # under pipefail) once the list outgrows a pipe buffer.
    changed=$(find "$DELTA" -type f -name '*.conf' -size +0 | LC_ALL=C sort | sed -n 1p)
    [[ -n $changed ]] || die "no .conf file in the tree to change"
    echo "changed by the incremental benchmark" >>"$changed"
    sync -f "$L"
    # How much one more snapshot adds: du counts each inode once, so files
    # shared with the previous snapshot by hard links do not count twice.
    # The last run of each command leaves its snapshot (no cleanup) for the
    # "after" figure.
    local tree before before_l after after_l
    tree=$(du -sB1 "$DELTA" | cut -f1)
    before=$(du -sB1 "$S" | cut -f1)
    before_l=$(du -sB1 "$L/bench/snaps" | cut -f1)
    local reset_a reset_b
    reset_a=$(q bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench "$k")
    reset_b=$(q bash "$SELF" --reset lxc-snapshot "$L" bench 0)
    add_cmd "lxc-snap" "$reset_a" "$(q "$BIN" -P "$L" --snapdir "$S" -q snap bench)"
    add_cmd "lxc-snapshot" "$reset_b" "$(q lxc-snapshot -P "$L" -n bench)"
    compare incremental true
    after=$(du -sB1 "$S" | cut -f1)
    after_l=$(du -sB1 "$L/bench/snaps" | cut -f1)
    [[ $(count_dirs "$S" bench_) == 2 ]] ||
        die "expected bench_$k and one newer snapshot in $S"
    jq -n --argjson tree "$tree" --argjson before "$before" --argjson after "$after" \
        --argjson before_l "$before_l" --argjson after_l "$after_l" --arg changed "${changed#"$DELTA"/}" \
        '{tree_bytes: $tree, changed_file: $changed,
          lxc_snap: {before: $before, after: $after, growth: ($after - $before)},
          lxc_snapshot: {before: $before_l, after: $after_l, growth: ($after_l - $before_l)}}' \
        >"$RESULTS/incremental-growth.json"
    bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench -1
    bash "$SELF" --reset lxc-snapshot "$L" bench -1
}

phase_list() {
    # A small container, one real snapshot with a comment, and copies of it
    # under the next numbers: list reads each snapshot's lxc-snap.json and
    # comment, which these are, byte for byte as lxc-snap writes them
    # apart from the number in the config and the comment text.
    lxc-copy -P "$L" -s -B overlayfs -n base -N tiny
    mkdir -p "$L/tiny/overlay/delta/etc"
    echo "tiny" >"$L/tiny/overlay/delta/etc/motd"
    "$BIN" -P "$L" --snapdir "$S" -q snap -m "list benchmark: snapshot 0" tiny
    local k n
    k=$(newest "$S" tiny)
    for ((n = k + 1; n < k + LIST_SNAPSHOTS; n++)); do
        cp -a "$S/tiny_$k" "$S/tiny_$n"
        sed -i "s/tiny_$k\b/tiny_$n/g" "$S/tiny_$n/config"
        printf 'list benchmark: snapshot %d\nsecond line of the comment\n' "$n" >"$S/tiny_$n/comment"
    done
    printf '%d\n' $((k + LIST_SNAPSHOTS - 1)) >"$S/.lxc-snap/tiny.seq"
    local listed
    listed=$("$BIN" -P "$L" --snapdir "$S" list tiny --json | jq length)
    ((listed == LIST_SNAPSHOTS)) || die "list shows $listed snapshots of tiny, expected $LIST_SNAPSHOTS"
    sync -f "$S"
    hyperfine -N --warmup 3 --runs "$LIST_RUNS" --output=pipe \
        --export-json "$RESULTS/list.json" \
        -n "lxc-snap -l tiny" "$(q "$BIN" -P "$L" --snapdir "$S" -l tiny)" \
        -n "lxc-snap list tiny --json" "$(q "$BIN" -P "$L" --snapdir "$S" list tiny --json)" \
        -n "lxc-snap -l" "$(q "$BIN" -P "$L" --snapdir "$S" -l)"
    if [[ -n ${BENCH_TRASH_DIR:-} ]]; then
        mv -- "$S"/tiny_* "$(mktemp -d "$BENCH_TRASH_DIR/x.XXXXXX")/"
    else
        rm -rf --one-file-system -- "$S"/tiny_*
    fi
}

phase_lookup() {
    # A layer over a whole snapshot of the tree: one file changed.
    ensure_base_snapshots
    local k n file dir
    k=$(newest "$S" bench)
    # The deepest file with a plain name (the tree has hostile ones too).
    file=$(cd "$DELTA" && find . -type f -regex '[./A-Za-z0-9_-]*' -printf '%d %P\n' |
        LC_ALL=C sort -k1,1nr -k2 | sed -n 1p | cut -d' ' -f2-)
    [[ -n $file ]] || die "no file with a plain name in the tree"
    echo "changed by the lookup benchmark" >>"$DELTA/$file"
    "$BIN" -P "$L" --snapdir "$S" -q snap bench
    n=$(newest "$S" bench)
    jq -e '.layer != null' "$S/bench_$n/lxc-snap.json" >/dev/null ||
        die "bench_$n is not a layer over bench_$k"
    dir=$(dirname "/$file")
    sync -f "$S"
    hyperfine -N --warmup 3 --runs "$LIST_RUNS" --output=pipe \
        --export-json "$RESULTS/lookup.json" \
        -n "lxc-snap cat" "$(q "$BIN" -P "$L" --snapdir "$S" cat "bench_$n" "/$file")" \
        -n "lxc-snap ls -l" "$(q "$BIN" -P "$L" --snapdir "$S" ls -l "bench_$n" "$dir")" \
        -n "lxc-snap --version" "$(q "$BIN" --version)"
    jq -n --arg file "/$file" --arg snap "bench_$n" --arg anchor "bench_$k" \
        --arg depth "$(($(tr -cd / <<<"/$file" | wc -c)))" \
        '{file: $file, snapshot: $snap, anchor: $anchor, depth: ($depth | tonumber)}' \
        >"$RESULTS/lookup-path.json"
    bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench "$k"
}

# The milliseconds `snap --freeze` says it kept the container frozen.
frozen_ms() { # ARGS...
    local out ms
    out=$("$BIN" -P "$L" --snapdir "$S" snap --freeze "$@" bench 2>&1 >/dev/null)
    ms=$(sed -n 's/.*container bench was frozen for \([0-9]*\) ms.*/\1/p' <<<"$out")
    [[ -n $ms ]] || die "snap --freeze said no frozen time: $out"
    echo "$ms"
}

phase_freeze() {
    ensure_base_snapshots
    local k n i changed layer_ms=() whole_ms
    k=$(newest "$S" bench)
    lxc-start -P "$L" -n bench -d
    lxc-wait -P "$L" -n bench -s RUNNING -t 60
    changed=$(find "$DELTA" -type f -name '*.conf' -size +0 | LC_ALL=C sort | sed -n 2p)
    [[ -n $changed ]] || die "no .conf file in the tree to change"
    for ((i = 0; i < ROUNDS; i++)); do
        echo "changed by the freeze benchmark $i" >>"$changed"
        sync -f "$L"
        layer_ms+=("$(frozen_ms)")
        n=$(newest "$S" bench)
        jq -e '.layer != null' "$S/bench_$n/lxc-snap.json" >/dev/null ||
            die "bench_$n is not a layer over bench_$k"
        bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench "$k"
    done
    # The whole tree new: no snapshot to store the changes over.
    bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench -1
    sync -f "$L"
    whole_ms=$(frozen_ms)
    lxc-stop -P "$L" -n bench -k
    jq -n --arg layer "${layer_ms[*]}" --arg whole "$whole_ms" --arg changed "${changed#"$DELTA"/}" \
        '{layer_ms: ($layer | split(" ") | map(tonumber)), whole_ms: ($whole | tonumber),
          changed_file: $changed}' >"$RESULTS/freeze.json"
    bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench -1
}

# Linked clones: nothing is copied, so the time should not follow the tree.
phase_clone() {
    ensure_base_snapshots
    local k i names=() runs=${BENCH_CLONE_RUNS:-10}
    k=$(newest "$S" bench)
    for ((i = 1; i <= 20; i++)); do names+=("clone$i"); done
    local destroy
    destroy=$(q bash "$SELF" --reset clones "$L" clone 20)
    hyperfine -N --runs "$runs" --output=pipe --export-json "$RESULTS/clone.json" \
        --prepare "$destroy" \
        -n "lxc-snap clone (1)" "$(q "$BIN" -P "$L" --snapdir "$S" -q clone "bench_$k" clone1)" \
        -n "lxc-snap clone (20)" "$(q "$BIN" -P "$L" --snapdir "$S" -q clone "bench_$k" "${names[@]}")"
    bash "$SELF" --reset clones "$L" clone 20
    # A stopped working container (a clone, with one kept path) rebuilt
    # onto the snapshot, its safety snapshot left out.
    "$BIN" -P "$L" --snapdir "$S" -q clone "bench_$k" work1
    mkdir -p "$L/work1/overlay/delta/etc"
    echo kept >"$L/work1/overlay/delta/etc/kept"
    hyperfine -N --runs "$runs" --output=pipe --export-json "$RESULTS/rebuild.json" \
        -n "lxc-snap rebuild" \
        "$(q "$BIN" -P "$L" --snapdir "$S" -q rebuild work1 --from "bench_$k" --no-backup --keep /etc/kept)"
    bash "$SELF" --reset clones "$L" work 1
    if [[ ${BENCH_CLONE_BIG:-1} == 1 ]]; then
        # On an ext4 of its own, with an inode for every 4 KiB: the tree,
        # its snapshot and the base.
        trap stop_big EXIT
        local tree_bytes
        tree_bytes=$(jq .du_bytes "$RESULTS/tree.json")
        new_image "$BIG_IMG" "$BIG_MNT" $((tree_bytes * 4 > 8 << 30 ? tree_bytes * 4 : 8 << 30)) \
            mkfs.ext4 -q -F -i 4096
        local bl=$BIG_MNT/lxc bs=$BIG_MNT/snapdir
        mkdir -p "$bs"
        make_lab "$bl" benchbig $((ENTRIES * 10)) "$RESULTS/tree-big.json"
        "$BIN" -P "$bl" --snapdir "$bs" -q snap --whole benchbig
        hyperfine -N --runs 3 --output=pipe --export-json "$RESULTS/clone-big.json" \
            --prepare "$(q bash "$SELF" --reset clones "$bl" bigclone 1)" \
            -n "lxc-snap clone (1), 10x tree" \
            "$(q "$BIN" -P "$bl" --snapdir "$bs" -q clone benchbig_0 bigclone1)"
        stop_big
    fi
}

# Peak RSS and wall time of COMMAND, into RESULTS/memory-NAME.txt.
measure_rss() { # NAME COMMAND...
    local name=$1
    shift
    /usr/bin/time -v -o "$RESULTS/memory-$name.txt" "$@"
    grep -E 'Maximum resident set size|Elapsed \(wall clock\)' "$RESULTS/memory-$name.txt"
}

phase_memory() {
    # The default tree: measured when restore or incremental made their
    # base snapshot, else now.
    if [[ ! -s $RESULTS/memory-lxc-snap.txt ]]; then
        bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench -1
        measure_rss lxc-snap "$BIN" -P "$L" --snapdir "$S" -q snap "${FULL[@]}" bench
        bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" bench -1
    fi
    # Half the entries, the same bytes: memory should not follow the
    # number of files (beyond remembering hard links).
    make_lab "$L" benchhalf $((ENTRIES / 2)) "$RESULTS/tree-half.json"
    measure_rss lxc-snap-half "$BIN" -P "$L" --snapdir "$S" -q snap "${FULL[@]}" benchhalf
    bash "$SELF" --reset lxc-snap "$BIN" "$L" "$S" benchhalf -1
    bash "$SELF" --reset container "$L" benchhalf
}

phase_reflink() {
    trap detach_xfs EXIT
    local tree_bytes size
    tree_bytes=$(jq .apparent_bytes "$RESULTS/tree.json")
    size=${BENCH_XFS_SIZE:-$((tree_bytes * 5 > 4 << 30 ? tree_bytes * 5 : 4 << 30))}
    new_image "$XFS_IMG" "$XFS_MNT" "$size" mkfs.xfs -q -m reflink=1
    findmnt -n -T "$XFS_MNT" -o SOURCE,FSTYPE,OPTIONS >"$RESULTS/reflink-fs.txt"
    xfs_info "$XFS_MNT" | grep -o 'reflink=[01]' >>"$RESULTS/reflink-fs.txt" || true
    make_lab "$XFS_MNT/lxc" bench "$ENTRIES" "$RESULTS/tree-xfs.json"
    full_comparison reflink "$XFS_MNT/lxc" "$XFS_MNT/snapdir" "$XFS_MNT/out"
    bash "$SELF" --reset lxc-snap "$BIN" "$XFS_MNT/lxc" "$XFS_MNT/snapdir" bench -1
    bash "$SELF" --reset lxc-snapshot "$XFS_MNT/lxc" bench -1
}

# Each phase runs in its own subshell with errexit in force; a failed
# phase is reported as failed and the others still run.
FAILED=()
run_phase() { # NAME
    local name=$1 started
    say "phase $name"
    started=$(date +%s)
    ("phase_$name") &
    PHASE_PID=$!
    if wait "$PHASE_PID"; then
        echo "ok $(($(date +%s) - started))" >"$RESULTS/$name.status"
    else
        echo "failed $(($(date +%s) - started))" >"$RESULTS/$name.status"
        FAILED+=("$name")
        echo "run.sh: phase $name failed" >&2
    fi
    PHASE_PID=
}

jq --arg fs "$(findmnt -n -T "$HERE" -o SOURCE,FSTYPE,OPTIONS)" --arg mode "$FS_MODE" \
    --arg features "$(if [[ $FS_MODE == image ]]; then dumpe2fs -h "$EXT4_IMG" 2>/dev/null |
        sed -n 's/^Filesystem features: *//p'; fi)" \
    '. + {fs: $fs, fs_mode: $mode, fs_features: $features}' \
    "$RESULTS/meta.json" >"$RESULTS/meta.json.tmp"
mv "$RESULTS/meta.json.tmp" "$RESULTS/meta.json"

t0=$(date +%s)
probe_start=$(probe_create "$HERE/probe-start")
echo "creating 10,000 empty files here takes $probe_start s"
say "setup: busybox base, overlay clone, tree"
make_lab "$L" bench "$ENTRIES" "$RESULTS/tree.json"
jq -c . "$RESULTS/tree.json"

# Room to keep every run's output until the end? Roughly one tree per run
# on this filesystem (full, restore, incremental, memory), plus 2 GiB.
tree_du=$(jq .du_bytes "$RESULTS/tree.json")
per_cmd=$((1 + ROUNDS * RUNS))
copies=$((5 * per_cmd + 4 * per_cmd + 4))
need=$((copies * tree_du + (2 << 30)))
avail=$(df -B1 --output=avail "$HERE" | tail -1 | tr -d ' ')
case ${BENCH_DEFER_DELETE:-auto} in
    1) defer=1 ;;
    0) defer=0 ;;
    *) if [[ $FS_MODE == here ]] && ((avail > need)); then defer=1; else defer=0; fi ;;
esac
if ((defer)); then
    mkdir -p "$HERE/trash"
    export BENCH_TRASH_DIR=$HERE/trash
    echo "outputs are moved to $HERE/trash and deleted at the end (needs about $((need >> 30)) GiB)"
else
    echo "outputs are deleted between runs (about $((need >> 30)) GiB needed to defer, $((avail >> 30)) GiB free)"
fi

for phase in $PHASES; do
    run_phase "$phase"
done
probe_end=$(probe_create "$HERE/probe-end")
echo "creating 10,000 empty files here takes $probe_end s"

jq --arg loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" --arg secs "$(($(date +%s) - t0))" \
    --arg probe_start "$probe_start" --arg probe_end "$probe_end" --arg defer "$defer" \
    '. + {loadavg_end: $loadavg, seconds: $secs, probe_start: $probe_start,
          probe_end: $probe_end, defer_delete: $defer}' \
    "$RESULTS/meta.json" >"$RESULTS/meta.json.tmp"
mv "$RESULTS/meta.json.tmp" "$RESULTS/meta.json"
say "report"
python3 "$REPO/bench/report.py" "$RESULTS" "$OUT"
echo "wrote $OUT"
if ((${#FAILED[@]} > 0)); then
    die "failed phases: ${FAILED[*]} (see above; the report marks them)"
fi
