//! The snapshot store: the layout of the snapdir, snapshot names and
//! numbers, metadata, comments and the per-name locks.
//!
//! ```text
//! <snapdir>/NAME_N/                 a complete snapshot (itself an LXC container)
//!   config ts comment lxc-snap.json lxc_rdepends
//!   private/                        0700: never reachable by unprivileged users
//!     delta/ | rootfs/              the captured tree
//!     scratch/upper scratch/work    where a started snapshot writes
//! <snapdir>/.lxc-snap/NAME.lock     serializes runs that create NAME or NAME_N
//! <snapdir>/.lxc-snap/NAME.seq      highest number ever issued to NAME
//! <snapdir>/.lxc-snap.tmp.NAME_N.*  a snapshot being built
//! ```
//!
//! An entry is one of ours only if its name parses as `NAME_N` and it holds
//! `lxc-snap.json` naming the same container; anything else in the snapdir
//! (such as `lxc-snapshot`'s `<c>/snapN` trees) is ignored and never touched.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::dir::{Below, Dir};
use crate::durable::{self, Staging};
use crate::error::{Error, ErrorKind, Result};
use crate::names::{ContainerName, SnapshotName};
use crate::ui::Ui;

pub const META_FILE: &str = "lxc-snap.json";
pub const COMMENT_FILE: &str = "comment";
pub const TS_FILE: &str = "ts";
/// Bumped when the layout or metadata changes incompatibly. Version 2
/// added layers and held snapshots; snapshots that use neither still say 1,
/// so that older versions keep reading them.
pub const FORMAT_VERSION: u32 = 2;
/// The version a snapshot without a layer and not held is written with.
pub const WHOLE_FORMAT_VERSION: u32 = 1;
/// Largest comment accepted, in bytes.
pub const MAX_COMMENT: u64 = 64 * 1024;
const STATE_DIR: &str = ".lxc-snap";
/// Largest metadata file read. A layer's metadata lists the paths it
/// removed, so this is generous; the snapdir is root's alone anyway.
const MAX_META: u64 = 64 << 20;

/// How the captured tree relates to the rest of the container's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// The captured tree is an overlay layer over `lowers`.
    Overlay,
    /// The captured tree is a whole root filesystem.
    Dir,
}

/// The machine-readable record of a snapshot (`lxc-snap.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub tool_version: String,
    pub container: String,
    /// The lxcpath the container lived in when it was snapshotted.
    pub lxcpath: PathBuf,
    /// RFC 3339 with the local offset.
    pub created: String,
    pub backing: Backing,
    /// `lxc.rootfs.path` or `lxc.rootfs`, as the container's config spelled it.
    pub rootfs_key: String,
    /// `overlay`, `overlayfs`, `dir` or empty (a bare path), as spelled.
    pub rootfs_prefix: String,
    /// The read-only layers below the captured tree, top first.
    pub lowers: Vec<PathBuf>,
    /// Entries in the captured tree.
    pub files: u64,
    /// Bytes of regular files in the captured tree.
    pub bytes: u64,
    /// Allocated bytes only this snapshot holds: what deleting it would
    /// free. Files unchanged since the previous snapshot are hard links
    /// shared with it, so this is kept up to date for the neighbours when a
    /// snapshot is taken or deleted.
    #[serde(default)]
    pub used_bytes: u64,
    /// A pinned snapshot is never pruned and is deleted only with --force.
    #[serde(default)]
    pub pinned: bool,
    /// What each lower looked like when the snapshot was taken (same order
    /// as `lowers`), to tell later whether the base still is what it was.
    #[serde(default)]
    pub lower_fingerprints: Vec<TreeFingerprint>,
    /// The captured tree's inodes with several names in it, as (inode
    /// number, names), so that the next snapshot can tell which inodes it
    /// shares were this one's alone; absent from metadata written before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_name_inodes: Option<Vec<(u64, u64)>>,
    /// Set when the captured tree is a layer: only what changed since an
    /// older snapshot of the same container, whose tree goes below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Layer>,
    /// A deleted snapshot kept because layers need its tree: not listed,
    /// removed with the last of them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Fields this version does not know (written by a newer one), kept as
    /// they are when the metadata is rewritten.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// How a layer relates to the snapshot below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The snapshot (`NAME_N`, of the same container) whose tree is below.
    pub anchor: String,
    /// Entries in the layer itself.
    pub entries: u64,
    /// Bytes of regular files in the layer itself.
    pub bytes: u64,
    /// The layer's whiteouts that stand for entries the captured tree did
    /// not have (rather than whiteouts it had), by path below the tree.
    pub removed: Vec<PathBuf>,
}

