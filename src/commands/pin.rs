//! `lxc-snap pin SNAP` / `lxc-snap unpin SNAP`.

use super::Context;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, pinned: bool) -> Result<()> {
    ops::pin(ctx.store, name, pinned)?;
    ctx.ui.done(&format!(
        "{} {name}",
        if pinned { "pinned" } else { "unpinned" }
    ));
    Ok(())
}
