//! The operations on snapshots, one file each: what every front end (the
//! command line, a server) runs. Each takes a [`Store`](crate::store::Store) and typed options
//! and returns a typed result: the records `list --json` and `info --json`
//! print, a prune plan, a diff. None prints: what happens on the way goes
//! to the store's observer ([`crate::notice`]), copies report progress
//! there and stop when the store's cancel flag is set, cleaning up what
//! they began ([`ErrorKind::Cancelled`]).
//!
//! An operation works through the store ([`crate::store`]) for anything
//! about the snapshot family, and through the copier ([`crate::copy`]) and
//! the LXC layer ([`crate::lxc`]) for trees and configs.

mod copying;

pub mod adopt;
pub mod auto;
pub mod check;
pub mod clone;
pub mod comment;
pub mod delete;
pub mod diff;
pub mod exec;
pub mod files;
pub mod info;
pub mod list;
pub mod mount;
pub mod oci;
pub mod prune;
pub mod rebuild;
pub mod reset;
pub mod restore;
pub mod rollback;
pub mod stream;
pub mod take;
pub mod undo;

pub use adopt::{adopt, AdoptedSnapshot};
pub use auto::{auto, AutoReport};
pub use check::{check, CheckReport, Problem};
pub use clone::clone;
pub use comment::{comment, expire, pin, set_comment};
pub use delete::{delete, Deleted, Selection};
pub use diff::{diff, diff_report, DiffOptions, DiffReport};
pub use exec::{exec, Ended, ExecOptions, Executed};
pub use files::{cat, cp, ls, CapturedFile, Copied, FileRecord, Listing};
pub use info::{info, SnapshotInfo};
pub use list::{
    containers, disk, snapdir_disk, snapshot_record, snapshots, ContainerRecord, SnapshotRecord,
};
pub use mount::{mount, umount};
pub use prune::{prune, PruneOptions, PruneRow, Pruned};
pub use rebuild::{rebuild, RebuildOptions, Rebuilt};
pub use reset::{reset, Reset};
pub use restore::{restore, Restored};
pub use rollback::{rollback, RolledBack};
pub use stream::{export, import, Compression, ExportOptions, Exported, ImportOptions, Imported};
pub use take::{take, Increment, TakeOptions};
pub use undo::{undo, UndoOptions, Undone};

use crate::error::{Error, ErrorKind, Result};

/// Refuses to go on without root, before anything touches the disk.
fn require_root(what: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Other, format!("{what} needs root"))
            .with_hint("run it with sudo"))
    }
}

/// A cancelled operation's error says what it left as it was.
fn when_cancelled(e: Error, left: &str) -> Error {
    if e.kind() == ErrorKind::Cancelled {
        Error::new(ErrorKind::Cancelled, format!("cancelled: {left}"))
    } else {
        e
    }
}

/// An instant as JSON gives it: RFC 3339 in UTC, to the second
/// (`2026-12-03T18:17:00Z`), whatever offset it was recorded in.
pub fn utc_text(t: chrono::DateTime<chrono::FixedOffset>) -> String {
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
