//! End-to-end tests with real LXC containers: busybox bases, overlay clones,
//! snapshots taken and restored by the real binary, and containers started
//! from both. The first tests prove the harness itself (they need no
//! lxc-snap); the rest follow the README's workflow and the spec's contract.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use common::fixtures::captured_in;
use common::lxc::{
    assert_same_tree, config_value, config_values, dependency_pairs, dir_names, mounts_under,
    tree_manifest, Lab,
};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A lab with a busybox base (veth eth0 with a MAC) and its overlay clone `mysql`.
fn mysql_lab() -> Lab {
    let lab = Lab::new();
    lab.create_base_with_mac("base");
    lab.overlay_clone("base", "mysql");
    lab
}

/// The first round of changes made inside `mysql`: an added file, a
/// modified lower file, a deleted lower file (whiteout), a lower directory
/// replaced by a new one (opaque), and /etc/hostname.
const FIRST_CHANGES: &str = "yes payload | head -c 10000 > /root/added && \
     echo '# changed in mysql' >> /etc/fstab && \
     rm /bin/vi && \
     rm -rf /etc/udhcpc && mkdir /etc/udhcpc && \
     echo new > /etc/udhcpc/new.script && echo conf > /etc/udhcpc/other.conf && \
     echo mysql > /etc/hostname && sync";

/// The second round: one more file, one more deletion.
const SECOND_CHANGES: &str = "echo second > /root/second && rm /bin/less && sync";

fn change_mysql(lab: &Lab, script: &str) {
    lab.start(lab.lxcpath(), "mysql");
    lab.attach(lab.lxcpath(), "mysql", script);
    lab.stop(lab.lxcpath(), "mysql");
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn snapshots_json(lab: &Lab, name: &str) -> Vec<Value> {
    let v = json(&lab.env.ok(&["list", name, "--json"]));
    v.as_array()
        .unwrap_or_else(|| panic!("list {name} --json is not an array: {v}"))
        .clone()
}

fn names_of(snaps: &[Value]) -> Vec<String> {
    snaps
        .iter()
        .map(|s| s["name"].as_str().expect("name is a string").to_string())
        .collect()
}

fn present(lab: &Lab, lxcpath: &Path, name: &str, path: &str) -> bool {
    let out = lab.attach(
        lxcpath,
        name,
        &format!("if [ -e {path} ] || [ -L {path} ]; then echo yes; else echo no; fi"),
    );
    match out.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("unexpected {other:?}"),
    }
}

/// Rows of a table as printed by `list`, split into words, border
/// characters dropped, the header first.
/// The rows of a table, the total line under it left out.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    const BORDER: &[char] = &['|', '│', '┃', '║'];
    text.lines()
        .filter(|line| !line.starts_with("total: "))
        .map(|line| {
            line.split(|c: char| c.is_whitespace() || BORDER.contains(&c))
                .filter(|w| !w.is_empty() && !w.chars().all(|c| "-+=─━═┼╋┬┴├┤┌┐└┘╭╮╰╯".contains(c)))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|row| !row.is_empty())
        .collect()
}

fn assert_local_time(date: &str, time: &str) {
    let s = format!("{date} {time}");
    chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{s:?} is not YYYY-MM-DD HH:MM:SS: {e}"));
}

fn rfc3339(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s:?} not RFC 3339: {e}"))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Snapdir entries that are neither lxc-snap's lock directory nor nothing.
fn snapdir_entries(lab: &Lab) -> Vec<String> {
    dir_names(lab.snapdir())
        .into_iter()
        .filter(|n| n != ".lxc-snap")
        .collect()
}

fn tmp_leftovers(lab: &Lab) -> Vec<String> {
    dir_names(lab.snapdir())
        .into_iter()
        .filter(|n| n.starts_with(".lxc-snap.tmp."))
        .collect()
}

