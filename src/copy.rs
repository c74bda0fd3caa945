//! The tree copier: copies a directory tree that a container's root user wrote
//! into a new tree, running as host root, without trusting anything in it.
//!
//! Invariants:
//! - Preserves, for every entry: its type (directory, regular file, symlink,
//!   fifo, socket, character or block device), numeric uid and gid, the full
//!   mode including setuid, setgid and sticky bits, every extended attribute
//!   in every namespace (`trusted.*`, `security.*` including
//!   `security.capability`, `user.*`, POSIX ACLs; symlinks' own too), atime
//!   and mtime to the nanosecond; file contents with their holes; symlink
//!   targets byte for byte; device numbers; hard links between names inside
//!   the tree. The root of the copy gets the source root's metadata too.
//!   Not preserved: ctime and birth time (the kernel sets them) and inode
//!   flags such as immutable (`chattr`).
//! - Never follows a symlink in the source and never writes through one in
//!   the destination: every entry is addressed by name relative to an open
//!   directory, opened with `O_NOFOLLOW` and checked after opening to be the
//!   inode that was inspected. Device nodes, fifos and sockets are never
//!   opened, nor are files linked to the reference (below). Nothing
//!   outside `src` is read and nothing outside `dst` written.
//!   Reading leaves source atimes alone (`O_NOATIME`), except that the
//!   kernel may stamp a symlink's atime when it is read; the copy gets the
//!   atime from before, and with [`CopyOptions::keep_link_atimes`] the
//!   source gets it back. (Root may always use `O_NOATIME`; a caller without
//!   `CAP_FOWNER` stops asking for it at the first refusal.)
//! - Never crosses into another mount below `src`: a mounted-on directory is
//!   copied empty with the mount root's owner, mode and times and listed in
//!   [`CopyStats::skipped_mounts`]; a mounted-on file is left out and listed.
//! - Overlay whiteouts (0/0 character devices) are always created fresh,
//!   never hard-linked: the kernel links them to a shared inode in the
//!   overlay's work directory, outside the tree.
//! - Refuses ([`ErrorKind::Unsupported`]) any entry carrying an overlay
//!   `redirect` or `metacopy` attribute: such a layer is not self-contained.
//!   Also refuses a `src` that is not a real directory (a symlink to one is
//!   not followed), a `dst` that exists ([`ErrorKind::Exists`]), and a `dst`
//!   inside `src`.
//! - With [`CopyOptions::select`], an entry it leaves out is never looked
//!   at, nor anything below it; a directory it descends into is copied
//!   with its metadata, its entries each asked about in turn.
//! - With [`CopyOptions::merge`], `dst` and directories below it may
//!   exist: each is opened without following a symlink (anything else in
//!   the way fails the copy, as does any other name that exists), and gets
//!   the source's owner, mode, times and attributes, losing those the
//!   source lacks except the overlay `opaque` one. New entries in them get
//!   their owner and mode set outright, whatever the kernel gave them.
//! - A directory gets its metadata only once every entry in it exists, so
//!   creating them cannot move its times, and stays private (0700, root's)
//!   until then.
//! - Holds one directory descriptor per level on each side (and in the
//!   reference) and walks with an explicit stack, so depth is bounded by the
//!   open-file limit (raised to the hard limit when needed), not by the
//!   thread's stack. Besides, each queued file holds its directory's
//!   descriptors; the queue is short.
//!
//! With a reference ([`CopyOptions::reference`], an older copy of the same
//! tree), a regular file may instead become a hard link to its copy there:
//! - Only a regular file (of a file with several names in the source, the
//!   first name copied; the others are linked to it as always), and only to
//!   a regular file at the same relative path in the reference, found
//!   descriptor-relative without following any symlink and without leaving
//!   the reference's mount, equal in type and mode, uid and gid, extended
//!   attributes (names and values), size, and either mtime to the
//!   nanosecond ([`Compare::QuickCheck`]) or contents byte for byte
//!   ([`Compare::Checksum`]).
//! - Each reference inode is linked from at most one source inode per
//!   copy, so the copy has a hard link between two names exactly when the
//!   source has; and only while it has room (`LINK_MAX`) for all the
//!   source inode's names, so the names linked after the first never run
//!   out.
//! - Never shared: directories, symlinks, devices, fifos, sockets and
//!   whiteouts (always created). A linked inode is never written to, so it
//!   keeps the reference's atime, the one field the check ignores.
//! - The reference is opened like `src` (a symlink there is refused) and
//!   may not be `src` itself, whose files change after the copy.
//! - With the quick check, neither the source file nor its copy in the
//!   reference is opened: both are inspected by name (`statx`, attribute
//!   lists by name, neither following a symlink) and the reference's entry
//!   is linked by name, which never follows it either. The reference is a
//!   snapshot: private to root and never written, so it cannot change in
//!   between.
//! - The stats say what linking did to the reference's sizes: the
//!   allocated bytes of linked inodes that had a single name (the reference
//!   held them alone), and the linked inodes that had several, with their
//!   name counts; and, for the copy itself, which of its inodes have
//!   several names in it. With that record of the reference, whether it
//!   held a linked inode alone needs no walk.
//!
//! File contents move, fastest first: a whole-file clone (`FICLONE`, shared
//! extents) where the filesystem can; else `copy_file_range` over the data
//! segments (found with `SEEK_DATA`/`SEEK_HOLE` only for files that have
//! holes); else `read`/`write`. Where the filesystems clone, small files
//! are cloned too (a written copy would still cost its writeback in the
//! caller's final sync); elsewhere files under 64 KiB are read and written
//! outright, cheaper than `copy_file_range` for them. A method the
//! filesystems refuse is not tried again in the same copy. One
//! thread walks the tree and creates directories, symlinks and devices; two
//! others copy regular files, handed to them in batches.
//!
//! Files of 1 MiB and more are sent to disk (`sync_file_range`, without
//! waiting) as soon as they are written, so that the caller's final sync,
//! which makes the copy durable, overlaps with the copy.
//!
//! On error the partly written `dst` is left for the caller to remove.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::dir::{Dir as DirStream, Type};
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::stat::{self, FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, Whence};
use xattr::FileExt as _;

use crate::dir::{open_at, open_rel, Dir, RelPath};
use crate::{Error, ErrorKind, Result};

mod layer;
pub use layer::{
    flatten, flatten_at, make_layer, make_layer_at, plan as plan_layer, plan_at as plan_layer_at,
    LayerPlan, Plan,
};

/// What a copy produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyStats {
    /// Every entry created below the root (a hard link counts once per name).
    pub entries: u64,
    /// Sum of the apparent sizes of regular files, each inode once, linked
    /// ones included.
    pub bytes: u64,
    /// Regular files hard-linked to their unchanged copy in the reference.
    pub linked: u64,
    /// Sum of the apparent sizes of the linked files.
    pub linked_bytes: u64,
    /// Inodes of the copy with several names in it, as (inode number,
    /// names in the copy), sorted.
    pub multi_name_inodes: Vec<(u64, u64)>,
    /// Allocated bytes (`st_blocks`) of the inodes this copy created, each
    /// once: what removing the copy frees, as long as nothing else links
    /// to them.
    pub created_bytes: u64,
    /// Allocated bytes of the reference inodes linked into the copy that
    /// had a single name before: the reference held them alone, now it
    /// shares them.
    pub reference_unshared_bytes: u64,
    /// Reference inodes linked into the copy that already had several
    /// names, as (inode number, names before, allocated bytes), sorted:
    /// the reference held one alone if all those names are in it.
    pub reference_multi_linked: Vec<(u64, u64, u64)>,
    /// Source paths of mount points below `src` that were not crossed:
    /// directories were created empty, anything else was left out. Sorted.
    pub skipped_mounts: Vec<PathBuf>,
}

/// How a file is judged unchanged from its copy in the reference.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Same size and mtime (rsync's quick check). Cheap, but trusts mtimes:
    /// a file rewritten in place whose mtime was put back is taken as
    /// unchanged, and its stale copy is shared.
    #[default]
    QuickCheck,
    /// Same contents, read and compared byte for byte: catches what the
    /// quick check misses, at the price of reading both files.
    Checksum,
}

/// How to copy; the default is a full, fresh copy.
#[derive(Clone, Copy, Default)]
pub struct CopyOptions<'a> {
    /// A previous copy of the same tree (an older snapshot): an unchanged regular file is hard-linked to
    /// its copy there instead of copied. Snapshots are immutable, so sharing inodes is safe.
    pub reference: Option<&'a Dir>,
    /// How an unchanged file is recognised; only used with a reference.
    pub compare: Compare,
    /// Called now and then with bytes done so far (for a progress bar); may be None.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Which entries to copy (the root itself always is); None copies
    /// everything.
    pub select: Option<&'a Selection>,
    /// Puts back the atime of every symlink read in `src`, which reading
    /// may move: for sources that must stay as they are (snapshots).
    pub keep_link_atimes: bool,
    /// Copy into `dst` even if it exists: an existing directory of the
    /// same name is reused and gets the source's metadata, keeping only its
    /// overlay `opaque` attribute; anything else must not exist yet.
    pub merge: bool,
}

