//! Directories held open, and which directories lxc-snap trusts.
//!
//! lxc-snap runs as root over the snapdir, the lxcpath and container
//! directories, any of which a path may name differently a moment later.
//! So a directory is resolved once, one component at a time from `/`,
//! checked, and from then on used through the descriptor a [`Dir`] holds:
//! entries below it are created, opened, renamed and removed relative to
//! it (`openat`, `mkdirat`, `renameat2`, `unlinkat`), never by a path
//! joined after the check. A `Dir`'s path is for messages and for the
//! values written into configs, never for finding it again.
//!
//! A directory is trusted when nobody but root can change what it holds:
//! it is owned by root, not writable by others, and writable by its group
//! only if that group is root's (LXC makes container directories 0770
//! root:root). Every directory above it must be trusted too, except that a
//! world-writable one with the sticky bit (such as `/tmp`) may hold it: in
//! such a directory only an entry's owner, here root, can rename or remove
//! it. A symlink on the way is followed only when root owns it (it is in a
//! trusted directory, so only root could have made it). Nothing turns the
//! check off; it applies when lxc-snap runs as root, the only case in which
//! someone else's directory could make it do what its user cannot.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir as DirStream;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, UnlinkatFlags};

use crate::error::{Error, ErrorKind, Result};

/// Prefix of the temporary names lxc-snap gives what it is building.
pub const TEMP_PREFIX: &str = ".lxc-snap.tmp.";

/// Symlinks followed while resolving one path, as the kernel allows.
const MAX_SYMLINKS: usize = 40;

/// An open directory and the path it had when it was opened.
#[derive(Debug)]
pub struct Dir {
    file: File,
    path: PathBuf,
}

/// How much of a path below a [`Dir`] must be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Below {
    /// Every directory on the way and the last one.
    All,
    /// Every directory on the way; the last one may belong to anyone (the
    /// root of a container's tree, which an unprivileged container's root
    /// owns). Its contents are never trusted anyway.
    Parents,
    /// Nothing is checked, but no symlink is followed (a tree lxc-snap made
    /// itself, inside a trusted directory).
    Nothing,
    /// Every directory on the way and the last one, each root's or owned
    /// by this uid and group (an unprivileged container's mapped root,
    /// which LXC gives the container's directory), and writable by no one
    /// else.
    AllOwnedBy(u32, u32),
}

impl Dir {
    /// Resolves `path` as described in the module documentation and opens
    /// it; when lxc-snap runs as root, refuses ([`ErrorKind::Unsafe`]) a
    /// directory on the way that someone else could change. With `create`,
    /// missing directories are made with that mode (and root's owner).
    /// `what` names the directory in messages (`snapdir`, `lxcpath`).
    pub fn open_trusted(path: &Path, create: Option<u32>, what: &str) -> Result<Dir> {
        Resolver::new(path, what, nix::unistd::geteuid().is_root(), true)?.run(create)
    }

    /// [`Dir::open_trusted`] for the root of a tree that may belong to
    /// anyone (an unprivileged container's): every directory on the way is
    /// checked, the last one is not.
    pub fn open_trusted_parents(path: &Path, what: &str) -> Result<Dir> {
        Resolver::new(path, what, nix::unistd::geteuid().is_root(), false)?.run(None)
    }

