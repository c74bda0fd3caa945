//! `lxc-snap diff A [B] [--content] [--json]`: what changed between two
//! snapshots of one container, or between A and the container as it is now.
//! Works from the captured trees; see [`crate::diff`] for the rules.

use std::io::Write;

use serde::Serialize;

use super::{require_root, Context};
use crate::diff::{diff, format_line, Change, Kind, Options, Summary, View};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::{Container, Rootfs};
use crate::names::SnapshotName;
use crate::store::{Backing, Snapshot};
use crate::ui::human_bytes;

#[derive(Serialize)]
struct Report {
    old: String,
    new: String,
    changes: Vec<Change>,
    summary: Summary,
}

pub fn run(
    ctx: &Context,
    old: &SnapshotName,
    new: Option<&SnapshotName>,
    content: bool,
    json: bool,
) -> Result<()> {
    require_root("comparing snapshots")?;
    let a = ctx.store.get(old)?;
    let old_view = snapshot_view(&a);
    let (new_label, new_view) = match new {
        Some(n) => (n.to_string(), snapshot_view(&ctx.store.get(n)?)),
        None => {
            let c = Container::open(&ctx.lxcpath(), old.container())?;
            let view = match c.config.rootfs()? {
                Rootfs::Overlay { lowers, upper, .. } => View::overlay(upper, &lowers),
                Rootfs::Dir { path, .. } => View::dir(path),
                Rootfs::Unsupported { kind } => {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "cannot compare with {}: its rootfs backend is {kind}",
                            c.name
                        ),
                    ))
                }
            };
            (format!("{} (now)", c.name), view)
        }
    };
    let opts = Options { content };
    if json {
        let mut changes = Vec::new();
        let summary = diff(&old_view, &new_view, &opts, |c| changes.push(c.clone()))?;
        let report = Report {
            old: old.to_string(),
            new: new_label,
            changes,
            summary,
        };
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::new(ErrorKind::Other, format!("encoding JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    let summary = diff(&old_view, &new_view, &opts, |c| {
        let line = match c.kind {
            Kind::Modified | Kind::TypeChanged => format!("{}\t({})", format_line(c), c.details()),
            _ => format_line(c),
        };
        if failed.is_none() {
            failed = writeln!(out, "{line}").err();
        }
    })?;
    let io = |e| Error::io("writing", std::path::Path::new("standard output"), e);
    if let Some(e) = failed {
        return Err(io(e));
    }
    writeln!(
        out,
        "{} added, {} modified, {} deleted, {} type changed; {} added, {} removed, {} changed",
        summary.added,
        summary.modified,
        summary.deleted,
        summary.type_changed,
        human_bytes(summary.bytes_added),
        human_bytes(summary.bytes_removed),
        human_bytes(summary.bytes_changed),
    )
    .map_err(io)?;
    out.flush().map_err(io)
}

fn snapshot_view(s: &Snapshot) -> View {
    if s.meta.backing == Backing::Dir && s.meta.layer.is_none() {
        View::dir(s.tree())
    } else {
        View::overlay(s.tree(), &s.stack()[1..])
    }
}
