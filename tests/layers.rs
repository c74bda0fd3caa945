//! Layers, through the library: a real overlay is changed at random
//! between captures; each layer must flatten back to exactly the upper it
//! captured, and show through an overlay what the upper showed.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use lxc_snap::copy::{
    copy_tree, copy_tree_with, flatten, make_layer, plan_layer, Compare, CopyOptions, LayerPlan,
    Plan,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use common::fidelity::assert_trees_identical;
use common::lxc::{assert_same_tree, tree_manifest};

/// A small deterministic generator (xorshift64*), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Unmounts what it mounted, even when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn mount_overlay(target: &Path, lowers: &[&Path], upper: Option<(&Path, &Path)>) -> Mounted {
    fs::create_dir_all(target).expect("mountpoint");
    let lowerdir = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut data = format!("lowerdir={lowerdir},redirect_dir=off,index=off,metacopy=off");
    if let Some((upper, work)) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    let flags = if upper.is_some() {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    mount(
        Some("lxc-snap-test"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .unwrap_or_else(|e| panic!("mounting an overlay on {}: {e} ({data})", target.display()));
    Mounted(target.to_path_buf())
}

/// A base tree: directories of files, some with attributes, a symlink, a
/// nested directory.
fn make_base(base: &Path) {
    for d in 0..4 {
        let dir = base.join(format!("d{d}"));
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for f in 0..4 {
            let path = dir.join(format!("f{f}"));
            fs::write(&path, format!("base {d} {f}\n").repeat(f + 1)).expect("write");
            if f == 1 {
                xattr::set(&path, "user.origin", b"base").expect("xattr");
            }
        }
        fs::write(dir.join("sub/deep"), b"deep\n").expect("write");
        symlink("../d0/f0", dir.join("link")).expect("symlink");
    }
}

/// What the random changes may touch: paths in the merged view.
const DIRS: [&str; 7] = ["d0", "d1", "d2", "d3", "d1/sub", "new", "new/inner"];

/// Gives `path` times no other change has: a file rewritten within one
/// clock tick keeps its mtime, and the quick check could not tell.
fn stamp(path: &Path, step: usize) {
    let t = nix::sys::time::TimeSpec::new(1_700_000_000 + step as i64, step as i64);
    let _ = nix::sys::stat::utimensat(
        None,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

/// One random change through the mounted overlay at `m`. Only creates,
/// writes, removes and sets metadata: never reads, so no atime moves.
fn change(rng: &mut Rng, m: &Path, step: usize) {
    let dir = m.join(DIRS[rng.below(DIRS.len())]);
    let name = format!("f{}", rng.below(6));
    let path = dir.join(&name);
    let _ = fs::create_dir_all(&dir);
    match rng.below(12) {
        0 | 1 => {
            let _ = fs::remove_file(&path);
            let size = rng.below(3) * 5000 + rng.below(100);
            let _ = fs::write(&path, vec![b'a' + (step % 26) as u8; size]);
            stamp(&path, step);
        }
        2 => {
            // Rewrites in place, keeping size.
            if let Ok(md) = fs::symlink_metadata(&path) {
                if md.is_file() {
                    let len = md.len() as usize;
                    let _ = fs::write(&path, vec![b'z'; len]);
                    stamp(&path, step);
                }
            }
        }
        3 => {
            let _ = fs::remove_file(&path);
        }
        4 => {
            let _ = fs::remove_dir_all(&dir);
        }
        5 => {
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::create_dir_all(&dir);
            let _ = fs::write(dir.join("fresh"), format!("fresh {step}\n"));
        }
        6 => {
            let _ = fs::set_permissions(
                &path,
                fs::Permissions::from_mode(0o600 + rng.below(64) as u32),
            );
        }
        7 => {
            let _ = xattr::set(&path, "user.step", step.to_string().as_bytes());
        }
        8 => {
            let other = dir.join(format!("h{step}"));
            let _ = fs::hard_link(&path, other);
        }
        9 => {
            let _ = fs::remove_file(&path);
            let _ = symlink(format!("target-{step}"), &path);
        }
        10 => {
            // A file where a directory was, or the other way round.
            if fs::symlink_metadata(dir.join("sub")).is_ok_and(|m| m.is_dir()) {
                let _ = fs::remove_dir_all(dir.join("sub"));
                let _ = fs::write(dir.join("sub"), b"now a file\n");
            } else {
                let _ = fs::remove_file(dir.join("sub"));
                let _ = fs::create_dir_all(dir.join("sub"));
            }
        }
        _ => {
            let t =
                nix::sys::time::TimeSpec::new(1_600_000_000 + step as i64, rng.below(1000) as i64);
            let _ = nix::sys::stat::utimensat(
                None,
                &path,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
        }
    }
}

fn layer_plan(upper: &Path, anchor: &Path, base: &Path) -> LayerPlan {
    match plan_layer(upper, anchor, &[base.to_path_buf()], Compare::QuickCheck).expect("plan") {
        Plan::Layer(plan) => plan,
        Plan::Full(why) => panic!("a change made through the overlay needs a whole copy: {why}"),
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
        changes_flatten_back(seed, &mut seen);
    }
    assert!(
        seen.removed > 0 && seen.whiteouts > 0 && seen.opaque > 0 && seen.multi_name > 0,
        "the changes covered every case: {seen:?}"
    );
}

fn changes_flatten_back(seed: u64, seen: &mut Seen) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = |p: &str| tmp.path().join(p);
    let base = t("base");
    make_base(&base);
    fs::create_dir_all(t("upper")).expect("upper");
    fs::create_dir_all(t("work")).expect("work");
    let mut rng = Rng(seed);

    let rounds = 12;
    let mut captured: Vec<(PathBuf, PathBuf, Vec<PathBuf>)> = Vec::new();
    let anchor = t("anchor");
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
            copy_tree(&t("upper"), &anchor).expect("anchor");
            continue;
        }
        let plan = layer_plan(&t("upper"), &anchor, &base);
        let layer = t(&format!("layer{round}"));
        let opts = CopyOptions {
            reference: Some(&reference),
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
        flatten(&layer, &anchor, &plan.removed, &flat, None).expect("flatten");
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
    flatten(&t("layer"), &t("anchor"), &[], &t("flat"), None).expect("flatten");
    assert_trees_identical(&t("upper"), &t("flat"));
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
    match plan_layer(
        &t("upper"),
        &t("anchor"),
        std::slice::from_ref(&base),
        Compare::QuickCheck,
    )
    .expect("plan")
    {
        Plan::Full(why) => assert!(why.contains("d0/f0"), "{why}"),
        Plan::Layer(_) => panic!("a layer cannot show the base's file again"),
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
        let Plan::Layer(plan) = plan_layer(&t("upper"), &t("anchor"), &[], compare).expect("plan")
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
    let Plan::Layer(plan) =
        plan_layer(&t("upper"), &t("anchor"), &[], Compare::QuickCheck).expect("plan")
    else {
        panic!("a layer will do");
    };
    make_layer(&t("upper"), &t("layer"), &plan, &CopyOptions::default()).expect("layer");
    assert!(
        t("layer/a/x").exists(),
        "the unchanged name goes with its new one"
    );
    flatten(&t("layer"), &t("anchor"), &[], &t("flat"), None).expect("flatten");
    assert_trees_identical(&t("upper"), &t("flat"));
}
