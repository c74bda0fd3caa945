//! Unprivileged (id-mapped) containers: a busybox rootfs shifted to host
//! uid and gid 100000 and up, `lxc.idmap` lines, started by real
//! `lxc-start` as an unprivileged container. Snapshots, layers, restore,
//! rollback, diff and mount keep numeric owners, file capabilities with
//! their rootid, ACLs and other attributes, and what a restore makes starts.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fidelity::{acl, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ};
use common::history::mount_overlay;
use common::lxc::{assert_same_tree, view_manifest, Entry, Lab};

/// Where the container's root is on the host.
const SHIFT: u32 = 100_000;

/// A `security.capability` value of revision 3 (a file capability of a
/// user namespace): effective, the permitted set, and the host uid of
/// that namespace's root.
fn capability_v3(permitted: u64, rootid: u32) -> Vec<u8> {
    [
        0x0300_0000u32 | 1,
        permitted as u32,
        0,
        (permitted >> 32) as u32,
        0,
        rootid,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect()
}

/// Gives every entry of `root` (and `root`) to its owner plus SHIFT,
/// keeping set-id bits (which a chown clears).
fn shift_tree(root: &Path) {
    for item in walkdir::WalkDir::new(root).follow_links(false) {
        let item = item.expect("walking the rootfs");
        let md = fs::symlink_metadata(item.path()).expect("lstat");
        std::os::unix::fs::lchown(item.path(), Some(md.uid() + SHIFT), Some(md.gid() + SHIFT))
            .expect("lchown");
        if !md.file_type().is_symlink() {
            fs::set_permissions(item.path(), fs::Permissions::from_mode(md.mode() & 0o7777))
                .expect("chmod");
        }
    }
}

/// The lab with an unprivileged busybox container `ubase` (its tree has
/// files owned by mapped users, a file capability, an ACL, a set-uid
/// file) and its overlay clone `u`, made by `lxc-copy`.
fn unprivileged_lab(test: &str) -> Option<Lab> {
    if !common::system_tests_enabled(test, true) {
        return None;
    }
    let lab = Lab::new();
    // The mapped root must be able to reach the container directories.
    fs::set_permissions(lab.env.path(), fs::Permissions::from_mode(0o711)).expect("chmod");
    lab.create_base("ubase");
    let dir = lab.lxcpath().join("ubase");
    let rootfs = dir.join("rootfs");
    let data = rootfs.join("data");
    fs::create_dir(&data).expect("mkdir");
    fs::write(data.join("owned"), "a mapped user's file\n").expect("write");
    std::os::unix::fs::lchown(data.join("owned"), Some(1000), Some(1001)).expect("chown");
    fs::write(data.join("ping"), "a file with a capability\n").expect("write");
    fs::write(data.join("shared"), "a file with an ACL\n").expect("write");
    fs::write(data.join("suid"), "set-uid\n").expect("write");
    fs::set_permissions(data.join("suid"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    shift_tree(&rootfs);
    // Written after the shift, as a container's root writes them: a
    // capability whose rootid is the container's root, an ACL naming a
    // mapped user.
    let cap = capability_v3(1 << 13, SHIFT);
    xattr::set(data.join("ping"), "security.capability", &cap).expect("setting a capability");
    let read = xattr::get(data.join("ping"), "security.capability").expect("reading it");
    assert_eq!(read, Some(cap), "the kernel keeps a revision 3 capability");
    let access = acl(&[
        (ACL_USER_OBJ, 6, u32::MAX),
        (ACL_USER, 4, SHIFT + 1002),
        (ACL_GROUP_OBJ, 4, u32::MAX),
        (ACL_MASK, 4, u32::MAX),
        (ACL_OTHER, 0, u32::MAX),
    ]);
    xattr::set(data.join("shared"), "system.posix_acl_access", &access).expect("setting an ACL");
    xattr::set(data.join("shared"), "user.note", b"kept").expect("setting a user attribute");
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(dir.join("config"))
        .expect("opening the config");
    use std::io::Write;
    writeln!(
        config,
        "lxc.idmap = u 0 {SHIFT} 65536\nlxc.idmap = g 0 {SHIFT} 65536"
    )
    .expect("appending idmap lines");
    // As lxc-create leaves an unprivileged container's directory.
    std::os::unix::fs::chown(&dir, Some(SHIFT), Some(SHIFT)).expect("chown");
    lab.overlay_clone("ubase", "u");
    assert_eq!(
        fs::metadata(lab.lxcpath().join("u")).expect("stat").uid(),
        SHIFT,
        "lxc-copy gives an unprivileged clone's directory to its mapped root"
    );
    Some(lab)
}

/// `lxc-start` of an unprivileged container as root, with the id map
/// written by LXC itself: without `newuidmap` on PATH, as it needs
/// /etc/subuid lines for root that a test does not write.
fn start(lab: &Lab, name: &str) {
    let log = lab.env.path().join(format!("start-{name}.log"));
    let out = Command::new("/usr/bin/lxc-start")
        .env("PATH", "/nonexistent")
        .arg("-P")
        .arg(lab.lxcpath())
        .args(["-n", name, "-d", "-l", "INFO", "-o"])
        .arg(&log)
        .output()
        .expect("running lxc-start");
    if !out.status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        panic!(
            "lxc-start -n {name} failed ({:?})\n{}",
            out.status.code(),
            errors.join("\n")
        );
    }
    lab.lxc(
        "lxc-wait",
        &[
            "-P",
            lab.lxcpath_str(),
            "-n",
            name,
            "-s",
            "RUNNING",
            "-t",
            "30",
        ],
    );
}

/// Starts `name`, runs SCRIPT in it, stops it; returns SCRIPT's output.
fn run_in(lab: &Lab, name: &str, script: &str) -> String {
    start(lab, name);
    let out = lab.attach(lab.lxcpath(), name, script);
    lab.stop(lab.lxcpath(), name);
    out
}

/// What the stopped container `name` shows, through a read-only kernel
/// overlay of its lowers and delta.
fn container_view(lab: &Lab, name: &str, base: &str) -> std::collections::BTreeMap<String, Entry> {
    let n = fs::read_dir(lab.env.path()).expect("ls").count();
    let target = lab.env.path().join(format!("view-{name}-{n}"));
    let lower = lab.lxcpath().join(base).join("rootfs");
    let delta = lab.delta(name);
    let _mounted = mount_overlay(&target, &[&delta, &lower], None);
    view_manifest(&target)
}

/// What `lxc-snap mount SNAP` shows.
fn snapshot_view(lab: &Lab, snap: &str) -> std::collections::BTreeMap<String, Entry> {
    let target: PathBuf = lab.env.path().join(format!("mnt-{snap}"));
    fs::create_dir_all(&target).expect("mkdir");
    lab.env
        .ok(&["mount", snap, target.to_str().expect("utf-8")]);
    let view = view_manifest(&target);
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).expect("umount");
    view
}

fn owner(view: &std::collections::BTreeMap<String, Entry>, path: &str) -> (u32, u32) {
    let e = view
        .get(path)
        .unwrap_or_else(|| panic!("{path} is not in the view"));
    (e.uid, e.gid)
}

#[test]
fn unprivileged_containers_keep_owners_capabilities_and_acls_and_start_restored() {
    let Some(lab) = unprivileged_lab(
        "unprivileged_containers_keep_owners_capabilities_and_acls_and_start_restored",
    ) else {
        return;
    };
    let env = &lab.env;
    // The clone is unprivileged: its root is host uid 100000.
    let map = run_in(
        &lab,
        "u",
        "cat /proc/self/uid_map; echo one > /made-inside; mkdir -p /home/user; \
         echo mine > /home/user/file; chown -R 1000:1000 /home/user",
    );
    assert!(
        map.split_whitespace().collect::<Vec<_>>() == ["0", "100000", "65536"],
        "uid map inside: {map}"
    );
    let before0 = container_view(&lab, "u", "ubase");
    assert_eq!(owner(&before0, "made-inside"), (SHIFT, SHIFT));
    assert_eq!(
        owner(&before0, "home/user/file"),
        (SHIFT + 1000, SHIFT + 1000)
    );
    assert_eq!(owner(&before0, "data/owned"), (SHIFT + 1000, SHIFT + 1001));
    env.ok(&["snap", "u"]);
    assert_same_tree("u_0 against u", &before0, &snapshot_view(&lab, "u_0"), &[]);

    // Changes inside the container: a new owner, a removed file (a
    // whiteout the container's own overlay made), a new file.
    run_in(
        &lab,
        "u",
        "chown 1002:1003 /data/owned; rm /data/suid; echo two > /made-inside; \
         echo new > /data/new; chown 1004 /data/new",
    );
    let before1 = container_view(&lab, "u", "ubase");
    assert_eq!(owner(&before1, "data/owned"), (SHIFT + 1002, SHIFT + 1003));
    assert!(!before1.contains_key("data/suid"));
    let out = env.ok(&["snap", "u", "--json"]);
    let record: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(record["layer_over"], "u_0", "u_1 is a layer: {record}");
    let view1 = snapshot_view(&lab, "u_1");
    assert_same_tree("u_1 against u", &before1, &view1, &[]);
    // The attributes came through, as the container's root wrote them.
    let ping = &view1["data/ping"].xattrs;
    assert_eq!(
        ping.get("security.capability"),
        Some(&capability_v3(1 << 13, SHIFT)),
        "the capability keeps its rootid"
    );
    let shared = &view1["data/shared"].xattrs;
    assert!(shared.contains_key("system.posix_acl_access"), "{shared:?}");
    assert_eq!(
        shared.get("user.note").map(Vec::as_slice),
        Some(&b"kept"[..])
    );
    assert_eq!(view1["data/owned"].mode & 0o7777, 0o644);

    // diff tells the owner change in host numbers.
    let diff = env.ok(&["diff", "u_0", "u_1"]);
    assert!(
        diff.contains("M /data/owned\t(owner 101000:101001 -> 101002:101003)"),
        "{diff}"
    );
    assert!(diff.contains("D /data/suid"), "{diff}");
    assert!(diff.contains("A /data/new"), "{diff}");

    // A restore is an unprivileged container that starts, its directories
    // its mapped root's as LXC makes them, its tree the snapshot's.
    env.ok(&["restore", "u_1", "r"]);
    for dir in ["r", "r/overlay", "r/rootfs"] {
        let md = fs::metadata(lab.lxcpath().join(dir)).expect("stat");
        assert_eq!((md.uid(), md.gid()), (SHIFT, SHIFT), "owner of {dir}");
    }
    assert_same_tree(
        "r against u_1",
        &view1,
        &container_view(&lab, "r", "ubase"),
        &[],
    );
    let inside = run_in(
        &lab,
        "r",
        "stat -c '%u:%g' /data/owned /home/user/file; cat /made-inside; echo r > /made-in-r",
    );
    assert_eq!(inside, "1002:1003\n1000:1000\ntwo\n", "inside r");
    let md = fs::metadata(lab.delta("r").join("made-in-r")).expect("stat");
    assert_eq!(
        (md.uid(), md.gid()),
        (SHIFT, SHIFT),
        "r writes as its mapped root"
    );

    // Rollback puts u back to u_0 with u_0's owners, and it starts.
    env.ok(&["rollback", "u_0"]);
    assert_same_tree(
        "u rolled back against u_0",
        &before0,
        &container_view(&lab, "u", "ubase"),
        &[],
    );
    let inside = run_in(
        &lab,
        "u",
        "stat -c '%u:%g' /data/owned; cat /made-inside; ls /data",
    );
    assert_eq!(
        inside, "1000:1001\none\nowned\nping\nshared\nsuid\n",
        "inside u"
    );
    // The state rollback saved is u_1's.
    assert_same_tree("u_2 against u_1", &view1, &snapshot_view(&lab, "u_2"), &[]);

    // A linked clone would need u_1's trees reachable by the container's
    // root: refused, with nothing made.
    let err = env.fails_with(6, &["clone", "u_1", "uc"]);
    assert!(err.contains("unprivileged container"), "{err}");
    assert!(err.contains("lxc-snap restore u_1"), "{err}");
    assert!(!lab.lxcpath().join("uc").exists());
}

/// A container directory someone other than root owns is trusted only as
/// an unprivileged container's own: its config maps root to that owner,
/// and no one else can write to it.
#[test]
fn a_container_directory_owned_by_a_user_is_refused_unless_it_is_its_mapped_roots() {
    if !common::system_tests_enabled(
        "a_container_directory_owned_by_a_user_is_refused_unless_it_is_its_mapped_roots",
        false,
    ) {
        return;
    }
    let env = common::TestEnv::new();
    let make = |name: &str, idmap: &str, owner: u32, mode: u32| {
        common::fixtures::make_base(&env, name);
        let dir = env.lxcpath.join(name);
        let mut text = fs::read_to_string(dir.join("config")).expect("config");
        text.push_str(idmap);
        fs::write(dir.join("config"), text).expect("config");
        std::os::unix::fs::chown(&dir, Some(owner), Some(owner)).expect("chown");
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let mapped = format!("lxc.idmap = u 0 {SHIFT} 65536\nlxc.idmap = g 0 {SHIFT} 65536\n");
    make("good", &mapped, SHIFT, 0o770);
    make("privileged", "", SHIFT, 0o770);
    make("other", &mapped, SHIFT + 65536, 0o770);
    make("open", &mapped, SHIFT, 0o777);
    let only_users = "lxc.idmap = u 0 100000 65536\n";
    make("halfmapped", only_users, SHIFT, 0o770);
    env.ok(&["snap", "good"]);
    for name in ["privileged", "other", "open", "halfmapped"] {
        let err = env.fails_with(7, &["snap", name]);
        let dir = env.lxcpath.join(name);
        assert!(
            err.contains(&format!("refusing using {}", dir.display())),
            "{name}: {err}"
        );
    }
    assert_eq!(
        common::fixtures::names_of(&env, "good"),
        ["good_0"],
        "only the mapped root's own directory is used"
    );
}
