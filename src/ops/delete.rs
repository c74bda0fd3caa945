//! Deleting snapshots: everything named is checked first (exists, not
//! pinned unless forced, not running, nothing depends on it); only then is
//! anything deleted, each snapshot renamed out of sight before it is
//! removed. Deletion is not cancelled half way: once checked, it finishes.

use std::collections::{BTreeMap, BTreeSet};

use super::require_root;
use crate::error::{Error, ErrorKind, Result};
use crate::names::{ContainerName, SnapshotName};
use crate::notice::Notice;
use crate::store::{Snapshot, Store, Usage};

/// Which snapshots a delete names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    One(SnapshotName),
    /// `NAME_A..NAME_B`, both ends included.
    Range(ContainerName, u64, u64),
    All(ContainerName),
}

/// One snapshot a delete took, or would take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSnapshot {
    pub name: SnapshotName,
    /// What deleting it alone frees, as `list` shows it (USED).
    pub used_bytes: u64,
    /// What deleting it freed, after those deleted before it in the same
    /// run; `None` in a dry run.
    pub freed_bytes: Option<u64>,
}

/// What a delete did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// In the order deleted: newest first, so that layers go before the
    /// snapshot they are stored over.
    pub deleted: Vec<DeletedSnapshot>,
    /// What the whole run freed (a dry run: would free), allocated bytes.
    /// More than the sum of the USED of each when they share files.
    pub freed_bytes: u64,
    /// Deleted snapshots whose trees stay, hidden, for the layers stored
    /// as changes to them, with those layers and what the tree holds.
    pub held: Vec<HeldFor>,
}

/// A deleted snapshot whose tree stays for layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFor {
    pub snapshot: String,
    pub layers: Vec<String>,
    /// What it holds that no listed snapshot shares: what deleting the
    /// last of the layers frees with it.
    pub bytes: u64,
}

/// Deletes what `targets` name; with `force`, pinned ones too; with
/// `dry_run`, only says what it would delete and free. Tells the observer
/// of each snapshot as it goes ([`Notice::Deleted`]) and of the ones kept
/// for layers ([`Notice::KeptFiles`]).
pub fn delete(store: &Store, targets: &[Selection], force: bool, dry_run: bool) -> Result<Deleted> {
    require_root(if dry_run {
        "finding what deleting snapshots frees"
    } else {
        "deleting snapshots"
    })?;
    let names = resolve(store, targets)?;
    let containers: BTreeSet<ContainerName> = names.iter().map(|n| n.container().clone()).collect();
    let locks = containers
        .iter()
        .map(|c| Ok((c.clone(), store.lock(c)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let mut snapshots = names
        .iter()
        .map(|n| store.get(n))
        .collect::<Result<Vec<_>>>()?;
    for s in &snapshots {
        store.check_deletable(s, force)?;
    }
    snapshots.reverse();
    let mut report = Deleted::default();
    for c in &containers {
        let family = store.snapshots_of_with_held(c)?;
        let usage = Usage::new(&family);
        let of_c: Vec<&Snapshot> = snapshots
            .iter()
            .filter(|s| s.name.container() == c)
            .collect();
        if dry_run {
            let gone: Vec<SnapshotName> = of_c.iter().map(|s| s.name.clone()).collect();
            report.freed_bytes += store.predict_freed(c, &gone)?;
        }
        for s in &of_c {
            report.deleted.push(DeletedSnapshot {
                name: s.name.clone(),
                used_bytes: usage.frees(s),
                freed_bytes: None,
            });
        }
    }
    if dry_run {
        return Ok(report);
    }
    for (s, entry) in snapshots.iter().zip(report.deleted.iter_mut()) {
        let freed = store.delete_checked(s, &locks[s.name.container()])?;
        store.observer().notice(Notice::Deleted {
            snapshot: s.name.to_string(),
            freed,
        });
        entry.freed_bytes = Some(freed);
        report.freed_bytes += freed;
    }
    for c in &containers {
        report.held.extend(after_deleting(store, c, &snapshots)?);
    }
    Ok(report)
}

/// Brings the sizes of `container`'s remaining snapshots up to date after
/// `deleted` went, and tells which deleted ones keep their trees for
/// layers.
pub(super) fn after_deleting(
    store: &Store,
    container: &ContainerName,
    deleted: &[Snapshot],
) -> Result<Vec<HeldFor>> {
    store.refresh_neighbours(container, deleted)?;
    let held = store.held_for_layers(container, deleted)?;
    let held: Vec<HeldFor> = held
        .into_iter()
        .map(|(snapshot, layers, bytes)| HeldFor {
            snapshot,
            layers,
            bytes,
        })
        .collect();
    for h in &held {
        store.observer().notice(Notice::KeptFiles {
            snapshot: h.snapshot.clone(),
            layers: h.layers.clone(),
            bytes: h.bytes,
        });
    }
    Ok(held)
}

/// The snapshots the selections name, sorted, each once.
fn resolve(store: &Store, targets: &[Selection]) -> Result<BTreeSet<SnapshotName>> {
    let mut names = BTreeSet::new();
    for t in targets {
        match t {
            Selection::One(n) => {
                store.get(n)?;
                names.insert(n.clone());
            }
            Selection::Range(c, a, b) => {
                let found: Vec<_> = store
                    .snapshots_of(c)?
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
                let found = store.snapshots_of(c)?;
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
