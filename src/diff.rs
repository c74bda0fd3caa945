//! The engine of `lxc-snap diff`: what changed between two views of a
//! container's filesystem, read from the captured trees without mounting.
//!
//! Both sides are [`View`]s, resolved as [`crate::copy::view`] says
//! (whiteouts, opaque directories, the overlay's own attributes, which are
//! not compared); it also says how nothing in them is followed.
//!
//! What is reported, one [`Change`] per path, in tree order (a directory
//! before its contents, siblings by the bytes of their names), `/` included:
//! - `A` added, `D` deleted: every path that exists in only one view, so an
//!   added or deleted directory is reported with everything below it and the
//!   counts say how many entries came or went.
//! - `R` type changed (a file became a directory, a symlink, ...). What was
//!   below a directory on either side is reported as added or deleted.
//! - `M` modified, with what differs ([`Change::what`]): `content` (regular
//!   files), `target` (symlinks), `device` (device numbers), `mode` (all 12
//!   permission bits; symlinks have none), `owner` (numeric uid or gid),
//!   `xattrs` (names or values). Regular files compare by size and mtime
//!   unless [`Options::content`] asks for their bytes; then the mtime is
//!   ignored, so a file rewritten with the same bytes is unchanged, and a
//!   file rewritten in place with other bytes of the same length and its
//!   mtime put back is found only that way. Times of other entries, atime,
//!   ctime and link counts are never compared.
//!
//! Bytes in the [`Summary`] count regular files only, once per name:
//! `bytes_added` the sizes of files that exist only in the newer view (`A`,
//! and the new side of `R`), `bytes_removed` those only in the older one,
//! `bytes_changed` the newer sizes of files whose content changed.
//!
//! Cost: only what can differ is walked. A directory is entered only when
//! the two views build it from different layer directories, and then only
//! the names in the layers that are not shared by both views (the common
//! bottom of the two stacks) are looked at: two snapshots of one overlay
//! container cost about the size of their deltas, not of the base. Memory
//! holds one directory's names per level of the walk.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::fcntl::OFlag;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::stat::{FileStat, SFlag};
use serde::{Serialize, Serializer};

use crate::copy::view::{
    child_stack, entry_type, file_type, fstat, list_dir, lookup, open_root, open_verified,
    read_link, read_xattrs, Loc, Side, Stack,
};
pub use crate::copy::view::{EntryType, View};
use crate::dir::RelPath;
use crate::error::{Error, Result};
use crate::progress::Cancel;

/// How to compare.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Compare regular files byte for byte instead of by size and mtime.
    pub content: bool,
    /// Checked before each entry: once set, the comparison stops with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled).
    pub cancel: Option<Cancel>,
}

/// The kind of a change, printed as its letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Added,
    Modified,
    Deleted,
    TypeChanged,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Modified => 'M',
            Kind::Deleted => 'D',
            Kind::TypeChanged => 'R',
        }
    }
}

/// One changed path.
///
/// As JSON: `kind` (`added`, `modified`, `deleted`, `type_changed`),
/// `path`, `what`, `old_type`, `new_type` (null where the path does not
/// exist), `old_size`, `new_size`, `old_mode`, `new_mode` (permission
/// bits, as numbers), `old_owner`, `new_owner` (`[uid, gid]`),
/// `old_target`, `new_target` (a symlink's target; escaped as paths are
/// when it is not UTF-8). `path` is the exact path when it is UTF-8; otherwise it is [`escape_path`]'s form and `path_bytes` (present
/// only then) holds the exact bytes as an array of numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    /// Raw bytes, starting with `/` (the root of the container).
    pub path: Vec<u8>,
    /// For `M`: what differs, from `content`, `target`, `device`, `mode`,
    /// `owner`, `xattrs`, in that order. For `R`: `type`. Empty otherwise.
    pub what: Vec<&'static str>,
    pub old_type: Option<EntryType>,
    pub new_type: Option<EntryType>,
    /// Size of a regular file in the older view; 0 for anything else.
    pub old_size: u64,
    /// Size of a regular file in the newer view; 0 for anything else.
    pub new_size: u64,
    /// Permission bits (the low 12 of `st_mode`) in each view; `None`
    /// where the path does not exist.
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    /// Owner and group ids in each view.
    pub old_owner: Option<(u32, u32)>,
    pub new_owner: Option<(u32, u32)>,
    /// A symlink's target in each view (raw bytes); `None` for anything
    /// else.
    pub old_target: Option<Vec<u8>>,
    pub new_target: Option<Vec<u8>>,
}

