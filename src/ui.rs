//! What the command line shows besides errors: results (tables, JSON,
//! messages) on stdout; the notices and copy progress operations report
//! ([`Terminal`], the command line's [`Observer`]) on stderr; all of it
//! escaped ([`crate::printable`]). Errors are printed in one place only,
//! [`crate::main_with_exit_code`].

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Modify, Style, Width};

use crate::error::{Error, ErrorKind, Result};
use crate::notice::{Level, Notice, Observer};
use crate::printable::escape;
use crate::progress::{Counts, Progress};

/// Verbosity chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ui {
    pub quiet: bool,
    /// Sizes as exact byte counts (`--bytes`), not `1.5 KiB`.
    pub exact_bytes: bool,
}

impl Ui {
    /// A size as the user asked for sizes.
    pub fn size(&self, bytes: u64) -> String {
        if self.exact_bytes {
            bytes.to_string()
        } else {
            human_bytes(bytes)
        }
    }

    /// A line about what happened (`created snapshot mysql_0`), on stdout.
    pub fn done(&self, msg: &str) {
        if !self.quiet {
            out_line(&escape(msg));
        }
    }

    /// A note on stderr that the user may want to act on; `--quiet` hides it.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            err_line(&format!("lxc-snap: {}", escape(msg)));
        }
    }

    /// Something went wrong that did not stop the command; always shown.
    pub fn warn(&self, msg: &str) {
        err_line(&format!("lxc-snap: warning: {}", escape(msg)));
    }
}

/// The first error writing to stdout: once stdout fails (a closed pipe,
/// a full disk), nothing more is written to it and the command ends with
/// that error when it is done ([`stdout_failure`]).
static STDOUT_FAILED: OnceLock<(io::ErrorKind, Option<i32>)> = OnceLock::new();

/// Writes `text` to stdout as it is. Never panics: a failure is kept for
/// [`stdout_failure`] and later output is dropped.
pub fn out(text: &str) {
    if STDOUT_FAILED.get().is_some() {
        return;
    }
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        stdout_failed(&e);
    }
}

/// `text` and a newline on stdout (see [`out`]).
pub fn out_line(text: &str) {
    out(&format!("{text}\n"));
}

