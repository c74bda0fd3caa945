//! The files a container's config makes root read or run (fstab, hook
//! scripts), checked before they go with a snapshot or a restored
//! container: each must be root's alone.

use std::path::Path;

use crate::dir::{Below, Dir};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::config::Retargeted;

/// Checks the files a retargeted config refers to and copies those in the
/// old container directory (`from`, whose tree is at `tree_rel`) to the
/// same place in `to`. Root reads or runs them when the new container
/// starts, so each must be root's alone: a file inside the container's own
/// tree (which the container can rewrite) is refused, as is one that
/// someone else could change, there or outside. Copies get their
/// permission bits without write access for group and others, and their
/// directories 0755, whatever the umask.
pub fn copy_config_files(
    retargeted: &Retargeted,
    from: &Dir,
    tree_rel: &Path,
    to: &Dir,
) -> Result<()> {
    for rel in &retargeted.copy {
        if rel.starts_with(tree_rel) {
            return Err(Error::new(
                ErrorKind::Unsafe,
                format!(
                    "refusing the config of {}: it names {}, inside the container's own tree, which the container can rewrite",
                    from.path().display(),
                    from.join(rel).display()
                ),
            )
            .with_hint("keep fstab and hook files in the container's directory, beside its config"));
        }
        let (Some(name), parent) = (rel.file_name(), rel.parent().unwrap_or(Path::new(""))) else {
            continue;
        };
        let src_dir = if parent.as_os_str().is_empty() {
            from.try_clone()?
        } else {
            from.open_below(parent, Below::All)?
        };
        let path = src_dir.join(name);
        let Some(st) = src_dir.stat_at(name)? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("copying {}: No such file or directory", path.display()),
            ));
        };
        check_root_file(&st, &path)?;
        let data = src_dir.read_file(name, 16 << 20, "config file")?;
        let mut dst = to.try_clone()?;
        for part in parent.iter() {
            dst = match dst.mkdir(part, 0o755) {
                Ok(d) => d,
                Err(e) if e.kind() == ErrorKind::Exists => dst.open_dir(part)?,
                Err(e) => return Err(e),
            };
        }
        dst.write_file(name, &data, st.st_mode & 0o755)?;
    }
    for (key, path) in &retargeted.outside {
        check_outside_file(key, path)?;
    }
    Ok(())
}

/// Refuses a file someone other than root could change.
fn check_root_file(st: &nix::sys::stat::FileStat, path: &Path) -> Result<()> {
    let foreign = st.st_mode & libc::S_IFMT != libc::S_IFREG
        || st.st_uid != 0
        || st.st_mode & 0o002 != 0
        || (st.st_mode & 0o020 != 0 && st.st_gid != 0);
    if foreign && nix::unistd::geteuid().is_root() {
        return Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing {}: root reads or runs it for the container, but it is not a regular file only root can change (owner uid {}, mode {:o})",
                path.display(),
                st.st_uid,
                st.st_mode & 0o7777
            ),
        )
        .with_hint(format!("chown root:root {0} && chmod go-w {0}", path.display())));
    }
    Ok(())
}

/// A file outside the container's directory that the config makes root
/// read (fstab) or run (a host hook): kept in the new config only if it and
/// every directory above it are root's alone.
pub fn check_outside_file(key: &str, path: &Path) -> Result<()> {
    let in_context = |e: Error| e.prefixed(&format!("refusing {key} = {}", path.display()));
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let dir = match Dir::open_trusted(parent, None, "directory") {
        Ok(dir) => dir,
        // A hook that is not there fails LXC's start, not ours; nobody
        // but root can create it in a missing directory of a trusted one.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(in_context(e)),
    };
    match dir.stat_at(name)? {
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => Err(in_context(Error::new(
            ErrorKind::Unsafe,
            format!("{} is a symbolic link", path.display()),
        ))),
        Some(st) => check_root_file(&st, path).map_err(in_context),
        None => Ok(()),
    }
}
