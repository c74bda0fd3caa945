//! Writing the new host name into `/etc/hostname` of a container tree.
//!
//! The tree is an overlay layer (or a full rootfs) that a container wrote,
//! so every step goes through directory file descriptors with O_NOFOLLOW:
//! a symlinked `etc` or `hostname` is left alone, never written through.
//! When the layer has no `/etc/hostname` but a lower layer does (and no
//! whiteout or opaque directory hides it), the file is copied up the way
//! overlayfs would: `etc` is created with the lower's owner and mode, and
//! the new file takes the lower file's owner and mode.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, write, Gid, Uid};

use crate::dir::Dir;
use crate::error::{Error, Result};

const ETC: &CStr = c"etc";
const HOSTNAME: &CStr = c"hostname";
const TMP: &CStr = c".hostname.lxc-snap.tmp";
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// What a layer says about a path.
enum Found {
    File(FileStat),
    /// Deleted (whiteout) or not a plain file/directory: nothing to write.
    Hidden,
    Absent,
}

/// Sets `/etc/hostname` in `layer` (the top layer, written to) to `name`,
/// looking through `lowers` (top first) when the layer lacks it. Returns
/// whether a file was written.
pub fn set_hostname(layer_dir: &Dir, lowers: &[&Dir], name: &str) -> Result<bool> {
    let layer = layer_dir.path();
    let top = held(layer_dir)?;
    let (etc_in_layer, file_in_layer) = match lookup(&top, layer)? {
        Lookup::Dir {
            etc,
            file: Found::File(st),
        } => (Some(etc), Some(st)),
        Lookup::Dir {
            file: Found::Hidden,
            ..
        }
        | Lookup::Hidden => return Ok(false),
        Lookup::Dir {
            etc,
            file: Found::Absent,
        } => {
            if is_opaque(&etc) {
                return Ok(false);
            }
            (Some(etc), None)
        }
        Lookup::Absent => (None, None),
    };
    let (etc_template, file_template) = match file_in_layer {
        Some(st) => (None, st),
        None => match find_in_lowers(lowers)? {
            Some(t) => t,
            None => return Ok(false),
        },
    };
    let etc = match etc_in_layer {
        Some(etc) => etc,
        None => {
            let t = etc_template.ok_or_else(|| not_dir(layer))?;
            create_etc(&top, layer, &t)?
        }
    };
    write_file(
        &etc,
        &layer.join("etc/hostname"),
        &file_template,
        format!("{name}\n").as_bytes(),
    )?;
    Ok(true)
}

enum Lookup {
    Dir { etc: OwnedFd, file: Found },
    Hidden,
    Absent,
}

fn lookup(root: &OwnedFd, root_path: &Path) -> Result<Lookup> {
    let etc_path = root_path.join("etc");
    match stat_at(root, ETC, &etc_path)? {
        None => return Ok(Lookup::Absent),
        Some(st) if kind(&st) != SFlag::S_IFDIR => return Ok(Lookup::Hidden),
        Some(_) => {}
    }
    let Some(etc) = open_dir_at(Some(root), &etc_path)? else {
        return Ok(Lookup::Hidden);
    };
    let file = match stat_at(&etc, HOSTNAME, &etc_path.join("hostname"))? {
        None => Found::Absent,
        Some(st) if kind(&st) == SFlag::S_IFREG => Found::File(st),
        Some(_) => Found::Hidden,
    };
    Ok(Lookup::Dir { etc, file })
}

