//! `lxc-snap [-c FILE] NAME` / `lxc-snap snap [-c FILE | -m TEXT] NAME`.

use super::{read_comment, Context};
use crate::cli::{self, CommentSource};
use crate::error::{Error, ErrorKind, Result};
use crate::names::ContainerName;
use crate::ops::{self, Increment, TakeOptions};
use crate::ui::print_json_value;

pub fn run(
    ctx: &Context,
    container: &ContainerName,
    comment: Option<&CommentSource>,
    increment: Increment,
    freeze: bool,
    json: bool,
) -> Result<()> {
    let comment = comment.map(read_comment).transpose()?;
    let snapshot = ops::take(
        ctx.store,
        &TakeOptions {
            container: container.clone(),
            comment,
            increment,
            freeze,
        },
    )
    .map_err(|e| did_you_mean(ctx, container, e))?;
    if json {
        return print_json_value(&ops::snapshot_record(ctx.store, &snapshot.name)?);
    }
    ctx.ui.done(&format!("created snapshot {}", snapshot.name));
    Ok(())
}

/// `lxc-snap lsit`: no container of that name, and the word is one edit
/// away from a subcommand, so the hint names the subcommand.
fn did_you_mean(ctx: &Context, container: &ContainerName, e: Error) -> Error {
    if e.kind() != ErrorKind::NotFound || ctx.store.container_exists(container) {
        return e;
    }
    match cli::near_subcommand(container.as_str()) {
        Some(sub) => e.with_hint(format!(
            "did you mean lxc-snap {sub}? (a container named like a subcommand \
             is snapshotted with lxc-snap snap NAME)"
        )),
        None => e,
    }
}
