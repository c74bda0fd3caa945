//! Linked clones (`lxc-snap clone`): real busybox containers made from a
//! template's snapshots, started with `lxc-start`, written to inside, and
//! the snapshot they stand on checked unchanged and undeletable.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::lxc::{config_value, dependency_pairs, tree_manifest, Entry, Lab};
use serde_json::Value;

/// A busybox base and its overlay clone `tmpl`, with `tmpl_0` (whole) and
/// `tmpl_1` (a layer over it: one file changed, one removed).
fn template_lab(test: &str) -> Option<Lab> {
    if !common::system_tests_enabled(test, true) {
        return None;
    }
    let lab = Lab::new();
    let lp = lab.lxcpath();
    lab.create_base("base");
    lab.overlay_clone("base", "tmpl");
    lab.start(lp, "tmpl");
    lab.attach(
        lp,
        "tmpl",
        "mkdir -p /srv/app && echo 1 > /srv/app/version && echo data > /srv/app/data && sync",
    );
    lab.stop(lp, "tmpl");
    std::fs::create_dir(lab.snapdir()).expect("snapdir");
    lab.env.ok(&["snap", "tmpl"]);
    lab.start(lp, "tmpl");
    lab.attach(
        lp,
        "tmpl",
        "echo 2 > /srv/app/version && rm /bin/vi && sync",
    );
    lab.stop(lp, "tmpl");
    lab.env.ok(&["snap", "tmpl"]);
    let info = info(&lab, "tmpl_1");
    assert_eq!(info["layer_over"], "tmpl_0", "tmpl_1 is a layer: {info}");
    Some(lab)
}

fn info(lab: &Lab, snap: &str) -> Value {
    serde_json::from_str(&lab.env.ok(&["info", "--json", snap])).expect("info JSON")
}

/// The captured trees of `snaps`, entry by entry.
fn trees(lab: &Lab, snaps: &[&str]) -> Vec<BTreeMap<String, Entry>> {
    snaps
        .iter()
        .map(|s| tree_manifest(&lab.snapdir().join(s).join("private/delta")))
        .collect()
}

fn du_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-s", "-B1"])
        .arg(path)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du output")
}

