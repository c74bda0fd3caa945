//! Whole snapshots (`--whole`): files unchanged since the previous snapshot
//! are hard links to its copies; --full and --checksum; sizes; independence
//! of restores and of the remaining snapshots after a delete. Layers are in
//! tests/layers.rs.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::fidelity::assert_trees_identical;
use common::fixtures::{json, names_of, overlay_clone};
use common::TestEnv;

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).expect("stat").ino()
}

fn setup(env: &TestEnv) -> std::path::PathBuf {
    let delta = overlay_clone(env, "c");
    fs::create_dir(delta.join("data")).expect("mkdir");
    for i in 0..20 {
        fs::write(delta.join(format!("data/f{i}")), vec![i as u8; 64 * 1024]).expect("write");
    }
    delta
}

fn used(env: &TestEnv, snap: &str) -> u64 {
    json(env, &["info", snap, "--json"])["used_bytes"]
        .as_u64()
        .expect("used_bytes")
}

#[test]
fn unchanged_files_are_shared_with_the_previous_snapshot() {
    if !common::system_tests_enabled(
        "unchanged_files_are_shared_with_the_previous_snapshot",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = setup(&env);
    env.ok(&["-q", "snap", "--whole", "c"]);
    let used_alone = used(&env, "c_0");
    assert!(used_alone >= 20 * 64 * 1024, "{used_alone}");

    fs::write(delta.join("data/f3"), vec![9u8; 64 * 1024 + 1]).expect("change one file");
    env.ok(&["-q", "snap", "--whole", "c"]);
    let (s0, s1) = (
        env.snapdir.join("c_0/private/delta"),
        env.snapdir.join("c_1/private/delta"),
    );
    assert_trees_identical(&delta, &s1);
    for i in (0..20).filter(|&i| i != 3) {
        let name = format!("data/f{i}");
        assert_eq!(
            ino(&s0.join(&name)),
            ino(&s1.join(&name)),
            "{name} is shared"
        );
    }
    assert_ne!(
        ino(&s0.join("data/f3")),
        ino(&s1.join("data/f3")),
        "the changed file is a new copy"
    );
    assert_eq!(
        fs::read(s0.join("data/f3")).expect("read"),
        vec![3u8; 64 * 1024],
        "the older snapshot keeps its version"
    );

    // Sizes: both refer to everything; each holds alone only its own copy of f3 (and its directories).
    let list = json(&env, &["list", "c", "--json"]);
    assert_eq!(
        list[0]["bytes"],
        list[1]["bytes"].as_u64().expect("bytes") - 1
    );
    let (u0, u1) = (used(&env, "c_0"), used(&env, "c_1"));
    assert!(u0 < 2 * 64 * 1024 && u1 < 2 * 64 * 1024, "used {u0} {u1}");
    assert!(u0 < used_alone, "c_0 now shares most of what it held alone");

    // Restore makes independent copies.
    env.ok(&["-r", "c_1", "copy"]);
    let restored = env.lxcpath.join("copy/overlay/delta");
    for i in 0..20 {
        let name = format!("data/f{i}");
        assert_ne!(ino(&restored.join(&name)), ino(&s1.join(&name)), "{name}");
    }
}

#[test]
fn full_copies_everything_and_deleting_never_changes_another_snapshot() {
    if !common::system_tests_enabled(
        "full_copies_everything_and_deleting_never_changes_another_snapshot",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = setup(&env);
    env.ok(&["-q", "snap", "--whole", "c"]);
    env.ok(&["-q", "snap", "--full", "c"]);
    env.ok(&["-q", "snap", "--whole", "c"]);
    let s = |n: u32| env.snapdir.join(format!("c_{n}/private/delta"));
    assert_ne!(
        ino(&s(0).join("data/f0")),
        ino(&s(1).join("data/f0")),
        "--full shares nothing"
    );
    assert_eq!(
        ino(&s(1).join("data/f0")),
        ino(&s(2).join("data/f0")),
        "the next one links to the full copy"
    );

    let before = used(&env, "c_2");
    env.ok(&["rm", "c_1"]);
    assert_eq!(names_of(&env, "c"), ["c_0", "c_2"]);
    assert_trees_identical(&delta, &s(2));
    assert!(
        used(&env, "c_2") > before,
        "c_2 now holds alone what it shared with c_1"
    );
    env.ok(&["rm", "c_2"]);
    assert_trees_identical(&delta, &s(0));
}

#[test]
fn checksum_catches_a_change_that_kept_size_and_mtime() {
    if !common::system_tests_enabled("checksum_catches_a_change_that_kept_size_and_mtime", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = setup(&env);
    env.ok(&["-q", "snap", "--whole", "c"]);
    // Rewrite f5 in place with other bytes of the same length and put its mtime back.
    let f = delta.join("data/f5");
    let meta = fs::metadata(&f).expect("stat");
    fs::write(&f, vec![0xAAu8; 64 * 1024]).expect("rewrite");
    let mtime = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    let atime = nix::sys::time::TimeSpec::new(meta.atime(), meta.atime_nsec());
    nix::sys::stat::utimensat(
        None,
        &f,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");

    // The quick check (type, size, mtime, mode, owner, xattrs) cannot see it:
    // the snapshot shares the previous, stale copy. This is what --checksum is for.
    env.ok(&["-q", "snap", "--whole", "c"]);
    let quick = env.snapdir.join("c_1/private/delta/data/f5");
    assert_eq!(fs::read(&quick).expect("read"), vec![5u8; 64 * 1024]);
    // --checksum compares the bytes and copies it.
    env.ok(&["-q", "snap", "--whole", "--checksum", "c"]);
    let exact = env.snapdir.join("c_2/private/delta/data/f5");
    assert_eq!(fs::read(&exact).expect("read"), vec![0xAAu8; 64 * 1024]);
    assert_eq!(
        ino(&env.snapdir.join("c_2/private/delta/data/f4")),
        ino(&env.snapdir.join("c_1/private/delta/data/f4")),
        "unchanged files are still shared with --checksum"
    );
}

/// USED as recorded at snapshot time (from what the copier did, without
/// walking) must equal a walk of every snapshot's tree, along a chain of
/// incremental snapshots, with and without hard links in the delta.
#[test]
fn recorded_used_bytes_match_a_walk_along_a_chain() {
    if !common::system_tests_enabled("recorded_used_bytes_match_a_walk_along_a_chain", true) {
        return;
    }
    for hard_links in [false, true] {
        let env = TestEnv::new();
        let delta = setup(&env);
        if hard_links {
            fs::hard_link(delta.join("data/f1"), delta.join("f1-again")).expect("link");
        }
        let check = |taken: u32| {
            for n in 0..taken {
                let snap = format!("c_{n}");
                let tree = env.snapdir.join(format!("{snap}/private/delta"));
                let walked = lxc_snap::store::exclusive_bytes(&common::held(&tree)).expect("walk");
                assert_eq!(
                    used(&env, &snap),
                    walked,
                    "{snap} after {taken} snapshots (hard links: {hard_links})"
                );
            }
        };
        env.ok(&["-q", "snap", "--whole", "c"]);
        check(1);
        fs::write(delta.join("data/f3"), b"changed").expect("change");
        if hard_links {
            // New in c_1 with two names: c_1 holds it alone until c_2.
            fs::write(delta.join("g"), vec![7u8; 50_000]).expect("write");
            fs::hard_link(delta.join("g"), delta.join("data/g-again")).expect("link");
        }
        env.ok(&["-q", "snap", "--whole", "c"]);
        check(2);
        fs::write(delta.join("data/f4"), b"changed too").expect("change");
        fs::remove_file(delta.join("data/f5")).expect("remove");
        env.ok(&["-q", "snap", "--whole", "c"]);
        check(3);
        // Metadata from before inodes with several names were recorded.
        let meta = env.snapdir.join("c_2/lxc-snap.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&fs::read(&meta).expect("read")).expect("json");
        assert!(m["multi_name_inodes"].is_array(), "{m}");
        m.as_object_mut()
            .expect("object")
            .remove("multi_name_inodes");
        fs::write(&meta, serde_json::to_vec(&m).expect("json")).expect("write");
        fs::write(delta.join("data/f6"), b"changed as well").expect("change");
        env.ok(&["-q", "snap", "--whole", "c"]);
        check(4);
        env.ok(&["rm", "c_1"]);
        let walked =
            lxc_snap::store::exclusive_bytes(&common::held(&env.snapdir.join("c_2/private/delta")))
                .expect("walk");
        assert_eq!(used(&env, "c_2"), walked, "c_2 after deleting c_1");
    }
}

/// A snapshot shares files with the newest earlier one on the same base,
/// which need not be the one just before it: deleting that one must still
/// give the later snapshot what it now holds alone.
#[test]
fn deleting_refreshes_the_snapshots_on_the_same_base() {
    if !common::system_tests_enabled("deleting_refreshes_the_snapshots_on_the_same_base", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = setup(&env);
    let config = env.lxcpath.join("c/config");
    let on_base = fs::read_to_string(&config).expect("read config");
    common::fixtures::make_base(&env, "other");
    let base_rootfs = env.lxcpath.join("base/rootfs").display().to_string();
    let other_rootfs = env.lxcpath.join("other/rootfs").display().to_string();
    env.ok(&["-q", "snap", "--whole", "c"]);
    // For a while on another base: c_1 shares nothing with c_0.
    fs::write(&config, on_base.replace(&base_rootfs, &other_rootfs)).expect("write config");
    env.ok(&["-q", "snap", "--whole", "c"]);
    fs::write(&config, &on_base).expect("write config");
    env.ok(&["-q", "snap", "--whole", "c"]);
    let s = |n: u32| env.snapdir.join(format!("c_{n}/private/delta"));
    assert_eq!(ino(&s(0).join("data/f0")), ino(&s(2).join("data/f0")));
    assert_ne!(ino(&s(1).join("data/f0")), ino(&s(2).join("data/f0")));
    let before = used(&env, "c_2");

    env.ok(&["rm", "c_0"]);
    let walked = lxc_snap::store::exclusive_bytes(&common::held(&s(2))).expect("walk");
    assert_eq!(used(&env, "c_2"), walked);
    assert!(
        walked > before,
        "c_2 now holds alone what it shared with c_0"
    );
    assert_trees_identical(&delta, &s(2));
}