/// Checks a completed overlay snapshot directory against the spec's layout.
fn assert_overlay_snapshot_layout(lab: &Lab, container: &str, snap: &str, base: &str) {
    let dir = lab.snapdir().join(snap);
    assert_eq!(mode(&dir), 0o755, "{} mode", dir.display());
    assert_eq!(mode(&dir.join("private")), 0o700, "private/ mode");
    assert!(dir.join("private/delta").is_dir(), "no private/delta");
    let config = lab.config(lab.snapdir(), snap);
    let snapdir = lab.snapdir().display().to_string();
    // A layer stacks the tree of the snapshot it is stored as changes to.
    let anchor = json(&read(&dir.join("lxc-snap.json")))["layer"]["anchor"]
        .as_str()
        .map(|a| format!("{snapdir}/{a}/private/delta:"))
        .unwrap_or_default();
    assert_eq!(
        config_value(&config, "lxc.rootfs.path"),
        format!(
            "overlay:{snapdir}/{snap}/private/delta:{anchor}{}/{base}/rootfs:{snapdir}/{snap}/private/scratch/upper",
            lab.lxcpath().display()
        ),
        "snapshot rootfs"
    );
    // Its host name is its name made a DNS label.
    assert_eq!(
        config_value(&config, "lxc.uts.name"),
        snap.replace('_', "-")
    );
    assert!(
        config_values(&config, "lxc.hook.pre-start")
            .iter()
            .any(|h| h.ends_with(" reset --from-lxc")),
        "the hook that empties the scratch at each start: {config}"
    );
    assert!(config_values(&config, "lxc.utsname").is_empty());
    for v in config_values(&config, "lxc.ephemeral") {
        assert_eq!(v, "0", "snapshot config keeps lxc.ephemeral = {v}");
    }
    let ts = read(&dir.join("ts"));
    assert!(!ts.ends_with('\n'), "ts has a trailing newline: {ts:?}");
    chrono::NaiveDateTime::parse_from_str(&ts, "%Y:%m:%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("ts {ts:?} is not %Y:%m:%d %H:%M:%S: {e}"));
    let meta = json(&read(&dir.join("lxc-snap.json")));
    for key in [
        "format_version",
        "tool_version",
        "container",
        "lxcpath",
        "created",
        "backing",
        "rootfs_key",
        "rootfs_prefix",
        "lowers",
        "files",
        "bytes",
    ] {
        assert!(meta.get(key).is_some(), "lxc-snap.json lacks {key}: {meta}");
    }
    assert_eq!(meta["container"], container);
    assert_eq!(meta["backing"], "overlay");
    assert_eq!(meta["lxcpath"], lab.lxcpath_str());
    assert_eq!(meta["rootfs_key"], "lxc.rootfs.path");
    assert_eq!(
        meta["lowers"],
        serde_json::json!([format!("{}/{base}/rootfs", lab.lxcpath().display())])
    );
    rfc3339(&meta["created"]);
    // A layer depends on its anchor too, as a clone on its origin.
    let anchor_line = meta["layer"]["anchor"]
        .as_str()
        .map(|a| format!("{snapdir}\n{a}\n"))
        .unwrap_or_default();
    assert_eq!(
        read(&dir.join("lxc_rdepends")),
        format!("{}\n{base}\n{anchor_line}", lab.lxcpath().display()),
        "snapshot lxc_rdepends"
    );
}

/// Checks a restored overlay container: config, dependency files, delta.
fn assert_restored_overlay(lab: &Lab, snap: &str, new: &str, base: &str) {
    let lxcpath = lab.lxcpath().display().to_string();
    let config = lab.config(lab.lxcpath(), new);
    assert_eq!(
        config_value(&config, "lxc.rootfs.path"),
        format!("overlay:{lxcpath}/{base}/rootfs:{lxcpath}/{new}/overlay/delta"),
        "restored rootfs"
    );
    // The host name is the name made a DNS label.
    assert_eq!(
        config_value(&config, "lxc.uts.name"),
        lxc_snap::names::host_name_for(new)
    );
    assert!(config_values(&config, "lxc.utsname").is_empty());
    assert_eq!(
        read(&lab.lxcpath().join(new).join("lxc_rdepends")),
        format!("{lxcpath}\n{base}\n"),
        "{new}/lxc_rdepends"
    );
    let deps = dependency_pairs(&lab.lxcpath().join(base).join("lxc_snapshots"));
    assert!(
        deps.contains(&(lxcpath.clone(), new.to_string())),
        "{base}/lxc_snapshots does not list {new}: {deps:?}"
    );
    assert_same_tree(
        &format!("restored {new} vs captured {snap}"),
        &tree_manifest(&captured_in(lab.snapdir(), lab.env.path(), snap)),
        &tree_manifest(&lab.delta(new)),
        &["etc/hostname"],
    );
    assert_eq!(
        read(&lab.delta(new).join("etc/hostname")).trim_end(),
        lxc_snap::names::host_name_for(new),
        "etc/hostname in {new}'s delta"
    );
}

// ---------------------------------------------------------------------------
// The harness (no lxc-snap needed)
// ---------------------------------------------------------------------------

#[test]
fn harness_overlay_clone_writes_land_in_its_delta() {
    if !common::system_tests_enabled("harness_overlay_clone_writes_land_in_its_delta", true) {
        return;
    }
    let lab = Lab::new();
    let base_mac = lab.create_base_with_mac("base");
    assert!(base_mac.starts_with("10:66:6a:"), "{base_mac}");
    lab.overlay_clone("base", "c1");
    let config = lab.config(lab.lxcpath(), "c1");
    assert_eq!(
        config_value(&config, "lxc.rootfs.path"),
        format!(
            "overlay:{0}/base/rootfs:{0}/c1/overlay/delta",
            lab.lxcpath().display()
        )
    );
    let mac = config_value(&config, "lxc.net.0.hwaddr");
    assert_ne!(mac, base_mac, "lxc-copy gives the clone a new MAC");

    lab.start(lab.lxcpath(), "c1");
    assert_eq!(lab.state(lab.lxcpath(), "c1"), "RUNNING");
    assert_eq!(lab.attach(lab.lxcpath(), "c1", "hostname").trim(), "c1");
    assert_eq!(
        lab.attach(lab.lxcpath(), "c1", "cat /sys/class/net/eth0/address")
            .trim(),
        mac.to_lowercase()
    );
    lab.attach(
        lab.lxcpath(),
        "c1",
        "echo hello > /root/hello && rm /bin/vi && rm -rf /etc/udhcpc && mkdir /etc/udhcpc && sync",
    );
    lab.stop(lab.lxcpath(), "c1");
    assert_eq!(lab.state(lab.lxcpath(), "c1"), "STOPPED");

    let delta = lab.delta("c1");
    assert_eq!(read(&delta.join("root/hello")), "hello\n");
    let m = tree_manifest(&delta);
    assert!(m["bin/vi"].is_whiteout(), "bin/vi: {:?}", m["bin/vi"]);
    assert_eq!(
        m["etc/udhcpc"].xattrs.get("trusted.overlay.opaque"),
        Some(&b"y".to_vec()),
        "etc/udhcpc: {:?}",
        m["etc/udhcpc"]
    );
    // The base is untouched.
    assert!(lab
        .lxcpath()
        .join("base/rootfs/etc/udhcpc/default.script")
        .exists());
    assert!(fs::symlink_metadata(lab.lxcpath().join("base/rootfs/bin/vi")).is_ok());
}

/// The layout lxc-snap writes must boot: a hand-made snapshot container
/// whose rootfs stacks a captured delta read-only over the base, under a
/// scratch upper (three-part `overlay:DELTA:LOWER:UPPER`).
#[test]
fn harness_lxc_starts_a_three_part_overlay_rootfs_without_writing_the_layer() {
    if !common::system_tests_enabled("harness_lxc_starts_a_three_part_overlay_rootfs", true) {
        return;
    }
    let lab = Lab::new();
    lab.create_base("base");
    lab.overlay_clone("base", "c1");
    lab.start(lab.lxcpath(), "c1");
    lab.attach(
        lab.lxcpath(),
        "c1",
        "echo captured > /root/captured && rm /bin/vi && sync",
    );
    lab.stop(lab.lxcpath(), "c1");

    let snap = lab.snapdir().join("c1_0");
    fs::create_dir_all(snap.join("private")).expect("mkdir");
    fs::set_permissions(snap.join("private"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(lab.delta("c1"))
        .arg(snap.join("private/delta"))
        .status()
        .expect("cp");
    assert!(cp.success());
    let captured = tree_manifest(&snap.join("private/delta"));
    let s = snap.display().to_string();
    let config: String = lab
        .config(lab.lxcpath(), "c1")
        .lines()
        .map(|l| {
            if l.starts_with("lxc.rootfs.path") {
                format!(
                    "lxc.rootfs.path = overlay:{s}/private/delta:{}/base/rootfs:{s}/private/scratch/upper\n",
                    lab.lxcpath().display()
                )
            } else if l.starts_with("lxc.uts.name") {
                "lxc.uts.name = c1_0\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(snap.join("config"), config).expect("writing config");

    lab.start(lab.snapdir(), "c1_0");
    assert_eq!(lab.attach(lab.snapdir(), "c1_0", "hostname").trim(), "c1_0");
    assert_eq!(
        lab.attach(lab.snapdir(), "c1_0", "cat /root/captured"),
        "captured\n"
    );
    assert!(!present(&lab, lab.snapdir(), "c1_0", "/bin/vi"));
    let mounts = lab.attach(lab.snapdir(), "c1_0", "grep ' / ' /proc/mounts");
    assert!(
        mounts.contains(&format!(
            "lowerdir={s}/private/delta:{}/base/rootfs,upperdir={s}/private/scratch/upper,workdir={s}/private/scratch/work",
            lab.lxcpath().display()
        )),
        "root mount: {mounts}"
    );
    lab.attach(
        lab.snapdir(),
        "c1_0",
        "rm /root/captured && echo scratch > /root/scratch && sync",
    );
    lab.stop(lab.snapdir(), "c1_0");

    assert_same_tree(
        "captured layer after a boot",
        &captured,
        &tree_manifest(&snap.join("private/delta")),
        &[],
    );
    assert_eq!(
        read(&snap.join("private/scratch/upper/root/scratch")),
        "scratch\n"
    );
    let upper = tree_manifest(&snap.join("private/scratch/upper"));
    assert!(upper["root/captured"].is_whiteout());
}

#[test]
fn harness_drop_stops_running_containers_even_when_the_test_panics() {
    if !common::system_tests_enabled("harness_drop_stops_running_containers", true) {
        return;
    }
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new();
        lab.create_base("base");
        lab.overlay_clone("base", "c1");
        lab.start(lab.lxcpath(), "c1");
        let pid = lab.init_pid(lab.lxcpath(), "c1");
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        seen = Some((pid, lab.env.path().to_path_buf()));
        panic!("test failure while c1 runs");
    }));
    assert!(result.is_err(), "the closure panics");
    let (pid, dir) = seen.expect("container was started");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "init of c1 (pid {pid}) still runs after the Lab was dropped"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
    assert!(mounts_under(&dir).is_empty());

    // Without a panic, and with a container started from the snapdir too.
    let lab = Lab::new();
    lab.create_base("base");
    fs::create_dir_all(lab.snapdir()).expect("mkdir snapdir");
    let copy = lab.lxc_output(
        "lxc-copy",
        &[
            "-P",
            lab.lxcpath_str(),
            "-n",
            "base",
            "-N",
            "other",
            "-p",
            lab.snapdir_str(),
        ],
    );
    assert!(copy.status.success(), "{copy:?}");
    lab.start(lab.lxcpath(), "base");
    lab.start(lab.snapdir(), "other");
    lab.lxc("lxc-freeze", &["-P", lab.snapdir_str(), "-n", "other"]);
    assert_eq!(lab.state(lab.snapdir(), "other"), "FROZEN");
    let pids = [
        lab.init_pid(lab.lxcpath(), "base"),
        lab.init_pid(lab.snapdir(), "other"),
    ];
    let dir = lab.env.path().to_path_buf();
    drop(lab);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }
    assert!(!dir.exists());
}

#[test]
fn harness_drop_detaches_mounts_left_under_the_temp_dir() {
    if !common::system_tests_enabled("harness_drop_detaches_mounts", false) {
        return;
    }
    use nix::mount::{mount, MsFlags};
    let lab = Lab::new();
    let outer = lab.lxcpath().join("m");
    fs::create_dir_all(&outer).expect("mkdir");
    mount(
        Some("tmpfs"),
        &outer,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount tmpfs");
    let inner = outer.join("with space");
    fs::create_dir_all(&inner).expect("mkdir");
    mount(
        Some("tmpfs"),
        &inner,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount nested tmpfs");
    fs::write(inner.join("f"), "x").expect("write");
    let dir = lab.env.path().to_path_buf();
    assert_eq!(mounts_under(&dir), vec![inner.clone(), outer.clone()]);
    drop(lab);
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    assert!(!dir.exists());
}

// ---------------------------------------------------------------------------
// Scenarios with the real binary
// ---------------------------------------------------------------------------

#[test]
fn overlay_round_trip() {
    if !common::system_tests_enabled("overlay_round_trip", true) {
        return;
    }
    let lab = mysql_lab();
    let env = &lab.env;
    let lxcpath = lab.lxcpath().display().to_string();
    let mysql_mac = config_value(&lab.config(lab.lxcpath(), "mysql"), "lxc.net.0.hwaddr");

    lab.start(lab.lxcpath(), "mysql");
    assert_eq!(
        lab.attach(lab.lxcpath(), "mysql", "cat /sys/class/net/eth0/address")
            .trim(),
        mysql_mac.to_lowercase()
    );
    lab.attach(lab.lxcpath(), "mysql", FIRST_CHANGES);
    lab.stop(lab.lxcpath(), "mysql");

    let mysql_config = lab.config(lab.lxcpath(), "mysql");
    let mysql_delta = tree_manifest(&lab.delta("mysql"));
    assert!(mysql_delta["bin/vi"].is_whiteout());

    // First snapshot, comment given inline.
    assert_eq!(
        env.ok(&["snap", "-m", "first comment", "mysql"]),
        "created snapshot mysql_0\n"
    );
    assert_overlay_snapshot_layout(&lab, "mysql", "mysql_0", "base");
    let snap0 = lab.snapdir().join("mysql_0");
    assert_eq!(read(&snap0.join("comment")).trim_end(), "first comment");
    // The captured layer is an exact copy, whiteout and opaque dir included.
    let captured0 = tree_manifest(&snap0.join("private/delta"));
    assert_same_tree("mysql_0 vs mysql's delta", &mysql_delta, &captured0, &[]);
    assert!(
        captured0["bin/vi"].is_whiteout(),
        "{:?}",
        captured0["bin/vi"]
    );
    assert_eq!(
        captured0["etc/udhcpc"].xattrs.get("trusted.overlay.opaque"),
        Some(&b"y".to_vec())
    );
    // Snapping leaves the container alone.
    assert_eq!(lab.config(lab.lxcpath(), "mysql"), mysql_config);
    assert_same_tree(
        "mysql after snap",
        &mysql_delta,
        &tree_manifest(&lab.delta("mysql")),
        &[],
    );
    assert_eq!(env.ok(&["comment", "mysql_0"]).trim_end(), "first comment");

    // More changes, second snapshot with the comment from a file.
    change_mysql(&lab, SECOND_CHANGES);
    let comment_file = env.path().join("comment.txt");
    let comment = "Second: added /root/second\nremoved /bin/less\n";
    fs::write(&comment_file, comment).expect("writing comment");
    assert_eq!(
        env.ok(&["snap", "-c", comment_file.to_str().expect("utf-8"), "mysql"]),
        "created snapshot mysql_1\n"
    );
    assert_overlay_snapshot_layout(&lab, "mysql", "mysql_1", "base");
    assert_eq!(read(&lab.snapdir().join("mysql_1/comment")), comment);

    // list: one row for mysql, two snapshots.
    let rows = table_rows(&env.ok(&["list"]));
    // Times in the viewer's zone, named in the header.
    let zone = format!("({})", lxc_snap::ui::zone_label());
    assert_eq!(
        rows[0],
        ["CONTAINER", "SNAPSHOTS", "NEWEST", zone.as_str(), "DISK"],
        "{rows:?}"
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][..2], ["mysql", "2"], "{rows:?}");
    assert_local_time(&rows[1][2], &rows[1][3]);
    // In exact bytes, the snapdir's total is what du says it holds.
    let listed = env.ok(&["--bytes", "list"]);
    let total = listed.lines().last().expect("a total line");
    let words: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        words[..6],
        ["total:", "2", "snapshots", "in", "1", "container,"],
        "{listed}"
    );
    let on_disk: u64 = words[6].parse().expect("bytes");
    let du = common::du(lab.snapdir());
    assert!(
        on_disk.abs_diff(du) * 100 <= du * 3,
        "on disk {on_disk}, du -s {du}: {listed}"
    );
    let family: u64 = table_rows(&listed)[1][4].parse().expect("bytes");
    assert!(family < on_disk, "{listed}");
    let all = json(&env.ok(&["list", "--json"]));
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["container"], "mysql");
    assert_eq!(all[0]["snapshots"], 2);
    rfc3339(&all[0]["newest"]);

    // list mysql
    let rows = table_rows(&env.ok(&["list", "mysql"]));
    assert_eq!(
        rows[0],
        [
            "SNAPSHOT",
            "CREATED",
            zone.as_str(),
            "REFER",
            "USED",
            "PINNED",
            "COMMENT"
        ],
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[1][0], "mysql_0");
    assert_eq!(rows[2][0], "mysql_1");
    for row in &rows[1..] {
        assert_local_time(&row[1], &row[2]);
        assert!(row[3].parse::<f64>().is_ok(), "size {row:?}");
        assert!(row[4].ends_with('B'), "size unit {row:?}");
        assert!(row[5].parse::<f64>().is_ok(), "used {row:?}");
        assert!(row[6].ends_with('B'), "used unit {row:?}");
    }
    assert_eq!(rows[1][7..].join(" "), "first comment");
    assert_eq!(rows[2][7..].join(" "), "Second: added /root/second");
    // The total line adds up USED, and says what the family takes on disk.
    let exact = env.ok(&["--bytes", "list", "mysql"]);
    let used: u64 = table_rows(&exact)[1..]
        .iter()
        .map(|r| r[4].parse::<u64>().expect("exact USED"))
        .sum();
    let refer: Vec<u64> = table_rows(&exact)[1..]
        .iter()
        .map(|r| r[3].parse::<u64>().expect("exact REFER"))
        .collect();
    let total = exact.lines().last().expect("a total line");
    assert!(
        total.starts_with(&format!(
            "total: 2 snapshots, USED {used} in all, {family} on disk"
        )),
        "{exact}"
    );
    // REFER is allocated bytes of what was captured, as du counts them:
    // the whole tree of mysql_0; for the layer mysql_1, the tree it
    // stands for, the container's delta as it still is.
    let snaps = snapshots_json(&lab, "mysql");
    assert!(snaps[0]["layer_over"].is_null());
    let trees = [
        lab.snapdir().join("mysql_0/private/delta"),
        match snaps[1]["layer_over"].as_str() {
            Some(_) => lab.delta("mysql"),
            None => lab.snapdir().join("mysql_1/private/delta"),
        },
    ];
    for (i, (r, tree)) in refer.iter().zip(&trees).enumerate() {
        let du = common::du(tree);
        assert!(r.abs_diff(du) <= 4096, "mysql_{i}: REFER {r}, du {du}");
    }
    let picked = env.ok(&["list", "mysql", "-o", "number,stored,files"]);
    let want: Vec<String> = snapshots_json(&lab, "mysql")
        .iter()
        .map(|s| {
            let stored = match s["layer_over"].as_str() {
                Some(a) => format!("layer over {a}"),
                None => "whole".to_string(),
            };
            format!("{} {stored} {}", s["number"], s["files"])
        })
        .collect();
    let got: Vec<String> = table_rows(&picked).iter().map(|r| r.join(" ")).collect();
    assert_eq!(got[0], "NUMBER STORED FILES", "{picked}");
    assert_eq!(got[1..], want, "{picked}");
    let err = env.fails_with(2, &["list", "mysql", "-o", "disk"]);
    assert!(
        err.contains("-o disk: no such column when listing snapshots"),
        "{err}"
    );

    let snaps = snapshots_json(&lab, "mysql");
    assert_eq!(names_of(&snaps), ["mysql_0", "mysql_1"]);
    for (i, s) in snaps.iter().enumerate() {
        let name = format!("mysql_{i}");
        assert_eq!(s["container"], "mysql");
        assert_eq!(s["number"], i);
        assert_eq!(s["backing"], "overlay");
        assert_eq!(s["lxcpath"], lxcpath.as_str());
        assert_eq!(
            s["lowers"],
            serde_json::json!([format!("{lxcpath}/base/rootfs")])
        );
        assert_eq!(
            s["path"],
            lab.snapdir().join(&name).display().to_string().as_str()
        );
        assert!(s["files"].as_u64().expect("files") >= 5, "{s}");
        assert!(s["bytes"].as_u64().expect("bytes") >= 10_000, "{s}");
        // `created_at` is the same instant as the ts file, in UTC.
        let created_at = s["created_at"].as_str().expect("created_at");
        assert!(created_at.ends_with('Z'), "{created_at}");
        let created = rfc3339(&s["created_at"]);
        let ts = read(&lab.snapdir().join(&name).join("ts"));
        assert_eq!(
            created
                .with_timezone(&chrono::Local)
                .format("%Y:%m:%d %H:%M:%S")
                .to_string(),
            ts
        );
    }
    assert_eq!(snaps[0]["comment"], "first comment");
    assert_eq!(snaps[1]["comment"], comment);

    // Restore the second snapshot under a new name, and again with -r.
    assert_eq!(
        env.ok(&["restore", "mysql_1", "mysql_tmp"]),
        "restored mysql_1 as mysql_tmp\n"
    );
    assert_restored_overlay(&lab, "mysql_1", "mysql_tmp", "base");
    assert_eq!(
        env.ok(&["-r", "mysql_1", "mysql_tmp2"]),
        "restored mysql_1 as mysql_tmp2\n"
    );
    assert_restored_overlay(&lab, "mysql_1", "mysql_tmp2", "base");
    assert_eq!(
        env.ok(&["restore", "mysql_0", "mysql_first"]),
        "restored mysql_0 as mysql_first\n"
    );
    assert_restored_overlay(&lab, "mysql_0", "mysql_first", "base");

    // New MACs, each from lxc-snap's prefix, none shared.
    let mut macs = BTreeSet::from([mysql_mac.to_lowercase()]);
    for new in ["mysql_tmp", "mysql_tmp2", "mysql_first"] {
        let mac = config_value(&lab.config(lab.lxcpath(), new), "lxc.net.0.hwaddr");
        assert!(mac.to_lowercase().starts_with("10:66:6a:"), "{new}: {mac}");
        assert!(macs.insert(mac.to_lowercase()), "{new} reuses MAC {mac}");
    }

    // Boot the restored container and look inside.
    let tmp_mac = config_value(&lab.config(lab.lxcpath(), "mysql_tmp"), "lxc.net.0.hwaddr");
    let lp = lab.lxcpath();
    lab.start(lp, "mysql_tmp");
    assert_eq!(lab.attach(lp, "mysql_tmp", "hostname").trim(), "mysql-tmp");
    assert_eq!(
        lab.attach(lp, "mysql_tmp", "cat /etc/hostname").trim(),
        "mysql-tmp"
    );
    assert_eq!(
        lab.attach(lp, "mysql_tmp", "cat /sys/class/net/eth0/address")
            .trim(),
        tmp_mac.to_lowercase()
    );
    assert_eq!(
        lab.attach(lp, "mysql_tmp", "wc -c < /root/added").trim(),
        "10000"
    );
    assert_eq!(lab.attach(lp, "mysql_tmp", "cat /root/second"), "second\n");
    assert_eq!(
        lab.attach(lp, "mysql_tmp", "tail -n 1 /etc/fstab"),
        "# changed in mysql\n"
    );
    assert!(!present(&lab, lp, "mysql_tmp", "/bin/vi"));
    assert!(!present(&lab, lp, "mysql_tmp", "/bin/less"));
    assert!(present(&lab, lp, "mysql_tmp", "/bin/sh"));
    assert_eq!(
        lab.attach(lp, "mysql_tmp", "ls -A /etc/udhcpc"),
        "new.script\nother.conf\n"
    );
    lab.stop(lp, "mysql_tmp");

    // The first snapshot has the first state only.
    lab.start(lp, "mysql_first");
    assert_eq!(
        lab.attach(lp, "mysql_first", "hostname").trim(),
        "mysql-first"
    );
    assert!(present(&lab, lp, "mysql_first", "/root/added"));
    assert!(!present(&lab, lp, "mysql_first", "/root/second"));
    assert!(present(&lab, lp, "mysql_first", "/bin/less"));
    assert!(!present(&lab, lp, "mysql_first", "/bin/vi"));
    lab.stop(lp, "mysql_first");

    // The base is protected by its dependents.
    let destroy = lab.lxc_output("lxc-destroy", &["-P", lab.lxcpath_str(), "-n", "base"]);
    assert!(
        !destroy.status.success(),
        "lxc-destroy -n base succeeded with dependents"
    );
    assert!(lab.lxcpath().join("base/rootfs/bin/busybox").exists());
    let deps = dependency_pairs(&lab.lxcpath().join("base/lxc_snapshots"));
    for name in ["mysql", "mysql_tmp", "mysql_tmp2", "mysql_first"] {
        assert!(
            deps.contains(&(lxcpath.clone(), name.to_string())),
            "base/lxc_snapshots lacks {name}: {deps:?}"
        );
    }
    // mysql itself and its snapshots are unchanged by all of this.
    assert_eq!(lab.config(lab.lxcpath(), "mysql"), mysql_config);
    assert_same_tree(
        "mysql_0 after restores",
        &captured0,
        &tree_manifest(&snap0.join("private/delta")),
        &[],
    );
}

#[test]
fn snapshots_are_numbered_and_names_match_exactly() {
    if !common::system_tests_enabled("snapshots_are_numbered_and_names_match_exactly", true) {
        return;
    }
    let lab = Lab::new();
    let env = &lab.env;
    lab.create_base("base");
    lab.overlay_clone("base", "my");
    lab.overlay_clone("base", "my_db");

    // Legacy spelling and subcommand give the same numbering.
    assert_eq!(env.ok(&["my"]), "created snapshot my_0\n");
    assert_eq!(env.ok(&["snap", "my"]), "created snapshot my_1\n");
    assert_eq!(env.ok(&["snap", "my_db"]), "created snapshot my_db_0\n");
    assert!(lab.snapdir().join("my_0/config").exists());
    assert!(lab.snapdir().join("my_1/config").exists());
    assert!(lab.snapdir().join("my_db_0/config").exists());

    assert_eq!(names_of(&snapshots_json(&lab, "my")), ["my_0", "my_1"]);
    assert_eq!(names_of(&snapshots_json(&lab, "my_db")), ["my_db_0"]);
    let legacy = json(&env.ok(&["-l", "my", "--json"]));
    assert_eq!(
        names_of(legacy.as_array().expect("array")),
        ["my_0", "my_1"]
    );
    for s in snapshots_json(&lab, "my_db") {
        assert_eq!(s["container"], "my_db");
        assert_eq!(s["number"], 0);
    }
    let all = json(&env.ok(&["-l", "--json"]));
    let mut counts: Vec<(String, u64)> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|c| {
            (
                c["container"].as_str().expect("container").to_string(),
                c["snapshots"].as_u64().expect("snapshots"),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(counts, [("my".to_string(), 2), ("my_db".to_string(), 1)]);

    // A number is never issued twice, even after its snapshot is gone.
    fs::remove_dir_all(lab.snapdir().join("my_1")).expect("rm my_1");
    assert_eq!(env.ok(&["snap", "my"]), "created snapshot my_2\n");
    assert_eq!(names_of(&snapshots_json(&lab, "my")), ["my_0", "my_2"]);

    // _10 sorts after _9.
    lab.overlay_clone("base", "t");
    for i in 0..11 {
        assert_eq!(
            env.ok(&["-q", "snap", "t"]),
            "",
            "snap {i} with -q prints nothing"
        );
    }
    let snaps = snapshots_json(&lab, "t");
    let expected: Vec<String> = (0..11).map(|i| format!("t_{i}")).collect();
    assert_eq!(names_of(&snaps), expected);
    let numbers: Vec<u64> = snaps
        .iter()
        .map(|s| s["number"].as_u64().expect("number"))
        .collect();
    assert_eq!(numbers, (0..11).collect::<Vec<u64>>());
    let rows = table_rows(&env.ok(&["list", "t"]));
    let firsts: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(firsts, expected);
}

#[test]
fn starting_a_snapshot_does_not_change_it() {
    if !common::system_tests_enabled("starting_a_snapshot_does_not_change_it", true) {
        return;
    }
    let lab = mysql_lab();
    let env = &lab.env;
    change_mysql(&lab, FIRST_CHANGES);
    assert_eq!(env.ok(&["snap", "mysql"]), "created snapshot mysql_0\n");
    let snap = lab.snapdir().join("mysql_0");
    let captured = tree_manifest(&snap.join("private/delta"));
    let config = read(&snap.join("config"));
    let meta = read(&snap.join("lxc-snap.json"));
    let ts = read(&snap.join("ts"));

    let sd = lab.snapdir();
    lab.start(sd, "mysql_0");
    // Its own name, as a host name can be.
    assert_eq!(lab.attach(sd, "mysql_0", "hostname").trim(), "mysql-0");
    assert_eq!(
        lab.attach(sd, "mysql_0", "cat /etc/hostname").trim(),
        "mysql-0"
    );
    assert!(config.contains("lxc.uts.name = mysql-0\n"), "{config}");
    let err = env.fails_with(5, &["reset", "mysql_0"]);
    assert!(err.contains("running"), "{err}");
    assert_eq!(
        lab.attach(sd, "mysql_0", "wc -c < /root/added").trim(),
        "10000"
    );
    lab.attach(
        sd,
        "mysql_0",
        "echo boot > /root/written-by-boot && rm /root/added && rm -rf /etc/udhcpc && \
         echo more >> /etc/fstab && echo other > /etc/hostname && sync",
    );
    assert!(!present(&lab, sd, "mysql_0", "/root/added"));
    lab.stop(sd, "mysql_0");

    // The writes went to the scratch upper, never into the captured layer.
    assert_same_tree(
        "mysql_0's layer after a boot",
        &captured,
        &tree_manifest(&snap.join("private/delta")),
        &[],
    );
    assert_eq!(
        read(&snap.join("private/scratch/upper/root/written-by-boot")),
        "boot\n"
    );
    assert_eq!(read(&snap.join("config")), config);
    assert_eq!(read(&snap.join("lxc-snap.json")), meta);
    assert_eq!(read(&snap.join("ts")), ts);
    let scratch = |env: &common::TestEnv| {
        json(&env.ok(&["info", "mysql_0", "--json"]))["scratch_bytes"]
            .as_u64()
            .expect("scratch size")
    };
    let written = scratch(env);
    assert!(
        written > 4 * 4096,
        "info counts what the boot wrote: {written}"
    );

    // The next start begins from what was captured.
    lab.start(sd, "mysql_0");
    assert!(!present(&lab, sd, "mysql_0", "/root/written-by-boot"));
    assert!(present(&lab, sd, "mysql_0", "/root/added"));
    assert!(present(&lab, sd, "mysql_0", "/etc/udhcpc"));
    assert_eq!(
        lab.attach(sd, "mysql_0", "cat /etc/hostname").trim(),
        "mysql-0"
    );
    lab.attach(sd, "mysql_0", "echo again > /root/second-boot && sync");
    lab.stop(sd, "mysql_0");
    // And reset empties it at once.
    let out = env.ok(&["reset", "mysql_0"]);
    assert!(
        out.starts_with("reset mysql_0: removed what it wrote when started ("),
        "{out}"
    );
    assert!(!snap.join("private/scratch/upper/root").exists());
    assert!(scratch(env) < written);
    assert_same_tree(
        "mysql_0's layer after two boots and a reset",
        &captured,
        &tree_manifest(&snap.join("private/delta")),
        &[],
    );

    // A restore gives exactly the captured files.
    assert_eq!(
        env.ok(&["restore", "mysql_0", "again"]),
        "restored mysql_0 as again\n"
    );
    assert_same_tree(
        "restored from a booted snapshot",
        &captured,
        &tree_manifest(&lab.delta("again")),
        &["etc/hostname"],
    );
    assert!(!lab.delta("again").join("root/written-by-boot").exists());
    lab.start(lab.lxcpath(), "again");
    assert!(present(&lab, lab.lxcpath(), "again", "/root/added"));
    assert!(!present(
        &lab,
        lab.lxcpath(),
        "again",
        "/root/written-by-boot"
    ));
    assert_eq!(
        lab.attach(lab.lxcpath(), "again", "ls -A /etc/udhcpc"),
        "new.script\nother.conf\n"
    );
    assert_eq!(
        lab.attach(lab.lxcpath(), "again", "cat /etc/hostname")
            .trim(),
        "again"
    );
    lab.stop(lab.lxcpath(), "again");
    assert!(!read(&lab.lxcpath().join("again/config")).contains("reset --from-lxc"));

    // A name that is no host name gives one that is, and says so.
    let out = env.run(&["restore", "mysql_0", "mysql_tmp"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mysql_tmp is called mysql-tmp inside"),
        "{stderr}"
    );
    assert!(read(&lab.lxcpath().join("mysql_tmp/config")).contains("lxc.uts.name = mysql-tmp\n"));
    assert_eq!(
        read(&lab.delta("mysql_tmp").join("etc/hostname")),
        "mysql-tmp\n"
    );
}

#[test]
fn dir_backed_round_trip() {
    if !common::system_tests_enabled("dir_backed_round_trip", true) {
        return;
    }
    let lab = Lab::new();
    let env = &lab.env;
    let lp = lab.lxcpath();
    lab.create_base("plain");
    lab.start(lp, "plain");
    lab.attach(
        lp,
        "plain",
        "echo added > /root/added && rm /bin/vi && echo plain > /etc/hostname && sync",
    );
    lab.stop(lp, "plain");
    let plain_config = lab.config(lp, "plain");

    std::fs::create_dir(lab.snapdir()).expect("mkdir snapdir");
    let out = env.run(&["snap", "plain"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "created snapshot plain_0\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The spec fixes what the line says, not its words: a full copy was made.
    assert!(
        stderr.contains("full") || stderr.contains("whole"),
        "stderr does not say it copied everything: {stderr}"
    );
    assert!(
        stderr.contains("lxc-copy -s -B overlayfs -n plain -N plain-ov"),
        "stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert_eq!(lab.config(lp, "plain"), plain_config);

    let snap = lab.snapdir().join("plain_0");
    assert_eq!(mode(&snap.join("private")), 0o700);
    let s = snap.display().to_string();
    assert_eq!(
        config_value(&lab.config(lab.snapdir(), "plain_0"), "lxc.rootfs.path"),
        format!("overlay:{s}/private/rootfs:{s}/private/scratch/upper")
    );
    assert_eq!(
        config_value(&lab.config(lab.snapdir(), "plain_0"), "lxc.uts.name"),
        "plain-0"
    );
    assert_same_tree(
        "captured rootfs vs plain's",
        &tree_manifest(&lp.join("plain/rootfs")),
        &tree_manifest(&snap.join("private/rootfs")),
        &[],
    );
    let snaps = snapshots_json(&lab, "plain");
    assert_eq!(names_of(&snaps), ["plain_0"]);
    assert_eq!(snaps[0]["backing"], "dir");
    assert_eq!(snaps[0]["comment"], Value::Null);
    assert!(!snap.join("comment").exists());

    assert_eq!(
        env.ok(&["restore", "plain_0", "plain2"]),
        "restored plain_0 as plain2\n"
    );
    let config = lab.config(lp, "plain2");
    let rootfs = config_value(&config, "lxc.rootfs.path");
    let want = format!("{}/plain2/rootfs", lp.display());
    assert!(
        rootfs == want || rootfs == format!("dir:{want}"),
        "restored rootfs {rootfs}"
    );
    assert_eq!(config_value(&config, "lxc.uts.name"), "plain2");
    assert!(!lp.join("plain2/lxc_rdepends").exists());
    assert_same_tree(
        "restored dir-backed rootfs vs captured",
        &tree_manifest(&snap.join("private/rootfs")),
        &tree_manifest(&lp.join("plain2/rootfs")),
        &["etc/hostname"],
    );

    lab.start(lp, "plain2");
    assert_eq!(lab.attach(lp, "plain2", "hostname").trim(), "plain2");
    assert_eq!(
        lab.attach(lp, "plain2", "cat /etc/hostname").trim(),
        "plain2"
    );
    assert_eq!(lab.attach(lp, "plain2", "cat /root/added"), "added\n");
    assert!(!present(&lab, lp, "plain2", "/bin/vi"));
    lab.stop(lp, "plain2");
    // The original is untouched by the restore.
    assert_eq!(read(&lp.join("plain/rootfs/etc/hostname")), "plain\n");
}

#[test]
fn running_or_frozen_container_is_refused() {
    if !common::system_tests_enabled("running_or_frozen_container_is_refused", true) {
        return;
    }
    let lab = mysql_lab();
    let env = &lab.env;
    let lp = lab.lxcpath();
    lab.start(lp, "mysql");

    let stderr = env.fails_with(5, &["snap", "mysql"]);
    assert!(stderr.starts_with("lxc-snap: "), "stderr: {stderr}");
    assert!(
        stderr.to_lowercase().contains("running"),
        "stderr: {stderr}"
    );
    assert_eq!(lab.state(lp, "mysql"), "RUNNING");
    assert!(
        snapdir_entries(&lab).is_empty(),
        "{:?}",
        dir_names(lab.snapdir())
    );

    let stderr = env.fails_with(5, &["mysql"]);
    assert!(
        stderr.to_lowercase().contains("running"),
        "stderr: {stderr}"
    );

    lab.lxc("lxc-freeze", &["-P", lab.lxcpath_str(), "-n", "mysql"]);
    assert_eq!(lab.state(lp, "mysql"), "FROZEN");
    let stderr = env.fails_with(5, &["snap", "mysql"]);
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("frozen") || lower.contains("running"),
        "stderr: {stderr}"
    );
    assert_eq!(lab.state(lp, "mysql"), "FROZEN");
    assert!(
        snapdir_entries(&lab).is_empty(),
        "{:?}",
        dir_names(lab.snapdir())
    );
    lab.lxc("lxc-unfreeze", &["-P", lab.lxcpath_str(), "-n", "mysql"]);
    lab.stop(lp, "mysql");

    // The refusals used up no number.
    assert_eq!(env.ok(&["snap", "mysql"]), "created snapshot mysql_0\n");
}

#[test]
fn restore_and_name_errors() {
    if !common::system_tests_enabled("restore_and_name_errors", true) {
        return;
    }
    let lab = mysql_lab();
    let env = &lab.env;
    let lp = lab.lxcpath();
    change_mysql(&lab, FIRST_CHANGES);

    // Invalid names are refused before anything touches the disk.
    let long = "a".repeat(65);
    let invalid: [&str; 10] = [
        "../x", "-x", "a/b", &long, "", ".", "..", ".hidden", "a\tb", "a\nb",
    ];
    let before = tree_manifest(lp);
    for name in invalid {
        env.fails_with(2, &["snap", name]);
        env.fails_with(2, &["snap", "--", name]);
        assert!(
            !lab.snapdir().exists(),
            "snap {name:?} created {}",
            lab.snapdir().display()
        );
    }
    // Nonexistent containers.
    env.fails_with(3, &["snap", "nosuch"]);
    env.fails_with(3, &["list", "nosuch"]);
    env.fails_with(3, &["list", "nosuch", "--json"]);
    assert_same_tree(
        "lxcpath after refused snaps",
        &before,
        &tree_manifest(lp),
        &[],
    );
    // A missing snapdir is no empty one.
    env.fails_with(3, &["list", "mysql", "--json"]);
    std::fs::create_dir(lab.snapdir()).expect("mkdir snapdir");
    // A container without snapshots lists as empty.
    assert_eq!(
        json(&env.ok(&["list", "mysql", "--json"])),
        serde_json::json!([])
    );
    assert_eq!(json(&env.ok(&["list", "--json"])), serde_json::json!([]));

    assert_eq!(env.ok(&["snap", "mysql"]), "created snapshot mysql_0\n");
    let before = tree_manifest(lp);
    let before_snaps = tree_manifest(lab.snapdir());
    let mysql_config = lab.config(lp, "mysql");

    for name in invalid {
        env.fails_with(2, &["restore", "mysql_0", name]);
        env.fails_with(2, &["restore", "mysql_0", "--", name]);
        env.fails_with(2, &["-r", "mysql_0", name]);
        env.fails_with(2, &["restore", name, "fresh"]);
    }
    // Restoring onto an existing container changes nothing.
    for target in ["mysql", "base"] {
        let stderr = env.fails_with(4, &["restore", "mysql_0", target]);
        assert!(stderr.starts_with("lxc-snap: "), "stderr: {stderr}");
        env.fails_with(4, &["-r", "mysql_0", target]);
    }
    // Unknown snapshots.
    env.fails_with(3, &["restore", "mysql_7", "fresh"]);
    env.fails_with(3, &["restore", "nosuch_0", "fresh"]);
    env.fails_with(3, &["-r", "nosuch_0", "fresh"]);
    assert!(!lp.join("fresh").exists());

    assert_eq!(lab.config(lp, "mysql"), mysql_config);
    assert_same_tree(
        "lxcpath after refused restores",
        &before,
        &tree_manifest(lp),
        &[],
    );
    assert_same_tree(
        "snapdir after refused restores",
        &before_snaps,
        &tree_manifest(lab.snapdir()),
        &[],
    );

    // Exactly 64 bytes is a valid name.
    let max = "b".repeat(64);
    assert_eq!(
        env.ok(&["restore", "mysql_0", &max]),
        format!("restored mysql_0 as {max}\n")
    );
    // A host name is at most 63 bytes.
    assert_eq!(
        config_value(&lab.config(lp, &max), "lxc.uts.name"),
        "b".repeat(63)
    );
    lab.lxc("lxc-destroy", &["-P", lab.lxcpath_str(), "-n", &max]);

    // Restore under the original name once it is gone.
    lab.lxc("lxc-destroy", &["-P", lab.lxcpath_str(), "-n", "mysql"]);
    assert!(!lp.join("mysql").exists());
    assert_eq!(
        env.ok(&["restore", "mysql_0", "mysql"]),
        "restored mysql_0 as mysql\n"
    );
    assert_restored_overlay(&lab, "mysql_0", "mysql", "base");
    let lxcpath = lp.display().to_string();
    let deps = dependency_pairs(&lp.join("base/lxc_snapshots"));
    assert_eq!(
        deps.iter()
            .filter(|d| **d == (lxcpath.clone(), "mysql".to_string()))
            .count(),
        1,
        "{deps:?}"
    );
    lab.start(lp, "mysql");
    assert_eq!(lab.attach(lp, "mysql", "hostname").trim(), "mysql");
    assert_eq!(lab.attach(lp, "mysql", "cat /etc/hostname").trim(), "mysql");
    assert!(present(&lab, lp, "mysql", "/root/added"));
    assert!(!present(&lab, lp, "mysql", "/bin/vi"));
    lab.stop(lp, "mysql");
    // The restored container snaps on with the next number.
    assert_eq!(env.ok(&["snap", "mysql"]), "created snapshot mysql_1\n");
}

#[test]
fn concurrent_snaps_get_distinct_numbers() {
    if !common::system_tests_enabled("concurrent_snaps_get_distinct_numbers", true) {
        return;
    }
    const ROUNDS: usize = 3;
    const MYSQL_AT_ONCE: usize = 3;
    const OTHER_AT_ONCE: usize = 2;
    let lab = mysql_lab();
    let env = &lab.env;
    change_mysql(&lab, FIRST_CHANGES);
    // A second container with a bigger delta, so that its copies are in
    // flight while mysql's snaps start (and look for leftovers).
    lab.overlay_clone("base", "other");
    lab.start(lab.lxcpath(), "other");
    lab.attach(
        lab.lxcpath(),
        "other",
        "dd if=/dev/zero of=/root/big bs=1M count=32 2>/dev/null && sync",
    );
    lab.stop(lab.lxcpath(), "other");
    let deltas = [
        ("mysql", tree_manifest(&lab.delta("mysql"))),
        ("other", tree_manifest(&lab.delta("other"))),
    ];

    let mut printed = BTreeSet::new();
    for _round in 0..ROUNDS {
        let names = std::iter::repeat("other")
            .take(OTHER_AT_ONCE)
            .chain(std::iter::repeat("mysql").take(MYSQL_AT_ONCE));
        let children: Vec<_> = names
            .map(|name| {
                env.cmd()
                    .args(["snap", name])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawning lxc-snap")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("waiting for lxc-snap");
            assert!(
                out.status.success(),
                "concurrent snap failed: {:?}\nstderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(printed.insert(line.clone()), "number issued twice: {line}");
        }
    }
    let mut expected = BTreeSet::new();
    for (name, count) in [("mysql", MYSQL_AT_ONCE), ("other", OTHER_AT_ONCE)] {
        for i in 0..ROUNDS * count {
            expected.insert(format!("created snapshot {name}_{i}\n"));
        }
    }
    assert_eq!(printed, expected);
    assert!(tmp_leftovers(&lab).is_empty(), "{:?}", tmp_leftovers(&lab));
    for ((name, delta), count) in deltas.iter().zip([MYSQL_AT_ONCE, OTHER_AT_ONCE]) {
        let all: Vec<String> = (0..ROUNDS * count).map(|i| format!("{name}_{i}")).collect();
        assert_eq!(names_of(&snapshots_json(&lab, name)), all);
        for snap in &all {
            assert_overlay_snapshot_layout(&lab, name, snap, "base");
            assert_same_tree(
                &format!("{snap} vs {name}'s delta"),
                delta,
                &tree_manifest(&captured_in(lab.snapdir(), env.path(), snap)),
                &[],
            );
        }
    }
}

#[test]
fn leftover_temporary_snapshot_is_hidden_then_removed() {
    if !common::system_tests_enabled("leftover_temporary_snapshot_is_hidden_then_removed", true) {
        return;
    }
    let lab = mysql_lab();
    let env = &lab.env;
    change_mysql(&lab, FIRST_CHANGES);

    // What a crash half-way through `snap mysql` leaves behind.
    let leftover = lab.snapdir().join(".lxc-snap.tmp.mysql_0.crashed");
    fs::create_dir_all(leftover.join("private/delta/root")).expect("mkdir");
    fs::write(leftover.join("private/delta/root/half"), "half").expect("write");
    fs::write(leftover.join("config"), lab.config(lab.lxcpath(), "mysql")).expect("write");
    fs::write(leftover.join("ts"), "2020:01:01 00:00:00").expect("write");

    assert_eq!(json(&env.ok(&["list", "--json"])), serde_json::json!([]));
    assert_eq!(
        json(&env.ok(&["list", "mysql", "--json"])),
        serde_json::json!([])
    );
    let listing = env.ok(&["list"]);
    assert!(!listing.contains("lxc-snap.tmp"), "{listing}");
    assert!(!listing.contains("mysql"), "{listing}");
    assert!(leftover.exists(), "list must not clean up");

    let out = env.run(&["snap", "mysql"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "created snapshot mysql_0\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".lxc-snap.tmp.mysql_0.crashed"),
        "leftover not reported: {stderr}"
    );
    assert!(!leftover.exists(), "leftover not removed");
    assert!(tmp_leftovers(&lab).is_empty());
    assert!(!lab
        .snapdir()
        .join("mysql_0/private/delta/root/half")
        .exists());
    assert_overlay_snapshot_layout(&lab, "mysql", "mysql_0", "base");
    assert_eq!(names_of(&snapshots_json(&lab, "mysql")), ["mysql_0"]);
}

#[test]
fn lxc_snapshot_trees_in_the_snapdir_are_left_alone() {
    if !common::system_tests_enabled("lxc_snapshot_trees_in_the_snapdir_are_left_alone", true) {
        return;
    }
    let lab = mysql_lab();
    let env = &lab.env;
    change_mysql(&lab, FIRST_CHANGES);

    // What `lxc-snapshot -n mysql` writes when /var/lib/lxcsnaps exists.
    let foreign = lab.snapdir().join("mysql");
    let snap0 = foreign.join("snap0");
    fs::create_dir_all(snap0.join("rootfs/etc")).expect("mkdir");
    fs::write(
        snap0.join("config"),
        format!(
            "lxc.rootfs.path = overlay:{}/base/rootfs:{}/overlay/delta\nlxc.uts.name = snap0\n",
            lab.lxcpath().display(),
            snap0.display()
        ),
    )
    .expect("write");
    fs::write(snap0.join("ts"), "2021:02:03 04:05:06").expect("write");
    fs::write(snap0.join("rootfs/etc/marker"), "lxc-snapshot").expect("write");
    let before = tree_manifest(lab.snapdir());

    assert_eq!(json(&env.ok(&["list", "--json"])), serde_json::json!([]));
    assert_eq!(
        json(&env.ok(&["list", "mysql", "--json"])),
        serde_json::json!([])
    );
    let listing = env.ok(&["list", "mysql"]);
    assert!(!listing.contains("snap0"), "{listing}");

    assert_eq!(env.ok(&["snap", "mysql"]), "created snapshot mysql_0\n");
    assert_overlay_snapshot_layout(&lab, "mysql", "mysql_0", "base");
    let all = json(&env.ok(&["list", "--json"]));
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["container"], "mysql");
    assert_eq!(all[0]["snapshots"], 1);
    assert_eq!(names_of(&snapshots_json(&lab, "mysql")), ["mysql_0"]);
    let listing = env.ok(&["list", "mysql"]);
    assert!(!listing.contains("snap0"), "{listing}");

    let after: std::collections::BTreeMap<_, _> = tree_manifest(lab.snapdir())
        .into_iter()
        .filter(|(p, _)| p == "mysql" || p.starts_with("mysql/"))
        .collect();
    let before: std::collections::BTreeMap<_, _> = before
        .into_iter()
        .filter(|(p, _)| p == "mysql" || p.starts_with("mysql/"))
        .collect();
    assert_same_tree("lxc-snapshot's tree", &before, &after, &[]);
}

#[test]
fn snapshot_of_an_ephemeral_container_survives_being_stopped() {
    if !common::system_tests_enabled("snapshot_of_an_ephemeral_container", true) {
        return;
    }
    let lab = Lab::new();
    let env = &lab.env;
    lab.create_base("base");
    lab.overlay_clone("base", "eph");
    let config_path = lab.lxcpath().join("eph/config");
    let mut config = read(&config_path);
    config.push_str("lxc.ephemeral = 1\n");
    fs::write(&config_path, config).expect("write");

    assert_eq!(env.ok(&["snap", "eph"]), "created snapshot eph_0\n");
    let snap_config = lab.config(lab.snapdir(), "eph_0");
    for v in config_values(&snap_config, "lxc.ephemeral") {
        assert_eq!(v, "0", "snapshot keeps lxc.ephemeral = {v}");
    }
    lab.start(lab.snapdir(), "eph_0");
    // Not lab.stop: its wait would fail on a container that destroyed itself.
    lab.lxc("lxc-stop", &["-P", lab.snapdir_str(), "-n", "eph_0", "-k"]);
    assert!(
        lab.snapdir().join("eph_0/config").exists(),
        "eph_0 destroyed itself"
    );
    assert!(lab.snapdir().join("eph_0/private/delta").is_dir());
    assert_eq!(names_of(&snapshots_json(&lab, "eph")), ["eph_0"]);
}

#[test]
fn rollback_checked_from_inside_the_started_container() {
    if !common::system_tests_enabled("rollback_checked_from_inside_the_started_container", true) {
        return;
    }
    let lab = mysql_lab();
    change_mysql(&lab, FIRST_CHANGES);
    lab.env.ok(&["snap", "-m", "first", "mysql"]);
    change_mysql(&lab, SECOND_CHANGES);
    let config_before = lab.config(lab.lxcpath(), "mysql");

    // Refused while running.
    lab.start(lab.lxcpath(), "mysql");
    lab.env.fails_with(5, &["rollback", "mysql_0"]);
    lab.stop(lab.lxcpath(), "mysql");

    assert_eq!(
        lab.env.ok(&["rollback", "mysql_0"]).trim(),
        "rolled mysql back to mysql_0 (the state before is mysql_1)"
    );
    assert_eq!(
        lab.config(lab.lxcpath(), "mysql"),
        config_before,
        "host name and MACs stay"
    );
    lab.start(lab.lxcpath(), "mysql");
    let seen = lab.attach(
        lab.lxcpath(),
        "mysql",
        "test -e /root/second && echo second-present; test -e /bin/less && echo less-present; \
         head -c 7 /root/added; echo; hostname; cat /sys/class/net/eth0/address",
    );
    lab.stop(lab.lxcpath(), "mysql");
    let mac = config_value(&config_before, "lxc.net.0.hwaddr");
    assert_eq!(seen, format!("less-present\npayload\nmysql\n{mac}\n"));

    // The backup holds the state from before the rollback.
    lab.env.ok(&["rollback", "--no-backup", "mysql_1"]);
    lab.start(lab.lxcpath(), "mysql");
    let seen = lab.attach(
        lab.lxcpath(),
        "mysql",
        "cat /root/second; test -e /bin/less || echo less-gone",
    );
    lab.stop(lab.lxcpath(), "mysql");
    assert_eq!(seen, "second\nless-gone\n");
}

#[test]
fn a_rollback_killed_midway_leaves_a_startable_container() {
    if !common::system_tests_enabled(
        "a_rollback_killed_midway_leaves_a_startable_container",
        true,
    ) {
        return;
    }
    let lab = mysql_lab();
    let delta = lab.delta("mysql");
    fs::create_dir_all(delta.join("srv")).expect("mkdir");
    for i in 0..64 {
        fs::write(delta.join(format!("srv/f{i}")), vec![b'a'; 2 << 20]).expect("write");
    }
    fs::write(delta.join("srv/version"), "old\n").expect("write");
    lab.env.ok(&["-q", "mysql"]);
    fs::write(delta.join("srv/version"), "new\n").expect("write");

    let child = lab
        .env
        .cmd()
        .args(["rollback", "--no-backup", "mysql_0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let parent = delta.parent().expect("parent").to_path_buf();
    common::kill_when_staging_appears(child, &parent, ".lxc-snap.tmp.delta.");

    lab.start(lab.lxcpath(), "mysql");
    let version = lab.attach(lab.lxcpath(), "mysql", "cat /srv/version");
    lab.stop(lab.lxcpath(), "mysql");
    assert!(version == "old\n" || version == "new\n", "{version:?}");

    lab.env.ok(&["rollback", "--no-backup", "mysql_0"]);
    lab.start(lab.lxcpath(), "mysql");
    assert_eq!(
        lab.attach(lab.lxcpath(), "mysql", "cat /srv/version"),
        "old\n"
    );
    lab.stop(lab.lxcpath(), "mysql");
}

/// A snapshot stored as a layer boots as a container over the tree of the
/// snapshot it is stored as changes to, and neither tree is written.
#[test]
fn a_layer_boots_over_the_older_snapshot_without_writing_either() {
    if !common::system_tests_enabled(
        "a_layer_boots_over_the_older_snapshot_without_writing_either",
        true,
    ) {
        return;
    }
    let lab = Lab::new();
    let env = &lab.env;
    lab.create_base("base");
    lab.overlay_clone("base", "c1");
    lab.start(lab.lxcpath(), "c1");
    lab.attach(
        lab.lxcpath(),
        "c1",
        "echo one > /root/one && rm /bin/vi && sync",
    );
    lab.stop(lab.lxcpath(), "c1");
    env.ok(&["-q", "c1"]);
    lab.start(lab.lxcpath(), "c1");
    lab.attach(
        lab.lxcpath(),
        "c1",
        "echo two > /root/two && rm /root/one && sync",
    );
    lab.stop(lab.lxcpath(), "c1");
    env.ok(&["-q", "c1"]);
    let layer = json(&read(&lab.snapdir().join("c1_1/lxc-snap.json")))["layer"].clone();
    assert_eq!(layer["anchor"], "c1_0", "{layer}");
    let trees = |snap: &str| tree_manifest(&lab.snapdir().join(snap).join("private/delta"));
    let (before0, before1) = (trees("c1_0"), trees("c1_1"));
    assert!(
        !before1.contains_key("bin"),
        "the layer holds only the changes"
    );

    // LXC itself will not destroy the snapshot the layer needs.
    let destroy = lab.lxc_output("lxc-destroy", &["-P", lab.snapdir_str(), "-n", "c1_0"]);
    assert!(!destroy.status.success(), "{destroy:?}");
    assert!(lab.snapdir().join("c1_0/private/delta").is_dir());

    lab.start(lab.snapdir(), "c1_1");
    assert_eq!(lab.attach(lab.snapdir(), "c1_1", "hostname").trim(), "c1-1");
    assert_eq!(lab.attach(lab.snapdir(), "c1_1", "cat /root/two"), "two\n");
    assert!(!present(&lab, lab.snapdir(), "c1_1", "/root/one"));
    assert!(!present(&lab, lab.snapdir(), "c1_1", "/bin/vi"));
    assert!(present(&lab, lab.snapdir(), "c1_1", "/bin/sh"));
    let mounts = lab.attach(lab.snapdir(), "c1_1", "grep ' / ' /proc/mounts");
    let s = lab.snapdir().display().to_string();
    assert!(
        mounts.contains(&format!(
            "lowerdir={s}/c1_1/private/delta:{s}/c1_0/private/delta:{}/base/rootfs,",
            lab.lxcpath().display()
        )),
        "root mount: {mounts}"
    );
    lab.attach(
        lab.snapdir(),
        "c1_1",
        "echo scratch > /root/two && rm /root/.ash_history 2>/dev/null; sync",
    );
    lab.stop(lab.snapdir(), "c1_1");
    assert_same_tree("c1_0 after a boot of c1_1", &before0, &trees("c1_0"), &[]);
    assert_same_tree("c1_1 after its boot", &before1, &trees("c1_1"), &[]);
}

/// The staging directories left in `dir`.
fn staging_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lxc-snap.tmp"))
        .collect()
}

/// [`mysql_lab`] with its snapdir made, when the system tests run.
fn lab_with_snapdir(test: &str) -> Option<Lab> {
    if !common::system_tests_enabled(test, true) {
        return None;
    }
    let lab = mysql_lab();
    fs::create_dir_all(lab.snapdir()).expect("snapdir");
    Some(lab)
}

/// What the original lxc-snap did for `mysql_N`: an LXC snapshot clone
/// of mysql into the snapdir, keeping host name and MAC, then `ts` and
/// `comment` beside it.
fn original_clone(lab: &Lab, n: u32, ts: &str, comment: Option<&str>) {
    let name = format!("mysql_{n}");
    let (lp, sd) = (lab.lxcpath_str(), lab.snapdir_str());
    lab.lxc(
        "lxc-copy",
        &[
            "-s", "-K", "-M", "-P", lp, "-p", sd, "-n", "mysql", "-N", &name,
        ],
    );
    let dir = lab.snapdir().join(&name);
    fs::write(dir.join("ts"), ts).expect("ts");
    if let Some(c) = comment {
        fs::write(dir.join("comment"), c).expect("comment");
    }
}

#[test]
fn snapshots_of_the_original_lxc_snap_are_listed_and_used_as_they_are() {
    let Some(lab) =
        lab_with_snapdir("snapshots_of_the_original_lxc_snap_are_listed_and_used_as_they_are")
    else {
        return;
    };
    let env = &lab.env;
    let sd = lab.snapdir();
    let legacy = |n: u32, ts: &str, comment: Option<&str>| original_clone(&lab, n, ts, comment);
    change_mysql(&lab, FIRST_CHANGES);
    legacy(0, "2025:01:02 03:04:05", Some("before the upgrade\n"));
    change_mysql(&lab, SECOND_CHANGES);
    legacy(1, "2025:02:03 04:05:06", None);
    // Broken ones: a time stamp that does not parse, a rootfs elsewhere.
    legacy(2, "yesterday", None);
    legacy(3, "2025:03:04 05:06:07", None);
    let config3 = sd.join("mysql_3/config");
    let text = read(&config3).replace(
        &format!("{}/mysql_3/overlay/delta", lab.snapdir().display()),
        &format!("{}/mysql/overlay/delta", lab.lxcpath().display()),
    );
    fs::write(&config3, text).expect("config");
    // A delta gone, and a comment that is a symlink.
    legacy(5, "2025:03:04 05:06:07", None);
    fs::remove_dir_all(sd.join("mysql_5/overlay/delta")).expect("rm");
    legacy(6, "2025:03:04 05:06:07", None);
    std::os::unix::fs::symlink("/etc/shadow", sd.join("mysql_6/comment")).expect("symlink");

    let out = env.run(&["list", "mysql"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let rows = table_rows(&stdout);
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["mysql_0", "mysql_1", "mysql_6"], "{stdout}");
    assert!(
        stderr.contains("mysql_5") && stderr.contains("is missing"),
        "{stderr}"
    );
    assert!(stderr.contains("mysql_6/comment"), "{stderr}");
    assert!(
        !stdout.contains("root:"),
        "a symlinked comment is never read: {stdout}"
    );
    env.ok(&["delete", "mysql_6"]);
    assert!(
        stdout.contains("(original lxc-snap) before the upgrade"),
        "{stdout}"
    );
    assert!(
        stderr.contains("mysql_2") && stderr.contains("\"yesterday\" is no time"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mysql_3") && stderr.contains("is not inside the snapshot"),
        "{stderr}"
    );
    let listed = snapshots_json(&lab, "mysql");
    assert_eq!(listed[0]["legacy"], true);
    let created = lxc_snap::ui::local_time(listed[0]["created_at"].as_str().expect("time"));
    assert_eq!(created, "2025-01-02 03:04:05", "the time from ts, local");
    assert!(
        listed[0]["refer_bytes"].as_u64().expect("refer") > 10000,
        "{}",
        listed[0]
    );

    // info and diff read them as they are.
    let info = env.ok(&["info", "mysql_0"]);
    assert!(
        info.contains("a clone the original lxc-snap made"),
        "{info}"
    );
    let diff = env.ok(&["diff", "mysql_0", "mysql_1"]);
    assert!(
        diff.contains("A /root/second\n") && diff.contains("D /bin/less\t(symlink -> "),
        "{diff}"
    );

    // Numbering goes on after the highest legacy number; a new snapshot
    // links nothing to a legacy one (a writable clone).
    env.ok(&["-q", "snap", "mysql"]);
    assert!(sd.join("mysql_7/lxc-snap.json").exists());
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).expect("stat"));
    assert_ne!(
        ino(&sd.join("mysql_7/private/delta/root/second")),
        ino(&sd.join("mysql_1/overlay/delta/root/second"))
    );

    // Restore, mount and comment work on them.
    assert_eq!(
        env.ok(&["restore", "mysql_0", "old"]),
        "restored mysql_0 as old\n"
    );
    lab.start(lab.lxcpath(), "old");
    assert!(present(&lab, lab.lxcpath(), "old", "/root/added"));
    assert!(!present(&lab, lab.lxcpath(), "old", "/root/second"));
    lab.stop(lab.lxcpath(), "old");
    let at = env.path().join("browse");
    fs::create_dir(&at).expect("mkdir");
    env.ok(&["mount", "mysql_1", at.to_str().expect("utf-8")]);
    let mounted = at.join("root/second").exists();
    env.ok(&["umount", at.to_str().expect("utf-8")]);
    assert!(mounted, "mysql_1 mounted shows its files");
    env.ok(&["comment", "mysql_1", "set later"]);
    assert_eq!(env.ok(&["comment", "mysql_1"]), "set later\n");
    assert!(
        !sd.join("mysql_0/lxc-snap.json").exists(),
        "never rewritten"
    );
    assert!(
        !sd.join("mysql_1/lxc-snap.json").exists(),
        "never rewritten"
    );

    // Prune weighs them with the others.
    let plan = env.ok(&["prune", "mysql", "--keep-last", "1", "--dry-run"]);
    let verdict = |n: &str| {
        table_rows(&plan)
            .into_iter()
            .find(|r| r[0] == n)
            .map(|r| r[5].clone())
            .unwrap_or_else(|| panic!("{n} in {plan}"))
    };
    assert_eq!(verdict("mysql_0"), "remove", "{plan}");
    assert_eq!(verdict("mysql_7"), "keep", "{plan}");

    // Deleting one takes it out of what it was registered with.
    env.ok(&["delete", "mysql_1"]);
    assert!(!sd.join("mysql_1").exists());
    for c in ["base", "mysql"] {
        let deps = read(&lab.lxcpath().join(c).join("lxc_snapshots"));
        assert!(!deps.contains("mysql_1"), "{c}: {deps}");
    }
}

#[test]
fn adopting_the_original_lxc_snaps_snapshots_keeps_every_entry() {
    let Some(lab) = lab_with_snapdir("adopting_the_original_lxc_snaps_snapshots_keeps_every_entry")
    else {
        return;
    };
    let env = &lab.env;
    let sd = lab.snapdir();
    let legacy = |n: u32, ts: &str| original_clone(&lab, n, ts, Some(&format!("legacy {n}\n")));
    change_mysql(&lab, FIRST_CHANGES);
    legacy(0, "2025:01:02 03:04:05");
    change_mysql(&lab, SECOND_CHANGES);
    legacy(1, "2025:02:03 04:05:06");
    let trees: Vec<_> = (0..2)
        .map(|n| tree_manifest(&sd.join(format!("mysql_{n}/overlay/delta"))))
        .collect();
    let times: Vec<String> = snapshots_json(&lab, "mysql")
        .iter()
        .map(|s| s["created_at"].as_str().expect("time").to_string())
        .collect();

    let dry = env.ok(&["adopt", "--dry-run", "mysql"]);
    assert_eq!(
        dry,
        "would adopt mysql_0 (an original lxc-snap clone, its tree in overlay/delta)\n\
         would adopt mysql_1 (an original lxc-snap clone, its tree in overlay/delta)\n"
    );
    assert!(
        !sd.join("mysql_0/lxc-snap.json").exists(),
        "a dry run changes nothing"
    );

    let out = env.ok(&["adopt", "mysql"]);
    assert_eq!(
        out,
        "adopted mysql_0 (stored whole)\nadopted mysql_1 (stored as changes to mysql_0)\n"
    );
    let snaps = snapshots_json(&lab, "mysql");
    for (n, s) in snaps.iter().enumerate() {
        assert_eq!(s["legacy"], false, "{s}");
        assert_eq!(s["created_at"], times[n].as_str(), "the time from ts stays");
        assert_eq!(s["comment"], format!("legacy {n}\n"));
        // Entry by entry what the clone held.
        assert_same_tree(
            &format!("adopted mysql_{n}"),
            &trees[n],
            &tree_manifest(&captured_in(sd, env.path(), &format!("mysql_{n}"))),
            &[],
        );
    }
    assert!(
        !sd.join("mysql_0/overlay").exists(),
        "the clone's layout is gone"
    );
    let leftovers = staging_leftovers(sd);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Registered as snapshots are: with the base (and the anchor), no
    // longer with the container they were cloned from.
    let base = read(&lab.lxcpath().join("base/lxc_snapshots"));
    assert!(
        base.contains("mysql_0") && base.contains("mysql_1"),
        "{base}"
    );
    let origin = read(&lab.lxcpath().join("mysql/lxc_snapshots"));
    assert!(
        !origin.contains("mysql_0") && !origin.contains("mysql_1"),
        "{origin}"
    );
    assert!(read(&sd.join("mysql_0/lxc_snapshots")).contains("mysql_1"));
    // They boot as snapshots do, and the next one goes after them.
    lab.start(sd, "mysql_1");
    assert!(present(&lab, sd, "mysql_1", "/root/second"));
    assert_eq!(lab.attach(sd, "mysql_1", "hostname").trim(), "mysql-1");
    lab.stop(sd, "mysql_1");
    // The next one shares what is unchanged with them.
    env.ok(&["-q", "snap", "mysql"]);
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).expect("stat"));
    let info = json(&env.ok(&["info", "mysql_2", "--json"]));
    if info["layer_over"].is_null() {
        assert_eq!(
            ino(&sd.join("mysql_2/private/delta/root/added")),
            ino(&sd.join("mysql_0/private/delta/root/added")),
            "{info}"
        );
    } else {
        assert_eq!(info["layer_over"], "mysql_0", "{info}");
    }
    env.fails_with(3, &["adopt", "mysql"]);
}

#[test]
fn adopting_lxc_snapshots_snapshots_in_their_order_and_removing_the_originals() {
    if !common::system_tests_enabled(
        "adopting_lxc_snapshots_snapshots_in_their_order_and_removing_the_originals",
        true,
    ) {
        return;
    }
    let lab = mysql_lab();
    let env = &lab.env;
    let lp = lab.lxcpath_str();
    let snaps = lab.lxcpath().join("mysql/snaps");
    let comment = env.path().join("c");
    fs::write(&comment, "first of lxc-snapshot\n").expect("comment");
    change_mysql(&lab, FIRST_CHANGES);
    let c = comment.to_str().expect("utf-8");
    lab.lxc("lxc-snapshot", &["-P", lp, "-n", "mysql", "-c", c]);
    change_mysql(&lab, SECOND_CHANGES);
    lab.lxc("lxc-snapshot", &["-P", lp, "-n", "mysql"]);
    let trees: Vec<_> = (0..2)
        .map(|n| tree_manifest(&snaps.join(format!("snap{n}/overlay/delta"))))
        .collect();
    let ts0 = read(&snaps.join("snap0/ts"));

    let dry = env.ok(&["adopt", "--from-lxc-snapshot", "--dry-run", "mysql"]);
    assert_eq!(
        dry,
        "would adopt snap0 of mysql\nwould adopt snap1 of mysql\n"
    );

    // Kept, then adopted again: each once.
    let out = env.ok(&["adopt", "--from-lxc-snapshot", "--keep", "mysql"]);
    assert_eq!(
        out,
        "adopted snap0 as mysql_0 (stored whole; the original kept)\n\
         adopted snap1 as mysql_1 (stored as changes to mysql_0; the original kept)\n"
    );
    assert!(snaps.join("snap0").is_dir() && snaps.join("snap1").is_dir());
    let again = env.run(&["adopt", "--from-lxc-snapshot", "mysql"]);
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr)
        .contains("no lxc-snapshot snapshot of mysql is left"));

    let listed = snapshots_json(&lab, "mysql");
    assert_eq!(names_of(&listed), ["mysql_0", "mysql_1"]);
    assert_eq!(listed[0]["comment"], "first of lxc-snapshot\n");
    assert_eq!(
        lxc_snap::ui::local_time(listed[0]["created_at"].as_str().expect("time")),
        ts0.replacen(':', "-", 2)
    );
    for (n, tree) in trees.iter().enumerate() {
        assert_same_tree(
            &format!("mysql_{n} adopted from snap{n}"),
            tree,
            &tree_manifest(&captured_in(
                lab.snapdir(),
                env.path(),
                &format!("mysql_{n}"),
            )),
            &[],
        );
    }

    // Without --keep, the originals go once adopted, and LXC forgets them.
    fs::remove_dir_all(lab.snapdir()).expect("start again");
    let out = env.ok(&["adopt", "--from-lxc-snapshot", "mysql"]);
    assert!(
        out.contains("adopted snap1 as mysql_1") && out.contains("the original removed"),
        "{out}"
    );
    assert!(!snaps.join("snap0").exists() && !snaps.join("snap1").exists());
    let listed = lab.lxc("lxc-snapshot", &["-P", lp, "-n", "mysql", "-L"]);
    assert!(!listed.contains("snap0"), "{listed}");
    let base = read(&lab.lxcpath().join("base/lxc_snapshots"));
    assert!(
        !base.contains("snap0") && base.contains("mysql_1"),
        "{base}"
    );
    lab.start(lab.snapdir(), "mysql_1");
    assert!(present(&lab, lab.snapdir(), "mysql_1", "/root/second"));
    lab.stop(lab.snapdir(), "mysql_1");
}

#[test]
fn an_adoption_killed_half_way_leaves_each_snapshot_whole_and_is_finished_by_the_next() {
    let Some(lab) = lab_with_snapdir(
        "an_adoption_killed_half_way_leaves_each_snapshot_whole_and_is_finished_by_the_next",
    ) else {
        return;
    };
    let env = &lab.env;
    let sd = lab.snapdir();
    change_mysql(&lab, FIRST_CHANGES);
    original_clone(&lab, 0, "2025:01:02 03:04:05", None);
    original_clone(&lab, 1, "2025:02:03 04:05:06", Some("second\n"));
    // Enough in the second that its copy is under way when it is killed.
    let data = sd.join("mysql_1/overlay/delta/data");
    for d in 0..20 {
        fs::create_dir_all(data.join(format!("d{d}"))).expect("mkdir");
        for f in 0..100 {
            fs::write(data.join(format!("d{d}/f{f}")), [d as u8; 4096]).expect("write");
        }
    }
    let saved = tree_manifest(&sd.join("mysql_1/overlay/delta"));
    let child = env
        .cmd()
        .args(["adopt", "mysql"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    common::kill_when_staging_appears(child, sd, ".lxc-snap.tmp.mysql_1");

    // mysql_0 is adopted, mysql_1 still the clone it was, whole.
    assert!(sd.join("mysql_0/lxc-snap.json").exists());
    assert!(!sd.join("mysql_1/lxc-snap.json").exists());
    assert_same_tree(
        "mysql_1 after a killed adoption",
        &saved,
        &tree_manifest(&sd.join("mysql_1/overlay/delta")),
        &[],
    );
    let listed = snapshots_json(&lab, "mysql");
    assert_eq!(names_of(&listed), ["mysql_0", "mysql_1"]);
    assert_eq!(listed[1]["legacy"], true);

    // The next run removes what the dead one left and finishes.
    assert_eq!(
        env.ok(&["adopt", "mysql"]),
        "adopted mysql_1 (stored as changes to mysql_0)\n"
    );
    let leftovers = staging_leftovers(sd);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_same_tree(
        "mysql_1 adopted after a killed run",
        &saved,
        &tree_manifest(&captured_in(sd, env.path(), "mysql_1")),
        &[],
    );
    assert_eq!(snapshots_json(&lab, "mysql")[1]["comment"], "second\n");
}
