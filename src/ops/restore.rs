//! Restoring a snapshot as a new container, and linked clones: builds
//! `<lxcpath>/NEWNAME` under a hidden staging name (its root filesystem, a
//! config rewritten for the new name, the host name written into the
//! tree, the dependencies recorded), then renames it into place, refusing
//! to replace anything.
//!
//! A restored container has an independent copy of the captured tree and
//! depends only on the snapshot's base. A linked clone copies nothing: its
//! root filesystem is an overlay with a new, empty upper over the
//! snapshot's trees (its layer, its anchor, the base's lowers), and it is
//! registered with the snapshot and its anchor too (their
//! `lxc_snapshots`), so that neither is deleted from under it.

use std::path::{Path, PathBuf};

use super::copying::copy_snapshot_tree;
use super::require_root;
use crate::dir::Dir;
use crate::durable::Staging;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::config::{random_mac, Retarget};
use crate::lxc::container::{
    bases_of_lowers, read_config, read_dependency_file, DependencyEntry, Lxcpath,
};
use crate::lxc::files::copy_config_files;
use crate::lxc::hostname::set_hostname;
use crate::lxc::{Container, Rootfs};
use crate::names::{host_name_for, ContainerName, SnapshotName};
use crate::notice::Notice;
use crate::store::{Backing, Snapshot, Store};

/// The container a restore created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub container: ContainerName,
    /// Its directory in the lxcpath.
    pub path: PathBuf,
    /// Its host name (`lxc.uts.name`, `/etc/hostname`): its name, or a DNS
    /// label made of it.
    pub host_name: String,
}

/// How a new container gets its root filesystem from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Make {
    /// An independent copy of the captured tree.
    Copy,
    /// An empty upper over the snapshot's trees.
    Link,
}

/// Restores `name` as the new container `new_name`.
pub fn restore(store: &Store, name: &SnapshotName, new_name: &ContainerName) -> Result<Restored> {
    require_root("restoring a snapshot")?;
    make_container(store, name, new_name, Make::Copy, None)
        .map_err(|e| super::when_cancelled(e, &format!("{new_name} was not created")))
}

