//! Files back from a snapshot without mounting it: a directory listed as
//! the snapshot captured it (`ls`), a file's bytes (`cat`), a file or a
//! tree copied out (`cp`).
//!
//! All of them read the snapshot's view (its tree, its anchor, its base's
//! lowers; see [`crate::copy::view`]) through descriptors, one name at a
//! time from the root: a path with `..` is refused, a symlink on the way is
//! an error naming it and its target (never followed), and fifos and
//! devices are never opened. Looking one path up reads only the
//! directories on that path, whatever the size of the tree.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use super::require_root;
pub use crate::copy::view::EntryType;
use crate::copy::view::{self, Entry, Lookup, Tree, View};
use crate::copy::{self, CopyOptions};
use crate::dir::Dir;
use crate::durable::Staging;
use crate::error::{Error, ErrorKind, Result};
use crate::names::SnapshotName;
use crate::printable::escape_bytes;
use crate::store::Store;

/// One entry as `ls` shows it (and `ls --json` prints it).
///
/// As JSON: `name`, `path` (exact when UTF-8, else escaped, with the exact
/// bytes in `name_bytes` and `path_bytes`), `type`, `mode` (the permission
/// bits as a number), `uid`, `gid`, `size`, `nlink`, `mtime` (RFC 3339 in
/// UTC, to the nanosecond), `target` (symlinks), `device` (`[major,
/// minor]`, devices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub name: Vec<u8>,
    pub path: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    pub target: Option<Vec<u8>>,
    pub device: Option<(u64, u64)>,
}

/// What `ls` found at a path: a directory's entries, or the one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub snapshot: String,
    /// The path looked up, as the snapshot has it.
    #[serde(serialize_with = "text")]
    pub path: Vec<u8>,
    /// Whether `path` is a directory (and `entries` its entries).
    pub directory: bool,
    pub entries: Vec<FileRecord>,
}

/// A regular file of a snapshot, open for reading.
#[derive(Debug)]
pub struct CapturedFile {
    pub file: File,
    pub size: u64,
}

/// What `cp` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub snapshot: SnapshotName,
    pub path: Vec<u8>,
    /// Where the copy is now.
    pub dest: PathBuf,
    /// Entries created (the top one included) and bytes of regular files.
    pub entries: u64,
    pub bytes: u64,
}

/// Lists `path` of `name`: a directory's entries, sorted by name, or the
/// entry itself when it is not a directory.
pub fn ls(store: &Store, name: &SnapshotName, path: &[u8]) -> Result<Listing> {
    require_root("reading a snapshot")?;
    let tree = open_tree(store, name)?;
    let entry = find(&tree, name, path)?;
    let directory = entry.kind == EntryType::Directory;
    let entries = if directory {
        entry
            .children()?
            .iter()
            .map(record)
            .collect::<Result<_>>()?
    } else {
        vec![record(&entry)?]
    };
    Ok(Listing {
        snapshot: name.to_string(),
        path: entry.path,
        directory,
        entries,
    })
}

/// Opens the regular file `path` of `name` for reading.
pub fn cat(store: &Store, name: &SnapshotName, path: &[u8]) -> Result<CapturedFile> {
    require_root("reading a snapshot")?;
    let tree = open_tree(store, name)?;
    let entry = find(&tree, name, path)?;
    let shown = escape_bytes(&entry.path, true);
    match entry.kind {
        EntryType::File => {}
        EntryType::Directory => {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("cannot print {shown} of {name}: it is a directory"),
            )
            .with_hint(format!("list it: lxc-snap ls {name} {shown}")))
        }
        EntryType::Symlink => {
            let target = escape_bytes(entry.target()?.as_bytes(), true);
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "cannot print {shown} of {name}: it is a symlink to {target}, which lxc-snap does not follow"
                ),
            )
            .with_hint(format!("name the file it points to: lxc-snap cat {name} PATH")));
        }
        other => {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "cannot print {shown} of {name}: it is a {}; only regular files are read",
                    other.name()
                ),
            ))
        }
    }
    let file = entry.open_file()?;
    Ok(CapturedFile {
        file,
        size: entry.stat().st_size as u64,
    })
}

