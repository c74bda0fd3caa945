//! Views: what a container sees through a stack of layer directories, read
//! without mounting anything (the engine of `diff`, `ls`, `cat`, `cp` and
//! `undo`).
//!
//! A [`View`] is a stack of layer directories, top first. With more than
//! one layer it is resolved the way overlayfs resolves it: a name in a
//! layer hides the same name below; a whiteout (a 0/0 character device, or
//! a zero-size regular file carrying the `whiteout` attribute inside a
//! directory whose `opaque` attribute is `x`) hides it and shows nothing; a
//! directory whose `opaque` attribute is `y` hides the directories of the
//! same name below it (not at the root, where overlayfs ignores it); other
//! directories merge with the directories of the same name below, the upper
//! one's metadata winning. Whiteouts are hidden in every layer, as
//! overlayfs's lookup does (its readdir still lists one in a directory that
//! exists in a single lower layer, but it cannot be stat'ed). A one-layer
//! view is a plain tree: a 0/0 device there is a device.
//!
//! The overlay attributes are `trusted.overlay.*`, or `user.overlay.*` for a
//! view whose overlay is mounted with `userxattr` ([`View::userxattr`]); only
//! that view's namespace is honoured, because a container can set `user.*`
//! attributes on its own files. Those private attributes are not part of
//! what an entry is. An entry carrying a `redirect` or `metacopy` attribute
//! is refused ([`ErrorKind::Unsupported`]): such a layer is not
//! self-contained.
//!
//! Safety: the layers were written by a container's root user. Nothing is
//! followed: entries are inspected with `fstatat(AT_SYMLINK_NOFOLLOW)`
//! relative to open directory descriptors, directories and files are opened
//! with `O_NOFOLLOW` and checked to be the inode inspected, attributes are
//! read through `/proc/self/fd/N/NAME` with the l*xattr calls, and device
//! nodes, fifos and sockets are never opened. A path is looked up one name
//! at a time from the root of the view ([`Tree::find`]): `..` is refused,
//! and a symlink on the way is an error, never a way elsewhere. Only the
//! layer paths given are trusted.
//!
//! Cost: looking a path up holds one directory per layer per level of that
//! path and reads nothing else; listing a directory reads the directories
//! of its stack only.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use serde::Serialize;

use crate::dir::RelPath;
use crate::error::{Error, ErrorKind, Result};

/// What a container sees: layer directories, top first. For an overlay
/// snapshot `[<snapshot>/private/delta, lowers...]`, for a running or
/// stopped overlay container `[its delta, lowers...]`, for a directory-backed
/// one `[rootfs]`.
#[derive(Debug)]
pub struct View {
    pub layers: Vec<PathBuf>,
    /// The layers, held open, when the caller has them so.
    pub(crate) held: Vec<crate::dir::Dir>,
    /// The overlay keeps its attributes in `user.overlay.*` (mounted with
    /// `userxattr`) rather than `trusted.overlay.*`.
    pub userxattr: bool,
}

impl View {
    /// A directory-backed root filesystem: one plain tree.
    pub fn dir(rootfs: impl Into<PathBuf>) -> View {
        View {
            layers: vec![rootfs.into()],
            held: Vec::new(),
            userxattr: false,
        }
    }

    /// Layers held open, top first: one is a plain tree, several an overlay.
    pub fn of_dirs(layers: Vec<crate::dir::Dir>) -> View {
        View {
            layers: layers.iter().map(|d| d.path().to_path_buf()).collect(),
            held: layers,
            userxattr: false,
        }
    }

    /// An overlay: `upper` over `lowers` (top first).
    pub fn overlay(upper: impl Into<PathBuf>, lowers: &[PathBuf]) -> View {
        let mut layers = vec![upper.into()];
        layers.extend(lowers.iter().cloned());
        View {
            layers,
            held: Vec::new(),
            userxattr: false,
        }
    }
}

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    File,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryType {
    pub fn name(self) -> &'static str {
        match self {
            EntryType::File => "file",
            EntryType::Directory => "directory",
            EntryType::Symlink => "symlink",
            EntryType::Fifo => "fifo",
            EntryType::Socket => "socket",
            EntryType::CharDevice => "char device",
            EntryType::BlockDevice => "block device",
        }
    }
}

/// How one view is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Side {
    pub(crate) overlay: bool,
    /// `trusted.overlay.` or `user.overlay.`.
    pub(crate) private: &'static str,
}

impl Side {
    pub(crate) fn of(view: &View) -> Side {
        Side {
            overlay: view.layers.len() > 1,
            private: if view.userxattr {
                "user.overlay."
            } else {
                "trusted.overlay."
            },
        }
    }

