//! The snapshot store: everything lxc-snap knows about snapshots and the
//! containers around them, below the command line and any other front end.
//!
//! - [`layout`] - where things are in the snapdir, names of files, comments.
//! - [`metadata`] - `lxc-snap.json`.
//! - [`lock`] - one lock per container name.
//! - [`family`] - a container's snapshots as a family: numbering, leftovers
//!   of interrupted runs, anchors and layers, held snapshots, dependents
//!   (`lxc_snapshots` / `lxc_rdepends`), what may be deleted.
//! - [`sizes`] - what each snapshot holds alone, kept up to date.
//! - [`lowers`] - which lower layers lxc-snap accepts, held open.
//!
//! A [`Store`] is the handle every operation ([`crate::ops`]) works
//! through: the snapdir and lxcpath (opened and, as root, checked on first
//! use, then used by descriptor), the observer that hears what happens and
//! the flag that cancels.

pub mod family;
pub mod health;
pub mod layout;
pub mod legacy;
pub mod lock;
pub mod lowers;
pub mod metadata;
pub mod scratch;
pub mod sizes;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::{Arc, OnceLock};

pub use family::NewSnapshot;
pub use health::{Health, State as SnapshotState};
pub use layout::*;
pub use lock::{Holder, LockWait, NameLock};
pub use metadata::*;
pub use sizes::{exclusive_bytes, Usage};

use crate::dir::{Below, Dir};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::Lxcpath;
use crate::names::{ContainerName, SnapshotName};
use crate::notice::{Notice, Observer, Quiet};
use crate::progress::Cancel;

/// LXC's compiled-in default, used when `lxc-config` cannot tell.
const DEFAULT_LXCPATH: &str = "/var/lib/lxc";

/// The snapdir when neither `--snapdir` nor `LXC_SNAP_DIR` names one.
pub const DEFAULT_SNAPDIR: &str = "/var/lib/lxcsnaps";

/// Where a store is and what it may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub snapdir: PathBuf,
    /// `None`: ask LXC (`lxc-config lxc.lxcpath`).
    pub lxcpath: Option<PathBuf>,
    /// Lower layers the admin allows beyond containers' rootfs directories
    /// and snapshots' trees (`--allow-lower`).
    pub allow_lowers: Vec<PathBuf>,
    /// How long to wait for a lock another run holds.
    pub lock_wait: LockWait,
    /// The time it is, when not the clock's: for tests of what depends on
    /// it (expiry, schedules), from `LXC_SNAP_NOW`.
    pub now: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// A complete snapshot in the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: SnapshotName,
    pub dir: PathBuf,
    pub meta: Metadata,
}

/// A private scratch directory of one run ([`Store::work_dir`]).
pub struct WorkDir {
    parent: Dir,
    name: String,
    dir: Dir,
}

impl WorkDir {
    pub fn dir(&self) -> &Dir {
        &self.dir
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = self.parent.remove_tree(&self.name);
    }
}

impl Snapshot {
    /// The captured tree (for a layer, only the layer).
    pub fn tree(&self) -> PathBuf {
        self.dir.join(self.tree_rel())
    }

    /// Where the captured tree is below the snapshot's directory.
    pub fn tree_rel(&self) -> PathBuf {
        match &self.meta.legacy {
            Some(rel) => rel.clone(),
            None => tree_rel(self.meta.backing).to_path_buf(),
        }
    }

    /// Whether the original lxc-snap made it (see [`legacy`]).
    pub fn is_legacy(&self) -> bool {
        self.meta.legacy.is_some()
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

/// An expiry as snapshots record it: RFC 3339 in UTC, to the second.
pub fn expiry_text(t: chrono::DateTime<chrono::FixedOffset>) -> String {
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether a snapshot whose metadata says `expires_at` has expired at `now`
/// (an expiry that cannot be read never has: it is reported, not acted on).
pub fn expired(meta: &Metadata, now: &chrono::DateTime<chrono::FixedOffset>) -> bool {
    meta.expires_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t <= *now)
}

/// The snapdir and lxcpath, with the observer and cancel flag of the
/// operations run on them.
pub struct Store {
    given: PathBuf,
    root: OnceLock<Dir>,
    lxcpath_given: Option<PathBuf>,
    lxcpath: OnceLock<Lxcpath>,
    allow_lowers: Vec<PathBuf>,
    lock_wait: LockWait,
    now: Option<chrono::DateTime<chrono::FixedOffset>>,
    lowers_seen: health::LowerCache,
    observer: Arc<dyn Observer>,
    cancel: Cancel,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("snapdir", &self.dir())
            .finish()
    }
}

impl Store {
    /// A store over `snapdir` that reports nothing and is never cancelled;
    /// the lxcpath is LXC's.
    pub fn new(snapdir: impl Into<PathBuf>) -> Store {
        Store::open(
            Settings {
                snapdir: snapdir.into(),
                ..Settings::default()
            },
            Arc::new(Quiet),
            Cancel::new(),
        )
    }

