//! The layout of the snapdir and of a snapshot in it: file names, where
//! the captured tree is, the comment and `ts` files.
//!
//! ```text
//! <snapdir>/NAME_N/                 a complete snapshot (itself an LXC container)
//!   config ts comment lxc-snap.json lxc_rdepends lxc_snapshots
//!   private/                        0700: never reachable by unprivileged users
//!     delta/ | rootfs/              the captured tree
//!     scratch/upper scratch/work    where a started snapshot writes
//! <snapdir>/.lxc-snap/NAME.lock     serializes runs that create NAME or NAME_N
//! <snapdir>/.lxc-snap/NAME.seq      highest number ever issued to NAME
//! <snapdir>/.lxc-snap.tmp.NAME_N.*  a snapshot being built
//! ```
//!
//! An entry is one of ours only if its name parses as `NAME_N` and it holds
//! `lxc-snap.json` naming the same container, or (without it) an LXC
//! config: a snapshot of the original lxc-snap ([`super::legacy`]).
//! Anything else in the snapdir (such as `lxc-snapshot`'s `<c>/snapN`
//! trees) is ignored and never touched.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use super::metadata::Backing;
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};

pub const META_FILE: &str = "lxc-snap.json";
pub const COMMENT_FILE: &str = "comment";
pub const TS_FILE: &str = "ts";
/// Largest comment accepted, in bytes.
pub const MAX_COMMENT: u64 = 64 * 1024;
pub(super) const STATE_DIR: &str = ".lxc-snap";

pub fn tree_path(snapshot_dir: &Path, backing: Backing) -> PathBuf {
    snapshot_dir.join(tree_rel(backing))
}

/// `private/delta` or `private/rootfs`.
pub fn tree_rel(backing: Backing) -> &'static Path {
    Path::new(match backing {
        Backing::Overlay => "private/delta",
        Backing::Dir => "private/rootfs",
    })
}

/// `<snapshot>/private/scratch/upper`: the upper a started snapshot writes to.
pub fn scratch_upper(snapshot_dir: &Path) -> PathBuf {
    snapshot_dir.join("private/scratch/upper")
}

/// Checks comment text: UTF-8, at most [`MAX_COMMENT`] bytes.
pub fn validate_comment(bytes: Vec<u8>, source: &str) -> Result<String> {
    if bytes.len() as u64 > MAX_COMMENT {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("comment from {source}: longer than 64 KiB"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::new(
            ErrorKind::Usage,
            format!("comment from {source}: not UTF-8 text"),
        )
    })
}

/// The `comment` in a snapshot's directory, if it has one (never through
/// a symlink).
pub fn read_comment_file(dir: &Dir) -> Result<Option<String>> {
    match dir.read_file(COMMENT_FILE, MAX_COMMENT, "comment") {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes (or removes) `<dir>/comment` atomically.
pub fn write_comment(dir: &Dir, comment: Option<&str>) -> Result<()> {
    match comment {
        Some(text) => dir.write_file(COMMENT_FILE, text.as_bytes(), 0o644),
        None => {
            dir.remove_file(COMMENT_FILE)?;
            dir.sync()
        }
    }
}

pub fn ts_text(created: &DateTime<FixedOffset>) -> String {
    created.format("%Y:%m:%d %H:%M:%S").to_string()
}