/// Copies `path` of `name` to `dest` with full fidelity: into it under the
/// entry's own name when `dest` is a directory, else as `dest`, which must
/// not exist. The copy is built under a temporary name beside its final
/// one and renamed into place, so it appears whole or not at all.
pub fn cp(store: &Store, name: &SnapshotName, path: &[u8], dest: &Path) -> Result<Copied> {
    require_root("copying out of a snapshot")?;
    let tree = open_tree(store, name)?;
    let entry = find(&tree, name, path)?;
    copy_found(store, name, &entry, dest)
}

/// Copies `entry`, found in a view of `name`, to `dest` as `cp` does.
pub(super) fn copy_found(
    store: &Store,
    name: &SnapshotName,
    entry: &Entry,
    dest: &Path,
) -> Result<Copied> {
    let own_name: OsString = if entry.is_root() {
        OsString::from(name.to_string())
    } else {
        entry.name().to_os_string()
    };
    let (parent, final_name) = destination(dest, &own_name)?;
    if parent.stat_at(&final_name)?.is_some() {
        return Err(exists(&parent.join(&final_name)));
    }
    let staging = Staging::create(&parent, &final_name.to_string_lossy(), 0o700)?;
    let stats = copy::copy_out(
        entry,
        &parent,
        staging.name(),
        &CopyOptions {
            cancel: Some(store.cancel()),
            ..CopyOptions::default()
        },
    )
    .map_err(|e| super::when_cancelled(e, "nothing was copied"))?;
    staging.sync()?;
    let published = if entry.is_root() {
        staging.commit_as(&final_name)
    } else {
        staging
            .dir()
            .rename_new(entry.name(), &parent, &final_name)
            .and_then(|()| staging.discard())
    };
    published.map_err(|e| {
        if e.kind() == ErrorKind::Exists {
            exists(&parent.join(&final_name))
        } else {
            e
        }
    })?;
    Ok(Copied {
        snapshot: name.clone(),
        path: entry.path.clone(),
        dest: parent.join(&final_name),
        entries: stats.entries + u64::from(entry.is_root()),
        bytes: stats.bytes,
    })
}

fn exists(path: &Path) -> Error {
    Error::new(
        ErrorKind::Exists,
        format!("cannot copy to {}: it already exists", path.display()),
    )
    .with_hint("lxc-snap cp never replaces anything: remove it or name another destination")
}

/// The directory a copy goes into and its name there.
fn destination(dest: &Path, own_name: &OsStr) -> Result<(Dir, OsString)> {
    let st = nix::sys::stat::lstat(dest);
    if let Ok(st) = st {
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Ok((
                Dir::open_given(dest, "copying into")?,
                own_name.to_os_string(),
            ));
        }
        return Err(exists(dest));
    }
    let (Some(parent), Some(leaf)) = (dest.parent(), dest.file_name()) else {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "cannot copy to {}: not a name for a new entry",
                dest.display()
            ),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    Ok((
        Dir::open_given(parent, "copying into")?,
        leaf.to_os_string(),
    ))
}

/// The snapshot's view, opened.
pub(super) fn open_tree(store: &Store, name: &SnapshotName) -> Result<Tree> {
    let snapshot = store.get(name)?;
    Tree::open(&View::of_dirs(store.snapshot_layers(&snapshot)?))
}

/// Looks `path` up in `name`'s view; a path that leads nowhere is an error
/// that says why.
pub(super) fn find(tree: &Tree, name: &SnapshotName, path: &[u8]) -> Result<Entry> {
    let names = parse(path)?;
    match tree.find(&names)? {
        // `dir/` names a directory: anything else there leads nowhere.
        Lookup::Found(entry)
            if path.ends_with(b"/") && !entry.is_root() && entry.kind != EntryType::Directory =>
        {
            Err(through(name, &entry)?)
        }
        Lookup::Found(entry) => Ok(entry),
        Lookup::Missing => Err(Error::new(
            ErrorKind::NotFound,
            format!("{name} has no {}", escape_bytes(&absolute(&names), true)),
        )
        .with_hint(format!("see what it has: lxc-snap ls {name} DIR"))),
        Lookup::Through(on_way) => Err(through(name, &on_way)?),
    }
}

