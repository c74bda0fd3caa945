//! Files back from snapshots: `ls`, `cat` and `cp` against what a kernel
//! overlay mount of the snapshot shows, and `undo` against a kernel overlay
//! mount of the container before and after, on trees changed at random
//! through a real overlay (removals, replaced directories, hard links).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::fixtures::{json, overlay_clone};
use common::history::{change, make_base, mount_overlay, Mounted, Rng};
use common::lxc::{assert_same_tree, tree_manifest, view_manifest, Entry};
use common::TestEnv;

/// A container `c` over a varied base, changed through a writable overlay
/// mount and snapshotted `rounds` times (c_0 ...); returns its delta.
fn history(env: &TestEnv, rng: &mut Rng, rounds: usize) -> PathBuf {
    let delta = overlay_clone(env, "c");
    make_base(&env.lxcpath.join("base/rootfs"));
    for round in 0..rounds {
        change_container(env, &delta, rng, round * 100, 15);
        env.ok(&["-q", "snap", "c"]);
    }
    delta
}

/// `steps` random changes to `c` through the kernel, as the container's
/// own writes would make them.
fn change_container(env: &TestEnv, delta: &Path, rng: &mut Rng, first: usize, steps: usize) {
    let work = env.path().join("work");
    fs::create_dir_all(&work).expect("workdir");
    let base = env.lxcpath.join("base/rootfs");
    let m = mount_overlay(&env.path().join("writable"), &[&base], Some((delta, &work)));
    for step in 0..steps {
        change(rng, &m.0, first + step);
    }
}

/// The container as it is now, through a read-only kernel overlay.
fn container_view(env: &TestEnv, delta: &Path, name: &str) -> Mounted {
    let base = env.lxcpath.join("base/rootfs");
    mount_overlay(&env.path().join(name), &[delta, &base], None)
}

/// A snapshot through `lxc-snap mount`, unmounted when dropped.
fn mounted_snapshot(env: &TestEnv, snap: &str) -> Mounted {
    let dir = env
        .path()
        .join(format!("mnt-{snap}-{}", lxc_snap::dir::random_suffix()));
    fs::create_dir(&dir).expect("mountpoint");
    env.ok(&["-q", "mount", snap, dir.to_str().expect("utf-8")]);
    Mounted(dir)
}

/// Every path below `root`, as `/a/b`, `/` for the root; never following.
fn paths_in(root: &Path) -> Vec<String> {
    view_of(root).into_keys().collect()
}

fn pick<'a>(rng: &mut Rng, from: &'a [String], n: usize) -> Vec<&'a String> {
    let mut out = BTreeSet::new();
    while out.len() < n.min(from.len()) {
        out.insert(&from[rng.below(from.len())]);
    }
    out.into_iter().collect()
}

fn kind_of(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "char_device"
    } else {
        "block_device"
    }
}

/// Names sharing an inode below `root`, as sets of relative paths.
fn link_groups(root: &Path) -> BTreeSet<Vec<PathBuf>> {
    let mut by_inode: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(false);
    for entry in walk.into_iter().filter_map(|e| e.ok()) {
        // A whiteout a listing names but a lookup does not find is not there.
        let Ok(md) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if md.is_file() && md.nlink() > 1 {
            let rel = entry.path().strip_prefix(root).expect("below");
            by_inode
                .entry(md.ino())
                .or_default()
                .push(rel.to_path_buf());
        }
    }
    by_inode.into_values().filter(|v| v.len() > 1).collect()
}