    pub(crate) fn attr(&self, name: &str) -> OsString {
        OsString::from(format!("{}{name}", self.private))
    }
}

/// One layer's directory at some path of a view.
pub(crate) struct LayerDir {
    pub(crate) fd: File,
    pub(crate) id: (u64, u64),
    /// Which of the view's layers it is in (0 the top one).
    pub(crate) layer: usize,
    /// Where it is on the host, for messages: its layer's root and its
    /// path below it (one name a level, shared).
    pub(crate) root: Arc<Path>,
    pub(crate) rel: RelPath,
    /// Hides the directories of the same name below it.
    pub(crate) opaque: bool,
    /// May hold whiteouts in the form of marked regular files.
    pub(crate) xwhiteouts: bool,
}

/// The layer directories that make up one directory of a view, top first,
/// already cut below an opaque one. Empty where the view has no directory.
pub(crate) type Stack = Vec<LayerDir>;

/// An entry a stack resolved a name to.
pub(crate) struct Found {
    /// Index in the stack of the layer it comes from.
    pub(crate) pos: usize,
    pub(crate) st: FileStat,
}

/// An entry addressed by name in an open directory; `.` is the directory.
#[derive(Clone, Copy)]
pub(crate) struct Loc<'a> {
    pub(crate) dir: &'a LayerDir,
    pub(crate) name: &'a OsStr,
}

impl LayerDir {
    pub(crate) fn path(&self) -> PathBuf {
        self.rel.under(&self.root)
    }
}

impl Loc<'_> {
    pub(crate) fn path(&self) -> PathBuf {
        if self.name == "." {
            self.dir.path()
        } else {
            self.dir.path().join(self.name)
        }
    }

    /// The entry itself for the l*xattr calls: `/proc/self/fd/N` pins the
    /// directory, and the last component is not followed.
    pub(crate) fn proc_path(&self) -> PathBuf {
        Path::new("/proc/self/fd")
            .join(self.dir.fd.as_raw_fd().to_string())
            .join(self.name)
    }
}

/// The roots of every layer: overlayfs merges them all, whatever their
/// `opaque` attribute says (only a child's stack is ever cut).
pub(crate) fn open_root(side: &Side, view: &View) -> Result<Stack> {
    if view.layers.is_empty() {
        return Err(Error::new(
            ErrorKind::Other,
            "comparing: a view without layers",
        ));
    }
    let mut stack = Vec::new();
    for (i, layer) in view.layers.iter().enumerate() {
        // Held by the caller, or named by it and trusted up to its last
        // component, which must be a directory and is not followed.
        let opened;
        let dir = match view.held.get(i) {
            Some(dir) => dir,
            None => {
                opened = crate::dir::Dir::open_given(layer, "comparing")?;
                &opened
            }
        };
        let fd = dir
            .file()
            .try_clone()
            .map_err(|e| Error::io("opening", layer, e))?;
        let st = stat::fstat(fd.as_raw_fd()).map_err(|e| Error::sys("inspecting", layer, e))?;
        stack.push(layer_dir(
            side,
            fd,
            &st,
            i,
            Arc::from(layer.as_path()),
            RelPath::root(),
        )?);
    }
    Ok(stack)
}

/// Resolves `name` in a merged directory; `None` when no layer has it or a
/// whiteout hides it.
pub(crate) fn lookup(side: &Side, stack: &[LayerDir], name: &OsStr) -> Result<Option<Found>> {
    for (pos, dir) in stack.iter().enumerate() {
        let st = match stat::fstatat(Some(dir.fd.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Listed but gone (a running container): as if never listed.
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Error::sys("inspecting", &dir.path().join(name), e)),
        };
        if side.overlay && is_whiteout(side, Loc { dir, name }, &st)? {
            return Ok(None);
        }
        return Ok(Some(Found { pos, st }));
    }
    Ok(None)
}

pub(crate) fn is_whiteout(side: &Side, loc: Loc, st: &FileStat) -> Result<bool> {
    Ok(match file_type(st) {
        SFlag::S_IFCHR => st.st_rdev == 0,
        SFlag::S_IFREG if st.st_size == 0 && loc.dir.xwhiteouts => {
            xattr::get(loc.proc_path(), side.attr("whiteout"))
                .map_err(|e| Error::io("reading extended attributes of", &loc.path(), e))?
                .is_some()
        }
        _ => false,
    })
}

