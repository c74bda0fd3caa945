//! Everything known about one snapshot (what `info --json` prints), and
//! what is broken about it (its tree or a base layer gone).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::require_root;
use crate::error::{ErrorKind, Result};
use crate::lxc::container::{read_dependency_file, DependencyEntry};
use crate::names::SnapshotName;
use crate::store::family::layers_over;
use crate::store::sizes::disk_usage;
use crate::store::{Backing, Snapshot, SnapshotState, Store, TreeFingerprint, Usage};

/// A lower layer and how it compares with what the snapshot recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lower {
    pub path: PathBuf,
    /// `unchanged`, `changed`, `missing`, `unknown` (no fingerprint
    /// recorded), or `refused` (not a lower lxc-snap accepts; see
    /// `--allow-lower`).
    pub state: &'static str,
}

/// A container in a dependency file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub lxcpath: PathBuf,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub container: String,
    pub number: u64,
    pub path: PathBuf,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    pub comment: Option<String>,
    pub pinned: bool,
    /// When it expires (RFC 3339, UTC), if it does.
    pub expires_at: Option<String>,
    /// Taken by `auto` under its container's policy.
    pub auto: bool,
    pub backing: Backing,
    pub lxcpath: PathBuf,
    pub tree_present: bool,
    pub lowers: Vec<Lower>,
    pub files: u64,
    /// Apparent size of its regular files.
    pub bytes: u64,
    /// What it refers to: allocated bytes of the captured tree, each inode
    /// once (for a layer, with what it shows of its anchor), as `list`'s
    /// REFER.
    pub refer_bytes: u64,
    /// Allocated bytes deleting this snapshot alone frees (`list`'s USED).
    pub used_bytes: u64,
    /// Why USED is what it is. The snapshots it shares unchanged files
    /// with (hard links): what they share is in no one's USED.
    pub shares_with: Vec<String>,
    /// The layers stored over it: deleting it keeps its tree for them,
    /// without what they all hide, which is then its USED.
    pub layers_over: Vec<String>,
    /// For the last layer over a deleted snapshot kept for it: that one,
    /// whose bytes its USED includes.
    pub used_includes_held: Option<String>,
    /// Allocated bytes of what it wrote when last started (its scratch
    /// upper, emptied at each start); `None` when it cannot be read.
    pub scratch_bytes: Option<u64>,
    /// The snapshot this one is stored as changes to, if any.
    pub layer_over: Option<String>,
    /// Entries in the layer itself, for a layer.
    pub layer_entries: Option<u64>,
    /// The snapshot it is stored as changes to was deleted and is kept for
    /// its layers.
    pub layer_over_held: bool,
    /// Allocated bytes of the captured tree, each inode once; `None` when
    /// the tree cannot be read.
    pub bytes_on_disk: Option<u64>,
    pub base: Vec<Dependency>,
    pub dependents: Vec<Dependency>,
    /// The linked clones standing on it (`lxc-snap clone`, or a clone of a
    /// layer over it): its dependents outside the snapdir.
    pub clones: Vec<Dependency>,
    /// Made by the original lxc-snap: an LXC clone read as it is.
    pub legacy: bool,
    /// As `list` says it (see [`crate::store::health`]).
    pub state: SnapshotState,
    pub state_why: Option<String>,
    /// What is wrong with the snapshot; empty when nothing is.
    #[serde(skip)]
    pub broken: Vec<String>,
}

