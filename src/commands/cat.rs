//! `lxc-snap cat SNAP PATH`: the file's bytes, as captured, to stdout.

use std::io::Write;

use super::Context;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, path: &[u8]) -> Result<()> {
    let mut captured = ops::cat(ctx.store, name, path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // A failure writing stdout (a closed pipe) ends the command in `main`.
    let copied = std::io::copy(&mut captured.file, &mut out).and_then(|_| out.flush());
    if let Err(e) = copied {
        crate::ui::stdout_failed(&e);
    }
    Ok(())
}
