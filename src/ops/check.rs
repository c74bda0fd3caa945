//! `check`: verifies the snapshots of one container (or of all): each one
//! readable and in a state it can be used in, its bases listing it in
//! their `lxc_snapshots` as it lists them, and no half-built snapshot left
//! by a run that died. Each problem comes with what to do about it; with
//! `repair`, the safe fixes are made (leftovers removed, registrations put
//! back, sizes measured again) and the report says what changed.

use serde::Serialize;

use super::require_root;
use crate::durable::{staged_final_name, STAGING_PREFIX};
use crate::error::Result;
use crate::names::{ContainerName, SnapshotName};
use crate::store::{SnapshotState, Store};

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub container: String,
    /// The snapshot it is about, when it is about one.
    pub snapshot: Option<String>,
    pub what: String,
    /// What to do about it.
    pub fix: String,
    /// `repair` fixed it.
    pub repaired: bool,
}

/// What `check` found (what `check --json` prints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Snapshots looked at.
    pub checked: usize,
    pub problems: Vec<Problem>,
    /// What `repair` did besides fixing problems.
    pub changed: Vec<String>,
}

impl CheckReport {
    /// Everything is fine, or was made so.
    pub fn clean(&self) -> bool {
        self.problems.iter().all(|p| p.repaired)
    }
}

pub fn check(
    store: &Store,
    container: Option<&ContainerName>,
    repair: bool,
) -> Result<CheckReport> {
    require_root("checking snapshots")?;
    let mut report = CheckReport::default();
    let root = match store.root() {
        Ok(root) => root,
        Err(e) if e.kind() == crate::error::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e),
    };
    let names = root.names()?;
    let mut containers: Vec<ContainerName> = match container {
        Some(c) => vec![c.clone()],
        None => names
            .iter()
            .filter_map(|n| {
                let n = n.to_str()?;
                let n = staged_final_name(n.as_ref()).unwrap_or_else(|| n.to_string());
                Some(SnapshotName::try_parse(&n)?.container().clone())
            })
            .collect(),
    };
    containers.sort();
    containers.dedup();
    for c in &containers {
        let lock = if repair { Some(store.lock(c)?) } else { None };
        let problem = |snapshot: Option<&SnapshotName>, what: String, fix: String| Problem {
            container: c.to_string(),
            snapshot: snapshot.map(|s| s.to_string()),
            what,
            fix,
            repaired: false,
        };
        // Half-built snapshots of runs that died.
        let leftovers: Vec<String> = names
            .iter()
            .filter_map(|n| n.to_str())
            .filter(|n| n.starts_with(STAGING_PREFIX))
            .filter(|n| {
                staged_final_name(n.as_ref())
                    .and_then(|f| SnapshotName::try_parse(&f).map(|s| s.container() == c))
                    .unwrap_or(false)
            })
            .map(str::to_string)
            .collect();
        let mut found = Vec::new();
        for l in &leftovers {
            found.push(problem(
                None,
                format!(
                    "{}: a snapshot an interrupted run left half-built",
                    root.join(l).display()
                ),
                "the next snapshot of the container removes it, or: lxc-snap check --repair".into(),
            ));
        }
        if let Some(lock) = &lock {
            if !leftovers.is_empty() {
                store.remove_leftovers(lock)?;
                for p in found.iter_mut() {
                    p.repaired = true;
                }
            }
        }
        // Snapshot directories whose metadata cannot be read.
        let snapshots = store.snapshots_of_with_held(c)?;
        for n in names.iter().filter_map(|n| n.to_str()) {
            let Some(name) = SnapshotName::try_parse(n) else {
                continue;
            };
            if name.container() != c || snapshots.iter().any(|s| s.name == name) {
                continue;
            }
            if root
                .stat_at(n)?
                .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            {
                found.push(problem(
                    Some(&name),
                    "its metadata (lxc-snap.json) cannot be read, so it is not listed".into(),
                    format!(
                        "look at {}; lxc-snap leaves it alone",
                        root.join(n).display()
                    ),
                ));
            }
        }
        for s in snapshots.iter().filter(|s| !s.meta.held) {
            report.checked += 1;
            let health = store.health(s);
            let why = health.why.clone().unwrap_or_default();
            let fix = match health.state {
                SnapshotState::Ok => None,
                SnapshotState::BaseChanged => Some(
                    "nothing to repair: it still works, over the base as it is now; restore it \
                     to keep what it is today"
                        .to_string(),
                ),
                SnapshotState::BaseMissing => Some(format!(
                    "put the base container back, or delete the snapshot: lxc-snap delete {}",
                    s.name
                )),
                SnapshotState::AnchorMissing | SnapshotState::Broken => Some(format!(
                    "it cannot be read again: lxc-snap delete {}",
                    s.name
                )),
            };
            if let Some(fix) = fix {
                found.push(problem(
                    Some(&s.name),
                    format!("{}: {why}", health.state.text()),
                    fix,
                ));
            }
            for base in store.unregistered_bases(s)? {
                let mut p = problem(
                    Some(&s.name),
                    format!(
                        "its base {} does not list it in lxc_snapshots, so lxc-destroy would \
                         remove the base under it",
                        base.lxcpath.join(&base.name).display()
                    ),
                    "lxc-snap check --repair lists it there again".into(),
                );
                if repair {
                    store.register(&base, &s.name)?;
                    p.repaired = true;
                }
                found.push(p);
            }
        }
        if repair {
            for s in snapshots
                .iter()
                .filter(|s| !s.meta.held && s.missing().is_none())
            {
                if !s.is_legacy() {
                    store.refresh_used(s)?;
                }
            }
            if let Some(lock) = &lock {
                store.remeasure_disk(lock)?;
            }
            report.changed.push(format!(
                "{c}: measured again what each snapshot alone holds (USED) and what they \
                 take on disk"
            ));
        }
        report.problems.extend(found);
    }
    Ok(report)
}
