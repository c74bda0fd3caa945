//! `lxc-snap -l [NAME]` / `lxc-snap list [NAME] [--json]`.
//!
//! Reads only the metadata and comment files, never a captured tree, so it
//! stays fast with many snapshots.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, Local};
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Modify, Style, Width};

use super::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::Container;
use crate::names::ContainerName;
use crate::store::{self, Backing, Snapshot};
use crate::ui::{human_bytes, terminal_width};

#[derive(Serialize)]
struct ContainerRow {
    container: String,
    snapshots: usize,
    newest: String,
}

#[derive(Serialize)]
struct SnapshotRow {
    name: String,
    container: String,
    number: u64,
    created: String,
    comment: Option<String>,
    pinned: bool,
    backing: Backing,
    lxcpath: PathBuf,
    lowers: Vec<PathBuf>,
    files: u64,
    bytes: u64,
    used_bytes: u64,
    /// The snapshot this one is stored as changes to, if any.
    layer_over: Option<String>,
    path: PathBuf,
}

pub fn run(ctx: &Context, container: Option<&ContainerName>, json: bool) -> Result<()> {
    match container {
        None => list_containers(ctx, json),
        Some(c) => list_snapshots(ctx, c, json),
    }
}

fn list_containers(ctx: &Context, json: bool) -> Result<()> {
    let mut groups: BTreeMap<String, (usize, Option<DateTime<FixedOffset>>)> = BTreeMap::new();
    for s in ctx.store.snapshots(ctx.ui)? {
        let created = s.meta.created_time()?;
        let entry = groups.entry(s.meta.container.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(Some(created));
    }
    let rows: Vec<ContainerRow> = groups
        .into_iter()
        .map(|(container, (snapshots, newest))| ContainerRow {
            container,
            snapshots,
            newest: newest.map(|t| t.to_rfc3339()).unwrap_or_default(),
        })
        .collect();
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
    let family = ctx.store.snapshots_of_with_held(container, ctx.ui)?;
    let snapshots: Vec<&Snapshot> = family.iter().filter(|s| !s.meta.held).collect();
    if snapshots.is_empty() && !container_exists(ctx, container) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "container {container} not found in {} and it has no snapshots in {}",
                ctx.lxcpath_path().display(),
                ctx.store.dir().display()
            ),
        ));
    }
    let usage = store::Usage::new(&family);
    let rows = snapshots
        .iter()
        .map(|s| row(ctx, s, &usage))
        .collect::<Result<Vec<_>>>()?;
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

fn row(ctx: &Context, s: &Snapshot, usage: &store::Usage) -> Result<SnapshotRow> {
    Ok(SnapshotRow {
        name: s.name.to_string(),
        container: s.meta.container.clone(),
        number: s.name.number(),
        created: s.meta.created_time()?.to_rfc3339(),
        comment: ctx.store.comment(s)?,
        pinned: s.meta.pinned,
        backing: s.meta.backing,
        lxcpath: s.meta.lxcpath.clone(),
        lowers: s.meta.lowers.clone(),
        files: s.meta.files,
        bytes: s.meta.bytes,
        used_bytes: usage.frees(s),
        layer_over: s.meta.layer.as_ref().map(|l| l.anchor.clone()),
        path: s.dir.clone(),
    })
}

/// Whether `name` is a container in the lxcpath (listing needs no root,
/// so the lxcpath is only looked at).
pub(super) fn container_exists(ctx: &Context, name: &ContainerName) -> bool {
    std::fs::symlink_metadata(Container::dir_of(&ctx.lxcpath_path(), name)).is_ok()
}

fn local(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn print_json<T: Serialize>(rows: &[T]) -> Result<()> {
    let text = serde_json::to_string_pretty(rows)
        .map_err(|e| Error::new(ErrorKind::Other, format!("encoding JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Prints the table; when the terminal is narrower than the table, the
/// column `cut` (the comment) is truncated to fit.
fn print_table(builder: Builder, cut: Option<usize>) {
    let mut table = builder.build();
    table.with(Style::blank());
    if let (Some(col), Some(width)) = (cut, terminal_width()) {
        let total = table.total_width();
        if total > width {
            let mut others = table.clone();
            others.with(Modify::new(Columns::single(col)).with(Width::truncate(0)));
            let room = width.saturating_sub(others.total_width()).max(1);
            table.with(Modify::new(Columns::single(col)).with(Width::truncate(room)));
        }
    }
    println!("{table}");
}
