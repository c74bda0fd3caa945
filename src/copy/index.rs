//! The anchor of a layer, read ahead.
//!
//! Comparing a tree with its anchor looks at every entry of both. The
//! anchor is an immutable snapshot, so its half of the work can be done
//! before the tree to capture is frozen: [`AnchorIndex::build`] reads the
//! status, extended attributes and names of every entry once, and the
//! comparison ([`super::layer::plan_at`]) then looks the anchor's entries
//! up in memory instead of asking the kernel, which halves the work done
//! while a running container waits.
//!
//! Invariants:
//! - the index holds what the kernel said of each entry when it was read:
//!   its status (never through a symlink), whether it has extended
//!   attributes, and their values for directories and for the entries
//!   that have some; a directory's entry points at the index of its own
//!   entries;
//! - it is bounded: past [`MAX_ENTRIES`] entries, building gives up
//!   (`None`) and the comparison reads the anchor itself;
//! - it is built only for comparisons by status (not by contents), which
//!   need nothing of the anchor but what it holds.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use nix::errno::Errno;
use nix::sys::stat::{FileStat, SFlag};

use super::{
    file_type, held, list_dir, open_verified, read_xattrs, stat_entry, xattr_list_len_at, Node,
    Xattrs, DIR,
};
use crate::dir::{raise_fd_limit, Dir};
use crate::error::{Error, Result};
use crate::progress::{cancelled, Cancel};

/// Entries an index holds at most (about 250 bytes each).
pub const MAX_ENTRIES: usize = 1_000_000;

/// One entry of the anchor, as read.
struct Entry {
    st: FileStat,
    /// Its extended attributes, when it is a directory or has some.
    xattrs: Option<Xattrs>,
    /// For a directory: its entries.
    dir: Option<usize>,
}

/// The anchor's entries by directory; directory 0 is the root.
pub struct AnchorIndex {
    dirs: Vec<HashMap<OsString, Entry>>,
}

impl AnchorIndex {
    /// Reads `anchor` whole, depth first, one descriptor and listing a
    /// level; `None` when it holds more than `MAX_ENTRIES` (a million) entries.
    pub fn build(anchor: &Dir, cancel: Option<&Cancel>) -> Result<Option<AnchorIndex>> {
        let noatime = AtomicBool::new(true);
        let (root, _, _) = held(anchor)?;
        let mut index = AnchorIndex {
            dirs: vec![HashMap::new()],
        };
        let mut entries = 0usize;
        // (directory, its index, its path, names left to read)
        let names = names_of(&root, anchor.path())?;
        let mut stack = vec![(root, 0usize, anchor.path().to_path_buf(), names)];
        while let Some((dir, at, path, todo)) = stack.last_mut() {
            let Some(name) = todo.pop() else {
                stack.pop();
                continue;
            };
            entries += 1;
            if entries > MAX_ENTRIES {
                return Ok(None);
            }
            if entries % 4096 == 1 && cancel.is_some_and(Cancel::is_cancelled) {
                return Err(cancelled());
            }
            let child = path.join(&name);
            let (st, _) = match stat_entry(dir, &name) {
                Ok(found) => found,
                Err(e) => return Err(Error::sys("inspecting", &child, e)),
            };
            let is_dir = file_type(&st) == SFlag::S_IFDIR;
            let xattrs = if is_dir || xattr_list_len_at(dir, &name) != Some(0) {
                Some(read_xattrs(Node::At(dir, &name), &child)?)
            } else {
                None
            };
            let sub = if is_dir {
                let (sub, _) = open_verified(Some(dir), &name, &st, DIR, &noatime)
                    .map_err(|e| e.into_error(&child))?;
                let names = names_of(&sub, &child)?;
                Some((sub, names))
            } else {
                None
            };
            let here = *at;
            let sub_at = sub.as_ref().map(|_| {
                index.dirs.push(HashMap::new());
                index.dirs.len() - 1
            });
            index.dirs[here].insert(
                name,
                Entry {
                    st,
                    xattrs,
                    dir: sub_at,
                },
            );
            if let (Some((sub, names)), Some(sub_at)) = (sub, sub_at) {
                raise_fd_limit(stack.len() as u64 + 1);
                stack.push((sub, sub_at, child, names));
            }
        }
        Ok(Some(index))
    }

    fn entry(&self, dir: usize, name: &OsStr) -> Option<&Entry> {
        self.dirs.get(dir).and_then(|d| d.get(name))
    }
}

fn names_of(dir: &File, path: &Path) -> Result<Vec<OsString>> {
    Ok(list_dir(dir, path)?.into_iter().map(|(n, _)| n).collect())
}

/// A directory of the anchor: open, or in an index.
pub(super) enum ADir<'a> {
    Open(File),
    Indexed(&'a AnchorIndex, usize),
}

impl ADir<'_> {
    /// The names in the directory.
    pub(super) fn names(&self, path: &Path) -> Result<Vec<OsString>> {
        match self {
            ADir::Open(f) => names_of(f, path),
            ADir::Indexed(index, at) => Ok(index.dirs[*at].keys().cloned().collect()),
        }
    }

    /// An entry's status, as [`stat_entry`] gives it.
    pub(super) fn stat(&self, name: &OsStr) -> nix::Result<FileStat> {
        match self {
            ADir::Open(f) => stat_entry(f, name).map(|(st, _)| st),
            ADir::Indexed(index, at) => index.entry(*at, name).map(|e| e.st).ok_or(Errno::ENOENT),
        }
    }

    /// Whether an entry has no extended attributes (`None`: cannot tell).
    pub(super) fn no_xattrs(&self, name: &OsStr) -> Option<bool> {
        match self {
            ADir::Open(f) => xattr_list_len_at(f, name).map(|n| n == 0),
            ADir::Indexed(index, at) => index.entry(*at, name).map(|e| e.xattrs.is_none()),
        }
    }

    /// An entry's extended attributes.
    pub(super) fn xattrs(&self, name: &OsStr, path: &Path) -> Result<Xattrs> {
        match self {
            ADir::Open(f) => read_xattrs(Node::At(f, name), path),
            ADir::Indexed(index, at) => match index.entry(*at, name) {
                Some(e) => Ok(e.xattrs.clone().unwrap_or_default()),
                None => Err(Error::sys(
                    "reading extended attributes of",
                    path,
                    Errno::ENOENT,
                )),
            },
        }
    }

    /// The subdirectory `name`, whose status `st` is.
    pub(super) fn open(
        &self,
        name: &OsStr,
        st: &FileStat,
        noatime: &AtomicBool,
        path: &Path,
    ) -> Result<Self> {
        match self {
            ADir::Open(f) => Ok(ADir::Open(
                open_verified(Some(f), name, st, DIR, noatime)
                    .map_err(|e| e.into_error(path))?
                    .0,
            )),
            ADir::Indexed(index, at) => match index.entry(*at, name).and_then(|e| e.dir) {
                Some(sub) => Ok(ADir::Indexed(index, sub)),
                None => Err(Error::sys("opening", path, Errno::ENOTDIR)),
            },
        }
    }

    /// The open directory, for what only the kernel can answer (contents,
    /// link targets): comparisons by contents never use an index.
    pub(super) fn file(&self, path: &Path) -> Result<&File> {
        match self {
            ADir::Open(f) => Ok(f),
            ADir::Indexed(..) => Err(Error::new(
                crate::error::ErrorKind::Other,
                format!(
                    "comparing {}: contents are not in the anchor's index",
                    path.display()
                ),
            )),
        }
    }
}
