//! `lxc-snap [-c FILE] NAME` / `lxc-snap snap [-c FILE | -m TEXT] NAME`.

use super::{read_comment, Context};
use crate::cli::{self, CommentSource, Expiry};
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
    expiry: Option<Expiry>,
    json: bool,
) -> Result<()> {
    let expires_at = expiry.map(|e| expires_at(ctx, e)).transpose()?;
    let comment = comment.map(read_comment).transpose()?;
    let snapshot = ops::take(
        ctx.store,
        &TakeOptions {
            container: container.clone(),
            comment,
            increment,
            freeze,
            expires_at,
            auto: false,
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

/// The instant an expiry names: a while from now (the store's clock), or a
/// time, which must be in the future.
pub(super) fn expires_at(
    ctx: &Context,
    expiry: Expiry,
) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    let now = ctx.store.now();
    let at = match expiry {
        Expiry::After(life) => life.after(&now).ok_or_else(|| {
            Error::new(
                ErrorKind::Usage,
                format!("{life} from now is past any date lxc-snap can record"),
            )
        })?,
        Expiry::At(t) => t,
    };
    if at <= now {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("{} is not in the future", crate::ops::utc_text(at)),
        ));
    }
    Ok(at)
}