/// What [`CopyOptions::select`] says about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// Copy it, and everything below it.
    All,
    /// A directory: copy it, and ask about each of its entries.
    Descend,
    /// Leave it (and everything below it) out.
    Skip,
}

/// Which entries a copy takes, as a tree of names: each directory it
/// descends into says what becomes of each of its entries, listed by
/// name or not. Looking an entry up costs one lookup in its directory's
/// node, whatever the depth, and the tree holds one name a node.
#[derive(Debug, Clone)]
pub struct Selection {
    nodes: Vec<SelectNode>,
}

#[derive(Debug, Clone)]
struct SelectNode {
    what: Select,
    /// For entries of a directory (`Descend`) not listed in `children`.
    unlisted: Select,
    children: HashMap<OsString, usize>,
}

impl Selection {
    /// Descends into the root, doing `unlisted` with every entry not
    /// listed by [`Selection::set`].
    pub fn new(unlisted: Select) -> Selection {
        Selection {
            nodes: vec![SelectNode {
                what: Select::Descend,
                unlisted,
                children: HashMap::new(),
            }],
        }
    }

    /// Says `what` to do with the entry at `names` below the root. The
    /// directories on the way are descended into, doing `unlisted` with
    /// their other entries (unless they were set already); so is the entry
    /// itself when `what` is `Descend`. `All` wins over `Descend`.
    pub fn set(&mut self, names: &[&OsStr], what: Select, unlisted: Select) {
        let mut node = 0;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            node = match self.nodes[node].children.get(*name) {
                Some(&child) => child,
                None => {
                    self.nodes.push(SelectNode {
                        what: Select::Descend,
                        unlisted,
                        children: HashMap::new(),
                    });
                    let child = self.nodes.len() - 1;
                    self.nodes[node].children.insert(name.to_os_string(), child);
                    child
                }
            };
            if last {
                let n = &mut self.nodes[node];
                n.what = match (n.what, what) {
                    (Select::All, _) | (_, Select::All) => Select::All,
                    (_, w) => w,
                };
            }
        }
    }

    /// What to do with `name` in the directory `node`, and its own node
    /// when it is listed.
    fn lookup(&self, node: usize, name: &OsStr) -> (Select, Option<usize>) {
        let n = &self.nodes[node];
        match n.children.get(name) {
            Some(&child) => (self.nodes[child].what, Some(child)),
            None => (n.unlisted, None),
        }
    }

    /// Whether the directory at `names` is descended into.
    pub fn descends(&self, names: &[&OsStr]) -> bool {
        let mut node = 0;
        for name in names {
            match self.nodes[node].children.get(*name) {
                Some(&child) => node = child,
                None => return false,
            }
        }
        self.nodes[node].what == Select::Descend
    }
}

/// Copies the directory tree `src` to `dst` (which must not exist; its parent
/// must), with full fidelity. The root `dst` gets src's owner, mode, xattrs
/// and times. See the module documentation for what is guaranteed.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats> {
    copy_tree_with(src, dst, &CopyOptions::default())
}

/// [`copy_tree`], sharing unchanged files with a reference copy and
/// reporting progress as `opts` say.
pub fn copy_tree_with(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats> {
    copy_tree_by(src, dst, opts, DataPath::Auto)
}

/// [`copy_tree_with`] for trees held open: copies `src` to a new
/// directory `dst_name` in `dst_parent`.
pub fn copy_dir(
    src: &Dir,
    dst_parent: &Dir,
    dst_name: &OsStr,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    copy_dir_by(src, dst_parent, dst_name, opts, DataPath::Auto)
}

/// Opens the directories a path-based call names: `src` and the parent of
/// `dst`, each trusted by the caller up to its last component.
fn open_src_and_dst_parent<'d>(src: &Path, dst: &'d Path) -> Result<(Dir, Dir, &'d OsStr)> {
    let src = Dir::open_given(src, "copying")?;
    let (Some(parent), Some(name)) = (dst.parent(), dst.file_name()) else {
        return Err(Error::new(
            ErrorKind::Other,
            format!("creating {}: not a name for a new directory", dst.display()),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent = Dir::open_given(parent, "opening")?;
    Ok((src, parent, name))
}

/// How file contents are moved. Everything but the tests uses `Auto`; the
/// others force one way, with no fallback, failing where it is impossible.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    Auto,
    Clone,
    CopyFileRange,
    ReadWrite,
}

/// [`copy_tree_with`], moving file contents only as `path` says.
#[doc(hidden)]
pub fn copy_tree_by(
    src: &Path,
    dst: &Path,
    opts: &CopyOptions,
    path: DataPath,
) -> Result<CopyStats> {
    let (src, parent, name) = open_src_and_dst_parent(src, dst)?;
    copy_dir_by(&src, &parent, name, opts, path)
}

/// [`copy_dir`], moving file contents only as `path` says.
fn copy_dir_by(
    src_root: &Dir,
    dst_parent: &Dir,
    dst_name: &OsStr,
    opts: &CopyOptions,
    path: DataPath,
) -> Result<CopyStats> {
    let noatime = AtomicBool::new(true);
    let src = src_root.path();
    let dst = &dst_parent.join(dst_name);
    let (src_dir, src_st, src_mount) = held(src_root)?;
    let xattrs = read_xattrs(Node::Fd(&src_dir), src)?;
    refuse_redirects(&xattrs, src)?;
    let names = list_dir(&src_dir, src)?;
    let reference = match opts.reference {
        Some(r) => {
            let (dir, st, mount) = held(r)?;
            if (st.st_dev, st.st_ino) == (src_st.st_dev, src_st.st_ino) {
                // Its files change: sharing them would change the copy.
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "using reference {}: is the source itself",
                        r.path().display()
                    ),
                ));
            }
            Some((dir, (st.st_dev, mount)))
        }
        None => None,
    };
    let (dst_dir, dst_existed) = create_dest_root(dst_parent, dst_name, opts.merge)?;
    let dst_st = stat::fstat(dst_dir.as_raw_fd()).map_err(|e| Error::sys("inspecting", dst, e))?;
    // Directories that existed before keep their own modes and groups, so
    // what the kernel gives new entries in them is not known.
    let (create_umask, created_as) = if opts.merge {
        (None, None)
    } else {
        (creation_umask(&dst_dir), creation_owner(&dst_st))
    };
    let fd_limits = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((u64::MAX, u64::MAX));
    let copier = Copier {
        src_root: src.to_path_buf(),
        dst_root_path: dst.to_path_buf(),
        root: (src_st.st_dev, src_mount),
        dst_root: dst_dir
            .try_clone()
            .map_err(|e| Error::io("opening", dst, e))?,
        dst_root_id: (dst_st.st_dev, dst_st.st_ino),
        reference_root: reference.as_ref().map(|(_, root)| *root),
        compare: opts.compare,
        data: DataCopier::new(path),
        create_umask,
        created_as,
        progress: opts.progress,
        select: opts.select,
        merge: opts.merge,
        keep_link_atimes: opts.keep_link_atimes,
        can_link_reference: AtomicBool::new(true),
        link_max: link_max(&dst_dir),
        noatime,
        links: Mutex::default(),
        reference_used: Mutex::default(),
        entries: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        linked: AtomicU64::new(0),
        linked_bytes: AtomicU64::new(0),
        created_bytes: AtomicU64::new(0),
        reference_unshared_bytes: AtomicU64::new(0),
        reference_multi_linked: Mutex::default(),
        multi_name_inodes: Mutex::default(),
        reported: Mutex::new(0),
        skipped_mounts: Mutex::default(),
        error: Mutex::default(),
        failed: AtomicBool::new(false),
        fd_soft_limit: AtomicU64::new(fd_limits.0),
        fd_hard_limit: fd_limits.1,
    };
    let root = Level {
        dir: Arc::new(DirCopy {
            src: src_dir,
            dst: dst_dir,
            reference: reference.map(|(dir, _)| dir),
            rel: RelPath::root(),
            st: src_st,
            xattrs,
            sel: opts.select.map(|_| 0),
            existing: dst_existed,
            pending: AtomicUsize::new(1),
        }),
        names,
    };
    copier.run(root)?;
    let mut skipped_mounts = copier
        .skipped_mounts
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    skipped_mounts.sort();
    Ok(CopyStats {
        entries: copier.entries.into_inner(),
        bytes: copier.bytes.into_inner(),
        linked: copier.linked.into_inner(),
        linked_bytes: copier.linked_bytes.into_inner(),
        created_bytes: copier.created_bytes.into_inner(),
        reference_unshared_bytes: copier.reference_unshared_bytes.into_inner(),
        reference_multi_linked: sorted(copier.reference_multi_linked),
        multi_name_inodes: sorted(copier.multi_name_inodes),
        skipped_mounts,
    })
}

