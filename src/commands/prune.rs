//! `lxc-snap prune NAME|--all --keep-... [--dry-run [--json]]`. A real run
//! reports each deletion as it goes; a dry run prints the plan.

use tabled::builder::Builder;

use super::Context;
use crate::error::Result;
use crate::ops::{self, PruneOptions};
use crate::ui::{print_json, print_table};

pub fn run(ctx: &Context, opts: &PruneOptions, json: bool) -> Result<()> {
    let pruned = ops::prune(ctx.store, opts)?;
    if !opts.dry_run {
        return Ok(());
    }
    if json {
        return print_json(&pruned.plan);
    }
    let mut b = Builder::default();
    b.push_record(["SNAPSHOT", "CREATED", "ACTION", "REASON"]);
    for r in &pruned.plan {
        let created = chrono::DateTime::parse_from_rfc3339(&r.created)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| r.created.clone());
        b.push_record([
            r.snapshot.clone(),
            created,
            r.action.to_string(),
            r.reason.clone(),
        ]);
    }
    print_table(b, None);
    Ok(())
}
