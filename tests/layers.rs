//! Layers, through the library: a real overlay is changed at random
//! between captures; each layer must flatten back to exactly the upper it
//! captured, and show through an overlay what the upper showed.

mod common;
#[path = "common/loopfs.rs"]
#[allow(dead_code)]
mod loopfs;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lxc_snap::copy::{
    copy_tree, copy_tree_with, flatten, make_layer, plan_layer, Compare, CopyOptions, LayerPlan,
    Plan,
};

use common::fidelity::assert_trees_identical;
use common::history::{change, make_base, mount_overlay, stamp, Mounted, Rng};
use common::lxc::{assert_same_tree, tree_manifest};

fn layer_plan(upper: &Path, anchor: &Path, base: &Path) -> LayerPlan {
    layer_plan_with(upper, anchor, base, None)
}

/// [`layer_plan`], told the anchor's inodes with several names.
fn layer_plan_with(
    upper: &Path,
    anchor: &Path,
    base: &Path,
    names: Option<&HashMap<u64, u64>>,
) -> LayerPlan {
    // Planned twice, with the anchor read ahead into an index and read as
    // it goes: the two must agree, and the one used alternates (so the
    // flattening checks test both).
    let [live, indexed] = [false, true].map(|indexed| {
        match plan_layer(
            upper,
            anchor,
            &[base.to_path_buf()],
            Compare::QuickCheck,
            names,
            indexed,
            None,
        )
        .expect("plan")
        {
            Plan::Layer(plan) => plan,
            Plan::Full(why) => {
                panic!("a change made through the overlay needs a whole copy: {why}")
            }
        }
    });
    let summary = |p: &LayerPlan| {
        (
            p.selected(),
            p.removed.clone(),
            p.tree_entries,
            p.tree_bytes,
            p.tree_allocated,
        )
    };
    assert_eq!(
        summary(&live),
        summary(&indexed),
        "the plan with the anchor's index differs from the plan without"
    );
    static TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 0 {
        live
    } else {
        indexed
    }
}

/// What the layers of a run held, to show the run covered every case.
#[derive(Default, Debug)]
struct Seen {
    removed: usize,
    whiteouts: usize,
    opaque: usize,
    multi_name: usize,
}

impl Seen {
    fn count(&mut self, layer: &Path, removed: &[PathBuf]) {
        self.removed += removed.len();
        for (rel, st) in common::fidelity::lstat_tree(layer) {
            if common::fidelity::is_whiteout(&st) && !removed.contains(&rel) {
                self.whiteouts += 1;
            }
            if common::fidelity::kind(&st) == nix::sys::stat::SFlag::S_IFDIR
                && xattr::get(layer.join(&rel), "trusted.overlay.opaque")
                    .ok()
                    .flatten()
                    .is_some()
            {
                self.opaque += 1;
            }
            if common::fidelity::kind(&st) == nix::sys::stat::SFlag::S_IFREG && st.st_nlink > 1 {
                self.multi_name += 1;
            }
        }
    }
}

#[test]
fn random_changes_through_an_overlay_flatten_back_exactly() {
    if !common::system_tests_enabled(
        "random_changes_through_an_overlay_flatten_back_exactly",
        false,
    ) {
        return;
    }
    let mut seen = Seen::default();
    for seed in [0x5eed_1a7e, 0xdead_beef, 0x1234_5678_9abc] {
        changes_flatten_back(seed, &std::env::temp_dir(), &mut seen);
    }
    // Where files are cloned, too.
    let xfs = loopfs::LoopFs::new("xfs").expect("mkfs.xfs missing: apt-get install xfsprogs");
    changes_flatten_back(0x0f5, xfs.path(), &mut seen);
    match loopfs::LoopFs::new("btrfs") {
        Some(btrfs) => changes_flatten_back(0xb7f5, btrfs.path(), &mut seen),
        None => eprintln!("btrfs not tested: mkfs.btrfs missing (apt-get install btrfs-progs)"),
    }
    assert!(
        seen.removed > 0 && seen.whiteouts > 0 && seen.opaque > 0 && seen.multi_name > 0,
        "the changes covered every case: {seen:?}"
    );
}

