//! `lxc-snap delete SNAP... | NAME_A..NAME_B | --all NAME [--force]` (alias `rm`).
//!
//! Everything named is checked first (exists, not pinned unless --force,
//! not running, nothing depends on it); only then is anything deleted, each
//! snapshot renamed out of sight before it is removed.

use std::collections::BTreeSet;

use super::{require_root, Context};
use crate::cli::Selection;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::{
    ensure_stopped, read_dependency_file, update_dependents, DependencyEntry,
};
use crate::names::{ContainerName, SnapshotName};
use crate::store::{NameLock, Snapshot};

pub fn run(ctx: &Context, targets: &[Selection], force: bool) -> Result<()> {
    require_root("deleting snapshots")?;
    let names = resolve(ctx, targets)?;
    let containers: BTreeSet<ContainerName> = names.iter().map(|n| n.container().clone()).collect();
    let locks = containers
        .iter()
        .map(|c| Ok((c.clone(), ctx.store.lock(c, ctx.ui)?)))
        .collect::<Result<std::collections::BTreeMap<_, _>>>()?;
    let snapshots = names
        .iter()
        .map(|n| ctx.store.get(n))
        .collect::<Result<Vec<_>>>()?;
    for s in &snapshots {
        check_deletable(ctx, s, force)?;
    }
    for s in &snapshots {
        delete_checked(ctx, s, &locks[s.name.container()])?;
        ctx.ui.done(&format!("deleted {}", s.name));
    }
    for c in &containers {
        refresh_neighbours(ctx, c, &snapshots)?;
        note_held(ctx, c, &snapshots)?;
    }
    Ok(())
}

/// After deleting `deleted`, the remaining snapshots that may now hold
/// alone what they shared with one of them get their `used_bytes`
/// recomputed. A snapshot shares files only along the line of snapshots of
/// its container on the same base (same backing and lowers: each new one
/// links to the newest such), so those are the nearest remaining ones on
/// that line before and after each deleted one; the nearest before and
/// after of any kind are refreshed too.
pub(super) fn refresh_neighbours(
    ctx: &Context,
    container: &ContainerName,
    deleted: &[Snapshot],
) -> Result<()> {
    let remaining = ctx.store.snapshots_of(container, ctx.ui)?;
    let mut touched = BTreeSet::new();
    for d in deleted.iter().filter(|d| d.name.container() == container) {
        let same_base =
            |s: &&Snapshot| s.meta.backing == d.meta.backing && s.meta.lowers == d.meta.lowers;
        let before = remaining.iter().rev().filter(|s| s.name < d.name);
        let after = remaining.iter().filter(|s| s.name > d.name);
        let nearest = [
            before.clone().next(),
            before.clone().find(same_base),
            after.clone().next(),
            after.clone().find(same_base),
        ];
        touched.extend(nearest.into_iter().flatten().map(|s| s.name.clone()));
    }
    for s in remaining.iter().filter(|s| touched.contains(&s.name)) {
        ctx.store.refresh_used(s)?;
    }
    Ok(())
}

/// The snapshots the selections name, sorted, each once.
fn resolve(ctx: &Context, targets: &[Selection]) -> Result<BTreeSet<SnapshotName>> {
    let mut names = BTreeSet::new();
    for t in targets {
        match t {
            Selection::One(n) => {
                ctx.store.get(n)?;
                names.insert(n.clone());
            }
            Selection::Range(c, a, b) => {
                let found: Vec<_> = ctx
                    .store
                    .snapshots_of(c, ctx.ui)?
                    .into_iter()
                    .filter(|s| (*a..=*b).contains(&s.name.number()))
                    .collect();
                if found.is_empty() {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no snapshots of {c} numbered {a} to {b}"),
                    ));
                }
                names.extend(found.into_iter().map(|s| s.name));
            }
            Selection::All(c) => {
                let found = ctx.store.snapshots_of(c, ctx.ui)?;
                if found.is_empty() {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("{c} has no snapshots"),
                    ));
                }
                names.extend(found.into_iter().map(|s| s.name));
            }
        }
    }
    Ok(names)
}

