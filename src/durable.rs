//! Writes that must not be torn, and directories that appear only when complete.
//!
//! - [`write_atomic`]: a temp file in the same directory, fsync, rename,
//!   fsync the directory. Readers see the old or the new file, never a mix.
//! - [`Staging`]: a directory built under a hidden temporary name
//!   (`.lxc-snap.tmp.<final>.<random>`) while an flock on it says "in use",
//!   then flushed and renamed into place without replacing anything. If the
//!   process dies first, the next run finds the unlocked temp directory and
//!   removes it ([`remove_leftovers`]).
//! - [`read_untrusted`]: reads a file that someone else may control without
//!   following a symlink and without reading more than a limit.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, ErrorKind, Result};

/// Prefix of every staging directory lxc-snap creates.
pub const STAGING_PREFIX: &str = ".lxc-snap.tmp.";

/// Replaces `path` with `contents` atomically, with permission bits `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    let io = |e| Error::io("writing", path, e);
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.write_all(contents).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path)
        .map_err(|e| Error::io("replacing", path, e.error))?;
    sync_dir(dir)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

/// Reads at most `limit` bytes from `path` (or standard input for `-`),
/// refusing symlinks and anything that is not a regular file or a pipe.
pub fn read_untrusted(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let too_big = || {
        Error::new(
            ErrorKind::Usage,
            format!(
                "reading {what} {}: longer than {limit} bytes",
                path.display()
            ),
        )
    };
    if path == Path::new("-") {
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::io("reading", Path::new("standard input"), e))?;
    } else {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => Error::new(
                    ErrorKind::Usage,
                    format!(
                        "reading {what} {}: it is a symlink; give the file itself",
                        path.display()
                    ),
                ),
                Some(libc::ENOENT) => Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "reading {what} {}: No such file or directory",
                        path.display()
                    ),
                ),
                _ => Error::io("reading", path, e),
            })?;
        let meta = file.metadata().map_err(|e| Error::io("reading", path, e))?;
        if !meta.file_type().is_file() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("reading {what} {}: not a regular file", path.display()),
            ));
        }
        file.take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::io("reading", path, e))?;
    }
    if data.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(data)
}

/// Copies a small regular file (a config's fstab or hook script) to `to`,
/// creating `to`'s parent directories and keeping the permission bits.
/// A symlink or anything but a regular file at `from` is refused.
pub fn copy_small_file(from: &Path, to: &Path) -> Result<()> {
    const LIMIT: u64 = 16 << 20;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(from)
        .map_err(|e| Error::io("opening", from, e))?;
    let meta = file.metadata().map_err(|e| Error::io("reading", from, e))?;
    if !meta.file_type().is_file() || meta.len() > LIMIT {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "copying {}: not a regular file of at most 16 MiB",
                from.display()
            ),
        ));
    }
    let mut data = Vec::new();
    file.take(LIMIT)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("reading", from, e))?;
    let parent = parent_of(to);
    fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    write_atomic(to, &data, meta.permissions().mode() & 0o7777)
}

/// A directory under construction. Dropped without [`Staging::commit`], it
/// is removed.
pub struct Staging {
    parent: PathBuf,
    path: PathBuf,
    final_name: String,
    lock: Option<Flock<File>>,
}