type Xattrs = Vec<(OsString, Vec<u8>)>;

const CAPABILITY: &str = "security.capability";
const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";

/// Attributes that make an overlay layer depend on the layers below it.
const NOT_SELF_CONTAINED: [&str; 4] = [
    "trusted.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.redirect",
    "user.overlay.metacopy",
];

const DIR: OFlag = OFlag::O_DIRECTORY;
/// Opening a regular file this way never blocks, even if it was swapped
/// for a fifo, and never makes a terminal ours.
const FILE: OFlag = OFlag::O_NOCTTY.union(OFlag::O_NONBLOCK);

/// Descriptors kept free for everything but the directory stack and queue.
const FD_RESERVE: u64 = 64;

/// Batches of regular files waiting for a copying thread. Enough to keep
/// them busy while the walker creates a directory; each holds its
/// directory open.
const QUEUE: usize = 64;

/// Regular files in one batch.
const BATCH: usize = 32;

/// Threads copying regular files, besides the walker.
const MAX_WORKERS: usize = 2;

/// Progress is reported each time this many more bytes are done.
const PROGRESS_STEP: u64 = 4 << 20;

/// Files (and data segments) below this size are read and written, never
/// cloned or copied in the kernel.
const SMALL_FILE: i64 = 64 << 10;

/// Files from this size on are sent to disk as soon as they are written,
/// so the caller's final sync has less left to wait for.
const EARLY_WRITEBACK: i64 = 1 << 20;

/// Chunk for reading and writing, and for comparing contents.
const BUF_SIZE: usize = 128 << 10;

/// A directory being copied, shared by the walker and the files in it
/// still being copied.
struct DirCopy {
    src: File,
    dst: File,
    /// The directory at the same place in the reference tree, if any.
    reference: Option<File>,
    /// Where it is below the roots: one name, shared with its parent's.
    rel: RelPath,
    st: FileStat,
    xattrs: Xattrs,
    /// Its node in [`CopyOptions::select`], when its entries are copied
    /// only as that says.
    sel: Option<usize>,
    /// `dst` existed before the copy (merging).
    existing: bool,
    /// Entries of `dst` that copying threads are still creating, plus one
    /// while the walker has names left: the directory gets its metadata
    /// when this drops to zero.
    pending: AtomicUsize,
}

/// The first copy of a source inode with several names.
struct FirstCopy {
    dir: RelPath,
    name: OsString,
    /// Names of the source inode not linked yet.
    left: u64,
}

impl DirCopy {
    fn src_path(&self, c: &Copier) -> PathBuf {
        self.rel.under(&c.src_root)
    }

    fn dst_path(&self, c: &Copier) -> PathBuf {
        self.rel.under(&c.dst_root_path)
    }
}

/// A directory on the walker's stack: its entries still to do.
struct Level {
    dir: Arc<DirCopy>,
    names: Vec<(OsString, Option<Type>)>,
}

/// Regular files (by their directory entries' type) for a copying thread.
struct FileTask {
    dir: Arc<DirCopy>,
    names: Vec<OsString>,
}

/// What every thread of one copy shares.
struct Copier<'a> {
    /// The roots' paths, for messages.
    src_root: PathBuf,
    dst_root_path: PathBuf,
    /// (st_dev, mount id) of `src`.
    root: (u64, Option<u64>),
    dst_root: File,
    dst_root_id: (u64, u64),
    /// (st_dev, mount id) of the reference.
    reference_root: Option<(u64, Option<u64>)>,
    compare: Compare,
    data: DataCopier,
    /// The owner every entry the copy creates gets from the kernel, when
    /// that is certain: setting the same owner again is skipped.
    created_as: Option<(u32, u32)>,
    /// The umask, if a file created with mode `m` gets exactly `m & !umask`
    /// (no default ACL at the destination decides instead).
    create_umask: Option<u32>,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
    select: Option<&'a Selection>,
    merge: bool,
    keep_link_atimes: bool,
    /// Cleared for good once the filesystems refuse it.
    can_link_reference: AtomicBool,
    /// Names an inode may have on the destination's filesystem.
    link_max: u64,
    noatime: AtomicBool,
    /// (dev, ino) of multiply-linked source inodes -> their first copy
    /// (its directory and name) and how many names are still to link.
    /// Held while such a first copy is made, so no name links to a file
    /// not yet complete.
    links: Mutex<HashMap<(u64, u64), FirstCopy>>,
    /// (dev, ino) of reference inodes linked into the copy.
    reference_used: Mutex<HashSet<(u64, u64)>>,
    entries: AtomicU64,
    bytes: AtomicU64,
    linked: AtomicU64,
    linked_bytes: AtomicU64,
    created_bytes: AtomicU64,
    reference_unshared_bytes: AtomicU64,
    reference_multi_linked: Mutex<Vec<(u64, u64, u64)>>,
    /// Inode number in the copy -> its names there, for inodes with several.
    multi_name_inodes: Mutex<HashMap<u64, u64>>,
    /// Bytes last reported to `progress`.
    reported: Mutex<u64>,
    skipped_mounts: Mutex<Vec<PathBuf>>,
    /// The first failure; everything stops soon after it.
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    fd_soft_limit: AtomicU64,
    fd_hard_limit: u64,
}

/// An entry, by its own descriptor or by name in an open directory.
#[derive(Clone, Copy)]
enum Node<'a> {
    Fd(&'a File),
    At(&'a File, &'a OsStr),
}

