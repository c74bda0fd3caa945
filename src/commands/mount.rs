//! `lxc-snap mount SNAP DIR` / `lxc-snap umount DIR`: browse a snapshot's
//! whole filesystem (its captured layer over its base) read-only.
//!
//! The mount is an overlay with lower layers only (no upper), so nothing
//! done through it can reach the snapshot; it is also nosuid and nodev, so
//! the container's setuid programs and device nodes give host users nothing.
//! A snapshot with a single layer (directory-backed) is bind-mounted
//! read-only instead.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{require_root, Context};
use crate::error::{Error, ErrorKind, Result};
use crate::names::SnapshotName;

/// The mount source lxc-snap gives its overlays, to recognise them.
const SOURCE: &str = "lxc-snap";

pub fn mount_snapshot(ctx: &Context, name: &SnapshotName, dir: &Path) -> Result<()> {
    require_root("mounting a snapshot")?;
    let snapshot = ctx.store.get(name)?;
    ensure_empty_dir(dir)?;
    let layers = snapshot.stack();
    for l in &layers {
        if !std::fs::symlink_metadata(l).is_ok_and(|m| m.is_dir()) {
            return Err(Error::new(
                ErrorKind::Other,
                format!("snapshot {name} is broken: {} is missing", l.display()),
            ));
        }
        let text = l.to_string_lossy();
        if text.contains([',', ':', '\\']) {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "cannot mount {name}: the layer path {} holds ',', ':' or '\\'",
                    l.display()
                ),
            ));
        }
    }
    let safe = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if layers.len() >= 2 {
        let lowerdir = layers
            .iter()
            .map(|l| l.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        mount(
            Some(SOURCE),
            dir,
            Some("overlay"),
            safe,
            Some(format!("lowerdir={lowerdir}").as_str()),
        )
        .map_err(|e| Error::sys("mounting an overlay on", dir, e))?;
    } else {
        mount(
            Some(&layers[0]),
            dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys("bind-mounting on", dir, e))?;
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | safe;
        if let Err(e) = mount(None::<&str>, dir, None::<&str>, remount, None::<&str>) {
            let _ = umount2(dir, MntFlags::MNT_DETACH);
            return Err(Error::sys("making read-only the mount on", dir, e));
        }
    }
    ctx.ui
        .done(&format!("mounted {name} read-only at {}", dir.display()));
    Ok(())
}

pub fn umount_snapshot(ctx: &Context, dir: &Path) -> Result<()> {
    require_root("unmounting a snapshot")?;
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("resolving", dir, e))?;
    if !is_our_mount(&dir)? {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} is not a snapshot mounted by lxc-snap", dir.display()),
        ));
    }
    umount2(&dir, MntFlags::empty()).map_err(|e| {
        let err = Error::sys("unmounting", &dir, e);
        if e == nix::errno::Errno::EBUSY {
            err.with_hint("a process still uses it: leave the directory and close its files")
        } else {
            err
        }
    })?;
    ctx.ui.done(&format!("unmounted {}", dir.display()));
    Ok(())
}

fn ensure_empty_dir(dir: &Path) -> Result<()> {
    let usage = |why: &str| {
        Error::new(
            ErrorKind::Usage,
            format!("cannot mount on {}: {why}", dir.display()),
        )
        .with_hint("give an empty directory")
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(usage("not a directory")),
        Err(_) => return Err(usage("it does not exist")),
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))?;
    if entries.next().is_some() {
        return Err(usage("it is not empty"));
    }
    Ok(())
}

/// Whether `dir` is the mount point of an overlay lxc-snap made, or of a
/// bind mount of a snapshot's captured tree.
fn is_our_mount(dir: &Path) -> Result<bool> {
    let path = Path::new("/proc/self/mountinfo");
    let table = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let wanted = dir.to_string_lossy();
    Ok(table.lines().rev().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        let (root, point) = (fields.get(3), fields.get(4));
        let (fstype, source) = (fields.get(sep + 1), fields.get(sep + 2));
        if point.map(|p| unescape(p)) != Some(wanted.to_string()) {
            return false;
        }
        (fstype == Some(&"overlay") && source == Some(&SOURCE))
            || root.is_some_and(|r| PathBuf::from(unescape(r)).ends_with("private/rootfs"))
    }))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}
