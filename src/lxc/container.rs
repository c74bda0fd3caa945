//! A container on disk: `<lxcpath>/<name>/config`, its state, where its
//! root filesystem is, and the `lxc_rdepends` / `lxc_snapshots` files that
//! make `lxc-destroy` refuse to remove a base that others still need.
//!
//! The lxcpath is a trusted directory ([`crate::dir`]) held open, and so is
//! each container's directory in it. A path read from a config or a
//! dependency file is data: it is used only when it names a place inside
//! a directory lxc-snap holds (the container's own directory for its
//! tree, the lxcpath or the snapdir for dependency files), and then only
//! through that directory's descriptor.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::config::{LxcConfig, Rootfs};
use crate::dir::{self, Below, Dir};
use crate::error::{Error, ErrorKind, Result};
use crate::names::ContainerName;

/// Largest config or dependency file read; real ones are a few KiB.
/// Largest config (or dependency file) read.
pub const MAX_CONFIG: u64 = 1 << 20;

/// An lxcpath, held open, with the path it was given as (configs spell
/// paths in it that way).
#[derive(Debug)]
pub struct Lxcpath {
    dir: Dir,
    given: PathBuf,
}

impl Lxcpath {
    /// Opens (as root: checks, see [`crate::dir`]) the lxcpath `given`.
    pub fn open(given: &Path) -> Result<Lxcpath> {
        let dir = Dir::open_trusted(given, None, "lxcpath").map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                e.with_hint("-P selects another lxcpath")
            } else {
                e
            }
        })?;
        Ok(Lxcpath {
            dir,
            given: given.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The lxcpath as resolved.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path` relative to the lxcpath, in either spelling.
    pub fn inside(&self, path: &Path) -> Option<PathBuf> {
        [self.given.as_path(), self.dir.path()]
            .iter()
            .find_map(|lxcpath| dir::inside(path, lxcpath))
            .map(Path::to_path_buf)
    }

    /// Whether anything at all exists at `<lxcpath>/<name>`.
    pub fn has(&self, name: &ContainerName) -> Result<bool> {
        Ok(self.dir.stat_at(name.as_str())?.is_some())
    }
}

/// A container that exists in an lxcpath.
#[derive(Debug)]
pub struct Container {
    /// The lxcpath, as resolved.
    pub lxcpath: PathBuf,
    pub name: ContainerName,
    pub config: LxcConfig,
    dir: Dir,
    /// The container directory as the lxcpath was given, for configs.
    given_dir: PathBuf,
    /// The host uid and gid of its root, for an unprivileged container.
    pub mapped_root: Option<(u32, u32)>,
}

/// Where a container's tree is: what [`Container::tree`] found.
#[derive(Debug)]
pub struct Tree {
    pub rootfs: Rootfs,
    /// The tree (an overlay's upper, or a whole root filesystem).
    pub dir: Dir,
    /// The directory that holds it, and its name there.
    pub parent: Dir,
    pub name: std::ffi::OsString,
    /// Its path below the container's directory.
    pub rel: PathBuf,
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

    pub fn open(lxcpath: &Lxcpath, name: &ContainerName) -> Result<Container> {
        let not_found = || {
            Error::new(
                ErrorKind::NotFound,
                format!("container {name} not found in {}", lxcpath.path().display()),
            )
            .with_hint(format!(
                "lxc-ls -P {} lists the containers there; lxc-snap -P PATH looks in another lxcpath",
                lxcpath.path().display()
            ))
        };
        let (dir, config) = open_container_dir(&lxcpath.dir, name).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                not_found()
            } else {
                e
            }
        })?;
        let mapped_root = config.mapped_root();
        Ok(Container {
            lxcpath: lxcpath.path().to_path_buf(),
            name: name.clone(),
            config,
            given_dir: lxcpath.given.join(name.as_str()),
            dir,
            mapped_root,
        })
    }

    /// How far the directories below the container's own are trusted:
    /// root's, or its mapped root's for an unprivileged container.
    fn below(&self) -> Below {
        match self.mapped_root {
            Some((uid, gid)) => Below::AllOwnedBy(uid, gid),
            None => Below::All,
        }
    }

    /// The container's directory.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Both spellings of the container's directory: as resolved, and as
    /// the lxcpath was given (which configs use).
    pub fn dir_spellings(&self) -> [&Path; 2] {
        [self.dir.path(), &self.given_dir]
    }

    /// `path` (from the config) relative to the container's directory, if
    /// it lies inside it.
    pub fn inside(&self, path: &Path) -> Option<PathBuf> {
        self.dir_spellings()
            .iter()
            .find_map(|d| dir::inside(path, d))
            .map(Path::to_path_buf)
    }

    /// The container's tree as its config names it: an overlay's upper or a
    /// directory root filesystem, which must be inside the container's own
    /// directory (anything else is refused: the config would choose what
    /// lxc-snap reads, replaces or deletes as root). Opened without
    /// following any symlink, every directory on the way checked.
    pub fn tree(&self) -> Result<Tree> {
        let rootfs = self.config.rootfs()?;
        let path = match &rootfs {
            Rootfs::Overlay { upper, .. } => upper.clone(),
            Rootfs::Dir { path, .. } => path.clone(),
            Rootfs::Unsupported { kind } => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{}: its rootfs backend is {kind}", self.name),
                )
                .with_hint(
                    "lxc-snap supports overlay (overlay: or overlayfs:) and directory-backed containers",
                ))
            }
        };
        let Some(rel) = self.inside(&path) else {
            return Err(Error::new(
                ErrorKind::Unsafe,
                format!(
                    "refusing {}: its config puts its root filesystem at {}, outside {}",
                    self.name,
                    path.display(),
                    self.dir.path().display()
                ),
            )
            .with_hint(format!(
                "lxc-snap works only on trees inside the container's own directory; move it under {}",
                self.dir.path().display()
            )));
        };
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = if parent_rel.as_os_str().is_empty() {
            self.dir.try_clone()?
        } else {
            self.dir.open_below(parent_rel, self.below())?
        };
        let dir = match parent.stat_at(&name)? {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => parent.open_dir(&name)?,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}: {} is not a directory (a block device or image)",
                        self.name,
                        parent.join(&name).display()
                    ),
                ))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{}: {} does not exist",
                        self.name,
                        parent.join(&name).display()
                    ),
                ))
            }
        };
        Ok(Tree {
            rootfs,
            dir,
            parent,
            name,
            rel,
        })
    }

    /// Asks LXC whether the container runs (see [`state_of`]).
    pub fn state(&self) -> Result<State> {
        state_of(&self.lxcpath, self.name.as_str())
    }

    /// Freezes the container if it runs (see [`super::freeze`]): `None`
    /// when it is stopped, or frozen already (by someone else, who thaws
    /// it); refuses one that is starting or stopping.
    pub fn freeze_if_running(&self) -> Result<Option<super::Frozen>> {
        match self.state()? {
            State::Stopped | State::Frozen => Ok(None),
            State::Running => Ok(Some(super::Frozen::freeze(
                &self.lxcpath,
                self.name.as_str(),
            )?)),
            _ => self.ensure_stopped().map(|()| None),
        }
    }

    /// Refuses (exit status "running") unless the container is stopped.
    pub fn ensure_stopped(&self) -> Result<()> {
        ensure_stopped(&self.lxcpath, self.name.as_str())
    }

    /// The containers this one's rootfs depends on (its `lxc_rdepends`).
    pub fn rdepends(&self) -> Result<Vec<DependencyEntry>> {
        read_dependency_file(&self.dir, "lxc_rdepends")
    }
}

/// Asks LXC whether container `name` in `lxcpath` runs. When `lxc-info`
/// cannot tell (LXC 5 refuses to load a config with 1.x/2.0 keys, or LXC's
/// tools are not installed), the container's command socket decides: every
/// running container's monitor listens on `@<lxcpath>/<name>/command`.
pub fn state_of(lxcpath: &Path, name: &str) -> Result<State> {
    let out = super::tools::command("lxc-info", lxcpath, name)
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

/// Reads a file of `LXCPATH\nNAME\n` pairs in `dir`; a missing file is empty.
pub fn read_dependency_file(dir: &Dir, name: &str) -> Result<Vec<DependencyEntry>> {
    let bytes = match dir.read_file(name, MAX_CONFIG, "dependency file") {
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
pub fn write_rdepends(dir: &Dir, bases: &[DependencyEntry]) -> Result<()> {
    if bases.is_empty() {
        return Ok(());
    }
    dir.write_file("lxc_rdepends", render_pairs(bases).as_bytes(), 0o644)
}

/// Reads the LXC config `config` in `dir` (a container's or a snapshot's
/// directory): at most 1 MiB of UTF-8 text.
pub fn read_config(dir: &Dir) -> Result<LxcConfig> {
    let bytes = dir.read_file("config", MAX_CONFIG, "config")?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::new(
            ErrorKind::Other,
            format!("reading {}: not UTF-8 text", dir.join("config").display()),
        )
    })?;
    Ok(LxcConfig::parse(&text))
}

/// Opens the directory of the container `name` in `place` and reads its
/// config. The directory must be root's alone, as every directory
/// lxc-snap works in, or belong to the container's mapped root (an
/// unprivileged container's, as LXC makes it) when its config maps root
/// to that uid and group: trusted for that container, for nothing else.
fn open_container_dir(place: &Dir, name: &ContainerName) -> Result<(Dir, LxcConfig)> {
    let rel = Path::new(name.as_str());
    let (dir, refused) = match place.open_below(rel, Below::All) {
        Ok(dir) => (dir, None),
        Err(e) if e.kind() == ErrorKind::Unsafe => {
            (place.open_below(rel, Below::Parents)?, Some(e))
        }
        Err(e) => return Err(e),
    };
    let config = read_config(&dir)?;
    if let Some(e) = refused {
        match config.mapped_root() {
            Some((uid, gid)) => {
                dir::check_owned_by(&dir.stat()?, dir.path(), uid, gid).map_err(|_| e)?
            }
            None => return Err(e),
        }
    }
    Ok((dir, config))
}

/// The directory of the container `entry` names, if it is in one of the
/// lxcpaths lxc-snap holds (`places`: the lxcpath and the snapdir). A
/// dependency file is data: a pair naming any other place is not followed.
/// `Ok(None)`: no such place, or no such container there.
fn dependency_dir(places: &[&Dir], entry: &DependencyEntry) -> Result<Option<Dir>> {
    let Ok(name) = ContainerName::parse(&entry.name) else {
        return Ok(None);
    };
    let known = |d: &&&Dir| {
        d.path() == entry.lxcpath || fs::canonicalize(&entry.lxcpath).is_ok_and(|p| p == d.path())
    };
    let Some(place) = places.iter().find(known) else {
        return Ok(None);
    };
    match open_container_dir(place, &name) {
        Ok((dir, _)) => Ok(Some(dir)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the `lxc_snapshots` file of `base` lists `dependent`; `None`
/// when `base` is no container in `places`.
pub fn lists_dependent(
    places: &[&Dir],
    base: &DependencyEntry,
    dependent: &DependencyEntry,
) -> Result<Option<bool>> {
    let Some(dir) = dependency_dir(places, base)? else {
        return Ok(None);
    };
    let listed = read_dependency_file(&dir, "lxc_snapshots")?;
    Ok(Some(listed.iter().any(|e| {
        e.name == dependent.name
            && (e.lxcpath == dependent.lxcpath
                || fs::canonicalize(&e.lxcpath)
                    .is_ok_and(|p| fs::canonicalize(&dependent.lxcpath).is_ok_and(|d| d == p)))
    })))
}

/// Adds (`add`) or removes `dependent` in the `lxc_snapshots` file of
/// `base`, under an flock on that file so that concurrent runs do not lose
/// each other's entries. The file is rewritten in place with one write: it
/// is the inode LXC itself reads. `base` must be a container in one of
/// `places` (the lxcpath and the snapdir); adding elsewhere is refused, and
/// removing elsewhere leaves the entry (a stale entry only makes
/// lxc-destroy more careful).
pub fn update_dependents(
    places: &[&Dir],
    base: &DependencyEntry,
    dependent: &DependencyEntry,
    add: bool,
) -> Result<()> {
    let base_path = base.lxcpath.join(&base.name);
    let Some(dir) = dependency_dir(places, base)? else {
        if !add {
            return Ok(());
        }
        let known = places
            .iter()
            .map(|d| d.path().display().to_string())
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing to register with {}: a dependency file names it, but it is no container in {known}",
                base_path.display()
            ),
        )
        .with_hint("check the container's lxc_rdepends, and -P"));
    };
    let path = dir.join("lxc_snapshots");
    if dir.stat_at("config")?.is_none() {
        if !add {
            // No container any more: nothing for the entry to protect.
            return Ok(());
        }
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "registering a dependent of {}: the base container is gone",
                dir.path().display()
            ),
        ));
    }
    if !add && dir.stat_at("lxc_snapshots")?.is_none() {
        return Ok(());
    }
    let (file, _) = dir.open_or_create("lxc_snapshots", nix::fcntl::OFlag::O_RDWR, 0o644)?;
    let st =
        nix::sys::stat::fstat(file.as_raw_fd()).map_err(|e| Error::sys("inspecting", &path, e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 > MAX_CONFIG {
        return Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing {}: not a regular file of at most 1 MiB",
                path.display()
            ),
        ));
    }
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::sys("locking", &path, e))?;
    let mut bytes = Vec::new();
    (&*file)
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading", &path, e))?;
    if bytes.len() as u64 > MAX_CONFIG {
        return Err(Error::new(
            ErrorKind::Unsafe,
            format!("refusing {}: longer than 1 MiB", path.display()),
        ));
    }
    let mut entries = parse_pairs(&String::from_utf8_lossy(&bytes));
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
pub fn bases_of_lowers(lowers: &[PathBuf], lxcpath: &Lxcpath) -> Vec<DependencyEntry> {
    lowers
        .iter()
        .filter_map(|l| {
            let rel = lxcpath.inside(l)?;
            let parts = dir::plain_components(&rel)?;
            let [name, rootfs] = parts.as_slice() else {
                return None;
            };
            if *rootfs != "rootfs" {
                return None;
            }
            let name = ContainerName::parse(name.to_str()?).ok()?;
            open_container_dir(&lxcpath.dir, &name).ok()?;
            Some(DependencyEntry {
                lxcpath: lxcpath.path().to_path_buf(),
                name: name.to_string(),
            })
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
    fn update_dependents_adds_once_removes_and_stays_in_its_places() {
        let lxc = tempfile::tempdir().expect("tempdir");
        fs::create_dir(lxc.path().join("base")).expect("mkdir");
        fs::write(lxc.path().join("base/config"), "").expect("config");
        fs::write(
            lxc.path().join("base/lxc_snapshots"),
            format!("{}\nc1\n", lxc.path().display()),
        )
        .expect("seed");
        let lxcpath = Lxcpath::open(lxc.path()).expect("lxcpath");
        let places = [lxcpath.dir()];
        let base = DependencyEntry {
            lxcpath: lxc.path().into(),
            name: "base".into(),
        };
        let dep = DependencyEntry {
            lxcpath: "/snaps".into(),
            name: "c1_0".into(),
        };
        update_dependents(&places, &base, &dep, true).expect("add");
        update_dependents(&places, &base, &dep, true).expect("add again");
        let text = fs::read_to_string(lxc.path().join("base/lxc_snapshots")).expect("read");
        assert_eq!(
            text,
            format!("{}\nc1\n/snaps\nc1_0\n", lxc.path().display())
        );
        update_dependents(&places, &base, &dep, false).expect("remove");
        let text = fs::read_to_string(lxc.path().join("base/lxc_snapshots")).expect("read");
        assert_eq!(text, format!("{}\nc1\n", lxc.path().display()));
        assert_eq!(
            bases_of_lowers(
                &[lxc.path().join("base/rootfs"), "/nowhere/x/rootfs".into()],
                &lxcpath
            ),
            [base]
        );
        // Anywhere else with a config: not written to.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        fs::create_dir(elsewhere.path().join("victim")).expect("mkdir");
        fs::write(elsewhere.path().join("victim/config"), "").expect("config");
        let victim = DependencyEntry {
            lxcpath: elsewhere.path().into(),
            name: "victim".into(),
        };
        let err = update_dependents(&places, &victim, &dep, true).expect_err("elsewhere");
        assert_eq!(err.kind(), ErrorKind::Unsafe);
        update_dependents(&places, &victim, &dep, false).expect("removing elsewhere does nothing");
        assert!(!elsewhere.path().join("victim/lxc_snapshots").exists());
    }
}
