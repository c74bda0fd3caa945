//! Directories that appear only when complete, and reading files someone
//! else may control.
//!
//! - [`Staging`]: a directory built under a hidden temporary name
//!   (`.lxc-snap.tmp.<final>.<random>`) in a held [`Dir`] while an flock on
//!   it says "in use", then flushed and renamed into place without
//!   replacing anything. If the process dies first, the next run finds the
//!   unlocked temp directory and removes it ([`remove_leftovers`]).
//! - [`read_untrusted`]: reads a file the user named (a comment file)
//!   without following a symlink anywhere in its path and without reading
//!   more than a limit.
//!
//! Files are replaced atomically by [`Dir::write_file`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::dir::{self, Dir, TEMP_PREFIX};
use crate::error::{Error, ErrorKind, Result};

/// Prefix of every staging directory lxc-snap creates.
pub const STAGING_PREFIX: &str = TEMP_PREFIX;

/// Reads at most `limit` bytes from `path` (or standard input for `-`),
/// refusing a path with a symlink anywhere in it and anything that is not
/// a regular file or a pipe. A user who can write a directory on the way
/// cannot make it lead to a file only root may read.
pub fn read_untrusted(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut data = Vec::new();
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::io("reading", Path::new("standard input"), e))?;
        if data.len() as u64 > limit {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("reading {what} from standard input: longer than {limit} bytes"),
            ));
        }
        return Ok(data);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let file = dir::open_without_symlinks(path, flags).map_err(|e| match e {
        Errno::ELOOP => Error::new(
            ErrorKind::Usage,
            format!(
                "reading {what} {}: a symlink is in its path; give the file itself, by a path without symlinks",
                path.display()
            ),
        ),
        // A file named on the command line: a usage error (exit 2), not
        // a container or snapshot that is not there (3).
        Errno::ENOENT => Error::new(
            ErrorKind::Usage,
            format!("reading {what} {}: No such file or directory", path.display()),
        ),
        e => Error::sys("reading", path, e),
    })?;
    dir::read_bounded(file, limit, what, path)
}

/// A directory under construction. Dropped without [`Staging::commit`], it
/// is removed.
pub struct Staging {
    parent: Dir,
    /// Its temporary name in `parent`.
    name: OsString,
    final_name: String,
    dir: Dir,
    lock: Option<Flock<File>>,
}

impl Staging {
    /// Creates `<parent>/.lxc-snap.tmp.<final_name>.<random>` with exactly
    /// `mode` and holds an exclusive flock on it until commit or drop.
    pub fn create(parent: &Dir, final_name: &str, mode: u32) -> Result<Staging> {
        let (name, dir) = loop {
            let name = OsString::from(format!(
                "{STAGING_PREFIX}{final_name}.{}",
                dir::random_suffix()
            ));
            match parent.mkdir(&name, mode) {
                Ok(dir) => break (name, dir),
                Err(e) if e.kind() == ErrorKind::Exists => continue,
                Err(e) => return Err(e),
            }
        };
        let locked = dir
            .file()
            .try_clone()
            .map_err(|e| Error::io("opening", dir.path(), e))
            .and_then(|f| {
                Flock::lock(f, FlockArg::LockExclusiveNonblock)
                    .map_err(|(_, e)| Error::sys("locking", dir.path(), e))
            });
        let lock = match locked {
            Ok(lock) => lock,
            Err(e) => {
                let _ = parent.remove_tree(&name);
                return Err(e);
            }
        };
        Ok(Staging {
            parent: parent.try_clone()?,
            name,
            final_name: final_name.to_string(),
            dir,
            lock: Some(lock),
        })
    }

    /// Where the directory is being built now, for messages.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory being built.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Its temporary name in its parent.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The path the directory will have once committed.
    pub fn final_path(&self) -> PathBuf {
        self.parent.join(&self.final_name)
    }

    /// Flushes the filesystem, then renames the directory to its final name,
    /// refusing to replace anything that exists there.
    pub fn commit(mut self) -> Result<PathBuf> {
        self.sync()?;
        self.parent
            .rename_new(&self.name, &self.parent, &self.final_name)?;
        self.lock = None;
        Ok(self.final_path())
    }

    /// [`Staging::commit`] to another final name than the one it was
    /// created for (one that is not UTF-8, say).
    pub fn commit_as(mut self, final_name: &OsStr) -> Result<()> {
        self.sync()?;
        self.parent
            .rename_new(&self.name, &self.parent, final_name)?;
        self.lock = None;
        Ok(())
    }

    /// Flushes the filesystem, then swaps the directory with what has its
    /// final name (RENAME_EXCHANGE); returns the staging name, which now
    /// holds what was there, for the caller to remove (a run that dies
    /// first leaves it as a leftover).
    pub fn commit_exchanging(mut self) -> Result<OsString> {
        self.sync()?;
        self.parent
            .exchange(&self.name, &self.parent, &self.final_name)?;
        self.lock = None;
        Ok(std::mem::take(&mut self.name))
    }

