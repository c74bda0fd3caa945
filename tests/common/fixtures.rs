//! Hand-built containers and small readers of lxc-snap's output, shared by
//! the integration tests.

use std::fs;
use std::path::PathBuf;

use super::TestEnv;

/// What snapshot `snap` captured, as one tree: its own tree, or for a
/// layer its anchor's with the layer applied (flattened into a new
/// directory of the test's temp dir).
pub fn captured(env: &TestEnv, snap: &str) -> PathBuf {
    captured_in(&env.snapdir, env.path(), snap)
}

/// [`captured`] for the snapshot `snap` in `snapdir`, flattening into a new
/// directory of `scratch`.
pub fn captured_in(snapdir: &std::path::Path, scratch: &std::path::Path, snap: &str) -> PathBuf {
    let dir = snapdir.join(snap);
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("lxc-snap.json")).expect("metadata"))
            .expect("metadata is JSON");
    let tree_of = |dir: &std::path::Path| {
        dir.join("private").join(if meta["backing"] == "dir" {
            "rootfs"
        } else {
            "delta"
        })
    };
    let layer = &meta["layer"];
    if layer.is_null() {
        return tree_of(&dir);
    }
    let anchor = tree_of(&snapdir.join(layer["anchor"].as_str().expect("anchor")));
    let removed: Vec<PathBuf> = layer["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|p| PathBuf::from(p.as_str().expect("path")))
        .collect();
    let n = fs::read_dir(scratch).expect("ls").count();
    let out = scratch.join(format!("captured-{snap}-{n}"));
    lxc_snap::copy::flatten(&tree_of(&dir), &anchor, &removed, &out, &Default::default())
        .expect("flattening");
    out
}

/// A base container with a small rootfs, as `lxc-create` would leave it.
pub fn make_base(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.lxcpath.join(name);
    fs::create_dir_all(dir.join("rootfs/etc")).expect("mkdir base");
    fs::create_dir_all(dir.join("rootfs/bin")).expect("mkdir base");
    fs::write(dir.join("rootfs/bin/sh"), "#!base shell\n").expect("write");
    fs::write(dir.join("rootfs/etc/motd"), "base motd\n").expect("write");
    fs::write(
        dir.join("config"),
        format!(
            "lxc.rootfs.path = dir:{}/rootfs\nlxc.uts.name = {name}\n",
            dir.display()
        ),
    )
    .expect("config");
    dir.join("rootfs")
}

/// An overlay clone of `base` named `name`, with `config_tail` appended,
/// its rootfs line spelled by `key`, `prefix` and delta location `delta_rel`.
pub fn make_clone(
    env: &TestEnv,
    base: &str,
    name: &str,
    key: &str,
    prefix: &str,
    delta_rel: &str,
) -> PathBuf {
    let dir = env.lxcpath.join(name);
    let delta = dir.join(delta_rel);
    fs::create_dir_all(&delta).expect("mkdir delta");
    fs::write(delta.join("added"), format!("added in {name}\n")).expect("write");
    let lower = env.lxcpath.join(base).join("rootfs");
    fs::write(
        dir.join("config"),
        format!("# clone of {base}\nlxc.net.0.type = empty\n{key} = {prefix}:{}:{}\nlxc.uts.name = {name}\n", lower.display(), delta.display()),
    )
    .expect("config");
    fs::write(
        dir.join("lxc_rdepends"),
        format!("{}\n{base}\n", env.lxcpath.display()),
    )
    .expect("rdepends");
    delta
}

pub fn json(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&env.ok(args)).expect("valid JSON")
}

/// The names of the linked clones `info --json SNAP` lists, sorted.
pub fn clones_of(env: &TestEnv, snap: &str) -> Vec<String> {
    let mut names: Vec<String> = json(env, &["info", "--json", snap])["clones"]
        .as_array()
        .expect("clones")
        .iter()
        .map(|d| d["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

pub fn names_of(env: &TestEnv, container: &str) -> Vec<String> {
    json(env, &["list", container, "--json"])
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect()
}

pub fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

/// An overlay clone `name` of a base container `base` (created when
/// missing), in today's spelling: `lxc.rootfs.path = overlay:...`, delta at
/// `overlay/delta`. Returns the delta.
pub fn overlay_clone(env: &TestEnv, name: &str) -> PathBuf {
    if !env.lxcpath.join("base/config").exists() {
        make_base(env, "base");
    }
    make_clone(
        env,
        "base",
        name,
        "lxc.rootfs.path",
        "overlay",
        "overlay/delta",
    )
}

/// Rewrites a snapshot's recorded creation time (what prune and list read).
pub fn set_created(env: &TestEnv, snap: &str, created: &str) {
    let path = env.snapdir.join(snap).join("lxc-snap.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
    meta["created"] = serde_json::Value::String(created.to_string());
    let mut text = serde_json::to_string_pretty(&meta).expect("encode");
    text.push('\n');
    fs::write(&path, text).expect("write");
}
