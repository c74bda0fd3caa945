//! One lock per container name, `<snapdir>/.lxc-snap/NAME.lock`: it
//! serializes every run that creates or changes NAME's snapshots, or a
//! container NAME restored from one. The wait for it can be cancelled.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

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

/// How often a waiting run looks again (and at the cancel flag).
const RETRY: Duration = Duration::from_millis(100);

impl Store {
    /// Takes the lock for `name`, creating the snapdir if needed; waits
    /// (and says so) while another run holds it, until cancelled. The lock
    /// file must be root's alone: anyone else who could open it could hold
    /// the lock for ever.
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
        let mut said = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(NameLock {
                        name: name.clone(),
                        _lock: lock,
                    })
                }
                Err((back, nix::errno::Errno::EWOULDBLOCK)) => file = back,
                Err((_, e)) => return Err(Error::sys("locking", &path, e)),
            }
            if !said {
                self.observer().notice(Notice::Waiting {
                    container: name.to_string(),
                });
                said = true;
            }
            self.cancel()
                .check()
                .map_err(|e| e.prefixed(&format!("waiting for the lock on {name}")))?;
            std::thread::sleep(RETRY);
        }
    }
}