    /// Swaps `inner` (an entry of the staging directory) with `target` in
    /// `target_dir` in one atomic rename (RENAME_EXCHANGE): `target` then
    /// holds what was built and `inner` what was there before, which goes
    /// with the staging directory when it is dropped. A crash leaves
    /// either the old or the new tree at `target`, never a mix and never
    /// nothing.
    pub fn exchange(&self, inner: &OsStr, target_dir: &Dir, target: &OsStr) -> Result<()> {
        self.dir.exchange(inner, target_dir, target)
    }

    /// Flushes the filesystem the staging directory lives on.
    pub fn sync(&self) -> Result<()> {
        self.dir.sync_filesystem()
    }

    /// Removes the staging directory now, reporting what stopped it (a
    /// mount inside, say); dropping it does the same silently.
    pub fn discard(mut self) -> Result<()> {
        self.lock = None;
        self.parent.remove_tree(&self.name)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.lock.is_some() {
            // Best effort: what cannot be removed now is removed as a
            // leftover next time.
            let _ = self.parent.remove_tree(&self.name);
        }
    }
}

/// Removes the staging directories in `parent` left by runs that died,
/// for the final names that `owned` accepts, after `before_remove(dir,
/// final_name)` has undone what else the dead run did; returns what it
/// removed.
///
/// The caller holds the lock that every creator of such a final name takes,
/// so no live run can be between creating a staging directory and locking
/// it; the flock check is a second guard.
pub fn remove_leftovers(
    parent: &Dir,
    owned: impl Fn(&str) -> bool,
    mut before_remove: impl FnMut(&Dir, &str),
) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for name in parent.names()? {
        let Some(final_name) = staged_final_name(&name) else {
            continue;
        };
        if !owned(&final_name) {
            continue;
        }
        // Not a directory, or not one to open: not ours.
        let Ok(dir) = parent.open_dir(&name) else {
            continue;
        };
        let Ok(file) = dir.file().try_clone() else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // a live run owns it
        };
        before_remove(&dir, &final_name);
        drop(dir);
        parent
            .remove_tree(&name)
            .map_err(|e| e.prefixed("removing a leftover"))?;
        drop(lock);
        removed.push(parent.join(&name));
    }
    Ok(removed)
}

/// `.lxc-snap.tmp.<final>.<random>` -> `<final>`.
pub fn staged_final_name(name: &OsStr) -> Option<String> {
    let rest = name.to_str()?.strip_prefix(STAGING_PREFIX)?;
    let (final_name, _random) = rest.rsplit_once('.')?;
    Some(final_name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir(p: &Path) -> Dir {
        Dir::open_given(p, "opening").expect("open")
    }

    #[test]
    fn staging_appears_only_on_commit_and_never_replaces() {
        let d = tempfile::tempdir().expect("tempdir");
        let parent = dir(d.path());
        let s = Staging::create(&parent, "c_0", 0o755).expect("create");
        s.dir().write_file("f", b"x", 0o644).expect("write");
        assert!(!d.path().join("c_0").exists());
        let done = s.commit().expect("commit");
        assert_eq!(fs::read(done.join("f")).expect("read"), b"x");

        let again = Staging::create(&parent, "c_0", 0o755).expect("create");
        let tmp = again.path().to_path_buf();
        let err = again.commit().expect_err("must not replace");
        assert_eq!(err.kind(), ErrorKind::Exists);
        assert!(!tmp.exists(), "failed staging is removed");
        assert_eq!(fs::read(d.path().join("c_0/f")).expect("read"), b"x");
    }

    #[test]
    fn leftovers_are_removed_unless_locked() {
        let d = tempfile::tempdir().expect("tempdir");
        let parent = dir(d.path());
        let live = Staging::create(&parent, "c_1", 0o755).expect("create");
        let dead = d.path().join(format!("{STAGING_PREFIX}c_2.abc"));
        fs::create_dir_all(dead.join("sub")).expect("mkdir");
        let other = d.path().join(format!("{STAGING_PREFIX}d_0.abc"));
        fs::create_dir(&other).expect("mkdir");
        let removed =
            remove_leftovers(&parent, |n| n.starts_with("c_"), |_, _| {}).expect("cleanup");
        assert_eq!(removed, std::slice::from_ref(&dead));
        assert!(live.path().exists());
        assert!(
            other.exists(),
            "another container's leftovers are its own business"
        );
        assert!(!dead.exists());
    }

    #[test]
    fn read_untrusted_refuses_symlinks_anywhere_and_oversize() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir(d.path().join("real")).expect("mkdir");
        let f = d.path().join("real/c");
        fs::write(&f, "hello").expect("write");
        assert_eq!(
            read_untrusted(&f, 5, "comment file").expect("read"),
            b"hello"
        );
        assert_eq!(
            read_untrusted(&f, 4, "comment file")
                .expect_err("too big")
                .kind(),
            ErrorKind::Usage
        );
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&f, &l).expect("symlink");
        let err = read_untrusted(&l, 100, "comment file").expect_err("symlink");
        assert!(err.to_string().contains("symlink"), "{err}");
        // A symlinked directory on the way is refused too.
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("ld")).expect("symlink");
        let err = read_untrusted(&d.path().join("ld/c"), 100, "comment file")
            .expect_err("symlinked parent");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(
            read_untrusted(d.path(), 100, "comment file")
                .expect_err("dir")
                .kind(),
            ErrorKind::Usage
        );
    }
}