    /// Opens a directory the caller names and vouches for up to its last
    /// component, which must be a directory and is not followed if it is a
    /// symlink.
    pub fn open_given(path: &Path, op: &str) -> Result<Dir> {
        let st = stat::lstat(path).map_err(|e| Error::sys(op, path, e))?;
        if kind(&st) != SFlag::S_IFDIR {
            let why = if kind(&st) == SFlag::S_IFLNK {
                "is a symbolic link, refusing to follow it"
            } else {
                "not a directory"
            };
            return Err(Error::new(
                ErrorKind::Other,
                format!("{op} {}: {why}", path.display()),
            ));
        }
        let file = open_at(None, path.as_os_str(), dir_flags(), Mode::empty())
            .map_err(|e| Error::sys(op, path, e))?;
        let now = fstat(&file, path)?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            return Err(Error::new(
                ErrorKind::Other,
                format!("{op} {}: changed while being opened", path.display()),
            ));
        }
        Ok(Dir {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A directory opened by other means (beneath a [`Dir`], checked to be
    /// the inode inspected) and the path it had then.
    pub(crate) fn held(file: File, path: PathBuf) -> Dir {
        Dir { file, path }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path of `name` in this directory, for messages and configs.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    pub fn try_clone(&self) -> Result<Dir> {
        Ok(Dir {
            file: self
                .file
                .try_clone()
                .map_err(|e| Error::io("opening", &self.path, e))?,
            path: self.path.clone(),
        })
    }

    /// Gives the directory itself to `uid` and `gid`.
    pub fn chown(&self, uid: u32, gid: u32) -> Result<()> {
        nix::unistd::fchown(
            self.file.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| Error::sys("changing the owner of", &self.path, e))
    }

    /// The directory's own status.
    pub fn stat(&self) -> Result<FileStat> {
        fstat(&self.file, &self.path)
    }

    /// The status of `name` here, not following it; `None` if it is not there.
    pub fn stat_at(&self, name: impl AsRef<OsStr>) -> Result<Option<FileStat>> {
        let name = self.component(name.as_ref())?;
        match stat::fstatat(
            Some(self.file.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::sys("inspecting", &self.join(name), e)),
        }
    }

    /// The subdirectory `name`, not following a symlink.
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> Result<Dir> {
        let name = self.component(name.as_ref())?;
        let path = self.join(name);
        match open_at(Some(&self.file), name, dir_flags(), Mode::empty()) {
            Ok(file) => Ok(Dir { file, path }),
            Err(Errno::ENOENT) => Err(Error::new(
                ErrorKind::NotFound,
                format!("opening {}: No such file or directory", path.display()),
            )),
            Err(Errno::ELOOP | Errno::ENOTDIR)
                if self
                    .stat_at(name)?
                    .is_some_and(|st| kind(&st) == SFlag::S_IFLNK) =>
            {
                Err(Error::new(
                    ErrorKind::Unsafe,
                    format!(
                        "opening {}: is a symbolic link, refusing to follow it",
                        path.display()
                    ),
                ))
            }
            Err(e) => Err(Error::sys("opening", &path, e)),
        }
    }

    /// The directory `rel` below this one (relative, without `..`),
    /// resolved one component at a time without following any symlink and
    /// checked as `below` says.
    pub fn open_below(&self, rel: &Path, below: Below) -> Result<Dir> {
        let parts = plain_components(rel).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsafe,
                format!(
                    "opening {}: not a plain path below {}",
                    rel.display(),
                    self.path.display()
                ),
            )
        })?;
        let mut dir = self.try_clone()?;
        let last = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let next = dir.open_dir(part)?;
            let checked = match below {
                Below::All | Below::AllOwnedBy(..) => true,
                Below::Parents => i + 1 < last,
                Below::Nothing => false,
            };
            if checked && nix::unistd::geteuid().is_root() {
                let st = next.stat()?;
                match below {
                    Below::AllOwnedBy(uid, gid) => check_owned_by(&st, &next.path, uid, gid)?,
                    _ => check_trusted(&st, &next.path, true, "using")?,
                }
            }
            dir = next;
        }
        Ok(dir)
    }

    /// Creates the subdirectory `name` with exactly `mode` (whatever the
    /// umask) and opens it. It stays private (0700) until it has its mode.
    pub fn mkdir(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<Dir> {
        let name = self.component(name.as_ref())?;
        let path = self.join(name);
        stat::mkdirat(Some(self.file.as_raw_fd()), name, Mode::S_IRWXU).map_err(|e| match e {
            Errno::EEXIST => Error::new(
                ErrorKind::Exists,
                format!("creating {}: already exists", path.display()),
            ),
            e => Error::sys("creating", &path, e),
        })?;
        let dir = self.open_dir(name)?;
        stat::fchmod(dir.file.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| Error::sys("setting the mode of", &path, e))?;
        Ok(dir)
    }

    /// Creates an overlay whiteout named `name` here: a 0/0 character
    /// device, which hides the same name in the layers below.
    pub fn make_whiteout(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = self.component(name.as_ref())?;
        stat::mknodat(
            Some(self.file.as_raw_fd()),
            name,
            SFlag::S_IFCHR,
            Mode::empty(),
            0,
        )
        .map_err(|e| Error::sys("creating a whiteout at", &self.join(name), e))
    }

    /// Makes `to_name` in `to` another name of the file `name` here (never
    /// following `name` if it is a symlink).
    pub fn link(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> Result<()> {
        let name = self.component(name.as_ref())?;
        let to_name = to.component(to_name.as_ref())?;
        unistd::linkat(
            Some(self.file.as_raw_fd()),
            name,
            Some(to.file.as_raw_fd()),
            to_name,
            AtFlags::empty(),
        )
        .map_err(|e| Error::sys("linking", &to.join(to_name), e))
    }

    /// Sets the extended attribute `attr` of this directory itself.
    pub fn set_attr(&self, attr: &str, value: &[u8]) -> Result<()> {
        xattr::FileExt::set_xattr(&self.file, attr, value).map_err(|e| {
            Error::io(
                &format!("setting extended attribute {attr} on"),
                &self.path,
                e,
            )
        })
    }

    /// Opens the file `name` here with `flags` (never following a symlink,
    /// never waiting on a fifo), creating it with exactly `mode` if it is
    /// not there; says whether it was created.
    pub fn open_or_create(
        &self,
        name: impl AsRef<OsStr>,
        flags: OFlag,
        mode: u32,
    ) -> Result<(File, bool)> {
        let name = self.component(name.as_ref())?;
        let path = self.join(name);
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let mode = Mode::from_bits_truncate(mode);
        let create = flags | OFlag::O_CREAT | OFlag::O_EXCL;
        match open_at(Some(&self.file), name, create, mode) {
            Ok(file) => {
                // Its mode, not what the umask left of it.
                stat::fchmod(file.as_raw_fd(), mode)
                    .map_err(|e| Error::sys("setting the mode of", &path, e))?;
                Ok((file, true))
            }
            Err(Errno::EEXIST) => open_at(Some(&self.file), name, flags, Mode::empty())
                .map(|file| (file, false))
                .map_err(|e| Error::sys("opening", &path, e)),
            Err(e) => Err(Error::sys("creating", &path, e)),
        }
    }

    /// Reads at most `limit` bytes of the regular file `name`, refusing a
    /// symlink and anything but a regular file (a fifo is not waited on).
    /// A missing file is [`ErrorKind::NotFound`].
    pub fn read_file(&self, name: impl AsRef<OsStr>, limit: u64, what: &str) -> Result<Vec<u8>> {
        let name = self.component(name.as_ref())?;
        let path = self.join(name);
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let file = open_at(Some(&self.file), name, flags, Mode::empty())
            .map_err(|e| open_error(e, what, &path))?;
        read_bounded(file, limit, what, &path)
    }

    /// Replaces (or creates) the file `name` with `contents` and exactly
    /// `mode`: written to a temporary file beside it, flushed, renamed over
    /// it, the directory flushed. Readers see the old or the new file.
    pub fn write_file(&self, name: impl AsRef<OsStr>, contents: &[u8], mode: u32) -> Result<()> {
        let name = self.component(name.as_ref())?;
        let path = self.join(name);
        let (tmp, mut file) = self.create_temp(name)?;
        let written = (|| {
            let io = |e| Error::io("writing", &path, e);
            file.write_all(contents).map_err(io)?;
            stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| Error::sys("setting the mode of", &path, e))?;
            file.sync_all().map_err(io)?;
            fcntl::renameat(
                Some(self.file.as_raw_fd()),
                tmp.as_os_str(),
                Some(self.file.as_raw_fd()),
                name,
            )
            .map_err(|e| Error::sys("replacing", &path, e))
        })();
        if written.is_err() {
            let _ = self.unlink(&tmp);
        }
        written?;
        self.sync()
    }

    /// A new file with a temporary name beside `name`, open for writing.
    fn create_temp(&self, name: &OsStr) -> Result<(OsString, File)> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        loop {
            let mut tmp = OsString::from(TEMP_PREFIX);
            tmp.push(name);
            tmp.push(format!(".{}", random_suffix()));
            match open_at(Some(&self.file), &tmp, flags, Mode::S_IRUSR | Mode::S_IWUSR) {
                Ok(file) => return Ok((tmp, file)),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(Error::sys("creating a temporary file in", &self.path, e)),
            }
        }
    }

