//! Snapshots as OCI images: `export --format oci` read by skopeo and
//! unpacked by umoci into exactly what the snapshot shows, with layer
//! digests that do not change.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::lxc::{tree_manifest, view_manifest, Lab};
use serde_json::Value;

/// A base, its overlay clone `c1`, and `c1_0` (whole) and `c1_1` (a layer
/// over it, with a file changed and one removed).
fn lab(test: &str) -> Option<Lab> {
    if !common::system_tests_enabled(test, true) {
        return None;
    }
    for tool in ["skopeo", "umoci"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} is not installed (make deps installs it)"
        );
    }
    let lab = Lab::new();
    let lp = lab.lxcpath();
    lab.create_base("base");
    lab.overlay_clone("base", "c1");
    lab.start(lp, "c1");
    lab.attach(
        lp,
        "c1",
        "mkdir -p /srv/db/old && echo one > /srv/db/rows && ln /srv/db/rows /srv/db/rows.link \
         && echo gone > /srv/db/old/f && rm /bin/vi && sync",
    );
    lab.stop(lp, "c1");
    fs::create_dir(lab.snapdir()).expect("snapdir");
    lab.env.ok(&["snap", "c1"]);
    lab.start(lp, "c1");
    lab.attach(
        lp,
        "c1",
        "echo two >> /srv/db/rows && rm -r /srv/db/old /bin/ls && sync",
    );
    lab.stop(lp, "c1");
    lab.env.ok(&["snap", "-m", "second", "c1"]);
    Some(lab)
}

fn inspect(layout: &Path, tag: &str) -> Value {
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{tag}", layout.display()))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo JSON")
}

fn layers(info: &Value) -> Vec<String> {
    info["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().expect("digest").to_string())
        .collect()
}

#[test]
fn an_image_of_a_snapshot_unpacks_to_what_the_snapshot_shows() {
    let Some(lab) = lab("an_image_of_a_snapshot_unpacks_to_what_the_snapshot_shows") else {
        return;
    };
    let dir = lab.env.path();
    let layout = dir.join("layout");
    let out = lab.env.ok(&[
        "export",
        "--format",
        "oci",
        "c1_1",
        layout.to_str().expect("utf-8"),
    ]);
    let _ = out;
    let info = inspect(&layout, "c1_1");
    let ids = layers(&info);
    assert_eq!(ids.len(), 3, "the base, the anchor and the layer: {info}");
    assert_eq!(info["Labels"], Value::Null);
    // skopeo shows the manifest's annotations through `--raw`.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:c1_1", layout.display()))
        .output()
        .expect("skopeo");
    let manifest: Value = serde_json::from_slice(&raw.stdout).expect("manifest");
    let notes = &manifest["annotations"];
    assert_eq!(notes["io.lxc-snap.container"], "c1");
    assert_eq!(notes["io.lxc-snap.number"], "1");
    assert_eq!(notes["io.lxc-snap.comment"], "second");

    // umoci's rootfs is what the snapshot shows, entry for entry.
    let bundle = dir.join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:c1_1", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mnt = dir.join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    lab.env.ok(&["mount", "c1_1", mnt.to_str().expect("utf-8")]);
    let shown = view_manifest(&mnt);
    lab.env.ok(&["umount", mnt.to_str().expect("utf-8")]);
    let unpacked = tree_manifest(&bundle.join("rootfs"));
    let differ: Vec<_> = shown
        .iter()
        .filter(|(k, v)| unpacked.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(unpacked.keys().filter(|k| !shown.contains_key(*k)).cloned())
        .collect();
    assert!(differ.is_empty(), "differs: {differ:?}");
    assert!(!unpacked.contains_key("bin/ls") && !unpacked.contains_key("srv/db/old"));

    // The same trees make the same layers; the base is shared.
    let again = dir.join("again");
    lab.env.ok(&[
        "export",
        "--format",
        "oci",
        "c1_1",
        again.to_str().expect("utf-8"),
    ]);
    assert_eq!(layers(&inspect(&again, "c1_1")), ids);
    lab.env.ok(&[
        "export",
        "--format",
        "oci",
        "c1_0",
        layout.to_str().expect("utf-8"),
    ]);
    let first = layers(&inspect(&layout, "c1_0"));
    assert_eq!(first, ids[..2], "c1_0 is the base and c1_1's anchor");
    let blobs = fs::read_dir(layout.join("blobs/sha256"))
        .expect("ls")
        .count();
    // 3 layers, 2 configs, 2 manifests.
    assert_eq!(blobs, 7, "each layer once");
}
