//! A read-only walk over a tree for sizes and fingerprints.
//!
//! Directories are opened relative to their parent's descriptor with
//! O_NOFOLLOW (a symlink is reported, never entered) and O_NOATIME, so
//! walking a captured tree does not change the access times it captured.
//! The walk stays on the root's filesystem.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use crate::error::{Error, Result};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOATIME);

/// Calls `f` with the status of `root` and of every entry below it.
pub fn for_each_entry(root: &Path, mut f: impl FnMut(&FileStat)) -> Result<()> {
    let fd = open_dir(None, root.as_os_str().as_bytes(), root)?;
    let st = fstat(fd.as_raw_fd()).map_err(|e| Error::sys("reading", root, e))?;
    f(&st);
    let dev = st.st_dev;
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(fd, root.to_path_buf())];
    while let Some((dir_fd, dir_path)) = stack.pop() {
        let names = list(&dir_fd, &dir_path)?;
        for name in names {
            let path = dir_path.join(&name);
            let st = match fstatat(
                Some(dir_fd.as_raw_fd()),
                name.as_os_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(Error::sys("reading", &path, e)),
            };
            f(&st);
            let is_dir =
                SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
            if is_dir && st.st_dev == dev {
                let child = open_dir(Some(&dir_fd), name.as_bytes(), &path)?;
                stack.push((child, path));
            }
        }
    }
    Ok(())
}

fn open_dir(parent: Option<&OwnedFd>, name: &[u8], path: &Path) -> Result<OwnedFd> {
    let name = std::ffi::OsStr::from_bytes(name);
    let opened = match parent {
        Some(p) => openat(Some(p.as_raw_fd()), name, DIR_FLAGS, Mode::empty()),
        None => nix::fcntl::open(name, DIR_FLAGS, Mode::empty()),
    };
    // O_NOATIME is refused (EPERM) for files the caller does not own unless root.
    let fd = match opened {
        Err(nix::errno::Errno::EPERM) => match parent {
            Some(p) => openat(
                Some(p.as_raw_fd()),
                name,
                DIR_FLAGS.difference(OFlag::O_NOATIME),
                Mode::empty(),
            ),
            None => nix::fcntl::open(name, DIR_FLAGS.difference(OFlag::O_NOATIME), Mode::empty()),
        },
        other => other,
    }
    .map_err(|e| Error::sys("opening directory", path, e))?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn list(dir: &OwnedFd, path: &Path) -> Result<Vec<OsString>> {
    let dup = nix::unistd::dup(dir.as_raw_fd()).map_err(|e| Error::sys("reading", path, e))?;
    let mut d = Dir::from_fd(dup).map_err(|e| Error::sys("reading", path, e))?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| Error::sys("reading", path, e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_everything_once_without_entering_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
        std::fs::write(d.path().join("a/b/f"), "x").expect("write");
        std::os::unix::fs::symlink("/etc", d.path().join("a/etc")).expect("symlink");
        let mut n = 0;
        for_each_entry(d.path(), |_| n += 1).expect("walk");
        assert_eq!(n, 5, "root, a, a/b, a/b/f, a/etc");
    }
}
