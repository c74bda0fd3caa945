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
//!   a regular file at the same relative path in the reference (for a
//!   layer with [`CopyOptions::reference_below`], in the layer if it has
//!   an entry of that name, which hides the anchor's unless it is a
//!   directory, else in the anchor; both on one mount), found
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
//! Progress and cancellation ([`crate::progress`]): with
//! [`CopyOptions::progress`], the copy reports entries and bytes done every
//! few MiB and few thousand entries, and once at the end with exactly what
//! [`CopyStats`] says. With [`CopyOptions::cancel`], the walking thread
//! looks at the flag before each entry and the file workers before each
//! file; once it is set nothing more is created and the copy fails with
//! [`ErrorKind::Cancelled`], whatever else went wrong at the same time.
//!
//! On error (cancelled too) the partly written `dst` is left for the caller
//! to remove.
//!
//! The files: `walk.rs` (the walk, directories, handing files to workers,
//! mounts), `data.rs` (moving file contents, comparing them), `meta.rs`
//! (owners, modes, times, extended attributes), `reference.rs` (linking to a
//! reference), `select.rs` (which entries a copy takes), `layer.rs` (layers:
//! planning, writing, flattening).

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
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{cancelled, Cancel, Counts, Progress};

mod data;
mod index;
mod layer;
mod meta;
mod out;
pub mod pack;
mod reference;
mod select;
pub mod tar;
pub mod view;
mod walk;

pub use data::same_contents;
use data::*;
pub use index::AnchorIndex;
pub use layer::{
    flatten, flatten_at, hidden_by_all, make_layer, make_layer_at, plan as plan_layer,
    plan_at as plan_layer_at, LayerPlan, Plan,
};
use meta::*;
pub use out::{copy_dir_metadata, copy_out};
use reference::*;
pub use select::{Select, Selection};
use walk::*;

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
    /// Allocated bytes of the reference inodes linked into the copy, each
    /// once: with `created_bytes`, what the copy takes on disk in all.
    pub linked_allocated: u64,
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
    /// When `reference` is a layer: the tree it is stored as changes to
    /// (its anchor). The reference is then the two merged, as the snapshot
    /// was captured: a name the layer has (a file, a directory, a
    /// whiteout) is looked up there first, and only a directory lets the
    /// anchor's entries below show through; a name it lacks is the
    /// anchor's. (An opaque directory in the layer is not told apart: a
    /// file found below it in the anchor is still linked only when the
    /// check of the invariants finds it unchanged, as every linked file is.)
    pub reference_below: Option<&'a Dir>,
    /// How an unchanged file is recognised; only used with a reference.
    pub compare: Compare,
    /// Told now and then (every few MiB and every few thousand entries,
    /// and once at the end) what is done so far: the last report's counts
    /// are the copy's entries and bytes.
    pub progress: Option<&'a dyn Progress>,
    /// What the caller expects the copy to come to, passed on with every
    /// report; `None` when not known beforehand.
    pub total: Option<Counts>,
    /// Checked before each entry: once set, the copy stops and fails with
    /// [`ErrorKind::Cancelled`], leaving what it wrote for the caller to
    /// remove.
    pub cancel: Option<&'a Cancel>,
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
    /// The source is an overlay layer whose own attributes start with this
    /// (`trusted.overlay.`), and the copy is to be a plain tree: whiteouts
    /// (0/0 character devices, and empty regular files carrying the
    /// `whiteout` attribute) are left out, and no attribute with this
    /// prefix is copied.
    pub overlay_private: Option<&'a str>,
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
    let mut xattrs = read_xattrs(Node::Fd(&src_dir), src)?;
    refuse_redirects(&xattrs, src)?;
    drop_private(&mut xattrs, opts.overlay_private);
    let names = list_dir(&src_dir, src)?;
    let not_src = |r: &Dir| -> Result<(File, (u64, Option<u64>))> {
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
        Ok((dir, (st.st_dev, mount)))
    };
    let mut references = Vec::new();
    let mut reference_root = None;
    if let Some(r) = opts.reference {
        let (dir, root) = not_src(r)?;
        references.push(dir);
        reference_root = Some(root);
        if let Some(below) = opts.reference_below {
            let (dir, below_root) = not_src(below)?;
            // Another mount: its files could not be linked anyway.
            if below_root == root {
                references.push(dir);
            }
        }
    }
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
        reference_root,
        compare: opts.compare,
        data: DataCopier::new(path),
        create_umask,
        created_as,
        progress: opts.progress,
        total: opts.total,
        cancel: opts.cancel,
        select: opts.select,
        merge: opts.merge,
        overlay_private: opts.overlay_private,
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
        linked_allocated: AtomicU64::new(0),
        reference_unshared_bytes: AtomicU64::new(0),
        reference_multi_linked: Mutex::default(),
        multi_name_inodes: Mutex::default(),
        reported: Mutex::new(Counts::default()),
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
            reference: references,
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
        linked_allocated: copier.linked_allocated.into_inner(),
        reference_unshared_bytes: copier.reference_unshared_bytes.into_inner(),
        reference_multi_linked: sorted(copier.reference_multi_linked),
        multi_name_inodes: sorted(copier.multi_name_inodes),
        skipped_mounts,
    })
}

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

/// Entries between two progress reports (besides every PROGRESS_STEP bytes).
const PROGRESS_ENTRIES: u64 = 4096;

/// Files (and data segments) below this size are read and written, never
/// cloned or copied in the kernel.
const SMALL_FILE: i64 = 64 << 10;

/// Files from this size on are sent to disk as soon as they are written,
/// so the caller's final sync has less left to wait for.
const EARLY_WRITEBACK: i64 = 1 << 20;

/// Chunk for reading and writing, and for comparing contents.
const BUF_SIZE: usize = 128 << 10;
