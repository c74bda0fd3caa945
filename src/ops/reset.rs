//! Resetting a snapshot's scratch: what it wrote when started goes, so
//! that it starts again from what was captured. The hook in a snapshot's
//! config does this at each start; `lxc-snap reset SNAP` does it at once.

use super::require_root;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::ensure_stopped;
use crate::names::SnapshotName;
use crate::store::Store;

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub snapshot: SnapshotName,
    /// Allocated bytes of what it had written, now freed.
    pub freed_bytes: u64,
}

/// Empties the scratch of `name`. A running snapshot is refused, unless
/// `starting`: LXC's pre-start hook runs while the snapshot is starting,
/// before anything is mounted.
pub fn reset(store: &Store, name: &SnapshotName, starting: bool) -> Result<Reset> {
    require_root("resetting a snapshot")?;
    let _lock = store.lock(name.container())?;
    let snapshot = store.get(name)?;
    if snapshot.is_legacy() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("{name} is a clone the original lxc-snap made: it has no scratch to reset"),
        ));
    }
    if !starting {
        ensure_stopped(store.dir(), &name.to_string())?;
    }
    Ok(Reset {
        snapshot: name.clone(),
        freed_bytes: store.reset_scratch(&snapshot)?,
    })
}
