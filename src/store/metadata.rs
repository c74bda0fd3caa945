//! The records a snapshot keeps about itself: `lxc-snap.json`
//! ([`Metadata`], with its [`Layer`] and the [`TreeFingerprint`]s of the
//! lowers), read as untrusted bytes and written atomically.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::layout::META_FILE;
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::names::SnapshotName;

/// Bumped when the layout or metadata changes incompatibly. Version 2
/// added layers and held snapshots; snapshots that use neither still say 1,
/// so that older versions keep reading them.
pub const FORMAT_VERSION: u32 = 2;
/// The version a snapshot without a layer and not held is written with.
pub const WHOLE_FORMAT_VERSION: u32 = 1;
/// Largest metadata file read. A layer's metadata lists the paths it
/// removed, so this is generous; the snapdir is root's alone anyway.
pub(super) const MAX_META: u64 = 64 << 20;

/// How the captured tree relates to the rest of the container's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// The captured tree is an overlay layer over `lowers`.
    Overlay,
    /// The captured tree is a whole root filesystem.
    Dir,
}

/// The machine-readable record of a snapshot (`lxc-snap.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub tool_version: String,
    pub container: String,
    /// The lxcpath the container lived in when it was snapshotted.
    pub lxcpath: PathBuf,
    /// RFC 3339 with the local offset.
    pub created: String,
    pub backing: Backing,
    /// `lxc.rootfs.path` or `lxc.rootfs`, as the container's config spelled it.
    pub rootfs_key: String,
    /// `overlay`, `overlayfs`, `dir` or empty (a bare path), as spelled.
    pub rootfs_prefix: String,
    /// The read-only layers below the captured tree, top first.
    pub lowers: Vec<PathBuf>,
    /// Entries in the captured tree.
    pub files: u64,
    /// Bytes of regular files in the captured tree (apparent sizes).
    pub bytes: u64,
    /// Allocated bytes of the captured tree, each inode once, as `du`
    /// counts them: what the snapshot refers to (for a layer, with what
    /// it uses of its anchor). Absent from metadata written before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refer_bytes: Option<u64>,
    /// Allocated bytes only this snapshot holds: what deleting it would
    /// free. Files unchanged since the previous snapshot are hard links
    /// shared with it, so this is kept up to date for the neighbours when a
    /// snapshot is taken or deleted.
    #[serde(default)]
    pub used_bytes: u64,
    /// For a snapshot layers are stored over: the allocated bytes of its
    /// inodes that every one of those layers hides (see
    /// [`crate::copy::hidden_by_all`]). Deleting it keeps its tree for the
    /// layers without these, so this is what that frees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_bytes: Option<u64>,
    /// A pinned snapshot is never pruned and is deleted only with --force.
    #[serde(default)]
    pub pinned: bool,
    /// When the snapshot expires (RFC 3339, UTC): `prune --expired` and
    /// `auto` delete it from then on, unless it is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Taken by `lxc-snap auto` under a container's policy, whose rules
    /// prune only such snapshots unless the policy says otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto: bool,
    /// What each lower looked like when the snapshot was taken (same order
    /// as `lowers`), to tell later whether the base still is what it was.
    #[serde(default)]
    pub lower_fingerprints: Vec<TreeFingerprint>,
    /// The captured tree's inodes with several names in it, as (inode
    /// number, names), so that the next snapshot can tell which inodes it
    /// shares were this one's alone; absent from metadata written before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_name_inodes: Option<Vec<(u64, u64)>>,
    /// Set when the captured tree is a layer: only what changed since an
    /// older snapshot of the same container, whose tree goes below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Layer>,
    /// A deleted snapshot kept because layers need its tree: not listed,
    /// removed with the last of them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Set for a snapshot the original lxc-snap made (made up in memory,
    /// never written): where its tree is, relative to its directory.
    #[serde(skip)]
    pub legacy: Option<PathBuf>,
    /// Fields this version does not know (written by a newer one), kept as
    /// they are when the metadata is rewritten.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// How a layer relates to the snapshot below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The snapshot (`NAME_N`, of the same container) whose tree is below.
    pub anchor: String,
    /// Entries in the layer itself.
    pub entries: u64,
    /// Bytes of regular files in the layer itself.
    pub bytes: u64,
    /// The layer's whiteouts that stand for entries the captured tree did
    /// not have (rather than whiteouts it had), by path below the tree.
    pub removed: Vec<PathBuf>,
}

/// A cheap summary of a directory tree: any change to an entry moves its
/// ctime, so a changed tree almost always shows a different fingerprint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFingerprint {
    pub entries: u64,
    pub bytes: u64,
    /// The newest ctime in the tree, in nanoseconds since the epoch.
    pub newest_change_ns: i128,
}

impl TreeFingerprint {
    /// Walks `root` without following symlinks, leaving its filesystem or
    /// touching access times.
    pub fn of(root: &Dir) -> Result<TreeFingerprint> {
        let mut fp = TreeFingerprint::default();
        crate::walk::for_each_entry(root, |st| {
            fp.entries += 1;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                fp.bytes += st.st_size as u64;
            }
            let ctime = i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec);
            fp.newest_change_ns = fp.newest_change_ns.max(ctime);
        })?;
        Ok(fp)
    }
}

impl Metadata {
    pub fn created_time(&self) -> Result<DateTime<FixedOffset>> {
        DateTime::parse_from_rfc3339(&self.created).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "reading snapshot metadata: bad creation time {:?}: {e}",
                    self.created
                ),
            )
        })
    }
}

/// `lxc-snap.json`: refused when it is no JSON of ours, names another
/// container, or was written by a newer format.
pub fn parse_metadata(bytes: &[u8], name: &SnapshotName) -> Result<Metadata> {
    let meta: Metadata =
        serde_json::from_slice(bytes).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
    if meta.container != name.container().as_str() {
        return Err(Error::new(
            ErrorKind::Other,
            format!("it names container {:?}", meta.container),
        ));
    }
    if meta.format_version > FORMAT_VERSION {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "format version {} is newer than this lxc-snap understands ({FORMAT_VERSION})",
                meta.format_version
            ),
        )
        .with_hint("upgrade lxc-snap"));
    }
    Ok(meta)
}

/// Writes `lxc-snap.json` into a snapshot directory.
pub fn write_metadata(dir: &Dir, meta: &Metadata) -> Result<()> {
    if meta.legacy.is_some() {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "{} is a snapshot of the original lxc-snap, which lxc-snap does not rewrite",
                dir.path().display()
            ),
        ));
    }
    let mut text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::new(ErrorKind::Other, format!("encoding metadata: {e}")))?;
    text.push('\n');
    dir.write_file(META_FILE, text.as_bytes(), 0o644)
}
