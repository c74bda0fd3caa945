//! `lxc-snap pin SNAP` / `lxc-snap unpin SNAP`.

use super::{require_root, Context};
use crate::error::Result;
use crate::names::SnapshotName;

pub fn run(ctx: &Context, name: &SnapshotName, pinned: bool) -> Result<()> {
    require_root(if pinned {
        "pinning a snapshot"
    } else {
        "unpinning a snapshot"
    })?;
    let _lock = ctx.store.lock(name.container(), ctx.ui)?;
    let snapshot = ctx.store.get(name)?;
    if snapshot.meta.pinned != pinned {
        ctx.store.set_pinned(&snapshot, pinned)?;
    }
    ctx.ui.done(&format!(
        "{} {name}",
        if pinned { "pinned" } else { "unpinned" }
    ));
    Ok(())
}
