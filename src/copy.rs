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
//!   opened. Nothing outside `src` is read and nothing outside `dst` written.
//!   Reading leaves source atimes alone (`O_NOATIME`), except that the
//!   kernel may stamp a symlink's atime when it is read; the copy gets the
//!   atime from before.
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
//! - Holds one directory descriptor per level on each side and walks with an
//!   explicit stack, so depth is bounded by the open-file limit (raised to
//!   the hard limit when needed), not by the thread's stack.
//!
//! On error the partly written `dst` is left for the caller to remove.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::stat::{self, FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, Whence};
use xattr::FileExt as _;

use crate::{Error, ErrorKind, Result};

/// What a copy produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyStats {
    /// Every entry created below the root (a hard link counts once per name).
    pub entries: u64,
    /// Sum of the apparent sizes of regular files, each inode once.
    pub bytes: u64,
    /// Source paths of mount points below `src` that were not crossed:
    /// directories were created empty, anything else was left out.
    pub skipped_mounts: Vec<PathBuf>,
}

/// Copies the directory tree `src` to `dst` (which must not exist; its parent
/// must), with full fidelity. The root `dst` gets src's owner, mode, xattrs
/// and times. See the module documentation for what is guaranteed.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats> {
    let src_dir = open_source_root(src)?;
    let src_st = stat::fstat(src_dir.as_raw_fd()).map_err(|e| Error::sys("inspecting", src, e))?;
    let xattrs = read_xattrs(Node::Fd(&src_dir), src)?;
    refuse_redirects(&xattrs, src)?;
    let names = list_dir(&src_dir, src)?;
    let dst_dir = create_dest_root(dst)?;
    let dst_st = stat::fstat(dst_dir.as_raw_fd()).map_err(|e| Error::sys("inspecting", dst, e))?;
    let mut copier = Copier {
        root_dev: src_st.st_dev,
        root_mount: mount_id(&src_dir),
        dst_root: dst_dir
            .try_clone()
            .map_err(|e| Error::io("opening", dst, e))?,
        dst_root_id: (dst_st.st_dev, dst_st.st_ino),
        links: HashMap::new(),
        stats: CopyStats::default(),
        fd_limits: getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((u64::MAX, u64::MAX)),
    };
    copier.run(Level {
        src: src_dir,
        dst: dst_dir,
        src_path: src.to_path_buf(),
        dst_path: dst.to_path_buf(),
        rel: PathBuf::new(),
        st: src_st,
        xattrs,
        names,
    })?;
    Ok(copier.stats)
}

type Xattrs = Vec<(OsString, Vec<u8>)>;

const CAPABILITY: &str = "security.capability";

/// Attributes that make an overlay layer depend on the layers below it.
const NOT_SELF_CONTAINED: [&str; 4] = [
    "trusted.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.redirect",
    "user.overlay.metacopy",
];

/// Descriptors kept free for everything but the directory stack.
const FD_RESERVE: u64 = 64;

/// A directory being copied: both sides open, its entries still to do.
struct Level {
    src: File,
    dst: File,
    src_path: PathBuf,
    dst_path: PathBuf,
    /// Path below the destination root, to find first copies of hard links.
    rel: PathBuf,
    st: FileStat,
    xattrs: Xattrs,
    names: Vec<OsString>,
}