/// A cheap summary of a directory tree: any change to an entry moves its
/// ctime, so a changed tree almost always shows a different fingerprint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFingerprint {
    pub entries: u64,
    pub bytes: u64,
    /// The newest ctime in the tree, in nanoseconds since the epoch.
    pub newest_change_ns: i128,
}

impl TreeFingerprint {
    /// Walks `root` without following symlinks, leaving its filesystem or
    /// touching access times.
    pub fn of(root: &Dir) -> Result<TreeFingerprint> {
        let mut fp = TreeFingerprint::default();
        crate::walk::for_each_entry(root, |st| {
            fp.entries += 1;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                fp.bytes += st.st_size as u64;
            }
            let ctime = i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec);
            fp.newest_change_ns = fp.newest_change_ns.max(ctime);
        })?;
        Ok(fp)
    }
}

impl Metadata {
    pub fn created_time(&self) -> Result<DateTime<FixedOffset>> {
        DateTime::parse_from_rfc3339(&self.created).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "reading snapshot metadata: bad creation time {:?}: {e}",
                    self.created
                ),
            )
        })
    }
}

/// A complete snapshot in the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: SnapshotName,
    pub dir: PathBuf,
    pub meta: Metadata,
}

impl Snapshot {
    /// The captured tree (for a layer, only the layer).
    pub fn tree(&self) -> PathBuf {
        tree_path(&self.dir, self.meta.backing)
    }

    /// The name of the snapshot a layer is over, if this is a layer.
    pub fn anchor(&self) -> Option<SnapshotName> {
        let layer = self.meta.layer.as_ref()?;
        SnapshotName::try_parse(&layer.anchor).filter(|a| a.container() == self.name.container())
    }

    /// The tree of the snapshot a layer is over.
    pub fn anchor_tree(&self) -> Option<PathBuf> {
        let anchor = self.anchor()?;
        let parent = self.dir.parent()?;
        Some(tree_path(
            &parent.join(anchor.to_string()),
            self.meta.backing,
        ))
    }

    /// What of the snapshot is missing: its captured tree, or for a layer
    /// the anchor's tree.
    pub fn missing(&self) -> Option<String> {
        let is_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        let tree = self.tree();
        if !is_dir(&tree) {
            return Some(format!("its captured tree {} is missing", tree.display()));
        }
        let layer = self.meta.layer.as_ref()?;
        match self.anchor_tree() {
            Some(anchor) if is_dir(&anchor) => None,
            _ => Some(format!(
                "it is stored as changes to {}, whose tree is missing",
                layer.anchor
            )),
        }
    }

    /// Fails unless the captured tree, and for a layer the anchor's tree,
    /// are there.
    pub fn ensure_complete(&self) -> Result<()> {
        match self.missing() {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::Other,
                format!("snapshot {} is broken: {why}", self.name),
            )),
        }
    }
}

/// `<snapshot>/private/delta` or `<snapshot>/private/rootfs`.
pub fn tree_path(snapshot_dir: &Path, backing: Backing) -> PathBuf {
    snapshot_dir.join(tree_rel(backing))
}

