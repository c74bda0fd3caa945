//! Listing: the containers that have snapshots, and the snapshots of one
//! container, as the records `list --json` prints. Reads only metadata and
//! comment files, never a captured tree, so it stays fast with many
//! snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::names::{ContainerName, SnapshotName};
use crate::store::{Backing, Snapshot, SnapshotState, Store, Usage};

/// A container that has snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRecord {
    pub container: String,
    pub snapshots: usize,
    /// The newest snapshot's creation time (RFC 3339, UTC).
    pub newest: String,
    /// What its snapshots take on disk (allocated bytes, each inode once,
    /// as `du -s` of their directories counts them); `None` when that
    /// cannot be told (not root, and no run recorded it).
    pub disk_bytes: Option<u64>,
}

/// One snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotRecord {
    pub name: String,
    pub container: String,
    pub number: u64,
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
    pub lowers: Vec<PathBuf>,
    pub files: u64,
    /// Apparent size of its regular files.
    pub bytes: u64,
    /// What it refers to: allocated bytes of the captured tree, each inode
    /// once (for a layer, with what it shows of its anchor).
    pub refer_bytes: u64,
    /// What deleting it alone frees (allocated bytes).
    pub used_bytes: u64,
    /// The snapshot this one is stored as changes to, if any.
    pub layer_over: Option<String>,
    /// Made by the original lxc-snap (read as it is; see `adopt`).
    pub legacy: bool,
    /// `ok`, `base_changed`, `base_missing`, `anchor_missing` or `broken`.
    pub state: SnapshotState,
    /// Why, unless it is ok.
    pub state_why: Option<String>,
    pub path: PathBuf,
}

/// Every container with snapshots, by name.
pub fn containers(store: &Store) -> Result<Vec<ContainerRecord>> {
    let mut groups: BTreeMap<String, (usize, Option<DateTime<FixedOffset>>)> = BTreeMap::new();
    for s in store.snapshots()? {
        let created = s.meta.created_time()?;
        let entry = groups.entry(s.meta.container.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(Some(created));
    }
    Ok(groups
        .into_iter()
        .map(|(container, (snapshots, newest))| ContainerRecord {
            disk_bytes: ContainerName::parse(&container)
                .ok()
                .and_then(|c| disk(store, &c)),
            container,
            snapshots,
            newest: newest.map(super::utc_text).unwrap_or_default(),
        })
        .collect())
}

/// What the snapdir holds on disk, as `du -s` of it counts it: every
/// family's snapshots ([`disk`]), the snapdir's own directory and its
/// state directory (locks, numbers, size records). `None` when that
/// cannot be told.
pub fn snapdir_disk(store: &Store, containers: &[ContainerRecord]) -> Option<u64> {
    let families: Option<u64> = containers.iter().map(|c| c.disk_bytes).sum();
    Some(families? + store.own_disk().ok()?)
}

/// What `container`'s snapshots take on disk, held ones and what started
/// snapshots wrote included: as du -s of their directories counts it.
/// `None` when that cannot be told (without root, the trees cannot be
/// read, and no run recorded it).
pub fn disk(store: &Store, container: &ContainerName) -> Option<u64> {
    let recorded = store.disk(container).ok()?;
    let family = store.snapshots_of_with_held(container).ok()?;
    let scratch: u64 = family
        .iter()
        .map(|s| store.scratch_bytes(s).unwrap_or(0))
        .sum();
    Some(recorded + scratch)
}

/// The snapshots of `container`, by number; an error when it has none and
/// is no container either.
pub fn snapshots(store: &Store, container: &ContainerName) -> Result<Vec<SnapshotRecord>> {
    let family = store.snapshots_of_with_held(container)?;
    let listed: Vec<&Snapshot> = family.iter().filter(|s| !s.meta.held).collect();
    if listed.is_empty() && !store.container_exists(container) {
        let e = Error::new(
            ErrorKind::NotFound,
            format!(
                "container {container} not found in {} and it has no snapshots in {}",
                store.lxcpath_path().display(),
                store.dir().display()
            ),
        );
        // `list web_1`: the name of a snapshot, not of a container.
        let snapshot = SnapshotName::parse(container.as_str()).ok();
        return Err(match snapshot.filter(|n| store.get(n).is_ok()) {
            Some(n) => e.with_hint(format!(
                "{n} is a snapshot of {}: lxc-snap info {n} shows it, lxc-snap list {} lists its family",
                n.container(),
                n.container()
            )),
            None => e,
        });
    }
    let usage = Usage::new(&family);
    let mut rows = Vec::new();
    for s in listed {
        match record(store, s, &usage) {
            Ok(r) => rows.push(r),
            // Deleted by another run while this one listed: not there.
            Err(e) if e.kind() == ErrorKind::NotFound && store.get(&s.name).is_err() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}

/// The record of the snapshot `name`, as [`snapshots`] lists it (what
/// `snap --json` prints for the snapshot it took).
pub fn snapshot_record(store: &Store, name: &SnapshotName) -> Result<SnapshotRecord> {
    let family = store.snapshots_of_with_held(name.container())?;
    let snapshot = family
        .iter()
        .find(|s| &s.name == name && !s.meta.held)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("snapshot {name} not found in {}", store.dir().display()),
            )
        })?;
    record(store, snapshot, &Usage::new(&family))
}

