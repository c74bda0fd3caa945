//! `lxc-snap rollback SNAP [--no-backup]`.

use super::Context;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, backup: bool) -> Result<()> {
    let done = ops::rollback(ctx.store, name, backup)?;
    match done.backup {
        Some(saved) => ctx.ui.done(&format!(
            "rolled {} back to {name} (the state before is {saved})",
            done.container
        )),
        None => ctx
            .ui
            .done(&format!("rolled {} back to {name}", done.container)),
    }
    Ok(())
}