    /// Removes the file `name` (not a directory); a missing one is fine.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = self.component(name.as_ref())?;
        match self.unlink(name) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::sys("removing", &self.join(name), e)),
        }
    }

    fn unlink(&self, name: &OsStr) -> nix::Result<()> {
        unistd::unlinkat(
            Some(self.file.as_raw_fd()),
            name,
            UnlinkatFlags::NoRemoveDir,
        )
    }

    /// Renames `name` here to `to_name` in `to`, refusing to replace
    /// anything ([`ErrorKind::Exists`]).
    pub fn rename_new(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> Result<()> {
        self.rename2(
            name.as_ref(),
            to,
            to_name.as_ref(),
            RenameFlags::RENAME_NOREPLACE,
        )
    }

    /// Swaps `name` here and `to_name` in `to` in one step.
    pub fn exchange(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> Result<()> {
        self.rename2(
            name.as_ref(),
            to,
            to_name.as_ref(),
            RenameFlags::RENAME_EXCHANGE,
        )
    }

    fn rename2(&self, name: &OsStr, to: &Dir, to_name: &OsStr, flags: RenameFlags) -> Result<()> {
        let name = self.component(name)?;
        let to_name = to.component(to_name)?;
        let target = to.join(to_name);
        fcntl::renameat2(
            Some(self.file.as_raw_fd()),
            name,
            Some(to.file.as_raw_fd()),
            to_name,
            flags,
        )
        .map_err(|e| match e {
            Errno::EEXIST | Errno::ENOTEMPTY if flags == RenameFlags::RENAME_NOREPLACE => {
                Error::new(
                    ErrorKind::Exists,
                    format!("creating {}: it already exists", target.display()),
                )
            }
            e => Error::sys("renaming into place", &target, e),
        })?;
        self.sync()?;
        let (a, b) = (self.stat()?, to.stat()?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            to.sync()?;
        }
        Ok(())
    }

    /// Flushes the directory, so that what was created or renamed in it
    /// survives a crash.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io("syncing directory", &self.path, e))
    }

    /// Flushes the whole filesystem the directory is on.
    pub fn sync_filesystem(&self) -> Result<()> {
        unistd::syncfs(self.file.as_raw_fd())
            .map_err(|e| Error::sys("flushing the filesystem of", &self.path, e))
    }

    /// The names in the directory (not `.` and `..`), read without moving
    /// its atime.
    pub fn names(&self) -> Result<Vec<OsString>> {
        list_names(&self.file).map_err(|e| Error::sys("reading directory", &self.path, e))
    }

    /// Removes `name` and, for a directory, everything below it, never
    /// following a symlink and never crossing into another mount: a mount
    /// point below stops the removal with an error naming it. Memory and
    /// descriptors grow with the depth only by one name and one descriptor
    /// a level. A missing `name` is fine.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<()> {
        self.remove_tree_freed(name).map(|_| ())
    }

    /// [`Dir::remove_tree`], returning the allocated bytes it freed: of
    /// every directory, and of every other inode whose last name it
    /// removed (its link count was one just before).
    pub fn remove_tree_freed(&self, name: impl AsRef<OsStr>) -> Result<u64> {
        let name = self.component(name.as_ref())?;
        let Some(st) = self.stat_at(name)? else {
            return Ok(0);
        };
        let last_name = |st: &FileStat| {
            if st.st_nlink <= 1 {
                allocated(st)
            } else {
                0
            }
        };
        if kind(&st) != SFlag::S_IFDIR {
            self.remove_file(name)?;
            return Ok(last_name(&st));
        }
        let mut freed = 0;
        let mut removal = Removal {
            top: self,
            dev: self.stat()?.st_dev,
            mount: mount_id(&self.file).map_err(|e| Error::sys("inspecting", &self.path, e))?,
            levels: Vec::new(),
        };
        removal.enter(name, &st)?;
        while let Some(level) = removal.levels.last_mut() {
            let Some(entry) = level.todo.pop() else {
                let Some(done) = removal.levels.pop() else {
                    break;
                };
                let parent = removal.levels.last().map_or(&self.file, |l| &l.dir);
                unistd::unlinkat(
                    Some(parent.as_raw_fd()),
                    done.name.as_os_str(),
                    UnlinkatFlags::RemoveDir,
                )
                .map_err(|e| Error::sys("removing", &removal.path(&done.name), e))?;
                freed += done.allocated;
                continue;
            };
            let dir = level.dir.as_raw_fd();
            let st = match stat::fstatat(Some(dir), entry.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(Error::sys("inspecting", &removal.path(&entry), e)),
            };
            if kind(&st) == SFlag::S_IFDIR {
                removal.enter(&entry, &st)?;
                continue;
            }
            match unistd::unlinkat(Some(dir), entry.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => freed += last_name(&st),
                Err(Errno::ENOENT) => {}
                // A file mounted on (a bind mount): not ours to touch.
                Err(Errno::EBUSY) => return Err(mounted_inside(&removal.path(&entry))),
                Err(e) => return Err(Error::sys("removing", &removal.path(&entry), e)),
            }
        }
        self.sync()?;
        Ok(freed)
    }

    /// `name` as one component of a path in this directory.
    fn component<'n>(&self, name: &'n OsStr) -> Result<&'n OsStr> {
        let b = name.as_bytes();
        if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "{}: {:?} is not a name for an entry in it",
                    self.path.display(),
                    name
                ),
            ));
        }
        Ok(name)
    }
}

