//! Adopting the snapshots of the original lxc-snap: each `NAME_N` clone
//! becomes a snapshot in lxc-snap's own layout (metadata, fingerprints of
//! the lowers, sizes, a layer over the one before where that pays), under
//! the same name, time and comment, oldest first. Each is built beside the
//! clone and swapped in with one atomic rename, so a crash leaves the
//! clone or the snapshot, never a mix.
//!
//! Likewise `lxc-snapshot`'s snapshots of NAME (`<lxcpath>/NAME/snaps/snapN`,
//! LXC clones with `ts` and `comment`), oldest first, under the next
//! numbers; each original goes (renamed aside, unregistered, removed) only
//! after its snapshot is published, unless kept.

use super::require_root;
use super::take::ADOPTED_FROM;
use super::take::{take_as, Adoption, Increment, Taking};
use crate::dir::Below;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::{read_dependency_file, DependencyEntry, Lxcpath};
use crate::lxc::Container;
use crate::names::{ContainerName, SnapshotName};
use crate::store::legacy::clone_metadata;
use crate::store::read_comment_file;
use crate::store::Store;

/// One snapshot adopted (or, in a dry run, to adopt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedSnapshot {
    pub name: SnapshotName,
    /// Where its tree is in the clone, relative to its directory.
    pub tree: std::path::PathBuf,
    /// After adoption: the snapshot it is stored as changes to, if any.
    pub layer_over: Option<String>,
}

/// Adopts every snapshot of `container` the original lxc-snap made; with
/// `dry_run`, only says which.
pub fn adopt(
    store: &Store,
    container: &ContainerName,
    dry_run: bool,
) -> Result<Vec<AdoptedSnapshot>> {
    require_root("adopting snapshots")?;
    let lock = store.lock(container)?;
    let legacy: Vec<_> = store
        .snapshots_of(container)?
        .into_iter()
        .filter(|s| s.is_legacy())
        .collect();
    if legacy.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{container} has no snapshots of the original lxc-snap in {}",
                store.dir().display()
            ),
        ));
    }
    if dry_run {
        return Ok(legacy
            .iter()
            .map(|s| AdoptedSnapshot {
                name: s.name.clone(),
                tree: s.tree_rel(),
                layer_over: None,
            })
            .collect());
    }
    // The clones are containers in the snapdir.
    let snapdir = Lxcpath::open(store.dir())?;
    let mut adopted = Vec::new();
    for old in &legacy {
        let as_container = ContainerName::parse(&old.name.to_string())?;
        let clone = Container::open(&snapdir, &as_container)?;
        let comment = store.comment(old)?;
        let adoption = Adoption {
            replace: Some(old),
            created: old.meta.created_time()?,
            lxcpath: old.meta.lxcpath.clone(),
            from: None,
        };
        let new = take_as(
            store,
            &clone,
            &lock,
            comment.as_deref(),
            Increment::QuickCheck,
            Some(&adoption),
            &Taking::default(),
        )
        .map_err(|e| {
            super::when_cancelled(
                e.prefixed(&format!("adopting {}", old.name)),
                &format!("{} stays as the original lxc-snap made it", old.name),
            )
        })?;
        adopted.push(AdoptedSnapshot {
            name: new.name.clone(),
            tree: old.tree_rel(),
            layer_over: new.meta.layer.as_ref().map(|l| l.anchor.clone()),
        });
    }
    Ok(adopted)
}

/// Names aside which an adopted `snapN` waits to be removed; a run that
/// died leaves them for the next to remove.
const GONE_PREFIX: &str = ".lxc-snap.adopted.";

/// One `lxc-snapshot` snapshot adopted (or, in a dry run, to adopt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedLxcSnapshot {
    /// `snapN`.
    pub original: String,
    /// The new snapshot; `None` in a dry run.
    pub name: Option<SnapshotName>,
    pub layer_over: Option<String>,
    /// Whether the original is still there.
    pub kept: bool,
}

