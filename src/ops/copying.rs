//! The copies operations make, wired to the store's observer (progress,
//! mounts left out) and cancel flag.

use crate::copy::{Compare, CopyOptions, CopyStats};
use crate::dir::Dir;
use crate::error::Result;
use crate::notice::Notice;
use crate::progress::Counts;
use crate::store::{Snapshot, Store};

/// Copies a tree as `dst_name` in `dst_parent`, linking files unchanged
/// since `reference` (a previous snapshot's tree) when one is given; see
/// [`copying`].
pub(super) fn copy_tree(
    store: &Store,
    src: &Dir,
    dst_parent: &Dir,
    dst_name: &str,
    reference: Option<&Dir>,
    compare: Compare,
) -> Result<CopyStats> {
    copying(store, reference, compare, |opts| {
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
    snapshot.ensure_complete()?;
    let tree = store.tree_dir(snapshot)?;
    let (Some(layer), Some(anchor)) = (&snapshot.meta.layer, store.anchor_tree_dir(snapshot)?)
    else {
        return copy_tree(
            store,
            &tree,
            dst_parent,
            dst_name,
            None,
            Compare::QuickCheck,
        );
    };
    copying(store, None, Compare::QuickCheck, |opts| {
        crate::copy::flatten_at(
            &tree,
            &anchor,
            &layer.removed,
            dst_parent,
            dst_name.as_ref(),
            opts.progress,
        )
    })
}

/// Runs `copy` reporting to the store's observer; tells it of every mount
/// point below the source that was not crossed.
pub(super) fn copying(
    store: &Store,
    reference: Option<&Dir>,
    compare: Compare,
    copy: impl FnOnce(&CopyOptions) -> Result<CopyStats>,
) -> Result<CopyStats> {
    let observer = store.observer();
    let report = |bytes: u64| observer.advance(Counts { entries: 0, bytes }, None);
    let opts = CopyOptions {
        reference,
        compare,
        progress: Some(&report),
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
