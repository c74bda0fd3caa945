//! How a long operation says how far it has got, and learns that it should
//! stop: a [`Progress`] sink it reports to, and a [`Cancel`] flag it checks
//! between entries. The library never draws anything; a front end chooses
//! the sink (the terminal's progress bar, an API operation's record) and
//! sets the flag (on SIGINT or SIGTERM, on a cancel request).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};

/// Entries and bytes: done so far, or in all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub entries: u64,
    pub bytes: u64,
}

/// Receives progress reports. Reports come from several threads, now and
/// then (every few MiB and every few thousand entries), never per entry.
pub trait Progress: Sync {
    /// `done` so far, of `total` when it is known beforehand.
    fn advance(&self, done: Counts, total: Option<Counts>);
}

/// A sink that drops every report.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _: Counts, _: Option<Counts>) {}
}

/// Shared by everything that may stop an operation and the operation
/// itself. Clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag nobody has set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A flag that `flag` sets (a signal handler's, say).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Cancel {
        Cancel(flag)
    }

    /// The flag itself, for a signal handler to set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Asks every operation that checks this flag to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Fails with [`ErrorKind::Cancelled`] once the flag is set.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(cancelled())
        } else {
            Ok(())
        }
    }
}

/// The error an operation returns when it stopped because it was asked to.
pub fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "cancelled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_check_fails_once_set() {
        let a = Cancel::new();
        let b = a.clone();
        assert!(a.check().is_ok());
        b.cancel();
        assert!(a.is_cancelled());
        assert_eq!(a.check().map_err(|e| e.kind()), Err(ErrorKind::Cancelled));
    }
}
