//! `lxc-snap reset SNAP`: empties what the snapshot wrote when started.
//! Run by LXC as the snapshot's pre-start hook (`--from-lxc`), it prints
//! nothing.

use super::Context;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, starting: bool) -> Result<()> {
    let reset = ops::reset(ctx.store, name, starting)?;
    if !starting {
        ctx.ui.done(&format!(
            "reset {}: removed what it wrote when started ({})",
            reset.snapshot,
            ctx.ui.size(reset.freed_bytes)
        ));
    }
    Ok(())
}
