//! `lxc-snap cp SNAP:PATH DEST`.

use std::os::unix::ffi::OsStrExt;

use super::Context;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;
use crate::printable::escape_bytes;

pub fn run(ctx: &Context, name: &SnapshotName, path: &[u8], dest: &std::path::Path) -> Result<()> {
    let copied = ops::cp(ctx.store, name, path, dest)?;
    let entries = if copied.entries == 1 {
        "1 entry".to_string()
    } else {
        format!("{} entries", copied.entries)
    };
    ctx.ui.done(&format!(
        "copied {name}:{} to {} ({entries}, {})",
        escape_bytes(&copied.path, true),
        escape_bytes(copied.dest.as_os_str().as_bytes(), true),
        ctx.ui.size(copied.bytes),
    ));
    Ok(())
}
