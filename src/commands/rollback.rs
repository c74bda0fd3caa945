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
    let lxcpath = ctx.lxcpath();
    let container = Container::open(&lxcpath, name.container())?;
    let lock = ctx.store.lock(name.container(), ctx.ui)?;
    let snapshot = ctx.store.get(name)?;
    container.ensure_stopped()?;
    let target = match (snapshot.meta.backing, container.config.rootfs()?) {
        (Backing::Overlay, Rootfs::Overlay { lowers, upper, .. }) => {
            if lowers != snapshot.meta.lowers {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("cannot roll {} back to {name}: the container no longer sits on the snapshot's base", container.name),
                )
                .with_hint(format!("restore it as a new container instead: lxc-snap restore {name} NEWNAME")));
            }
            upper
        }
        (Backing::Dir, Rootfs::Dir { path, .. }) => path,
        _ => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "cannot roll {} back to {name}: its storage changed since the snapshot",
                    container.name
                ),
            )
            .with_hint(format!(
                "restore it as a new container instead: lxc-snap restore {name} NEWNAME"
            )))
        }
    };
    snapshot.ensure_complete()?;
    let parent = target.parent().ok_or_else(|| {
        Error::new(
            ErrorKind::Other,
            format!("{} has no parent directory", target.display()),
        )
    })?;
    let leaf = target.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::new(
            ErrorKind::Other,
            format!("{} has no usable name", target.display()),
        )
    })?;
    for leftover in durable::remove_leftovers(parent, |n| n == leaf, |_, _| {})? {
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
    let staging = Staging::create(parent, leaf, 0o700)?;
    let fresh = staging.path().join("tree");
    copy_snapshot_tree(ctx, &snapshot, &fresh)?;
    staging.sync()?;
    staging.exchange(&fresh, &target)?;
    drop(staging);
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