/// What would stop `snapshot` from being deleted: a pin (without
/// `force`), a running snapshot container, or containers built on it.
pub(super) fn check_deletable(ctx: &Context, snapshot: &Snapshot, force: bool) -> Result<()> {
    if snapshot.meta.pinned && !force {
        return Err(
            Error::new(ErrorKind::Other, format!("{} is pinned", snapshot.name)).with_hint(
                format!(
                    "unpin it (lxc-snap unpin {}) or delete with --force",
                    snapshot.name
                ),
            ),
        );
    }
    ensure_stopped(ctx.store.dir(), &snapshot.name.to_string())?;
    // Its own layers are no obstacle: it is held for them.
    let layers = layers_of(ctx, snapshot)?;
    let dependents = read_dependency_file(&ctx.store.snapshot_dir(snapshot)?, "lxc_snapshots")?;
    if let Some(d) = dependents
        .iter()
        .find(|d| d.lxcpath != ctx.store.dir() || !layers.contains(&d.name))
    {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "{} is needed by container {} in {}",
                snapshot.name,
                d.name,
                d.lxcpath.display()
            ),
        )
        .with_hint(format!(
            "destroy it first: lxc-destroy -P {} -n {}",
            d.lxcpath.display(),
            d.name
        )));
    }
    Ok(())
}

/// Deletes a snapshot that passed [`check_deletable`] (its container's lock
/// is held) and takes it out of its base's `lxc_snapshots`. If layers are
/// stored as changes to it, its tree stays for them (held, no longer
/// listed) until the last of them is deleted.
pub(super) fn delete_checked(ctx: &Context, snapshot: &Snapshot, lock: &NameLock) -> Result<()> {
    let unregister = unregistration(ctx, snapshot)?;
    if !layers_of(ctx, snapshot)?.is_empty() {
        return ctx.store.hold(snapshot, unregister);
    }
    ctx.store.remove(snapshot, lock, unregister)?;
    remove_unneeded_held(ctx, lock)
}

/// What takes `snapshot` out of its bases' `lxc_snapshots`; read before
/// the snapshot is moved aside, run after.
fn unregistration<'c>(
    ctx: &'c Context,
    snapshot: &Snapshot,
) -> Result<impl FnOnce() -> Result<()> + 'c> {
    let bases = read_dependency_file(&ctx.store.snapshot_dir(snapshot)?, "lxc_rdepends")?;
    let me = DependencyEntry {
        lxcpath: ctx.store.dir().to_path_buf(),
        name: snapshot.name.to_string(),
    };
    Ok(move || {
        let places = ctx.places()?;
        for base in &bases {
            update_dependents(&places, base, &me, false)?;
        }
        Ok(())
    })
}

/// The snapshots stored as changes to `snapshot`.
fn layers_of(ctx: &Context, snapshot: &Snapshot) -> Result<Vec<String>> {
    let family = ctx
        .store
        .snapshots_of_with_held(snapshot.name.container(), ctx.ui)?;
    Ok(layers_over(&family, &snapshot.name))
}

/// The snapshots in `family` stored as changes to `name`.
fn layers_over(family: &[Snapshot], name: &SnapshotName) -> Vec<String> {
    family
        .iter()
        .filter(|s| !s.meta.held && s.anchor().as_ref() == Some(name))
        .map(|s| s.name.to_string())
        .collect()
}

/// Says which of the `deleted` snapshots of `container` still keep their
/// files, once a run has deleted all it was asked to, and for which layers.
pub(super) fn note_held(
    ctx: &Context,
    container: &ContainerName,
    deleted: &[Snapshot],
) -> Result<()> {
    let family = ctx.store.snapshots_of_with_held(container, ctx.ui)?;
    for held in family.iter().filter(|s| s.meta.held) {
        if deleted.iter().any(|d| d.name == held.name) {
            let layers = layers_over(&family, &held.name);
            ctx.ui.note(&format!(
                "kept the files of {}: {} stored as changes to it",
                held.name,
                match layers.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ));
        }
    }
    Ok(())
}

/// Removes the held snapshots of the locked container that no layer needs
/// any more (the last one was deleted, perhaps by a run that died), and
/// finishes holding those a run that died left with their config.
pub(super) fn remove_unneeded_held(ctx: &Context, lock: &NameLock) -> Result<()> {
    let family = ctx.store.snapshots_of_with_held(lock.name(), ctx.ui)?;
    for held in family.iter().filter(|s| s.meta.held) {
        let unregister = unregistration(ctx, held)?;
        if layers_over(&family, &held.name).is_empty() {
            ctx.store.remove(held, lock, unregister)?;
        } else if held.dir.join("config").exists() {
            ctx.store.hold(held, unregister)?;
        }
    }
    Ok(())
}
