//! `lxc-snap mount SNAP DIR` / `lxc-snap umount DIR`.

use std::path::Path;

use super::Context;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;

pub fn mount(ctx: &Context, name: &SnapshotName, dir: &Path) -> Result<()> {
    ops::mount(ctx.store, name, dir)?;
    ctx.ui
        .done(&format!("mounted {name} read-only at {}", dir.display()));
    Ok(())
}

pub fn umount(ctx: &Context, dir: &Path) -> Result<()> {
    ops::umount(dir)?;
    ctx.ui.done(&format!("unmounted {}", dir.display()));
    Ok(())
}
