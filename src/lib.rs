//! lxc-snap: numbered, immutable snapshots of LXC containers.
//!
//! Layers, top to bottom; each calls only the ones below it (ARCHITECTURE.md
//! draws them):
//! - front ends: [`cli`] (both spellings into one [`cli::Command`]) and
//!   `commands` (one file per command: one operation, then rendering), with
//!   [`ui`] for what the terminal shows;
//! - [`ops`]: the operations, typed options in, typed records out, never
//!   printing; over [`store`] (the snapshot family: layout, metadata,
//!   locks, anchors, holds, dependents, sizes), [`prune`] and [`diff`];
//! - [`copy`] (the tree copier) and [`lxc`] (configs, container state,
//!   dependency files);
//! - the ground floor: [`dir`], [`durable`], [`walk`], [`mounts`],
//!   [`names`], [`error`], [`printable`], [`progress`], [`notice`], and
//!   syscalls.

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
pub mod notice;
pub mod ops;
pub mod printable;
pub mod progress;
pub mod prune;
pub mod schedule;
pub mod store;
pub mod ui;
pub mod walk;

pub use error::{Error, ErrorKind, Result};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs lxc-snap with the process arguments; prints any error (this is the
/// one place that does) and returns the exit status.
pub fn main_with_exit_code() -> i32 {
    let signals = Signals::default();
    let result = cli::parse(std::env::args_os()).and_then(|parsed| match parsed {
        cli::Parsed::Print {
            text,
            to_stderr,
            code,
        } => {
            if to_stderr {
                ui::err_line(text.trim_end_matches('\n'));
            } else {
                ui::out(&text);
            }
            Ok(code)
        }
        cli::Parsed::Run(inv) => {
            let ui = ui::Ui {
                quiet: inv.globals.quiet,
                exact_bytes: inv.globals.exact_bytes,
            };
            if cancellable(&inv.command) {
                signals.catch();
            }
            let store = store::Store::open(
                store::Settings {
                    snapdir: inv.globals.snapdir,
                    lxcpath: inv.globals.lxcpath,
                    allow_lowers: inv.globals.allow_lowers,
                    lock_wait: inv.globals.lock_wait,
                    now: test_clock()?,
                },
                Arc::new(ui::Terminal::new(ui)),
                signals.cancel.clone(),
            );
            let ctx = commands::Context { store: &store, ui };
            commands::run(inv.command, &ctx)
        }
    });
    // Output to a closed pipe ends quietly, as other tools' does (the
    // status a shell shows for SIGPIPE); any other failure to write
    // stdout (a full disk) is the command's error, unless it had one.
    let broken_pipe = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    let result = match (result, ui::stdout_failure()) {
        // The reader went away: what failed after that is of no interest,
        // unless the run was cancelled (its status says so).
        (r, Some(f))
            if broken_pipe(&f) && !r.as_ref().is_err_and(|e| e.kind() == ErrorKind::Cancelled) =>
        {
            return 141
        }
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => {
            Err(
                Error::io("writing to", std::path::Path::new("standard output"), e)
                    .with_hint("check the file or device standard output goes to (a full disk?)"),
            )
        }
        (Ok(code), None) => Ok(code),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // What failed often names what a container or a user chose.
            ui::err_line(&format!("lxc-snap: {}", printable::escape(e.message())));
            for line in e.details() {
                ui::err_line(&format!("  {}", printable::escape(line)));
            }
            if let Some(hint) = e.hint() {
                ui::err_line(&format!("lxc-snap: hint: {}", printable::escape(hint)));
            }
            match e.kind() {
                ErrorKind::Cancelled if signals.terminated.load(Ordering::Relaxed) => 143,
                kind => kind.exit_code(),
            }
        }
    }
}

/// Whether SIGINT and SIGTERM cancel `command` rather than end the process:
/// the commands that copy or compare trees or wait for a lock. (The others
/// only read a little, and a signal ends them as it always does.)
fn cancellable(command: &cli::Command) -> bool {
    use cli::Command::*;
    matches!(
        command,
        Snap { .. }
            | Restore { .. }
            | Rollback { .. }
            | Delete { .. }
            | Prune { .. }
            | Comment { .. }
            | Pin { .. }
            | Diff { .. }
            | Cp { .. }
            | Undo { .. }
            | Expire { .. }
            | Auto { .. }
            | Exec { .. }
    )
}

/// `LXC_SNAP_NOW` (RFC 3339), the time it is for what depends on the
/// clock (expiry, schedules): for tests.
fn test_clock() -> Result<Option<chrono::DateTime<chrono::FixedOffset>>> {
    let Some(text) = std::env::var_os("LXC_SNAP_NOW") else {
        return Ok(None);
    };
    let text = text.to_string_lossy();
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(Some)
        .map_err(|e| {
            Error::new(
                ErrorKind::Usage,
                format!(
                    "LXC_SNAP_NOW={}: not an RFC 3339 time: {e}",
                    printable::escape(&text)
                ),
            )
        })
}

/// SIGINT and SIGTERM set the cancel flag operations check: a copy stops
/// between entries and the operation removes what it began. A second one
/// ends the process at once (a later run removes what it left).
#[derive(Default)]
struct Signals {
    cancel: progress::Cancel,
    /// Set by SIGTERM, for the exit status.
    terminated: Arc<AtomicBool>,
}

impl Signals {
    /// From now on the signals set the flag instead of ending the process.
    fn catch(&self) {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let flag = self.cancel.flag();
        for (signal, status) in [(SIGINT, 130), (SIGTERM, 143)] {
            // Registered first, so a second signal exits before the first
            // handler would set the flag again.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, status, flag.clone());
            let _ = signal_hook::flag::register(signal, flag.clone());
        }
        let _ = signal_hook::flag::register(SIGTERM, self.terminated.clone());
    }
}