/// Addresses an entry itself without following it: the l*xattr calls do
/// not follow the last component, and `/proc/self/fd/N` pins the directory
/// so no earlier component can be swapped.
fn proc_path(dir: &File, name: &OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Copier<'_> {
    /// Walks on this thread while the workers copy regular files; returns
    /// the first failure of any of them.
    fn run(&self, root: Level) -> Result<()> {
        let (queue, tasks) = mpsc::sync_channel::<FileTask>(QUEUE);
        // Shared by the workers only: if they all die, sending fails
        // instead of blocking for ever.
        let tasks = Arc::new(Mutex::new(tasks));
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS));
        std::thread::scope(|scope| {
            let mut started = 0;
            for _ in 0..workers {
                let tasks = Arc::clone(&tasks);
                let spawned = std::thread::Builder::new()
                    .name("copy".into())
                    .spawn_scoped(scope, move || self.work(&tasks));
                started += usize::from(spawned.is_ok());
            }
            drop(tasks);
            if let Err(e) = self.walk(root, (started > 0).then_some(&queue)) {
                self.fail(e);
            }
            // Lets the workers finish.
            drop(queue);
        });
        match lock(&self.error).take() {
            Some(e) => Err(e),
            None => {
                self.report_progress(self.bytes.load(Relaxed), true);
                Ok(())
            }
        }
    }

    /// Depth first with an explicit stack. Regular files go to `queue` when
    /// there is one.
    fn walk(&self, mut root: Level, queue: Option<&SyncSender<FileTask>>) -> Result<()> {
        self.hand_out_files(&mut root, queue)?;
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            if self.failed.load(Relaxed) {
                return Ok(());
            }
            let Some((name, _)) = top.names.pop() else {
                if let Some(done) = stack.pop() {
                    self.release(&done.dir, 1);
                }
                continue;
            };
            let dir = Arc::clone(&top.dir);
            self.make_room_for(stack.len() + 1);
            if let Some(mut child) = self.copy_entry(&dir, &name)? {
                self.hand_out_files(&mut child, queue)?;
                stack.push(child);
            }
        }
        Ok(())
    }

    /// Sends the level's regular files (as its directory lists them) to
    /// the copying threads, a batch at a time: one wake-up per file would
    /// cost more than many a small file's copy.
    fn hand_out_files(
        &self,
        level: &mut Level,
        queue: Option<&SyncSender<FileTask>>,
    ) -> Result<()> {
        let Some(queue) = queue else {
            return Ok(());
        };
        let (files, others) = std::mem::take(&mut level.names)
            .into_iter()
            .partition::<Vec<_>, _>(|(_, kind)| *kind == Some(Type::File));
        level.names = others;
        let mut files = files.into_iter().map(|(name, _)| name).peekable();
        while files.peek().is_some() {
            let names: Vec<OsString> = files.by_ref().take(BATCH).collect();
            level.dir.pending.fetch_add(names.len(), Relaxed);
            let task = FileTask {
                dir: Arc::clone(&level.dir),
                names,
            };
            if queue.send(task).is_err() {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "copying {}: the copying threads died",
                        level.dir.src_path(self).display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn work(&self, tasks: &Mutex<Receiver<FileTask>>) {
        loop {
            let Ok(task) = lock(tasks).recv() else {
                return;
            };
            for name in &task.names {
                if self.failed.load(Relaxed) {
                    break;
                }
                // A directory now where a file was listed: walk it here.
                let done = self
                    .copy_entry(&task.dir, name)
                    .and_then(|child| match child {
                        Some(child) => self.walk(child, None),
                        None => Ok(()),
                    });
                if let Err(e) = done {
                    self.fail(e);
                }
            }
            self.release(&task.dir, task.names.len());
        }
    }

    fn fail(&self, e: Error) {
        lock(&self.error).get_or_insert(e);
        self.failed.store(true, Relaxed);
    }

    /// `n` entries of `dir` are done; the last one sets its metadata.
    fn release(&self, dir: &DirCopy, n: usize) {
        if dir.pending.fetch_sub(n, AcqRel) == n && !self.failed.load(Relaxed) {
            // Last, so that creating its entries does not change its times.
            let dst_path = dir.dst_path(self);
            let done = drop_stale_xattrs(dir, &dst_path)
                .and_then(|()| {
                    apply_metadata(
                        Node::Fd(&dir.dst),
                        &dir.st,
                        &dir.xattrs,
                        &dst_path,
                        self.created_as,
                    )
                })
                .and_then(|()| self.count_created(Node::Fd(&dir.dst), &dst_path));
            if let Err(e) = done {
                self.fail(e);
            }
        }
    }

    /// Deep trees need three descriptors per level; the soft limit is often
    /// far below the hard one.
    fn make_room_for(&self, depth: usize) {
        let soft = self.fd_soft_limit.load(Relaxed);
        let hard = self.fd_hard_limit;
        let needed = 3 * (depth + QUEUE + MAX_WORKERS) as u64 + FD_RESERVE;
        if needed > soft && soft < hard {
            self.fd_soft_limit.store(hard, Relaxed);
            // If this fails, the open that runs out of descriptors names its path.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }

    fn report_progress(&self, done: u64, last: bool) {
        let Some(progress) = self.progress else {
            return;
        };
        // Whoever holds it reports for everyone; reports never go backwards.
        let mut reported = if last {
            lock(&self.reported)
        } else {
            match self.reported.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        };
        if done >= *reported + PROGRESS_STEP || (last && done > *reported) {
            *reported = done;
            progress(done);
        }
    }

    fn add_bytes(&self, n: u64) {
        let done = self.bytes.fetch_add(n, Relaxed) + n;
        self.report_progress(done, false);
    }

    fn copy_entry(&self, parent: &DirCopy, name: &OsStr) -> Result<Option<Level>> {
        let mut sel = None;
        if let (Some(node), Some(select)) = (parent.sel, self.select) {
            match select.lookup(node, name) {
                (Select::Skip, _) => return Ok(None),
                (Select::Descend, child) => sel = child,
                (Select::All, _) => {}
            }
        }
        // Built for this entry only; nothing keeps a whole path a level.
        let src_path = parent.src_path(self).join(name);
        let dst_path = parent.dst_path(self).join(name);
        let (st, mount_root) =
            stat_entry(&parent.src, name).map_err(|e| Error::sys("inspecting", &src_path, e))?;
        let kind = file_type(&st);
        if st.st_dev != self.root.0 || mount_root == Some(true) {
            self.skip_mount(parent, name, &st, src_path, &dst_path)?;
            return Ok(None);
        }
        if kind == SFlag::S_IFDIR {
            return self.enter_dir(parent, name, st, src_path, dst_path, sel);
        }
        let whiteout = is_whiteout(&st);
        if st.st_nlink == 1 || whiteout {
            self.copy_non_dir(parent, name, &st, src_path, &dst_path)?;
            return Ok(None);
        }
        let id = (st.st_dev, st.st_ino);
        let mut links = lock(&self.links);
        if let Some(first) = links.get_mut(&id) {
            let ino = self.link(first, parent, name, &dst_path)?;
            self.entries.fetch_add(1, Relaxed);
            *lock(&self.multi_name_inodes).entry(ino).or_insert(1) += 1;
            first.left = first.left.saturating_sub(1);
            if first.left == 0 {
                // Every name is in: the entry is no longer needed.
                links.remove(&id);
            }
        } else if self.copy_non_dir(parent, name, &st, src_path, &dst_path)? {
            links.insert(
                id,
                FirstCopy {
                    dir: parent.rel.clone(),
                    name: name.to_os_string(),
                    left: st.st_nlink.saturating_sub(1),
                },
            );
        }
        Ok(None)
    }

    /// Returns false when the entry turned out to be mounted on and was left out.
    fn copy_non_dir(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<bool> {
        let kind = file_type(st);
        let copied = if kind == SFlag::S_IFREG {
            self.copy_file(parent, name, st, src_path, dst_path)?
        } else {
            self.copy_node(parent, name, st, kind, &src_path, dst_path)?;
            self.count_created(Node::At(&parent.dst, name), dst_path)?;
            true
        };
        if copied {
            self.entries.fetch_add(1, Relaxed);
        }
        Ok(copied)
    }

    fn enter_dir(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: FileStat,
        src_path: PathBuf,
        dst_path: PathBuf,
        sel: Option<usize>,
    ) -> Result<Option<Level>> {
        let (dir, mount) = open_verified(Some(&parent.src), name, &st, DIR, &self.noatime)
            .map_err(|e| e.into_error(&src_path))?;
        if mount != self.root.1 {
            self.skip_mount(parent, name, &st, src_path, &dst_path)?;
            return Ok(None);
        }
        if (st.st_dev, st.st_ino) == self.dst_root_id {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "copying {}: is the destination itself (a tree cannot be copied into itself)",
                    src_path.display()
                ),
            ));
        }
        let xattrs = read_xattrs(Node::Fd(&dir), &src_path)?;
        refuse_redirects(&xattrs, &src_path)?;
        let names = list_dir(&dir, &src_path)?;
        let (out, existing) = match make_dir(&parent.dst, name, &dst_path) {
            Err(e) if self.merge && e.kind() == ErrorKind::Exists => (
                open_at(
                    Some(&parent.dst),
                    name,
                    DIR | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| Error::sys("opening", &dst_path, e))?,
                true,
            ),
            other => (other?, false),
        };
        let reference = parent
            .reference
            .as_ref()
            .and_then(|r| self.open_reference_dir(r, name));
        self.entries.fetch_add(1, Relaxed);
        Ok(Some(Level {
            dir: Arc::new(DirCopy {
                src: dir,
                dst: out,
                reference,
                rel: parent.rel.child(name),
                st,
                xattrs,
                sel,
                existing,
                pending: AtomicUsize::new(1),
            }),
            names,
        }))
    }

    /// The same directory in the reference, if there is one there on the
    /// reference's own mount. Only looked up in, never read.
    fn open_reference_dir(&self, parent: &File, name: &OsStr) -> Option<File> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
        let dir = open_at(Some(parent), name, flags, Mode::empty()).ok()?;
        let (_, dev, _, mount) = identify(&dir).ok()?;
        (Some((dev, mount)) == self.reference_root).then_some(dir)
    }

    /// Returns false when the file turned out to be mounted on and was left out.
    fn copy_file(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<bool> {
        let size = st.st_size as u64;
        if let Some(old) = self.link_unchanged(parent, name, st, &src_path, dst_path)? {
            self.linked.fetch_add(1, Relaxed);
            self.linked_bytes.fetch_add(size, Relaxed);
            if old.st_nlink == 1 {
                self.reference_unshared_bytes
                    .fetch_add(allocated(&old), Relaxed);
            } else {
                lock(&self.reference_multi_linked).push((
                    old.st_ino,
                    old.st_nlink,
                    allocated(&old),
                ));
            }
            self.add_bytes(size);
            return Ok(true);
        }
        let (file, mount) = open_verified(Some(&parent.src), name, st, FILE, &self.noatime)
            .map_err(|e| e.into_error(&src_path))?;
        if mount != self.root.1 {
            lock(&self.skipped_mounts).push(src_path);
            return Ok(false);
        }
        let xattrs = read_xattrs(Node::Fd(&file), &src_path)?;
        refuse_redirects(&xattrs, &src_path)?;
        let perms = st.st_mode & 0o7777;
        let final_mode = self.create_umask.is_some_and(|umask| {
            perms & (0o7000 | umask) == 0 && !xattrs.iter().any(|(n, _)| n == ACL_ACCESS)
        });
        let mode = if final_mode { perms } else { 0o600 };
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let out = open_at(
            Some(&parent.dst),
            name,
            flags,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| Error::sys("creating", dst_path, e))?;
        self.data.copy(&file, &out, st, &src_path, dst_path)?;
        if st.st_size >= EARLY_WRITEBACK {
            start_writeback(&out);
        }
        // After the data: writing clears setuid bits and security.capability.
        apply_metadata_but_mode(
            Node::Fd(&out),
            st,
            &xattrs,
            dst_path,
            final_mode,
            self.created_as,
        )?;
        self.count_created(Node::Fd(&out), dst_path)?;
        self.add_bytes(size);
        Ok(true)
    }

    /// Links `name` to its copy in the reference if that is unchanged (see
    /// the module documentation), returning the copy's status from before
    /// the link. None: it must be copied. Anything amiss in the reference
    /// only means copying. With the quick check neither file is opened:
    /// attributes are read by name, without following a symlink, and the
    /// reference's entry is linked by name (`linkat` never follows it).
    fn link_unchanged(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<Option<FileStat>> {
        let Some(dir) = &parent.reference else {
            return Ok(None);
        };
        if !self.can_link_reference.load(Relaxed) {
            return Ok(None);
        }
        let Ok((old, mount_root)) = stat_entry(dir, name) else {
            return Ok(None);
        };
        let same_inode_data = (old.st_mode, old.st_uid, old.st_gid, old.st_size)
            == (st.st_mode, st.st_uid, st.st_gid, st.st_size);
        let same_mtime = (old.st_mtime, old.st_mtime_nsec) == (st.st_mtime, st.st_mtime_nsec);
        // Some(false) also says the kernel tells mount roots, so the
        // source entry, never opened here, was checked not to be one.
        if !same_inode_data
            || (self.compare == Compare::QuickCheck && !same_mtime)
            || mount_root != Some(false)
            || Some(old.st_dev) != self.reference_root.map(|(dev, _)| dev)
        {
            return Ok(None);
        }
        // Room for every name of the source inode: its other names are
        // linked to the same inode afterwards, and must not run out.
        if old.st_nlink + st.st_nlink > self.link_max {
            return Ok(None);
        }
        let id = (old.st_dev, old.st_ino);
        if lock(&self.reference_used).contains(&id) {
            return Ok(None);
        }
        let xattrs = read_xattrs(Node::At(&parent.src, name), src_path)?;
        refuse_redirects(&xattrs, src_path)?;
        let Ok(old_xattrs) = read_xattrs(Node::At(dir, name), dst_path) else {
            return Ok(None);
        };
        if !same_xattrs(xattrs, old_xattrs) {
            return Ok(None);
        }
        if self.compare == Compare::Checksum && !self.same_contents_at(parent, dir, name, st, &old)
        {
            return Ok(None);
        }
        if !lock(&self.reference_used).insert(id) {
            return Ok(None);
        }
        match unistd::linkat(
            Some(dir.as_raw_fd()),
            name,
            Some(parent.dst.as_raw_fd()),
            name,
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(Some(old)),
            Err(e @ (Errno::EXDEV | Errno::EMLINK | Errno::EPERM)) => {
                // Another filesystem (or mount): no file will link; too many
                // names already: this one will not.
                if e == Errno::EXDEV {
                    self.can_link_reference.store(false, Relaxed);
                }
                lock(&self.reference_used).remove(&id);
                Ok(None)
            }
            Err(e) => Err(Error::sys("linking", dst_path, e)),
        }
    }

    /// Whether `name` in the source (status `st`) and in the reference
    /// directory `dir` (status `old`) have the same bytes; opened as the
    /// inodes inspected, or not at all.
    fn same_contents_at(
        &self,
        parent: &DirCopy,
        dir: &File,
        name: &OsStr,
        st: &FileStat,
        old: &FileStat,
    ) -> bool {
        let src = open_verified(Some(&parent.src), name, st, FILE, &self.noatime);
        let old_file = open_verified(Some(dir), name, old, FILE, &self.noatime);
        match (src, old_file) {
            (Ok((src, mount)), Ok((old_file, _))) if mount == self.root.1 => {
                same_contents(&src, &old_file, st.st_size as u64).unwrap_or(false)
            }
            _ => false,
        }
    }

    /// Only mount points reach here, so nothing on the mounted filesystem is read.
    fn skip_mount(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<()> {
        if file_type(st) == SFlag::S_IFDIR {
            let out = make_dir(&parent.dst, name, dst_path)?;
            apply_metadata(Node::Fd(&out), st, &[], dst_path, self.created_as)?;
            self.count_created(Node::Fd(&out), dst_path)?;
            self.entries.fetch_add(1, Relaxed);
        }
        lock(&self.skipped_mounts).push(src_path);
        Ok(())
    }

    /// Adds the allocated size of `node`, an inode this copy created.
    fn count_created(&self, node: Node, path: &Path) -> Result<()> {
        let st = match node {
            Node::Fd(f) => stat::fstat(f.as_raw_fd()),
            Node::At(dir, name) => {
                stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            }
        }
        .map_err(|e| Error::sys("inspecting", path, e))?;
        self.created_bytes.fetch_add(allocated(&st), Relaxed);
        Ok(())
    }

    /// Makes `name` another name of the copy's `first`; returns its inode number.
    fn link(
        &self,
        first: &FirstCopy,
        parent: &DirCopy,
        name: &OsStr,
        dst_path: &Path,
    ) -> Result<u64> {
        let err = |e| Error::sys("linking", dst_path, e);
        // Resolved below the destination root one name at a time without
        // any symlink (and so without any limit on the path's length): the
        // link can only ever point at our own first copy.
        let dir = open_rel(&self.dst_root, &first.dir.names(), OFlag::O_PATH).map_err(err)?;
        unistd::linkat(
            Some(dir.as_raw_fd()),
            first.name.as_os_str(),
            Some(parent.dst.as_raw_fd()),
            name,
            AtFlags::empty(),
        )
        .map_err(err)?;
        let st = stat::fstatat(
            Some(parent.dst.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
        Ok(st.st_ino)
    }

    /// Symlinks, fifos, sockets and devices: made from their lstat and xattrs,
    /// never opened.
    fn copy_node(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        kind: SFlag,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<()> {
        let xattrs = read_xattrs(Node::At(&parent.src, name), src_path)?;
        refuse_redirects(&xattrs, src_path)?;
        let dst_dir = Some(parent.dst.as_raw_fd());
        if kind == SFlag::S_IFLNK {
            let target = read_link(&parent.src, name, st, self.keep_link_atimes, src_path)?;
            unistd::symlinkat(target.as_os_str(), dst_dir, name)
                .map_err(|e| Error::sys("creating", dst_path, e))?;
        } else if matches!(
            kind,
            SFlag::S_IFIFO | SFlag::S_IFSOCK | SFlag::S_IFCHR | SFlag::S_IFBLK
        ) {
            stat::mknodat(
                dst_dir,
                name,
                kind,
                Mode::S_IRUSR | Mode::S_IWUSR,
                st.st_rdev,
            )
            .map_err(|e| Error::sys("creating", dst_path, e))?;
        } else {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "copying {}: unknown file type {:o}",
                    src_path.display(),
                    st.st_mode
                ),
            ));
        }
        apply_metadata(
            Node::At(&parent.dst, name),
            st,
            &xattrs,
            dst_path,
            self.created_as,
        )
    }
}

/// Moves file contents by the fastest way the filesystems allow.
struct DataCopier {
    path: DataPath,
    /// Cleared for good once the filesystems refuse it.
    can_clone: AtomicBool,
    can_copy_range: AtomicBool,
}

impl DataCopier {
    fn new(path: DataPath) -> DataCopier {
        DataCopier {
            path,
            can_clone: AtomicBool::new(matches!(path, DataPath::Auto | DataPath::Clone)),
            can_copy_range: AtomicBool::new(path != DataPath::ReadWrite),
        }
    }

    /// Copies the contents of `src` into the empty `dst`, holes kept, and
    /// sizes it.
    fn copy(
        &self,
        src: &File,
        dst: &File,
        st: &FileStat,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<()> {
        let size = st.st_size;
        if size == 0 {
            return Ok(());
        }
        // Allocated blocks cover the size: no holes worth looking for.
        let dense = st.st_blocks * 512 >= size;
        // Where the filesystems clone, a clone beats even a small file's
        // write: that would still cost its writeback in the caller's sync.
        // Elsewhere one read and one write beat copy_file_range.
        if self.path == DataPath::Auto
            && dense
            && size < SMALL_FILE
            && !self.can_clone.load(Relaxed)
        {
            return self.copy_range(src, dst, 0, size, src_path, dst_path);
        }
        if self.can_clone.load(Relaxed) {
            // SAFETY: FICLONE takes the source descriptor as its argument.
            let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
            match Errno::result(rc) {
                Ok(_) => return Ok(()),
                Err(e) if self.path == DataPath::Clone => {
                    return Err(Error::sys("cloning", src_path, e))
                }
                // Not between these filesystems, ever.
                Err(Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::ENOSYS | Errno::EXDEV) => {
                    self.can_clone.store(false, Relaxed)
                }
                // Not this file (say, a swap file or a different checksum setting).
                Err(Errno::EINVAL | Errno::ETXTBSY) => {}
                Err(e) => return Err(Error::sys("cloning", dst_path, e)),
            }
        }
        if dense {
            return self.copy_range(src, dst, 0, size, src_path, dst_path);
        }
        let fd = src.as_raw_fd();
        let mut pos = 0;
        while pos < size {
            let start = match unistd::lseek(fd, pos, Whence::SeekData) {
                Ok(start) => start,
                // Only a hole is left.
                Err(Errno::ENXIO) => break,
                Err(e) => return Err(Error::sys("reading", src_path, e)),
            };
            if start >= size {
                break;
            }
            let end = unistd::lseek(fd, start, Whence::SeekHole)
                .map_err(|e| Error::sys("reading", src_path, e))?
                .min(size);
            self.copy_range(src, dst, start, end - start, src_path, dst_path)?;
            pos = end;
        }
        dst.set_len(size as u64)
            .map_err(|e| Error::io("sizing", dst_path, e))
    }

    /// Copies `len` bytes at `start`: by `copy_file_range` where possible,
    /// except small pieces, which one read and one write copy faster.
    fn copy_range(
        &self,
        src: &File,
        dst: &File,
        start: i64,
        len: i64,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<()> {
        let in_kernel = len >= SMALL_FILE || self.path == DataPath::CopyFileRange;
        let shrank = || {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being copied",
            );
            Error::io("copying", src_path, e)
        };
        let mut done = 0;
        while done < len && in_kernel && self.can_copy_range.load(Relaxed) {
            let mut off_in = start + done;
            let mut off_out = off_in;
            let want = (len - done).min(1 << 30) as usize;
            match fcntl::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
                Ok(0) => return Err(shrank()),
                Ok(n) => done += n as i64,
                Err(e @ (Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG)) => {
                    return Err(Error::sys("writing", dst_path, e))
                }
                Err(e) if self.path == DataPath::CopyFileRange => {
                    return Err(Error::sys("copying", src_path, e))
                }
                // Not possible between these filesystems: copy through memory from now on.
                Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                    self.can_copy_range.store(false, Relaxed)
                }
                // Not possible for this file.
                Err(Errno::EINVAL) => break,
                Err(e) => return Err(Error::sys("copying", src_path, e)),
            }
        }
        copy_by_reading(src, dst, start + done, len - done, src_path, dst_path)
            .map_err(|e| e.unwrap_or_else(shrank))
    }
}

/// The target of the symlink `name` in `dir` (status `st`); with `keep_atime`,
/// puts back the atime that reading it may have moved (relatime moves it
/// whenever it is older than the link's ctime, as it is in any copy).
fn read_link(
    dir: &File,
    name: &OsStr,
    st: &FileStat,
    keep_atime: bool,
    path: &Path,
) -> Result<OsString> {
    let target = fcntl::readlinkat(Some(dir.as_raw_fd()), name)
        .map_err(|e| Error::sys("reading link", path, e))?;
    if keep_atime {
        let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
        let omit = TimeSpec::from(libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        });
        stat::utimensat(
            Some(dir.as_raw_fd()),
            name,
            &atime,
            &omit,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Error::sys("putting back the access time of", path, e))?;
    }
    Ok(target)
}

/// The owner of what a copy into the new root `dst` creates. Every
/// directory of the copy is created with the mode and group its parent's
/// creation gave it, and keeps them until its entries exist, so: our
/// effective uid, and our effective gid if `dst` has it (the group is
/// either ours or, with a setgid bit or the grpid mount option, the
/// parent's), or `dst`'s group if `dst` is setgid (inherited all the way
/// down). Otherwise not certain.
fn creation_owner(dst: &FileStat) -> Option<(u32, u32)> {
    let (uid, gid) = (unistd::geteuid().as_raw(), unistd::getegid().as_raw());
    if dst.st_gid == gid || dst.st_mode & libc::S_ISGID != 0 {
        Some((uid, dst.st_gid))
    } else {
        None
    }
}

/// The process umask, read without changing it (other threads may be
/// creating files), unless `dir` has a default ACL that overrides it.
fn creation_umask(dir: &File) -> Option<u32> {
    if dir.list_xattr().ok()?.any(|name| name == ACL_DEFAULT) {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let umask = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(umask.trim(), 8).ok()
}

/// Starts writing `file`'s dirty pages to disk without waiting for them.
/// Only a hint: a failure shows up in the caller's sync.
fn start_writeback(file: &File) {
    // SAFETY: a plain syscall on a descriptor we own.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// `LINK_MAX` of the filesystem `dir` is on; ext4's when it cannot be told.
fn link_max(dir: &File) -> u64 {
    match unistd::fpathconf(dir, unistd::PathconfVar::LINK_MAX) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 65_000,
    }
}

/// Bytes of disk an inode takes (`st_blocks` counts 512-byte units).
fn allocated(st: &FileStat) -> u64 {
    st.st_blocks as u64 * 512
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// A held directory's own descriptor (a new one), status and mount.
fn held(dir: &Dir) -> Result<(File, FileStat, Option<u64>)> {
    let file = dir
        .file()
        .try_clone()
        .map_err(|e| Error::io("opening", dir.path(), e))?;
    let st = stat::fstat(file.as_raw_fd()).map_err(|e| Error::sys("inspecting", dir.path(), e))?;
    let (_, _, _, mount) = identify(&file).map_err(|e| Error::sys("inspecting", dir.path(), e))?;
    Ok((file, st, mount))
}

/// Creates `name` in `parent` (private until its metadata is set), or
/// with `merge` opens it if it exists; says whether it existed.
fn create_dest_root(parent: &Dir, name: &OsStr, merge: bool) -> Result<(File, bool)> {
    let dst = &parent.join(name);
    let parent = parent.file();
    let open = || {
        open_at(
            Some(parent),
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("opening", dst, e))
    };
    match stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU) {
        Err(Errno::EEXIST) if merge => Ok((open()?, true)),
        Err(Errno::EEXIST) => Err(Error::new(
            ErrorKind::Exists,
            format!("creating {}: already exists", dst.display()),
        )),
        Err(e) => Err(Error::sys("creating", dst, e)),
        Ok(()) => Ok((open()?, false)),
    }
}

/// Private until its contents are done: its real mode is set last.
fn make_dir(parent: &File, name: &OsStr, dst_path: &Path) -> Result<File> {
    stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU).map_err(|e| match e {
        Errno::EEXIST => Error::new(
            ErrorKind::Exists,
            format!("creating {}: already exists", dst_path.display()),
        ),
        e => Error::sys("creating", dst_path, e),
    })?;
    open_at(
        Some(parent),
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("opening", dst_path, e))
}

/// An overlay whiteout: a 0/0 character device.
fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Why a source entry could not be opened.
enum OpenError {
    Sys(Errno),
    /// It is not the inode that was inspected.
    Changed,
}

impl OpenError {
    fn into_error(self, path: &Path) -> Error {
        match self {
            OpenError::Sys(e) => Error::sys("opening", path, e),
            OpenError::Changed => Error::new(
                ErrorKind::Other,
                format!("copying {}: changed while being copied", path.display()),
            ),
        }
    }
}

/// Opens an entry read-only without following it or touching its atime,
/// checks it is still the inode `st` describes, and tells its mount.
fn open_verified(
    dir: Option<&File>,
    name: &OsStr,
    st: &FileStat,
    flags: OFlag,
    noatime: &AtomicBool,
) -> std::result::Result<(File, Option<u64>), OpenError> {
    let flags = flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW;
    let file = if noatime.load(Relaxed) {
        match open_at(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
            // Refused on inodes we do not own without CAP_FOWNER.
            Err(Errno::EPERM) => {
                noatime.store(false, Relaxed);
                open_at(dir, name, flags, Mode::empty())
            }
            other => other,
        }
    } else {
        open_at(dir, name, flags, Mode::empty())
    }
    .map_err(OpenError::Sys)?;
    let (mode, dev, ino, mount) = identify(&file).map_err(OpenError::Sys)?;
    let format = SFlag::S_IFMT.bits();
    if (dev, ino) != (st.st_dev, st.st_ino) || mode & format != st.st_mode & format {
        return Err(OpenError::Changed);
    }
    Ok((file, mount))
}

/// The status of `name` in `dir`, not following it, and whether it is the
/// root of a mount (None when the kernel cannot tell).
fn stat_entry(dir: &File, name: &OsStr) -> nix::Result<(FileStat, Option<bool>)> {
    let name = std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT;
    let stx = match statx(dir, &name, flags, libc::STATX_BASIC_STATS) {
        Ok(stx) => stx,
        // A kernel (or seccomp filter) without statx: the plain status.
        Err(Errno::ENOSYS) => {
            let st = stat::fstatat(
                Some(dir.as_raw_fd()),
                name.as_c_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            return Ok((st, None));
        }
        Err(e) => return Err(e),
    };
    // SAFETY: struct stat is plain old data; every field used is set below.
    let mut st: FileStat = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    st.st_ino = stx.stx_ino;
    st.st_nlink = stx.stx_nlink.into();
    st.st_mode = stx.stx_mode.into();
    st.st_uid = stx.stx_uid;
    st.st_gid = stx.stx_gid;
    st.st_rdev = libc::makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
    st.st_size = stx.stx_size as i64;
    st.st_blksize = stx.stx_blksize.into();
    st.st_blocks = stx.stx_blocks as i64;
    st.st_atime = stx.stx_atime.tv_sec;
    st.st_atime_nsec = stx.stx_atime.tv_nsec.into();
    st.st_mtime = stx.stx_mtime.tv_sec;
    st.st_mtime_nsec = stx.stx_mtime.tv_nsec.into();
    st.st_ctime = stx.stx_ctime.tv_sec;
    st.st_ctime_nsec = stx.stx_ctime.tv_nsec.into();
    let known = stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    let root = stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Ok((st, known.then_some(root)))
}

/// `statx(2)` of `name` relative to `dir`.
fn statx(dir: &File, name: &std::ffi::CStr, flags: i32, mask: u32) -> nix::Result<libc::statx> {
    // SAFETY: a zeroed struct statx is valid, and statx writes at most one
    // into it; the name is NUL-terminated.
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        Errno::result(libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
            mask,
            &mut stx,
        ))?;
        Ok(stx)
    }
}

/// Type and mode, st_dev, inode and (where the kernel can tell) mount of an
/// open file, in one call.
fn identify(file: &File) -> nix::Result<(u32, u64, u64, Option<u64>)> {
    // The empty name with AT_EMPTY_PATH: the descriptor itself.
    let mask = libc::STATX_TYPE | libc::STATX_INO | libc::STATX_MNT_ID;
    let stx = statx(file, c"", libc::AT_EMPTY_PATH, mask)?;
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    let mount = (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id);
    Ok((u32::from(stx.stx_mode), dev, stx.stx_ino, mount))
}

/// Names with the type the directory entry gives, if it does.
fn list_dir(dir: &File, path: &Path) -> Result<Vec<(OsString, Option<Type>)>> {
    let err = |e| Error::sys("reading directory", path, e);
    let fd = unistd::dup(dir.as_raw_fd()).map_err(err)?;
    let mut entries = DirStream::from_fd(fd).map_err(err)?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((OsStr::from_bytes(name).to_os_string(), entry.file_type()));
        }
    }
    Ok(names)
}

