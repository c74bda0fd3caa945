//! `lxc-snap comment SNAP [TEXT | -c FILE]`: print or replace a comment.

use std::io::{IsTerminal, Write};

use super::{read_comment, Context};
use crate::cli::CommentSource;
use crate::error::{Error, Result};
use crate::names::SnapshotName;
use crate::ops;

pub fn run(ctx: &Context, name: &SnapshotName, set: Option<&CommentSource>) -> Result<()> {
    let Some(source) = set else {
        if let Some(text) = ops::comment(ctx.store, name)? {
            // As it is to a pipe or a file; on a terminal, each line escaped.
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
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Error::io("writing", std::path::Path::new("standard output"), e))?;
        }
        return Ok(());
    };
    let text = read_comment(source)?;
    ops::set_comment(ctx.store, name, &text)?;
    ctx.ui.done(&format!("set the comment of {name}"));
    Ok(())
}