impl Change {
    /// What the letter does not say: for `M`, each thing that differs
    /// with its old and new value where it has one (`content, mode 0644
    /// -> 0755, owner 0:0 -> 33:33, target a -> b`); `file -> directory`
    /// for `R`; the type for `A` and `D`, with the target of a symlink
    /// (`symlink -> /etc/x`). Targets are escaped as paths are.
    pub fn details(&self) -> String {
        let name = |t: Option<EntryType>| t.map_or("nothing", EntryType::name);
        let with_target = |t: Option<EntryType>, target: &Option<Vec<u8>>| match target {
            Some(to) => format!("{} -> {}", name(t), escape_path(to)),
            None => name(t).to_string(),
        };
        match self.kind {
            Kind::Modified => self
                .what
                .iter()
                .map(|what| self.what_differs(what))
                .collect::<Vec<_>>()
                .join(", "),
            Kind::TypeChanged => format!("{} -> {}", name(self.old_type), name(self.new_type)),
            Kind::Added => with_target(self.new_type, &self.new_target),
            Kind::Deleted => with_target(self.old_type, &self.old_target),
        }
    }

    /// One item of [`Change::what`] with its values.
    fn what_differs(&self, what: &str) -> String {
        let owner = |o: Option<(u32, u32)>| o.map_or("?".into(), |(u, g)| format!("{u}:{g}"));
        let target = |t: &Option<Vec<u8>>| t.as_deref().map_or("?".into(), escape_path);
        match what {
            "mode" => match (self.old_mode, self.new_mode) {
                (Some(o), Some(n)) => format!("mode {o:04o} -> {n:04o}"),
                _ => what.to_string(),
            },
            "owner" => format!(
                "owner {} -> {}",
                owner(self.old_owner),
                owner(self.new_owner)
            ),
            "target" => format!(
                "target {} -> {}",
                target(&self.old_target),
                target(&self.new_target)
            ),
            _ => what.to_string(),
        }
    }

    /// What a listing adds after the path, or `None`: the details of `M`
    /// and `R`, and the target of an added or deleted symlink.
    pub fn note(&self) -> Option<String> {
        match self.kind {
            Kind::Modified | Kind::TypeChanged => Some(self.details()),
            Kind::Added | Kind::Deleted
                if self.new_target.is_some() || self.old_target.is_some() =>
            {
                Some(self.details())
            }
            Kind::Added | Kind::Deleted => None,
        }
    }
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            kind: Kind,
            path: Cow<'a, str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            path_bytes: Option<&'a [u8]>,
            what: &'a [&'static str],
            old_type: Option<EntryType>,
            new_type: Option<EntryType>,
            old_size: u64,
            new_size: u64,
            old_mode: Option<u32>,
            new_mode: Option<u32>,
            old_owner: Option<(u32, u32)>,
            new_owner: Option<(u32, u32)>,
            old_target: Option<String>,
            new_target: Option<String>,
        }
        let target = |t: &Option<Vec<u8>>| {
            t.as_deref().map(|t| match std::str::from_utf8(t) {
                Ok(s) => s.to_string(),
                Err(_) => escape_path(t),
            })
        };
        let (path, path_bytes) = match std::str::from_utf8(&self.path) {
            Ok(s) => (Cow::Borrowed(s), None),
            Err(_) => (Cow::Owned(escape_path(&self.path)), Some(&self.path[..])),
        };
        Json {
            kind: self.kind,
            path,
            path_bytes,
            what: &self.what,
            old_type: self.old_type,
            new_type: self.new_type,
            old_size: self.old_size,
            new_size: self.new_size,
            old_mode: self.old_mode,
            new_mode: self.new_mode,
            old_owner: self.old_owner,
            new_owner: self.new_owner,
            old_target: target(&self.old_target),
            new_target: target(&self.new_target),
        }
        .serialize(serializer)
    }
}

/// Counts of the changes reported, and bytes (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub type_changed: u64,
    pub bytes_added: u64,
    pub bytes_removed: u64,
    pub bytes_changed: u64,
}

impl Summary {
    /// Adds another comparison's counts.
    pub fn add(&mut self, other: &Summary) {
        self.added += other.added;
        self.modified += other.modified;
        self.deleted += other.deleted;
        self.type_changed += other.type_changed;
        self.bytes_added += other.bytes_added;
        self.bytes_removed += other.bytes_removed;
        self.bytes_changed += other.bytes_changed;
    }

