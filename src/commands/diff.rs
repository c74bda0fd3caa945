//! `lxc-snap diff A [B] [--content] [--json]`: a line per change as it is
//! found, then a summary; or the whole report as JSON.

use std::io::Write;

use super::Context;
use crate::diff::{format_line, Change, Summary};
use crate::error::Result;
use crate::ops::{self, DiffOptions};
use crate::ui::{human_bytes, print_json_value};

pub fn run(ctx: &Context, opts: &DiffOptions, json: bool) -> Result<()> {
    if json {
        return print_json_value(&ops::diff_report(ctx.store, opts)?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    let (_, _, summary) = ops::diff(ctx.store, opts, |c| {
        if failed.is_none() {
            failed = writeln!(out, "{}", change_line(c)).err();
        }
    })?;
    // A failure writing stdout ends the command when it is done (`main`).
    if let Some(e) = failed {
        crate::ui::stdout_failed(&e);
        return Ok(());
    }
    let written = writeln!(out, "{}", summary_line(&summary)).and_then(|()| out.flush());
    if let Err(e) = written {
        crate::ui::stdout_failed(&e);
    }
    Ok(())
}

/// A change as `diff` prints it: its line, and what it was where that is
/// worth saying.
pub(super) fn change_line(c: &Change) -> String {
    match c.note() {
        Some(note) => format!("{}\t({note})", format_line(c)),
        None => format_line(c),
    }
}

/// The counts and bytes of a comparison, as its last line.
pub(super) fn summary_line(summary: &Summary) -> String {
    format!(
        "{} added, {} modified, {} deleted, {} type changed; {} added, {} removed, {} changed",
        summary.added,
        summary.modified,
        summary.deleted,
        summary.type_changed,
        human_bytes(summary.bytes_added),
        human_bytes(summary.bytes_removed),
        human_bytes(summary.bytes_changed),
    )
}