/// The record of one snapshot; `usage` is of its whole family.
pub fn record(store: &Store, s: &Snapshot, usage: &Usage) -> Result<SnapshotRecord> {
    // A legacy snapshot records no sizes: its tree, an independent copy,
    // is measured (as far as it can be read).
    let measured = store.measure_legacy(s);
    let comment = match store.comment(s) {
        Ok(c) => c,
        Err(e) if s.is_legacy() => {
            store
                .observer()
                .notice(crate::notice::Notice::SkippedEntry {
                    path: s.dir.join(crate::store::COMMENT_FILE),
                    error: e.to_string(),
                });
            None
        }
        Err(e) => return Err(e),
    };
    let health = store.health(s);
    Ok(SnapshotRecord {
        name: s.name.to_string(),
        container: s.meta.container.clone(),
        number: s.name.number(),
        created_at: super::utc_text(s.meta.created_time()?),
        comment,
        pinned: s.meta.pinned,
        expires_at: s.meta.expires_at.clone(),
        auto: s.meta.auto,
        backing: s.meta.backing,
        lxcpath: s.meta.lxcpath.clone(),
        lowers: s.meta.lowers.clone(),
        files: measured.map_or(s.meta.files, |m| m.entries),
        bytes: measured.map_or(s.meta.bytes, |m| m.bytes),
        refer_bytes: measured.map_or(s.meta.refer_bytes.unwrap_or(s.meta.bytes), |m| m.allocated),
        used_bytes: measured.map_or(usage.frees(s), |m| m.exclusive),
        layer_over: s.meta.layer.as_ref().map(|l| l.anchor.clone()),
        legacy: s.is_legacy(),
        state: health.state,
        state_why: health.why,
        path: s.dir.clone(),
    })
}

/// The names of every snapshot, for completion; unreadable entries are
/// left out.
pub fn snapshot_names(store: &Store) -> BTreeSet<String> {
    let snapshots = store.snapshots().unwrap_or_default();
    snapshots.iter().map(|s| s.name.to_string()).collect()
}

/// The names of the containers in `lxcpath` (the store's when `None`) and
/// of those with snapshots, for completion.
pub fn container_names(store: &Store, lxcpath: Option<&Path>) -> BTreeSet<String> {
    let lxcpath = lxcpath.map_or_else(|| store.lxcpath_path(), Path::to_path_buf);
    let snapshots = store.snapshots().unwrap_or_default();
    crate::lxc::container::names_in(&lxcpath)
        .iter()
        .map(|n| n.to_string())
        .chain(snapshots.iter().map(|s| s.meta.container.clone()))
        .collect()
}
