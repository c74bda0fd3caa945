//! `lxc-snap clone SNAP NEW...`.

use super::Context;
use crate::error::Result;
use crate::names::{ContainerName, SnapshotName};
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, new_names: &[ContainerName]) -> Result<()> {
    for made in ops::clone(ctx.store, name, new_names)? {
        ctx.ui.done(&format!("cloned {name} as {}", made.container));
    }
    Ok(())
}