    fn count(&mut self, c: &Change) {
        match c.kind {
            Kind::Added => {
                self.added += 1;
                self.bytes_added += c.new_size;
            }
            Kind::Deleted => {
                self.deleted += 1;
                self.bytes_removed += c.old_size;
            }
            Kind::TypeChanged => {
                self.type_changed += 1;
                self.bytes_added += c.new_size;
                self.bytes_removed += c.old_size;
            }
            Kind::Modified => {
                self.modified += 1;
                if c.what.contains(&"content") {
                    self.bytes_changed += c.new_size;
                }
            }
        }
    }
}

/// `M /etc/motd`: the letter and the escaped path. The path never holds a
/// tab or a newline, so callers can append details after a tab.
pub fn format_line(c: &Change) -> String {
    format!("{} {}", c.kind.letter(), escape_path(&c.path))
}

/// A path made safe to print on one line of a terminal, reversibly:
/// `\\` for a backslash, the rest as [`crate::printable::escape_bytes`]
/// does.
pub fn escape_path(bytes: &[u8]) -> String {
    crate::printable::escape_bytes(bytes, true)
}

/// Compares `old` with `new`, calling `each` for every change in tree order,
/// and returns the totals. See the module documentation.
pub fn diff(old: &View, new: &View, opts: &Options, each: impl FnMut(&Change)) -> Result<Summary> {
    diff_at(old, new, &[], opts, each)
}

/// [`diff`] of what is at `at` (names from the root; empty for the whole
/// views) and below it. A path that is not there, or lies below something
/// that is not a directory, in one view is compared as missing there.
pub fn diff_at(
    old: &View,
    new: &View,
    at: &[&OsStr],
    opts: &Options,
    mut each: impl FnMut(&Change),
) -> Result<Summary> {
    let a = Side::of(old);
    let b = Side::of(new);
    let old_root = open_root(&a, old)?;
    let new_root = open_root(&b, new)?;
    let mut differ = Differ {
        alike: a.overlay == b.overlay && a.private == b.private,
        a,
        b,
        opts: opts.clone(),
        summary: Summary::default(),
        fd_limits: getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((u64::MAX, u64::MAX)),
        per_level: old.layers.len() + new.layers.len(),
        each: &mut each,
    };
    match at.split_last() {
        None => differ.run(old_root, new_root)?,
        Some((last, above)) => {
            let mut rel = RelPath::root();
            for name in above {
                rel = rel.child(name);
            }
            let old = descend(&differ.a, old_root, above)?;
            let new = descend(&differ.b, new_root, above)?;
            let level = Level {
                rel,
                old,
                new,
                names: vec![last.to_os_string()],
            };
            differ.walk(vec![level])?;
        }
    }
    Ok(differ.summary)
}

/// The stack of the directory at `names`; empty when there is none.
fn descend(side: &Side, mut stack: Stack, names: &[&OsStr]) -> Result<Stack> {
    for name in names {
        stack = match lookup(side, &stack, name)? {
            Some(found) if file_type(&found.st) == SFlag::S_IFDIR => {
                child_stack(side, &stack, &found, name)?
            }
            _ => return Ok(Vec::new()),
        };
    }
    Ok(stack)
}

/// A directory being compared: both sides' stacks and the names still to do.
struct Level {
    /// Path in the container.
    rel: RelPath,
    old: Stack,
    new: Stack,
    /// Sorted in reverse, so popping goes in order.
    names: Vec<OsString>,
}

/// Descriptors kept free for everything but the directory stacks.
const FD_RESERVE: u64 = 64;

struct Differ<'e> {
    a: Side,
    b: Side,
    opts: Options,
    summary: Summary,
    /// (soft, hard) RLIMIT_NOFILE as last set.
    fd_limits: (u64, u64),
    /// Most descriptors one more level can take: every layer of both views.
    per_level: usize,
    /// Both views read layers alike, so the same layer directories (or the
    /// same inode) mean the same thing on both sides.
    alike: bool,
    each: &'e mut dyn FnMut(&Change),
}

