//! A container on disk: `<lxcpath>/<name>/config`, its state, and the
//! `lxc_rdepends` / `lxc_snapshots` files that make `lxc-destroy` refuse to
//! remove a base that others still need.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use super::config::LxcConfig;
use crate::durable;
use crate::error::{Error, ErrorKind, Result};
use crate::names::ContainerName;

/// Largest config file read; real ones are a few KiB.
const MAX_CONFIG: u64 = 1 << 20;

/// A container that exists in an lxcpath.
#[derive(Debug, Clone)]
pub struct Container {
    pub lxcpath: PathBuf,
    pub name: ContainerName,
    pub config: LxcConfig,
}

/// What `lxc-info -s` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Stopped,
    Running,
    Frozen,
    /// STARTING, STOPPING, ABORTING, THAWED, FREEZING: in transition.
    Busy,
}

/// A container named in a dependency file: `LXCPATH\nNAME\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyEntry {
    pub lxcpath: PathBuf,
    pub name: String,
}

impl Container {
    pub fn dir_of(lxcpath: &Path, name: &ContainerName) -> PathBuf {
        lxcpath.join(name.as_str())
    }

    /// Whether anything at all exists at `<lxcpath>/<name>`.
    pub fn exists(lxcpath: &Path, name: &ContainerName) -> bool {
        fs::symlink_metadata(Self::dir_of(lxcpath, name)).is_ok()
    }

    pub fn open(lxcpath: &Path, name: &ContainerName) -> Result<Container> {
        let path = Self::dir_of(lxcpath, name).join("config");
        let bytes = durable::read_untrusted(&path, MAX_CONFIG, "config").map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("container {name} not found in {}", lxcpath.display()),
                )
                .with_hint("lxc-ls -P LXCPATH lists containers; -P selects another lxcpath")
            } else {
                e
            }
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::Other,
                format!("reading {}: not UTF-8 text", path.display()),
            )
        })?;
        Ok(Container {
            lxcpath: lxcpath.to_path_buf(),
            name: name.clone(),
            config: LxcConfig::parse(&text),
        })
    }

    pub fn dir(&self) -> PathBuf {
        Self::dir_of(&self.lxcpath, &self.name)
    }

    /// Asks LXC whether the container runs (see [`state_of`]).
    pub fn state(&self) -> Result<State> {
        state_of(&self.lxcpath, self.name.as_str())
    }

    /// Refuses (exit status "running") unless the container is stopped.
    pub fn ensure_stopped(&self) -> Result<()> {
        ensure_stopped(&self.lxcpath, self.name.as_str())
    }

    /// The containers this one's rootfs depends on (its `lxc_rdepends`).
    pub fn rdepends(&self) -> Result<Vec<DependencyEntry>> {
        read_dependency_file(&self.dir().join("lxc_rdepends"))
    }
}

/// Asks LXC whether container `name` in `lxcpath` runs. When `lxc-info`
/// cannot tell (LXC 5 refuses to load a config with 1.x/2.0 keys, or LXC's
/// tools are not installed), the container's command socket decides: every
/// running container's monitor listens on `@<lxcpath>/<name>/command`.
pub fn state_of(lxcpath: &Path, name: &str) -> Result<State> {
    let out = Command::new("lxc-info")
        .arg("-P")
        .arg(lxcpath)
        .arg("-n")
        .arg(name)
        .args(["-s", "-H"])
        .output();
    let reported = out
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match reported.as_deref() {
        Ok("STOPPED") => Ok(State::Stopped),
        Ok("RUNNING") => Ok(State::Running),
        Ok("FROZEN") => Ok(State::Frozen),
        Ok(s) if !s.is_empty() => Ok(State::Busy),
        _ => {
            let unix = Path::new("/proc/net/unix");
            let table = fs::read_to_string(unix).map_err(|e| Error::io("reading", unix, e))?;
            let wanted = format!(" @{}/command", lxcpath.join(name).display());
            if table.lines().any(|l| l.ends_with(&wanted)) {
                Ok(State::Running)
            } else {
                Ok(State::Stopped)
            }
        }
    }
}

/// Refuses (exit status "running") unless container `name` is stopped.
pub fn ensure_stopped(lxcpath: &Path, name: &str) -> Result<()> {
    let state = state_of(lxcpath, name)?;
    if state == State::Stopped {
        return Ok(());
    }
    let word = match state {
        State::Frozen => "frozen",
        State::Running => "running",
        _ => "starting or stopping",
    };
    Err(
        Error::new(ErrorKind::Running, format!("container {name} is {word}")).with_hint(format!(
            "stop it first: lxc-stop -P {} -n {name}",
            lxcpath.display()
        )),
    )
}

/// Reads a file of `LXCPATH\nNAME\n` pairs; a missing file is empty.
pub fn read_dependency_file(path: &Path) -> Result<Vec<DependencyEntry>> {
    let bytes = match durable::read_untrusted(path, MAX_CONFIG, "dependency file") {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(parse_pairs(&String::from_utf8_lossy(&bytes)))
}

fn parse_pairs(text: &str) -> Vec<DependencyEntry> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines
        .chunks_exact(2)
        .map(|p| DependencyEntry {
            lxcpath: PathBuf::from(p[0]),
            name: p[1].to_string(),
        })
        .collect()
}