#[test]
fn ls_cat_and_cp_agree_with_a_kernel_mount_of_layered_snapshots() {
    if !common::system_tests_enabled(
        "ls_cat_and_cp_agree_with_a_kernel_mount_of_layered_snapshots",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    let mut rng = Rng(0x0005_eedf_11e5);
    history(&env, &mut rng, 4);
    let layers = (0..4)
        .filter(|i| {
            let meta: serde_json::Value = serde_json::from_slice(
                &fs::read(env.snapdir.join(format!("c_{i}/lxc-snap.json"))).expect("meta"),
            )
            .expect("json");
            !meta["layer"].is_null()
        })
        .count();
    assert!(layers >= 2, "most snapshots are layers ({layers} of 4)");
    let out = env.path().join("out");
    fs::create_dir(&out).expect("out");
    let mut checked = BTreeMap::<&str, usize>::new();
    for i in 0..4 {
        let snap = format!("c_{i}");
        let m = mounted_snapshot(&env, &snap);
        let all = paths_in(&m.0);
        let mut chosen = pick(&mut rng, &all, 24);
        let root = "/".to_string();
        chosen.push(&root);
        for path in chosen {
            let real = m.0.join(path.trim_start_matches('/'));
            let md = fs::symlink_metadata(&real).expect("lstat");
            let listing = json(&env, &["ls", "--json", &snap, path]);
            assert_eq!(listing["path"], path.as_str());
            if md.is_dir() {
                assert_eq!(listing["directory"], true, "{snap} {path}");
                // Whiteouts a listing names but a lookup does not find are not there.
                let mut want: Vec<Vec<u8>> = fs::read_dir(&real)
                    .expect("ls")
                    .map(|e| e.expect("entry").path())
                    .filter(|p| fs::symlink_metadata(p).is_ok())
                    .map(|p| p.file_name().expect("name").as_bytes().to_vec())
                    .collect();
                want.sort();
                let got: Vec<Vec<u8>> = listing["entries"]
                    .as_array()
                    .expect("entries")
                    .iter()
                    .map(|e| e["name"].as_str().expect("name").as_bytes().to_vec())
                    .collect();
                assert_eq!(got, want, "ls {snap} {path}");
                let plain = env.ok(&["ls", &snap, path]);
                let lines: Vec<&[u8]> = plain.lines().map(str::as_bytes).collect();
                assert_eq!(lines, want.iter().map(Vec::as_slice).collect::<Vec<_>>());
            } else {
                assert_eq!(listing["directory"], false, "{snap} {path}");
                let e = &listing["entries"][0];
                assert_eq!(e["type"], kind_of(&md), "{snap} {path}");
                assert_eq!(e["mode"], md.mode() & 0o7777, "{snap} {path}");
                assert_eq!(
                    (e["uid"].clone(), e["gid"].clone()),
                    (md.uid().into(), md.gid().into())
                );
                assert_eq!(e["size"], md.size(), "{snap} {path}");
                let mtime =
                    chrono::DateTime::parse_from_rfc3339(e["mtime"].as_str().expect("mtime"))
                        .expect("rfc3339");
                assert_eq!(
                    (mtime.timestamp(), mtime.timestamp_subsec_nanos() as i64),
                    (md.mtime(), md.mtime_nsec()),
                    "mtime of {snap} {path}"
                );
                if md.file_type().is_symlink() {
                    let target = fs::read_link(&real).expect("readlink");
                    assert_eq!(e["target"], target.to_str().expect("utf-8"));
                }
            }
            if md.is_file() {
                let bytes = env.cmd().args(["cat", &snap, path]).output().expect("cat");
                assert!(bytes.status.success(), "cat {snap} {path}");
                assert_eq!(
                    bytes.stdout,
                    fs::read(&real).expect("read"),
                    "cat {snap} {path}"
                );
            } else {
                env.fails_with(2, &["cat", &snap, path]);
            }
            // A copy out is what the kernel shows there, links included.
            let dest = out.join(format!("{snap}-{}", checked.values().sum::<usize>()));
            env.ok(&[
                "-q",
                "cp",
                &format!("{snap}:{path}"),
                dest.to_str().expect("utf-8"),
            ]);
            let want = view_manifest(&real);
            let got = tree_manifest(&dest);
            assert_same_tree(&format!("cp {snap}:{path}"), &want, &got, &[""]);
            if md.is_dir() {
                let root_want = &want[""];
                let root_got = &got[""];
                assert_eq!(
                    (root_got.mode, root_got.uid, root_got.gid, &root_got.xattrs),
                    (
                        root_want.mode,
                        root_want.uid,
                        root_want.gid,
                        &root_want.xattrs
                    ),
                    "cp {snap}:{path}: the directory itself"
                );
                assert_eq!(
                    link_groups(&dest),
                    link_groups(&real),
                    "hard links of {path}"
                );
            } else {
                assert_eq!(got[""], want[""], "cp {snap}:{path}");
            }
            let dmd = fs::symlink_metadata(&dest).expect("lstat copy");
            if !md.is_dir() {
                assert_eq!(
                    (dmd.mtime(), dmd.mtime_nsec()),
                    (md.mtime(), md.mtime_nsec())
                );
            }
            *checked.entry(kind_of(&md)).or_default() += 1;
        }
    }
    for kind in ["directory", "file", "symlink"] {
        assert!(
            checked.contains_key(kind),
            "checked every kind: {checked:?}"
        );
    }
}

/// What each path of a view is, for comparing views.
fn view_of(root: &Path) -> BTreeMap<String, Entry> {
    view_manifest(root)
        .into_iter()
        .map(|(rel, e)| (format!("/{rel}"), e))
        .map(|(p, e)| {
            (
                if p == "/" {
                    p
                } else {
                    p.trim_end_matches('/').to_string()
                },
                e,
            )
        })
        .collect()
}

fn under(path: &str, dir: &str) -> bool {
    path == dir || dir == "/" || path.starts_with(&format!("{dir}/"))
}

#[test]
fn undo_puts_exactly_the_named_paths_back_as_the_snapshot_has_them() {
    if !common::system_tests_enabled(
        "undo_puts_exactly_the_named_paths_back_as_the_snapshot_has_them",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    let mut rng = Rng(0x0000_d0c4_a46e);
    let delta = history(&env, &mut rng, 3);
    let mut undone_kinds = BTreeSet::new();
    for round in 0..8 {
        change_container(&env, &delta, &mut rng, 1000 + round * 100, 20);
        let snap = format!("c_{}", rng.below(3));
        let before = view_of(&container_view(&env, &delta, &format!("before{round}")).0);
        let theirs = view_of(&mounted_snapshot(&env, &snap).0);
        let union: Vec<String> = before
            .keys()
            .chain(theirs.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let paths: Vec<String> = pick(&mut rng, &union, 6).into_iter().cloned().collect();
        let mut args = vec!["undo", "--json", snap.as_str()];
        args.extend(paths.iter().map(String::as_str));
        let mut dry = args.clone();
        dry.insert(1, "--dry-run");
        // Paths below something the container has as a file while the
        // snapshot has a directory are refused; leave those out.
        let probe = env.run(&dry);
        if probe.status.code() == Some(2) {
            continue;
        }
        let planned: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("json");
        let done = json(&env, &args);
        assert_eq!(
            done["changes"], planned["changes"],
            "the dry run said what the undo did"
        );
        for c in done["changes"].as_array().expect("changes") {
            undone_kinds.insert(c["kind"].as_str().expect("kind").to_string());
        }
        let after = view_of(&container_view(&env, &delta, &format!("after{round}")).0);

        let mut wrong = Vec::new();
        let everything: BTreeSet<&String> = before
            .keys()
            .chain(theirs.keys())
            .chain(after.keys())
            .collect();
        for p in everything {
            let now = after.get(p);
            if paths.iter().any(|u| under(p, u)) {
                if now != theirs.get(p) {
                    wrong.push(format!(
                        "{p}: undone, {now:?}, but {snap} has {:?}",
                        theirs.get(p)
                    ));
                }
            } else if paths.iter().any(|u| under(u, p)) {
                // A directory on the way: there if either side had one.
                let dir = |e: Option<&Entry>| e.is_some_and(|e| e.kind == "dir");
                if dir(theirs.get(p)) && !dir(now) {
                    wrong.push(format!("{p}: on the way to an undone path, missing"));
                }
            } else if now != before.get(p) {
                wrong.push(format!("{p}: not undone, {now:?}, was {:?}", before.get(p)));
            }
        }
        assert!(
            wrong.is_empty(),
            "undo {snap} {paths:?}:\n{}",
            wrong.join("\n")
        );

        // Nothing is left to undo, and the safety snapshot holds the state before.
        let again = json(&env, &dry);
        assert_eq!(
            again["changes"],
            serde_json::json!([]),
            "undo {snap} {paths:?} again"
        );
        if let Some(backup) = done["backup"].as_str() {
            let saved = view_of(&mounted_snapshot(&env, backup).0);
            assert_same_tree(&format!("backup {backup}"), &before, &saved, &[]);
        } else {
            assert_eq!(
                done["changes"],
                serde_json::json!([]),
                "a backup whenever something changed"
            );
        }
    }
    assert!(
        undone_kinds.len() >= 3,
        "undid several kinds of change: {undone_kinds:?}"
    );
}

#[test]
fn undo_never_writes_through_a_symlink_the_container_left() {
    if !common::system_tests_enabled(
        "undo_never_writes_through_a_symlink_the_container_left",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    fs::create_dir_all(delta.join("etc/nginx")).expect("mkdir");
    fs::write(delta.join("etc/nginx/nginx.conf"), b"worker_processes 4;\n").expect("write");
    env.ok(&["-q", "snap", "c"]);

    let victim = env.path().join("host-etc");
    fs::create_dir(&victim).expect("victim");
    fs::write(victim.join("nginx.conf"), b"host's own\n").expect("write");
    let host_before = tree_manifest(&victim);
    fs::remove_dir_all(delta.join("etc/nginx")).expect("rm");
    symlink(&victim, delta.join("etc/nginx")).expect("symlink");

    let err = env.fails_with(2, &["undo", "c_0", "/etc/nginx/nginx.conf"]);
    assert!(
        err.contains("/etc/nginx is a symlink in c but a directory in c_0"),
        "{err}"
    );
    assert!(err.contains("lxc-snap undo c_0 /etc/nginx"), "{err}");
    assert_same_tree(
        "the host directory",
        &host_before,
        &tree_manifest(&victim),
        &[],
    );

    // The whole directory: the symlink is replaced, never followed.
    env.ok(&["undo", "--no-backup", "c_0", "/etc/nginx"]);
    assert_same_tree(
        "the host directory",
        &host_before,
        &tree_manifest(&victim),
        &[],
    );
    let md = fs::symlink_metadata(delta.join("etc/nginx")).expect("lstat");
    assert!(md.is_dir(), "a directory again");
    assert_eq!(
        fs::read(delta.join("etc/nginx/nginx.conf")).expect("read"),
        b"worker_processes 4;\n"
    );

    // A symlinked directory higher up, and a file the undo must create below it.
    fs::remove_dir_all(delta.join("etc")).expect("rm");
    symlink(&victim, delta.join("etc")).expect("symlink");
    env.fails_with(
        2,
        &["undo", "--no-backup", "c_0", "/etc/motd", "/etc/nginx"],
    );
    env.ok(&["undo", "--no-backup", "c_0", "/etc"]);
    assert_same_tree(
        "the host directory",
        &host_before,
        &tree_manifest(&victim),
        &[],
    );
    assert!(fs::symlink_metadata(delta.join("etc"))
        .expect("lstat")
        .is_dir());
    let view = view_of(&container_view(&env, &delta, "view").0);
    let theirs = view_of(&mounted_snapshot(&env, "c_0").0);
    let etc = |v: &BTreeMap<String, Entry>| -> BTreeMap<String, Entry> {
        v.iter()
            .filter(|(p, _)| under(p, "/etc"))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect()
    };
    assert_same_tree("/etc after undo", &etc(&theirs), &etc(&view), &[]);
}

#[test]
fn reading_a_snapshot_never_follows_or_opens_what_its_container_left() {
    if !common::system_tests_enabled(
        "reading_a_snapshot_never_follows_or_opens_what_its_container_left",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let secret = env.path().join("secret");
    fs::create_dir(&secret).expect("mkdir");
    fs::write(secret.join("key"), b"host secret\n").expect("write");
    symlink(&secret, delta.join("evil")).expect("symlink");
    nix::unistd::mkfifo(
        &delta.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    nix::sys::stat::mknod(
        &delta.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    fs::set_permissions(delta.join("null"), fs::Permissions::from_mode(0o666)).expect("chmod");
    env.ok(&["-q", "snap", "c"]);

    let err = env.fails_with(3, &["cat", "c_0", "/evil/key"]);
    assert!(err.contains("/evil in c_0 is a symlink to"), "{err}");
    let err = env.fails_with(3, &["ls", "c_0", "/evil/"]);
    assert!(err.contains("does not follow"), "{err}");
    let err = env.fails_with(2, &["cat", "c_0", "/evil"]);
    assert!(err.contains("it is a symlink to"), "{err}");
    // A fifo is never opened (the cat would hang), a device never read.
    let err = env.fails_with(2, &["cat", "c_0", "/fifo"]);
    assert!(err.contains("it is a fifo"), "{err}");
    let err = env.fails_with(2, &["cat", "c_0", "/null"]);
    assert!(err.contains("it is a char device"), "{err}");
    let long = env.ok(&["ls", "-l", "c_0", "/"]);
    assert!(
        long.lines()
            .any(|l| l.starts_with("crw-rw-rw-") && l.contains(" 1, 3 ") && l.ends_with(" null")),
        "{long}"
    );
    assert!(
        long.lines().any(|l| l.starts_with("lrwxrwxrwx")
            && l.ends_with(&format!(" evil -> {}", secret.display()))),
        "{long}"
    );
    assert!(
        long.lines()
            .any(|l| l.starts_with("prw-r--r--") && l.ends_with(" fifo")),
        "{long}"
    );

    // `..` never climbs out, however it is spelt.
    for bad in ["/../secret", "etc/../../x", ".."] {
        let err = env.fails_with(2, &["ls", "c_0", bad]);
        assert!(err.contains("may not contain `..`"), "{bad}: {err}");
    }
    // A symlink is copied as a symlink; the tree it names is not.
    let out = env.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    env.ok(&["-q", "cp", "c_0:/evil", out.to_str().expect("utf-8")]);
    assert_eq!(fs::read_link(out.join("evil")).expect("readlink"), secret);
    env.ok(&[
        "-q",
        "cp",
        "c_0:/",
        out.join("all").to_str().expect("utf-8"),
    ]);
    assert!(fs::symlink_metadata(out.join("all/evil"))
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(out.join("all/fifo"))
        .expect("lstat")
        .file_type()
        .is_fifo());

    // A copy never replaces anything.
    let err = env.fails_with(
        4,
        &["cp", "c_0:/evil", out.join("evil").to_str().expect("utf-8")],
    );
    assert!(err.contains("already exists"), "{err}");
    let err = env.fails_with(4, &["cp", "c_0:/evil", out.to_str().expect("utf-8")]);
    assert!(err.contains("already exists"), "{err}");
    let err = env.fails_with(2, &["cp", "c_0", out.to_str().expect("utf-8")]);
    assert!(err.contains("expected SNAP:PATH"), "{err}");
    let err = env.fails_with(
        3,
        &["cp", "c_0:/nothing", out.join("n").to_str().expect("utf-8")],
    );
    assert!(err.contains("c_0 has no /nothing"), "{err}");
    assert!(!out.join("n").exists());
    let leftovers: Vec<_> = fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with(".lxc-snap"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn undo_in_a_directory_backed_container_and_of_a_running_one() {
    if !common::system_tests_enabled(
        "undo_in_a_directory_backed_container_and_of_a_running_one",
        true,
    ) {
        return;
    }
    let lab = common::lxc::Lab::new();
    lab.create_base("b");
    let env = &lab.env;
    let rootfs = lab.dir(lab.lxcpath(), "b").join("rootfs");
    fs::write(rootfs.join("etc/keep"), b"keep me\n").expect("write");
    env.ok(&["-q", "snap", "b"]);
    fs::write(rootfs.join("etc/keep"), b"broken\n").expect("write");
    fs::write(rootfs.join("etc/new"), b"new\n").expect("write");
    let dry = env.ok(&["undo", "-n", "b_0", "/etc/keep", "/etc/new"]);
    assert!(
        dry.contains("M /etc/keep\t(content)") && dry.contains("D /etc/new"),
        "{dry}"
    );
    assert_eq!(
        fs::read(rootfs.join("etc/keep")).expect("read"),
        b"broken\n"
    );
    let done = env.ok(&["undo", "b_0", "/etc/keep", "/etc/new"]);
    assert!(done.contains("(the state before is b_1)"), "{done}");
    assert_eq!(
        fs::read(rootfs.join("etc/keep")).expect("read"),
        b"keep me\n"
    );
    assert!(!rootfs.join("etc/new").exists());
    assert_eq!(env.ok(&["cat", "b_1", "/etc/keep"]), "broken\n");

    lab.start(lab.lxcpath(), "b");
    lab.attach(lab.lxcpath(), "b", "echo running > /etc/keep");
    let err = env.fails_with(5, &["undo", "b_0", "/etc/keep"]);
    assert!(err.contains("running"), "{err}");
    // Saying what would change reads only.
    let dry = env.ok(&["undo", "-n", "b_0", "/etc/keep"]);
    assert!(dry.contains("M /etc/keep"), "{dry}");
    lab.stop(lab.lxcpath(), "b");
    assert_eq!(
        fs::read(rootfs.join("etc/keep")).expect("read"),
        b"running\n"
    );
}

#[test]
fn undo_hides_what_lower_layers_have_where_the_snapshot_has_less() {
    if !common::system_tests_enabled(
        "undo_hides_what_lower_layers_have_where_the_snapshot_has_less",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let base = env.lxcpath.join("base/rootfs");
    make_base(&base);
    let work = env.path().join("work");
    fs::create_dir_all(&work).expect("workdir");
    let through = |f: &dyn Fn(&Path)| {
        let m = mount_overlay(
            &env.path().join("writable"),
            &[&base],
            Some((&delta, &work)),
        );
        f(&m.0);
    };
    // The snapshot has a /d2 of its own (opaque over the base's) and the
    // base's /d3 and /d1, and a file with two names.
    through(&|m| {
        fs::remove_dir_all(m.join("d2")).expect("rm");
        fs::create_dir(m.join("d2")).expect("mkdir");
        fs::write(m.join("d2/fresh"), b"fresh\n").expect("write");
        fs::create_dir(m.join("srv")).expect("mkdir");
        fs::write(m.join("srv/a"), b"one file\n").expect("write");
        fs::hard_link(m.join("srv/a"), m.join("srv/b")).expect("link");
    });
    env.ok(&["-q", "snap", "c"]);
    through(&|m| {
        fs::remove_dir_all(m.join("d2")).expect("rm");
        fs::remove_dir_all(m.join("d3")).expect("rm");
        fs::set_permissions(m.join("d1"), fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::write(m.join("d1/f0"), b"changed\n").expect("write");
        fs::write(m.join("srv/a"), b"both names changed\n").expect("write");
    });
    let before = view_of(&container_view(&env, &delta, "before").0);
    let out = env.ok(&[
        "undo",
        "--no-backup",
        "c_0",
        "/d2",
        "/d3/sub/deep",
        "/d1",
        "/srv/a",
        "/srv/b",
    ]);
    assert!(
        out.contains("A /d2/fresh") && out.contains("A /d3/sub/deep"),
        "{out}"
    );
    assert!(out.contains("M /d1\t(mode 0700 -> 0755)"), "{out}");
    let after = view_of(&container_view(&env, &delta, "after").0);
    let theirs = view_of(&mounted_snapshot(&env, "c_0").0);
    let below = |v: &BTreeMap<String, Entry>, dir: &str| -> Vec<String> {
        v.keys().filter(|p| under(p, dir)).cloned().collect()
    };
    assert_eq!(
        below(&after, "/d2"),
        ["/d2", "/d2/fresh"],
        "only the snapshot's /d2"
    );
    assert_eq!(
        below(&after, "/d3"),
        ["/d3", "/d3/sub", "/d3/sub/deep"],
        "only the path asked for below the deleted /d3"
    );
    assert_eq!(after["/d3/sub/deep"], theirs["/d3/sub/deep"]);
    assert_eq!(after["/d1"], theirs["/d1"]);
    assert_eq!(after["/d1/f0"], theirs["/d1/f0"]);
    for p in below(&before, "/d0") {
        assert_eq!(after.get(&p), before.get(&p), "{p} untouched");
    }
    let (a, b) = (
        fs::symlink_metadata(delta.join("srv/a")).expect("lstat"),
        fs::symlink_metadata(delta.join("srv/b")).expect("lstat"),
    );
    assert_eq!(a.ino(), b.ino(), "/srv/a and /srv/b are one file again");
    assert_eq!(fs::read(delta.join("srv/b")).expect("read"), b"one file\n");
    // The base's own /d3/sub/deep was not copied: the whiteout went, or
    // what hides the rest is the delta's own directory.
    assert!(fs::symlink_metadata(delta.join("d3"))
        .expect("lstat")
        .is_dir());
}

#[test]
fn cp_keeps_every_kind_of_entry_and_all_it_carries() {
    if !common::system_tests_enabled("cp_keeps_every_kind_of_entry_and_all_it_carries", false) {
        return;
    }
    use common::fidelity::{assert_trees_identical, build_every_kind, settle_link_atimes};
    let env = TestEnv::new();
    // Directory-backed: the snapshot is one plain tree, copied out as it is.
    let rootfs = common::fixtures::make_base(&env, "b");
    fs::remove_dir_all(&rootfs).expect("rm");
    build_every_kind(&rootfs);
    settle_link_atimes(&rootfs);
    env.ok(&["-q", "snap", "b"]);
    let out = env.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    env.ok(&["-q", "cp", "b_0:/", out.join("b").to_str().expect("utf-8")]);
    assert_trees_identical(&env.snapdir.join("b_0/private/rootfs"), &out.join("b"));
    env.ok(&["-q", "cp", "b_0:/", out.to_str().expect("utf-8")]);
    assert_trees_identical(&env.snapdir.join("b_0/private/rootfs"), &out.join("b_0"));

    // Overlay: what the kernel shows of the snapshot, whiteouts hidden.
    let delta = overlay_clone(&env, "c");
    fs::remove_dir_all(&delta).expect("rm");
    build_every_kind(&delta);
    settle_link_atimes(&delta);
    env.ok(&["-q", "snap", "c"]);
    env.ok(&["-q", "cp", "c_0:/", out.join("c").to_str().expect("utf-8")]);
    let m = mounted_snapshot(&env, "c_0");
    let copy = out.join("c");
    // Times to the nanosecond, and holes kept; looked at before anything
    // reads a file through the mount (which moves the snapshot's atimes).
    let listed = walkdir::WalkDir::new(&m.0).follow_links(false).into_iter();
    for entry in listed.filter_map(|e| e.ok()) {
        let rel = entry.path().strip_prefix(&m.0).expect("below");
        // A whiteout a listing names but a lookup does not find is not there.
        let Ok(a) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let b = fs::symlink_metadata(copy.join(rel))
            .unwrap_or_else(|e| panic!("{}: {e}", copy.join(rel).display()));
        let rel = rel.display();
        if a.is_dir() {
            continue;
        }
        assert_eq!(
            (b.mtime(), b.mtime_nsec()),
            (a.mtime(), a.mtime_nsec()),
            "mtime of {rel}"
        );
        assert_eq!(
            (b.atime(), b.atime_nsec()),
            (a.atime(), a.atime_nsec()),
            "atime of {rel}"
        );
        assert!(
            b.blocks() <= a.blocks() + 16,
            "{rel}: {} blocks, {} in the snapshot",
            b.blocks(),
            a.blocks()
        );
    }
    let seen = view_manifest(&m.0);
    assert_same_tree("cp c_0:/", &seen, &tree_manifest(&copy), &[]);
    assert!(
        seen.keys().any(|k| k.starts_with("sparse")),
        "{:?}",
        seen.keys()
    );
    let links = link_groups(&copy);
    assert!(!links.is_empty(), "the tree has hard links");
    assert_eq!(links, link_groups(&m.0));
}
