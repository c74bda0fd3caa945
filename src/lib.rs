//! lxc-snap: numbered, immutable snapshots of LXC containers.
//!
//! Layers, top to bottom; each calls only the one below it:
//! `cli` (parsing, both spellings into one [`cli::Command`]) -> `commands`
//! (one file per command) -> `store` (snapshot layout, names, metadata,
//! locks) -> `copy` (the tree copier) and `lxc` (config reading and
//! rewriting, container state, dependency files) -> syscalls.

pub mod copy;
pub mod error;

pub use error::{Error, ErrorKind, Result};

/// Runs lxc-snap with the process arguments; prints any error and returns the exit status.
pub fn main_with_exit_code() -> i32 {
    0
}
