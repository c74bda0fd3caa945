//! `lxc-snap comment SNAP [TEXT | -c FILE]`: print or replace a comment.

use std::io::IsTerminal;

use super::{read_comment, Context};
use crate::cli::CommentSource;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, set: Option<&CommentSource>) -> Result<()> {
    let Some(source) = set else {
        if let Some(text) = ops::comment(ctx.store, name)? {
            // As it is to a pipe or a file; on a terminal, each line escaped.
            // A comment is text: it ends with a newline when printed.
            let text = if text.ends_with('\n') {
                text
            } else {
                format!("{text}\n")
            };
            let text = if std::io::stdout().is_terminal() {
                text.split_inclusive('\n')
                    .map(|l| match l.strip_suffix('\n') {
                        Some(l) => format!("{}\n", crate::printable::escape(l)),
                        None => crate::printable::escape(l),
                    })
                    .collect()
            } else {
                text
            };
            crate::ui::out(&text);
        }
        return Ok(());
    };
    let text = read_comment(source)?;
    ops::set_comment(ctx.store, name, &text)?;
    ctx.ui.done(&if text.is_empty() {
        format!("removed the comment of {name}")
    } else {
        format!("set the comment of {name}")
    });
    Ok(())
}