/// The owner/mode templates (etc, hostname) from the highest lower that has
/// the file, unless a whiteout or opaque directory above hides it.
fn find_in_lowers(lowers: &[&Dir]) -> Result<Option<(Option<FileStat>, FileStat)>> {
    for lower_dir in lowers {
        let lower = lower_dir.path();
        let root = held(lower_dir)?;
        match lookup(&root, lower)? {
            Lookup::Absent => continue,
            Lookup::Hidden => return Ok(None),
            Lookup::Dir { etc, file } => match file {
                Found::File(st) => {
                    let etc_st = fstat(etc.as_raw_fd())
                        .map_err(|e| Error::sys("reading", &lower.join("etc"), e))?;
                    return Ok(Some((Some(etc_st), st)));
                }
                Found::Hidden => return Ok(None),
                Found::Absent if is_opaque(&etc) => return Ok(None),
                Found::Absent => continue,
            },
        }
    }
    Ok(None)
}

fn create_etc(top: &OwnedFd, layer: &Path, template: &FileStat) -> Result<OwnedFd> {
    let path = layer.join("etc");
    mkdirat(Some(top.as_raw_fd()), ETC, Mode::from_bits_truncate(0o700))
        .map_err(|e| Error::sys("creating", &path, e))?;
    let etc = open_dir_at(Some(top), &path)?.ok_or_else(|| not_dir(&path))?;
    fchown(
        etc.as_raw_fd(),
        Some(Uid::from_raw(template.st_uid)),
        Some(Gid::from_raw(template.st_gid)),
    )
    .map_err(|e| Error::sys("setting the owner of", &path, e))?;
    fchmod(
        etc.as_raw_fd(),
        Mode::from_bits_truncate(template.st_mode & 0o7777),
    )
    .map_err(|e| Error::sys("setting the mode of", &path, e))?;
    Ok(etc)
}

fn write_file(etc: &OwnedFd, path: &Path, template: &FileStat, contents: &[u8]) -> Result<()> {
    let fd = openat(
        Some(etc.as_raw_fd()),
        TMP,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .or_else(|e| {
        if e == nix::errno::Errno::EEXIST {
            // A leftover of an interrupted run: it is ours to replace.
            nix::unistd::unlinkat(
                Some(etc.as_raw_fd()),
                TMP,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )?;
            openat(
                Some(etc.as_raw_fd()),
                TMP,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
        } else {
            Err(e)
        }
    })
    .map_err(|e| Error::sys("creating a temporary file beside", path, e))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let io = |e| Error::sys("writing", path, e);
    let mut rest = contents;
    while !rest.is_empty() {
        let n = write(fd.as_fd(), rest).map_err(io)?;
        rest = &rest[n..];
    }
    fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(template.st_uid)),
        Some(Gid::from_raw(template.st_gid)),
    )
    .map_err(io)?;
    fchmod(
        fd.as_raw_fd(),
        Mode::from_bits_truncate(template.st_mode & 0o7777),
    )
    .map_err(io)?;
    nix::unistd::fsync(fd.as_raw_fd()).map_err(io)?;
    renameat(Some(etc.as_raw_fd()), TMP, Some(etc.as_raw_fd()), HOSTNAME)
        .map_err(|e| Error::sys("replacing", path, e))
}

/// A descriptor of its own for a held directory.
fn held(dir: &Dir) -> Result<OwnedFd> {
    dir.file()
        .try_clone()
        .map(OwnedFd::from)
        .map_err(|e| Error::io("opening", dir.path(), e))
}

fn open_dir_at(dir: Option<&OwnedFd>, path: &Path) -> Result<Option<OwnedFd>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let result = match dir {
        Some(d) => {
            let name = path.file_name().ok_or_else(|| not_dir(path))?;
            openat(Some(d.as_raw_fd()), name, flags, Mode::empty())
        }
        None => nix::fcntl::open(path, flags, Mode::empty()),
    };
    match result {
        // SAFETY: a new descriptor that nothing else owns.
        Ok(fd) => Ok(Some(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        })),
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
            Ok(None)
        }
        Err(e) => Err(Error::sys("opening", path, e)),
    }
}

