//! Rolling a stopped container back to a snapshot in place.
//!
//! The current state is snapshotted first (unless told not to). The
//! snapshot's tree is copied beside the container's delta (or rootfs), then
//! the two are swapped with one RENAME_EXCHANGE, so that a crash leaves
//! either the old or the new state. The config (host name, MACs) is not
//! touched. Cancelled before the swap, the container stays as it was and
//! the safety snapshot taken for this rollback is deleted again.

use super::copying::copy_snapshot_tree;
use super::require_root;
use super::take::take_backup;
use crate::durable::{self, Staging};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::Tree;
use crate::lxc::{Container, Rootfs};
use crate::names::{ContainerName, SnapshotName};
use crate::notice::{Leftover, Notice};
use crate::store::{Backing, NameLock, Store};

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub container: ContainerName,
    pub snapshot: SnapshotName,
    /// The snapshot of the state before, when one was taken.
    pub backup: Option<SnapshotName>,
}

/// Puts the container of `name` back to `name`; with `backup`, snapshots
/// its current state first.
pub fn rollback(store: &Store, name: &SnapshotName, backup: bool) -> Result<RolledBack> {
    require_root("rolling back a container")?;
    let container = Container::open(store.lxcpath()?, name.container())?;
    let lock = store.lock(name.container())?;
    let snapshot = store.get(name)?;
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
                .map(|l| store.open_lower(l).map(|d| d.path().to_path_buf()))
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
    store.usable(&snapshot)?;
    refuse_mounts_inside(&tree.dir)?;
    let leaf = clear_beside(store, &tree)?;

    let saved = if backup {
        let comment = format!("before rollback to {name}");
        Some(take_backup(store, &container, &lock, &comment)?)
    } else {
        None
    };
    let swapped = (|| -> Result<Staging> {
        let staging = Staging::create(&tree.parent, leaf, 0o700)?;
        copy_snapshot_tree(store, &snapshot, staging.dir(), "tree")?;
        staging.sync()?;
        // The last moment a cancel still leaves the container as it was.
        store.cancel().check()?;
        staging.exchange("tree".as_ref(), &tree.parent, &tree.name)?;
        Ok(staging)
    })();
    let staging = match swapped {
        Ok(staging) => staging,
        Err(e) if e.kind() == ErrorKind::Cancelled => {
            if let Some(saved) = &saved {
                discard(store, saved, &lock)?;
            }
            return Err(super::when_cancelled(
                e,
                &format!("{} was not touched", container.name),
            ));
        }
        Err(e) => return Err(e),
    };
    // The old tree goes with the staging directory, never crossing a mount.
    if let Err(e) = staging.discard() {
        store.observer().notice(Notice::OldTreeLeft {
            error: e.to_string(),
        });
    }
    Ok(RolledBack {
        container: container.name.clone(),
        snapshot: name.clone(),
        backup: saved,
    })
}

/// The name of a container's tree in its directory, once the staging
/// directories that runs which died left beside it (a rollback's or an
/// undo's) are gone; the caller holds the container's lock.
pub(super) fn clear_beside<'t>(store: &Store, tree: &'t Tree) -> Result<&'t str> {
    let leaf = tree.name.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::Other,
            format!("{} has no usable name", tree.dir.path().display()),
        )
    })?;
    let removed = durable::remove_leftovers(&tree.parent, |n| n == leaf, |_, _| {})?;
    store.tell_removed(removed, Leftover::Rollback);
    Ok(leaf)
}

/// Deletes the safety snapshot of a rollback that did not happen.
fn discard(store: &Store, saved: &SnapshotName, lock: &NameLock) -> Result<()> {
    let snapshot = store.get(saved)?;
    store.delete_checked(&snapshot, lock)?;
    store.refresh_neighbours(saved.container(), &[snapshot])
}

/// Refuses to swap out (and then delete) a tree with another filesystem
/// mounted somewhere inside it.
pub(super) fn refuse_mounts_inside(tree: &crate::dir::Dir) -> Result<()> {
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