impl Differ<'_> {
    fn run(&mut self, old_root: Stack, new_root: Stack) -> Result<()> {
        let dot = OsStr::new(".");
        let old_st = fstat(&old_root[0])?;
        let new_st = fstat(&new_root[0])?;
        if !self.alike || (old_st.st_dev, old_st.st_ino) != (new_st.st_dev, new_st.st_ino) {
            let o = Loc {
                dir: &old_root[0],
                name: dot,
            };
            let n = Loc {
                dir: &new_root[0],
                name: dot,
            };
            let what = self.compare(o, &old_st, n, &new_st)?;
            if !what.is_empty() {
                let kind = Some(EntryType::Directory);
                self.emit(
                    Kind::Modified,
                    &RelPath::root(),
                    what,
                    kind.map(|k| (k, &old_st, o)),
                    kind.map(|k| (k, &new_st, n)),
                )?;
            }
        }
        let levels = self.level(RelPath::root(), old_root, new_root)?;
        self.walk(levels.into_iter().collect())
    }

    /// Compares the names left in `levels` and everything below them.
    fn walk(&mut self, mut levels: Vec<Level>) -> Result<()> {
        let mut held: usize = levels
            .iter()
            .map(|l: &Level| l.old.len() + l.new.len())
            .sum();
        while let Some(top) = levels.last_mut() {
            let Some(name) = top.names.pop() else {
                if let Some(done) = levels.pop() {
                    held -= done.old.len() + done.new.len();
                }
                continue;
            };
            if let Some(cancel) = &self.opts.cancel {
                cancel.check()?;
            }
            self.make_room_for(held);
            if let Some(child) = self.entry(top, &name)? {
                held += child.old.len() + child.new.len();
                levels.push(child);
            }
        }
        Ok(())
    }

    /// Deep trees hold a descriptor per layer per level on each side; the
    /// soft limit is often far below the hard one.
    fn make_room_for(&mut self, held: usize) {
        let (soft, hard) = self.fd_limits;
        if (held + self.per_level) as u64 + FD_RESERVE > soft && soft < hard {
            self.fd_limits = (hard, hard);
            // If this fails, the open that runs out of descriptors names its path.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }

    /// Compares the name in both views; returns the directory to enter next.
    fn entry(&mut self, parent: &Level, name: &OsStr) -> Result<Option<Level>> {
        let rel = parent.rel.child(name);
        let old = lookup(&self.a, &parent.old, name)?;
        let new = lookup(&self.b, &parent.new, name)?;
        let (old, new) = match (old, new) {
            (None, None) => return Ok(None),
            (None, Some(n)) => {
                let t = entry_type(&n.st, &parent.new[n.pos].path().join(name))?;
                let loc = Loc {
                    dir: &parent.new[n.pos],
                    name,
                };
                self.emit(Kind::Added, &rel, Vec::new(), None, Some((t, &n.st, loc)))?;
                if t != EntryType::Directory {
                    return Ok(None);
                }
                let stack = child_stack(&self.b, &parent.new, &n, name)?;
                return self.level(rel, Vec::new(), stack);
            }
            (Some(o), None) => {
                let t = entry_type(&o.st, &parent.old[o.pos].path().join(name))?;
                let loc = Loc {
                    dir: &parent.old[o.pos],
                    name,
                };
                self.emit(Kind::Deleted, &rel, Vec::new(), Some((t, &o.st, loc)), None)?;
                if t != EntryType::Directory {
                    return Ok(None);
                }
                let stack = child_stack(&self.a, &parent.old, &o, name)?;
                return self.level(rel, stack, Vec::new());
            }
            (Some(o), Some(n)) => (o, n),
        };
        let old_loc = Loc {
            dir: &parent.old[old.pos],
            name,
        };
        let new_loc = Loc {
            dir: &parent.new[new.pos],
            name,
        };
        let ot = entry_type(&old.st, &old_loc.path())?;
        let nt = entry_type(&new.st, &new_loc.path())?;
        let dir = EntryType::Directory;
        if ot != nt {
            let what = vec!["type"];
            self.emit(
                Kind::TypeChanged,
                &rel,
                what,
                Some((ot, &old.st, old_loc)),
                Some((nt, &new.st, new_loc)),
            )?;
            return if ot == dir {
                let stack = child_stack(&self.a, &parent.old, &old, name)?;
                self.level(rel, stack, Vec::new())
            } else if nt == dir {
                let stack = child_stack(&self.b, &parent.new, &new, name)?;
                self.level(rel, Vec::new(), stack)
            } else {
                Ok(None)
            };
        }
        let same_inode =
            self.alike && (old.st.st_dev, old.st.st_ino) == (new.st.st_dev, new.st.st_ino);
        if !same_inode {
            let what = self.compare(old_loc, &old.st, new_loc, &new.st)?;
            if !what.is_empty() {
                self.emit(
                    Kind::Modified,
                    &rel,
                    what,
                    Some((ot, &old.st, old_loc)),
                    Some((nt, &new.st, new_loc)),
                )?;
            }
        }
        if ot != dir {
            return Ok(None);
        }
        let old_stack = child_stack(&self.a, &parent.old, &old, name)?;
        let new_stack = child_stack(&self.b, &parent.new, &new, name)?;
        self.level(rel, old_stack, new_stack)
    }

    /// The directory to enter, or `None` when both views build it from the
    /// same layer directories (so everything below is the same).
    fn level(&self, rel: RelPath, old: Stack, new: Stack) -> Result<Option<Level>> {
        let common = old
            .iter()
            .rev()
            .zip(new.iter().rev())
            .take_while(|(o, n)| self.alike && o.id == n.id)
            .count();
        if common == old.len() && common == new.len() {
            return Ok(None);
        }
        // A name found in none of the layers that differ resolves to the
        // same entry (and the same stack below it) in both views.
        let mut names = BTreeSet::new();
        for dir in old[..old.len() - common]
            .iter()
            .chain(&new[..new.len() - common])
        {
            list_dir(dir, &mut names)?;
        }
        let mut names: Vec<OsString> = names.into_iter().collect();
        names.reverse();
        Ok(Some(Level {
            rel,
            old,
            new,
            names,
        }))
    }

    /// What differs between two entries of the same type.
    fn compare(
        &self,
        old: Loc,
        old_st: &FileStat,
        new: Loc,
        new_st: &FileStat,
    ) -> Result<Vec<&'static str>> {
        let mut what = Vec::new();
        let kind = file_type(old_st);
        if kind == SFlag::S_IFREG {
            if old_st.st_size != new_st.st_size {
                what.push("content");
            } else if self.opts.content {
                if !same_bytes(old, old_st, new, new_st)? {
                    what.push("content");
                }
            } else if (old_st.st_mtime, old_st.st_mtime_nsec)
                != (new_st.st_mtime, new_st.st_mtime_nsec)
            {
                what.push("content");
            }
        } else if kind == SFlag::S_IFLNK {
            if read_link(old)? != read_link(new)? {
                what.push("target");
            }
        } else if matches!(kind, SFlag::S_IFCHR | SFlag::S_IFBLK)
            && old_st.st_rdev != new_st.st_rdev
        {
            what.push("device");
        }
        // Linux has no modes on symlinks.
        if kind != SFlag::S_IFLNK && old_st.st_mode & 0o7777 != new_st.st_mode & 0o7777 {
            what.push("mode");
        }
        if (old_st.st_uid, old_st.st_gid) != (new_st.st_uid, new_st.st_gid) {
            what.push("owner");
        }
        if read_xattrs(&self.a, old)? != read_xattrs(&self.b, new)? {
            what.push("xattrs");
        }
        Ok(what)
    }

    fn emit(
        &mut self,
        kind: Kind,
        rel: &RelPath,
        what: Vec<&'static str>,
        old: Option<(EntryType, &FileStat, Loc)>,
        new: Option<(EntryType, &FileStat, Loc)>,
    ) -> Result<()> {
        let size = |side: Option<(EntryType, &FileStat, Loc)>| match side {
            Some((EntryType::File, st, _)) => st.st_size as u64,
            _ => 0,
        };
        let target = |side: Option<(EntryType, &FileStat, Loc)>| match side {
            Some((EntryType::Symlink, _, loc)) => read_link(loc).map(|t| Some(t.into_vec())),
            _ => Ok(None),
        };
        // The whole path exists only while the change is reported.
        let mut path = Vec::new();
        for name in rel.names() {
            path.push(b'/');
            path.extend_from_slice(name.as_bytes());
        }
        if path.is_empty() {
            path.push(b'/');
        }
        let change = Change {
            kind,
            path,
            what,
            old_type: old.map(|(t, _, _)| t),
            new_type: new.map(|(t, _, _)| t),
            old_size: size(old),
            new_size: size(new),
            old_mode: old.map(|(_, st, _)| st.st_mode & 0o7777),
            new_mode: new.map(|(_, st, _)| st.st_mode & 0o7777),
            old_owner: old.map(|(_, st, _)| (st.st_uid, st.st_gid)),
            new_owner: new.map(|(_, st, _)| (st.st_uid, st.st_gid)),
            old_target: target(old)?,
            new_target: target(new)?,
        };
        self.summary.count(&change);
        (self.each)(&change);
        Ok(())
    }
}

