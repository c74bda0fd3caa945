//! One file per command. Each turns the parsed [`Command`] fields into one
//! call of an operation ([`crate::ops`]) and renders its result: a table,
//! JSON or a message. What an operation reports on the way (notices,
//! progress) reaches the terminal through the observer set up in
//! [`crate::main_with_exit_code`].

mod adopt;
mod auto;
mod cat;
mod check;
mod clone;
mod comment;
mod completions;
mod cp;
mod delete;
mod diff;
mod exec;
mod expire;
mod info;
mod list;
mod ls;
mod mount;
mod pin;
mod prune;
mod rebuild;
mod reset;
mod restore;
mod rollback;
mod snap;
mod stream;
mod undo;

use crate::cli::{Command, CommentSource};
use crate::durable;
use crate::error::Result;
use crate::ops::{DiffOptions, PruneOptions};
use crate::store::{self, Store};
use crate::ui::Ui;

/// What every command gets: the store to work on and how loud to be.
pub struct Context<'s> {
    pub store: &'s Store,
    pub ui: Ui,
}

/// Runs `command`; returns the exit status (0, or what `exec` ran ended
/// with).
pub fn run(command: Command, ctx: &Context) -> Result<i32> {
    let done = match command {
        Command::Exec { opts } => return exec::run(ctx, &opts),
        Command::Snap {
            container,
            comment,
            increment,
            freeze,
            expiry,
            json,
        } => snap::run(
            ctx,
            &container,
            comment.as_ref(),
            increment,
            freeze,
            expiry,
            json,
        ),
        Command::List {
            container,
            json,
            no_header,
            columns,
        } => list::run(ctx, container.as_ref(), json, no_header, &columns),
        Command::Restore { snapshot, new_name } => restore::run(ctx, &snapshot, &new_name),
        Command::Clone {
            snapshot,
            new_names,
        } => clone::run(ctx, &snapshot, &new_names),
        Command::Export { opts, output } => stream::export(ctx, &opts, output.as_deref()),
        Command::ExportOci { snapshot, dir, tag } => stream::export_oci(ctx, &snapshot, &dir, &tag),
        Command::Push {
            snapshot,
            reference,
            insecure,
        } => stream::push(ctx, &snapshot, &reference, insecure),
        Command::Pull { opts } => stream::pull(ctx, &opts),
        Command::Import { opts, input } => stream::import(ctx, &opts, &input),
        Command::Comment { snapshot, set } => comment::run(ctx, &snapshot, set.as_ref()),
        Command::Completions { shell } => completions::run(shell),
        Command::CompleteNames { words } => completions::names(ctx, &words),
        Command::Delete {
            targets,
            force,
            dry_run,
        } => delete::run(ctx, &targets, force, dry_run),
        Command::Pin { snapshot, pinned } => pin::run(ctx, &snapshot, pinned),
        Command::Info { snapshot, json } => info::run(ctx, &snapshot, json),
        Command::Rollback { snapshot, backup } => rollback::run(ctx, &snapshot, backup),
        Command::Reset { snapshot, starting } => reset::run(ctx, &snapshot, starting),
        Command::Adopt {
            container,
            dry_run,
            from_lxc_snapshot: false,
            ..
        } => adopt::run(ctx, &container, dry_run),
        Command::Adopt {
            container,
            dry_run,
            keep,
            ..
        } => adopt::run_lxc_snapshots(ctx, &container, keep, dry_run),
        Command::Mount { snapshot, dir } => mount::mount(ctx, &snapshot, &dir),
        Command::Umount { dir } => mount::umount(ctx, &dir),
        Command::Prune {
            container,
            policy,
            expired,
            dry_run,
            json,
        } => prune::run(
            ctx,
            &PruneOptions {
                container,
                policy,
                expired,
                only_auto: false,
                dry_run,
            },
            json,
        ),
        Command::Expire { snapshot, expiry } => expire::run(ctx, &snapshot, expiry),
        Command::Auto {
            policy_dir,
            dry_run,
        } => auto::run(ctx, &policy_dir, dry_run),
        Command::Check {
            container,
            repair,
            json,
        } => check::run(ctx, container.as_ref(), repair, json),
        Command::Diff {
            old,
            new,
            content,
            json,
        } => diff::run(ctx, &DiffOptions { old, new, content }, json),
        Command::Ls {
            snapshot,
            path,
            long,
            json,
        } => ls::run(ctx, &snapshot, &path, long, json),
        Command::Cat { snapshot, path } => cat::run(ctx, &snapshot, &path),
        Command::Cp {
            snapshot,
            path,
            dest,
        } => cp::run(ctx, &snapshot, &path, &dest),
        Command::Undo { opts, json } => undo::run(ctx, &opts, json),
        Command::Rebuild { opts } => rebuild::run(ctx, &opts),
    };
    done.map(|()| 0)
}

/// Reads and checks a comment from the command line, a file or stdin.
fn read_comment(source: &CommentSource) -> Result<String> {
    match source {
        CommentSource::Text(text) => {
            store::validate_comment(text.clone().into_bytes(), "the command line")
        }
        CommentSource::File(path) => {
            let bytes = durable::read_untrusted(path, store::MAX_COMMENT, "comment file")?;
            let source = if path.as_os_str() == "-" {
                "standard input".to_string()
            } else {
                path.display().to_string()
            };
            store::validate_comment(bytes, &source)
        }
    }
}
