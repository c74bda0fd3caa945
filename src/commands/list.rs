//! `lxc-snap -l [NAME]` / `lxc-snap list [NAME] [--json]`.

use tabled::builder::Builder;

use super::Context;
use crate::error::Result;
use crate::names::ContainerName;
use crate::ops;
use crate::ui::{human_bytes, local_time, print_json, print_table, time_header};

pub fn run(
    ctx: &Context,
    container: Option<&ContainerName>,
    json: bool,
    no_header: bool,
) -> Result<()> {
    match container {
        None => list_containers(ctx, json, no_header),
        Some(c) => list_snapshots(ctx, c, json, no_header),
    }
}

fn list_containers(ctx: &Context, json: bool, no_header: bool) -> Result<()> {
    let rows = ops::containers(ctx.store)?;
    if json {
        return print_json(&rows);
    }
    let mut b = Builder::default();
    if !no_header {
        b.push_record([
            "CONTAINER".to_string(),
            "SNAPSHOTS".to_string(),
            time_header("NEWEST"),
        ]);
    }
    for r in &rows {
        b.push_record([
            r.container.clone(),
            r.snapshots.to_string(),
            local_time(&r.newest),
        ]);
    }
    print_table(b, None);
    Ok(())
}

fn list_snapshots(
    ctx: &Context,
    container: &ContainerName,
    json: bool,
    no_header: bool,
) -> Result<()> {
    let rows = ops::snapshots(ctx.store, container)?;
    if json {
        return print_json(&rows);
    }
    let mut b = Builder::default();
    if !no_header {
        b.push_record(
            [
                "SNAPSHOT",
                &time_header("CREATED"),
                "REFER",
                "USED",
                "PINNED",
                "COMMENT",
            ]
            .map(str::to_string),
        );
    }
    for r in &rows {
        let created = local_time(&r.created_at);
        let first_line = r
            .comment
            .as_deref()
            .and_then(|c| c.lines().next())
            .unwrap_or("");
        let pinned = if r.pinned { "yes" } else { "" };
        b.push_record([
            r.name.clone(),
            created,
            human_bytes(r.bytes),
            human_bytes(r.used_bytes),
            pinned.to_string(),
            crate::printable::escape(first_line),
        ]);
    }
    print_table(b, Some(5));
    Ok(())
}
