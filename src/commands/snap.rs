//! `lxc-snap [-c FILE] NAME` / `lxc-snap snap [-c FILE | -m TEXT] NAME`.

use super::{read_comment, Context};
use crate::cli::CommentSource;
use crate::error::Result;
use crate::names::ContainerName;
use crate::ops::{self, Increment, TakeOptions};

pub fn run(
    ctx: &Context,
    container: &ContainerName,
    comment: Option<&CommentSource>,
    increment: Increment,
) -> Result<()> {
    let comment = comment.map(read_comment).transpose()?;
    let snapshot = ops::take(
        ctx.store,
        &TakeOptions {
            container: container.clone(),
            comment,
            increment,
        },
    )?;
    ctx.ui.done(&format!("created snapshot {}", snapshot.name));
    Ok(())
}
