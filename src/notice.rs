//! What an operation tells the one who runs it while it runs, besides its
//! result: [`Notice`]s (a leftover removed, a wait for a lock, a snapshot
//! kept) and copy progress, through an [`Observer`] the front end supplies.
//! The command line prints notices on the terminal; a server would keep
//! them with the operation. The library itself never prints.

use std::fmt;
use std::path::PathBuf;

use crate::printable::human_bytes;
use crate::progress::{Counts, Progress};

/// How much a notice matters to the person at the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A step of the operation is done (`deleted web_3`): stdout.
    Done,
    /// Something worth knowing; `--quiet` hides it.
    Note,
    /// Something went wrong that did not stop the operation.
    Warning,
}

/// What an interrupted run left that a later one removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    Snapshot,
    Restore,
    /// A rollback's or an undo's (they stage beside the same tree).
    Rollback,
    /// A throwaway copy of `exec`'s.
    Exec,
}

/// One thing an operation reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Another run holds the lock of `container`; this one waits.
    /// `holder`: who it is, as the lock file says.
    Waiting {
        container: String,
        holder: Option<String>,
    },
    /// A leftover of an interrupted run was removed.
    RemovedLeftover { path: PathBuf, of: Leftover },
    /// The snapshot is taken whole, not as a layer, for this reason.
    WholeSnapshot { why: String },
    /// A directory-backed container is copied whole every time.
    DirectoryBacked { container: String },
    /// The snapdir did not exist and was created.
    CreatedSnapdir { path: PathBuf },
    /// Another filesystem mounted inside the tree was not copied.
    SkippedMount { path: PathBuf },
    /// A snapshot directory whose metadata cannot be read was passed over.
    SkippedEntry { path: PathBuf, error: String },
    /// A snapshot was deleted.
    /// A snapshot was deleted, freeing `freed` allocated bytes.
    Deleted { snapshot: String, freed: u64 },
    /// A deleted snapshot's tree stays, hidden, for the layers stored over
    /// it, holding `bytes` that they show and no other snapshot shares.
    KeptFiles {
        snapshot: String,
        layers: Vec<String>,
        bytes: u64,
    },
    /// A snapshot no rule keeps stays, because deleting it failed.
    NotDeleted { snapshot: String, error: String },
    /// The snapshot has no hook to empty its scratch at each start.
    NoResetHook { snapshot: String, why: String },
    /// A container's name is no DNS label, so its host name is this one.
    HostName {
        container: String,
        host_name: String,
    },
    /// The tree a rollback replaced was not all removed.
    OldTreeLeft { error: String },
    /// A running container was frozen while its tree was read, for
    /// `millis` milliseconds.
    Frozen { container: String, millis: u64 },
    /// The base a snapshot stands on is not what it was when it was taken.
    BaseChanged { snapshot: String, why: String },
}

impl Notice {
    pub fn level(&self) -> Level {
        match self {
            Notice::Deleted { .. } => Level::Done,
            Notice::SkippedMount { .. }
            | Notice::NoResetHook { .. }
            | Notice::SkippedEntry { .. }
            | Notice::NotDeleted { .. }
            | Notice::OldTreeLeft { .. }
            | Notice::BaseChanged { .. } => Level::Warning,
            _ => Level::Note,
        }
    }
}

impl Notice {
    /// The notice as one line, with sizes as `size` writes them.
    pub fn text(&self, size: &dyn Fn(u64) -> String) -> String {
        Shown(self, size).to_string()
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown(self, &human_bytes).fmt(f)
    }
}

/// A notice with the way its sizes are written.
struct Shown<'a>(&'a Notice, &'a dyn Fn(u64) -> String);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = self.1;
        match self.0 {
            Notice::Waiting { container, holder } => match holder {
                Some(h) => write!(f, "waiting for another lxc-snap run on {container}: {h}"),
                None => write!(f, "waiting for another lxc-snap run on {container}"),
            },
            Notice::RemovedLeftover { path, of } => write!(
                f,
                "removed {}: {}",
                path.display(),
                match of {
                    Leftover::Snapshot => "an incomplete snapshot left by an interrupted run",
                    Leftover::Restore => "an incomplete restore left by an interrupted run",
                    Leftover::Rollback => "left by an interrupted rollback or undo",
                    Leftover::Exec => "a throwaway copy left by an interrupted exec",
                }
            ),
            Notice::WholeSnapshot { why } => write!(f, "taking a whole snapshot: {why}"),
            Notice::BaseChanged { snapshot, why } => write!(
                f,
                "{snapshot}: {why}; what it shows is its own changes over the base as it is now"
            ),
            Notice::Frozen { container, millis } => {
                write!(f, "container {container} was frozen for {millis} ms")
            }
            Notice::DirectoryBacked { container } => write!(
                f,
                "{container} is directory-backed: copying its whole rootfs; an overlay clone \
                 (lxc-copy -s -B overlayfs -n {container} -N {container}-ov) snapshots only its changes"
            ),
            Notice::CreatedSnapdir { path } => write!(f, "created snapdir {}", path.display()),
            Notice::SkippedMount { path } => write!(
                f,
                "left out what is mounted at {}: another filesystem, not part of the container's tree",
                path.display()
            ),
            Notice::SkippedEntry { path, error } => {
                write!(f, "skipping {}: {error}", path.display())
            }
            Notice::Deleted { snapshot, freed } => {
                write!(f, "deleted {snapshot}, freed {}", size(*freed))
            }
            Notice::KeptFiles {
                snapshot,
                layers,
                bytes,
            } => write!(
                f,
                "the tree of {snapshot} stays, unlisted, holding {} for {} (stored as changes to it); it goes with the last of them",
                size(*bytes),
                layers.join(", "),
            ),
            Notice::NotDeleted { snapshot, error } => write!(f, "kept {snapshot}: {error}"),
            Notice::NoResetHook { snapshot, why } => write!(
                f,
                "{snapshot} keeps what it writes when started until lxc-snap reset {snapshot}: \
                 this lxc-snap is no hook root may run ({why})"
            ),
            Notice::HostName {
                container,
                host_name,
            } => write!(
                f,
                "{container} is called {host_name} inside (lxc.uts.name, /etc/hostname): \
                 a host name has only letters, digits and inner hyphens"
            ),
            Notice::OldTreeLeft { error } => {
                write!(f, "the old tree was not all removed: {error}")
            }
        }
    }
}

/// Receives what operations report while they run. Calls may come from
/// several threads.
pub trait Observer: Progress {
    fn notice(&self, notice: Notice);

    /// A copy of a tree begins; progress reports follow until
    /// [`Observer::copy_ended`].
    fn copy_started(&self) {}

    fn copy_ended(&self) {}

    /// Whether progress reports are shown to anyone: an operation may then
    /// spend a little to know its total beforehand.
    fn shows_progress(&self) -> bool {
        false
    }
}

/// An observer that drops everything: for callers that only want results.
pub struct Quiet;

impl Progress for Quiet {
    fn advance(&self, _: Counts, _: Option<Counts>) {}
}

impl Observer for Quiet {
    fn notice(&self, _: Notice) {}
}