/// `text` and a newline on stderr; a failure there has nowhere to be told.
pub fn err_line(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Keeps a failure of a writer of stdout's own (a buffered one) for
/// [`stdout_failure`], as if [`out`] had met it.
pub fn stdout_failed(e: &io::Error) {
    let _ = STDOUT_FAILED.set((e.kind(), e.raw_os_error()));
}

/// How writing to stdout failed, if it did.
pub fn stdout_failure() -> Option<io::Error> {
    STDOUT_FAILED.get().map(|&(kind, raw)| match raw {
        Some(code) => io::Error::from_raw_os_error(code),
        None => kind.into(),
    })
}

/// The command line's observer: notices as lines on stderr (or stdout for
/// steps done), and a byte counter while a copy runs, shown only when
/// stderr is a terminal, `--quiet` is off and the copy has run for more
/// than a second.
pub struct Terminal {
    ui: Ui,
    bar: Mutex<Option<Bar>>,
}

struct Bar {
    bar: indicatif::ProgressBar,
    start: Instant,
}

impl Terminal {
    pub fn new(ui: Ui) -> Terminal {
        Terminal {
            ui,
            bar: Mutex::new(None),
        }
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, Option<Bar>> {
        self.bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Progress for Terminal {
    fn advance(&self, done: Counts, total: Option<Counts>) {
        if let Some(b) = self.bar().as_ref() {
            let elapsed = b.start.elapsed();
            if b.bar.is_hidden() && elapsed > Duration::from_secs(1) {
                b.bar
                    .set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            b.bar.set_message(progress_line(done, total, elapsed));
        }
    }
}

/// What an entry costs a copy, in bytes' worth of time: a tree of small
/// files takes about as long per entry as this many bytes of a big one.
const ENTRY_COST: u64 = 16 << 10;

/// The progress line of a copy: what is done, of how much when that is
/// known, with the share done and the time left (judged from the rate so
/// far, entries and bytes both counted).
pub fn progress_line(done: Counts, total: Option<Counts>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!("{}/s", human_bytes((done.bytes as f64 / secs) as u64))
    } else {
        "-".to_string()
    };
    let Some(total) = total else {
        return format!(
            "copied {}, {} entries, {rate}",
            human_bytes(done.bytes),
            done.entries
        );
    };
    // A tree that grew since it was counted: the total is at least what is done.
    let total = Counts {
        entries: total.entries.max(done.entries),
        bytes: total.bytes.max(done.bytes),
    };
    let work = |c: Counts| c.bytes as f64 + (c.entries * ENTRY_COST) as f64;
    let share = if work(total) > 0.0 {
        work(done) / work(total)
    } else {
        1.0
    };
    let left = if (0.01..1.0).contains(&share) {
        let s = (secs * (1.0 - share) / share).round() as u64;
        if s >= 60 {
            format!(", {} min {} s left", s / 60, s % 60)
        } else {
            format!(", {s} s left")
        }
    } else {
        String::new()
    };
    format!(
        "copied {} of {}, {} of {} entries, {}%, {rate}{left}",
        human_bytes(done.bytes),
        human_bytes(total.bytes),
        done.entries,
        total.entries,
        (share * 100.0).floor() as u64
    )
}

impl Observer for Terminal {
    fn notice(&self, notice: Notice) {
        let text = notice.text(&|b| self.ui.size(b));
        match notice.level() {
            Level::Done => self.ui.done(&text),
            Level::Note => self.ui.note(&text),
            Level::Warning => self.ui.warn(&text),
        }
    }

    fn copy_started(&self) {
        if self.ui.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        *self.bar() = Some(Bar {
            bar,
            start: Instant::now(),
        });
    }

    fn copy_ended(&self) {
        if let Some(b) = self.bar().take() {
            b.bar.finish_and_clear();
        }
    }

    fn shows_progress(&self) -> bool {
        !self.ui.quiet && std::io::stderr().is_terminal()
    }
}

/// Prints `rows` as pretty JSON.
pub fn print_json<T: Serialize>(rows: &[T]) -> Result<()> {
    print_json_value(rows)
}

/// Prints one record as pretty JSON.
pub fn print_json_value<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::new(ErrorKind::Other, format!("encoding JSON: {e}")))?;
    out_line(&text);
    Ok(())
}

/// Prints the table; when the terminal is narrower than the table, the
/// column `cut` (the comment) is truncated to fit.
pub fn print_table(builder: Builder, cut: Option<usize>) {
    let mut table = builder.build();
    table.with(Style::blank());
    if let (Some(col), Some(width)) = (cut, terminal_width()) {
        let total = table.total_width();
        if total > width {
            let mut others = table.clone();
            others.with(Modify::new(Columns::single(col)).with(Width::truncate(0)));
            let room = width.saturating_sub(others.total_width()).max(1);
            table.with(Modify::new(Columns::single(col)).with(Width::truncate(room)));
        }
    }
    out_line(&table.to_string());
}

/// Columns of the terminal on stdout, else `$COLUMNS`, else none (no cut).
pub fn terminal_width() -> Option<usize> {
    if std::io::stdout().is_terminal() {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass.
        let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_col > 0 {
            return Some(ws.ws_col as usize);
        }
    }
    std::env::var("COLUMNS")
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

/// An RFC 3339 instant in the viewer's local time, as tables show it
/// (`2026-12-03 19:17:00`; [`zone_label`] names the zone in the header);
/// the text itself when it is no such instant.
pub fn local_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// The viewer's time zone, for a table header: the zone local times are
/// converted in, when `TZ` or the /etc/localtime link name it
/// (`Europe/Berlin`), else the current offset (`UTC+01:00`). Nothing is
/// read but the link itself.
pub fn zone_label() -> String {
    let zone = |z: &str| {
        let z = z.trim().trim_start_matches(':');
        // `/usr/share/zoneinfo/Europe/Berlin` names `Europe/Berlin`.
        z.rsplit_once("zoneinfo/")
            .map_or(z, |(_, name)| name)
            .to_string()
    };
    let named = match std::env::var("TZ") {
        Ok(tz) => Some(zone(&tz)),
        Err(_) => std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|target| target.to_str().map(zone)),
    }
    .filter(|z| {
        !z.is_empty()
            && z.len() < 64
            && z.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
    });
    named.unwrap_or_else(|| format!("UTC{}", chrono::Local::now().format("%:z")))
}

/// `CREATED (Europe/Berlin)`: a time column's header with the zone.
pub fn time_header(what: &str) -> String {
    format!("{what} ({})", zone_label())
}

pub use crate::printable::human_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_know_the_total_share_and_time_left() {
        let c = |entries, bytes| Counts { entries, bytes };
        let secs = Duration::from_secs;
        assert_eq!(
            progress_line(c(0, 1 << 30), Some(c(0, 4 << 30)), secs(10)),
            "copied 1.0 GiB of 4.0 GiB, 0 of 0 entries, 25%, 102.4 MiB/s, 30 s left"
        );
        assert_eq!(
            progress_line(c(10, 0), Some(c(100, 0)), secs(20)),
            "copied 0 B of 0 B, 10 of 100 entries, 10%, 0 B/s, 3 min 0 s left"
        );
        // A tree that grew: never more than all, and no time left to tell.
        assert_eq!(
            progress_line(c(5, 2048), Some(c(4, 1024)), secs(1)),
            "copied 2.0 KiB of 2.0 KiB, 5 of 5 entries, 100%, 2.0 KiB/s"
        );
        assert_eq!(
            progress_line(c(7, 3 << 20), None, secs(2)),
            "copied 3.0 MiB, 7 entries, 1.5 MiB/s"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