impl Staging {
    /// Creates `<parent>/.lxc-snap.tmp.<final_name>.<random>` with `mode`
    /// and holds an exclusive flock on it until commit or drop.
    pub fn create(parent: &Path, final_name: &str, mode: u32) -> Result<Staging> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{STAGING_PREFIX}{final_name}."))
            .permissions(fs::Permissions::from_mode(mode))
            .tempdir_in(parent)
            .map_err(|e| Error::io("creating a staging directory in", parent, e))?;
        let path = dir.keep();
        // The umask may have taken bits away from `mode`.
        if let Err(e) = fs::set_permissions(&path, fs::Permissions::from_mode(mode)) {
            let _ = fs::remove_dir_all(&path);
            return Err(Error::io("setting the mode of", &path, e));
        }
        let locked = File::open(&path)
            .map_err(|e| Error::io("opening", &path, e))
            .and_then(|f| {
                Flock::lock(f, FlockArg::LockExclusiveNonblock)
                    .map_err(|(_, e)| Error::sys("locking", &path, e))
            });
        let lock = match locked {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&path);
                return Err(e);
            }
        };
        Ok(Staging {
            parent: parent.to_path_buf(),
            path,
            final_name: final_name.to_string(),
            lock: Some(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path the directory will have once committed.
    pub fn final_path(&self) -> PathBuf {
        self.parent.join(&self.final_name)
    }

    /// Flushes the filesystem, then renames the directory to its final name,
    /// refusing to replace anything that exists there.
    pub fn commit(mut self) -> Result<PathBuf> {
        self.sync()?;
        let target = self.final_path();
        nix::fcntl::renameat2(
            None,
            &self.path,
            None,
            &target,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EEXIST => Error::new(
                ErrorKind::Exists,
                format!("creating {}: it already exists", target.display()),
            ),
            e => Error::sys("renaming into place", &target, e),
        })?;
        self.lock = None;
        self.path = target.clone();
        sync_dir(&self.parent)?;
        Ok(target)
    }
}

impl Staging {
    /// Swaps `inner` (a path inside the staging directory) with `target` in
    /// one atomic rename (RENAME_EXCHANGE): `target` then holds what was
    /// built and `inner` what was there before, which goes with the staging
    /// directory when it is dropped. A crash leaves either the old or the
    /// new tree at `target`, never a mix and never nothing.
    pub fn exchange(&self, inner: &Path, target: &Path) -> Result<()> {
        nix::fcntl::renameat2(
            None,
            inner,
            None,
            target,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| Error::sys("swapping in the new tree at", target, e))?;
        sync_dir(parent_of(target))?;
        sync_dir(parent_of(inner))
    }

    /// Flushes the filesystem the staging directory lives on.
    pub fn sync(&self) -> Result<()> {
        let dir = File::open(&self.path).map_err(|e| Error::io("opening", &self.path, e))?;
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir))
            .map_err(|e| Error::sys("flushing the filesystem of", &self.path, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.lock.is_some() {
            // Best effort: what cannot be removed now is removed as a leftover next time.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the staging directories in `parent` left by runs that died,
/// for the final names that `owned` accepts, after `before_remove(path,
/// final_name)` has undone what else the dead run did; returns what it
/// removed.
///
/// The caller holds the lock that every creator of such a final name takes,
/// so no live run can be between creating a staging directory and locking
/// it; the flock check is a second guard.
pub fn remove_leftovers(
    parent: &Path,
    owned: impl Fn(&str) -> bool,
    mut before_remove: impl FnMut(&Path, &str),
) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io("reading", parent, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading", parent, e))?;
        let Some(final_name) = staged_final_name(&entry.file_name()) else {
            continue;
        };
        if !owned(&final_name) {
            continue;
        }
        let path = entry.path();
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir());
        if !is_dir {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // a live run owns it
        };
        before_remove(&path, &final_name);
        fs::remove_dir_all(&path).map_err(|e| Error::io("removing leftover", &path, e))?;
        drop(lock);
        removed.push(path);
    }
    Ok(removed)
}

/// `.lxc-snap.tmp.<final>.<random>` -> `<final>`.
fn staged_final_name(name: &OsStr) -> Option<String> {
    let rest = name.to_str()?.strip_prefix(STAGING_PREFIX)?;
    let (final_name, _random) = rest.rsplit_once('.')?;
    Some(final_name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("meta");
        write_atomic(&p, b"one", 0o644).expect("first write");
        write_atomic(&p, b"two", 0o600).expect("second write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(
            fs::metadata(&p).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["meta"]);
    }

    #[test]
    fn staging_appears_only_on_commit_and_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Staging::create(dir.path(), "c_0", 0o755).expect("create");
        fs::write(s.path().join("f"), "x").expect("write");
        assert!(!dir.path().join("c_0").exists());
        let done = s.commit().expect("commit");
        assert_eq!(fs::read(done.join("f")).expect("read"), b"x");

        let again = Staging::create(dir.path(), "c_0", 0o755).expect("create");
        let tmp = again.path().to_path_buf();
        let err = again.commit().expect_err("must not replace");
        assert_eq!(err.kind(), ErrorKind::Exists);
        assert!(!tmp.exists(), "failed staging is removed");
        assert_eq!(fs::read(dir.path().join("c_0/f")).expect("read"), b"x");
    }

    #[test]
    fn leftovers_are_removed_unless_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = Staging::create(dir.path(), "c_1", 0o755).expect("create");
        let dead = dir.path().join(format!("{STAGING_PREFIX}c_2.abc"));
        fs::create_dir_all(dead.join("sub")).expect("mkdir");
        let other = dir.path().join(format!("{STAGING_PREFIX}d_0.abc"));
        fs::create_dir(&other).expect("mkdir");
        let removed =
            remove_leftovers(dir.path(), |n| n.starts_with("c_"), |_, _| {}).expect("cleanup");
        assert_eq!(removed, std::slice::from_ref(&dead));
        assert!(live.path().exists());
        assert!(
            other.exists(),
            "another container's leftovers are its own business"
        );
        assert!(!dead.exists());
    }

    #[test]
    fn read_untrusted_refuses_symlinks_and_oversize() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c");
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
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &l).expect("symlink");
        let err = read_untrusted(&l, 100, "comment file").expect_err("symlink");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(
            read_untrusted(dir.path(), 100, "comment file")
                .expect_err("dir")
                .kind(),
            ErrorKind::Usage
        );
    }
}
