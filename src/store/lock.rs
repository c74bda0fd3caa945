//! One lock per container name, `<snapdir>/.lxc-snap/NAME.lock`: it
//! serializes every run that creates or changes NAME's snapshots, or a
//! container NAME restored from one. The run that holds it writes who it
//! is into the lock file (PID, start, command line), so that a run that
//! finds it held can say by whom. How long a run waits is the store's
//! [`LockWait`]; the wait can be cancelled.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::Store;
use crate::error::{Error, ErrorKind, Result};
use crate::names::ContainerName;
use crate::notice::Notice;

/// Holds the lock for one name until dropped.
pub struct NameLock {
    name: ContainerName,
    _lock: Flock<File>,
}

impl NameLock {
    pub fn name(&self) -> &ContainerName {
        &self.name
    }
}

/// How long a run waits for a lock another run holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockWait {
    /// Until it is free (or the run is cancelled).
    #[default]
    Forever,
    /// At most this long; `Duration::ZERO` does not wait at all.
    Up(Duration),
}

/// The run that holds a lock, as it recorded itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// RFC 3339, UTC.
    pub since: String,
    /// Its command line, words joined by spaces, unescaped.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PID {} since {} ({})",
            self.pid,
            self.since,
            crate::printable::escape(&self.command)
        )
    }
}

/// How often a waiting run looks again (and at the cancel flag).
const RETRY: Duration = Duration::from_millis(100);

/// The most of a lock file that is read.
const HOLDER_MAX: usize = 4096;

impl Store {
    /// Takes the lock for `name`, creating the snapdir if needed. While
    /// another run holds it, waits as the store's [`LockWait`] says,
    /// telling the observer who holds it; fails with
    /// [`ErrorKind::Busy`] when the wait is over. The lock file must be
    /// root's alone: anyone else who could open it could hold the lock
    /// for ever, or write what a waiting run prints.
    pub fn lock(&self, name: &ContainerName) -> Result<NameLock> {
        let state = self.state_dir()?;
        let lock_name = format!("{name}.lock");
        let path = state.join(&lock_name);
        let (mut file, _) = state.open_or_create(&lock_name, nix::fcntl::OFlag::O_RDWR, 0o600)?;
        let st = nix::sys::stat::fstat(file.as_raw_fd())
            .map_err(|e| Error::sys("inspecting", &path, e))?;
        let foreign = st.st_uid != nix::unistd::geteuid().as_raw()
            || st.st_mode & 0o077 != 0
            || st.st_mode & libc::S_IFMT != libc::S_IFREG;
        if foreign {
            return Err(Error::new(
                ErrorKind::Unsafe,
                format!(
                    "refusing the lock file {}: it is not a private file of root's (owner uid {}, mode {:o})",
                    path.display(),
                    st.st_uid,
                    st.st_mode & 0o7777
                ),
            )
            .with_hint(format!(
                "remove it (rm {}) once no lxc-snap runs",
                path.display()
            )));
        }
        let started = Instant::now();
        let mut said = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    // Who holds it is for messages only: a failure to say
                    // so is no reason to fail the run.
                    let _ = record_holder(&lock);
                    return Ok(NameLock {
                        name: name.clone(),
                        _lock: lock,
                    });
                }
                Err((back, nix::errno::Errno::EWOULDBLOCK)) => file = back,
                Err((_, e)) => return Err(Error::sys("locking", &path, e)),
            }
            let holder = read_holder(&file);
            let limit = match self.lock_wait() {
                LockWait::Forever => None,
                LockWait::Up(d) => Some(d),
            };
            if limit.is_some_and(|d| started.elapsed() >= d) {
                return Err(busy(name, limit.unwrap_or_default(), holder));
            }
            if !said {
                self.observer().notice(Notice::Waiting {
                    container: name.to_string(),
                    holder: holder.map(|h| h.to_string()),
                });
                said = true;
            }
            self.cancel()
                .check()
                .map_err(|e| e.prefixed(&format!("waiting for the lock on {name}")))?;
            let left = limit.map_or(RETRY, |d| d.saturating_sub(started.elapsed()));
            std::thread::sleep(left.min(RETRY));
        }
    }
}

/// The error of a wait that ended with the lock still held.
fn busy(name: &ContainerName, waited: Duration, holder: Option<Holder>) -> Error {
    let by = holder.map_or_else(
        || "another lxc-snap run".to_string(),
        |h| format!("another lxc-snap run, {h}"),
    );
    let message = if waited.is_zero() {
        format!("{name} is locked by {by}")
    } else {
        format!(
            "{name} is still locked after {} s, by {by}",
            waited.as_secs_f64().round()
        )
    };
    Error::new(ErrorKind::Busy, message)
        .with_hint("try again when it is done, or wait longer with --wait DURATION")
}

/// Writes this run's PID, start and command line into the lock file it
/// holds.
fn record_holder(lock: &Flock<File>) -> std::io::Result<()> {
    let command: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        "pid {}\nsince {since}\ncommand {}\n",
        std::process::id(),
        command.join(" ").replace('\n', " ")
    );
    let file: &File = lock;
    file.set_len(0)?;
    file.write_all_at(text.as_bytes(), 0)
}

/// Who recorded themselves in the lock file, if it says.
fn read_holder(file: &File) -> Option<Holder> {
    let mut buf = vec![0u8; HOLDER_MAX];
    let n = file.read_at(&mut buf, 0).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let mut pid = None;
    let mut since = None;
    let mut command = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("since", v)) => since = Some(v.to_string()),
            Some(("command", v)) => command = Some(v.to_string()),
            _ => {}
        }
    }
    Some(Holder {
        pid: pid?,
        since: since?,
        command: command?,
    })
}
