//! `auto`: for every container with a policy (`NAME.conf` in the policy
//! directory, see [`crate::schedule`]), takes the snapshot that is due and
//! prunes as the policy says; for every container, deletes the snapshots
//! that have expired. Meant to run from a timer; one container's trouble
//! (a bad policy, a failed snapshot) is reported and the others go on.
//!
//! The policy directory is trusted as the snapdir is: as root, it and the
//! directories above it must be root's and writable by no one else, and
//! each policy file is read bounded, never through a symlink.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::prune::{prune, PruneOptions, Pruned};
use super::require_root;
use super::take::{take, Increment, TakeOptions};
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::{Container, State};
use crate::names::{ContainerName, SnapshotName};
use crate::prune::Policy;
use crate::schedule::Schedule;
use crate::store::Store;

/// Largest policy file read.
const MAX_POLICY: u64 = 64 << 10;

/// What `auto` did, or with `dry_run` would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoReport {
    /// Containers whose snapshot was due: the one taken (none in a dry run).
    pub taken: Vec<(ContainerName, Option<SnapshotName>)>,
    /// Containers with a policy and nothing due: when the next one is.
    pub not_due: Vec<(ContainerName, String)>,
    /// Containers whose due snapshot was not taken, and why.
    pub skipped: Vec<(ContainerName, String)>,
    /// Every prune's decisions and deletions.
    pub pruned: Pruned,
    /// What went wrong, per policy file or container; the run fails when
    /// this is not empty, after doing all it could.
    pub failed: Vec<String>,
}

pub fn auto(store: &Store, policy_dir: &Path, dry_run: bool) -> Result<AutoReport> {
    if !dry_run {
        require_root("taking scheduled snapshots")?;
    }
    let mut report = AutoReport::default();
    let mut handled = BTreeSet::new();
    for (path, read) in policies(policy_dir)? {
        let (container, text) = match read {
            Ok(r) => r,
            Err(e) => {
                report.failed.push(e.to_string());
                continue;
            }
        };
        handled.insert(container.clone());
        let schedule = match Schedule::parse(&text, &path.display().to_string()) {
            Ok(s) => s,
            Err(e) => {
                report.failed.push(e.to_string());
                continue;
            }
        };
        if let Err(e) = run_policy(store, &container, &schedule, dry_run, &mut report) {
            report.failed.push(format!("{container}: {e}"));
        }
    }
    // Expiry applies to every container, with a policy or not.
    let mut others: Vec<ContainerName> = store
        .snapshots()?
        .into_iter()
        .map(|s| s.name.container().clone())
        .filter(|c| !handled.contains(c))
        .collect();
    others.dedup();
    for container in others {
        let opts = PruneOptions {
            container: Some(container.clone()),
            policy: Policy::default(),
            expired: true,
            only_auto: false,
            dry_run,
        };
        match prune(store, &opts) {
            Ok(p) => merge(&mut report.pruned, p),
            Err(e) => report.failed.push(format!("{container}: {e}")),
        }
    }
    Ok(report)
}

/// Takes what is due for one container, then prunes it.
fn run_policy(
    store: &Store,
    container: &ContainerName,
    schedule: &Schedule,
    dry_run: bool,
    report: &mut AutoReport,
) -> Result<()> {
    let source = Container::open(store.lxcpath()?, container)?;
    let now = store.now();
    let last = store
        .snapshots_of(container)?
        .iter()
        .filter(|s| s.meta.auto)
        .filter_map(|s| s.meta.created_time().ok())
        .max();
    if !schedule.due(last.as_ref(), &now) {
        let next = last
            .and_then(|t| schedule.every.after(&t))
            .map(super::utc_text)
            .unwrap_or_default();
        report.not_due.push((container.clone(), next));
    } else if dry_run {
        report.taken.push((container.clone(), None));
    } else if !schedule.freeze && source.state()? != State::Stopped {
        report.skipped.push((
            container.clone(),
            "it is running, and its policy does not say freeze = yes".to_string(),
        ));
    } else {
        let taken = take(
            store,
            &TakeOptions {
                container: container.clone(),
                comment: Some(format!("automatic snapshot (every {})", schedule.every)),
                increment: Increment::QuickCheck,
                freeze: schedule.freeze,
                expires_at: schedule.expiry.and_then(|e| e.after(&now)),
                auto: true,
            },
        )?;
        report.taken.push((container.clone(), Some(taken.name)));
    }
    let opts = PruneOptions {
        container: Some(container.clone()),
        policy: if schedule.keep.is_empty() {
            Policy::default()
        } else {
            schedule.keep
        },
        expired: true,
        only_auto: !schedule.prune_manual,
        dry_run,
    };
    merge(&mut report.pruned, prune(store, &opts)?);
    Ok(())
}

fn merge(all: &mut Pruned, one: Pruned) {
    all.plan.extend(one.plan);
    all.deleted.extend(one.deleted);
    all.freed_bytes = match (all.freed_bytes, one.freed_bytes) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
}

/// A policy file's container and text.
type PolicyText = (ContainerName, String);

/// Each policy file `NAME.conf` in `dir` whose NAME is a container name,
/// by name, with its text (or why it could not be read). A missing
/// directory has none.
fn policies(dir: &Path) -> Result<Vec<(PathBuf, Result<PolicyText>)>> {
    let held = match Dir::open_trusted(dir, None, "policy directory") {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut names = held.names()?;
    names.sort();
    for name in names {
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".conf")) else {
            continue;
        };
        let path = held.join(&name);
        let container = ContainerName::parse(stem).map_err(|_| {
            Error::new(
                ErrorKind::Usage,
                format!("{}: {stem:?} is no container name", path.display()),
            )
        });
        let text = held
            .read_file(&name, MAX_POLICY, "policy file")
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| {
                    Error::new(ErrorKind::Usage, format!("{}: not UTF-8", path.display()))
                })
            });
        out.push((path, container.and_then(|c| text.map(|t| (c, t)))));
    }
    Ok(out)
}
