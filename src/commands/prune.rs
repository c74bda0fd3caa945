//! `lxc-snap prune NAME|--all --keep-... [--dry-run [--json]]`. A real run
//! reports each deletion as it goes; a dry run prints the plan.

use tabled::builder::Builder;

use super::Context;
use crate::error::Result;
use crate::ops::{self, PruneOptions};
use crate::ui::{local_time, print_json, print_table, time_header};

pub fn run(ctx: &Context, opts: &PruneOptions, json: bool) -> Result<()> {
    let pruned = ops::prune(ctx.store, opts)?;
    if !opts.dry_run {
        return Ok(());
    }
    if json {
        return print_json(&pruned.plan);
    }
    let mut b = Builder::default();
    b.push_record([
        "SNAPSHOT".to_string(),
        time_header("CREATED"),
        "ACTION".to_string(),
        "REASON".to_string(),
    ]);
    for r in &pruned.plan {
        b.push_record([
            r.snapshot.clone(),
            local_time(&r.created_at),
            r.action.to_string(),
            r.reason.clone(),
        ]);
    }
    print_table(b, None);
    Ok(())
}
