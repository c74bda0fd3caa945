//! `lxc-snap -r SNAP NEWNAME` / `lxc-snap restore SNAP NEWNAME`.
//!
//! Builds `<lxcpath>/NEWNAME` under a hidden staging name: an independent
//! copy of the captured tree, a config rewritten for the new name, the host
//! name written into the tree, the dependency on the base recorded; then
//! renames it into place, refusing to replace anything.

use std::path::Path;

use super::{
    copy_config_files, copy_snapshot_tree, finish_container_dir, forget_registrations,
    require_root, Context,
};
use crate::dir::Dir;
use crate::durable::{self, Staging};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::config::{random_mac, Retarget};
use crate::lxc::container::{read_dependency_file, DependencyEntry, Lxcpath};
use crate::lxc::hostname::set_hostname;
use crate::lxc::{Container, LxcConfig, Rootfs};
use crate::names::{ContainerName, SnapshotName};
use crate::store::Backing;

pub fn run(ctx: &Context, name: &SnapshotName, new_name: &ContainerName) -> Result<()> {
    require_root("restoring a snapshot")?;
    let lxcpath = ctx.lxcpath()?;
    let snapshot = ctx.store.get(name)?;
    ensure_free(lxcpath, new_name)?;
    let lower_dirs = snapshot
        .meta
        .lowers
        .iter()
        .map(|lower| {
            ctx.open_lower(lower).map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "restoring {name}: its base layer {} is gone",
                            lower.display()
                        ),
                    )
                } else {
                    e
                }
            })
        })
        .collect::<Result<Vec<Dir>>>()?;

    // Lock the snapshot's container (so the snapshot stays) and the new
    // name (so no other run creates it), in name order to avoid deadlock.
    let mut names = vec![name.container().clone(), new_name.clone()];
    names.sort();
    names.dedup();
    let _locks = names
        .iter()
        .map(|n| ctx.store.lock(n, ctx.ui))
        .collect::<Result<Vec<_>>>()?;
    let leftovers = durable::remove_leftovers(
        lxcpath.dir(),
        |n| n == new_name.as_str(),
        |dir, n| forget_registrations(ctx, dir, lxcpath.dir(), n),
    )?;
    for leftover in leftovers {
        ctx.ui.note(&format!(
            "removed {}: an incomplete restore left by an interrupted run",
            leftover.display()
        ));
    }
    ensure_free(lxcpath, new_name)?;

    let staging = Staging::create(lxcpath.dir(), new_name.as_str(), 0o770)?;
    let final_dir = staging.final_path();
    let meta = &snapshot.meta;
    let lowers: Vec<&Dir> = lower_dirs.iter().collect();
    let rootfs = match meta.backing {
        Backing::Overlay => {
            let overlay = staging.dir().mkdir("overlay", 0o755)?;
            copy_snapshot_tree(ctx, &snapshot, &overlay, "delta")?;
            staging.dir().mkdir("rootfs", 0o755)?;
            set_hostname(&overlay.open_dir("delta")?, &lowers, new_name.as_str())?;
            Rootfs::Overlay {
                prefix: meta.rootfs_prefix.clone(),
                lowers: lower_dirs.iter().map(|d| d.path().to_path_buf()).collect(),
                upper: final_dir.join("overlay/delta"),
            }
        }
        Backing::Dir => {
            copy_snapshot_tree(ctx, &snapshot, staging.dir(), "rootfs")?;
            set_hostname(&staging.dir().open_dir("rootfs")?, &[], new_name.as_str())?;
            Rootfs::Dir {
                prefix: meta.rootfs_prefix.clone(),
                path: final_dir.join("rootfs"),
            }
        }
    };

    let snapshot_dir = ctx.store.snapshot_dir(&snapshot)?;
    let config_path = snapshot_dir.join("config");
    let text = snapshot_dir.read_file("config", 1 << 20, "config")?;
    let text = String::from_utf8(text).map_err(|_| {
        Error::new(
            ErrorKind::Other,
            format!("reading {}: not UTF-8 text", config_path.display()),
        )
    })?;
    let retarget = Retarget {
        old_dirs: &[snapshot_dir.path(), &snapshot.dir],
        new_dir: &final_dir,
        new_name: new_name.as_str(),
        rootfs: &rootfs,
    };
    let retargeted = LxcConfig::parse(&text).retarget(&retarget, random_mac);
    copy_config_files(
        &retargeted,
        &snapshot_dir,
        Path::new("private"),
        staging.dir(),
    )?;

    // The restored tree is whole: it needs the base, not a layer's anchor.
    let anchor = snapshot.anchor().map(|a| DependencyEntry {
        lxcpath: ctx.store.dir().to_path_buf(),
        name: a.to_string(),
    });
    let bases: Vec<DependencyEntry> = read_dependency_file(&snapshot_dir, "lxc_rdepends")?
        .into_iter()
        .filter(|b| Some(b) != anchor.as_ref())
        .collect();
    let registered = finish_container_dir(
        ctx,
        staging.dir(),
        &retargeted.config,
        &bases,
        DependencyEntry {
            lxcpath: lxcpath.path().to_path_buf(),
            name: new_name.to_string(),
        },
    )?;
    staging.commit().map_err(|e| match e.kind() {
        ErrorKind::Exists => exists(lxcpath, new_name),
        _ => e,
    })?;
    registered.keep();
    ctx.ui.done(&format!("restored {name} as {new_name}"));
    Ok(())
}

fn ensure_free(lxcpath: &Lxcpath, new_name: &ContainerName) -> Result<()> {
    if lxcpath.has(new_name)? {
        Err(exists(lxcpath, new_name))
    } else {
        Ok(())
    }
}

fn exists(lxcpath: &Lxcpath, new_name: &ContainerName) -> Error {
    Error::new(
        ErrorKind::Exists,
        format!(
            "restoring as {}: it already exists",
            Container::dir_of(lxcpath.path(), new_name).display()
        ),
    )
    .with_hint(format!(
        "choose another name, or remove it first: lxc-destroy -P {} -n {new_name}",
        lxcpath.path().display()
    ))
}
