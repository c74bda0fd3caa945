//! Comparing: what changed between two snapshots of one container, or
//! between a snapshot and the container as it is now, from the captured
//! trees (see [`crate::diff`] for the rules).

use serde::Serialize;

use super::require_root;
use crate::diff::{Change, Options, Summary, View};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::Container;
use crate::names::SnapshotName;
use crate::store::Store;

/// What to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffOptions {
    pub old: SnapshotName,
    /// `None`: the container's current state.
    pub new: Option<SnapshotName>,
    /// Compare file contents, not only sizes and times.
    pub content: bool,
}

/// A whole comparison (what `diff --json` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    pub old: String,
    /// The newer snapshot, or `NAME (now)`.
    pub new: String,
    pub changes: Vec<Change>,
    pub summary: Summary,
}

/// Compares as `opts` say, handing each change to `each` as it is found
/// (in path order); returns the two sides' labels and the summary.
pub fn diff(
    store: &Store,
    opts: &DiffOptions,
    each: impl FnMut(&Change),
) -> Result<(String, String, Summary)> {
    require_root("comparing snapshots")?;
    let old = &opts.old;
    let old_view = View::of_dirs(store.snapshot_layers(&store.get(old)?)?);
    let (new_label, new_view) = match &opts.new {
        Some(n) => (
            n.to_string(),
            View::of_dirs(store.snapshot_layers(&store.get(n)?)?),
        ),
        None => {
            let c = Container::open(store.lxcpath()?, old.container())?;
            let tree = c.tree().map_err(|e| {
                if e.kind() == ErrorKind::Unsupported {
                    Error::new(e.kind(), format!("cannot compare with {}", e.message()))
                } else {
                    e
                }
            })?;
            let layers = store.container_layers(tree.dir, &tree.rootfs)?;
            (format!("{} (now)", c.name), View::of_dirs(layers))
        }
    };
    let summary = crate::diff::diff(
        &old_view,
        &new_view,
        &Options {
            content: opts.content,
            cancel: Some(store.cancel().clone()),
        },
        each,
    )?;
    Ok((old.to_string(), new_label, summary))
}

/// [`diff`], every change collected.
pub fn diff_report(store: &Store, opts: &DiffOptions) -> Result<DiffReport> {
    let mut changes = Vec::new();
    let (old, new, summary) = diff(store, opts, |c| changes.push(c.clone()))?;
    Ok(DiffReport {
        old,
        new,
        changes,
        summary,
    })
}
