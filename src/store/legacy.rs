//! Snapshots the original lxc-snap made: `NAME_N` in the snapdir without
//! `lxc-snap.json`, an LXC clone of NAME made with `lxc-clone -s` /
//! `lxc-copy -s` (for an overlay container, its own copy of the delta over
//! the same lowers), with a `ts` file (`%Y:%m:%d %H:%M:%S`, local time, no
//! newline) and an optional `comment`.
//!
//! They are read as they are and never rewritten (no metadata is written
//! into them): their metadata is made up in memory from the config, `ts`
//! and `lxc_rdepends`. Like any tree a container wrote, the config is
//! untrusted: its rootfs must lie inside the snapshot's own directory.
//! Such a snapshot is an independent copy (a writable clone, even): it
//! shares no files with other snapshots, is never linked to nor stored
//! over, and its sizes are measured when it is listed.

use std::path::{Path, PathBuf};

use chrono::{Local, NaiveDateTime, TimeZone};

use super::layout::TS_FILE;
use super::metadata::{Backing, Metadata};
use super::Store;
use crate::dir::{inside, Dir};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::read_dependency_file;
use crate::lxc::Rootfs;
use crate::names::SnapshotName;

impl Store {
    /// The metadata of the legacy snapshot `name` in `dir`, made up from
    /// what it holds; `None` when the directory is no LXC container at all.
    pub(super) fn load_legacy(&self, name: &SnapshotName, dir: &Dir) -> Result<Option<Metadata>> {
        clone_metadata(dir, name.container(), self.lxcpath_path())
    }

    /// The sizes of a legacy snapshot, which records none, measured on its
    /// tree; `None` for any other snapshot or when the tree cannot be read.
    pub fn measure_legacy(&self, snapshot: &super::Snapshot) -> Option<super::sizes::TreeMeasure> {
        if !snapshot.is_legacy() {
            return None;
        }
        super::sizes::measure_tree(&self.tree_dir(snapshot).ok()?).ok()
    }
}

/// The metadata of a snapshot another tool made of `container` as an LXC
/// clone in `dir` (its config, `ts`, `comment`, `lxc_rdepends`), made up in
/// memory; `None` when `dir` holds no config. `lxcpath`: the container's,
/// when `lxc_rdepends` does not say.
pub fn clone_metadata(
    dir: &Dir,
    container: &crate::names::ContainerName,
    lxcpath: PathBuf,
) -> Result<Option<Metadata>> {
    {
        let config_path = dir.join("config");
        let config = match crate::lxc::container::read_config(dir) {
            Ok(config) => config,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (key, _) = config.rootfs_entry().ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("reading {}: no rootfs", config_path.display()),
            )
        })?;
        let key = key.to_string();
        let rootfs = config.rootfs()?;
        let (backing, prefix, lowers, tree) = match rootfs {
            Rootfs::Overlay {
                prefix,
                lowers,
                upper,
            } => (Backing::Overlay, prefix, lowers, upper),
            Rootfs::Dir { prefix, path } => (Backing::Dir, prefix, Vec::new(), path),
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "reading {}: a rootfs lxc-snap does not read ({other:?})",
                        config_path.display()
                    ),
                ))
            }
        };
        let tree = own_tree(dir.path(), &tree).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsafe,
                format!(
                    "reading {}: its rootfs {} is not inside the snapshot",
                    config_path.display(),
                    tree.display()
                ),
            )
        })?;
        match dir.open_below(&tree, crate::dir::Below::Nothing) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "reading {}: its tree {} is missing",
                        config_path.display(),
                        dir.join(&tree).display()
                    ),
                ))
            }
            Err(e) => return Err(e),
        }
        let created = match dir.read_file(TS_FILE, 64, "time stamp") {
            Ok(bytes) => parse_ts(&bytes).ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!(
                        "reading {}: {:?} is no time as %Y:%m:%d %H:%M:%S",
                        dir.join(TS_FILE).display(),
                        String::from_utf8_lossy(&bytes)
                    ),
                )
            })?,
            // No ts: when the clone was made.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let st = dir.stat()?;
                Local
                    .timestamp_opt(st.st_mtime, 0)
                    .single()
                    .map(|t| t.fixed_offset())
                    .unwrap_or_default()
            }
            Err(e) => return Err(e),
        };
        let container = container.to_string();
        let lxcpath = read_dependency_file(dir, "lxc_rdepends")?
            .into_iter()
            .rev()
            .find(|d| d.name == container)
            .map_or(lxcpath, |d| d.lxcpath);
        Ok(Some(Metadata {
            format_version: 0,
            tool_version: "lxc-snap (original)".to_string(),
            container,
            lxcpath,
            created: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            backing,
            rootfs_key: key,
            rootfs_prefix: prefix,
            lowers,
            files: 0,
            bytes: 0,
            refer_bytes: None,
            used_bytes: 0,
            hidden_bytes: None,
            pinned: false,
            expires_at: None,
            auto: false,
            lower_fingerprints: Vec::new(),
            multi_name_inodes: None,
            layer: None,
            held: false,
            legacy: Some(tree),
            other: serde_json::Map::new(),
        }))
    }
}

/// `tree` relative to the snapshot directory `dir`, if it is a plain path
/// strictly inside it.
fn own_tree(dir: &Path, tree: &Path) -> Option<PathBuf> {
    inside(tree, dir).map(Path::to_path_buf)
}

/// `2026:12:03 18:17:00`, local time, as the original lxc-snap wrote it.
fn parse_ts(bytes: &[u8]) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let text = std::str::from_utf8(bytes).ok()?.trim_end_matches('\n');
    let naive = NaiveDateTime::parse_from_str(text, "%Y:%m:%d %H:%M:%S").ok()?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stamps_parse_as_the_original_wrote_them() {
        assert!(parse_ts(b"2026:12:03 18:17:00").is_some());
        assert!(parse_ts(b"2026:12:03 18:17:00\n").is_some());
        for bad in [&b"2026-12-03 18:17:00"[..], b"", b"yesterday", b"\xff"] {
            assert!(parse_ts(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_tree_must_be_inside_the_snapshot() {
        let dir = Path::new("/s/c_0");
        assert_eq!(
            own_tree(dir, Path::new("/s/c_0/overlay/delta")),
            Some(PathBuf::from("overlay/delta"))
        );
        assert_eq!(
            own_tree(dir, Path::new("/s/c_0/delta0")),
            Some("delta0".into())
        );
        for foreign in ["/s/c_0", "/s/c_1/delta0", "/etc", "/s/c_0/../c_1/delta0"] {
            assert_eq!(own_tree(dir, Path::new(foreign)), None, "{foreign}");
        }
    }
}