fn read_xattrs(node: Node, path: &Path) -> Result<Xattrs> {
    let err = |e| Error::io("reading extended attributes of", path, e);
    let mut xattrs = Vec::new();
    match node {
        Node::Fd(f) => {
            for name in f.list_xattr().map_err(err)? {
                // None: removed since it was listed.
                if let Some(value) = f.get_xattr(&name).map_err(err)? {
                    xattrs.push((name, value));
                }
            }
        }
        Node::At(dir, entry) => {
            if xattr_list_len_at(dir, entry) == Some(0) {
                return Ok(xattrs);
            }
            let p = proc_path(dir, entry);
            for name in xattr::list(&p).map_err(err)? {
                if let Some(value) = xattr::get(&p, &name).map_err(err)? {
                    xattrs.push((name, value));
                }
            }
        }
    }
    Ok(xattrs)
}

/// `listxattrat(2)` (Linux 6.13), not in the libc crate for most targets;
/// the number is the same on every architecture that has it.
const SYS_LISTXATTRAT: libc::c_long = 465;

/// Cleared for good when the kernel lacks `listxattrat`.
static HAVE_LISTXATTRAT: AtomicBool = AtomicBool::new(true);

/// The size of the attribute name list of `name` in `dir`, not following
/// it, when the kernel can say in one call; most entries have none, and
/// this spares the walk through `/proc/self/fd` that finding out by path
/// costs. None: ask by path.
fn xattr_list_len_at(dir: &File, name: &OsStr) -> Option<usize> {
    if !HAVE_LISTXATTRAT.load(Relaxed) {
        return None;
    }
    let name = std::ffi::CString::new(name.as_bytes()).ok()?;
    // SAFETY: with a null buffer of size 0 the kernel writes nothing; it
    // reads the NUL-terminated name.
    let rc = unsafe {
        libc::syscall(
            SYS_LISTXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            std::ptr::null_mut::<libc::c_char>(),
            0usize,
        )
    };
    match Errno::result(rc) {
        Ok(n) => usize::try_from(n).ok(),
        // Not in this kernel, or refused by a seccomp filter that does not
        // know it yet.
        Err(Errno::ENOSYS | Errno::EPERM) => {
            HAVE_LISTXATTRAT.store(false, Relaxed);
            None
        }
        Err(_) => None,
    }
}

