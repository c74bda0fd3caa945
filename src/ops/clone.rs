//! Linked clones: `clone SNAP NEW...` makes containers whose root
//! filesystem is an overlay with a new, empty upper of their own over the
//! snapshot's captured trees (its layer, its anchor, the base's lowers).
//! Nothing is copied, so making one costs the same whatever the tree.
//! Each is built as [`super::restore()`] builds a container (config, host
//! name, MACs, files the config names) and registered with the snapshot,
//! its anchor and its base, so that none of them is deleted while the
//! clone stands on it.

use std::path::{Path, PathBuf};

use super::require_root;
use super::restore::{make_container, Make, Restored};
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::{LxcConfig, Rootfs};
use crate::names::{ContainerName, SnapshotName};
use crate::store::{Snapshot, Store};

/// The most lower layers overlayfs stacks (`OVL_MAX_STACK`).
pub const MAX_LOWERS: usize = 500;

/// The longest mount option string LXC may hand overlayfs: `mount(2)`
/// takes one page of data, and LXC adds its own options to the layers'.
pub const MAX_OVERLAY_OPTIONS: usize = 3840;

/// Makes each of `new_names` a linked clone of the snapshot `name`, in
/// order. If one fails, those made before it stay, and the error says so.
pub fn clone(
    store: &Store,
    name: &SnapshotName,
    new_names: &[ContainerName],
) -> Result<Vec<Restored>> {
    require_root("cloning a snapshot")?;
    for (i, n) in new_names.iter().enumerate() {
        if new_names[..i].contains(n) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("cloning {name}: {n} is named twice"),
            ));
        }
    }
    let mut made: Vec<Restored> = Vec::new();
    for new_name in new_names {
        match make_container(store, name, new_name, Make::Link, None) {
            Ok(r) => made.push(r),
            Err(e) => {
                let e = super::when_cancelled(e, &format!("{new_name} was not created"));
                return Err(if made.is_empty() {
                    e
                } else {
                    let names: Vec<String> = made.iter().map(|r| r.container.to_string()).collect();
                    e.prefixed(&format!("{} made, then", names.join(", ")))
                });
            }
        }
    }
    Ok(made)
}

/// Refuses a snapshot whose trees cannot serve as read-only lowers: one
/// of the original lxc-snap is a writable LXC clone, changed whenever it
/// is started; an unprivileged container's (`config` maps its root)
/// would have to reach trees kept where only root can, and whoever holds
/// its id range could then change them.
pub(super) fn ensure_clonable(snapshot: &Snapshot, config: &LxcConfig) -> Result<()> {
    if let Some((uid, _)) = config.mapped_root() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "cloning {}: it is of an unprivileged container (root mapped to uid {uid}), \
                 whose root cannot reach the snapshot's trees, which only root may",
                snapshot.name
            ),
        )
        .with_hint(format!(
            "restore it as a copy instead: lxc-snap restore {} NEWNAME",
            snapshot.name
        )));
    }
    if snapshot.is_legacy() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "cloning {}: it is a writable clone of the original lxc-snap, \
                 not a captured tree",
                snapshot.name
            ),
        )
        .with_hint(format!(
            "adopt it first (lxc-snap adopt {}), or restore it as a copy",
            snapshot.name.container()
        )));
    }
    Ok(())
}

/// Makes the clone's `overlay/delta` (empty but for its host name) and
/// `rootfs` in `staging`, and returns its root filesystem: the snapshot's
/// layers, top first, under `<final_dir>/overlay/delta`.
pub(super) fn link_rootfs(
    store: &Store,
    snapshot: &Snapshot,
    staging: &Dir,
    final_dir: &Path,
    host_name: &str,
) -> Result<Rootfs> {
    let layers = store.snapshot_layers_unchecked(snapshot)?;
    let overlay = staging.mkdir("overlay", 0o755)?;
    Store::empty_upper(&overlay, "delta", &layers, host_name)?;
    staging.mkdir("rootfs", 0o755)?;
    let lowers: Vec<PathBuf> = layers.iter().map(|d| d.path().to_path_buf()).collect();
    let upper = final_dir.join("overlay/delta");
    check_stack(&lowers, &upper)?;
    let meta = &snapshot.meta;
    Ok(Rootfs::Overlay {
        prefix: Rootfs::overlay_prefix_for(&meta.rootfs_key, &meta.rootfs_prefix),
        lowers,
        upper,
    })
}

/// Refuses a stack overlayfs or LXC would not mount: too many lowers, a
/// path LXC would split (`:`) or the kernel would (`,`), or options
/// longer than a page.
pub fn check_stack(lowers: &[PathBuf], upper: &Path) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("a linked clone over {}: {why}", lowers[0].display()),
        )
        .with_hint("restore it as a copy instead (lxc-snap restore SNAP NEWNAME)"))
    };
    if lowers.len() > MAX_LOWERS {
        return refuse(format!(
            "{} lower layers, more than overlayfs stacks ({MAX_LOWERS})",
            lowers.len()
        ));
    }
    let mut length = "upperdir=,lowerdir=,workdir=/olwork".len();
    for p in lowers.iter().map(PathBuf::as_path).chain([upper]) {
        let bytes = p.as_os_str().as_encoded_bytes();
        if bytes.iter().any(|b| matches!(b, b':' | b',')) {
            return refuse(format!(
                "{} holds ':' or ',', which LXC and overlayfs take as separators",
                p.display()
            ));
        }
        length += bytes.len() + 1;
    }
    // The work directory sits beside the upper.
    length += upper.parent().map_or(0, |p| p.as_os_str().len());
    if length > MAX_OVERLAY_OPTIONS {
        return refuse(format!(
            "its mount options would take {length} bytes, more than the \
             {MAX_OVERLAY_OPTIONS} LXC can pass to overlayfs"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_is_refused_beyond_overlayfs_and_lxc_limits() {
        let upper = Path::new("/var/lib/lxc/c/overlay/delta");
        let few = vec![PathBuf::from("/var/lib/lxcsnaps/a_1/private/delta"); 3];
        assert!(check_stack(&few, upper).is_ok());
        let many: Vec<PathBuf> = (0..=MAX_LOWERS)
            .map(|i| PathBuf::from(format!("/l{i}")))
            .collect();
        assert!(check_stack(&many, upper).is_err());
        let long = vec![PathBuf::from(format!("/{}", "x".repeat(250))); 16];
        let e = check_stack(&long, upper).expect_err("too long");
        assert!(e.message().contains("mount options"), "{}", e.message());
        let colon = vec![PathBuf::from("/var/lib/lxcsnaps/a:b/private/delta")];
        assert!(check_stack(&colon, upper).is_err());
        let comma = vec![PathBuf::from("/var/lib/lxcsnaps/a,b/private/delta")];
        assert!(check_stack(&comma, upper).is_err());
    }
}