fn stat_at(dir: &OwnedFd, name: &CStr, path: &Path) -> Result<Option<FileStat>> {
    match fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => Ok(Some(st)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::sys("reading", path, e)),
    }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Whether an overlay opaque xattr marks the directory `dir` (read through
/// its descriptor, so a renamed or symlinked path cannot redirect it).
fn is_opaque(dir: &OwnedFd) -> bool {
    let proc_path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    OPAQUE_XATTRS.iter().any(|x| {
        xattr::get(&proc_path, x)
            .ok()
            .flatten()
            .is_some_and(|v| v == b"y")
    })
}

fn not_dir(path: &Path) -> Error {
    Error::new(
        crate::error::ErrorKind::Other,
        format!("opening {}: not a directory", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn dir(p: &Path) -> Dir {
        Dir::open_given(p, "opening").expect("open")
    }

    #[test]
    fn replaces_a_file_in_the_layer() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir(d.path().join("etc")).expect("mkdir");
        fs::write(d.path().join("etc/hostname"), "old\n").expect("write");
        fs::set_permissions(
            d.path().join("etc/hostname"),
            fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        assert!(set_hostname(&dir(d.path()), &[], "new").expect("set"));
        assert_eq!(
            fs::read_to_string(d.path().join("etc/hostname")).expect("read"),
            "new\n"
        );
        assert_eq!(
            fs::metadata(d.path().join("etc/hostname"))
                .expect("stat")
                .mode()
                & 0o7777,
            0o640
        );
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let d = tempfile::tempdir().expect("tempdir");
        let outside = d.path().join("outside");
        fs::create_dir_all(outside.join("etc")).expect("mkdir");
        fs::write(outside.join("etc/hostname"), "host\n").expect("write");
        fs::write(outside.join("target"), "keep\n").expect("write");
        let layer = d.path().join("layer");
        fs::create_dir(&layer).expect("mkdir");
        std::os::unix::fs::symlink(outside.join("etc"), layer.join("etc")).expect("symlink");
        assert!(!set_hostname(&dir(&layer), &[], "new").expect("set"));
        assert_eq!(
            fs::read_to_string(outside.join("etc/hostname")).expect("read"),
            "host\n"
        );

        fs::remove_file(layer.join("etc")).expect("rm");
        fs::create_dir(layer.join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(outside.join("target"), layer.join("etc/hostname"))
            .expect("symlink");
        assert!(!set_hostname(&dir(&layer), &[], "new").expect("set"));
        assert_eq!(
            fs::read_to_string(outside.join("target")).expect("read"),
            "keep\n"
        );
    }

    #[test]
    fn copies_up_from_a_lower_unless_hidden() {
        let d = tempfile::tempdir().expect("tempdir");
        let lower = d.path().join("lower");
        fs::create_dir_all(lower.join("etc")).expect("mkdir");
        fs::set_permissions(lower.join("etc"), fs::Permissions::from_mode(0o751)).expect("chmod");
        fs::write(lower.join("etc/hostname"), "base\n").expect("write");
        fs::set_permissions(
            lower.join("etc/hostname"),
            fs::Permissions::from_mode(0o604),
        )
        .expect("chmod");
        let layer = d.path().join("layer");
        fs::create_dir(&layer).expect("mkdir");
        assert!(set_hostname(&dir(&layer), &[&dir(&lower)], "new").expect("set"));
        assert_eq!(
            fs::read_to_string(layer.join("etc/hostname")).expect("read"),
            "new\n"
        );
        assert_eq!(
            fs::metadata(layer.join("etc")).expect("stat").mode() & 0o7777,
            0o751
        );
        assert_eq!(
            fs::metadata(layer.join("etc/hostname"))
                .expect("stat")
                .mode()
                & 0o7777,
            0o604
        );
        assert_eq!(
            fs::read_to_string(lower.join("etc/hostname")).expect("read"),
            "base\n"
        );

        let absent = d.path().join("absent");
        fs::create_dir(&absent).expect("mkdir");
        assert!(!set_hostname(&dir(&absent), &[&dir(&absent)], "new").expect("set"));
        assert!(!absent.join("etc").exists());
    }
}