/// A [`Dir::remove_tree`] under way: the directories being emptied, from
/// the top one down.
struct Removal<'a> {
    top: &'a Dir,
    /// The device and mount everything removed must be on.
    dev: u64,
    mount: Option<u64>,
    levels: Vec<RemovalLevel>,
}

/// A directory being emptied: it, its name, the names left in it.
struct RemovalLevel {
    dir: File,
    name: OsString,
    todo: Vec<OsString>,
    /// Its own allocated bytes, freed when it is removed.
    allocated: u64,
}

impl Removal<'_> {
    /// The path of `last` in the deepest directory, for messages.
    fn path(&self, last: &OsStr) -> PathBuf {
        let mut p = self.top.path.clone();
        p.extend(self.levels.iter().map(|l| &l.name));
        p.push(last);
        p
    }

    /// Opens the directory `name` in the deepest one (inspected as `st`)
    /// to empty it next, after checking it is that inode and on the same
    /// mount.
    fn enter(&mut self, name: &OsStr, st: &FileStat) -> Result<()> {
        let path = self.path(name);
        let parent = self.levels.last().map_or(&self.top.file, |l| &l.dir);
        let dir = open_at(Some(parent), name, dir_flags(), Mode::empty())
            .map_err(|e| Error::sys("opening", &path, e))?;
        let now = stat::fstat(dir.as_raw_fd()).map_err(|e| Error::sys("inspecting", &path, e))?;
        let mount = mount_id(&dir).map_err(|e| Error::sys("inspecting", &path, e))?;
        // Something mounted on it (or swapped in): never descend.
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)
            || now.st_dev != self.dev
            || mount != self.mount
        {
            return Err(mounted_inside(&path));
        }
        raise_fd_limit(self.levels.len() as u64 + 1);
        let mut todo = list_names(&dir).map_err(|e| Error::sys("reading directory", &path, e))?;
        todo.reverse();
        self.levels.push(RemovalLevel {
            dir,
            name: name.to_os_string(),
            todo,
            allocated: allocated(&now),
        });
        Ok(())
    }
}