#[test]
fn twenty_clones_of_one_snapshot_boot_and_write_independently_and_hold_it() {
    let Some(lab) =
        template_lab("twenty_clones_of_one_snapshot_boot_and_write_independently_and_hold_it")
    else {
        return;
    };
    let env = &lab.env;
    let lp = lab.lxcpath();
    let before = trees(&lab, &["tmpl_0", "tmpl_1"]);
    let names: Vec<String> = (1..=20).map(|i| format!("w{i}")).collect();
    let mut args = vec!["clone", "tmpl_1"];
    args.extend(names.iter().map(String::as_str));
    let out = env.ok(&args);
    let expected: String = names
        .iter()
        .map(|n| format!("cloned tmpl_1 as {n}\n"))
        .collect();
    assert_eq!(out, expected);

    let base_rootfs = lp.join("base/rootfs");
    for n in &names {
        let config = lab.config(lp, n);
        let rootfs = config_value(&config, "lxc.rootfs.path");
        let want: Vec<PathBuf> = vec![
            lab.snapdir().join("tmpl_1/private/delta"),
            lab.snapdir().join("tmpl_0/private/delta"),
            base_rootfs.clone(),
            lp.join(n).join("overlay/delta"),
        ];
        let want = format!(
            "overlay:{}",
            want.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        );
        assert_eq!(rootfs, want, "{n}'s rootfs");
        assert_eq!(config_value(&config, "lxc.uts.name"), *n);
        // Nothing copied: the new delta holds its host name only.
        let delta = tree_manifest(&lp.join(n).join("overlay/delta"));
        let extra: Vec<&String> = delta
            .keys()
            .filter(|k| !["", "etc", "etc/hostname"].contains(&k.as_str()))
            .collect();
        assert!(extra.is_empty(), "{n}'s delta holds {extra:?}");
        assert!(
            du_bytes(&lp.join(n)) < 256 * 1024,
            "{n} takes {} bytes",
            du_bytes(&lp.join(n))
        );
        let rdepends = dependency_pairs(&lp.join(n).join("lxc_rdepends"));
        let snapdir = lab.snapdir_str().to_string();
        assert!(
            rdepends.contains(&(snapdir.clone(), "tmpl_1".into())),
            "{rdepends:?}"
        );
        assert!(
            rdepends.contains(&(snapdir, "tmpl_0".into())),
            "{rdepends:?}"
        );
    }

    for n in &names {
        lab.start(lp, n);
        let seen = lab.attach(
            lp,
            n,
            &format!(
                "cat /srv/app/version /srv/app/data; hostname; test -e /bin/vi && echo vi; \
                 echo {n} > /srv/app/owner; sync"
            ),
        );
        assert_eq!(seen, format!("2\ndata\n{n}\n"), "inside {n}");
    }
    for n in &names {
        let owner = std::fs::read_to_string(lp.join(n).join("overlay/delta/srv/app/owner"))
            .expect("the clone's own write");
        assert_eq!(owner, format!("{n}\n"));
        lab.stop(lp, n);
    }
    assert_eq!(
        trees(&lab, &["tmpl_0", "tmpl_1"]),
        before,
        "the snapshots' trees changed"
    );

    // The snapshot and the one it is a layer over are held by the clones.
    assert_eq!(common::fixtures::clones_of(env, "tmpl_1"), {
        let mut n = names.clone();
        n.sort();
        n
    });
    assert_eq!(common::fixtures::clones_of(env, "tmpl_0").len(), 20);
    let text = env.ok(&["info", "tmpl_1"]);
    assert!(text.contains("clones:        w1 (in "), "{text}");
    let err = env.fails_with(1, &["delete", "tmpl_1"]);
    assert!(err.contains("is needed by container w"), "{err}");
    let err = env.fails_with(1, &["delete", "tmpl_0"]);
    assert!(err.contains("is needed by container w"), "{err}");
    // Expired, and kept by prune all the same.
    env.ok(&["expire", "tmpl_1", "1s"]);
    env.ok(&["expire", "tmpl_0", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = env.run(&["prune", "--expired", "tmpl"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is needed by container w"), "{err}");
    assert_eq!(
        common::fixtures::names_of(env, "tmpl"),
        ["tmpl_0", "tmpl_1"]
    );
    let destroy = lab.lxc_output("lxc-destroy", &["-P", lab.snapdir_str(), "-n", "tmpl_1"]);
    assert!(
        !destroy.status.success(),
        "lxc-destroy removed a snapshot clones stand on"
    );
    assert!(lab.snapdir().join("tmpl_1/private/delta").is_dir());

    // Once LXC has destroyed them, nothing holds the snapshots.
    for n in &names {
        lab.lxc("lxc-destroy", &["-P", lab.lxcpath_str(), "-n", n]);
    }
    assert!(common::fixtures::clones_of(env, "tmpl_1").is_empty());
    env.ok(&["delete", "tmpl_1", "tmpl_0"]);
}

#[test]
fn clones_of_a_whole_a_layer_and_a_dir_backed_snapshot_are_containers_like_any() {
    let Some(lab) =
        template_lab("clones_of_a_whole_a_layer_and_a_dir_backed_snapshot_are_containers_like_any")
    else {
        return;
    };
    let env = &lab.env;
    let lp = lab.lxcpath();
    lab.create_base("plain");
    lab.start(lp, "plain");
    lab.attach(lp, "plain", "echo plain > /plain && sync");
    lab.stop(lp, "plain");
    env.ok(&["snap", "plain"]);

    env.ok(&["clone", "tmpl_0", "whole"]);
    env.ok(&["clone", "tmpl_1", "layer"]);
    env.ok(&["clone", "plain_0", "fromdir"]);
    for (name, script, want) in [
        (
            "whole",
            "cat /srv/app/version; test -e /bin/vi && echo vi",
            "1\nvi\n",
        ),
        (
            "layer",
            "cat /srv/app/version; test -e /bin/vi || echo no-vi",
            "2\nno-vi\n",
        ),
        ("fromdir", "cat /plain; hostname", "plain\nfromdir\n"),
    ] {
        lab.start(lp, name);
        assert_eq!(lab.attach(lp, name, script), want, "inside {name}");
        lab.stop(lp, name);
    }

    // A clone is snapshotted, compared, rolled back and restored.
    lab.start(lp, "layer");
    lab.attach(lp, "layer", "echo mine > /srv/app/mine && sync");
    lab.stop(lp, "layer");
    env.ok(&["snap", "layer"]);
    lab.start(lp, "layer");
    lab.attach(
        lp,
        "layer",
        "rm /srv/app/mine && echo 3 > /srv/app/version && sync",
    );
    lab.stop(lp, "layer");
    let diff = env.ok(&["diff", "layer_0"]);
    assert!(diff.contains("/srv/app/mine"), "{diff}");
    assert!(diff.contains("/srv/app/version"), "{diff}");
    env.ok(&["rollback", "layer_0"]);
    lab.start(lp, "layer");
    assert_eq!(
        lab.attach(lp, "layer", "cat /srv/app/mine /srv/app/version"),
        "mine\n2\n"
    );
    lab.stop(lp, "layer");
    env.ok(&["restore", "layer_0", "copy"]);
    lab.start(lp, "copy");
    assert_eq!(
        lab.attach(lp, "copy", "cat /srv/app/mine /srv/app/version; hostname"),
        "mine\n2\ncopy\n"
    );
    lab.stop(lp, "copy");

    // Names taken or named twice create nothing.
    env.fails_with(4, &["clone", "tmpl_1", "whole"]);
    env.fails_with(2, &["clone", "tmpl_1", "again", "again"]);
    assert!(!lp.join("again").exists());
    let err = env.fails_with(4, &["clone", "tmpl_1", "fresh", "layer"]);
    assert!(err.contains("fresh made, then"), "{err}");
    assert!(lp.join("fresh/config").is_file());
    env.fails_with(3, &["clone", "tmpl_9", "none"]);
}