/// The stack of the directory `found`: it and, unless it is opaque, the
/// directories of the same name below it down to the first layer where the
/// name is opaque, not a directory, or whited out.
pub(crate) fn child_stack(
    side: &Side,
    stack: &[LayerDir],
    found: &Found,
    name: &OsStr,
) -> Result<Stack> {
    let top = &stack[found.pos];
    let mut out = vec![open_dir(side, Some(top), name, &found.st)?];
    if !side.overlay || out[0].opaque {
        return Ok(out);
    }
    for dir in &stack[found.pos + 1..] {
        let st = match stat::fstatat(Some(dir.fd.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Error::sys("inspecting", &dir.path().join(name), e)),
        };
        if file_type(&st) != SFlag::S_IFDIR {
            break;
        }
        let below = open_dir(side, Some(dir), name, &st)?;
        let opaque = below.opaque;
        out.push(below);
        if opaque {
            break;
        }
    }
    Ok(out)
}

/// Opens a directory inspected as `st` without following anything, and
/// reads its overlay attributes.
pub(crate) fn open_dir(
    side: &Side,
    parent: Option<&LayerDir>,
    name: &OsStr,
    st: &FileStat,
) -> Result<LayerDir> {
    let (root, rel, layer) = match parent {
        Some(p) => (Arc::clone(&p.root), p.rel.child(name), p.layer),
        None => (Arc::from(Path::new(name)), RelPath::root(), 0),
    };
    let path = rel.under(&root);
    let fd = open_verified(parent.map(|p| &p.fd), name, st, OFlag::O_DIRECTORY, &path)?;
    layer_dir(side, fd, st, layer, root, rel)
}

/// A layer directory opened (and checked to be `st`) as `fd`, with its
/// overlay attributes read.
pub(crate) fn layer_dir(
    side: &Side,
    fd: File,
    st: &FileStat,
    layer: usize,
    root: Arc<Path>,
    rel: RelPath,
) -> Result<LayerDir> {
    let mut dir = LayerDir {
        fd,
        id: (st.st_dev, st.st_ino),
        layer,
        root,
        rel,
        opaque: false,
        xwhiteouts: false,
    };
    if side.overlay {
        let loc = Loc {
            dir: &dir,
            name: OsStr::new("."),
        };
        let err = |e| Error::io("reading extended attributes of", &dir.path(), e);
        for attr in ["redirect", "metacopy"] {
            if xattr::get(loc.proc_path(), side.attr(attr))
                .map_err(err)?
                .is_some()
            {
                return Err(not_self_contained(&dir.path(), &side.attr(attr)));
            }
        }
        let opaque = xattr::get(loc.proc_path(), side.attr("opaque")).map_err(err)?;
        dir.opaque = opaque.as_deref() == Some(b"y");
        dir.xwhiteouts = opaque.as_deref() == Some(b"x");
    }
    Ok(dir)
}

pub(crate) fn not_self_contained(path: &Path, attr: &OsStr) -> Error {
    Error::overlay_not_self_contained("comparing", path, attr)
}

/// Opens an entry read-only without following it or touching its atime,
/// and checks it is still the inode `st` describes.
pub(crate) fn open_verified(
    dir: Option<&File>,
    name: &OsStr,
    st: &FileStat,
    flags: OFlag,
    path: &Path,
) -> Result<File> {
    let flags = flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let open = |flags| {
        fcntl::openat(dir.map(|d| d.as_raw_fd()), name, flags, Mode::empty())
            // SAFETY: openat just returned this descriptor and nothing else owns it.
            .map(|fd| unsafe { File::from_raw_fd(fd) })
    };
    // O_NOATIME is refused (EPERM) on inodes we do not own without CAP_FOWNER.
    let file = match open(flags | OFlag::O_NOATIME) {
        Err(Errno::EPERM) => open(flags),
        other => other,
    }
    .map_err(|e| Error::sys("opening", path, e))?;
    let now = stat::fstat(file.as_raw_fd()).map_err(|e| Error::sys("inspecting", path, e))?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) || file_type(&now) != file_type(st) {
        return Err(Error::new(
            ErrorKind::Other,
            format!("comparing {}: changed while being compared", path.display()),
        ));
    }
    Ok(file)
}

pub(crate) fn fstat(dir: &LayerDir) -> Result<FileStat> {
    stat::fstat(dir.fd.as_raw_fd()).map_err(|e| Error::sys("inspecting", &dir.path(), e))
}

/// Adds the names in `dir` to `names`.
pub(crate) fn list_dir(dir: &LayerDir, names: &mut BTreeSet<OsString>) -> Result<()> {
    let found = crate::dir::list_names(&dir.fd)
        .map_err(|e| Error::sys("reading directory", &dir.path(), e))?;
    names.extend(found);
    Ok(())
}

