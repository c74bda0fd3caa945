//! `lxc-snap expire SNAP DURATION|never`.

use super::snap::expires_at;
use super::Context;
use crate::cli::Expiry;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, expiry: Option<Expiry>) -> Result<()> {
    let at = expiry.map(|e| expires_at(ctx, e)).transpose()?;
    ops::expire(ctx.store, name, at)?;
    match at {
        Some(at) => ctx.ui.done(&format!(
            "{name} expires at {}",
            crate::ui::local_time(&ops::utc_text(at))
        )),
        None => ctx.ui.done(&format!("{name} never expires")),
    }
    Ok(())
}