fn write_xattrs<'a>(
    node: Node,
    xattrs: impl Iterator<Item = &'a (OsString, Vec<u8>)>,
    path: &Path,
) -> Result<()> {
    for (name, value) in xattrs {
        match node {
            Node::Fd(f) => f.set_xattr(name, value),
            Node::At(dir, entry) => xattr::set(proc_path(dir, entry), name, value),
        }
        .map_err(|e| {
            let op = format!("setting extended attribute {} on", name.to_string_lossy());
            Error::io(&op, path, e)
        })?;
    }
    Ok(())
}

/// Overlay attributes that say a directory hides what is below it.
const OPAQUE: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

fn is_opaque_attr(name: &OsStr) -> bool {
    OPAQUE.iter().any(|n| name == OsStr::new(n))
}

/// A directory that existed before a merging copy loses the attributes
/// its source lacks, except the overlay `opaque` one.
fn drop_stale_xattrs(dir: &DirCopy, path: &Path) -> Result<()> {
    if !dir.existing {
        return Ok(());
    }
    let err = |e| Error::io("removing extended attributes of", path, e);
    for name in dir.dst.list_xattr().map_err(err)? {
        if !is_opaque_attr(&name) && !dir.xattrs.iter().any(|(n, _)| *n == name) {
            dir.dst.remove_xattr(&name).map_err(err)?;
        }
    }
    Ok(())
}