pub(crate) fn read_link(loc: Loc) -> Result<OsString> {
    fcntl::readlinkat(Some(loc.dir.fd.as_raw_fd()), loc.name)
        .map_err(|e| Error::sys("reading link", &loc.path(), e))
}

/// The entry's extended attributes but the overlay's own, sorted.
pub(crate) fn read_xattrs(side: &Side, loc: Loc) -> Result<Vec<(OsString, Vec<u8>)>> {
    let err = |e| Error::io("reading extended attributes of", &loc.path(), e);
    let p = loc.proc_path();
    let mut out = Vec::new();
    for name in xattr::list(&p).map_err(err)? {
        if side.overlay && name.as_bytes().starts_with(side.private.as_bytes()) {
            if [side.attr("redirect"), side.attr("metacopy")].contains(&name) {
                return Err(not_self_contained(&loc.path(), &name));
            }
            continue;
        }
        // None: removed since it was listed.
        if let Some(value) = xattr::get(&p, &name).map_err(err)? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

pub(crate) fn entry_type(st: &FileStat, path: &Path) -> Result<EntryType> {
    Ok(match file_type(st) {
        SFlag::S_IFREG => EntryType::File,
        SFlag::S_IFDIR => EntryType::Directory,
        SFlag::S_IFLNK => EntryType::Symlink,
        SFlag::S_IFIFO => EntryType::Fifo,
        SFlag::S_IFSOCK => EntryType::Socket,
        SFlag::S_IFCHR => EntryType::CharDevice,
        SFlag::S_IFBLK => EntryType::BlockDevice,
        _ => {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "comparing {}: unknown file type {:o}",
                    path.display(),
                    st.st_mode
                ),
            ))
        }
    })
}

/// A view opened for looking paths up.
pub struct Tree {
    side: Side,
    root: Arc<Stack>,
}

/// An entry of a view, found by its path.
pub struct Entry {
    side: Side,
    /// The merged directory holding it; for the root, the root's layers.
    pub(crate) parent: Arc<Stack>,
    /// Its name there; `.` for the root.
    pub(crate) name: OsString,
    pub(crate) found: Found,
    /// Its path in the view: `/` and the names on the way, raw bytes.
    pub path: Vec<u8>,
    pub kind: EntryType,
}

/// What looking a path up found.
pub enum Lookup {
    Found(Entry),
    /// Nothing has that path (or a whiteout hides it).
    Missing,
    /// An entry on the way is not a directory, so the path leads nowhere:
    /// a symlink there is not followed.
    Through(Entry),
}

impl Tree {
    /// Opens the layers of `view`.
    pub fn open(view: &View) -> Result<Tree> {
        let side = Side::of(view);
        Ok(Tree {
            side,
            root: Arc::new(open_root(&side, view)?),
        })
    }

    /// The root directory.
    pub fn root(&self) -> Result<Entry> {
        let st = fstat(&self.root[0])?;
        Ok(Entry {
            side: self.side,
            parent: Arc::clone(&self.root),
            name: OsString::from("."),
            found: Found { pos: 0, st },
            path: b"/".to_vec(),
            kind: EntryType::Directory,
        })
    }

    /// Looks `names` up from the root, one at a time (see [`parse_path`]).
    pub fn find(&self, names: &[&OsStr]) -> Result<Lookup> {
        let mut at = self.root()?;
        for name in names {
            if at.kind != EntryType::Directory {
                return Ok(Lookup::Through(at));
            }
            at = match at.child(name)? {
                Some(child) => child,
                None => return Ok(Lookup::Missing),
            };
        }
        Ok(Lookup::Found(at))
    }
}

/// Splits a path in a view into its names: empty names and `.` are
/// dropped, so `/etc//hosts`, `etc/hosts` and `/./etc/hosts` are the same
/// path; `..` is refused (`None`): a path names one entry of the view and
/// never leads above one.
pub fn parse_path(path: &[u8]) -> Option<Vec<&OsStr>> {
    let mut names = Vec::new();
    for name in path.split(|&b| b == b'/') {
        match name {
            b"" | b"." => {}
            b".." => return None,
            name => names.push(OsStr::from_bytes(name)),
        }
    }
    Some(names)
}

impl Entry {
    pub fn stat(&self) -> &FileStat {
        &self.found.st
    }

    /// The entry's name in its directory (`/` for the root).
    pub fn name(&self) -> &OsStr {
        if self.is_root() {
            OsStr::new("/")
        } else {
            &self.name
        }
    }

    pub fn is_root(&self) -> bool {
        self.name == "."
    }

    /// Where the entry is on the host, for messages.
    pub fn host_path(&self) -> PathBuf {
        self.loc().path()
    }

