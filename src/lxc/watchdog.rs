//! A watchdog: what must happen to a container if lxc-snap goes away in
//! the middle (a frozen container thawed, a throwaway copy stopped and
//! destroyed), even when it is killed with SIGKILL.
//!
//! It is a shell in a process group of its own (a Ctrl-C at the terminal
//! does not reach it), deaf to SIGINT, SIGTERM and SIGHUP, that waits on
//! a pipe only lxc-snap holds. When lxc-snap is done it writes `done`
//! there ([`Watchdog::dismiss`]); if lxc-snap dies instead, the kernel
//! closes the pipe and the watchdog runs its script. The script's text is
//! lxc-snap's own: paths and names reach it only as arguments (`$1`...).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug)]
pub struct Watchdog {
    child: Child,
    pipe: ChildStdin,
}

impl Watchdog {
    /// Starts a watchdog that runs `script` (shell, with `args` as `$1`...)
    /// unless dismissed. `what` names it in errors.
    pub fn start(what: &str, script: &str, args: &[&OsStr]) -> Result<Watchdog> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "trap '' INT TERM HUP; read -r line; [ \"$line\" = done ] || {{ {script}; }}"
            ))
            .arg("lxc-snap-watchdog")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(&format!("starting {what}"), Path::new("/bin/sh"), e))?;
        let Some(pipe) = child.stdin.take() else {
            let _ = child.kill();
            return Err(Error::new(
                ErrorKind::Other,
                format!("starting {what}: no pipe to it"),
            ));
        };
        Ok(Watchdog { child, pipe })
    }

    /// Tells the watchdog all is well and waits for it to go.
    pub fn dismiss(self) {
        let Watchdog {
            mut child,
            mut pipe,
        } = self;
        let _ = pipe.write_all(b"done\n");
        drop(pipe);
        let _ = child.wait();
    }
}
