//! `lxc-snap exec SOURCE [options] -- CMD...`. Standard output is CMD's:
//! what lxc-snap says goes to standard error.

use super::Context;
use crate::error::Result;
use crate::ops::{self, Ended, ExecOptions};
use crate::printable::escape_bytes;

pub fn run(ctx: &Context, opts: &ExecOptions) -> Result<i32> {
    let done = ops::exec(ctx.store, opts)?;
    for c in &done.collected {
        ctx.ui.note(&format!(
            "collected {} as {} ({} entries, {})",
            escape_bytes(&c.path, true),
            c.dest.display(),
            c.entries,
            ctx.ui.size(c.bytes)
        ));
    }
    if done.snapshot_taken && opts.keep_snapshot {
        ctx.ui.note(&format!("kept snapshot {}", done.snapshot));
    }
    if let Ended::TimedOut(after) = done.ended {
        ctx.ui.warn(&format!(
            "the command was stopped after {} s (--timeout)",
            after.as_secs()
        ));
    }
    Ok(done.ended.exit_code())
}
