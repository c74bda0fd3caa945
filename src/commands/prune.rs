//! `lxc-snap prune NAME|--all --keep-... [--dry-run [--json]]`: delete the
//! snapshots no retention rule keeps (see [`crate::prune`] for the rules).
//! Pinned snapshots are always kept; a snapshot that something depends on
//! is kept with a warning.

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

use super::delete::{check_deletable, delete_checked, note_held, refresh_neighbours};
use super::{require_root, Context};
use crate::error::{Error, ErrorKind, Result};
use crate::names::ContainerName;
use crate::prune::{decide, Candidate, Policy};
use crate::store::Snapshot;

#[derive(Serialize)]
struct Row {
    container: String,
    snapshot: String,
    /// As recorded (RFC 3339); periods are counted in this offset.
    created: String,
    action: &'static str,
    reason: String,
}

pub fn run(
    ctx: &Context,
    container: Option<&ContainerName>,
    policy: &Policy,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    if !dry_run {
        require_root("pruning snapshots")?;
    }
    let containers = match container {
        Some(c) => {
            if ctx.store.snapshots_of(c, ctx.ui)?.is_empty()
                && !super::list::container_exists(ctx, c)
            {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{c} has no snapshots and is no container"),
                ));
            }
            vec![c.clone()]
        }
        None => {
            let mut all: Vec<ContainerName> = ctx
                .store
                .snapshots(ctx.ui)?
                .into_iter()
                .map(|s| s.name.container().clone())
                .collect();
            all.dedup();
            all
        }
    };
    let mut rows = Vec::new();
    for c in &containers {
        let lock = if dry_run {
            None
        } else {
            Some(ctx.store.lock(c, ctx.ui)?)
        };
        let snapshots = ctx.store.snapshots_of(c, ctx.ui)?;
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
        let decisions = decide(policy, &candidates)?;
        let mut deleted = Vec::new();
        for (snapshot, decision) in snapshots.iter().zip(&decisions) {
            if let Some(lock) = &lock {
                if !decision.keep && remove(ctx, snapshot, lock) {
                    deleted.push(snapshot.clone());
                }
                continue;
            }
            rows.push(Row {
                container: c.to_string(),
                snapshot: decision.name.to_string(),
                created: snapshot.meta.created.clone(),
                action: decision.verdict(),
                reason: decision.why(),
            });
        }
        refresh_neighbours(ctx, c, &deleted)?;
        note_held(ctx, c, &deleted)?;
    }
    if !dry_run {
        return Ok(());
    }
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::new(ErrorKind::Other, format!("encoding JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    let mut b = Builder::default();
    b.push_record(["SNAPSHOT", "CREATED", "ACTION", "REASON"]);
    for r in &rows {
        let created = chrono::DateTime::parse_from_rfc3339(&r.created)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| r.created.clone());
        b.push_record([
            r.snapshot.clone(),
            created,
            r.action.to_string(),
            r.reason.clone(),
        ]);
    }
    let mut table = b.build();
    table.with(Style::blank());
    println!("{table}");
    Ok(())
}

/// Deletes one snapshot no rule keeps; one that something still needs (or
/// that runs) is kept, with a warning, and the prune goes on. Returns
/// whether it was deleted.
fn remove(ctx: &Context, snapshot: &Snapshot, lock: &crate::store::NameLock) -> bool {
    let result =
        check_deletable(ctx, snapshot, false).and_then(|()| delete_checked(ctx, snapshot, lock));
    match result {
        Ok(()) => {
            ctx.ui.done(&format!("deleted {}", snapshot.name));
            true
        }
        Err(e) => {
            ctx.ui.warn(&format!("kept {}: {e}", snapshot.name));
            false
        }
    }
}