fn mounted_inside(path: &Path) -> Error {
    Error::new(
        ErrorKind::Unsafe,
        format!(
            "refusing to remove {}: another filesystem is mounted there",
            path.display()
        ),
    )
    .with_hint(format!(
        "unmount it first (umount {}), then try again",
        path.display()
    ))
}

/// As `check_trusted`, but a directory owned by `uid` (group root or
/// `gid`) is trusted too, unless anyone else can write to it.
pub fn check_owned_by(st: &FileStat, path: &Path, uid: u32, gid: u32) -> Result<()> {
    if st.st_uid != uid || uid == 0 {
        return check_trusted(st, path, true, "using");
    }
    let mode = st.st_mode;
    let why = if mode & libc::S_IWOTH != 0 {
        Some("anyone can write to it".to_string())
    } else if mode & libc::S_IWGRP != 0 && st.st_gid != 0 && st.st_gid != gid {
        Some(format!("group {} can write to it", st.st_gid))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => {
            Err(refusal("using", path, &why).with_hint(format!("chmod o-w,g-w {}", path.display())))
        }
    }
}

/// The error that refuses `op` on `path` for `why`.
fn refusal(op: &str, path: &Path, why: &str) -> Error {
    Error::new(
        ErrorKind::Unsafe,
        format!("refusing {op} {}: {why}", path.display()),
    )
}

/// Why someone other than root could change what `st` (at `path`) holds,
/// if so. `last`: it is the directory itself, not one on the way to it (a
/// sticky world-writable directory may only be on the way).
fn check_trusted(st: &FileStat, path: &Path, last: bool, op: &str) -> Result<()> {
    let mode = st.st_mode;
    let sticky = mode & libc::S_ISVTX != 0 && !last;
    let why = if st.st_uid != 0 {
        Some(format!("it is owned by uid {}, not root", st.st_uid))
    } else if mode & libc::S_IWOTH != 0 && !sticky {
        Some("anyone can write to it".to_string())
    } else if mode & libc::S_IWGRP != 0 && st.st_gid != 0 && !sticky {
        Some(format!("group {} can write to it", st.st_gid))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(refusal(op, path, &why).with_hint(format!(
            "only root may be able to change the directories lxc-snap works in: \
             chown root:root {0} && chmod go-w {0}",
            path.display()
        ))),
    }
}

/// The state of one [`Dir::open_trusted`].
struct Resolver<'a> {
    given: &'a Path,
    what: &'a str,
    enforce: bool,
    /// Whether the last directory is checked too.
    check_final: bool,
    /// Components still to resolve, next first.
    todo: Vec<OsString>,
    /// The directories resolved so far, `/` first, with their paths.
    done: Vec<Dir>,
    symlinks: usize,
}