/// Builds the container `new_name` from the snapshot `name`, as `how`
/// says, in the lxcpath `into` (by default the store's).
pub(super) fn make_container(
    store: &Store,
    name: &SnapshotName,
    new_name: &ContainerName,
    how: Make,
    into: Option<&Lxcpath>,
) -> Result<Restored> {
    let lxcpath = store.lxcpath()?;
    let target = into.unwrap_or(lxcpath);
    // Said before waiting for any lock.
    ensure_free(target, &store.get(name)?, new_name, how)?;

    // Lock the snapshot's container (so the snapshot stays) and the new
    // name (so no other run creates it), in name order to avoid deadlock.
    let mut names = vec![name.container().clone(), new_name.clone()];
    names.sort();
    names.dedup();
    let _locks = names
        .iter()
        .map(|n| store.lock(n))
        .collect::<Result<Vec<_>>>()?;
    store.remove_restore_leftovers(target.dir(), new_name)?;
    // Looked up again under the lock: another run may have deleted it.
    let snapshot = store.get(name)?;
    ensure_free(target, &snapshot, new_name, how)?;
    store.usable(&snapshot)?;
    let snapshot_dir = store.snapshot_dir(&snapshot)?;
    let config = read_config(&snapshot_dir)?;
    if how == Make::Link {
        super::clone::ensure_clonable(&snapshot, &config)?;
    }
    let lower_dirs = store.open_lowers(&snapshot.meta.lowers)?;

    let staging = Staging::create(target.dir(), new_name.as_str(), 0o770)?;
    let final_dir = staging.final_path();
    let meta = &snapshot.meta;
    let lowers: Vec<&Dir> = lower_dirs.iter().collect();
    let host_name = host_name_for(new_name.as_str());
    let rootfs = match (how, meta.backing) {
        (Make::Link, _) => {
            super::clone::link_rootfs(store, &snapshot, staging.dir(), &final_dir, &host_name)?
        }
        (Make::Copy, Backing::Overlay) => {
            let overlay = staging.dir().mkdir("overlay", 0o755)?;
            copy_snapshot_tree(store, &snapshot, &overlay, "delta")?;
            staging.dir().mkdir("rootfs", 0o755)?;
            set_hostname(&overlay.open_dir("delta")?, &lowers, &host_name)?;
            Rootfs::Overlay {
                prefix: meta.rootfs_prefix.clone(),
                lowers: lower_dirs.iter().map(|d| d.path().to_path_buf()).collect(),
                upper: final_dir.join("overlay/delta"),
            }
        }
        (Make::Copy, Backing::Dir) => {
            copy_snapshot_tree(store, &snapshot, staging.dir(), "rootfs")?;
            set_hostname(&staging.dir().open_dir("rootfs")?, &[], &host_name)?;
            Rootfs::Dir {
                prefix: meta.rootfs_prefix.clone(),
                path: final_dir.join("rootfs"),
            }
        }
    };

    let retarget = Retarget {
        old_dirs: &[snapshot_dir.path(), &snapshot.dir],
        new_dir: &final_dir,
        new_name: new_name.as_str(),
        host_name: &host_name,
        rootfs: &rootfs,
    };
    let retargeted = config.retarget(&retarget, random_mac);
    // What the config names inside the snapshot but its tree travels.
    let tree_top = snapshot.tree_rel();
    let tree_top = tree_top.components().next().map_or_else(
        || Path::new("private").to_path_buf(),
        |c| c.as_os_str().into(),
    );
    copy_config_files(&retargeted, &snapshot_dir, &tree_top, staging.dir())?;

    let anchor = snapshot.anchor().map(|a| store.entry(&a));
    let bases: Vec<DependencyEntry> = if snapshot.is_legacy() {
        // A clone of the original lxc-snap also names the container it
        // was cloned from; the copy needs only its lowers' containers.
        bases_of_lowers(&meta.lowers, lxcpath)
    } else if how == Make::Copy {
        // The restored tree is whole: it needs the base, not a layer's
        // anchor.
        read_dependency_file(&snapshot_dir, "lxc_rdepends")?
            .into_iter()
            .filter(|b| Some(b) != anchor.as_ref())
            .collect()
    } else {
        // A clone stands on the snapshot's trees, and on what they do.
        let mut bases = vec![store.entry(name)];
        bases.extend(read_dependency_file(&snapshot_dir, "lxc_rdepends")?);
        bases
    };
    // An unprivileged container's own directories belong to its mapped
    // root, as LXC makes them, so that it can mount its tree and write
    // its upper's work directory.
    if let Some((uid, gid)) = retargeted.config.mapped_root() {
        staging.dir().chown(uid, gid)?;
        if meta.backing == Backing::Overlay {
            // The mount point and the upper's parent; the tree itself
            // keeps the owners it was captured with.
            for name in ["rootfs", "overlay"] {
                staging.dir().open_dir(name)?.chown(uid, gid)?;
            }
        }
    }
    // The last moment a cancel still leaves nothing behind.
    store.cancel().check()?;
    let registered = store.finish_container_dir(
        staging.dir(),
        &retargeted.config,
        &bases,
        DependencyEntry {
            lxcpath: target.path().to_path_buf(),
            name: new_name.to_string(),
        },
    )?;
    let path = staging.commit().map_err(|e| match e.kind() {
        ErrorKind::Exists => exists(target, &snapshot, new_name, how),
        _ => e,
    })?;
    registered.keep();
    if host_name != new_name.as_str() {
        store.observer().notice(Notice::HostName {
            container: new_name.to_string(),
            host_name: host_name.clone(),
        });
    }
    Ok(Restored {
        container: new_name.clone(),
        path,
        host_name,
    })
}

fn ensure_free(
    lxcpath: &Lxcpath,
    snapshot: &Snapshot,
    new_name: &ContainerName,
    how: Make,
) -> Result<()> {
    if lxcpath.has(new_name)? {
        Err(exists(lxcpath, snapshot, new_name, how))
    } else {
        Ok(())
    }
}

/// `new_name` is taken. The hint depends on what it is: the snapshot's
/// own container (rollback is what was meant), the base the snapshot
/// stands on (never to be destroyed), or another container.
fn exists(lxcpath: &Lxcpath, snapshot: &Snapshot, new_name: &ContainerName, how: Make) -> Error {
    let dir = Container::dir_of(lxcpath.path(), new_name);
    let name = &snapshot.name;
    let hint = if new_name == name.container() {
        format!(
            "to put {new_name} back to {name}: lxc-snap rollback {name} \
             (it snapshots {new_name} first); or restore under another name"
        )
    } else if snapshot.meta.lowers.iter().any(|l| l.starts_with(&dir)) {
        format!("{new_name} is the base {name} stands on: restore under another name")
    } else {
        format!(
            "choose another name, or remove it first: lxc-destroy -P {} -n {new_name}",
            lxcpath.path().display()
        )
    };
    Error::new(
        ErrorKind::Exists,
        format!(
            "{} as {}: it already exists",
            match how {
                Make::Copy => "restoring",
                Make::Link => "cloning",
            },
            dir.display()
        ),
    )
    .with_hint(hint)
}
