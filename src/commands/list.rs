//! `lxc-snap -l [NAME]` / `lxc-snap list [NAME] [--json]`.

use chrono::{DateTime, FixedOffset, Local};
use tabled::builder::Builder;

use super::Context;
use crate::error::Result;
use crate::names::ContainerName;
use crate::ops;
use crate::ui::{human_bytes, print_json, print_table};

pub fn run(ctx: &Context, container: Option<&ContainerName>, json: bool) -> Result<()> {
    match container {
        None => list_containers(ctx, json),
        Some(c) => list_snapshots(ctx, c, json),
    }
}

fn list_containers(ctx: &Context, json: bool) -> Result<()> {
    let rows = ops::containers(ctx.store)?;
    if json {
        return print_json(&rows);
    }
    let mut b = Builder::default();
    b.push_record(["CONTAINER", "SNAPSHOTS", "NEWEST"]);
    for r in &rows {
        let newest = DateTime::parse_from_rfc3339(&r.newest)
            .map(local)
            .unwrap_or_default();
        b.push_record([r.container.clone(), r.snapshots.to_string(), newest]);
    }
    print_table(b, None);
    Ok(())
}

fn list_snapshots(ctx: &Context, container: &ContainerName, json: bool) -> Result<()> {
    let rows = ops::snapshots(ctx.store, container)?;
    if json {
        return print_json(&rows);
    }
    let mut b = Builder::default();
    b.push_record(["SNAPSHOT", "CREATED", "REFER", "USED", "PINNED", "COMMENT"]);
    for r in &rows {
        let created = DateTime::parse_from_rfc3339(&r.created)
            .map(local)
            .unwrap_or_default();
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

fn local(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