impl<'a> Resolver<'a> {
    fn new(
        given: &'a Path,
        what: &'a str,
        enforce: bool,
        check_final: bool,
    ) -> Result<Resolver<'a>> {
        let absolute = if given.is_absolute() {
            given.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("resolving", given, e))?
                .join(given)
        };
        let mut r = Resolver {
            given,
            what,
            enforce,
            check_final,
            todo: Vec::new(),
            done: Vec::new(),
            symlinks: 0,
        };
        r.push_front(&absolute);
        Ok(r)
    }

    /// Puts `path`'s components before what is still to do.
    fn push_front(&mut self, path: &Path) {
        let mut parts: Vec<OsString> = path
            .components()
            .filter_map(|c| match c {
                Component::RootDir => Some(OsString::from("/")),
                Component::ParentDir => Some(OsString::from("..")),
                Component::Normal(n) => Some(n.to_os_string()),
                Component::CurDir | Component::Prefix(_) => None,
            })
            .collect();
        parts.reverse();
        self.todo.extend(parts);
    }

    fn refuse(&self, why: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Unsafe,
            format!("refusing the {} {}: {why}", self.what, self.given.display()),
        )
    }

    fn run(mut self, create: Option<u32>) -> Result<Dir> {
        while let Some(part) = self.todo.pop() {
            if part == "/" {
                let root = Path::new("/");
                let file = open_at(None, OsStr::new("/"), dir_flags(), Mode::empty())
                    .map_err(|e| Error::sys("opening", root, e))?;
                self.done = vec![Dir {
                    file,
                    path: root.to_path_buf(),
                }];
                self.check_last()?;
                continue;
            }
            if part == ".." {
                if self.done.len() > 1 {
                    self.done.pop();
                }
                continue;
            }
            let cur = self
                .done
                .last()
                .ok_or_else(|| self.refuse("not an absolute path"))?;
            let st = match cur.stat_at(&part)? {
                Some(st) => st,
                None => match create {
                    Some(mode) => {
                        match cur.mkdir(&part, mode) {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::Exists => {}
                            Err(e) => return Err(e),
                        }
                        cur.stat_at(&part)?.ok_or_else(|| {
                            Error::new(
                                ErrorKind::Other,
                                format!("creating {}: it vanished", cur.join(&part).display()),
                            )
                        })?
                    }
                    None => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "opening the {} {}: {} does not exist",
                                self.what,
                                self.given.display(),
                                cur.join(&part).display()
                            ),
                        ))
                    }
                },
            };
            match kind(&st) {
                SFlag::S_IFLNK => {
                    let link = cur.join(&part);
                    if self.enforce && st.st_uid != 0 {
                        return Err(self.refuse(format!(
                            "{} is a symbolic link owned by uid {}",
                            link.display(),
                            st.st_uid
                        )));
                    }
                    self.symlinks += 1;
                    if self.symlinks > MAX_SYMLINKS {
                        return Err(self.refuse("too many symbolic links"));
                    }
                    let target = fcntl::readlinkat(Some(cur.file.as_raw_fd()), part.as_os_str())
                        .map_err(|e| Error::sys("reading link", &link, e))?;
                    self.push_front(Path::new(&target));
                }
                SFlag::S_IFDIR => {
                    let next = cur.open_dir(&part)?;
                    let now = next.stat()?;
                    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                        return Err(self.refuse(format!(
                            "{} changed while being opened",
                            next.path.display()
                        )));
                    }
                    self.done.push(next);
                    self.check_last()?;
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Other,
                        format!(
                            "opening the {} {}: {} is not a directory",
                            self.what,
                            self.given.display(),
                            cur.join(&part).display()
                        ),
                    ))
                }
            }
        }
        let last = self
            .done
            .pop()
            .ok_or_else(|| self.refuse("not an absolute path"))?;
        if self.enforce && self.check_final {
            check_trusted(
                &last.stat()?,
                &last.path,
                true,
                &format!("the {}", self.what),
            )?;
        }
        Ok(last)
    }

    /// Checks the newest resolved directory as one on the way; the last
    /// one is checked again, more strictly, at the end.
    fn check_last(&self) -> Result<()> {
        if self.todo.is_empty() && !self.check_final {
            return Ok(());
        }
        match (self.enforce, self.done.last()) {
            (true, Some(dir)) => check_trusted(
                &dir.stat()?,
                &dir.path,
                false,
                &format!("the {} {}: its parent", self.what, self.given.display()),
            ),
            _ => Ok(()),
        }
    }
}

/// `rel`'s components, if it is relative and has no `.`, `..` or root.
pub fn plain_components(rel: &Path) -> Option<Vec<&OsStr>> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            _ => return None,
        }
    }
    Some(parts)
}

/// `path` below `dir`, lexically, as plain components; `None` if it is
/// not strictly inside.
pub fn inside<'p>(path: &'p Path, dir: &Path) -> Option<&'p Path> {
    let rel = path.strip_prefix(dir).ok()?;
    let parts = plain_components(rel)?;
    (!parts.is_empty()).then_some(rel)
}

/// Bytes of disk an inode takes, as `du` counts them (`st_blocks` counts
/// 512-byte units).
pub fn allocated(st: &FileStat) -> u64 {
    st.st_blocks as u64 * 512
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_NOATIME
}

/// Opens `path` (relative to the working directory if relative) with
/// `flags` and `O_NOFOLLOW | O_CLOEXEC`, following no symlink anywhere on
/// the way (`openat2` with `RESOLVE_NO_SYMLINKS`): ELOOP if one is there.
pub fn open_without_symlinks(path: &Path, flags: OFlag) -> nix::Result<File> {
    let how = fcntl::OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = fcntl::openat2(libc::AT_FDCWD, path, how)?;
    // SAFETY: openat2 just returned this descriptor and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `openat(2)` with `O_CLOEXEC`, as a `File`. With `O_NOATIME` in `flags`,
/// asked without it where the kernel refuses it.
pub fn open_at(dir: Option<&File>, name: &OsStr, flags: OFlag, mode: Mode) -> nix::Result<File> {
    // O_NOATIME (so that listing a directory does not move the atime a
    // snapshot captured) is refused on what we do not own without
    // CAP_FOWNER.
    match open_at_exactly(dir, name, flags, mode) {
        Err(Errno::EPERM) if flags.contains(OFlag::O_NOATIME) => {
            open_at_exactly(dir, name, flags.difference(OFlag::O_NOATIME), mode)
        }
        other => other,
    }
}

fn open_at_exactly(
    dir: Option<&File>,
    name: &OsStr,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<File> {
    let fd = fcntl::openat(
        dir.map(|d| d.as_raw_fd()),
        name,
        flags | OFlag::O_CLOEXEC,
        mode,
    )?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn fstat(file: &File, path: &Path) -> Result<FileStat> {
    stat::fstat(file.as_raw_fd()).map_err(|e| Error::sys("inspecting", path, e))
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn open_error(e: Errno, what: &str, path: &Path) -> Error {
    match e {
        Errno::ELOOP => Error::new(
            ErrorKind::Usage,
            format!(
                "reading {what} {}: it is a symlink; give the file itself",
                path.display()
            ),
        ),
        Errno::ENOENT => Error::new(
            ErrorKind::NotFound,
            format!(
                "reading {what} {}: No such file or directory",
                path.display()
            ),
        ),
        e => Error::sys("reading", path, e),
    }
}

/// Reads at most `limit` bytes of `file`, which must be a regular file.
pub fn read_bounded(file: File, limit: u64, what: &str, path: &Path) -> Result<Vec<u8>> {
    let st = fstat(&file, path)?;
    if kind(&st) != SFlag::S_IFREG {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("reading {what} {}: not a regular file", path.display()),
        ));
    }
    let mut data = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("reading", path, e))?;
    if data.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "reading {what} {}: longer than {limit} bytes",
                path.display()
            ),
        ));
    }
    Ok(data)
}

