//! The one error type of lxc-snap.
//!
//! Every failure carries what was being done and to which path, so that the
//! single line printed by `main` is enough to act on, plus an optional hint.
//! The kind decides the exit status; the man page lists the codes.

use std::fmt;
use std::io;
use std::path::Path;

/// What went wrong, as far as the exit status is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Anything not listed below (I/O errors, corrupt metadata, missing rights).
    Other,
    /// The command line is wrong (bad name, missing argument, conflicting options).
    Usage,
    /// A container or snapshot that was named does not exist.
    NotFound,
    /// The target of a restore (or another thing to create) already exists.
    Exists,
    /// The container is running or frozen.
    Running,
    /// The container's root filesystem backend is not one lxc-snap can snapshot.
    Unsupported,
    /// Going on would let someone other than root steer what lxc-snap does
    /// as root: a directory others can change, a path from a config that
    /// leads outside the container, a symlink where a directory must be.
    Unsafe,
    /// Another run holds the lock, and the wait for it (`--wait`,
    /// `--no-wait`) is over.
    Busy,
    /// The operation stopped because it was asked to (SIGINT, SIGTERM, a
    /// cancel request), after removing what it had begun.
    Cancelled,
}

impl ErrorKind {
    /// The process exit status for this kind of failure.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Other => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Exists => 4,
            ErrorKind::Running => 5,
            ErrorKind::Unsupported => 6,
            ErrorKind::Unsafe => 7,
            ErrorKind::Busy => 8,
            // As a shell reports a command SIGINT ended; `main` gives
            // 143 when it was SIGTERM.
            ErrorKind::Cancelled => 130,
        }
    }
}

/// A failure: one line of text, an exit-status kind and an optional hint.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Lines printed under the message (clap's usage, say).
    details: Vec<String>,
    hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            details: Vec::new(),
            hint: None,
        }
    }

    /// `<op> <path>: <os error>`, e.g. `creating /var/lib/lxcsnaps/a_3: No space left on device`.
    pub fn io(op: &str, path: &Path, err: io::Error) -> Self {
        Error::new(
            ErrorKind::Other,
            format!("{op} {}: {}", path.display(), strip_os_error(&err)),
        )
    }

    /// Like [`Error::io`] for errors from nix.
    pub fn sys(op: &str, path: &Path, err: nix::errno::Errno) -> Self {
        Error::io(op, path, io::Error::from(err))
    }

    /// `<op> <path>` carries an overlay `redirect` or `metacopy` attribute
    /// `attr`: the layer needs other layers to make sense, so lxc-snap
    /// refuses it (the copier and the diff engine alike).
    pub fn overlay_not_self_contained(op: &str, path: &Path, attr: &std::ffi::OsStr) -> Self {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "{op} {}: carries {}: the overlay layer is not self-contained \
                 (the overlay was mounted with redirect_dir or metacopy)",
                path.display(),
                attr.to_string_lossy()
            ),
        )
    }

    /// The same failure, its message prefixed with what was being done
    /// (`reading /x/lxc-snap.json: ...`), its kind and hint kept.
    pub fn prefixed(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Lines to print under the message, each indented.
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    pub fn details(&self) -> &[String] {
        &self.details
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// `No such file or directory (os error 2)` -> `No such file or directory`.
fn strip_os_error(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_operation_and_path_without_os_error_suffix() {
        let e = Error::io(
            "creating",
            Path::new("/var/lib/lxcsnaps/a_3"),
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(
            e.to_string(),
            "creating /var/lib/lxcsnaps/a_3: No space left on device"
        );
        assert_eq!(e.kind().exit_code(), 1);
    }

    #[test]
    fn exit_codes_are_distinct() {
        let kinds = [
            ErrorKind::Other,
            ErrorKind::Usage,
            ErrorKind::NotFound,
            ErrorKind::Exists,
            ErrorKind::Running,
            ErrorKind::Unsupported,
            ErrorKind::Unsafe,
            ErrorKind::Busy,
            ErrorKind::Cancelled,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0));
    }
}