fn changes_flatten_back(seed: u64, place: &Path, seen: &mut Seen) {
    let tmp = tempfile::tempdir_in(place).expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    let base = t("base");
    make_base(&base);
    fs::create_dir_all(t("upper")).expect("upper");
    fs::create_dir_all(t("work")).expect("work");
    let mut rng = Rng(seed);

    let rounds = 12;
    let mut captured: Vec<(PathBuf, PathBuf, Vec<PathBuf>)> = Vec::new();
    let anchor = t("anchor");
    let mut anchor_names = HashMap::new();
    let mut reference = anchor.clone();
    for round in 0..=rounds {
        {
            let m = mount_overlay(&t("merged"), &[&base], Some((&t("upper"), &t("work"))));
            for step in 0..15 {
                change(&mut rng, &m.0, round * 100 + step);
            }
        }
        common::fidelity::settle_link_atimes(&t("upper"));
        let expected = t(&format!("expected{round}"));
        copy_tree(&t("upper"), &expected).expect("copying the upper");
        if round == 0 {
            let stats = copy_tree(&t("upper"), &anchor).expect("anchor");
            anchor_names.extend(stats.multi_name_inodes);
            continue;
        }
        // Every other round without the record: the link counts decide.
        let names = (round % 2 == 0).then_some(&anchor_names);
        let plan = layer_plan_with(&t("upper"), &anchor, &base, names);
        let layer = t(&format!("layer{round}"));
        let reference_dir = common::held(&reference);
        let opts = CopyOptions {
            reference: Some(&reference_dir),
            ..CopyOptions::default()
        };
        let stats = make_layer(&t("upper"), &layer, &plan, &opts).expect("layer");
        let whole = copy_tree_with(
            &t("upper"),
            &t(&format!("whole{round}")),
            &CopyOptions::default(),
        )
        .expect("whole copy");
        assert!(
            stats.entries <= whole.entries + plan.removed.len() as u64,
            "round {round}: the layer has {} entries, the tree {}",
            stats.entries,
            whole.entries
        );
        assert_eq!(
            plan.tree_entries, whole.entries,
            "round {round}: entries counted"
        );
        assert_eq!(plan.tree_bytes, whole.bytes, "round {round}: bytes counted");

        let flat = t(&format!("flat{round}"));
        flatten(&layer, &anchor, &plan.removed, &flat, &Default::default()).expect("flatten");
        assert_trees_identical(&expected, &flat);
        seen.count(&layer, &plan.removed);
        captured.push((layer.clone(), expected, plan.removed.clone()));
        reference = layer;
    }

    // What each layer shows over the anchor and the base is what the upper
    // showed over the base when it was captured.
    for (i, (layer, expected, _)) in captured.iter().enumerate() {
        let seen = mount_overlay(&t(&format!("view{i}")), &[layer, &anchor, &base], None);
        let want = mount_overlay(&t(&format!("want{i}")), &[expected, &base], None);
        assert_same_tree(
            &format!("layer {i}"),
            &tree_manifest(&want.0),
            &tree_manifest(&seen.0),
            &[],
        );
    }
}

#[test]
fn an_unchanged_tree_makes_an_empty_layer() {
    if !common::system_tests_enabled("an_unchanged_tree_makes_an_empty_layer", false) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    let base = t("base");
    make_base(&base);
    make_base(&t("upper"));
    common::fidelity::settle_link_atimes(&t("upper"));
    copy_tree(&t("upper"), &t("anchor")).expect("anchor");
    let plan = layer_plan(&t("upper"), &t("anchor"), &base);
    let stats =
        make_layer(&t("upper"), &t("layer"), &plan, &CopyOptions::default()).expect("layer");
    assert_eq!(stats.entries, 0, "nothing below the root");
    assert!(plan.removed.is_empty());
    flatten(
        &t("layer"),
        &t("anchor"),
        &[],
        &t("flat"),
        &Default::default(),
    )
    .expect("flatten");
    assert_trees_identical(&t("upper"), &t("flat"));
}

#[test]
fn extended_attributes_added_changed_or_removed_are_changes() {
    if !common::system_tests_enabled(
        "extended_attributes_added_changed_or_removed_are_changes",
        false,
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    let base = t("base");
    fs::create_dir_all(&base).expect("mkdir");
    for name in [
        "d/added",
        "d/changed",
        "d/removed",
        "d/kept",
        "d/plain",
        "e/f",
    ] {
        let path = t("upper").join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, name).expect("write");
    }
    for name in ["changed", "removed", "kept"] {
        xattr::set(t("upper/d").join(name), "user.k", b"one").expect("setxattr");
    }
    xattr::set(t("upper/e"), "user.dir", b"one").expect("setxattr");
    copy_tree(&t("upper"), &t("anchor")).expect("anchor");
    // Attributes move the ctime only: size and mtime stay.
    xattr::set(t("upper/d/added"), "user.k", b"new").expect("setxattr");
    xattr::set(t("upper/d/changed"), "user.k", b"two").expect("setxattr");
    xattr::remove(t("upper/d/removed"), "user.k").expect("removexattr");
    xattr::remove(t("upper/e"), "user.dir").expect("removexattr");
    // `layer_plan` plans with and without the anchor's index, and checks
    // that both agree.
    let plan = layer_plan(&t("upper"), &t("anchor"), &base);
    let selected: Vec<_> = plan
        .selected()
        .into_iter()
        .map(|(p, what)| format!("{} {what:?}", p.display()))
        .collect();
    assert_eq!(
        selected,
        [
            "d Descend",
            "d/added All",
            "d/changed All",
            "d/removed All",
            "e Descend"
        ],
        "the files whose attributes changed, their directory, and the directory whose own did"
    );
}

#[test]
fn what_a_layer_cannot_say_asks_for_a_whole_copy() {
    if !common::system_tests_enabled("what_a_layer_cannot_say_asks_for_a_whole_copy", false) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    let base = t("base");
    make_base(&base);
    // The upper changed a base file; the anchor has that copy.
    fs::create_dir_all(t("upper/d0")).expect("mkdir");
    fs::write(t("upper/d0/f0"), b"changed\n").expect("write");
    fs::write(t("upper/d0/own"), b"own\n").expect("write");
    copy_tree(&t("upper"), &t("anchor")).expect("anchor");

    // Removing the upper-only file is a plain removal...
    fs::remove_file(t("upper/d0/own")).expect("rm");
    let plan = layer_plan(&t("upper"), &t("anchor"), &base);
    assert_eq!(plan.removed, [PathBuf::from("d0/own")]);

    // ...but taking the copy of a base file out of the upper by hand shows
    // the base's again, which a whiteout cannot say.
    fs::remove_file(t("upper/d0/f0")).expect("rm");
    for indexed in [false, true] {
        match plan_layer(
            &t("upper"),
            &t("anchor"),
            std::slice::from_ref(&base),
            Compare::QuickCheck,
            None,
            indexed,
            None,
        )
        .expect("plan")
        {
            Plan::Full(why) => assert!(why.contains("d0/f0"), "{why}"),
            Plan::Layer(_) => panic!("a layer cannot show the base's file again"),
        }
    }
}

