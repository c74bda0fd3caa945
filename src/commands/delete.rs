//! `lxc-snap delete SNAP... | NAME_A..NAME_B | --all NAME [--force]
//! [--dry-run]` (alias `rm`). Each deleted snapshot is reported as it goes
//! (by the terminal's observer), then what the run freed in all; a dry run
//! prints what it would delete, what each frees alone, and the total, as
//! `zfs destroy -nv` does.

use super::Context;
use crate::error::Result;
use crate::ops::{self, Selection};

pub fn run(ctx: &Context, targets: &[Selection], force: bool, dry_run: bool) -> Result<()> {
    let report = ops::delete(ctx.store, targets, force, dry_run)?;
    let ui = ctx.ui;
    if dry_run {
        for d in &report.deleted {
            crate::ui::out_line(&format!(
                "would delete {} (USED {})",
                d.name,
                ui.size(d.used_bytes)
            ));
        }
        crate::ui::out_line(&format!(
            "would free {} in all",
            ui.size(report.freed_bytes)
        ));
    } else if report.deleted.len() > 1 {
        ui.done(&format!("freed {} in all", ui.size(report.freed_bytes)));
    }
    Ok(())
}
