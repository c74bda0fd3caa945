//! `lxc-snap -r SNAP NEWNAME` / `lxc-snap restore SNAP NEWNAME`.

use super::Context;
use crate::error::Result;
use crate::names::{ContainerName, SnapshotName};
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, new_name: &ContainerName) -> Result<()> {
    let restored = ops::restore(ctx.store, name, new_name)?;
    ctx.ui
        .done(&format!("restored {name} as {}", restored.container));
    Ok(())
}