#[test]
fn checksum_finds_a_change_that_kept_size_and_mtime() {
    if !common::system_tests_enabled("checksum_finds_a_change_that_kept_size_and_mtime", false) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    fs::create_dir_all(t("upper")).expect("mkdir");
    fs::write(t("upper/f"), b"one\n").expect("write");
    copy_tree(&t("upper"), &t("anchor")).expect("anchor");
    let before = fs::symlink_metadata(t("upper/f")).expect("stat");
    fs::write(t("upper/f"), b"two\n").expect("rewrite");
    let mtime = nix::sys::time::TimeSpec::new(
        std::os::unix::fs::MetadataExt::mtime(&before),
        std::os::unix::fs::MetadataExt::mtime_nsec(&before),
    );
    nix::sys::stat::utimensat(
        None,
        &t("upper/f"),
        &mtime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("putting the mtime back");
    for (compare, in_layer) in [(Compare::QuickCheck, false), (Compare::Checksum, true)] {
        let Plan::Layer(plan) =
            plan_layer(&t("upper"), &t("anchor"), &[], compare, None, false, None).expect("plan")
        else {
            panic!("a layer will do");
        };
        let layer = t(&format!("layer-{compare:?}"));
        make_layer(&t("upper"), &layer, &plan, &CopyOptions::default()).expect("layer");
        assert_eq!(layer.join("f").exists(), in_layer, "{compare:?}");
    }
}

#[test]
fn a_new_name_for_an_unchanged_file_keeps_the_names_one_inode() {
    if !common::system_tests_enabled(
        "a_new_name_for_an_unchanged_file_keeps_the_names_one_inode",
        false,
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    fs::create_dir_all(t("upper/a")).expect("mkdir");
    fs::write(t("upper/a/x"), b"shared\n").expect("write");
    copy_tree(&t("upper"), &t("anchor")).expect("anchor");
    fs::hard_link(t("upper/a/x"), t("upper/y")).expect("link");
    let Plan::Layer(plan) = plan_layer(
        &t("upper"),
        &t("anchor"),
        &[],
        Compare::QuickCheck,
        None,
        true,
        None,
    )
    .expect("plan") else {
        panic!("a layer will do");
    };
    make_layer(&t("upper"), &t("layer"), &plan, &CopyOptions::default()).expect("layer");
    assert!(
        t("layer/a/x").exists(),
        "the unchanged name goes with its new one"
    );
    flatten(
        &t("layer"),
        &t("anchor"),
        &[],
        &t("flat"),
        &Default::default(),
    )
    .expect("flatten");
    assert_trees_identical(&t("upper"), &t("flat"));
}

// Through the command line.

use common::fixtures::{captured, json, names_of, overlay_clone};
use common::TestEnv;

/// A container with 40 files; returns its delta.
fn container(env: &TestEnv) -> PathBuf {
    let delta = overlay_clone(env, "c");
    fs::create_dir_all(delta.join("data/sub")).expect("mkdir");
    for i in 0..40 {
        fs::write(delta.join(format!("data/f{i}")), vec![i as u8; 8192]).expect("write");
    }
    fs::write(delta.join("data/sub/kept"), b"kept\n").expect("write");
    delta
}

/// [`container`], a whole snapshot c_0, one change and a layer c_1 over
/// c_0; returns the delta.
fn whole_and_layer(env: &TestEnv) -> PathBuf {
    let delta = container(env);
    env.ok(&["-q", "c"]);
    fs::write(delta.join("data/f1"), b"one\n").expect("change");
    env.ok(&["-q", "c"]);
    delta
}

/// A full-fidelity copy of the delta as it is now, to compare with later.
fn keep(env: &TestEnv, delta: &Path, name: &str) -> PathBuf {
    let saved = env.path().join(name);
    copy_tree(delta, &saved).expect("saving the delta");
    saved
}

/// The inode of `rel` in the captured tree of `snap` (its own: a layer's
/// or a whole tree's).
fn inode_in(env: &TestEnv, snap: &str, rel: &str) -> u64 {
    let path = env.snapdir.join(snap).join("private/delta").join(rel);
    std::os::unix::fs::MetadataExt::ino(&fs::symlink_metadata(&path).expect("stat"))
}

fn layer_of(env: &TestEnv, snap: &str) -> Option<String> {
    let info = json(env, &["info", snap, "--json"]);
    info["layer_over"].as_str().map(str::to_string)
}

fn used_in_list(env: &TestEnv, snap: &str) -> u64 {
    json(env, &["list", "c", "--json"])
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["name"] == snap)
        .unwrap_or_else(|| panic!("{snap} is listed"))["used_bytes"]
        .as_u64()
        .expect("used_bytes")
}

#[test]
fn later_snapshots_are_layers_that_restore_exactly() {
    if !common::system_tests_enabled("later_snapshots_are_layers_that_restore_exactly", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = container(&env);
    env.ok(&["-q", "c"]);
    fs::write(delta.join("data/f3"), b"changed\n").expect("change");
    fs::remove_file(delta.join("data/f4")).expect("rm");
    fs::create_dir(delta.join("data/new")).expect("mkdir");
    let saved = keep(&env, &delta, "saved1");
    env.ok(&["-q", "c"]);

    assert_eq!(layer_of(&env, "c_0"), None);
    assert_eq!(layer_of(&env, "c_1").as_deref(), Some("c_0"));
    let info = json(&env, &["info", "c_1", "--json"]);
    // The root, data, f3, f4's whiteout, new.
    assert_eq!(info["layer_entries"], 4, "{info}");
    assert_eq!(
        info["files"],
        json(&env, &["info", "c_0", "--json"])["files"]
    );
    let layer = env.snapdir.join("c_1/private/delta");
    assert!(
        !layer.join("data/f5").exists(),
        "unchanged files stay below"
    );
    assert_trees_identical(&saved, &captured(&env, "c_1"));

    // Started as a container, it stacks the older snapshot's tree.
    let config = fs::read_to_string(env.snapdir.join("c_1/config")).expect("config");
    let (s0, s1) = (env.snapdir.join("c_0"), env.snapdir.join("c_1"));
    assert!(
        config.contains(&format!(
            "overlay:{}/private/delta:{}/private/delta:{}/base/rootfs:{}/private/scratch/upper",
            s1.display(),
            s0.display(),
            env.lxcpath.display(),
            s1.display()
        )),
        "{config}"
    );

    // Restored, it is an independent whole delta, which needs the base only.
    env.ok(&["-q", "restore", "c_1", "back"]);
    assert_eq!(
        common::lxc::dependency_pairs(&env.lxcpath.join("back/lxc_rdepends")),
        [(env.lxcpath.display().to_string(), "base".to_string())]
    );
    assert!(
        !env.snapdir.join("c_0/lxc_snapshots").exists()
            || !fs::read_to_string(env.snapdir.join("c_0/lxc_snapshots"))
                .expect("read")
                .contains("back")
    );
    let restored = env.lxcpath.join("back/overlay/delta");
    assert_same_tree(
        "restored delta",
        &tree_manifest(&saved),
        &tree_manifest(&restored),
        &["etc", "etc/hostname"],
    );

    // Through the kernel it shows what the container showed.
    let dir = env.path().join("browse");
    fs::create_dir(&dir).expect("mkdir");
    env.ok(&["mount", "c_1", dir.to_str().expect("utf-8")]);
    let seen = Mounted(dir.clone());
    let want = mount_overlay(
        &env.path().join("want"),
        &[&saved, &env.lxcpath.join("base/rootfs")],
        None,
    );
    assert_same_tree(
        "mounted",
        &tree_manifest(&want.0),
        &tree_manifest(&seen.0),
        &[],
    );

    let diff = env.ok(&["diff", "c_0", "c_1"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(
        lines,
        [
            "M /data/f3\t(content)",
            "D /data/f4",
            "A /data/new",
            "1 added, 1 modified, 1 deleted, 0 type changed; \
             0 B added, 8.0 KiB removed, 8 B changed"
        ],
        "{diff}"
    );
}

/// The allocated bytes of one file, as `du` counts them.
fn allocated(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::blocks(&fs::symlink_metadata(path).expect("stat")) * 512
}

/// `a` and `b` differ by at most a few blocks (metadata rewritten, the
/// size record).
fn about(a: u64, b: u64, what: &str) {
    assert!(a.abs_diff(b) <= 3 * 4096, "{what}: {a} and {b} differ");
}

/// The bytes a line `... freed N` or `... would free N in all` names.
fn bytes_after(text: &str, marker: &str) -> u64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {text}"));
    text[at + marker.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("a number after {marker:?} in {text}"))
}

#[test]
fn deleting_a_snapshot_layers_need_keeps_only_what_they_show() {
    if !common::system_tests_enabled(
        "deleting_a_snapshot_layers_need_keeps_only_what_they_show",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = container(&env);
    env.ok(&["-q", "c"]);
    fs::write(delta.join("data/f1"), b"one\n").expect("change");
    let saved1 = keep(&env, &delta, "saved1");
    env.ok(&["-q", "c"]);
    fs::write(delta.join("data/f2"), b"two\n").expect("change");
    let saved2 = keep(&env, &delta, "saved2");
    env.ok(&["-q", "c"]);
    let tree0 = env.snapdir.join("c_0/private/delta");
    // Both layers hide c_0's f1; c_1 still shows its f2.
    assert_eq!(
        used_in_list(&env, "c_0"),
        allocated(&tree0.join("data/f1")),
        "deleting c_0 frees what both layers hide"
    );

    let dry = env.ok(&["--bytes", "rm", "--dry-run", "c_0"]);
    assert!(
        dry.contains(&format!(
            "would delete c_0 (USED {})",
            used_in_list(&env, "c_0")
        )),
        "{dry}"
    );
    let would = bytes_after(&dry, "would free ");
    assert!(tree0.join("data/f1").exists(), "a dry run deletes nothing");
    let before = common::du(&env.snapdir);
    let out = env.run(&["--bytes", "rm", "c_0"]);
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let freed = bytes_after(&stdout, "deleted c_0, freed ");
    assert_eq!(freed, would, "the dry run said what the run freed");
    about(
        before - common::du(&env.snapdir),
        freed,
        "du agrees with what was freed",
    );
    assert!(
        stderr.contains("the tree of c_0 stays, unlisted, holding")
            && stderr.contains("for c_1, c_2 (stored as changes to it)"),
        "{stderr}"
    );
    assert_eq!(names_of(&env, "c"), ["c_1", "c_2"]);
    assert!(!tree0.join("data/f1").exists(), "no layer shows it");
    assert!(tree0.join("data/f2").exists(), "c_1 shows it");
    assert!(!env.snapdir.join("c_0/config").exists());
    env.fails_with(3, &["info", "c_0"]);
    let info = env.ok(&["info", "c_1"]);
    assert!(
        info.contains("stored as:     changes to c_0, deleted but kept for its layers (2 entries)"),
        "{info}"
    );
    assert_trees_identical(&saved1, &captured(&env, "c_1"));
    assert_trees_identical(&saved2, &captured(&env, "c_2"));

    // With c_1 gone, c_2 alone is over it: what c_2 hides goes too.
    env.ok(&["-q", "rm", "c_1"]);
    assert!(!tree0.join("data/f2").exists(), "c_2 hides it");
    assert_trees_identical(&saved2, &captured(&env, "c_2"));
    let c2 = used_in_list(&env, "c_2");
    let walked = lxc_snap::store::exclusive_bytes(&common::held(&tree0)).expect("walk")
        + lxc_snap::store::exclusive_bytes(&common::held(&env.snapdir.join("c_2/private/delta")))
            .expect("walk");
    assert_eq!(
        c2, walked,
        "deleting the last layer frees the held files too"
    );

    // A new snapshot still goes over the held one.
    env.ok(&["-q", "c"]);
    assert_eq!(layer_of(&env, "c_3").as_deref(), Some("c_0"));
    env.ok(&["-q", "rm", "c_2", "c_3"]);
    assert!(
        !env.snapdir.join("c_0").exists(),
        "the held snapshot went with the last layer over it"
    );
    assert!(names_of(&env, "c").is_empty());
}

#[test]
fn prune_says_what_it_would_free_and_frees_it() {
    if !common::system_tests_enabled("prune_says_what_it_would_free_and_frees_it", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = container(&env);
    env.ok(&["-q", "c"]);
    for (i, f) in ["f1", "f2", "f3"].iter().enumerate() {
        fs::write(delta.join("data").join(f), vec![b'x'; 4096 * (i + 1)]).expect("change");
        env.ok(&["-q", "c"]);
    }
    assert_eq!(layer_of(&env, "c_3").as_deref(), Some("c_0"));
    let used: Vec<u64> = (0..4)
        .map(|i| used_in_list(&env, &format!("c_{i}")))
        .collect();

    let plan = env.ok(&["--bytes", "prune", "c", "--keep-last", "1", "--dry-run"]);
    for (i, u) in used.iter().enumerate() {
        let row = plan
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(&format!("c_{i} ")))
            .unwrap_or_else(|| panic!("c_{i} in {plan}"));
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(words[3], u.to_string(), "USED of c_{i}: {plan}");
        assert_eq!(words[4], if i == 3 { "keep" } else { "remove" }, "{plan}");
    }
    let would = bytes_after(&plan, "would free ");
    assert!(
        would > used.iter().take(3).sum::<u64>(),
        "together they free more than each alone: {plan}"
    );
    assert!(would > 0);

    let before = common::du(&env.snapdir);
    let out = env.ok(&["--bytes", "prune", "c", "--keep-last", "1"]);
    let freed = bytes_after(&out, "freed ");
    let in_all = bytes_after(&out, "\nfreed ");
    assert!(freed > 0, "{out}");
    assert_eq!(in_all, would, "the dry run said what the run freed: {out}");
    about(before - common::du(&env.snapdir), in_all, "du agrees");
    let order: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("deleted "))
        .map(|l| l.split(',').next().unwrap_or(""))
        .collect();
    assert_eq!(order, ["c_2", "c_1", "c_0"], "newest first: {out}");
    assert_eq!(names_of(&env, "c"), ["c_3"]);

    // c_3 alone over what is left of c_0: its USED is all the family
    // takes but its directory's small files, and the total says so.
    let listed = env.ok(&["--bytes", "list", "c"]);
    let total = listed.lines().last().expect("total line");
    let used3 = used_in_list(&env, "c_3");
    assert!(
        total.starts_with(&format!("total: 1 snapshot, USED {used3} in all, ")),
        "{listed}"
    );
    let disk = bytes_after(total, "in all, ");
    let du = common::du(&env.snapdir);
    assert!(
        disk <= du && du - disk <= 8 * 4096,
        "on disk {disk}, du {du}: {listed}"
    );
}

#[test]
fn large_changes_start_a_new_whole_snapshot() {
    if !common::system_tests_enabled("large_changes_start_a_new_whole_snapshot", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = container(&env);
    env.ok(&["-q", "c"]);
    for i in 0..10 {
        fs::write(delta.join(format!("data/f{i}")), b"rewritten\n").expect("change");
    }
    env.ok(&["-q", "c"]);
    assert_eq!(layer_of(&env, "c_1").as_deref(), Some("c_0"));
    fs::write(delta.join("data/f30"), b"small\n").expect("change");
    let saved = keep(&env, &delta, "saved");
    let out = env.run(&["c"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "lxc-snap: taking a whole snapshot: the changes since c_0 reached an eighth \
         of its entries or bytes\n",
        "the switch is told"
    );
    assert_eq!(
        layer_of(&env, "c_2"),
        None,
        "a quarter changed: a whole tree again"
    );
    assert_trees_identical(&saved, &captured(&env, "c_2"));
    let ino = |snap: &str, rel: &str| inode_in(&env, snap, rel);
    assert_eq!(
        ino("c_0", "data/f20"),
        ino("c_2", "data/f20"),
        "shared with c_0"
    );
    env.ok(&["-q", "c"]);
    assert_eq!(layer_of(&env, "c_3").as_deref(), Some("c_2"));
    env.ok(&["-q", "snap", "--whole", "c"]);
    assert_eq!(layer_of(&env, "c_4"), None);
}

#[test]
fn a_whole_snapshot_after_a_layer_links_what_the_layer_and_its_anchor_keep() {
    if !common::system_tests_enabled(
        "a_whole_snapshot_after_a_layer_links_what_the_layer_and_its_anchor_keep",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = container(&env);
    env.ok(&["-q", "c"]);
    // c_1, a layer over c_0: a new file, a changed one, a removed one.
    fs::write(delta.join("data/new"), vec![7u8; 4096]).expect("write");
    fs::write(delta.join("data/f1"), b"one\n").expect("change");
    let f5 = delta.join("data/f5");
    let f5_before = fs::symlink_metadata(&f5).expect("stat");
    fs::remove_file(&f5).expect("remove");
    env.ok(&["-q", "c"]);
    assert_eq!(layer_of(&env, "c_1").as_deref(), Some("c_0"));
    let used_before = used_in_list(&env, "c_1");
    // f5 back with its old bytes, owner, mode and mtime: the layer says it
    // was gone, so c_0's copy is not what c_1 captured.
    fs::write(&f5, vec![5u8; 8192]).expect("write");
    let mtime = nix::sys::time::TimeSpec::new(
        std::os::unix::fs::MetadataExt::mtime(&f5_before),
        std::os::unix::fs::MetadataExt::mtime_nsec(&f5_before),
    );
    nix::sys::stat::utimensat(
        None,
        &f5,
        &mtime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
    let saved = keep(&env, &delta, "saved");
    env.ok(&["-q", "snap", "--whole", "c"]);
    assert_eq!(layer_of(&env, "c_2"), None);
    assert_trees_identical(&saved, &captured(&env, "c_2"));
    let ino = |snap: &str, rel: &str| inode_in(&env, snap, rel);
    assert_eq!(
        ino("c_1", "data/new"),
        ino("c_2", "data/new"),
        "kept in the layer"
    );
    assert_eq!(
        ino("c_1", "data/f1"),
        ino("c_2", "data/f1"),
        "changed in the layer"
    );
    assert_eq!(
        ino("c_0", "data/f20"),
        ino("c_2", "data/f20"),
        "kept in the anchor"
    );
    assert_ne!(
        ino("c_0", "data/f5"),
        ino("c_2", "data/f5"),
        "hidden by the layer's whiteout"
    );
    // What c_1 held alone is now shared with c_2.
    let used_after = used_in_list(&env, "c_1");
    assert!(
        used_after + 8192 <= used_before,
        "c_1 used {used_before} before, {used_after} after"
    );
    // A second whole snapshot of the same tree stores no file again.
    env.ok(&["-q", "snap", "--whole", "c"]);
    assert_eq!(ino("c_2", "data/new"), ino("c_3", "data/new"));
    assert_eq!(ino("c_2", "data/f5"), ino("c_3", "data/f5"));
}

#[test]
fn a_change_a_layer_cannot_say_makes_a_whole_snapshot() {
    if !common::system_tests_enabled("a_change_a_layer_cannot_say_makes_a_whole_snapshot", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = container(&env);
    fs::create_dir_all(delta.join("etc")).expect("mkdir");
    fs::write(delta.join("etc/motd"), b"our motd\n").expect("copy-up");
    env.ok(&["-q", "c"]);
    // Taken out of the delta by hand: the base's motd shows again.
    fs::remove_file(delta.join("etc/motd")).expect("rm");
    let saved = keep(&env, &delta, "saved");
    let out = env.run(&["c"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("taking a whole snapshot"),
        "{out:?}"
    );
    assert_eq!(layer_of(&env, "c_1"), None);
    assert_trees_identical(&saved, &captured(&env, "c_1"));
}

#[test]
fn files_with_several_names_stay_out_of_a_layer_only_all_together() {
    if !common::system_tests_enabled(
        "files_with_several_names_stay_out_of_a_layer_only_all_together",
        false,
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    let base = t("base");
    fs::create_dir_all(&base).expect("base");
    fs::create_dir_all(t("upper/a")).expect("mkdir");
    fs::create_dir_all(t("upper/b")).expect("mkdir");
    fs::write(t("upper/a/x"), b"group\n").expect("write");
    fs::hard_link(t("upper/a/x"), t("upper/b/y")).expect("link");
    fs::hard_link(t("upper/a/x"), t("upper/b/z")).expect("link");
    fs::write(t("upper/a/pair"), b"pair\n").expect("write");
    fs::hard_link(t("upper/a/pair"), t("upper/b/pair")).expect("link");
    let stats = copy_tree(&t("upper"), &t("anchor")).expect("anchor");
    let names: HashMap<u64, u64> = stats.multi_name_inodes.into_iter().collect();

    // Unchanged: nothing goes into the layer, told or not.
    for names in [Some(&names), None] {
        let plan = layer_plan_with(&t("upper"), &t("anchor"), &base, names);
        let layer = t(&format!("empty-{}", names.is_some()));
        let stats = make_layer(&t("upper"), &layer, &plan, &CopyOptions::default()).expect("layer");
        assert_eq!(stats.entries, 0, "told the names: {}", names.is_some());
    }

    // One name gone: the others go into the layer, one inode again, and
    // the untouched pair stays out.
    fs::remove_file(t("upper/b/z")).expect("rm");
    let plan = layer_plan_with(&t("upper"), &t("anchor"), &base, Some(&names));
    make_layer(&t("upper"), &t("layer"), &plan, &CopyOptions::default()).expect("layer");
    assert!(t("layer/a/x").exists() && t("layer/b/y").exists());
    assert!(!t("layer/a/pair").exists() && !t("layer/b/pair").exists());
    flatten(
        &t("layer"),
        &t("anchor"),
        &plan.removed,
        &t("flat"),
        &Default::default(),
    )
    .expect("flatten");
    assert_trees_identical(&t("upper"), &t("flat"));
}

#[test]
fn an_interrupted_hold_is_finished_by_the_next_run() {
    if !common::system_tests_enabled("an_interrupted_hold_is_finished_by_the_next_run", true) {
        return;
    }
    let env = TestEnv::new();
    whole_and_layer(&env);
    let registered = |snap: &str| {
        common::lxc::dependency_pairs(&env.lxcpath.join("base/lxc_snapshots"))
            .iter()
            .any(|(_, name)| name == snap)
    };
    assert!(registered("c_0") && registered("c_1"));
    // What a run that died right after marking c_0 held leaves.
    let meta_path = env.snapdir.join("c_0/lxc-snap.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta_path).expect("read")).expect("json");
    meta["held"] = true.into();
    meta["format_version"] = 2.into();
    fs::write(&meta_path, serde_json::to_vec(&meta).expect("json")).expect("write");
    assert_eq!(names_of(&env, "c"), ["c_1"]);

    env.ok(&["-q", "c"]);
    assert!(
        !env.snapdir.join("c_0/config").exists(),
        "held: it cannot be started"
    );
    assert!(!registered("c_0"), "held: the base no longer lists it");
    assert!(env.snapdir.join("c_0/private/delta").is_dir());
    env.ok(&["rm", "c_1", "c_2"]);
    assert!(!env.snapdir.join("c_0").exists());
    assert!(!registered("c_1") && !registered("c_2"));
}

#[test]
fn a_layer_without_its_anchor_says_it_is_broken() {
    if !common::system_tests_enabled("a_layer_without_its_anchor_says_it_is_broken", true) {
        return;
    }
    let env = TestEnv::new();
    whole_and_layer(&env);
    let tree = env.snapdir.join("c_0/private/delta");
    fs::rename(&tree, tree.with_file_name("moved")).expect("move the anchor's tree");
    let why =
        "snapshot c_1 cannot be used (anchor missing): it is stored as changes to c_0, whose tree is missing";
    let out = env.run(&["info", "c_1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(why),
        "{out:?}"
    );
    assert!(env.fails_with(1, &["restore", "c_1", "back"]).contains(why));
    assert!(!env.lxcpath.join("back").exists());
    // A new snapshot does not build on it: it is whole.
    env.ok(&["-q", "c"]);
    assert_eq!(layer_of(&env, "c_2"), None);
}

/// What a quick check and `diff` see of an entry: what a metadata change
/// moves.
fn seen_by_diff(
    st: &nix::sys::stat::FileStat,
    xattrs: &std::collections::BTreeMap<std::ffi::OsString, Vec<u8>>,
) -> String {
    let kind = common::fidelity::kind(st);
    let content = if kind == nix::sys::stat::SFlag::S_IFREG {
        format!("{} {}.{}", st.st_size, st.st_mtime, st.st_mtime_nsec)
    } else {
        String::new()
    };
    format!(
        "{:o} {}:{} {content} {xattrs:?}",
        st.st_mode, st.st_uid, st.st_gid
    )
}

/// The paths (as `diff` prints them) whose mode, owner, attributes or, for
/// regular files, size or mtime differ between two copies of a tree.
fn metadata_changes(old: &Path, new: &Path) -> Vec<String> {
    let old: HashMap<PathBuf, String> = common::fidelity::lstat_tree(old)
        .into_iter()
        .map(|(rel, st)| {
            let x = common::fidelity::xattrs(&old.join(&rel));
            (rel, seen_by_diff(&st, &x))
        })
        .collect();
    let mut changed: Vec<String> = common::fidelity::lstat_tree(new)
        .into_iter()
        .filter(|(rel, st)| {
            let x = common::fidelity::xattrs(&new.join(rel));
            old.get(rel) != Some(&seen_by_diff(st, &x))
        })
        .map(|(rel, _)| format!("/{}", rel.display()))
        .map(|p| {
            if p == "/" {
                p
            } else {
                p.trim_end_matches('/').to_string()
            }
        })
        .collect();
    changed.sort();
    changed
}

/// One random metadata change (or, now and then, a rewrite) of a file or a
/// directory at any depth of `delta`, made directly in the upper.
fn change_metadata(rng: &mut Rng, delta: &Path, entries: &[PathBuf], step: usize) {
    let path = delta.join(&entries[rng.below(entries.len())]);
    let is_dir = path.is_dir();
    match rng.below(6) {
        0 => {
            let modes: &[u32] = if is_dir {
                &[0o700, 0o755, 0o2750, 0o1777, 0o711, 0o500]
            } else {
                &[0o600, 0o644, 0o4755, 0o444, 0o000, 0o2711]
            };
            let mode = modes[rng.below(modes.len())];
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        }
        1 => {
            let (uid, gid) = (rng.below(5000) as u32, rng.below(5000) as u32);
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).expect("chown");
        }
        2 => {
            let t = nix::sys::time::TimeSpec::new(
                1_500_000_000 + rng.below(1 << 20) as i64,
                rng.below(1_000_000_000) as i64,
            );
            nix::sys::stat::utimensat(
                None,
                &path,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .expect("utimensat");
        }
        3 => {
            let name = ["user.tag", "trusted.tag", "user.other"][rng.below(3)];
            xattr::set(&path, name, format!("v{step}").as_bytes()).expect("setxattr");
        }
        4 => {
            for name in ["user.tag", "trusted.tag", "user.other"] {
                let _ = xattr::remove(&path, name);
            }
        }
        _ if !is_dir => {
            // Same size, new bytes, new mtime.
            let len = fs::symlink_metadata(&path).expect("stat").len() as usize;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            std::io::Write::write_all(&mut f, &vec![b'a' + (step % 26) as u8; len])
                .expect("rewrite");
            stamp(&path, step);
        }
        _ => {}
    }
}

#[test]
fn random_metadata_changes_at_every_depth_survive_restore_mount_and_diff() {
    if !common::system_tests_enabled(
        "random_metadata_changes_at_every_depth_survive_restore_mount_and_diff",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    // Three branches six levels deep, three files in each directory, and a
    // wide directory no change touches, so that most snapshots are layers.
    let mut entries = Vec::new();
    for branch in ["home", "srv", "var"] {
        let mut dir = PathBuf::from(branch);
        for depth in 0..6 {
            fs::create_dir_all(delta.join(&dir)).expect("mkdir");
            entries.push(dir.clone());
            for f in 0..3 {
                let file = dir.join(format!("f{f}"));
                fs::write(
                    delta.join(&file),
                    format!("{} {depth} {f}\n", dir.display()),
                )
                .expect("write");
                entries.push(file);
            }
            dir = dir.join(format!("d{depth}"));
        }
    }
    fs::create_dir_all(delta.join("bulk")).expect("mkdir");
    for i in 0..400 {
        fs::write(delta.join(format!("bulk/{i}")), b"bulk\n").expect("write");
    }

    let base = env.lxcpath.join("base/rootfs");
    let mut rng = Rng(0x00d1_7ec7_0e1e);
    let mut kept: Vec<(String, PathBuf)> = Vec::new();
    let mut layers = 0;
    for round in 0..24 {
        for step in 0..3 {
            change_metadata(&mut rng, &delta, &entries, round * 10 + step);
        }
        env.ok(&["-q", "c"]);
        let snap = format!("c_{round}");
        layers += usize::from(layer_of(&env, &snap).is_some());
        let saved = keep(&env, &delta, &format!("saved{round}"));
        // The container is as the snapshot captured it: no difference.
        let same = env.ok(&["diff", &snap]);
        assert_eq!(
            same,
            "0 added, 0 modified, 0 deleted, 0 type changed; 0 B added, 0 B removed, 0 B changed\n",
            "{snap} against the container it was just taken of"
        );
        // Against the one before: exactly the paths whose metadata changed.
        if let Some((before, before_saved)) = kept.last() {
            let report = env.ok(&["diff", before, &snap]);
            let mut listed: Vec<String> = report
                .lines()
                .filter_map(|l| l.strip_prefix("M "))
                .map(|l| l.split('\t').next().unwrap_or(l).to_string())
                .collect();
            listed.sort();
            assert_eq!(
                listed,
                metadata_changes(before_saved, &saved),
                "diff {before} {snap}:\n{report}"
            );
        }
        kept.push((snap, saved));
    }
    assert!(layers >= 12, "most snapshots are layers ({layers} of 24)");

    for (i, (snap, saved)) in kept.iter().enumerate() {
        let back = format!("back{i}");
        env.ok(&["-q", "restore", snap, &back]);
        assert_trees_identical(saved, &env.lxcpath.join(&back).join("overlay/delta"));

        let dir = env.path().join(format!("browse{i}"));
        fs::create_dir(&dir).expect("mountpoint");
        env.ok(&["-q", "mount", snap, dir.to_str().expect("utf-8")]);
        let seen = tree_manifest(&dir);
        env.ok(&["-q", "umount", dir.to_str().expect("utf-8")]);
        let want = mount_overlay(&env.path().join(format!("want{i}")), &[saved, &base], None);
        assert_same_tree(snap, &tree_manifest(&want.0), &seen, &[]);
    }
}