pub fn info(store: &Store, name: &SnapshotName) -> Result<SnapshotInfo> {
    // The captured tree is in a 0700 directory: without root it would look
    // missing.
    require_root("showing everything about a snapshot")?;
    let snapshot = store.get(name)?;
    let meta = &snapshot.meta;
    let tree_present = snapshot.ensure_complete().is_ok();
    let health = store.health(&snapshot);
    let family = store.snapshots_of_with_held(name.container())?;
    let lowers = meta
        .lowers
        .iter()
        .enumerate()
        .map(|(i, path)| Lower {
            path: path.clone(),
            state: lower_state(store, path, meta.lower_fingerprints.get(i)),
        })
        .collect::<Vec<_>>();
    let snapshot_dir = store.snapshot_dir(&snapshot)?;
    let deps = |file: &str| -> Result<Vec<Dependency>> {
        Ok(read_dependency_file(&snapshot_dir, file)?
            .into_iter()
            .map(|DependencyEntry { lxcpath, name }| Dependency { lxcpath, name })
            .collect())
    };
    let mut broken = Vec::new();
    broken.extend(snapshot.missing());
    for l in lowers.iter().filter(|l| l.state == "missing") {
        broken.push(format!("its base layer {} is missing", l.path.display()));
    }
    Ok(SnapshotInfo {
        name: name.to_string(),
        container: meta.container.clone(),
        number: name.number(),
        path: snapshot.dir.clone(),
        created_at: super::utc_text(meta.created_time()?),
        comment: store.comment(&snapshot)?,
        pinned: meta.pinned,
        expires_at: meta.expires_at.clone(),
        auto: meta.auto,
        backing: meta.backing,
        lxcpath: meta.lxcpath.clone(),
        tree_present,
        lowers,
        files: meta.files,
        bytes: meta.bytes,
        refer_bytes: meta.refer_bytes.unwrap_or(meta.bytes),
        used_bytes: Usage::new(&family).frees(&snapshot),
        shares_with: shares_with(&family, &snapshot),
        layers_over: layers_over(&family, &snapshot.name),
        used_includes_held: snapshot
            .anchor()
            .filter(|a| family.iter().any(|s| &s.name == a && s.meta.held))
            .filter(|a| layers_over(&family, a).len() == 1)
            .map(|a| a.to_string()),
        scratch_bytes: store.scratch_bytes(&snapshot),
        layer_over: meta.layer.as_ref().map(|l| l.anchor.clone()),
        layer_entries: meta.layer.as_ref().map(|l| l.entries),
        layer_over_held: snapshot
            .anchor()
            .is_some_and(|a| family.iter().any(|s| s.name == a && s.meta.held)),
        bytes_on_disk: if tree_present {
            store.tree_dir(&snapshot).ok().as_ref().and_then(disk_usage)
        } else {
            None
        },
        base: deps("lxc_rdepends")?,
        dependents: deps("lxc_snapshots")?,
        clones: deps("lxc_snapshots")?
            .into_iter()
            .filter(|d| d.lxcpath != store.dir())
            .collect(),
        legacy: snapshot.is_legacy(),
        state: health.state,
        state_why: health.why.clone(),
        broken,
    }
    .measured_if_legacy(store, &snapshot))
}

/// The listed snapshots `snapshot` may share inodes with: the nearest
/// before and after it on the same base (a snapshot links what is
/// unchanged since the one before it), its anchor and, for a whole one,
/// the layers over it.
fn shares_with(family: &[Snapshot], snapshot: &Snapshot) -> Vec<String> {
    let listed = || {
        family
            .iter()
            .filter(|s| !s.meta.held && !s.is_legacy() && s.name != snapshot.name)
    };
    let same_base = |s: &&Snapshot| {
        s.meta.backing == snapshot.meta.backing && s.meta.lowers == snapshot.meta.lowers
    };
    let before = listed()
        .rev()
        .filter(same_base)
        .find(|s| s.name < snapshot.name);
    let after = listed().filter(same_base).find(|s| s.name > snapshot.name);
    let mut names: Vec<String> = before
        .into_iter()
        .chain(after)
        .map(|s| s.name.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

impl SnapshotInfo {
    /// A legacy snapshot records no sizes: they are measured.
    fn measured_if_legacy(mut self, store: &Store, snapshot: &Snapshot) -> SnapshotInfo {
        if !snapshot.is_legacy() {
            return self;
        }
        if let Some(m) = store.measure_legacy(snapshot) {
            self.files = m.entries;
            self.bytes = m.bytes;
            self.refer_bytes = m.allocated;
            self.used_bytes = m.exclusive;
        }
        self.shares_with.clear();
        self
    }
}

fn lower_state(store: &Store, path: &Path, recorded: Option<&TreeFingerprint>) -> &'static str {
    let dir = match store.open_lower(path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == ErrorKind::NotFound => return "missing",
        Err(_) => return "refused",
    };
    match (recorded, TreeFingerprint::of(&dir)) {
        (Some(r), Ok(now)) if *r == now => "unchanged",
        (Some(_), Ok(_)) => "changed",
        _ => "unknown",
    }
}
