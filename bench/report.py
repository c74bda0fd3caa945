#!/usr/bin/env python3
"""Writes BENCHMARKS.md from the results bench/run.sh leaves in a directory.

    python3 bench/report.py RESULTS-DIR OUT.md

Reads meta.json, tree*.json (gen_tree summaries), the hyperfine exports
(full, restore, incremental, reflink: one per round, NAME-rN.json, merged
here by command; list.json), incremental-growth.json,
memory-*.txt (GNU time -v) and the per-phase *.status files. A phase that
failed or did not run is shown as such; nothing here measures anything.
"""

import glob
import json
import os
import re
import statistics
import sys

MIB = 1024 * 1024


def read_json(path):
    """The JSON in PATH, or None when it is missing, empty or cut short
    (hyperfine leaves an empty export when a run fails)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load(results, name):
    return read_json(os.path.join(results, name))


def load_rounds(results, name):
    """One hyperfine export, or the rounds NAME-r1.json... merged: every
    command's times from all rounds together, plus each round's median."""
    single = load(results, name + ".json")
    if single:
        for r in single["results"]:
            r["round_medians"] = [r["median"]]
        return single
    paths = sorted(glob.glob(os.path.join(results, name + "-r*.json")),
                   key=lambda p: int(re.search(r"-r(\d+)\.json$", p).group(1)))
    rounds = [d for d in (read_json(p) for p in paths) if d and d.get("results")]
    if not rounds:
        return None
    merged = {}
    for data in rounds:
        for r in data["results"]:
            m = merged.setdefault(r["command"], {"command": r["command"], "times": [],
                                                 "round_medians": []})
            m["times"].extend(r["times"])
            m["round_medians"].append(r["median"])
    # In the order of the first round.
    order = [r["command"] for r in rounds[0]["results"]]
    results_list = []
    for name_ in order:
        m = merged[name_]
        t = m["times"]
        m.update(median=statistics.median(t), mean=statistics.mean(t),
                 stddev=statistics.stdev(t) if len(t) > 1 else 0.0, min=min(t), max=max(t))
        results_list.append(m)
    return {"results": results_list, "rounds": len(rounds)}


def status(results, phase):
    path = os.path.join(results, phase + ".status")
    if not os.path.exists(path):
        return "not run"
    with open(path) as f:
        word, *rest = f.read().split()
    return word + (f" ({rest[0]} s)" if rest else "")


def dur(seconds):
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def size(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1024)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def squeeze(text):
    return " ".join(str(text).split())


def by_name(hf):
    return {r["command"]: r for r in hf["results"]} if hf else {}


def ratio(peer, ours):
    """How many times faster lxc-snap is than peer (medians)."""
    if not peer or not ours or ours["median"] <= 0:
        return None
    return peer["median"] / ours["median"]


def verdict(ok):
    if ok is None:
        return "n/a"
    return "**met**" if ok else "**not met**"


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def table(hf, ours_name):
    """Markdown table of one (merged) hyperfine export; with ours_name, the
    ratio of each command to that one."""
    rows = by_name(hf)
    ours = rows.get(ours_name) if ours_name else None
    rounds = (hf or {}).get("rounds", 1)
    head = "| command | median | mean ± σ | min | max | runs |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if rounds > 1:
        head += " median of each round |"
        rule += " ---: |"
    if ours_name:
        head += " lxc-snap faster by |"
        rule += " ---: |"
    out = [head, rule]
    for name, r in rows.items():
        line = (f"| `{name}` | {dur(r['median'])} | {dur(r['mean'])} ± {dur(r['stddev'] or 0)} "
                f"| {dur(r['min'])} | {dur(r['max'])} | {len(r['times'])} |")
        if rounds > 1:
            line += " " + " / ".join(dur(m) for m in r["round_medians"]) + " |"
        if ours_name:
            line += " " + ("—" if name == ours_name else fmt_ratio(ratio(r, ours))) + " |"
        out.append(line)
    return "\n".join(out)


def rss_kib(results, name):
    path = os.path.join(results, f"memory-{name}.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
    return int(m.group(1)) if m else None


def main():
    results, out_path = sys.argv[1], sys.argv[2]
    meta = load(results, "meta.json") or {}
    tree = load(results, "tree.json")
    tree_half = load(results, "tree-half.json")
    full = load_rounds(results, "full")
    restore = load_rounds(results, "restore")
    incr = load_rounds(results, "incremental")
    growth = load(results, "incremental-growth.json")
    lst = load_rounds(results, "list")
    lookup = load_rounds(results, "lookup")
    lookup_path = load(results, "lookup-path.json")
    freeze = load(results, "freeze.json")
    clone = by_name(load_rounds(results, "clone"))
    rebuild = by_name(load_rounds(results, "rebuild"))
    clone_big = by_name(load_rounds(results, "clone-big"))
    tree_big = load(results, "tree-big.json")
    reflink = load_rounds(results, "reflink")

    fr, rr, ir, lr, xr, kr = (by_name(x) for x in (full, restore, incr, lst, reflink, lookup))
    targets = []  # (what, target, result, met)

    r = ratio(fr.get("lxc-snapshot"), fr.get("lxc-snap"))
    targets.append(("full snapshot vs `lxc-snapshot`", "≥ 2x faster", fmt_ratio(r),
                    None if r is None else r >= 2))
    r = ratio(fr.get("cp -a"), fr.get("lxc-snap"))
    targets.append(("full snapshot vs `cp -a`", "faster (> 1x)", fmt_ratio(r),
                    None if r is None else r > 1))
    r = ratio(rr.get("lxc-snapshot -r"), rr.get("lxc-snap -r"))
    targets.append(("restore vs `lxc-snapshot -r`", "≥ 2x faster", fmt_ratio(r),
                    None if r is None else r >= 2))
    r = ratio(ir.get("lxc-snapshot"), ir.get("lxc-snap"))
    targets.append(("incremental snapshot vs `lxc-snapshot`", "≥ 20x faster", fmt_ratio(r),
                    None if r is None else r >= 20))
    if growth:
        pct = 100 * growth["lxc_snap"]["growth"] / growth["tree_bytes"]
        targets.append(("snapdir growth of an incremental snapshot", "< 1% of the tree",
                        f"{pct:.2f}% ({size(growth['lxc_snap']['growth'])})", pct < 1))
    else:
        targets.append(("snapdir growth of an incremental snapshot", "< 1% of the tree", "n/a", None))
    r = ratio(xr.get("lxc-snapshot"), xr.get("lxc-snap"))
    targets.append(("full snapshot on XFS with reflinks vs `lxc-snapshot`", "≥ 10x faster",
                    fmt_ratio(r), None if r is None else r >= 10))
    lt = lr.get("lxc-snap -l tiny")
    n_list = meta.get("list_snapshots", "1000")
    targets.append((f"`lxc-snap -l` over {int(n_list):,} snapshots", "< 50 ms (median)",
                    dur(lt["median"]) if lt else "n/a", None if not lt else lt["median"] < 0.050))
    lc = kr.get("lxc-snap cat")
    targets.append(("looking up one path in a layered snapshot (`lxc-snap cat`)", "< 20 ms (median)",
                    dur(lc["median"]) if lc else "n/a", None if not lc else lc["median"] < 0.020))
    frozen = sorted(freeze["layer_ms"])[len(freeze["layer_ms"]) // 2] if freeze else None
    targets.append(("a running container frozen by `snap --freeze`, one file changed",
                    "< 300 ms (median)", f"{frozen} ms" if freeze else "n/a",
                    None if frozen is None else frozen < 300))
    for what, row, limit, shown in (
            ("a linked clone of the whole snapshot (`lxc-snap clone`)",
             clone.get("lxc-snap clone (1)"), 0.100, "< 100 ms (median)"),
            ("20 linked clones in one `lxc-snap clone`",
             clone.get("lxc-snap clone (20)"), 3.0, "< 3 s (median)"),
            ("rebuild of one stopped container (`lxc-snap rebuild`)",
             rebuild.get("lxc-snap rebuild"), 1.0, "< 1 s (median)")):
        targets.append((what, shown, dur(row["median"]) if row else "n/a",
                        None if not row else row["median"] < limit))
    rss = rss_kib(results, "lxc-snap")
    targets.append(("peak RSS of a full snapshot", "< 64 MiB",
                    size(rss * 1024) if rss else "n/a", None if rss is None else rss * 1024 < 64 * MIB))

    entries = int(meta.get("entries", 0))
    knobs = (f"BENCH_ENTRIES={meta.get('entries')} BENCH_BYTES={meta.get('bytes')} "
             f"BENCH_SEED={meta.get('seed')} BENCH_ROUNDS={meta.get('rounds')} "
             f"BENCH_RUNS={meta.get('runs')}")
    if meta.get("quick") == "1":
        knobs = "BENCH_QUICK=1 " + knobs
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w(f"Generated by `make bench` (bench/run.sh, bench/report.py) on {meta.get('date', '?')}; "
      f"the whole run took {int(meta.get('seconds', 0)) // 60} min {int(meta.get('seconds', 0)) % 60} s. "
      "Numbers from one machine, warm page cache; the raw hyperfine JSON is in "
      "`target/bench-results/` after a run.")
    w("")
    w("Reproduce (as root, from the repository):")
    w("")
    w("    make bench")
    w(f"    {knobs} make bench   # the values used here")
    w("    BENCH_QUICK=1 make bench   # 5,000 entries, 65 MiB, 2 runs a round")
    w("")
    w("Other knobs: `BENCH_PHASES` (a subset of `full restore incremental list lookup freeze clone "
      "memory reflink`), `BENCH_CLONE_RUNS`, `BENCH_CLONE_BIG=0`, "
      "`BENCH_CP_SYNC=1`, `BENCH_LIST_SNAPSHOTS`, `BENCH_LIST_RUNS`, `BENCH_TMPDIR`, "
      "`BENCH_FS=here`, `BENCH_EXT4_SIZE`, `BENCH_XFS_SIZE`, `BENCH_OUT`, `BENCH_KEEP=1`; "
      "see the top of bench/run.sh.")
    w("")
    w("## Targets")
    w("")
    w("\"Nx faster\" is the peer's median time divided by lxc-snap's.")
    w("")
    w("| what | target | result | |")
    w("| --- | --- | ---: | --- |")
    for what, target, result, ok in targets:
        w(f"| {what} | {target} | {result} | {verdict(ok)} |")
    w("")
    w("## What was measured")
    w("")
    dirty = meta.get("dirty", "0")
    w(f"- lxc-snap: `{meta.get('version', '?')}`, commit `{meta.get('commit', '?')}` "
      f"on branch `{meta.get('branch', '?')}`"
      + (f" with {dirty} uncommitted changes to tracked files" if dirty not in ("0", "") else "")
      + f"; binary sha256 `{meta.get('bin_sha256', '?')}…`, built {meta.get('bin_mtime', '?')}.")
    flag = meta.get("full_flag") or ""
    w("- Full snapshots ran as `lxc-snap snap " + (flag + " " if flag else "") + "bench`"
      + ("" if flag else " (this binary has no `--full`; its default snapshot is a full copy)") + ".")
    w(f"- Machine: {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), "
      f"{size(int(meta.get('mem_kib', 0)) * 1024)} RAM, kernel {meta.get('kernel', '?')}, "
      f"{meta.get('os', '?')}; load average {meta.get('loadavg_start', '?')} at the start, "
      f"{meta.get('loadavg_end', '?')} at the end.")
    w(f"- Tools: LXC {meta.get('lxc', '?')}, {squeeze(meta.get('hyperfine', '?'))}, "
      f"{squeeze(meta.get('rsync', '?'))}, {squeeze(meta.get('cp', '?'))}.")
    if meta.get("fs_mode") == "image":
        w("- Filesystem: a fresh ext4 made for this run with `mkfs.ext4` defaults (features: "
          f"{squeeze(meta.get('fs_features', '?'))}) in an image file under "
          f"`{meta.get('tmpdir', '?')}`, loop-mounted: `{squeeze(meta.get('fs', '?'))}`. "
          "Every command and the tree live there; a long-used filesystem would time its own "
          "state too (`BENCH_FS=here` runs on the one under the directory instead).")
    w(f"- Filesystem of the benchmark: "
      f"`{squeeze(meta.get('fs', '?'))}`. Creating 10,000 empty files there took "
      f"{meta.get('probe_start', '?')} s before the benchmarks and {meta.get('probe_end', '?')} s "
      "after them (how costly inode creation was on this machine at the time).")
    xfs_path = os.path.join(results, "reflink-fs.txt")
    if os.path.exists(xfs_path):
        with open(xfs_path) as f:
            w(f"- Reflink filesystem: `{' '.join(f.read().split())}` "
              "(a sparse image file on the same disk, loop-mounted).")
    if tree:
        w(f"- Tree (gen_tree, seed {tree['seed']}): {tree['entries']:,} entries — "
          f"{tree['dirs']:,} directories (depth up to {tree['max_depth']}), {tree['files']:,} files "
          f"({tree['small_files_under_16k']:,} under 16 KiB, {tree['empty_files']:,} empty, "
          f"{tree['large_files']} large up to {size(tree['largest_file'])}, "
          f"{tree['sparse_files']} sparse, {tree['setuid_files']} setuid/setgid), "
          f"{tree['symlinks']:,} symlinks, {tree['hardlinks']:,} extra hard links, "
          f"{tree['xattr_entries']:,} with user.* xattrs; {size(tree['data_bytes'])} of data "
          f"({size(tree['apparent_bytes'])} apparent with the holes), "
          f"`du`: {size(tree['du_bytes'])}. Plan digest `{tree['plan_digest']}`.")
    w(f"- hyperfine: each comparison runs side by side in one hyperfine invocation, "
      f"{meta.get('rounds', '?')} rounds with the order of the commands rotated, "
      f"{meta.get('runs', '?')} timed run(s) per command per round; the first round starts with "
      "one warmup run per command. Before each run (warmups included) a prepare command removes "
      "the previous run's output from where the command writes and syncs the filesystem, so "
      "every run makes a complete copy "
      "and starts with no dirty pages. The tree stays in the page cache (written just before, "
      "caches never dropped). Medians, means, min and max are over all rounds.")
    if meta.get("defer_delete") == "1":
        w("- Outputs of earlier runs were moved aside and deleted only after the benchmarks "
          "(`BENCH_DEFER_DELETE`): on ext4 without a journal, as here, the inode allocator skips "
          "inodes freed in the last minute or more, so creating the tree's 50,000 files right "
          "after deleting as many costs several times more, and that is the filesystem's inode "
          "reuse, not the copy. On the XFS image outputs are deleted between runs.")
    elif meta.get("defer_delete") == "0" and meta.get("fs_mode") == "image":
        w("- Outputs of earlier runs were deleted between runs, by the prepare command, which "
          "also syncs.")
    elif meta.get("defer_delete") == "0":
        w("- Outputs of earlier runs were deleted between runs (`BENCH_DEFER_DELETE=0`, or not "
          "enough disk to keep them): on ext4 without a journal that makes file creation in the "
          "next run much slower, for every command alike.")
    w("")

    def section(title, phase, hf, ours, text):
        w(f"## {title}")
        w("")
        w(text)
        w("")
        st = status(results, phase)
        if hf:
            w(table(hf, ours))
        else:
            w(f"No results: phase `{phase}` {st}.")
        if hf and not st.startswith("ok"):
            w("")
            w(f"Phase status: {st}.")
        w("")

    section("Full snapshot", "full", full, "lxc-snap",
            "Snapshot of the overlay clone `bench` whose delta holds the tree, against "
            "`lxc-snapshot` (LXC's own; it copies the delta with rsync), a plain `cp -a` and "
            "`rsync -aHXS` of the delta. lxc-snap is crash-safe: it flushes a snapshot to disk "
            "(`syncfs`) before it publishes it, so its time includes the writeback, while `cp -a` "
            "and `rsync` return with the data still in the page cache"
            + (". `cp -a; sync` shows what `cp -a` costs with the same durability (for "
               "information, not a target)." if "cp -a; sync" in fr else
               " (`BENCH_CP_SYNC=1` adds `cp -a; sync` to the comparison)."))
    section("Restore", "restore", restore, "lxc-snap -r",
            "A new container from a full snapshot: `lxc-snap -r bench_K rsnap` against "
            "`lxc-snapshot -n bench -r snap0 -N rlxc`. The new container is removed before every "
            "run (" + ("moved aside, see above" if meta.get("defer_delete") == "1"
                       else "`lxc-destroy`") + ").")
    growth_text = ""
    if growth:
        g, gl = growth["lxc_snap"], growth["lxc_snapshot"]
        growth_text = (
            f"\n\nSnapdir growth: `du -sB1` of the whole snapdir (each inode counted once) with "
            f"only the first snapshot, and again with the snapshot the last timed run left: "
            f"lxc-snap {size(g['growth'])} = "
            f"{100 * g['growth'] / growth['tree_bytes']:.2f}% of the tree "
            f"({size(growth['tree_bytes'])}); lxc-snapshot {size(gl['growth'])} = "
            f"{100 * gl['growth'] / growth['tree_bytes']:.2f}%. Changed file: "
            f"`{growth['changed_file']}`.")
    section("Incremental snapshot", "incremental", incr, "lxc-snap",
            "After one full snapshot of each kind, one line is appended to one file of the tree; "
            "then each run takes one more snapshot in lxc-snap's default mode (`lxc-snap snap bench`, "
            "which stores it as a layer of the changes since the first when the binary can, or "
            "shares unchanged files with it by hard links) and "
            "with `lxc-snapshot -n bench`. Every run starts from the same state: the prepare "
            "command removes the snapshots newer than the first." + growth_text)
    section(f"Listing {int(n_list):,} snapshots", "list", lst, None,
            f"A small container `tiny`, one real snapshot with a comment, and {int(n_list) - 1:,} copies "
            "of it under the following numbers (the same `lxc-snap.json`, `ts`, `config` with the "
            "number changed, and a two-line comment each), as list reads them; 3 warmup runs, "
            f"{meta.get('list_runs', '?')} runs, output to a pipe, no shell. `lxc-snap -l` (all "
            "containers) reads the same snapshots.")

    where = (f"`{lookup_path['file']}` ({lookup_path['depth']} levels deep) of `{lookup_path['snapshot']}`, "
             f"a layer over `{lookup_path['anchor']}`" if lookup_path else "the deepest file")
    section("Looking up one path", "lookup", lookup, None,
            f"`lxc-snap cat` of {where}, a whole snapshot of the tree, over the busybox base; and "
            "`lxc-snap ls -l` of its directory. Whole processes, output to a pipe, no shell; "
            f"3 warmup runs, {meta.get('list_runs', '?')} runs. `lxc-snap --version` is the cost "
            "of starting the program at all.")

    w("## Freezing a running container")
    w("")
    if freeze:
        w(f"The busybox container `bench` with the tree in its delta, started with `lxc-start`; "
          f"`lxc-snap snap --freeze bench` as it reports the time the container was frozen "
          f"(from `lxc-freeze` returning to `lxc-unfreeze` returning: flushing the container's "
          f"filesystem, planning and copying the snapshot's tree). After one line appended to "
          f"`{freeze['changed_file']}` since a whole snapshot, the new snapshot is a layer: "
          f"{' / '.join(str(m) for m in freeze['layer_ms'])} ms in {len(freeze['layer_ms'])} rounds. "
          f"The container's first snapshot, which copies the whole tree while it is frozen: "
          f"{freeze['whole_ms']} ms (one run).")
    else:
        w(f"No results: phase `freeze` {status(results, 'freeze')}.")
    w("")
    w("## Linked clones and rebuild")
    w("")
    c1, c20, rb = clone.get("lxc-snap clone (1)"), clone.get("lxc-snap clone (20)"), rebuild.get("lxc-snap rebuild")
    if c1 and c20:
        w(f"`lxc-snap clone` of the whole snapshot of the tree in `bench` (a new container over "
          f"the snapshot's tree and the base, nothing copied; `--prepare` destroys the clones with "
          f"`lxc-destroy` between runs, untimed): one clone {dur(c1['median'])} median "
          f"(min {dur(c1['min'])}, max {dur(c1['max'])}), 20 in one command {dur(c20['median'])} "
          f"median (min {dur(c20['min'])}, max {dur(c20['max'])}), {len(c1['times'])} runs each.")
    else:
        w(f"No clone results: phase `clone` {status(results, 'clone')}.")
    w("")
    if clone_big and tree_big:
        cb = clone_big.get("lxc-snap clone (1), 10x tree")
        if cb:
            w(f"The same for a snapshot of a tree of {tree_big.get('entries', 0):,} entries (10 times "
              f"as many): one clone {dur(cb['median'])} median (min {dur(cb['min'])}, max "
              f"{dur(cb['max'])}), {len(cb['times'])} runs: the time does not follow the tree.")
            w("")
    if rb:
        w(f"`lxc-snap rebuild work1 --from SNAP --no-backup --keep /etc/kept` of a stopped clone "
          f"onto the snapshot (a new upper, one kept file, the config switched in one rename, the "
          f"old upper removed): {dur(rb['median'])} median (min {dur(rb['min'])}, max "
          f"{dur(rb['max'])}), {len(rb['times'])} runs. Stopping and starting the container "
          f"(`--restart`) come on top and depend on what runs inside.")
        w("")
    w("## Peak memory")
    w("")
    w("Maximum resident set size of one full snapshot, from `/usr/bin/time -v`.")
    w("")
    w("| run | tree | peak RSS | wall time |")
    w("| --- | --- | ---: | ---: |")

    def wall(name):
        path = os.path.join(results, f"memory-{name}.txt")
        if not os.path.exists(path):
            return "n/a"
        with open(path) as f:
            m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", f.read())
        return m.group(1) if m else "n/a"

    def rss_cell(name):
        k = rss_kib(results, name)
        return size(k * 1024) if k else "n/a"

    def tree_cell(t, note=""):
        return f"{t['entries']:,} entries, {size(t['data_bytes'])}{note}" if t else "n/a"

    w(f"| lxc-snap | {tree_cell(tree)} | {rss_cell('lxc-snap')} | {wall('lxc-snap')} |")
    w(f"| lxc-snap | {tree_cell(tree_half, ' (half the entries)')} | {rss_cell('lxc-snap-half')} "
      f"| {wall('lxc-snap-half')} |")
    st = status(results, "memory")
    if not st.startswith("ok"):
        w("")
        w(f"Phase status: {st}.")
    w("")
    section("Full snapshot on a filesystem with reflinks", "reflink", reflink, "lxc-snap",
            "The same tree in a container on an XFS image made with `mkfs.xfs -m reflink=1` and "
            "loop-mounted; lxcpath and snapdir on it. `cp -a` (coreutils 9 clones with reflinks "
            "by default) is shown for information.")

    w("## Notes")
    w("")
    w("- These are benchmarks, not tests: `make test` runs nothing that depends on timings.")
    w("- The machine may be shared (see the load averages above); medians are reported "
      "because they are the least disturbed by a slow run, min and max show the spread.")
    if entries:
        w(f"- Ratios above 1 mean lxc-snap was faster. A target marked not met describes the binary "
          f"measured here, commit `{meta.get('commit', '?')}`.")
    failed = [p for p in ("full", "restore", "incremental", "list", "lookup", "freeze", "memory",
                          "reflink")
              if status(results, p).startswith("failed")]
    if failed:
        w(f"- Failed phases: {', '.join(failed)} (see the output of `make bench`).")
    w("")

    with open(out_path, "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    main()