/// Whether two regular files of the same size hold the same bytes (holes
/// in both are not read).
fn same_bytes(old: Loc, old_st: &FileStat, new: Loc, new_st: &FileStat) -> Result<bool> {
    let open = |loc: Loc, st: &FileStat| {
        let flags = OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        open_verified(Some(&loc.dir.fd), loc.name, st, flags, &loc.path())
    };
    let (a, b) = (open(old, old_st)?, open(new, new_st)?);
    crate::copy::same_contents(&a, &b, new_st.st_size as u64)
        .map_err(|e| Error::io("comparing", &new.path(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::view::Found;
    use crate::error::ErrorKind;
    use nix::sys::stat;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    fn run(old: &View, new: &View, content: bool) -> (Vec<String>, Summary) {
        let mut lines = Vec::new();
        let summary = diff(
            old,
            new,
            &Options {
                content,
                ..Options::default()
            },
            |c| {
                lines.push(format!("{}\t{}", format_line(c), c.details()));
            },
        )
        .expect("diff");
        (lines, summary)
    }

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::create_dir(&a).expect("mkdir");
        fs::create_dir(&b).expect("mkdir");
        (tmp, a, b)
    }

    fn set_mtime(path: &Path, secs: u64) {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(t)
            .expect("set mtime");
    }

    #[test]
    fn escapes_what_a_terminal_would_interpret() {
        assert_eq!(escape_path(b"/etc/motd"), "/etc/motd");
        assert_eq!(escape_path("/caf\u{e9}".as_bytes()), "/caf\u{e9}");
        assert_eq!(escape_path(b"/a\nb\tc\rd\\e"), "/a\\nb\\tc\\rd\\\\e");
        assert_eq!(escape_path(b"/\xff\xfe-x"), "/\\xff\\xfe-x");
        assert_eq!(escape_path(b"/\x1b[31m\x7f"), "/\\x1b[31m\\x7f");
        // C1 control and a right-to-left override, as their UTF-8 bytes.
        assert_eq!(escape_path("/\u{9b}".as_bytes()), "/\\xc2\\x9b");
        assert_eq!(
            escape_path("/\u{202e}txt".as_bytes()),
            "/\\xe2\\x80\\xaetxt"
        );
        // A literal backslash-x cannot be mistaken for an escaped byte.
        assert_eq!(escape_path(b"/\\xff"), "/\\\\xff");
    }

    #[test]
    fn json_path_is_exact() {
        let mut c = Change {
            kind: Kind::Added,
            path: b"/new\nline".to_vec(),
            what: Vec::new(),
            old_type: None,
            new_type: Some(EntryType::File),
            old_size: 0,
            new_size: 3,
            old_mode: None,
            new_mode: Some(0o644),
            old_owner: None,
            new_owner: Some((0, 0)),
            old_target: None,
            new_target: None,
        };
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["new_mode"], 0o644);
        assert_eq!(v["new_owner"], serde_json::json!([0, 0]));
        assert!(v["old_mode"].is_null());
        assert_eq!(v["path"], "/new\nline");
        assert_eq!(v["kind"], "added");
        assert_eq!(v["new_type"], "file");
        assert!(v["old_type"].is_null());
        assert!(v.get("path_bytes").is_none());

        c.path = b"/bad\xff".to_vec();
        c.kind = Kind::TypeChanged;
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["path"], "/bad\\xff");
        assert_eq!(v["kind"], "type_changed");
        let bytes: Vec<u8> = serde_json::from_value(v["path_bytes"].clone()).expect("bytes");
        assert_eq!(bytes, b"/bad\xff");
    }

    #[test]
    fn plain_trees_added_modified_deleted_and_type_changed() {
        let (_tmp, a, b) = tree();
        for root in [&a, &b] {
            fs::write(root.join("same"), b"same").expect("write");
            fs::write(root.join("grows"), b"1").expect("write");
            fs::write(root.join("chmod"), b"x").expect("write");
            set_mtime(&root.join("same"), 1_000_000);
            set_mtime(&root.join("grows"), 1_000_000);
            set_mtime(&root.join("chmod"), 1_000_000);
        }
        fs::write(b.join("grows"), b"12345").expect("write");
        fs::set_permissions(b.join("chmod"), fs::Permissions::from_mode(0o4755)).expect("chmod");
        fs::create_dir_all(a.join("gone/sub")).expect("mkdir");
        fs::write(a.join("gone/sub/f"), b"1234567").expect("write");
        fs::create_dir_all(b.join("new/sub")).expect("mkdir");
        fs::write(b.join("new/sub/f"), b"12").expect("write");
        fs::write(a.join("was-file"), b"abc").expect("write");
        fs::create_dir(b.join("was-file")).expect("mkdir");
        fs::write(b.join("was-file/inside"), b"abcd").expect("write");
        symlink("one", a.join("link")).expect("symlink");
        symlink("two", b.join("link")).expect("symlink");
        symlink("x", a.join("to-file")).expect("symlink");
        fs::write(b.join("to-file"), b"").expect("write");

        let (lines, s) = run(&View::dir(&a), &View::dir(&b), false);
        assert_eq!(
            lines,
            [
                "M /chmod\tmode 0644 -> 4755",
                "D /gone\tdirectory",
                "D /gone/sub\tdirectory",
                "D /gone/sub/f\tfile",
                "M /grows\tcontent",
                "M /link\ttarget one -> two",
                "A /new\tdirectory",
                "A /new/sub\tdirectory",
                "A /new/sub/f\tfile",
                "R /to-file\tsymlink -> file",
                "R /was-file\tfile -> directory",
                "A /was-file/inside\tfile",
            ]
        );
        let want = Summary {
            added: 4,
            modified: 3,
            deleted: 3,
            type_changed: 2,
            bytes_added: 2 + 4,
            bytes_removed: 7 + 3,
            bytes_changed: 5,
        };
        assert_eq!(s, want);

        let (lines, s) = run(&View::dir(&b), &View::dir(&b), true);
        assert!(lines.is_empty(), "{lines:?}");
        assert_eq!(s, Summary::default());
    }

    #[test]
    fn same_size_rewrite_with_restored_mtime_needs_content() {
        let (_tmp, a, b) = tree();
        fs::write(a.join("f"), b"hello").expect("write");
        fs::write(b.join("f"), b"jello").expect("write");
        fs::write(a.join("touched"), b"same").expect("write");
        fs::write(b.join("touched"), b"same").expect("write");
        set_mtime(&a.join("f"), 1_000_000);
        set_mtime(&b.join("f"), 1_000_000);
        set_mtime(&a.join("touched"), 1_000_000);
        set_mtime(&b.join("touched"), 2_000_000);

        let (lines, _) = run(&View::dir(&a), &View::dir(&b), false);
        assert_eq!(lines, ["M /touched\tcontent"]);
        let (lines, s) = run(&View::dir(&a), &View::dir(&b), true);
        assert_eq!(lines, ["M /f\tcontent"]);
        assert_eq!(s.bytes_changed, 5);
    }

    #[test]
    fn xattr_and_root_changes() {
        let (_tmp, a, b) = tree();
        fs::write(a.join("f"), b"x").expect("write");
        fs::write(b.join("f"), b"x").expect("write");
        set_mtime(&a.join("f"), 1_000_000);
        set_mtime(&b.join("f"), 1_000_000);
        xattr::set(b.join("f"), "user.note", b"v").expect("setxattr");
        fs::set_permissions(&b, fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::set_permissions(&a, fs::Permissions::from_mode(0o755)).expect("chmod");
        let (lines, _) = run(&View::dir(&a), &View::dir(&b), false);
        assert_eq!(lines, ["M /\tmode 0755 -> 0700", "M /f\txattrs"]);
    }

    #[test]
    fn a_set_cancel_flag_stops_the_comparison() {
        let (_tmp, a, b) = tree();
        for i in 0..50 {
            fs::write(b.join(format!("f{i}")), b"!").expect("write");
        }
        let cancel = Cancel::new();
        let opts = Options {
            cancel: Some(cancel.clone()),
            ..Options::default()
        };
        let mut seen = 0;
        let result = diff(&View::dir(&a), &View::dir(&b), &opts, |_| {
            seen += 1;
            if seen == 10 {
                cancel.cancel();
            }
        });
        assert_eq!(
            result.map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::Cancelled)
        );
        assert_eq!(seen, 10);
    }

    #[test]
    fn hostile_names_are_reported_exactly() {
        let (_tmp, a, b) = tree();
        let names: [&[u8]; 4] = [b"new\nline", b"bad\xff\xfe", b"-rf", b"tab\there"];
        for n in names {
            fs::write(b.join(OsStr::from_bytes(n)), b"!").expect("write");
        }
        let mut paths = Vec::new();
        let mut lines = Vec::new();
        diff(&View::dir(&a), &View::dir(&b), &Options::default(), |c| {
            paths.push(c.path.clone());
            lines.push(format_line(c));
        })
        .expect("diff");
        let mut want: Vec<Vec<u8>> = names.iter().map(|n| [b"/", *n].concat()).collect();
        want.sort();
        assert_eq!(paths, want);
        assert!(lines.contains(&"A /new\\nline".to_string()), "{lines:?}");
        assert!(lines.contains(&"A /bad\\xff\\xfe".to_string()), "{lines:?}");
        assert!(lines.contains(&"A /-rf".to_string()), "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains('\n') && !l.contains('\t')));
    }

    #[test]
    fn user_xattr_overlay_opaque_directory_hides_lower() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let p = |r: &str| tmp.path().join(r);
        for d in ["base/etc", "base/var", "da/etc", "db/etc", "db/var"] {
            fs::create_dir_all(p(d)).expect("mkdir");
        }
        fs::write(p("base/etc/old"), b"o").expect("write");
        fs::write(p("base/var/log"), b"l").expect("write");
        fs::write(p("db/var/fresh"), b"f").expect("write");
        xattr::set(p("db/var"), "user.overlay.opaque", b"y").expect("setxattr");
        for d in ["base/etc", "da/etc", "db/etc", "base/var", "db/var"] {
            fs::set_permissions(p(d), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let view = |top: &str| View {
            userxattr: true,
            ..View::overlay(p(top), &[p("base")])
        };
        let (lines, s) = run(&view("da"), &view("db"), false);
        assert_eq!(lines, ["A /var/fresh\tfile", "D /var/log\tfile"]);
        assert_eq!((s.added, s.deleted), (1, 1));

        // Mounted without userxattr, the same attribute is an ordinary one
        // the container could have set itself.
        let plain = |top: &str| View::overlay(p(top), &[p("base")]);
        let (lines, _) = run(&plain("da"), &plain("db"), false);
        assert_eq!(lines, ["M /var\txattrs", "A /var/fresh\tfile"]);

        // The very same layers read both ways are not the same view.
        let (lines, _) = run(&plain("db"), &view("db"), false);
        assert_eq!(lines, ["M /var\txattrs", "D /var/log\tfile"]);
    }

    #[test]
    fn only_layers_that_differ_are_listed() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let p = |r: &str| tmp.path().join(r);
        for d in ["base/usr", "da/usr", "db"] {
            fs::create_dir_all(p(d)).expect("mkdir");
        }
        for n in ["base/usr/big1", "base/usr/big2", "da/usr/mine", "db/theirs"] {
            fs::write(p(n), b"x").expect("write");
        }
        let a = Side::of(&View::overlay(p("da"), &[p("base")]));
        let b = Side::of(&View::overlay(p("db"), &[p("base")]));
        let old = open_root(&a, &View::overlay(p("da"), &[p("base")])).expect("open");
        let new = open_root(&b, &View::overlay(p("db"), &[p("base")])).expect("open");
        let mut each = |_: &Change| {};
        let differ = Differ {
            a,
            b,
            opts: Options::default(),
            summary: Summary::default(),
            fd_limits: (u64::MAX, u64::MAX),
            per_level: 4,
            alike: true,
            each: &mut each,
        };
        let root = differ
            .level(RelPath::root(), old, new)
            .expect("level")
            .expect("differs");
        let names: BTreeSet<_> = root.names.iter().cloned().collect();
        assert_eq!(names, ["usr", "theirs"].map(OsString::from).into());

        // Below /usr only the old view has a layer of its own.
        let old = child_stack(
            &differ.a,
            &root.old,
            &Found {
                pos: 0,
                st: stat::lstat(&p("da/usr")).expect("stat"),
            },
            OsStr::new("usr"),
        )
        .expect("stack");
        let new = child_stack(
            &differ.b,
            &root.new,
            &Found {
                pos: 1,
                st: stat::lstat(&p("base/usr")).expect("stat"),
            },
            OsStr::new("usr"),
        )
        .expect("stack");
        assert_eq!((old.len(), new.len()), (2, 1));
        let usr = differ
            .level(RelPath::root().child(OsStr::new("usr")), old, new)
            .expect("level")
            .expect("differs");
        assert_eq!(usr.names, [OsString::from("mine")]);

        // Identical stacks: nothing below can differ.
        let same = open_root(&differ.a, &View::overlay(p("da"), &[p("base")])).expect("open");
        let again = open_root(&differ.a, &View::overlay(p("da"), &[p("base")])).expect("open");
        assert!(differ
            .level(RelPath::root(), same, again)
            .expect("level")
            .is_none());
    }
}
