//! A read-only walk over a tree for sizes and fingerprints.
//!
//! Directories are opened relative to their parent's descriptor with
//! O_NOFOLLOW (a symlink is reported, never entered) and O_NOATIME, so
//! walking a captured tree does not change the access times it captured.
//! The walk stays on the root's filesystem. It goes depth first and holds
//! one descriptor and one listing per level of the directory it is in, so
//! a directory with many subdirectories costs no more descriptors than
//! one with a single one, and a deep tree costs one name a level, not its
//! whole path.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use crate::dir::{list_names, open_at, raise_fd_limit, Dir};
use crate::error::{Error, Result};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOATIME);

/// One directory being walked: it, its name, the names left in it.
struct Level {
    dir: File,
    name: OsString,
    todo: Vec<OsString>,
}

/// Calls `f` with the status of `root` and of every entry below it.
pub fn for_each_entry(root: &Dir, f: impl FnMut(&FileStat)) -> Result<()> {
    for_each_entry_but(root, &[], f)
}

/// [`for_each_entry`], leaving out the entries at `skip` (paths relative
/// to `root`) and everything below them.
pub fn for_each_entry_but(
    root: &Dir,
    skip: &[&std::path::Path],
    mut f: impl FnMut(&FileStat),
) -> Result<()> {
    let skipped = |stack: &[Level], last: &OsString| {
        !skip.is_empty() && {
            let mut rel = PathBuf::new();
            rel.extend(stack.iter().skip(1).map(|l| &l.name));
            rel.push(last);
            skip.iter().any(|s| *s == rel)
        }
    };
    let top = root
        .file()
        .try_clone()
        .map_err(|e| Error::io("opening", root.path(), e))?;
    let st = fstat(top.as_raw_fd()).map_err(|e| Error::sys("reading", root.path(), e))?;
    f(&st);
    let dev = st.st_dev;
    let path_of = |stack: &[Level], last: &OsString| -> PathBuf {
        let mut p = root.path().to_path_buf();
        p.extend(stack.iter().skip(1).map(|l| &l.name));
        p.push(last);
        p
    };
    let todo = list_names(&top).map_err(|e| Error::sys("reading", root.path(), e))?;
    let mut stack = vec![Level {
        dir: top,
        name: OsString::new(),
        todo,
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.todo.pop() else {
            stack.pop();
            continue;
        };
        if skipped(&stack, &name) {
            continue;
        }
        let Some(level) = stack.last_mut() else {
            break;
        };
        let st = match fstatat(
            Some(level.dir.as_raw_fd()),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(Error::sys("reading", &path_of(&stack, &name), e)),
        };
        f(&st);
        let is_dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
        if !is_dir || st.st_dev != dev {
            continue;
        }
        let child = open_dir(&level.dir, &name)
            .map_err(|e| Error::sys("opening directory", &path_of(&stack, &name), e))?;
        let todo =
            list_names(&child).map_err(|e| Error::sys("reading", &path_of(&stack, &name), e))?;
        raise_fd_limit(stack.len() as u64 + 1);
        stack.push(Level {
            dir: child,
            name,
            todo,
        });
    }
    Ok(())
}

fn open_dir(parent: &File, name: &OsString) -> nix::Result<File> {
    open_at(Some(parent), name.as_os_str(), DIR_FLAGS, Mode::empty())
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
        let root = Dir::open_given(d.path(), "walking").expect("open");
        for_each_entry(&root, |_| n += 1).expect("walk");
        assert_eq!(n, 5, "root, a, a/b, a/b/f, a/etc");
    }
}