/// The names in an open directory, read through a description of its own
/// (so the offset of `dir` is not shared) without moving its atime.
pub fn list_names(dir: &File) -> nix::Result<Vec<OsString>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut stream = match DirStream::openat(
        Some(dir.as_raw_fd()),
        ".",
        flags | OFlag::O_NOATIME,
        Mode::empty(),
    ) {
        // Refused on directories we do not own without CAP_FOWNER.
        Err(Errno::EPERM) => DirStream::openat(Some(dir.as_raw_fd()), ".", flags, Mode::empty()),
        other => other,
    }?;
    let mut names = Vec::new();
    for entry in stream.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// The id of the mount an open file is on, where the kernel can tell.
pub fn mount_id(file: &File) -> nix::Result<Option<u64>> {
    // SAFETY: a zeroed struct statx is valid, and statx writes at most one
    // into it; the empty name with AT_EMPTY_PATH means the descriptor.
    let stx = unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        Errno::result(libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        ))?;
        stx
    };
    Ok((stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id))
}

/// Raises the soft limit on open files to the hard one when `needed`
/// more descriptors (plus a reserve) would pass it. If that fails, the open
/// that runs out of descriptors names its path.
pub fn raise_fd_limit(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const RESERVE: u64 = 256;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if needed + RESERVE > soft && soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Twelve random hex digits for temporary names.
pub fn random_suffix() -> String {
    random_bytes::<6>()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `N` random bytes. getrandom only fails when the kernel has no entropy
/// source at all; then bytes of the clock's nanoseconds still make names
/// (and MACs) made at different moments differ.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            .to_le_bytes();
        for (byte, n) in b.iter_mut().zip(nanos.iter().cycle()) {
            *byte = *n;
        }
    }
    b
}

/// A path below some root as a chain of names, each level sharing its
/// parent's: a deep walk holds one name a level, not a whole path a level.
#[derive(Debug, Clone, Default)]
pub struct RelPath(Option<std::sync::Arc<RelLink>>);

#[derive(Debug)]
struct RelLink {
    parent: RelPath,
    name: OsString,
    depth: usize,
}

impl RelPath {
    /// The root itself.
    pub fn root() -> RelPath {
        RelPath(None)
    }

    /// `name` below this path.
    pub fn child(&self, name: &OsStr) -> RelPath {
        RelPath(Some(std::sync::Arc::new(RelLink {
            parent: self.clone(),
            name: name.to_os_string(),
            depth: self.depth() + 1,
        })))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_none()
    }

    /// Names below the root.
    pub fn depth(&self) -> usize {
        self.0.as_ref().map_or(0, |l| l.depth)
    }

    /// The last name; none for the root.
    pub fn name(&self) -> Option<&OsStr> {
        self.0.as_ref().map(|l| l.name.as_os_str())
    }

    pub fn parent(&self) -> Option<&RelPath> {
        self.0.as_ref().map(|l| &l.parent)
    }

    /// The names from the root down.
    pub fn names(&self) -> Vec<&OsStr> {
        let mut names = Vec::with_capacity(self.depth());
        let mut cur = self;
        while let Some(link) = &cur.0 {
            names.push(link.name.as_os_str());
            cur = &link.parent;
        }
        names.reverse();
        names
    }

    /// As a relative path (empty for the root).
    pub fn to_path(&self) -> PathBuf {
        self.names().into_iter().collect()
    }

    /// Below `base`, for messages.
    pub fn under(&self, base: &Path) -> PathBuf {
        let mut p = base.to_path_buf();
        p.extend(self.names());
        p
    }
}

