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

/// A CNCF distribution registry on 127.0.0.1, storing under a test
/// directory; stopped when dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
    storage: std::path::PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let storage = dir.join("registry");
        fs::create_dir_all(&storage).expect("mkdir");
        let config = dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (make deps installs it)");
        let registry = Registry {
            child,
            port,
            storage,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return registry;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the registry did not start on port {port}");
    }

    fn image(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    /// Every blob the registry stores (layers, configs, manifests).
    fn blobs(&self) -> Vec<String> {
        let root = self.storage.join("docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        for prefix in fs::read_dir(&root).into_iter().flatten().flatten() {
            for blob in fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                out.push(blob.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        out
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops what runs in an lxcpath of a test's own when the test ends.
struct StopAll(std::path::PathBuf);

impl Drop for StopAll {
    fn drop(&mut self) {
        common::lxc::stop_all_running(&self.0);
    }
}

#[test]
fn snapshots_travel_through_a_registry_and_any_image_makes_a_container() {
    let Some(lab) = lab("snapshots_travel_through_a_registry_and_any_image_makes_a_container")
    else {
        return;
    };
    let dir = lab.env.path();
    let registry = Registry::start(dir);
    let (c1_0, c1_1) = (registry.image("c1:c1_0"), registry.image("c1:c1_1"));
    lab.env.ok(&["push", "--insecure", "c1_0", &c1_0]);
    let first = registry.blobs();
    lab.env.ok(&["push", "--insecure", "c1_1", &c1_1]);
    let second = registry.blobs();
    let new: Vec<_> = second.iter().filter(|b| !first.contains(b)).collect();
    // The layer, a config and a manifest: the base and the anchor were there.
    assert_eq!(new.len(), 3, "blobs before {first:?}, after {second:?}");

    // Another host: an lxcpath and a snapdir of its own, no base.
    let lxc2 = dir.join("lxc2");
    let s2 = dir.join("snaps2");
    fs::create_dir(&lxc2).expect("lxcpath 2");
    fs::create_dir(&s2).expect("snapdir 2");
    let _stop = StopAll(lxc2.clone());
    let there = |args: &[&str]| {
        let out = Command::new(common::bin())
            .arg("-P")
            .arg(&lxc2)
            .arg("--snapdir")
            .arg(&s2)
            .args(args)
            .output()
            .expect("lxc-snap");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = there(&["pull", "--insecure", &c1_1]);
    assert!(said.contains("pulled c1_1 as c1_0"), "{said}");
    // overlayfs's own bookkeeping (origin, impure, uuid) is no part of an
    // image; the opaque and whiteout marks are.
    let without_private = |mut m: std::collections::BTreeMap<String, common::lxc::Entry>| {
        for e in m.values_mut() {
            e.xattrs
                .retain(|k, _| !k.starts_with("trusted.overlay.") || k == "trusted.overlay.opaque");
        }
        m
    };
    assert_eq!(
        tree_manifest(&s2.join("c1_0/private/delta")),
        without_private(tree_manifest(&lab.delta("c1"))),
        "the snapshot's tree, entry for entry"
    );
    assert_eq!(
        tree_manifest(&lxc2.join("base/rootfs")),
        tree_manifest(&lab.lxcpath().join("base/rootfs")),
        "the base, entry for entry"
    );
    there(&["-r", "c1_0", "moved"]);
    lab.start(&lxc2, "moved");
    assert_eq!(lab.attach(&lxc2, "moved", "cat /srv/db/rows"), "one\ntwo\n");
    lab.stop(&lxc2, "moved");

    // An image lxc-snap did not make: a busybox root filesystem that umoci
    // packs, pulled as a container that starts.
    let layout = dir.join("foreign");
    let bundle = dir.join("foreign-bundle");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("running");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci")
        .args(["new", "--image"])
        .arg(format!("{}:bb", layout.display())));
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:bb", layout.display()))
        .arg(&bundle));
    run(Command::new("cp")
        .arg("-a")
        .arg(lab.lxcpath().join("base/rootfs/."))
        .arg(bundle.join("rootfs")));
    run(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(format!("{}:bb", layout.display()))
        .arg(&bundle));
    let busybox = registry.image("busybox:1");
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bb", layout.display()))
        .arg(format!("docker://{busybox}")));
    let said = there(&["pull", "--insecure", "--as", "tmpl", &busybox]);
    assert!(said.contains("as the container tmpl"), "{said}");
    let pulled = tree_manifest(&lxc2.join("tmpl/rootfs"));
    let original = tree_manifest(&bundle.join("rootfs"));
    assert_eq!(pulled, original, "the image's root filesystem");
    lab.start(&lxc2, "tmpl");
    assert_eq!(lab.attach(&lxc2, "tmpl", "echo up"), "up\n");
    lab.stop(&lxc2, "tmpl");
}

#[test]
fn a_hostile_image_is_refused_and_leaves_nothing() {
    if !common::system_tests_enabled("a_hostile_image_is_refused_and_leaves_nothing", true) {
        return;
    }
    let env = common::TestEnv::new();
    let dir = env.path();
    fs::create_dir(&env.snapdir).expect("snapdir");
    let registry = Registry::start(dir);
    let outside = dir.join("outside");
    fs::create_dir(&outside).expect("mkdir");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("running");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Each image: layers as (path, kind, target) made with Python's tarfile.
    /// A layer's entries: path, kind, link target.
    type Layer<'a> = Vec<(&'a str, &'a str, &'a str)>;
    let images: [(&str, Vec<Layer>, &str); 3] = [
        (
            "up",
            vec![
                vec![("up", "symlink", outside.to_str().expect("utf-8"))],
                vec![("up/x", "file", "")],
            ],
            "no directory",
        ),
        (
            "dotdot",
            vec![vec![("../../x", "file", "")]],
            "plain relative",
        ),
        (
            "link",
            vec![vec![("l", "hardlink", "../../etc/passwd")]],
            "out of the tree",
        ),
    ];
    for (name, layers, says) in images {
        let layout = dir.join(format!("layout-{name}"));
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
        let image = format!("{}:{name}", layout.display());
        run(Command::new("umoci").args(["new", "--image", &image]));
        for (i, entries) in layers.iter().enumerate() {
            let tar = dir.join(format!("{name}-{i}.tar"));
            let script = format!(
                "import tarfile, io\nt = tarfile.open({:?}, 'w', format=tarfile.PAX_FORMAT)\n{}t.close()\n",
                tar.display().to_string(),
                entries
                    .iter()
                    .map(|(p, kind, target)| {
                        let ty = match *kind {
                            "symlink" => "tarfile.SYMTYPE",
                            "hardlink" => "tarfile.LNKTYPE",
                            _ => "tarfile.REGTYPE",
                        };
                        format!(
                            "i = tarfile.TarInfo({p:?}); i.type = {ty}; i.linkname = {target:?}; t.addfile(i, io.BytesIO(b''))\n"
                        )
                    })
                    .collect::<String>()
            );
            run(Command::new("python3").arg("-c").arg(&script));
            run(Command::new("umoci")
                .args(["raw", "add-layer", "--image", &image])
                .arg(&tar));
        }
        let reference = registry.image(&format!("{name}:1"));
        run(Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{image}"))
            .arg(format!("docker://{reference}")));
        let err = env.fails_with(7, &["pull", "--insecure", "--as", name, &reference]);
        assert!(err.contains(says), "{name}: {err}");
        let left: Vec<_> = fs::read_dir(&env.lxcpath)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "{name} left {left:?} in the lxcpath");
        assert_eq!(
            fs::read_dir(&outside).expect("ls").count(),
            0,
            "{name} wrote outside"
        );
    }
}