    /// A store as `settings` say; what operations on it report goes to
    /// `observer`, and they stop once `cancel` is set. Nothing is opened
    /// before it is needed.
    pub fn open(settings: Settings, observer: Arc<dyn Observer>, cancel: Cancel) -> Store {
        Store {
            given: settings.snapdir,
            root: OnceLock::new(),
            lxcpath_given: settings.lxcpath,
            lxcpath: OnceLock::new(),
            allow_lowers: settings.allow_lowers,
            lock_wait: settings.lock_wait,
            now: settings.now,
            lowers_seen: Default::default(),
            observer,
            cancel,
        }
    }

    pub fn observer(&self) -> &dyn Observer {
        &*self.observer
    }

    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// How long a run waits for a lock another run holds.
    pub fn lock_wait(&self) -> LockWait {
        self.lock_wait
    }

    /// The snapdir's path: as resolved once it has been opened.
    pub fn dir(&self) -> &Path {
        self.root.get().map_or(&self.given, Dir::path)
    }

    /// The snapdir; an error when it does not exist.
    pub fn root(&self) -> Result<&Dir> {
        match self.existing_root()? {
            Some(dir) => Ok(dir),
            None => Err(self.missing()),
        }
    }

    /// The snapdir if it exists. A missing default snapdir is an empty
    /// one (nothing was snapshotted yet); any other is an error, so that a
    /// mistyped `--snapdir` never reads as "no snapshots".
    pub(super) fn existing_root(&self) -> Result<Option<&Dir>> {
        if let Some(dir) = self.root.get() {
            return Ok(Some(dir));
        }
        match Dir::open_trusted(&self.given, None, "snapdir") {
            Ok(dir) => Ok(Some(self.root.get_or_init(|| dir))),
            Err(e) if e.kind() == ErrorKind::NotFound && self.is_default() => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(self.missing()),
            Err(e) => Err(e),
        }
    }

    fn is_default(&self) -> bool {
        self.given == Path::new(DEFAULT_SNAPDIR)
    }