/// Splits a path given on the command line, refusing `..`.
pub(super) fn parse(path: &[u8]) -> Result<Vec<&OsStr>> {
    view::parse_path(path).ok_or_else(|| {
        Error::new(
            ErrorKind::Usage,
            format!(
                "{}: a path in a snapshot may not contain `..`",
                escape_bytes(path, true)
            ),
        )
        .with_hint("name the path from the container's root, as in /etc/hosts")
    })
}

/// `/` and the names, as one path.
pub(super) fn absolute(names: &[&OsStr]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        out.push(b'/');
        out.extend_from_slice(n.as_bytes());
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The error for a path that goes on below something not a directory.
pub(super) fn through(name: &SnapshotName, on_way: &Entry) -> Result<Error> {
    let shown = escape_bytes(&on_way.path, true);
    Ok(if on_way.kind == EntryType::Symlink {
        let target = escape_bytes(on_way.target()?.as_bytes(), true);
        Error::new(
            ErrorKind::NotFound,
            format!("{shown} in {name} is a symlink to {target}, which lxc-snap does not follow"),
        )
        .with_hint("name the path with the symlink's target in its place")
    } else {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "{shown} in {name} is a {}, not a directory",
                on_way.kind.name()
            ),
        )
    })
}

fn record(entry: &Entry) -> Result<FileRecord> {
    let st = entry.stat();
    let device = matches!(entry.kind, EntryType::CharDevice | EntryType::BlockDevice).then(|| {
        (
            libc::major(st.st_rdev) as u64,
            libc::minor(st.st_rdev) as u64,
        )
    });
    Ok(FileRecord {
        name: entry.name().as_bytes().to_vec(),
        path: entry.path.clone(),
        kind: entry.kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        nlink: st.st_nlink,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        target: match entry.kind {
            EntryType::Symlink => Some(entry.target()?.as_bytes().to_vec()),
            _ => None,
        },
        device,
    })
}

/// Bytes as JSON text: exact when UTF-8, escaped otherwise.
fn text<S: Serializer>(bytes: &[u8], serializer: S) -> std::result::Result<S::Ok, S::Error> {
    match std::str::from_utf8(bytes) {
        Ok(s) => serializer.serialize_str(s),
        Err(_) => serializer.serialize_str(&escape_bytes(bytes, true)),
    }
}

impl Serialize for FileRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            name: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            name_bytes: Option<&'a [u8]>,
            path: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            path_bytes: Option<&'a [u8]>,
            #[serde(rename = "type")]
            kind: EntryType,
            mode: u32,
            uid: u32,
            gid: u32,
            size: u64,
            nlink: u64,
            mtime: String,
            target: Option<String>,
            device: Option<(u64, u64)>,
        }
        fn exact(b: &[u8]) -> (String, Option<&[u8]>) {
            match std::str::from_utf8(b) {
                Ok(s) => (s.to_string(), None),
                Err(_) => (escape_bytes(b, true), Some(b)),
            }
        }
        let (name, name_bytes) = exact(&self.name);
        let (path, path_bytes) = exact(&self.path);
        Json {
            name,
            name_bytes,
            path,
            path_bytes,
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            nlink: self.nlink,
            mtime: mtime_text(self.mtime),
            target: self.target.as_deref().map(|t| exact(t).0),
            device: self.device,
        }
        .serialize(serializer)
    }
}

/// An mtime as RFC 3339 in UTC, to the nanosecond.
pub fn mtime_text((secs, nsec): (i64, i64)) -> String {
    chrono::DateTime::from_timestamp(secs, nsec.clamp(0, 999_999_999) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| format!("@{secs}.{nsec:09}"))
}