fn refuse_redirects(xattrs: &Xattrs, path: &Path) -> Result<()> {
    match xattrs.iter().find(|(name, _)| {
        NOT_SELF_CONTAINED
            .iter()
            .any(|n| name.as_os_str() == OsStr::new(n))
    }) {
        None => Ok(()),
        Some((name, _)) => Err(Error::overlay_not_self_contained("copying", path, name)),
    }
}

/// Owner, xattrs, mode, capability, times, in the only order that keeps
/// them all: chown clears setuid/setgid and security.capability, and every
/// later change would bump the times.
///
/// `created_as` is the owner the entry was created with, when known: the
/// same owner is not set again.
fn apply_metadata(
    node: Node,
    st: &FileStat,
    xattrs: &[(OsString, Vec<u8>)],
    path: &Path,
    created_as: Option<(u32, u32)>,
) -> Result<()> {
    apply_metadata_but_mode(node, st, xattrs, path, false, created_as)
}

/// [`apply_metadata`], leaving the mode alone if `mode_set`: the entry was
/// created with it, and nothing here can change it (no setuid or setgid
/// bit for chown to clear, no ACL for the xattrs to rewrite it).
fn apply_metadata_but_mode(
    node: Node,
    st: &FileStat,
    xattrs: &[(OsString, Vec<u8>)],
    path: &Path,
    mode_set: bool,
    created_as: Option<(u32, u32)>,
) -> Result<()> {
    if created_as != Some((st.st_uid, st.st_gid)) {
        let uid = Some(Uid::from_raw(st.st_uid));
        let gid = Some(Gid::from_raw(st.st_gid));
        match node {
            Node::Fd(f) => unistd::fchown(f.as_raw_fd(), uid, gid),
            Node::At(dir, name) => unistd::fchownat(
                Some(dir.as_raw_fd()),
                name,
                uid,
                gid,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
        }
        .map_err(|e| Error::sys("setting owner of", path, e))?;
    }

    write_xattrs(node, xattrs.iter().filter(|(n, _)| n != CAPABILITY), path)?;

    // Linux has no modes on symlinks.
    if file_type(st) != SFlag::S_IFLNK && !mode_set {
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match node {
            Node::Fd(f) => stat::fchmod(f.as_raw_fd(), mode),
            Node::At(dir, name) => stat::fchmodat(
                Some(dir.as_raw_fd()),
                name,
                mode,
                FchmodatFlags::NoFollowSymlink,
            ),
        }
        .map_err(|e| Error::sys("setting mode of", path, e))?;
    }

    write_xattrs(node, xattrs.iter().filter(|(n, _)| n == CAPABILITY), path)?;

    let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    match node {
        Node::Fd(f) => stat::futimens(f.as_raw_fd(), &atime, &mtime),
        Node::At(dir, name) => stat::utimensat(
            Some(dir.as_raw_fd()),
            name,
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        ),
    }
    .map_err(|e| Error::sys("setting times of", path, e))
}

thread_local! {
    /// Per thread, so copying and comparing allocate nothing per file.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Whether two files start with the same `size` bytes; failing to read
/// either counts as different.
fn sorted<T: Ord, C: IntoIterator<Item = T>>(m: Mutex<C>) -> Vec<T> {
    let mut v: Vec<T> = m
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .collect();
    v.sort();
    v
}

/// The same attributes, names and values, in any order.
fn same_xattrs(mut a: Xattrs, mut b: Xattrs) -> bool {
    a.sort();
    b.sort();
    a == b
}

/// Whether two files hold the same first `size` bytes, holes reading as
/// zeros. Only data is read: a stretch that is a hole in both files is
/// skipped (found with `SEEK_DATA`/`SEEK_HOLE`), so comparing two sparse
/// files costs what their data costs, not their size. A file that ends
/// early differs.
pub fn same_contents(a: &File, b: &File, size: u64) -> io::Result<bool> {
    BUFFERS.with_borrow_mut(|(x, y)| {
        x.resize(BUF_SIZE, 0);
        y.resize(BUF_SIZE, 0);
        let mut off = 0;
        while off < size {
            let (a_data, a_end) = stretch(a, off, size)?;
            let (b_data, b_end) = stretch(b, off, size)?;
            let end = a_end.min(b_end);
            if a_data || b_data {
                while off < end {
                    let want = (end - off).min(BUF_SIZE as u64) as usize;
                    let (x, y) = (&mut x[..want], &mut y[..want]);
                    let read = |f: &File, buf: &mut [u8]| match f.read_exact_at(buf, off) {
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                        Err(e) => Err(e),
                        Ok(()) => Ok(true),
                    };
                    if !read(a, x)? || !read(b, y)? || x != y {
                        return Ok(false);
                    }
                    off += want as u64;
                }
            }
            off = end;
        }
        Ok(true)
    })
}

/// Whether `file` has data at `off`, and where that stretch of data (or of
/// hole) ends, at most at `size`.
fn stretch(file: &File, off: u64, size: u64) -> io::Result<(bool, u64)> {
    let fd = file.as_raw_fd();
    let at = off as i64;
    match unistd::lseek(fd, at, Whence::SeekData) {
        Ok(data) if data == at => {
            let hole = unistd::lseek(fd, at, Whence::SeekHole).map_err(io::Error::from)?;
            Ok((true, (hole as u64).clamp(off + 1, size)))
        }
        Ok(data) => Ok((false, (data as u64).min(size))),
        // Only a hole is left (or the file is shorter than said).
        Err(Errno::ENXIO) => Ok((false, size)),
        // A filesystem that cannot tell: all data.
        Err(Errno::EINVAL | Errno::EOPNOTSUPP) => Ok((true, size)),
        Err(e) => Err(e.into()),
    }
}

/// `Err(None)`: the source ended early.
fn copy_by_reading(
    src: &File,
    dst: &File,
    start: i64,
    len: i64,
    src_path: &Path,
    dst_path: &Path,
) -> std::result::Result<(), Option<Error>> {
    if len == 0 {
        return Ok(());
    }
    BUFFERS.with_borrow_mut(|(buf, _)| {
        buf.resize(BUF_SIZE, 0);
        let mut done = 0;
        while done < len {
            let want = ((len - done) as usize).min(buf.len());
            let off = (start + done) as u64;
            let n = match src.read_at(&mut buf[..want], off) {
                Ok(0) => return Err(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Some(Error::io("reading", src_path, e))),
            };
            dst.write_all_at(&buf[..n], off)
                .map_err(|e| Some(Error::io("writing", dst_path, e)))?;
            done += n as i64;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sparse_data_keeps_holes_and_size_by_every_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src_path = dir.path().join("src");
        let mut src = File::create(&src_path).expect("create src");
        src.write_all_at(b"middle", 1 << 20).expect("write middle");
        src.set_len(3 << 20).expect("extend");
        src.flush().expect("flush");
        let src = File::open(&src_path).expect("open src");
        let st = stat::fstat(src.as_raw_fd()).expect("fstat");
        let blocks = |p: &Path| stat::stat(p).expect("stat").st_blocks;

        for path in [DataPath::Auto, DataPath::CopyFileRange, DataPath::ReadWrite] {
            let dst_path = dir.path().join(format!("{path:?}"));
            let dst = File::create(&dst_path).expect("create dst");
            let data = DataCopier::new(path);
            data.copy(&src, &dst, &st, &src_path, &dst_path)
                .expect("copy");

            let data = std::fs::read(&dst_path).expect("read dst");
            assert_eq!(data.len(), 3 << 20, "{path:?}");
            assert_eq!(&data[1 << 20..(1 << 20) + 6], b"middle", "{path:?}");
            assert!(data[..1 << 20].iter().all(|&b| b == 0), "{path:?}");
            assert!(blocks(&dst_path) <= blocks(&src_path) + 16, "{path:?}");
        }
    }

    #[test]
    fn same_contents_compares_every_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut data = vec![7u8; BUF_SIZE * 2 + 5];
        let write = |name: &str, data: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, data).expect("write");
            File::open(path).expect("open")
        };
        let a = write("a", &data);
        let size = data.len() as u64;
        let same = |f: &File| same_contents(&a, f, size).expect("compare");
        assert!(same(&write("same", &data)));
        *data.last_mut().expect("not empty") = 8;
        assert!(!same(&write("last-byte", &data)));
        assert!(!same(&write("short", &data[..10])));
    }

    #[test]
    fn same_contents_skips_holes_in_both_and_reads_a_hole_as_zeros() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sparse = |name: &str, data: &[(u64, &[u8])]| {
            let path = dir.path().join(name);
            let f = File::create(&path).expect("create");
            for (at, bytes) in data {
                f.write_all_at(bytes, *at).expect("write");
            }
            // A terabyte, nearly all hole: reading it would take hours.
            f.set_len(1 << 40).expect("extend");
            File::open(path).expect("open")
        };
        let a = sparse("a", &[(4096, b"data"), (1 << 39, b"far")]);
        let b = sparse("b", &[(4096, b"data"), (1 << 39, b"far")]);
        let c = sparse("c", &[(4096, b"data"), (1 << 39, b"FAR")]);
        // Zeros written where the other has a hole are the same bytes.
        let d = sparse(
            "d",
            &[(0, &[0u8; 4096]), (4096, b"data"), (1 << 39, b"far")],
        );
        // Bytes this process has read so far (other tests' reads too, but
        // nothing near a terabyte).
        let read_so_far = || {
            let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .expect("rchar")
        };
        let before = read_so_far();
        assert!(same_contents(&a, &b, 1 << 40).expect("compare"));
        assert!(!same_contents(&a, &c, 1 << 40).expect("compare"));
        assert!(same_contents(&a, &d, 1 << 40).expect("compare"));
        let read = read_so_far() - before;
        assert!(read < 1 << 30, "{read} bytes read: the holes were read");
    }

    #[test]
    fn redirect_and_metacopy_are_refused_by_name() {
        let path = Path::new("/x/delta/usr");
        let ok: Xattrs = vec![("trusted.overlay.opaque".into(), b"y".to_vec())];
        assert!(refuse_redirects(&ok, path).is_ok());
        for name in NOT_SELF_CONTAINED {
            let bad: Xattrs = vec![(name.into(), b"/a".to_vec())];
            let err = refuse_redirects(&bad, path).expect_err(name);
            assert_eq!(err.kind(), ErrorKind::Unsupported);
            assert!(err.message().contains("/x/delta/usr"), "{err}");
            assert!(err.message().contains("not self-contained"), "{err}");
        }
    }
}
