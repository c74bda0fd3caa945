//! The copies operations make, wired to the store's observer (progress,
//! mounts left out) and cancel flag.

use crate::copy::{Compare, CopyOptions, CopyStats};
use crate::dir::Dir;
use crate::error::Result;
use crate::notice::Notice;
use crate::progress::Counts;
use crate::store::{Snapshot, Store};

/// The trees a copy links unchanged files to: a previous snapshot's tree
/// (`top`) and, when that is a layer, the anchor's (`below`); see
/// [`CopyOptions::reference_below`].
#[derive(Clone, Copy, Default)]
pub(super) struct References<'a> {
    pub top: Option<&'a Dir>,
    pub below: Option<&'a Dir>,
}

/// Copies a tree as `dst_name` in `dst_parent`, linking files unchanged
/// since `reference` when one is given; see [`copying`].
pub(super) fn copy_tree(
    store: &Store,
    src: &Dir,
    dst_parent: &Dir,
    dst_name: &str,
    reference: References,
    compare: Compare,
    total: Option<Counts>,
) -> Result<CopyStats> {
    copying(store, reference, compare, total, |opts| {
        crate::copy::copy_dir(src, dst_parent, dst_name.as_ref(), opts)
    })
}

/// Copies what `snapshot` captured as `dst_name` in `dst_parent`, as one
/// independent tree: its tree, or for a layer the anchor's tree with the
/// layer applied.
pub(super) fn copy_snapshot_tree(
    store: &Store,
    snapshot: &Snapshot,
    dst_parent: &Dir,
    dst_name: &str,
) -> Result<CopyStats> {
    // The callers asked Store::usable already.
    snapshot.ensure_complete()?;
    let tree = store.tree_dir(snapshot)?;
    let total = Some(Counts {
        entries: snapshot.meta.files,
        bytes: snapshot.meta.bytes,
    });
    let (Some(layer), Some(anchor)) = (&snapshot.meta.layer, store.anchor_tree_dir(snapshot)?)
    else {
        let quick = Compare::QuickCheck;
        let none = References::default();
        return copy_tree(store, &tree, dst_parent, dst_name, none, quick, total);
    };
    copying(
        store,
        References::default(),
        Compare::QuickCheck,
        total,
        |opts| {
            crate::copy::flatten_at(
                &tree,
                &anchor,
                &layer.removed,
                dst_parent,
                dst_name.as_ref(),
                opts,
            )
        },
    )
}

/// Runs `copy` reporting to the store's observer (of `total`, when known)
/// and stopping when the store's cancel flag is set; tells the observer of
/// every mount point below the source that was not crossed.
pub(super) fn copying(
    store: &Store,
    reference: References,
    compare: Compare,
    total: Option<Counts>,
    copy: impl FnOnce(&CopyOptions) -> Result<CopyStats>,
) -> Result<CopyStats> {
    let observer = store.observer();
    let opts = CopyOptions {
        reference: reference.top,
        reference_below: reference.below,
        compare,
        progress: Some(observer),
        total,
        cancel: Some(store.cancel()),
        ..Default::default()
    };
    observer.copy_started();
    let stats = copy(&opts);
    observer.copy_ended();
    let stats = stats?;
    for p in &stats.skipped_mounts {
        observer.notice(Notice::SkippedMount { path: p.clone() });
    }
    Ok(stats)
}