/// Adopts `lxc-snapshot`'s snapshots of `container` (oldest first, each
/// once: one adopted before, with `keep`, is passed over); without
/// `keep`, removes each original once its snapshot is published.
pub fn adopt_lxc_snapshots(
    store: &Store,
    container: &ContainerName,
    keep: bool,
    dry_run: bool,
) -> Result<Vec<AdoptedLxcSnapshot>> {
    require_root("adopting snapshots")?;
    let lxcpath = store.lxcpath()?;
    let snaps_rel = std::path::Path::new(container.as_str()).join("snaps");
    let snaps = match lxcpath.dir().open_below(&snaps_rel, Below::All) {
        Ok(dir) => dir,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{container} has no lxc-snapshot snapshots ({} is not there)",
                    lxcpath.path().join(&snaps_rel).display()
                ),
            ))
        }
        Err(e) => return Err(e),
    };
    // A dry run neither creates the snapdir nor waits for the lock.
    let lock = if dry_run {
        None
    } else {
        store.create_root()?;
        Some(store.lock(container)?)
    };
    if lock.is_some() {
        for leftover in snaps.names()? {
            if leftover.to_string_lossy().starts_with(GONE_PREFIX) {
                snaps.remove_tree(&leftover)?;
            }
        }
    }
    let mut originals: Vec<(u64, String)> = snaps
        .names()?
        .into_iter()
        .filter_map(|n| {
            let n = n.to_str()?.to_string();
            let number = n.strip_prefix("snap")?.parse().ok()?;
            Some((number, n))
        })
        .collect();
    originals.sort();
    let existing = match store.snapshots_of(container) {
        Ok(found) => found,
        Err(e) if dry_run && e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let done: Vec<String> = existing
        .iter()
        .filter_map(|s| s.meta.other.get(ADOPTED_FROM)?.as_str().map(str::to_string))
        .collect();
    let snaps_lxcpath = Lxcpath::open(snaps.path())?;
    let mut adopted = Vec::new();
    for (_, original) in originals {
        let path = snaps.join(&original);
        if done.contains(&path.to_string_lossy().into_owned()) {
            continue;
        }
        let Some(lock) = &lock else {
            adopted.push(AdoptedLxcSnapshot {
                original,
                name: None,
                layer_over: None,
                kept: true,
            });
            continue;
        };
        let dir = snaps.open_dir(&original)?;
        let meta =
            clone_metadata(&dir, container, lxcpath.path().to_path_buf())?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("{}: no LXC config", path.display()),
                )
            })?;
        let comment = read_comment_file(&dir)?;
        let clone = Container::open(&snaps_lxcpath, &ContainerName::parse(&original)?)?;
        let adoption = Adoption {
            replace: None,
            created: meta.created_time()?,
            lxcpath: lxcpath.path().to_path_buf(),
            from: Some(path.clone()),
        };
        let new = take_as(
            store,
            &clone,
            lock,
            comment.as_deref(),
            Increment::QuickCheck,
            Some(&adoption),
            &Taking::default(),
        )
        .map_err(|e| {
            super::when_cancelled(
                e.prefixed(&format!("adopting {}", path.display())),
                &format!("{} stays as lxc-snapshot made it", path.display()),
            )
        })?;
        if !keep {
            remove_original(store, &snaps, &original)?;
        }
        adopted.push(AdoptedLxcSnapshot {
            original,
            name: Some(new.name.clone()),
            layer_over: new.meta.layer.as_ref().map(|l| l.anchor.clone()),
            kept: keep,
        });
    }
    Ok(adopted)
}

/// Removes an adopted `snapN`: renamed aside first (so `lxc-snapshot`
/// never sees half of it), taken out of its bases' `lxc_snapshots`, then
/// removed.
fn remove_original(store: &Store, snaps: &crate::dir::Dir, original: &str) -> Result<()> {
    let gone = format!("{GONE_PREFIX}{original}.{}", std::process::id());
    let bases = read_dependency_file(&snaps.open_dir(original)?, "lxc_rdepends")?;
    snaps.rename_new(original, snaps, &gone)?;
    let me = DependencyEntry {
        lxcpath: snaps.path().to_path_buf(),
        name: original.to_string(),
    };
    for base in &bases {
        store.unregister_entry(base, &me)?;
    }
    snaps.remove_tree(&gone)
}
