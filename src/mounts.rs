//! Every mount lxc-snap makes or removes goes through here, by descriptor.
//!
//! A mount is built detached and read-only from the start (`fsopen`,
//! `fsconfig`, `fsmount` for an overlay; `open_tree` and `mount_setattr`
//! for a bind mount), and attached with `move_mount` onto a directory held
//! open, so there is no moment at which it is writable and no way to move
//! it elsewhere by swapping a path. The layers of an overlay are passed as
//! descriptors too. An unmount goes through a descriptor of the mount's
//! own root, checked against the mount table first.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};

const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_SET_FD: u32 = 5;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const OPEN_TREE_CLONE: u32 = 1;

/// What every snapshot mount is: read-only, no setuid, no devices.
const SAFE: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    /// The directory of the mounted filesystem that is mounted.
    pub root: PathBuf,
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// The mount table of this process's namespace.
pub fn table() -> Result<Vec<MountEntry>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    Some(MountEntry {
        id: fields.first()?.parse().ok()?,
        root: PathBuf::from(unescape(fields.get(3)?)),
        point: PathBuf::from(unescape(fields.get(4)?)),
        fstype: (*fields.get(sep + 1)?).to_string(),
        source: unescape(fields.get(sep + 2)?),
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The mount points strictly below `dir`, from the mount table.
pub fn mounts_below(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(table()?
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p != dir && p.starts_with(dir))
        .collect())
}

/// Opens the directory the user named as a mount point (or a mount to
/// remove): the whole path resolved without following any symlink, so no
/// one who can write a directory on the way can point it elsewhere.
pub fn open_target(path: &Path) -> Result<File> {
    crate::dir::open_without_symlinks(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| match e {
        Errno::ELOOP => Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing {}: a symlink is in its path; give the directory by a path without symlinks",
                path.display()
            ),
        ),
        Errno::ENOENT => Error::new(
            ErrorKind::Usage,
            format!("cannot use {}: it does not exist", path.display()),
        ),
        Errno::ENOTDIR => Error::new(
            ErrorKind::Usage,
            format!("cannot use {}: not a directory", path.display()),
        ),
        e => Error::sys("opening", path, e),
    })
}

/// Mounts a read-only overlay of `layers` (top first, no upper) on the
/// directory `target`, with `source` as its mount source.
pub fn mount_overlay(
    layers: &[&Dir],
    target: &File,
    target_path: &Path,
    source: &str,
) -> Result<()> {
    let overlay = || {
        let fs = fsopen("overlay")?;
        fsconfig_string(&fs, "source", source)?;
        Ok(fs)
    };
    let preparing = |e| Error::sys("preparing an overlay for", target_path, e);
    // Each layer by descriptor where the kernel takes them so (6.13 on);
    // else, on a fresh one, by the descriptor's /proc path, which resolves
    // to the same directory whatever happens to the path it was opened by.
    let fs = overlay().map_err(preparing)?;
    let by_fd = layers
        .iter()
        .try_for_each(|l| fsconfig_fd(&fs, "lowerdir+", l.file().as_raw_fd()));
    if by_fd.is_ok() {
        return attach(&fs, target, target_path);
    }
    let fs = overlay().map_err(preparing)?;
    let lowerdir = layers
        .iter()
        .map(|l| format!("/proc/self/fd/{}", l.file().as_raw_fd()))
        .collect::<Vec<_>>()
        .join(":");
    fsconfig_string(&fs, "lowerdir", &lowerdir)
        .map_err(|e| Error::sys("mounting an overlay on", target_path, e))?;
    attach(&fs, target, target_path)
}

/// Creates the filesystem configured on `fs`, mounts it read-only and
/// attaches it on `target`.
fn attach(fs: &File, target: &File, target_path: &Path) -> Result<()> {
    let err = |e: Errno| Error::sys("mounting an overlay on", target_path, e);
    fsconfig(fs, FSCONFIG_CMD_CREATE, None, None, 0).map_err(err)?;
    let mnt = fsmount(fs, SAFE).map_err(err)?;
    move_mount(&mnt, target).map_err(err)
}

