//! Metadata and extended attributes: reading and writing every xattr
//! namespace (by name, without following symlinks), the overlay attributes
//! that are refused or kept, owners, modes and times applied to what the
//! copy created, symlink targets read without moving their atime.

use super::*;

pub(super) type Xattrs = Vec<(OsString, Vec<u8>)>;

pub(super) const CAPABILITY: &str = "security.capability";
pub(super) const ACL_ACCESS: &str = "system.posix_acl_access";
pub(super) const ACL_DEFAULT: &str = "system.posix_acl_default";

/// Attributes that make an overlay layer depend on the layers below it.
pub(super) const NOT_SELF_CONTAINED: [&str; 4] = [
    "trusted.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.redirect",
    "user.overlay.metacopy",
];

/// The target of the symlink `name` in `dir` (status `st`); with `keep_atime`,
/// puts back the atime that reading it may have moved (relatime moves it
/// whenever it is older than the link's ctime, as it is in any copy).
pub(super) fn read_link(
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
pub(super) fn creation_owner(dst: &FileStat) -> Option<(u32, u32)> {
    let (uid, gid) = (unistd::geteuid().as_raw(), unistd::getegid().as_raw());
    if dst.st_gid == gid || dst.st_mode & libc::S_ISGID != 0 {
        Some((uid, dst.st_gid))
    } else {
        None
    }
}

/// The process umask, read without changing it (other threads may be
/// creating files), unless `dir` has a default ACL that overrides it.
pub(super) fn creation_umask(dir: &File) -> Option<u32> {
    if dir.list_xattr().ok()?.any(|name| name == ACL_DEFAULT) {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let umask = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(umask.trim(), 8).ok()
}

pub(super) fn read_xattrs(node: Node, path: &Path) -> Result<Xattrs> {
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
pub(super) const SYS_LISTXATTRAT: libc::c_long = 465;

/// Cleared for good when the kernel lacks `listxattrat`.
pub(super) static HAVE_LISTXATTRAT: AtomicBool = AtomicBool::new(true);

/// The size of the attribute name list of `name` in `dir`, not following
/// it, when the kernel can say in one call; most entries have none, and
/// this spares the walk through `/proc/self/fd` that finding out by path
/// costs. None: ask by path.
pub(super) fn xattr_list_len_at(dir: &File, name: &OsStr) -> Option<usize> {
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

pub(super) fn write_xattrs<'a>(
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
pub(super) const OPAQUE: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

pub(super) fn is_opaque_attr(name: &OsStr) -> bool {
    OPAQUE.iter().any(|n| name == OsStr::new(n))
}

/// A directory that existed before a merging copy loses the attributes
/// its source lacks, except the overlay `opaque` one.
pub(super) fn drop_stale_xattrs(dir: &DirCopy, path: &Path) -> Result<()> {
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

/// Leaves out the attributes starting with `prefix`, if there is one.
pub(super) fn drop_private(xattrs: &mut Xattrs, prefix: Option<&str>) {
    if let Some(prefix) = prefix {
        xattrs.retain(|(n, _)| !n.as_bytes().starts_with(prefix.as_bytes()));
    }
}

pub(super) fn refuse_redirects(xattrs: &Xattrs, path: &Path) -> Result<()> {
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
pub(super) fn apply_metadata(
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
pub(super) fn apply_metadata_but_mode(
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

/// The same attributes, names and values, in any order.
pub(super) fn same_xattrs(mut a: Xattrs, mut b: Xattrs) -> bool {
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

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
