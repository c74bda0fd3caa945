//! `lxc-snap rebuild NAME... --from SNAP`.

use super::Context;
use crate::error::Result;
use crate::ops::{self, RebuildOptions};

pub fn run(ctx: &Context, opts: &RebuildOptions) -> Result<()> {
    for r in ops::rebuild(ctx.store, opts)? {
        let mut line = format!("rebuilt {} from {}", r.container, r.from);
        if !opts.keep.is_empty() {
            line.push_str(&format!(
                " ({} change{} kept)",
                r.kept.len(),
                if r.kept.len() == 1 { "" } else { "s" }
            ));
        }
        ctx.ui.done(&line);
        if let Some(saved) = &r.backup {
            ctx.ui.note(&format!("the state before is {saved}"));
        }
        if let Some(down) = r.down_for {
            ctx.ui.note(&format!(
                "{} was down for {} ms",
                r.container,
                down.as_millis()
            ));
        }
    }
    Ok(())
}