/// Opens the directory `rel` below `root` one name at a time, never
/// following a symlink, so that no path length limit applies. `flags`
/// are added to `O_DIRECTORY | O_NOFOLLOW`.
pub fn open_rel(root: &File, rel: &[&OsStr], flags: OFlag) -> nix::Result<File> {
    let mut cur = open_at(
        Some(root),
        OsStr::new("."),
        OFlag::O_DIRECTORY | flags,
        Mode::empty(),
    )?;
    for name in rel {
        cur = open_at(
            Some(&cur),
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | flags,
            Mode::empty(),
        )?;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn write_file_replaces_with_exact_mode_whatever_the_umask() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open_given(d.path(), "opening").expect("open");
        let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
        dir.write_file("meta", b"one", 0o644).expect("first");
        dir.write_file("meta", b"two", 0o640).expect("second");
        let sub = dir.mkdir("sub", 0o755).expect("mkdir");
        nix::sys::stat::umask(old);
        assert_eq!(fs::read(d.path().join("meta")).expect("read"), b"two");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(&d.path().join("meta")), 0o640);
        assert_eq!(mode(sub.path()), 0o755);
        let mut names = dir.names().expect("ls");
        names.sort();
        assert_eq!(names, ["meta", "sub"]);
    }

    #[test]
    fn names_must_be_one_component() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open_given(d.path(), "opening").expect("open");
        for bad in ["", ".", "..", "a/b", "/etc"] {
            assert!(dir.write_file(bad, b"x", 0o644).is_err(), "{bad:?}");
            assert!(dir.open_dir(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn open_dir_and_read_file_never_follow_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir(d.path().join("real")).expect("mkdir");
        fs::write(d.path().join("real/f"), b"secret").expect("write");
        std::os::unix::fs::symlink("real", d.path().join("link")).expect("symlink");
        std::os::unix::fs::symlink("real/f", d.path().join("flink")).expect("symlink");
        let dir = Dir::open_given(d.path(), "opening").expect("open");
        assert_eq!(
            dir.open_dir("link").expect_err("symlink").kind(),
            ErrorKind::Unsafe
        );
        assert!(dir.read_file("flink", 100, "file").is_err());
        assert!(dir.open_below(Path::new("link/x"), Below::Nothing).is_err());
        let real = dir
            .open_below(Path::new("real"), Below::Nothing)
            .expect("real");
        assert_eq!(real.read_file("f", 100, "file").expect("read"), b"secret");
        assert!(dir.open_below(Path::new("../x"), Below::Nothing).is_err());
    }

    #[test]
    fn remove_tree_removes_without_following_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let keep = d.path().join("keep");
        fs::create_dir(&keep).expect("mkdir");
        fs::write(keep.join("f"), b"x").expect("write");
        let t = d.path().join("t");
        fs::create_dir_all(t.join("a/b/c")).expect("mkdir");
        fs::write(t.join("a/b/c/f"), b"x").expect("write");
        std::os::unix::fs::symlink(&keep, t.join("a/out")).expect("symlink");
        std::os::unix::fs::symlink(&keep, t.join("a/b/out")).expect("symlink");
        let dir = Dir::open_given(d.path(), "opening").expect("open");
        dir.remove_tree("t").expect("remove");
        assert!(!t.exists());
        assert!(keep.join("f").exists());
        dir.remove_tree("t").expect("a missing tree is fine");
    }

    #[test]
    fn trusted_directories_are_roots_alone() {
        if !root() {
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let snaps = d.path().join("a/snaps");
        let dir = Dir::open_trusted(&snaps, Some(0o755), "snapdir").expect("created");
        assert_eq!(dir.path(), snaps);
        assert_eq!(
            fs::metadata(&snaps).expect("stat").permissions().mode() & 0o7777,
            0o755
        );
        // A parent others can write: refused, naming it.
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = Dir::open_trusted(&snaps, None, "snapdir").expect_err("world-writable parent");
        assert_eq!(err.kind(), ErrorKind::Unsafe);
        assert!(
            err.message()
                .contains(&d.path().join("a").display().to_string()),
            "{err}"
        );
        assert!(
            err.hint().is_some_and(|h| h.contains("chmod go-w")),
            "{err:?}"
        );
        // Sticky, as /tmp: fine on the way, not as the directory itself.
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o1777)).expect("chmod");
        Dir::open_trusted(&snaps, None, "snapdir").expect("sticky parent");
        assert!(Dir::open_trusted(&d.path().join("a"), None, "snapdir").is_err());
        // Owned by someone else.
        std::os::unix::fs::chown(&snaps, Some(1000), None).expect("chown");
        let err = Dir::open_trusted(&snaps, None, "snapdir").expect_err("user's");
        assert!(err.message().contains("uid 1000"), "{err}");
        std::os::unix::fs::chown(&snaps, Some(0), None).expect("chown");
        // Group root may write (LXC's 0770 root:root); another group may not.
        fs::set_permissions(&snaps, fs::Permissions::from_mode(0o770)).expect("chmod");
        Dir::open_trusted(&snaps, None, "snapdir").expect("group root");
        std::os::unix::fs::chown(&snaps, None, Some(1000)).expect("chgrp");
        assert!(Dir::open_trusted(&snaps, None, "snapdir").is_err());
        std::os::unix::fs::chown(&snaps, None, Some(0)).expect("chgrp");
        // A symlink is followed only when root owns it.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&snaps, &link).expect("symlink");
        assert_eq!(
            Dir::open_trusted(&link, None, "snapdir")
                .expect("root's link")
                .path(),
            snaps
        );
        nix::unistd::fchownat(
            None,
            &link,
            Some(nix::unistd::Uid::from_raw(1000)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .expect("chown link");
        assert!(Dir::open_trusted(&link, None, "snapdir").is_err());
    }
}
