//! Messages to the person at the terminal that are not errors: progress
//! lines and warnings on stderr, escaped ([`crate::printable`]). Errors are
//! printed in one place only, [`crate::main_with_exit_code`].

use std::io::IsTerminal;

use crate::printable::escape;

/// Verbosity chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ui {
    pub quiet: bool,
}

impl Ui {
    /// A line about what happened (`created snapshot mysql_0`), on stdout.
    pub fn done(&self, msg: &str) {
        if !self.quiet {
            println!("{}", escape(msg));
        }
    }

    /// A note on stderr that the user may want to act on; `--quiet` hides it.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("lxc-snap: {}", escape(msg));
        }
    }

    /// Something went wrong that did not stop the command; always shown.
    pub fn warn(&self, msg: &str) {
        eprintln!("lxc-snap: warning: {}", escape(msg));
    }
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

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