/// `private/delta` or `private/rootfs`.
pub fn tree_rel(backing: Backing) -> &'static Path {
    Path::new(match backing {
        Backing::Overlay => "private/delta",
        Backing::Dir => "private/rootfs",
    })
}

/// `<snapshot>/private/scratch/upper`: the upper a started snapshot writes to.
pub fn scratch_upper(snapshot_dir: &Path) -> PathBuf {
    snapshot_dir.join("private/scratch/upper")
}

/// Checks comment text: UTF-8, at most [`MAX_COMMENT`] bytes.
pub fn validate_comment(bytes: Vec<u8>, source: &str) -> Result<String> {
    if bytes.len() as u64 > MAX_COMMENT {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("comment from {source}: longer than 64 KiB"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::new(
            ErrorKind::Usage,
            format!("comment from {source}: not UTF-8 text"),
        )
    })
}

fn read_comment_file(dir: &Dir) -> Result<Option<String>> {
    match dir.read_file(COMMENT_FILE, MAX_COMMENT, "comment") {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

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

/// A snapshot being built: a staging directory and the name it will get.
pub struct NewSnapshot {
    pub name: SnapshotName,
    staging: Staging,
}

impl NewSnapshot {
    /// Where the snapshot is being built now, for messages.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// The directory the snapshot is being built in.
    pub fn dir(&self) -> &Dir {
        self.staging.dir()
    }

    /// Where it will be once committed; configs refer to this path.
    pub fn final_path(&self) -> PathBuf {
        self.staging.final_path()
    }
}

/// The snapdir. It is opened (and, as root, checked to be root's alone:
/// see [`crate::dir`]) on first use and used by descriptor from then on.
#[derive(Debug)]
pub struct Store {
    given: PathBuf,
    root: OnceLock<Dir>,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            given: dir.into(),
            root: OnceLock::new(),
        }
    }

    /// The snapdir's path: as resolved once it has been opened.
    pub fn dir(&self) -> &Path {
        self.root.get().map_or(&self.given, Dir::path)
    }

    /// The snapdir, created (0755) if missing.
    pub fn root(&self) -> Result<&Dir> {
        if let Some(dir) = self.root.get() {
            return Ok(dir);
        }
        let dir = Dir::open_trusted(&self.given, Some(0o755), "snapdir")?;
        Ok(self.root.get_or_init(|| dir))
    }

    /// The snapdir if it exists.
    fn existing_root(&self) -> Result<Option<&Dir>> {
        if let Some(dir) = self.root.get() {
            return Ok(Some(dir));
        }
        match Dir::open_trusted(&self.given, None, "snapdir") {
            Ok(dir) => Ok(Some(self.root.get_or_init(|| dir))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `<snapdir>/.lxc-snap`, created if missing, root's alone.
    fn state_dir(&self) -> Result<Dir> {
        let root = self.root()?;
        match root.mkdir(STATE_DIR, 0o755) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Exists => {}
            Err(e) => return Err(e),
        }
        root.open_below(Path::new(STATE_DIR), Below::All)
    }

    /// The directory of a snapshot in the store.
    pub fn snapshot_dir(&self, snapshot: &Snapshot) -> Result<Dir> {
        self.root()?.open_dir(snapshot.name.to_string())
    }

    /// The captured tree of a snapshot (for a layer, only the layer).
    pub fn tree_dir(&self, snapshot: &Snapshot) -> Result<Dir> {
        let rel = Path::new(&snapshot.name.to_string()).join(tree_rel(snapshot.meta.backing));
        self.root()?.open_below(&rel, Below::Nothing)
    }

    /// The captured tree of the snapshot a layer is over (held or not);
    /// `None` for a whole snapshot.
    pub fn anchor_tree_dir(&self, snapshot: &Snapshot) -> Result<Option<Dir>> {
        snapshot
            .anchor()
            .map(|anchor| self.tree_dir(&self.get_with_held(&anchor)?))
            .transpose()
    }

    /// The comment of a snapshot, if it has one.
    pub fn comment(&self, snapshot: &Snapshot) -> Result<Option<String>> {
        read_comment_file(&self.snapshot_dir(snapshot)?)
    }

    /// Takes the lock for `name`, creating the snapdir if needed; waits
    /// (and says so) while another run holds it. The lock file must be
    /// root's alone: anyone else who could open it could hold the lock for
    /// ever.
    pub fn lock(&self, name: &ContainerName, ui: Ui) -> Result<NameLock> {
        let state = self.state_dir()?;
        let lock_name = format!("{name}.lock");
        let path = state.join(&lock_name);
        let (file, _) = state.open_or_create(&lock_name, nix::fcntl::OFlag::O_RDWR, 0o600)?;
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
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                ui.note(&format!("waiting for another lxc-snap run on {name}"));
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, e)| Error::sys("locking", &path, e))?
            }
            Err((_, e)) => return Err(Error::sys("locking", &path, e)),
        };
        Ok(NameLock {
            name: name.clone(),
            _lock: lock,
        })
    }

    /// Removes snapshots of the locked container left half-built by runs
    /// that died, calling `before_remove(path, snapshot_name)` on each
    /// first; returns their paths.
    pub fn remove_leftovers(
        &self,
        lock: &NameLock,
        before_remove: impl FnMut(&Dir, &str),
    ) -> Result<Vec<PathBuf>> {
        durable::remove_leftovers(
            self.root()?,
            |n| SnapshotName::try_parse(n).is_some_and(|s| s.container() == lock.name()),
            before_remove,
        )
    }

    /// Every snapshot in the store, sorted by container and number. Entries
    /// that look like ours but whose metadata cannot be read are skipped
    /// with a warning.
    pub fn snapshots(&self, ui: Ui) -> Result<Vec<Snapshot>> {
        self.scan(None, false, ui)
    }

    /// The snapshots of `container`, by number.
    pub fn snapshots_of(&self, container: &ContainerName, ui: Ui) -> Result<Vec<Snapshot>> {
        self.scan(Some(container), false, ui)
    }

    /// [`Store::snapshots_of`] with the held ones.
    pub fn snapshots_of_with_held(
        &self,
        container: &ContainerName,
        ui: Ui,
    ) -> Result<Vec<Snapshot>> {
        self.scan(Some(container), true, ui)
    }

    fn scan(&self, only: Option<&ContainerName>, held: bool, ui: Ui) -> Result<Vec<Snapshot>> {
        let Some(root) = self.existing_root()? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in root.names()? {
            let Some(name) = entry.to_str().and_then(SnapshotName::try_parse) else {
                continue;
            };
            if only.is_some_and(|c| c != name.container()) {
                continue;
            }
            match self.load(&name) {
                Ok(Some(s)) if held || !s.meta.held => found.push(s),
                Ok(_) => {}
                Err(e) => ui.warn(&format!("skipping {}: {e}", root.join(&entry).display())),
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// Reads one snapshot; `None` when the entry is not one of ours.
    fn load(&self, name: &SnapshotName) -> Result<Option<Snapshot>> {
        let Some(root) = self.existing_root()? else {
            return Ok(None);
        };
        let snapshot_dir = match root.stat_at(name.to_string())? {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                root.open_dir(name.to_string())?
            }
            _ => return Ok(None),
        };
        let dir = snapshot_dir.path().to_path_buf();
        let path = dir.join(META_FILE);
        let bytes = match snapshot_dir.read_file(META_FILE, MAX_META, "metadata") {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = parse_metadata(&bytes, name)
            .map_err(|e| e.prefixed(&format!("reading {}", path.display())))?;
        Ok(Some(Snapshot {
            name: name.clone(),
            dir,
            meta,
        }))
    }

    /// The snapshot `name`, or a not-found error.
    pub fn get(&self, name: &SnapshotName) -> Result<Snapshot> {
        self.load(name)?.filter(|s| !s.meta.held).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("snapshot {name} not found in {}", self.dir().display()),
            )
            .with_hint(format!(
                "lxc-snap -l {} lists its snapshots",
                name.container()
            ))
        })
    }

    /// Picks the next number for the locked container and creates the
    /// staging directory for it. The number is one more than the highest
    /// that exists (in any form) or was ever issued, so a deleted number
    /// is never reused.
    pub fn begin(&self, lock: &NameLock) -> Result<NewSnapshot> {
        let container = lock.name();
        let mut highest: Option<u64> = self.read_seq(container)?;
        let root = self.root()?;
        for entry in root.names()? {
            if let Some(s) = entry.to_str().and_then(SnapshotName::try_parse) {
                if s.container() == container {
                    highest = highest.max(Some(s.number()));
                }
            }
        }
        let number = match highest {
            None => 0,
            Some(n) => n.checked_add(1).ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("no snapshot numbers left for {container}"),
                )
            })?,
        };
        let name = SnapshotName::new(container.clone(), number);
        let staging = Staging::create(root, &name.to_string(), 0o755)?;
        Ok(NewSnapshot { name, staging })
    }

    /// Moves a finished snapshot into place and records its number.
    pub fn commit(&self, new: NewSnapshot, lock: &NameLock) -> Result<Snapshot> {
        let name = new.name.clone();
        new.staging.commit()?;
        self.state_dir()?.write_file(
            format!("{}.seq", lock.name()),
            format!("{}\n", name.number()).as_bytes(),
            0o644,
        )?;
        self.get(&name)
    }

    fn read_seq(&self, container: &ContainerName) -> Result<Option<u64>> {
        match self
            .state_dir()?
            .read_file(format!("{container}.seq"), 64, "sequence file")
        {
            Ok(b) => Ok(String::from_utf8_lossy(&b).trim().parse().ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The snapshot `name`, held or not.
    pub fn get_with_held(&self, name: &SnapshotName) -> Result<Snapshot> {
        self.load(name)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("snapshot {name} not found in {}", self.dir().display()),
            )
        })
    }

    /// Rewrites `snapshot`'s metadata with `pinned` set as given.
    pub fn set_pinned(&self, snapshot: &Snapshot, pinned: bool) -> Result<()> {
        let mut meta = snapshot.meta.clone();
        meta.pinned = pinned;
        write_metadata(&self.snapshot_dir(snapshot)?, &meta)
    }

    /// Deletes `snapshot` (of the locked container): first renames it out
    /// of sight, so that a crash never leaves a half-deleted snapshot that
    /// lists; `unregister` runs between the rename and the removal. What a
    /// crash leaves is a leftover that the next run removes.
    pub fn remove(
        &self,
        snapshot: &Snapshot,
        lock: &NameLock,
        unregister: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        debug_assert_eq!(snapshot.name.container(), lock.name());
        let root = self.root()?;
        let hidden = format!(
            "{}{}.deleted{}",
            durable::STAGING_PREFIX,
            snapshot.name,
            std::process::id()
        );
        root.rename_new(snapshot.name.to_string(), root, &hidden)
            .map_err(|e| e.prefixed(&format!("moving aside {}", snapshot.dir.display())))?;
        unregister()?;
        root.remove_tree(&hidden)
    }

    /// Keeps a deleted snapshot's tree for the layers over it: marks it
    /// held (it no longer lists), runs `unregister`, then removes its
    /// config, so it cannot be started, and its comment and time stamp.
    pub fn hold(&self, snapshot: &Snapshot, unregister: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut meta = snapshot.meta.clone();
        meta.held = true;
        meta.pinned = false;
        meta.format_version = FORMAT_VERSION;
        let dir = self.snapshot_dir(snapshot)?;
        write_metadata(&dir, &meta)?;
        unregister()?;
        for name in ["config", TS_FILE, COMMENT_FILE] {
            dir.remove_file(name)?;
        }
        dir.sync()
    }

    /// Recomputes what only `snapshot` holds (see [`exclusive_bytes`]) and
    /// records it in its metadata.
    pub fn refresh_used(&self, snapshot: &Snapshot) -> Result<()> {
        self.set_used(snapshot, exclusive_bytes(&self.tree_dir(snapshot)?)?)
    }

    /// Records `used` as what only `snapshot` holds.
    pub fn set_used(&self, snapshot: &Snapshot, used: u64) -> Result<()> {
        if used != snapshot.meta.used_bytes {
            let mut meta = snapshot.meta.clone();
            meta.used_bytes = used;
            write_metadata(&self.snapshot_dir(snapshot)?, &meta)?;
        }
        Ok(())
    }

    /// Replaces (or with `None` removes) the comment of `snapshot`.
    pub fn set_comment(&self, snapshot: &Snapshot, comment: Option<&str>) -> Result<()> {
        write_comment(&self.snapshot_dir(snapshot)?, comment)
    }
}