    /// The index, in the view's layers, of the layer it comes from.
    pub fn layer(&self) -> usize {
        self.parent[self.found.pos].layer
    }

    fn loc(&self) -> Loc<'_> {
        Loc {
            dir: &self.parent[self.found.pos],
            name: &self.name,
        }
    }

    /// A symlink's target, byte for byte.
    pub fn target(&self) -> Result<OsString> {
        read_link(self.loc())
    }

    /// The entry's extended attributes but the overlay's own, sorted.
    pub fn xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        read_xattrs(&self.side, self.loc())
    }

    /// Opens a regular file for reading, checked to be the inode found.
    pub fn open_file(&self) -> Result<File> {
        if self.kind != EntryType::File {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "reading {}: is a {}, not a regular file",
                    self.host_path().display(),
                    self.kind.name()
                ),
            ));
        }
        let dir = &self.parent[self.found.pos];
        let flags = OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        open_verified(
            Some(&dir.fd),
            &self.name,
            &self.found.st,
            flags,
            &self.host_path(),
        )
    }

    /// The layer directories this directory is made of, top first.
    pub(crate) fn stack(&self) -> Result<Stack> {
        if self.is_root() {
            self.parent.iter().map(LayerDir::try_clone).collect()
        } else {
            child_stack(&self.side, &self.parent, &self.found, &self.name)
        }
    }

    /// Whether this directory merges with directories below it (what an
    /// opaque marker in its top layer would stop).
    pub fn merges(&self) -> Result<bool> {
        Ok(self.kind == EntryType::Directory && self.stack()?.len() > 1)
    }

    /// The entry `name` of this directory as the view would show it if
    /// the view's top layer had no entry of that name.
    pub fn child_below_top(&self, name: &OsStr) -> Result<Option<Entry>> {
        let mut stack = self.stack()?;
        if stack.first().is_some_and(|d| d.layer == 0) {
            stack.remove(0);
        }
        let stack = Arc::new(stack);
        match lookup(&self.side, &stack, name)? {
            Some(found) => Ok(Some(self.entry_in(&stack, name.to_os_string(), found)?)),
            None => Ok(None),
        }
    }

    /// Whether two entries (of two views) are the very same: one inode,
    /// or for directories the same layer directories merged.
    pub fn same_as(&self, other: &Entry) -> Result<bool> {
        let st = (self.found.st.st_dev, self.found.st.st_ino);
        let theirs = (other.found.st.st_dev, other.found.st.st_ino);
        if self.kind != EntryType::Directory || other.kind != EntryType::Directory {
            return Ok(st == theirs && self.kind == other.kind);
        }
        let ids = |e: &Entry| -> Result<Vec<(u64, u64)>> {
            Ok(e.stack()?.iter().map(|d| d.id).collect())
        };
        Ok(self.side == other.side && ids(self)? == ids(other)?)
    }

    pub(crate) fn side(&self) -> Side {
        self.side
    }

    /// The entries of a directory, sorted by the bytes of their names.
    pub fn children(&self) -> Result<Vec<Entry>> {
        let stack = Arc::new(self.stack()?);
        let mut names = BTreeSet::new();
        for dir in stack.iter() {
            list_dir(dir, &mut names)?;
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(found) = lookup(&self.side, &stack, &name)? {
                out.push(self.entry_in(&stack, name, found)?);
            }
        }
        Ok(out)
    }

    /// The entry `name` of this directory, if the view has one.
    pub fn child(&self, name: &OsStr) -> Result<Option<Entry>> {
        let stack = Arc::new(self.stack()?);
        match lookup(&self.side, &stack, name)? {
            Some(found) => Ok(Some(self.entry_in(&stack, name.to_os_string(), found)?)),
            None => Ok(None),
        }
    }

    fn entry_in(&self, stack: &Arc<Stack>, name: OsString, found: Found) -> Result<Entry> {
        let mut path = self.path.clone();
        if !self.is_root() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        let kind = entry_type(&found.st, &stack[found.pos].path().join(&name))?;
        Ok(Entry {
            side: self.side,
            parent: Arc::clone(stack),
            name,
            found,
            path,
            kind,
        })
    }
}

impl LayerDir {
    pub(crate) fn try_clone(&self) -> Result<LayerDir> {
        Ok(LayerDir {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| Error::io("opening", &self.path(), e))?,
            id: self.id,
            layer: self.layer,
            root: Arc::clone(&self.root),
            rel: self.rel.clone(),
            opaque: self.opaque,
            xwhiteouts: self.xwhiteouts,
        })
    }
}
