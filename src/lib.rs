//! lxc-snap: numbered, immutable snapshots of LXC containers.
//!
//! Layers, top to bottom; each calls only the ones below it:
//! [`cli`] (both spellings into one [`cli::Command`]) -> `commands` (one
//! file per command) -> [`store`] (snapshot layout, names, metadata, locks)
//! -> [`copy`] (the tree copier) and [`lxc`] (configs, container state,
//! dependency files) -> [`durable`] (atomic writes, staging) and syscalls.

pub mod cli;
mod commands;
pub mod copy;
pub mod diff;
pub mod dir;
pub mod durable;
pub mod error;
pub mod lxc;
pub mod mounts;
pub mod names;
pub mod printable;
pub mod progress;
pub mod prune;
pub mod store;
pub mod ui;
pub mod walk;

pub use error::{Error, ErrorKind, Result};

/// Runs lxc-snap with the process arguments; prints any error (this is the
/// one place that does) and returns the exit status.
pub fn main_with_exit_code() -> i32 {
    let result = cli::parse(std::env::args_os()).and_then(|parsed| match parsed {
        cli::Parsed::Print {
            text,
            to_stderr,
            code,
        } => {
            if to_stderr {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            Ok(code)
        }
        cli::Parsed::Run(inv) => {
            let ctx = commands::Context::new(inv.globals);
            commands::run(inv.command, &ctx).map(|()| 0)
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // What failed often names what a container or a user chose.
            eprintln!("lxc-snap: {}", printable::escape(e.message()));
            if let Some(hint) = e.hint() {
                eprintln!("lxc-snap: hint: {}", printable::escape(hint));
            }
            e.kind().exit_code()
        }
    }
}
