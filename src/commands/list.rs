//! `lxc-snap -l [NAME]` / `lxc-snap list [NAME] [--json] [--no-header]
//! [-o COLUMNS]`: a table with, under it, a total line (what the USED
//! column adds up to, and what the snapshots take on disk, which is more
//! when they share files), or JSON.
//!
//! Sizes are allocated bytes, as `du` and ZFS count them: REFER is what a
//! snapshot's captured tree takes, USED what deleting it alone frees.

use tabled::builder::Builder;

use super::Context;
use crate::cli::ListColumn as C;
use crate::error::{Error, ErrorKind, Result};
use crate::names::ContainerName;
use crate::ops::{self, ContainerRecord, SnapshotRecord};
use crate::store::SnapshotState;
use crate::ui::{local_time, out_line, print_json, print_table, time_header};

const SNAPSHOT_COLUMNS: [C; 6] = [
    C::Snapshot,
    C::Created,
    C::Refer,
    C::Used,
    C::Pinned,
    C::Comment,
];
const CONTAINER_COLUMNS: [C; 4] = [C::Container, C::Snapshots, C::Newest, C::Disk];

pub fn run(
    ctx: &Context,
    container: Option<&ContainerName>,
    json: bool,
    no_header: bool,
    columns: &[C],
) -> Result<()> {
    match container {
        None => list_containers(ctx, json, no_header, columns),
        Some(c) => list_snapshots(ctx, c, json, no_header, columns),
    }
}

/// The columns asked for, or `usual`; one not in `allowed` is a usage
/// error.
fn chosen(columns: &[C], usual: &[C], allowed: &[C], what: &str) -> Result<Vec<C>> {
    if columns.is_empty() {
        return Ok(usual.to_vec());
    }
    if let Some(c) = columns.iter().find(|c| !allowed.contains(c)) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("-o {}: no such column when listing {what}", names(&[*c])),
        )
        .with_hint(format!("the columns of this table: {}", names(allowed))));
    }
    Ok(columns.to_vec())
}

const ALL_SNAPSHOT: [C; 12] = [
    C::Snapshot,
    C::Number,
    C::Created,
    C::Refer,
    C::Used,
    C::Size,
    C::Files,
    C::Pinned,
    C::Expires,
    C::State,
    C::Stored,
    C::Comment,
];

fn names(columns: &[C]) -> String {
    columns
        .iter()
        .filter_map(clap::ValueEnum::to_possible_value)
        .map(|v| v.get_name().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn list_containers(ctx: &Context, json: bool, no_header: bool, columns: &[C]) -> Result<()> {
    let columns = chosen(
        columns,
        &CONTAINER_COLUMNS,
        &CONTAINER_COLUMNS,
        "containers",
    )?;
    let rows = ops::containers(ctx.store)?;
    if json {
        return print_json(&rows);
    }
    let ui = ctx.ui;
    let cell = |r: &ContainerRecord, c: C| match c {
        C::Container => r.container.clone(),
        C::Snapshots => r.snapshots.to_string(),
        C::Newest => local_time(&r.newest),
        C::Disk => r.disk_bytes.map_or("-".to_string(), |b| ui.size(b)),
        _ => String::new(),
    };
    let mut b = Builder::default();
    if !no_header {
        b.push_record(columns.iter().map(|&c| header(c)));
    }
    for r in &rows {
        b.push_record(columns.iter().map(|&c| cell(r, c)));
    }
    print_table(b, None);
    if !no_header && !rows.is_empty() {
        let snapshots: usize = rows.iter().map(|r| r.snapshots).sum();
        let disk = ops::snapdir_disk(ctx.store, &rows);
        out_line(&format!(
            "total: {} in {}, {} on disk in the snapdir",
            count(snapshots, "snapshot"),
            count(rows.len(), "container"),
            disk.map_or("unknown (run as root)".to_string(), |b| ui.size(b)),
        ));
    }
    Ok(())
}

fn list_snapshots(
    ctx: &Context,
    container: &ContainerName,
    json: bool,
    no_header: bool,
    columns: &[C],
) -> Result<()> {
    let rows = ops::snapshots(ctx.store, container)?;
    let mut usual = SNAPSHOT_COLUMNS.to_vec();
    if rows.iter().any(|r| r.expires_at.is_some()) {
        usual.insert(usual.len() - 1, C::Expires);
    }
    if rows.iter().any(|r| r.state != SnapshotState::Ok) {
        usual.insert(usual.len() - 1, C::State);
    }
    let columns = chosen(columns, &usual, &ALL_SNAPSHOT, "snapshots")?;
    if json {
        return print_json(&rows);
    }
    let ui = ctx.ui;
    let cell = |r: &SnapshotRecord, c: C| match c {
        C::Snapshot => r.name.clone(),
        C::Number => r.number.to_string(),
        C::Created => local_time(&r.created_at),
        C::Refer => ui.size(r.refer_bytes),
        C::Used => ui.size(r.used_bytes),
        C::Size => ui.size(r.bytes),
        C::Files => r.files.to_string(),
        C::Pinned => if r.pinned { "yes" } else { "" }.to_string(),
        C::Expires => r.expires_at.as_deref().map_or(String::new(), local_time),
        C::State => match r.state {
            SnapshotState::Ok => String::new(),
            s => s.text().to_string(),
        },
        C::Stored => match &r.layer_over {
            _ if r.legacy => "original lxc-snap".to_string(),
            Some(anchor) => format!("layer over {anchor}"),
            None => "whole".to_string(),
        },
        C::Comment => {
            let first = r
                .comment
                .as_deref()
                .and_then(|c| c.lines().next())
                .unwrap_or("");
            let text = if r.legacy {
                format!("(original lxc-snap) {first}")
            } else {
                first.to_string()
            };
            crate::printable::escape(text.trim_end())
        }
        _ => String::new(),
    };
    let mut b = Builder::default();
    if !no_header {
        b.push_record(columns.iter().map(|&c| header(c)));
    }
    for r in &rows {
        b.push_record(columns.iter().map(|&c| cell(r, c)));
    }
    print_table(b, columns.iter().position(|&c| c == C::Comment));
    if !no_header && !rows.is_empty() {
        let used: u64 = rows.iter().map(|r| r.used_bytes).sum();
        let disk = ops::disk(ctx.store, container);
        out_line(&format!(
            "total: {}, USED {} in all, {} on disk",
            count(rows.len(), "snapshot"),
            ui.size(used),
            disk.map_or("unknown (run as root)".to_string(), |b| ui.size(b)),
        ));
    }
    Ok(())
}

fn header(c: C) -> String {
    match c {
        C::Created => time_header("CREATED"),
        C::Newest => time_header("NEWEST"),
        C::Expires => time_header("EXPIRES"),
        _ => clap::ValueEnum::to_possible_value(&c)
            .map(|v| v.get_name().to_uppercase())
            .unwrap_or_default(),
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