fn render_pairs(entries: &[DependencyEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}\n{}\n", e.lxcpath.display(), e.name))
        .collect()
}

/// Writes `<dir>/lxc_rdepends` naming `bases`.
pub fn write_rdepends(dir: &Path, bases: &[DependencyEntry]) -> Result<()> {
    if bases.is_empty() {
        return Ok(());
    }
    durable::write_atomic(
        &dir.join("lxc_rdepends"),
        render_pairs(bases).as_bytes(),
        0o644,
    )
}

/// Adds (`add`) or removes `dependent` in the `lxc_snapshots` file of
/// `base`, under an flock on that file so that concurrent runs do not lose
/// each other's entries. The file is rewritten in place with one write: it
/// is the inode LXC itself reads.
pub fn update_dependents(
    base: &DependencyEntry,
    dependent: &DependencyEntry,
    add: bool,
) -> Result<()> {
    let base_dir = base.lxcpath.join(&base.name);
    let path = base_dir.join("lxc_snapshots");
    if !add && fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    if fs::symlink_metadata(base_dir.join("config")).is_err() {
        if !add {
            // No container any more: nothing for the entry to protect.
            return Ok(());
        }
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "registering a dependent of {}: the base container is gone",
                base_dir.display()
            ),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| Error::io("opening", &path, e))?;
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::sys("locking", &path, e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Error::io("reading", &path, e))?;
    let mut entries = parse_pairs(&text);
    let present = entries.contains(dependent);
    if add == present {
        return Ok(());
    }
    if add {
        entries.push(dependent.clone());
    } else {
        entries.retain(|e| e != dependent);
    }
    let io = |e| Error::io("writing", &path, e);
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.set_len(0).map_err(io)?;
    file.write_all(render_pairs(&entries).as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)
}

/// The containers whose rootfs directories are `lowers`, when a lower is
/// `<lxcpath>/<name>/rootfs` of a container with a config (what `lxc-copy`
/// clones from).
pub fn bases_of_lowers(lowers: &[PathBuf]) -> Vec<DependencyEntry> {
    lowers
        .iter()
        .filter(|l| l.file_name().is_some_and(|n| n == "rootfs"))
        .filter_map(|l| {
            let dir = l.parent()?;
            let name = dir.file_name()?.to_str()?.to_string();
            let lxcpath = dir.parent()?.to_path_buf();
            fs::symlink_metadata(dir.join("config")).ok()?;
            Some(DependencyEntry { lxcpath, name })
        })
        .collect()
}

/// The names of the containers in `lxcpath` (entries with a `config`, as
/// `lxc-ls` counts them), sorted; none when it cannot be read.
pub fn names_in(lxcpath: &Path) -> Vec<ContainerName> {
    let Ok(entries) = fs::read_dir(lxcpath) else {
        return Vec::new();
    };
    let mut names: Vec<ContainerName> = entries
        .filter_map(|e| e.ok())
        .filter(|e| fs::symlink_metadata(e.path().join("config")).is_ok())
        .filter_map(|e| ContainerName::parse(e.file_name().to_str()?).ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_pairs_round_trip() {
        let text = "/var/lib/lxc\nmysql\n/var/lib/lxcsnaps\nmysql_0\n";
        let pairs = parse_pairs(text);
        assert_eq!(pairs.len(), 2);
        assert_eq!(
            pairs[1],
            DependencyEntry {
                lxcpath: "/var/lib/lxcsnaps".into(),
                name: "mysql_0".into()
            }
        );
        assert_eq!(render_pairs(&pairs), text);
        assert!(parse_pairs("").is_empty());
    }

    #[test]
    fn update_dependents_adds_once_and_removes() {
        let lxc = tempfile::tempdir().expect("tempdir");
        fs::create_dir(lxc.path().join("base")).expect("mkdir");
        fs::write(lxc.path().join("base/config"), "").expect("config");
        fs::write(
            lxc.path().join("base/lxc_snapshots"),
            format!("{}\nc1\n", lxc.path().display()),
        )
        .expect("seed");
        let base = DependencyEntry {
            lxcpath: lxc.path().into(),
            name: "base".into(),
        };
        let dep = DependencyEntry {
            lxcpath: "/snaps".into(),
            name: "c1_0".into(),
        };
        update_dependents(&base, &dep, true).expect("add");
        update_dependents(&base, &dep, true).expect("add again");
        let text = fs::read_to_string(lxc.path().join("base/lxc_snapshots")).expect("read");
        assert_eq!(
            text,
            format!("{}\nc1\n/snaps\nc1_0\n", lxc.path().display())
        );
        update_dependents(&base, &dep, false).expect("remove");
        let text = fs::read_to_string(lxc.path().join("base/lxc_snapshots")).expect("read");
        assert_eq!(text, format!("{}\nc1\n", lxc.path().display()));
        assert_eq!(
            bases_of_lowers(&[lxc.path().join("base/rootfs"), "/nowhere/x/rootfs".into()]),
            [base]
        );
    }
}