/// What deleting a snapshot frees now, for every snapshot of a container.
pub struct Usage<'a> {
    family: &'a [Snapshot],
    /// Snapshot -> how many listed layers are stored as changes to it.
    layers_over: std::collections::HashMap<SnapshotName, usize>,
}

impl<'a> Usage<'a> {
    /// `family`: every snapshot of one container, held ones too.
    pub fn new(family: &'a [Snapshot]) -> Usage<'a> {
        let mut layers_over = std::collections::HashMap::new();
        for anchor in family
            .iter()
            .filter(|s| !s.meta.held)
            .filter_map(Snapshot::anchor)
        {
            *layers_over.entry(anchor).or_insert(0) += 1;
        }
        Usage {
            family,
            layers_over,
        }
    }

    /// Nothing while layers need `snapshot`'s tree (it is held for them);
    /// for the last layer over a held snapshot, that one's bytes as well.
    pub fn frees(&self, snapshot: &Snapshot) -> u64 {
        if self.layers_over.contains_key(&snapshot.name) {
            return 0;
        }
        let held_below = snapshot
            .anchor()
            .filter(|a| self.layers_over.get(a) == Some(&1))
            .and_then(|a| {
                self.family
                    .iter()
                    .find(|s| s.name == a && s.meta.held)
                    .map(|s| s.meta.used_bytes)
            });
        snapshot.meta.used_bytes + held_below.unwrap_or(0)
    }
}

/// Writes (or removes) `<dir>/comment` atomically.
pub fn write_comment(dir: &Dir, comment: Option<&str>) -> Result<()> {
    match comment {
        Some(text) => dir.write_file(COMMENT_FILE, text.as_bytes(), 0o644),
        None => {
            dir.remove_file(COMMENT_FILE)?;
            dir.sync()
        }
    }
}

/// Allocated bytes of the inodes in `tree` that have no name outside it:
/// what removing the tree would free. Walks without following symlinks.
pub fn exclusive_bytes(tree: &Dir) -> Result<u64> {
    use std::collections::HashMap;
    // inode -> (names seen in the tree, link count, allocated bytes)
    let mut inodes: HashMap<(u64, u64), (u64, u64, u64)> = HashMap::new();
    crate::walk::for_each_entry(tree, |st| {
        // A directory's link count counts its subdirectories' `..`; it has
        // one name, which is in the tree.
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let nlink = if is_dir { 1 } else { st.st_nlink };
        let slot =
            inodes
                .entry((st.st_dev, st.st_ino))
                .or_insert((0, nlink, st.st_blocks as u64 * 512));
        slot.0 += 1;
    })?;
    Ok(inodes
        .values()
        .filter(|(seen, nlink, _)| seen >= nlink)
        .map(|(_, _, bytes)| bytes)
        .sum())
}

/// Reads the metadata of the snapshot `name` from the bytes of its
/// `lxc-snap.json`: refused when it is no JSON of ours, names another
/// container, or was written by a newer format.
pub fn parse_metadata(bytes: &[u8], name: &SnapshotName) -> Result<Metadata> {
    let meta: Metadata =
        serde_json::from_slice(bytes).map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
    if meta.container != name.container().as_str() {
        return Err(Error::new(
            ErrorKind::Other,
            format!("it names container {:?}", meta.container),
        ));
    }
    if meta.format_version > FORMAT_VERSION {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "format version {} is newer than this lxc-snap understands ({FORMAT_VERSION})",
                meta.format_version
            ),
        )
        .with_hint("upgrade lxc-snap"));
    }
    Ok(meta)
}

