//! Mounting a snapshot to browse its whole filesystem (its captured layer
//! over its base) read-only, and unmounting it.
//!
//! The mount is an overlay with lower layers only (no upper), so nothing
//! done through it can reach the snapshot; it is read-only, nosuid and
//! nodev from the moment it exists, so the container's setuid programs and
//! device nodes give host users nothing. A snapshot with a single layer
//! (directory-backed) is bind-mounted, read-only before it is attached.
//! The target is opened without following any symlink and the mount is
//! attached to that descriptor (see [`crate::mounts`]); the layers are the
//! snapshot's own trees and lowers lxc-snap accepts
//! ([`Store::open_lower`]).

use std::path::Path;

use super::require_root;
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::mounts;
use crate::names::SnapshotName;
use crate::store::Store;

/// The mount source lxc-snap gives its overlays, to recognise them.
const SOURCE: &str = "lxc-snap";

/// Mounts `name` read-only on the empty directory `dir`.
pub fn mount(store: &Store, name: &SnapshotName, dir: &Path) -> Result<()> {
    require_root("mounting a snapshot")?;
    let snapshot = store.get(name)?;
    store.usable(&snapshot)?;
    let target = mounts::open_target(dir).map_err(|e| {
        if e.kind() == ErrorKind::Usage {
            e.with_hint("give an empty directory")
        } else {
            e
        }
    })?;
    let names = crate::dir::list_names(&target).map_err(|e| Error::sys("reading", dir, e))?;
    if !names.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("cannot mount on {}: it is not empty", dir.display()),
        )
        .with_hint("give an empty directory"));
    }
    let layers = store.snapshot_layers_unchecked(&snapshot)?;
    let layers: Vec<&Dir> = layers.iter().collect();
    if layers.len() >= 2 {
        mounts::mount_overlay(&layers, &target, dir, SOURCE)
    } else {
        mounts::bind_read_only(layers[0], &target, dir)
    }
}

/// Unmounts a snapshot lxc-snap mounted at `dir`, and nothing else.
pub fn umount(dir: &Path) -> Result<()> {
    require_root("unmounting a snapshot")?;
    let root = mounts::open_target(dir)?;
    let ours = mounts::mount_of(&root)?.is_some_and(|m| {
        (m.fstype == "overlay" && m.source == SOURCE)
            || m.root.ends_with("private/rootfs")
            || m.root.ends_with("private/delta")
    });
    // The mount's root is what was opened only if something is mounted
    // there: the directory itself is never a mount root otherwise.
    let is_root = root_of_a_mount(&root);
    if !ours || !is_root {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} is not a snapshot mounted by lxc-snap", dir.display()),
        ));
    }
    mounts::unmount(&root, dir)
}

/// Whether an open directory is the root of a mount.
fn root_of_a_mount(dir: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed statx is valid; the kernel fills at most one.
    let stx = unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        if libc::statx(
            dir.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS,
            &mut stx,
        ) != 0
        {
            return false;
        }
        stx
    };
    let known = stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    known && stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
}
