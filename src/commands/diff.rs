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
use crate::store::Snapshot;
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
    let old_view = snapshot_view(ctx, &a)?;
    let (new_label, new_view) = match new {
        Some(n) => (n.to_string(), snapshot_view(ctx, &ctx.store.get(n)?)?),
        None => {
            let c = Container::open(ctx.lxcpath()?, old.container())?;
            let tree = c.tree().map_err(|e| {
                if e.kind() == ErrorKind::Unsupported {
                    Error::new(e.kind(), format!("cannot compare with {}", e.message()))
                } else {
                    e
                }
            })?;
            let mut layers = Vec::new();
            if let Rootfs::Overlay { lowers, .. } = &tree.rootfs {
                for l in lowers {
                    layers.push(ctx.open_lower(l)?);
                }
            }
            layers.insert(0, tree.dir);
            let view = View::of_dirs(layers);
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

/// What a snapshot's container saw: its tree, its anchor's for a layer,
/// and its lowers (the ones lxc-snap accepts), held open.
fn snapshot_view(ctx: &Context, s: &Snapshot) -> Result<View> {
    Ok(View::of_dirs(ctx.snapshot_layers(s)?))
}