/// Writes `lxc-snap.json` into a snapshot directory.
pub fn write_metadata(dir: &Dir, meta: &Metadata) -> Result<()> {
    let mut text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::new(ErrorKind::Other, format!("encoding metadata: {e}")))?;
    text.push('\n');
    dir.write_file(META_FILE, text.as_bytes(), 0o644)
}

/// The `ts` file's format, as LXC's own tools write it.
pub fn ts_text(created: &DateTime<FixedOffset>) -> String {
    created.format("%Y:%m:%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(container: &str) -> Metadata {
        Metadata {
            format_version: WHOLE_FORMAT_VERSION,
            tool_version: "0.1.0".into(),
            container: container.into(),
            lxcpath: "/var/lib/lxc".into(),
            created: "2026-11-23T11:01:25+01:00".into(),
            backing: Backing::Overlay,
            rootfs_key: "lxc.rootfs.path".into(),
            rootfs_prefix: "overlay".into(),
            lowers: vec!["/var/lib/lxc/base/rootfs".into()],
            files: 3,
            bytes: 10,
            used_bytes: 4096,
            pinned: false,
            lower_fingerprints: Vec::new(),
            multi_name_inodes: Some(Vec::new()),
            layer: None,
            held: false,
            other: serde_json::Map::new(),
        }
    }

    fn put(store: &Store, dir_name: &str, m: &Metadata) {
        let dir = store.dir().join(dir_name);
        fs::create_dir_all(&dir).expect("mkdir");
        write_metadata(&Dir::open_given(&dir, "opening").expect("open"), m).expect("write meta");
    }

    #[test]
    fn metadata_round_trips_as_json_with_expected_fields() {
        let m = meta("mysql");
        let text = serde_json::to_string(&m).expect("encode");
        for field in [
            "\"format_version\":1",
            "\"backing\":\"overlay\"",
            "\"created\":\"2026-11-23T11:01:25+01:00\"",
            "\"tool_version\"",
            "\"lowers\"",
            "\"files\":3",
            "\"bytes\":10",
            "\"lxcpath\"",
            "\"container\":\"mysql\"",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert_eq!(serde_json::from_str::<Metadata>(&text).expect("decode"), m);
        assert_eq!(
            m.created_time().expect("time").to_rfc3339(),
            "2026-11-23T11:01:25+01:00"
        );
    }

    #[test]
    fn metadata_keeps_fields_it_does_not_know_when_rewritten() {
        let mut value = serde_json::to_value(meta("mysql")).expect("encode");
        value["from_a_newer_version"] = serde_json::json!({"kept": [1, 2]});
        let mut m: Metadata = serde_json::from_value(value).expect("decode");
        m.used_bytes = 1;
        let again = serde_json::to_value(&m).expect("encode");
        assert_eq!(again["from_a_newer_version"]["kept"][1], 2);
        assert_eq!(again["used_bytes"], 1);
    }

    /// Found by fuzzing the metadata reader: a number of a field this
    /// version does not know changed each time the metadata was rewritten,
    /// parsed without correct rounding.
    #[test]
    fn unknown_numbers_survive_being_rewritten() {
        let bytes = include_bytes!("../fuzz/regressions/metadata/float-roundtrip.json");
        let name = SnapshotName::parse("web_3").expect("name");
        let meta = parse_metadata(bytes, &name).expect("reads");
        let text = serde_json::to_string(&meta).expect("encodes");
        assert_eq!(
            parse_metadata(text.as_bytes(), &name).expect("reads back"),
            meta
        );
    }

    #[test]
    fn exclusive_bytes_leaves_out_inodes_shared_with_another_tree() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir_all(&a).expect("mkdir");
        fs::create_dir_all(&b).expect("mkdir");
        fs::write(a.join("own"), vec![1u8; 8192]).expect("write");
        fs::write(a.join("shared"), vec![2u8; 8192]).expect("write");
        fs::hard_link(a.join("shared"), b.join("shared")).expect("link");
        fs::hard_link(a.join("own"), a.join("own-again")).expect("link inside");
        let dir_blocks = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(p).expect("stat").blocks() * 512
        };
        let a_used = exclusive_bytes(&Dir::open_given(&a, "opening").expect("open")).expect("walk");
        assert_eq!(a_used, 8192 + dir_blocks(&a));
        fs::remove_dir_all(&b).expect("rm");
        assert_eq!(
            exclusive_bytes(&Dir::open_given(&a, "opening").expect("open")).expect("walk"),
            2 * 8192 + dir_blocks(&a)
        );
    }

    #[test]
    fn ts_uses_lxcs_format() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T11:01:25+01:00").expect("time");
        assert_eq!(ts_text(&t), "2026:11:23 11:01:25");
    }

    #[test]
    fn scan_matches_names_exactly_sorts_numerically_and_ignores_foreign_entries() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = Store::new(d.path());
        for n in [10, 9, 0] {
            put(&store, &format!("my_{n}"), &meta("my"));
        }
        put(&store, "my_db_0", &meta("my_db"));
        fs::create_dir_all(d.path().join("my/snap0")).expect("lxc-snapshot tree");
        fs::create_dir_all(d.path().join("my_3")).expect("no metadata: not ours");
        let ui = Ui { quiet: true };
        let my = ContainerName::parse("my").expect("name");
        let names: Vec<String> = store
            .snapshots_of(&my, ui)
            .expect("scan")
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(names, ["my_0", "my_9", "my_10"]);
        assert_eq!(store.snapshots(ui).expect("scan").len(), 4);
        assert_eq!(
            store
                .get(&SnapshotName::parse("my_3").expect("name"))
                .expect_err("not ours")
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn metadata_naming_another_container_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = Store::new(d.path());
        put(&store, "a_0", &meta("b"));
        assert!(store
            .get(&SnapshotName::parse("a_0").expect("name"))
            .is_err());
        assert!(store
            .snapshots(Ui { quiet: true })
            .expect("scan")
            .is_empty());
    }

    #[test]
    fn numbers_continue_after_the_highest_and_are_never_reused() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = Store::new(d.path());
        let ui = Ui { quiet: true };
        let c = ContainerName::parse("c").expect("name");
        let lock = store.lock(&c, ui).expect("lock");
        let first = store.begin(&lock).expect("begin");
        assert_eq!(first.name.number(), 0);
        write_metadata(first.dir(), &meta("c")).expect("meta");
        store.commit(first, &lock).expect("commit");
        // Something else named c_7 (not ours) still counts.
        fs::create_dir(d.path().join("c_7")).expect("mkdir");
        let second = store.begin(&lock).expect("begin");
        assert_eq!(second.name.number(), 8);
        write_metadata(second.dir(), &meta("c")).expect("meta");
        store.commit(second, &lock).expect("commit");
        fs::remove_dir_all(d.path().join("c_8")).expect("delete newest");
        fs::remove_dir_all(d.path().join("c_7")).expect("delete");
        assert_eq!(store.begin(&lock).expect("begin").name.number(), 9);
    }
}
