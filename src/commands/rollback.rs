//! `lxc-snap rollback SNAP [--no-backup]`: puts a stopped container back to
//! a snapshot in place.
//!
//! The current state is snapshotted first (unless --no-backup). The
//! snapshot's tree is copied beside the container's delta (or rootfs), then
//! the two are swapped with one RENAME_EXCHANGE, so that a crash leaves
//! either the old or the new state. The config (host name, MACs) is not
//! touched.

use super::{copy_snapshot_tree, require_root, snap, Context};
use crate::durable::{self, Staging};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::{Container, Rootfs};
use crate::names::SnapshotName;
use crate::store::Backing;

pub fn run(ctx: &Context, name: &SnapshotName, backup: bool) -> Result<()> {
    require_root("rolling back a container")?;
    let container = Container::open(ctx.lxcpath()?, name.container())?;
    let lock = ctx.store.lock(name.container(), ctx.ui)?;
    let snapshot = ctx.store.get(name)?;
    container.ensure_stopped()?;
    let refuse_other = || {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "cannot roll {} back to {name}: its storage changed since the snapshot",
                container.name
            ),
        )
        .with_hint(format!(
            "restore it as a new container instead: lxc-snap restore {name} NEWNAME"
        ))
    };
    // Only ever the container's own tree, inside its own directory: the
    // config chooses which one, and it is swapped out and deleted.
    let tree = container.tree()?;
    match (snapshot.meta.backing, &tree.rootfs) {
        (Backing::Overlay, Rootfs::Overlay { lowers, .. }) => {
            let now = lowers
                .iter()
                .map(|l| ctx.open_lower(l).map(|d| d.path().to_path_buf()))
                .collect::<Result<Vec<_>>>()?;
            if now != snapshot.meta.lowers {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("cannot roll {} back to {name}: the container no longer sits on the snapshot's base", container.name),
                )
                .with_hint(format!("restore it as a new container instead: lxc-snap restore {name} NEWNAME")));
            }
        }
        (Backing::Dir, Rootfs::Dir { .. }) => {}
        _ => return Err(refuse_other()),
    }
    snapshot.ensure_complete()?;
    refuse_mounts_inside(&tree.dir)?;
    let leaf = tree.name.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::Other,
            format!("{} has no usable name", tree.dir.path().display()),
        )
    })?;
    for leftover in durable::remove_leftovers(&tree.parent, |n| n == leaf, |_, _| {})? {
        ctx.ui.note(&format!(
            "removed {}: left by an interrupted rollback",
            leftover.display()
        ));
    }

    let saved = if backup {
        Some(snap::take(
            ctx,
            &container,
            &lock,
            Some(&format!("before rollback to {name}")),
            crate::cli::Increment::QuickCheck,
        )?)
    } else {
        None
    };
    let staging = Staging::create(&tree.parent, leaf, 0o700)?;
    copy_snapshot_tree(ctx, &snapshot, staging.dir(), "tree")?;
    staging.sync()?;
    staging.exchange("tree".as_ref(), &tree.parent, &tree.name)?;
    // The old tree goes with the staging directory, never crossing a mount.
    if let Err(e) = staging.discard() {
        ctx.ui
            .warn(&format!("the old tree was not all removed: {e}"));
    }
    match saved {
        Some(saved) => ctx.ui.done(&format!(
            "rolled {} back to {name} (the state before is {saved})",
            container.name
        )),
        None => ctx
            .ui
            .done(&format!("rolled {} back to {name}", container.name)),
    }
    Ok(())
}

/// Refuses to swap out (and then delete) a tree with another filesystem
/// mounted somewhere inside it.
fn refuse_mounts_inside(tree: &crate::dir::Dir) -> Result<()> {
    let root = tree.path();
    if let Some(point) = crate::mounts::mounts_below(root)?.into_iter().next() {
        return Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing to roll back: {} is mounted inside {}",
                point.display(),
                root.display()
            ),
        )
        .with_hint(format!("unmount it first: umount {}", point.display())));
    }
    Ok(())
}