/// Bind-mounts the directory `tree` on `target`, read-only before it is
/// attached.
pub fn bind_read_only(tree: &Dir, target: &File, target_path: &Path) -> Result<()> {
    let err = |e: Errno| Error::sys("bind-mounting on", target_path, e);
    let clone = open_tree(tree.file()).map_err(err)?;
    mount_setattr(&clone, SAFE).map_err(err)?;
    move_mount(&clone, target).map_err(err)
}

/// The mount whose root `dir` is (a descriptor opened on a mount point
/// resolves into what is mounted there), from the mount table.
pub fn mount_of(dir: &File) -> Result<Option<MountEntry>> {
    let Ok(Some(id)) = crate::dir::mount_id(dir) else {
        return Ok(None);
    };
    Ok(table()?.into_iter().find(|m| m.id == id))
}

/// Detaches the mount whose root `dir` is: through the descriptor, so it
/// is exactly the mount that was checked, whatever its path names now. The
/// descriptor itself keeps the mount busy, so it is detached (as
/// `umount -l` does): it leaves the namespace at once, and a process still
/// inside keeps its view until it leaves.
pub fn unmount(dir: &File, path: &Path) -> Result<()> {
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    nix::mount::umount2(&by_fd, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| Error::sys("unmounting", path, e))
}

fn fsopen(fstype: &str) -> nix::Result<File> {
    let name = CString::new(fstype).map_err(|_| Errno::EINVAL)?;
    // SAFETY: fsopen(2) with a NUL-terminated name; returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) };
    owned(fd)
}

fn fsconfig(
    fs: &File,
    cmd: u32,
    key: Option<&CString>,
    value: Option<&CString>,
    aux: i32,
) -> nix::Result<()> {
    // SAFETY: fsconfig(2) on a descriptor we own, with NUL-terminated
    // strings or null pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.map_or(std::ptr::null(), |k| k.as_ptr()),
            value.map_or(std::ptr::null(), |v| v.as_ptr()),
            aux,
        )
    };
    Errno::result(rc).map(drop)
}

fn fsconfig_string(fs: &File, key: &str, value: &str) -> nix::Result<()> {
    let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
    let value = CString::new(value).map_err(|_| Errno::EINVAL)?;
    fsconfig(fs, FSCONFIG_SET_STRING, Some(&key), Some(&value), 0)
}

fn fsconfig_fd(fs: &File, key: &str, fd: RawFd) -> nix::Result<()> {
    let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
    fsconfig(fs, FSCONFIG_SET_FD, Some(&key), None, fd)
}

fn fsmount(fs: &File, attrs: u64) -> nix::Result<File> {
    // SAFETY: fsmount(2) on a descriptor we own; returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    owned(fd)
}

fn open_tree(dir: &File) -> nix::Result<File> {
    let empty = c"";
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32;
    // SAFETY: open_tree(2) of a descriptor we own with the empty path.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), empty.as_ptr(), flags) };
    owned(fd)
}

/// `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_setattr(mnt: &File, set: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) on a descriptor we own, with a mount_attr of
    // the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

fn move_mount(mnt: &File, target: &File) -> nix::Result<()> {
    let empty = c"";
    // SAFETY: move_mount(2) between two descriptors we own, empty paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}

fn owned(fd: libc::c_long) -> nix::Result<File> {
    let fd = Errno::result(fd)? as RawFd;
    // SAFETY: the syscall just returned this descriptor and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let line =
            "36 35 98:0 /a\\040b /mnt/x\\040y rw,noatime master:1 - overlay lxc-snap ro,lowerdir=x";
        let m = parse_line(line).expect("parses");
        assert_eq!(m.id, 36);
        assert_eq!(m.root, PathBuf::from("/a b"));
        assert_eq!(m.point, PathBuf::from("/mnt/x y"));
        assert_eq!(m.fstype, "overlay");
        assert_eq!(m.source, "lxc-snap");
    }
}
