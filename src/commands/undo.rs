//! `lxc-snap undo SNAP PATH... [--dry-run] [--no-backup] [--content]
//! [--json]`: each change as `diff` prints it (from the container now to
//! SNAP), then the counts; or the whole record as JSON.

use super::diff::{change_line, summary_line};
use super::Context;
use crate::error::Result;
use crate::ops::{self, UndoOptions};
use crate::ui::{out, print_json_value};

pub fn run(ctx: &Context, opts: &UndoOptions, json: bool) -> Result<()> {
    let done = ops::undo(ctx.store, opts)?;
    if json {
        return print_json_value(&done);
    }
    let mut text = String::new();
    for c in &done.changes {
        text.push_str(&change_line(c));
        text.push('\n');
    }
    if !done.changes.is_empty() {
        text.push_str(&summary_line(&done.summary));
        text.push('\n');
    }
    out(&text);
    let (container, snapshot) = (&done.container, &done.snapshot);
    let message = match (&done.backup, done.changes.is_empty(), done.dry_run) {
        (_, true, _) => format!("nothing to undo: {container} has these paths as {snapshot} has them"),
        (_, false, true) => format!("would put these paths of {container} back as {snapshot} has them (dry run: nothing changed)"),
        (Some(saved), false, false) => format!(
            "put these paths of {container} back as {snapshot} has them (the state before is {saved})"
        ),
        (None, false, false) => format!("put these paths of {container} back as {snapshot} has them"),
    };
    ctx.ui.done(&message);
    Ok(())
}
