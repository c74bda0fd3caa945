//! Freezing a running container for the moment a snapshot reads its tree.
//!
//! The container is frozen through LXC (`lxc-freeze`, the cgroup freezer):
//! its processes stop at their next return to user space, so every system
//! call that was writing has finished and none starts until the thaw.
//!
//! A frozen container must never stay frozen because lxc-snap went away.
//! [`Frozen`] thaws it when dropped (an error, a cancel on SIGINT or
//! SIGTERM unwinds through it), and before freezing, a [`Watchdog`] is
//! started that runs `lxc-unfreeze` if lxc-snap dies instead (even by
//! SIGKILL).

use std::path::Path;
use std::time::{Duration, Instant};

use super::tools;
use super::watchdog::Watchdog;
use crate::error::{Error, ErrorKind, Result};

/// What the watchdog runs: `$1` the lxcpath, `$2` the container.
const THAW: &str = "exec lxc-unfreeze -P \"$1\" -n \"$2\"";

/// A container frozen by lxc-snap.
#[derive(Debug)]
pub struct Frozen {
    lxcpath: std::path::PathBuf,
    name: String,
    watchdog: Option<Watchdog>,
    since: Instant,
}

impl Frozen {
    /// Freezes the running container `name` of `lxcpath`, its watchdog
    /// started first.
    pub fn freeze(lxcpath: &Path, name: &str) -> Result<Frozen> {
        let watchdog = Watchdog::start(
            "the thaw watchdog",
            THAW,
            &[lxcpath.as_os_str(), name.as_ref()],
        )?;
        let mut frozen = Frozen {
            lxcpath: lxcpath.to_path_buf(),
            name: name.to_string(),
            watchdog: Some(watchdog),
            since: Instant::now(),
        };
        let out = tools::command("lxc-freeze", lxcpath, name)
            .output()
            .map_err(|e| Error::io("running", Path::new("lxc-freeze"), e))?;
        if !out.status.success() {
            // Dropping thaws whatever part of it froze.
            drop(frozen);
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "freezing container {name}: lxc-freeze failed: {}",
                    crate::printable::escape(String::from_utf8_lossy(&out.stderr).trim())
                ),
            ));
        }
        frozen.since = Instant::now();
        Ok(frozen)
    }

    /// Thaws the container; returns how long it was frozen.
    pub fn thaw(mut self) -> Result<Duration> {
        let result = self.unfreeze();
        let frozen_for = self.since.elapsed();
        self.dismiss_watchdog();
        result.map(|()| frozen_for)
    }

    fn unfreeze(&self) -> Result<()> {
        let out = tools::command("lxc-unfreeze", &self.lxcpath, &self.name)
            .output()
            .map_err(|e| Error::io("running", Path::new("lxc-unfreeze"), e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Other,
            format!(
                "thawing container {}: lxc-unfreeze failed: {}",
                self.name,
                crate::printable::escape(String::from_utf8_lossy(&out.stderr).trim())
            ),
        )
        .with_hint(format!(
            "thaw it by hand: lxc-unfreeze -P {} -n {}",
            self.lxcpath.display(),
            self.name
        )))
    }

    fn dismiss_watchdog(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.dismiss();
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            // Best effort here; if it fails, the watchdog tries once more
            // when it sees the pipe close.
            if self.unfreeze().is_ok() {
                self.dismiss_watchdog();
            }
        }
    }
}
