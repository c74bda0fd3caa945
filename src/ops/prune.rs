//! Pruning: deletes the snapshots no retention rule keeps (see
//! [`crate::prune`] for the rules) and, when asked, those that have
//! expired, whatever the rules say. Pinned snapshots are always kept; a
//! snapshot that something depends on is kept with a warning.

use serde::Serialize;

use super::delete::after_deleting;
use super::require_root;
use crate::error::{Error, ErrorKind, Result};
use crate::names::{ContainerName, SnapshotName};
use crate::notice::Notice;
use crate::prune::{decide, Candidate, Policy};
use crate::store::{expired, NameLock, Snapshot, Store, Usage};

/// What to prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneOptions {
    /// `None`: every container with snapshots.
    pub container: Option<ContainerName>,
    /// No rule at all (with `expired`): only expiry decides.
    pub policy: Policy,
    /// Expired snapshots go, but pinned ones.
    pub expired: bool,
    /// The rules see only the snapshots `auto` took; the others are kept
    /// (unless they expired).
    pub only_auto: bool,
    /// Decide only; delete nothing (needs no root).
    pub dry_run: bool,
}

/// The decision about one snapshot (what `prune --dry-run --json` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneRow {
    pub container: String,
    pub snapshot: String,
    /// When it was taken (RFC 3339, UTC); periods are counted in the
    /// offset it was recorded in.
    pub created_at: String,
    /// `keep` or `remove`.
    pub action: &'static str,
    pub reason: String,
    /// What deleting it alone frees, as `list` shows it (USED).
    pub used_bytes: u64,
}

/// What a prune decided and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Every snapshot considered, by container and number.
    pub plan: Vec<PruneRow>,
    /// Those deleted (none in a dry run).
    pub deleted: Vec<SnapshotName>,
    /// What removing those no rule keeps freed (a dry run: would free),
    /// allocated bytes; `None` for a dry run without root, which cannot
    /// read the captured trees to tell.
    pub freed_bytes: Option<u64>,
}

pub fn prune(store: &Store, opts: &PruneOptions) -> Result<Pruned> {
    if !opts.dry_run {
        require_root("pruning snapshots")?;
    }
    let containers = match &opts.container {
        Some(c) => {
            if store.snapshots_of(c)?.is_empty() && !store.container_exists(c) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{c} has no snapshots and is no container"),
                ));
            }
            vec![c.clone()]
        }
        None => {
            let mut all: Vec<ContainerName> = store
                .snapshots()?
                .into_iter()
                .map(|s| s.name.container().clone())
                .collect();
            all.dedup();
            all
        }
    };
    let mut pruned = Pruned::default();
    // Without root, a dry run cannot read the trees to tell.
    let mut freed = (!opts.dry_run || nix::unistd::geteuid().is_root()).then_some(0);
    for c in &containers {
        let lock = if opts.dry_run {
            None
        } else {
            Some(store.lock(c)?)
        };
        let snapshots = store.snapshots_of(c)?;
        let names: Vec<String> = snapshots.iter().map(|s| s.name.to_string()).collect();
        let candidates = snapshots
            .iter()
            .zip(&names)
            .map(|(s, name)| {
                Ok(Candidate {
                    name,
                    created: s.meta.created_time()?,
                    pinned: s.meta.pinned,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let decisions = verdicts(store, opts, &snapshots, &candidates)?;
        let family = store.snapshots_of_with_held(c)?;
        let usage = Usage::new(&family);
        for (snapshot, (keep, reason)) in snapshots.iter().zip(&decisions) {
            pruned.plan.push(PruneRow {
                container: c.to_string(),
                snapshot: snapshot.name.to_string(),
                created_at: super::utc_text(snapshot.meta.created_time()?),
                action: if *keep { "keep" } else { "remove" },
                reason: reason.clone(),
                used_bytes: usage.frees(snapshot),
            });
        }
        let to_remove: Vec<&Snapshot> = snapshots
            .iter()
            .zip(&decisions)
            .filter(|(_, (keep, _))| !keep)
            .map(|(s, _)| s)
            .collect();
        let Some(lock) = &lock else {
            if let Some(total) = freed.as_mut() {
                let gone: Vec<SnapshotName> = to_remove.iter().map(|s| s.name.clone()).collect();
                *total += store.predict_freed(c, &gone)?;
            }
            continue;
        };
        // Newest first: layers go before the snapshots they are over.
        let mut deleted = Vec::new();
        for snapshot in to_remove.into_iter().rev() {
            if let Some(bytes) = remove(store, snapshot, lock) {
                deleted.push(snapshot.clone());
                pruned.deleted.push(snapshot.name.clone());
                if let Some(total) = freed.as_mut() {
                    *total += bytes;
                }
            }
        }
        after_deleting(store, c, &deleted)?;
    }
    pruned.freed_bytes = freed;
    Ok(pruned)
}

/// Keep or not, and why, for each of `snapshots`: the rules' verdict, or
/// without rules "not expired"; then, with `expired`, every snapshot that
/// has expired and is not pinned goes.
fn verdicts(
    store: &Store,
    opts: &PruneOptions,
    snapshots: &[Snapshot],
    candidates: &[Candidate],
) -> Result<Vec<(bool, String)>> {
    let ruled = |s: &Snapshot| !opts.only_auto || s.meta.auto;
    let mut out: Vec<(bool, String)> = snapshots
        .iter()
        .map(|s| {
            let why = if s.meta.pinned {
                "pinned"
            } else if ruled(s) {
                "not expired"
            } else {
                "taken by hand"
            };
            (true, why.to_string())
        })
        .collect();
    if !(opts.expired && opts.policy == Policy::default()) {
        let (subject, seen): (Vec<usize>, Vec<Candidate>) = snapshots
            .iter()
            .zip(candidates)
            .enumerate()
            .filter(|(_, (s, _))| ruled(s))
            .map(|(i, (_, c))| (i, *c))
            .unzip();
        for (i, d) in subject.into_iter().zip(decide(&opts.policy, &seen)?) {
            out[i] = (d.keep, d.why());
        }
    }
    if opts.expired {
        let now = store.now();
        for (s, verdict) in snapshots.iter().zip(&mut out) {
            if !s.meta.pinned && expired(&s.meta, &now) {
                let at = s.meta.expires_at.clone().unwrap_or_default();
                *verdict = (false, format!("expired ({at})"));
            }
        }
    }
    Ok(out)
}

/// Deletes one snapshot no rule keeps; one that something still needs (or
/// that runs) is kept, with a warning, and the prune goes on. Returns
/// what that freed, or `None` when it was kept.
fn remove(store: &Store, snapshot: &Snapshot, lock: &NameLock) -> Option<u64> {
    let result = store
        .check_deletable(snapshot, false)
        .and_then(|()| store.delete_checked(snapshot, lock));
    let notice = match &result {
        Ok(freed) => Notice::Deleted {
            snapshot: snapshot.name.to_string(),
            freed: *freed,
        },
        Err(e) => Notice::NotDeleted {
            snapshot: snapshot.name.to_string(),
            error: e.to_string(),
        },
    };
    store.observer().notice(notice);
    result.ok()
}