    fn missing(&self) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!("snapdir {} does not exist", self.given.display()),
        )
        .with_hint(format!(
            "the first snapshot creates it; --snapdir or LXC_SNAP_DIR names another \
             (the default is {DEFAULT_SNAPDIR})"
        ))
    }

    /// The snapdir, created (0755, root's) when it is missing and is the
    /// default or its parent exists: a snapdir further from what exists is
    /// more likely a typo than a wish. Creating one is told.
    pub fn create_root(&self) -> Result<&Dir> {
        match self.existing_root() {
            Ok(Some(dir)) => return Ok(dir),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let parent = self.given.parent().filter(|p| !p.as_os_str().is_empty());
        if let (false, Some(parent)) = (self.is_default(), parent) {
            if let Err(e) = Dir::open_trusted(parent, None, "the snapdir's parent") {
                if e.kind() != ErrorKind::NotFound {
                    return Err(e);
                }
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "snapdir {} does not exist, nor does {}",
                        self.given.display(),
                        parent.display()
                    ),
                )
                .with_hint(format!(
                    "lxc-snap creates a snapdir only in a directory that exists: \
                     check the path, or mkdir -p {} first",
                    self.given.display()
                )));
            }
        }
        let dir = Dir::open_trusted(&self.given, Some(0o755), "snapdir")?;
        self.observer.notice(Notice::CreatedSnapdir {
            path: dir.path().to_path_buf(),
        });
        Ok(self.root.get_or_init(|| dir))
    }

    /// `-P`, else what `lxc-config lxc.lxcpath` prints, else /var/lib/lxc.
    /// The lower layers allowed beyond containers' rootfs directories and
    /// snapshots' trees (`--allow-lower`).
    pub fn allowed_lowers(&self) -> &[PathBuf] {
        &self.allow_lowers
    }

    pub fn lxcpath_path(&self) -> PathBuf {
        if let Some(p) = &self.lxcpath_given {
            return p.clone();
        }
        Process::new("lxc-config")
            .arg("lxc.lxcpath")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| s.starts_with('/'))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LXCPATH))
    }

    /// The lxcpath, opened (and, as root, checked) on first use.
    pub fn lxcpath(&self) -> Result<&Lxcpath> {
        if let Some(l) = self.lxcpath.get() {
            return Ok(l);
        }
        let opened = Lxcpath::open(&self.lxcpath_path())?;
        Ok(self.lxcpath.get_or_init(|| opened))
    }

    /// Whether `name` is a container in the lxcpath (listing needs no
    /// root, so the lxcpath is only looked at).
    pub fn container_exists(&self, name: &ContainerName) -> bool {
        fs::symlink_metadata(crate::lxc::Container::dir_of(&self.lxcpath_path(), name)).is_ok()
    }

    /// Where dependency files may be written: the lxcpath and the snapdir.
    pub(crate) fn places(&self) -> Result<[&Dir; 2]> {
        Ok([self.lxcpath()?.dir(), self.root()?])
    }

    /// `<snapdir>/.lxc-snap`, created if missing, root's alone.
    fn state_dir(&self) -> Result<Dir> {
        let root = self.root()?;
        match root.mkdir(layout::STATE_DIR, 0o755) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Exists => {}
            Err(e) => return Err(e),
        }
        root.open_below(Path::new(layout::STATE_DIR), Below::All)
    }

    /// `<snapdir>/.lxc-snap/exec`, created if missing: the lxcpath of the
    /// throwaway copies `exec` runs commands in, out of sight of the
    /// containers' own.
    pub fn exec_lxcpath(&self) -> Result<crate::lxc::container::Lxcpath> {
        let state = self.state_dir()?;
        match state.mkdir("exec", 0o700) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Exists => {}
            Err(e) => return Err(e),
        }
        crate::lxc::container::Lxcpath::open(&state.path().join("exec"))
    }

    /// A new private directory under `<snapdir>/.lxc-snap/work` for
    /// `what` (a word), removed when dropped. Those of runs that died are
    /// removed first: they are named for their process.
    pub fn work_dir(&self, what: &str) -> Result<WorkDir> {
        let state = self.state_dir()?;
        match state.mkdir("work", 0o700) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Exists => {}
            Err(e) => return Err(e),
        }
        let parent = state.open_dir("work")?;
        if let Ok(entries) = fs::read_dir(parent.path()) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.split('.').nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                let dead = pid.is_some_and(|p| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                        == Err(nix::errno::Errno::ESRCH)
                });
                if dead {
                    parent.remove_tree(&name)?;
                }
            }
        }
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{what}.{}.{n}", std::process::id());
        let dir = parent.mkdir(&name, 0o700)?;
        Ok(WorkDir { parent, name, dir })
    }

    /// The directory of a snapshot in the store.
    pub fn snapshot_dir(&self, snapshot: &Snapshot) -> Result<Dir> {
        self.root()?.open_dir(snapshot.name.to_string())
    }

    /// The captured tree of a snapshot (for a layer, only the layer).
    pub fn tree_dir(&self, snapshot: &Snapshot) -> Result<Dir> {
        let rel = Path::new(&snapshot.name.to_string()).join(snapshot.tree_rel());
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
        layout::read_comment_file(&self.snapshot_dir(snapshot)?)
    }

    /// Every snapshot in the store, sorted by container and number. Entries
    /// that look like ours but whose metadata cannot be read are skipped
    /// (and the observer told).
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        self.scan(None, false)
    }

    /// The snapshots of `container`, by number.
    pub fn snapshots_of(&self, container: &ContainerName) -> Result<Vec<Snapshot>> {
        self.scan(Some(container), false)
    }

    /// [`Store::snapshots_of`] with the held ones: the whole family.
    pub fn snapshots_of_with_held(&self, container: &ContainerName) -> Result<Vec<Snapshot>> {
        self.scan(Some(container), true)
    }

    fn scan(&self, only: Option<&ContainerName>, held: bool) -> Result<Vec<Snapshot>> {
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
                Err(e) => self.observer.notice(Notice::SkippedEntry {
                    path: root.join(&entry),
                    error: e.to_string(),
                }),
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
                match root.open_dir(name.to_string()) {
                    Ok(dir) => dir,
                    // Deleted by another run since: as if never there.
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            _ => return Ok(None),
        };
        let dir = snapshot_dir.path().to_path_buf();
        let path = dir.join(META_FILE);
        let bytes = match snapshot_dir.read_file(META_FILE, MAX_META, "metadata") {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let meta = self
                    .load_legacy(name, &snapshot_dir)
                    .map_err(|e| e.prefixed(&format!("{} (original lxc-snap)", dir.display())))?;
                return Ok(meta.map(|meta| Snapshot {
                    name: name.clone(),
                    dir,
                    meta,
                }));
            }
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
    /// The time it is, as snapshots record it (local, with its offset).
    pub fn now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        self.now
            .unwrap_or_else(|| chrono::Local::now().fixed_offset())
    }

    /// Sets when `snapshot` expires, or with `None` that it never does.
    pub fn set_expiry(
        &self,
        snapshot: &Snapshot,
        at: Option<chrono::DateTime<chrono::FixedOffset>>,
    ) -> Result<()> {
        if snapshot.is_legacy() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{} is a snapshot of the original lxc-snap, which has no expiry",
                    snapshot.name
                ),
            )
            .with_hint(format!(
                "adopt it first: lxc-snap adopt {}",
                snapshot.name.container()
            )));
        }
        let mut meta = snapshot.meta.clone();
        meta.expires_at = at.map(expiry_text);
        write_metadata(&self.snapshot_dir(snapshot)?, &meta)
    }

    pub fn set_pinned(&self, snapshot: &Snapshot, pinned: bool) -> Result<()> {
        if snapshot.is_legacy() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{} is a snapshot of the original lxc-snap, which has no pins",
                    snapshot.name
                ),
            ));
        }
        let mut meta = snapshot.meta.clone();
        meta.pinned = pinned;
        write_metadata(&self.snapshot_dir(snapshot)?, &meta)
    }

    /// Replaces (or with `None` removes) the comment of `snapshot`.
    pub fn set_comment(&self, snapshot: &Snapshot, comment: Option<&str>) -> Result<()> {
        write_comment(&self.snapshot_dir(snapshot)?, comment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use std::fs;

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
            hidden_bytes: None,
            refer_bytes: Some(12288),
            pinned: false,
            expires_at: None,
            auto: false,
            lower_fingerprints: Vec::new(),
            multi_name_inodes: Some(Vec::new()),
            layer: None,
            held: false,
            legacy: None,
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
        let bytes = include_bytes!("../../fuzz/regressions/metadata/float-roundtrip.json");
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
        let my = ContainerName::parse("my").expect("name");
        let names: Vec<String> = store
            .snapshots_of(&my)
            .expect("scan")
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(names, ["my_0", "my_9", "my_10"]);
        assert_eq!(store.snapshots().expect("scan").len(), 4);
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
        assert!(store.snapshots().expect("scan").is_empty());
    }

    #[test]
    fn numbers_continue_after_the_highest_and_are_never_reused() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = Store::new(d.path());
        let c = ContainerName::parse("c").expect("name");
        let lock = store.lock(&c).expect("lock");
        let first = store.begin(&lock).expect("begin");
        assert_eq!(first.name.number(), 0);
        write_metadata(first.dir(), &meta("c")).expect("meta");
        store.commit(first, &lock, 0).expect("commit");
        // Something else named c_7 (not ours) still counts.
        fs::create_dir(d.path().join("c_7")).expect("mkdir");
        let second = store.begin(&lock).expect("begin");
        assert_eq!(second.name.number(), 8);
        write_metadata(second.dir(), &meta("c")).expect("meta");
        store.commit(second, &lock, 0).expect("commit");
        fs::remove_dir_all(d.path().join("c_8")).expect("delete newest");
        fs::remove_dir_all(d.path().join("c_7")).expect("delete");
        assert_eq!(store.begin(&lock).expect("begin").name.number(), 9);
    }
}
