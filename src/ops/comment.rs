//! A snapshot's comment, pin and expiry: the things about a snapshot that
//! change after it is taken.

use super::require_root;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::store::Store;

/// The comment of `name`, if it has one.
pub fn comment(store: &Store, name: &SnapshotName) -> Result<Option<String>> {
    store.comment(&store.get(name)?)
}

/// Replaces the comment of `name` with `text` (checked text; empty
/// removes it).
pub fn set_comment(store: &Store, name: &SnapshotName, text: &str) -> Result<()> {
    require_root("setting a comment")?;
    let _lock = store.lock(name.container())?;
    let snapshot = store.get(name)?;
    store.set_comment(&snapshot, (!text.is_empty()).then_some(text))
}

/// Pins (or unpins) `name`: a pinned snapshot is never pruned and is
/// deleted only when forced.
pub fn pin(store: &Store, name: &SnapshotName, pinned: bool) -> Result<()> {
    require_root(if pinned {
        "pinning a snapshot"
    } else {
        "unpinning a snapshot"
    })?;
    let _lock = store.lock(name.container())?;
    let snapshot = store.get(name)?;
    if snapshot.meta.pinned != pinned {
        store.set_pinned(&snapshot, pinned)?;
    }
    Ok(())
}

/// Makes `name` expire at `at`, or with `None` never.
pub fn expire(
    store: &Store,
    name: &SnapshotName,
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
) -> Result<()> {
    require_root("setting when a snapshot expires")?;
    let _lock = store.lock(name.container())?;
    let snapshot = store.get(name)?;
    store.set_expiry(&snapshot, at)
}
