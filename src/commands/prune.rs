//! `lxc-snap prune NAME|--all --keep-... [--dry-run [--json]]`. A real run
//! reports each deletion as it goes, then what it freed in all; a dry run
//! prints the plan, with what each snapshot frees alone (USED) and what
//! removing all those no rule keeps would free.

use tabled::builder::Builder;

use super::Context;
use crate::error::Result;
use crate::ops::{self, PruneOptions};
use crate::ui::{local_time, out_line, print_json, print_table, time_header};

pub fn run(ctx: &Context, opts: &PruneOptions, json: bool) -> Result<()> {
    let pruned = ops::prune(ctx.store, opts)?;
    let ui = ctx.ui;
    if !opts.dry_run {
        if pruned.deleted.len() > 1 {
            let freed = pruned.freed_bytes.unwrap_or_default();
            ui.done(&format!("freed {} in all", ui.size(freed)));
        }
        return Ok(());
    }
    if json {
        return print_json(&pruned.plan);
    }
    let mut b = Builder::default();
    b.push_record([
        "SNAPSHOT".to_string(),
        time_header("CREATED"),
        "USED".to_string(),
        "ACTION".to_string(),
        "REASON".to_string(),
    ]);
    for r in &pruned.plan {
        b.push_record([
            r.snapshot.clone(),
            local_time(&r.created_at),
            ui.size(r.used_bytes),
            r.action.to_string(),
            r.reason.clone(),
        ]);
    }
    print_table(b, None);
    match pruned.freed_bytes {
        Some(freed) => out_line(&format!("would free {} in all", ui.size(freed))),
        None => out_line("run as root to see what removing them would free in all"),
    }
    Ok(())
}
