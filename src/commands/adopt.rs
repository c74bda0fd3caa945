//! `lxc-snap adopt NAME [--dry-run]`: the original lxc-snap's snapshots of
//! NAME in lxc-snap's own layout, a line each; `--from-lxc-snapshot
//! [--keep]`: lxc-snapshot's.

use super::Context;
use crate::error::Result;
use crate::names::ContainerName;
use crate::ops;
use crate::ui::out_line;

pub fn run(ctx: &Context, container: &ContainerName, dry_run: bool) -> Result<()> {
    let adopted = ops::adopt(ctx.store, container, dry_run)?;
    for a in &adopted {
        if dry_run {
            out_line(&crate::printable::escape(&format!(
                "would adopt {} (an original lxc-snap clone, its tree in {})",
                a.name,
                a.tree.display()
            )));
        } else {
            let stored = match &a.layer_over {
                Some(anchor) => format!("stored as changes to {anchor}"),
                None => "stored whole".to_string(),
            };
            ctx.ui.done(&format!("adopted {} ({stored})", a.name));
        }
    }
    Ok(())
}

pub fn run_lxc_snapshots(
    ctx: &Context,
    container: &ContainerName,
    keep: bool,
    dry_run: bool,
) -> Result<()> {
    let adopted = ops::adopt::adopt_lxc_snapshots(ctx.store, container, keep, dry_run)?;
    if adopted.is_empty() {
        ctx.ui.note(&format!(
            "no lxc-snapshot snapshot of {container} is left to adopt"
        ));
    }
    for a in &adopted {
        match &a.name {
            None => out_line(&crate::printable::escape(&format!(
                "would adopt {} of {container}",
                a.original
            ))),
            Some(name) => {
                let stored = match &a.layer_over {
                    Some(anchor) => format!("stored as changes to {anchor}"),
                    None => "stored whole".to_string(),
                };
                let original = if a.kept { "kept" } else { "removed" };
                ctx.ui.done(&format!(
                    "adopted {} as {name} ({stored}; the original {original})",
                    a.original
                ));
            }
        }
    }
    Ok(())
}