struct Copier {
    root_dev: u64,
    root_mount: Option<u64>,
    dst_root: File,
    dst_root_id: (u64, u64),
    /// (dev, ino) of multiply-linked source inodes -> their first copy.
    links: HashMap<(u64, u64), PathBuf>,
    stats: CopyStats,
    /// (soft, hard) RLIMIT_NOFILE as last set.
    fd_limits: (u64, u64),
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

impl Copier {
    fn run(&mut self, root: Level) -> Result<()> {
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            match top.names.pop() {
                Some(name) => {
                    self.make_room_for(stack.len() + 1);
                    let parent = &stack[stack.len() - 1];
                    if let Some(child) = self.copy_entry(parent, &name)? {
                        stack.push(child);
                    }
                }
                None => {
                    if let Some(done) = stack.pop() {
                        // Last, so that creating its entries does not change its times.
                        let node = Node::Fd(&done.dst);
                        apply_metadata(node, &done.st, &done.xattrs, &done.dst_path)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Deep trees need two descriptors per level; the soft limit is often
    /// far below the hard one.
    fn make_room_for(&mut self, depth: usize) {
        let (soft, hard) = self.fd_limits;
        if 2 * depth as u64 + FD_RESERVE > soft && soft < hard {
            self.fd_limits = (hard, hard);
            // If this fails, the open that runs out of descriptors names its path.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }

    fn copy_entry(&mut self, parent: &Level, name: &OsStr) -> Result<Option<Level>> {
        let src_path = parent.src_path.join(name);
        let dst_path = parent.dst_path.join(name);
        let st = stat::fstatat(
            Some(parent.src.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::sys("inspecting", &src_path, e))?;
        let kind = file_type(&st);
        if st.st_dev != self.root_dev {
            self.skip_mount(parent, name, &st, src_path, &dst_path)?;
            return Ok(None);
        }
        if kind == SFlag::S_IFDIR {
            return self.enter_dir(parent, name, st, src_path, dst_path);
        }

        let whiteout = kind == SFlag::S_IFCHR && st.st_rdev == 0;
        let linked = st.st_nlink > 1 && !whiteout;
        let id = (st.st_dev, st.st_ino);
        if linked {
            if let Some(first) = self.links.get(&id) {
                self.link(first, parent, name, &dst_path)?;
                self.stats.entries += 1;
                return Ok(None);
            }
        }
        let copied = if kind == SFlag::S_IFREG {
            self.copy_file(parent, name, &st, src_path, &dst_path)?
        } else {
            copy_node(parent, name, &st, kind, &src_path, &dst_path)?;
            true
        };
        if copied {
            self.stats.entries += 1;
            if linked {
                self.links.insert(id, parent.rel.join(name));
            }
        }
        Ok(None)
    }

    fn enter_dir(
        &mut self,
        parent: &Level,
        name: &OsStr,
        st: FileStat,
        src_path: PathBuf,
        dst_path: PathBuf,
    ) -> Result<Option<Level>> {
        let dir = open_verified(Some(&parent.src), name, &st, OFlag::O_DIRECTORY, &src_path)?;
        if self.on_other_mount(&dir) {
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
        let out = make_dir(&parent.dst, name, &dst_path)?;
        self.stats.entries += 1;
        Ok(Some(Level {
            src: dir,
            dst: out,
            rel: parent.rel.join(name),
            src_path,
            dst_path,
            st,
            xattrs,
            names,
        }))
    }

    /// Returns false when the file turned out to be mounted on and was left out.
    fn copy_file(
        &mut self,
        parent: &Level,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<bool> {
        let flags = OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        let file = open_verified(Some(&parent.src), name, st, flags, &src_path)?;
        if self.on_other_mount(&file) {
            self.stats.skipped_mounts.push(src_path);
            return Ok(false);
        }
        let xattrs = read_xattrs(Node::Fd(&file), &src_path)?;
        refuse_redirects(&xattrs, &src_path)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let out = open_at(
            Some(&parent.dst),
            name,
            flags,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| Error::sys("creating", dst_path, e))?;
        copy_data(&file, &out, st.st_size, &src_path, dst_path)?;
        // After the data: writing clears setuid bits and security.capability.
        apply_metadata(Node::Fd(&out), st, &xattrs, dst_path)?;
        self.stats.bytes += st.st_size as u64;
        Ok(true)
    }

    /// Only mount points reach here, so nothing on the mounted filesystem is read.
    fn skip_mount(
        &mut self,
        parent: &Level,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<()> {
        if file_type(st) == SFlag::S_IFDIR {
            let out = make_dir(&parent.dst, name, dst_path)?;
            apply_metadata(Node::Fd(&out), st, &[], dst_path)?;
            self.stats.entries += 1;
        }
        self.stats.skipped_mounts.push(src_path);
        Ok(())
    }

    /// Same st_dev does not rule out a bind mount from the same filesystem.
    fn on_other_mount(&self, file: &File) -> bool {
        match (self.root_mount, mount_id(file)) {
            (Some(root), Some(this)) => root != this,
            _ => false,
        }
    }

    fn link(&self, first: &Path, parent: &Level, name: &OsStr, dst_path: &Path) -> Result<()> {
        let err = |e| Error::sys("linking", dst_path, e);
        // Resolved beneath the destination root without any symlink, so the
        // link can only ever point at our own first copy.
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            );
        let fd = fcntl::openat2(self.dst_root.as_raw_fd(), first, how).map_err(err)?;
        // SAFETY: openat2 just returned this descriptor and nothing else owns it.
        let target = unsafe { File::from_raw_fd(fd) };
        unistd::linkat(
            Some(target.as_raw_fd()),
            OsStr::new(""),
            Some(parent.dst.as_raw_fd()),
            name,
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(err)
    }
}

/// Symlinks, fifos, sockets and devices: made from their lstat and xattrs,
/// never opened.
fn copy_node(
    parent: &Level,
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
        let target = fcntl::readlinkat(Some(parent.src.as_raw_fd()), name)
            .map_err(|e| Error::sys("reading link", src_path, e))?;
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
    apply_metadata(Node::At(&parent.dst, name), st, &xattrs, dst_path)
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn open_source_root(src: &Path) -> Result<File> {
    let st = stat::lstat(src).map_err(|e| Error::sys("inspecting", src, e))?;
    if file_type(&st) != SFlag::S_IFDIR {
        let what = if file_type(&st) == SFlag::S_IFLNK {
            "is a symbolic link, refusing to follow it"
        } else {
            "not a directory"
        };
        return Err(Error::new(
            ErrorKind::Other,
            format!("copying {}: {what}", src.display()),
        ));
    }
    // The caller's path is trusted up to its last component, which must be
    // the directory just inspected.
    open_verified(None, src.as_os_str(), &st, OFlag::O_DIRECTORY, src)
}

fn create_dest_root(dst: &Path) -> Result<File> {
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
    let parent = File::open(parent).map_err(|e| Error::io("opening", parent, e))?;
    match stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU) {
        Err(Errno::EEXIST) => Err(Error::new(
            ErrorKind::Exists,
            format!("creating {}: already exists", dst.display()),
        )),
        Err(e) => Err(Error::sys("creating", dst, e)),
        Ok(()) => open_at(
            Some(&parent),
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("opening", dst, e)),
    }
}

/// Private until its contents are done: its real mode is set last.
fn make_dir(parent: &File, name: &OsStr, dst_path: &Path) -> Result<File> {
    stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU)
        .map_err(|e| Error::sys("creating", dst_path, e))?;
    open_at(
        Some(parent),
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("opening", dst_path, e))
}

fn open_at(dir: Option<&File>, name: &OsStr, flags: OFlag, mode: Mode) -> nix::Result<File> {
    let fd = fcntl::openat(
        dir.map(|d| d.as_raw_fd()),
        name,
        flags | OFlag::O_CLOEXEC,
        mode,
    )?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Opens a source entry read-only without following it or touching its
/// atime, and checks it is still the inode `st` describes.
fn open_verified(
    dir: Option<&File>,
    name: &OsStr,
    st: &FileStat,
    flags: OFlag,
    path: &Path,
) -> Result<File> {
    let flags = flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW;
    // O_NOATIME is refused (EPERM) on inodes we do not own without CAP_FOWNER.
    let file = match open_at(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
        Err(Errno::EPERM) => open_at(dir, name, flags, Mode::empty()),
        other => other,
    }
    .map_err(|e| Error::sys("opening", path, e))?;
    let now = stat::fstat(file.as_raw_fd()).map_err(|e| Error::sys("inspecting", path, e))?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) || file_type(&now) != file_type(st) {
        return Err(Error::new(
            ErrorKind::Other,
            format!("copying {}: changed while being copied", path.display()),
        ));
    }
    Ok(file)
}

fn list_dir(dir: &File, path: &Path) -> Result<Vec<OsString>> {
    let err = |e| Error::sys("reading directory", path, e);
    let fd = unistd::dup(dir.as_raw_fd()).map_err(err)?;
    let mut entries = Dir::from_fd(fd).map_err(err)?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// The mount an open file lives on, where the kernel can tell.
fn mount_id(file: &File) -> Option<u64> {
    // SAFETY: statx fills the zeroed struct we pass; the empty C string with
    // AT_EMPTY_PATH makes it describe the descriptor itself.
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let rc = libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        );
        (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
    }
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

fn refuse_redirects(xattrs: &Xattrs, path: &Path) -> Result<()> {
    match xattrs.iter().find(|(name, _)| {
        NOT_SELF_CONTAINED
            .iter()
            .any(|n| name.as_os_str() == OsStr::new(n))
    }) {
        None => Ok(()),
        Some((name, _)) => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "copying {}: carries {}: the overlay delta is not self-contained \
                 (the overlay was mounted with redirect_dir or metacopy)",
                path.display(),
                name.to_string_lossy()
            ),
        )),
    }
}

/// Owner, xattrs, mode, capability, times, in the only order that keeps
/// them all: chown clears setuid/setgid and security.capability, and every
/// later change would bump the times.
fn apply_metadata(
    node: Node,
    st: &FileStat,
    xattrs: &[(OsString, Vec<u8>)],
    path: &Path,
) -> Result<()> {
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

    write_xattrs(node, xattrs.iter().filter(|(n, _)| n != CAPABILITY), path)?;

    // Linux has no modes on symlinks.
    if file_type(st) != SFlag::S_IFLNK {
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

/// Copies the data segments of `src` and sizes `dst` to `size`, so holes
/// stay holes.
fn copy_data(src: &File, dst: &File, size: i64, src_path: &Path, dst_path: &Path) -> Result<()> {
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
        copy_range(src, dst, start, end - start, src_path, dst_path)?;
        pos = end;
    }
    dst.set_len(size as u64)
        .map_err(|e| Error::io("sizing", dst_path, e))
}

fn copy_range(
    src: &File,
    dst: &File,
    start: i64,
    len: i64,
    src_path: &Path,
    dst_path: &Path,
) -> Result<()> {
    let shrank = || {
        let e = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being copied",
        );
        Error::io("copying", src_path, e)
    };
    let mut done = 0;
    while done < len {
        let mut off_in = start + done;
        let mut off_out = off_in;
        let want = (len - done).min(1 << 30) as usize;
        match fcntl::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => return Err(shrank()),
            Ok(n) => done += n as i64,
            // Not possible between these files: copy through memory.
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                return copy_by_reading(src, dst, start + done, len - done, src_path, dst_path)
                    .map_err(|e| e.unwrap_or_else(shrank));
            }
            Err(e @ (Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG)) => {
                return Err(Error::sys("writing", dst_path, e))
            }
            Err(e) => return Err(Error::sys("copying", src_path, e)),
        }
    }
    Ok(())
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
    let mut buf = vec![0u8; 128 * 1024];
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sparse_data_keeps_holes_and_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src_path = dir.path().join("src");
        let dst_path = dir.path().join("dst");
        let mut src = File::create(&src_path).expect("create src");
        src.write_all_at(b"middle", 1 << 20).expect("write middle");
        src.set_len(3 << 20).expect("extend");
        src.flush().expect("flush");
        let src = File::open(&src_path).expect("open src");
        let dst = File::create(&dst_path).expect("create dst");
        copy_data(&src, &dst, 3 << 20, &src_path, &dst_path).expect("copy");

        let data = std::fs::read(&dst_path).expect("read dst");
        assert_eq!(data.len(), 3 << 20);
        assert_eq!(&data[1 << 20..(1 << 20) + 6], b"middle");
        assert!(data[..1 << 20].iter().all(|&b| b == 0));
        let blocks = |p: &Path| stat::stat(p).expect("stat").st_blocks;
        assert!(blocks(&dst_path) <= blocks(&src_path) + 16);
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
