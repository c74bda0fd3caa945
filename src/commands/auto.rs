//! `lxc-snap auto [--policy-dir DIR] [--dry-run]`: a line for each
//! snapshot taken (or due), each container skipped and each policy that
//! could not be used; deletions are told as they happen. Fails (exit 1)
//! when anything went wrong, after doing the rest.

use std::path::Path;

use super::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::ops;
use crate::ui::local_time;

pub fn run(ctx: &Context, policy_dir: &Path, dry_run: bool) -> Result<()> {
    let report = ops::auto(ctx.store, policy_dir, dry_run)?;
    for (container, taken) in &report.taken {
        match taken {
            Some(name) => ctx.ui.done(&format!("took {name} (scheduled)")),
            None => ctx.ui.done(&format!("{container}: a snapshot is due")),
        }
    }
    for (container, next) in &report.not_due {
        ctx.ui.note(&format!(
            "{container}: next snapshot due at {}",
            local_time(next)
        ));
    }
    if dry_run {
        for row in report.pruned.plan.iter().filter(|r| r.action == "remove") {
            ctx.ui
                .done(&format!("would delete {}: {}", row.snapshot, row.reason));
        }
    }
    for (container, why) in &report.skipped {
        ctx.ui.warn(&format!("{container}: not snapshotted: {why}"));
    }
    for failure in &report.failed {
        ctx.ui.warn(failure);
    }
    match report.failed.len() {
        0 => Ok(()),
        n => Err(Error::new(
            ErrorKind::Other,
            format!("auto: {n} of the policies could not be carried out (see above)"),
        )),
    }
}
