//! Deleting snapshots: everything named is checked first (exists, not
//! pinned unless forced, not running, nothing depends on it); only then is
//! anything deleted, each snapshot renamed out of sight before it is
//! removed. Deletion is not cancelled half way: once checked, it finishes.

use std::collections::{BTreeMap, BTreeSet};

use super::require_root;
use crate::error::{Error, ErrorKind, Result};
use crate::names::{ContainerName, SnapshotName};
use crate::notice::Notice;
use crate::store::{Snapshot, Store};

/// Which snapshots a delete names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    One(SnapshotName),
    /// `NAME_A..NAME_B`, both ends included.
    Range(ContainerName, u64, u64),
    All(ContainerName),
}

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// In the order deleted.
    pub deleted: Vec<SnapshotName>,
    /// Deleted snapshots whose files stay for the layers stored as changes
    /// to them, with those layers.
    pub held: Vec<(String, Vec<String>)>,
}

/// Deletes what `targets` name; with `force`, pinned ones too. Tells the
/// observer of each snapshot as it goes ([`Notice::Deleted`]) and of the
/// ones kept for layers ([`Notice::KeptFiles`]).
pub fn delete(store: &Store, targets: &[Selection], force: bool) -> Result<Deleted> {
    require_root("deleting snapshots")?;
    let names = resolve(store, targets)?;
    let containers: BTreeSet<ContainerName> = names.iter().map(|n| n.container().clone()).collect();
    let locks = containers
        .iter()
        .map(|c| Ok((c.clone(), store.lock(c)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let snapshots = names
        .iter()
        .map(|n| store.get(n))
        .collect::<Result<Vec<_>>>()?;
    for s in &snapshots {
        store.check_deletable(s, force)?;
    }
    let mut report = Deleted::default();
    for s in &snapshots {
        store.delete_checked(s, &locks[s.name.container()])?;
        store.observer().notice(Notice::Deleted {
            snapshot: s.name.to_string(),
        });
        report.deleted.push(s.name.clone());
    }
    for c in &containers {
        report.held.extend(after_deleting(store, c, &snapshots)?);
    }
    Ok(report)
}

/// Brings the sizes of `container`'s remaining snapshots up to date after
/// `deleted` went, and tells which deleted ones keep their files for
/// layers.
pub(super) fn after_deleting(
    store: &Store,
    container: &ContainerName,
    deleted: &[Snapshot],
) -> Result<Vec<(String, Vec<String>)>> {
    store.refresh_neighbours(container, deleted)?;
    let held = store.held_for_layers(container, deleted)?;
    for (snapshot, layers) in &held {
        store.observer().notice(Notice::KeptFiles {
            snapshot: snapshot.clone(),
            layers: layers.clone(),
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
