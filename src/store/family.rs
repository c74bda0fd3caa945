//! A container's snapshots as a family, and the rules that bind them:
//!
//! - **Numbering**: `NAME_N`, one more than the highest number that exists
//!   in any form or was ever issued, so a deleted number is never reused.
//! - **Leftovers**: what a run that died left half-built (a staging
//!   directory, the registrations it made) is removed by the next run
//!   under the same lock.
//! - **Anchors and layers**: a snapshot may be stored as the changes since
//!   an older whole one (its anchor) while they stay small.
//! - **Holds**: a deleted anchor keeps its tree, unlisted, until the last
//!   layer over it goes; only what some layer over it shows stays (the
//!   rest is removed as it is deleted, and again as layers go).
//! - **Dependents**: every snapshot is registered with the containers it
//!   stands on (`lxc_rdepends` in it, `lxc_snapshots` in them), so that
//!   `lxc-destroy` and `delete` refuse to pull a base from under it.

use std::path::{Path, PathBuf};

use super::sizes::{beside_tree_bytes, DiskChange, BESIDE_TREE};
use super::{write_metadata, NameLock, Snapshot, Store, FORMAT_VERSION};
use crate::dir::Dir;
use crate::durable::{self, Staging};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::{
    ensure_stopped, lists_dependent, read_dependency_file, update_dependents, write_rdepends,
    DependencyEntry,
};
use crate::lxc::LxcConfig;
use crate::names::{ContainerName, SnapshotName};
use crate::notice::{Leftover, Notice};

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

/// Entries added to base containers' `lxc_snapshots`, taken back on drop
/// unless kept, so that a failed run leaves the bases as they were.
pub struct Registrations<'s> {
    store: &'s Store,
    done: Vec<(DependencyEntry, DependencyEntry)>,
    keep: bool,
}

impl Registrations<'_> {
    /// The registrations are for good.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Registrations<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let Ok(places) = self.store.places() else {
            return;
        };
        for (base, dependent) in &self.done {
            // Best effort: the failure that got us here is what gets reported.
            let _ = update_dependents(&places, base, dependent, false);
        }
    }
}

/// The snapshots in `family` stored as changes to `name`.
pub fn layers_over(family: &[Snapshot], name: &SnapshotName) -> Vec<String> {
    family
        .iter()
        .filter(|s| !s.meta.held && s.anchor().as_ref() == Some(name))
        .map(|s| s.name.to_string())
        .collect()
}

impl Store {
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

    /// Starts building a snapshot that will replace `name` (a snapshot of
    /// the original lxc-snap, of the locked container) in place.
    pub fn begin_as(&self, lock: &NameLock, name: &SnapshotName) -> Result<NewSnapshot> {
        debug_assert_eq!(name.container(), lock.name());
        let staging = Staging::create(self.root()?, &name.to_string(), 0o755)?;
        Ok(NewSnapshot {
            name: name.clone(),
            staging,
        })
    }

    /// Swaps a finished snapshot from [`Store::begin_as`] with the one it
    /// replaces, in one atomic rename, then removes that one: a crash
    /// leaves one or the other in place, and the other as a leftover the
    /// next run removes.
    pub fn commit_replacing(
        &self,
        new: NewSnapshot,
        lock: &NameLock,
        tree_created: u64,
    ) -> Result<Snapshot> {
        self.publish(new, lock, tree_created, true)
    }

    /// The containers `snapshot` is registered with (its `lxc_rdepends`).
    pub fn registered_bases(&self, snapshot: &Snapshot) -> Result<Vec<DependencyEntry>> {
        read_dependency_file(&self.snapshot_dir(snapshot)?, "lxc_rdepends")
    }

    /// The bases `snapshot` records (its `lxc_rdepends`) whose
    /// `lxc_snapshots` does not list it: `lxc-destroy` would remove such a
    /// base under it.
    pub fn unregistered_bases(&self, snapshot: &Snapshot) -> Result<Vec<DependencyEntry>> {
        let places = self.places()?;
        let me = self.entry(&snapshot.name);
        let mut out = Vec::new();
        for base in self.registered_bases(snapshot)? {
            if lists_dependent(&places, &base, &me)? == Some(false) {
                out.push(base);
            }
        }
        Ok(out)
    }

    /// Lists `name` in `base`'s `lxc_snapshots` again.
    pub fn register(&self, base: &DependencyEntry, name: &SnapshotName) -> Result<()> {
        update_dependents(&self.places()?, base, &self.entry(name), true)
    }

    /// Takes `name` out of `base`'s `lxc_snapshots`.
    pub fn unregister(&self, base: &DependencyEntry, name: &SnapshotName) -> Result<()> {
        self.unregister_entry(base, &self.entry(name))
    }

    /// Takes `dependent` out of `base`'s `lxc_snapshots`.
    pub fn unregister_entry(
        &self,
        base: &DependencyEntry,
        dependent: &DependencyEntry,
    ) -> Result<()> {
        update_dependents(&self.places()?, base, dependent, false)
    }

    /// Moves a finished snapshot into place and records its number;
    /// `tree_created`: the allocated bytes of the inodes its copy created
    /// (what the family now takes on disk grows by those and the files
    /// beside the tree).
    pub fn commit(&self, new: NewSnapshot, lock: &NameLock, tree_created: u64) -> Result<Snapshot> {
        self.publish(new, lock, tree_created, false)
    }

    /// [`Store::commit`], or with `replace` [`Store::commit_replacing`]:
    /// puts the snapshot in place, keeps the family's size record and
    /// records its number.
    fn publish(
        &self,
        new: NewSnapshot,
        lock: &NameLock,
        tree_created: u64,
        replace: bool,
    ) -> Result<Snapshot> {
        let name = new.name.clone();
        let trees = [super::Backing::Overlay, super::Backing::Dir].map(super::tree_rel);
        let added = tree_created + beside_tree_bytes(new.dir(), &trees)?;
        let root = self.root()?;
        self.changing_disk(lock, || {
            let freed = if replace {
                let old = new.staging.commit_exchanging()?;
                root.remove_tree_freed(&old)?
            } else {
                new.staging.commit()?;
                0
            };
            Ok(((), DiskChange { added, freed }))
        })?;
        self.note_issued(lock, &name)?;
        self.get(&name)
    }

    /// Records `name`'s number as issued (if it is the highest), so that it
    /// is never given again once `name` is gone: a snapshot another tool
    /// numbered is in no record otherwise.
    fn note_issued(&self, lock: &NameLock, name: &SnapshotName) -> Result<()> {
        if self.read_seq(lock.name())? >= Some(name.number()) {
            return Ok(());
        }
        self.state_dir()?.write_file(
            format!("{}.seq", lock.name()),
            format!("{}\n", name.number()).as_bytes(),
            0o644,
        )
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

    /// Removes snapshots of the locked container left half-built by runs
    /// that died, and takes back what they registered with base containers;
    /// tells the observer of each.
    pub fn remove_leftovers(&self, lock: &NameLock) -> Result<()> {
        let root = self.root()?;
        let removed = durable::remove_leftovers(
            root,
            |n| SnapshotName::try_parse(n).is_some_and(|s| s.container() == lock.name()),
            |dir, n| self.forget_registrations(dir, root, n),
        )?;
        self.tell_removed(removed, Leftover::Snapshot);
        Ok(())
    }

    /// Removes, in `parent` (the lxcpath), what a restore as `name` that
    /// died left, and takes back its registrations.
    pub fn remove_restore_leftovers(&self, parent: &Dir, name: &ContainerName) -> Result<()> {
        let removed = durable::remove_leftovers(
            parent,
            |n| n == name.as_str(),
            |dir, n| self.forget_registrations(dir, parent, n),
        )?;
        self.tell_removed(removed, Leftover::Restore);
        Ok(())
    }

    pub(crate) fn tell_removed(&self, paths: Vec<PathBuf>, of: Leftover) {
        for path in paths {
            self.observer().notice(Notice::RemovedLeftover { path, of });
        }
    }

    /// Takes back what a run that died registered with base containers for
    /// `<parent>/<name>` (it registers just before its final rename), unless a
    /// complete `<parent>/<name>` exists after all. Best effort: a base that
    /// cannot be updated keeps a stale entry, which only makes lxc-destroy
    /// more careful.
    fn forget_registrations(&self, leftover: &Dir, parent: &Dir, name: &str) {
        if parent.stat_at(name).ok().flatten().is_some() {
            return;
        }
        let Ok(bases) = read_dependency_file(leftover, "lxc_rdepends") else {
            return;
        };
        let Ok(places) = self.places() else {
            return;
        };
        let dependent = DependencyEntry {
            lxcpath: parent.path().to_path_buf(),
            name: name.to_string(),
        };
        for base in &bases {
            let _ = update_dependents(&places, base, &dependent, false);
        }
    }

    /// The last steps before a new container directory (a snapshot or a
    /// restored container, still under its staging name) is renamed into
    /// place: its `lxc_rdepends` and config, then its registration with its
    /// bases as `dependent`, taken back if the caller fails before keeping it.
    pub fn finish_container_dir(
        &self,
        dir: &Dir,
        config: &LxcConfig,
        bases: &[DependencyEntry],
        dependent: DependencyEntry,
    ) -> Result<Registrations<'_>> {
        self.finish_container_dir_with(dir, config, bases, bases, dependent)
    }

    /// [`Store::finish_container_dir`], registering with `register` only
    /// (the others of `bases` list `dependent` already).
    pub fn finish_container_dir_with(
        &self,
        dir: &Dir,
        config: &LxcConfig,
        bases: &[DependencyEntry],
        register: &[DependencyEntry],
        dependent: DependencyEntry,
    ) -> Result<Registrations<'_>> {
        write_rdepends(dir, bases)?;
        dir.write_file("config", config.render().as_bytes(), 0o640)?;
        let mut r = Registrations {
            store: self,
            done: Vec::new(),
            keep: false,
        };
        let places = self.places()?;
        for base in register {
            update_dependents(&places, base, &dependent, true)?;
            r.done.push((base.clone(), dependent.clone()));
        }
        Ok(r)
    }

    /// This store's entry for `name` in a dependency file.
    pub fn entry(&self, name: &SnapshotName) -> DependencyEntry {
        DependencyEntry {
            lxcpath: self.dir().to_path_buf(),
            name: name.to_string(),
        }
    }

    /// The newest complete snapshot of `container` on the same base
    /// (backing and lowers) as a new one would be.
    pub fn previous(
        &self,
        container: &ContainerName,
        backing: super::Backing,
        lowers: &[PathBuf],
    ) -> Result<Option<Snapshot>> {
        self.previous_before(container, backing, lowers, None)
    }

    /// [`Store::previous`], among those numbered below `before` if given.
    pub fn previous_before(
        &self,
        container: &ContainerName,
        backing: super::Backing,
        lowers: &[PathBuf],
        before: Option<u64>,
    ) -> Result<Option<Snapshot>> {
        // A legacy snapshot is a writable clone: nothing to link to.
        Ok(self.snapshots_of(container)?.into_iter().rev().find(|s| {
            !s.is_legacy()
                && before.map_or(true, |b| s.name.number() < b)
                && s.meta.backing == backing
                && s.meta.lowers == lowers
                && s.ensure_complete().is_ok()
        }))
    }

    /// The snapshot a new one may be stored as changes to, given the latest
    /// one on the same base: that one if it is whole, or the one it is a layer
    /// over, while the changes since are small (an eighth of the entries and
    /// of the bytes); then a new whole snapshot starts afresh, and the error
    /// says why (`None`: there is no usable anchor to speak of).
    pub fn anchor_for(&self, previous: &Snapshot) -> std::result::Result<Snapshot, Option<String>> {
        let Some(layer) = &previous.meta.layer else {
            return Ok(previous.clone());
        };
        if layer.entries.saturating_mul(8) > previous.meta.files
            || layer.bytes.saturating_mul(8) > previous.meta.bytes
        {
            return Err(Some(format!(
                "the changes since {} reached an eighth of its entries or bytes",
                layer.anchor
            )));
        }
        self.anchor_of(previous).ok_or(None)
    }

    /// The whole snapshot on the same base that `layer` is stored as changes
    /// to, held or not, if it is complete.
    pub fn anchor_of(&self, layer: &Snapshot) -> Option<Snapshot> {
        let anchor = self.get_with_held(&layer.anchor()?).ok()?;
        (anchor.meta.layer.is_none()
            && anchor.meta.backing == layer.meta.backing
            && anchor.meta.lowers == layer.meta.lowers
            && anchor.ensure_complete().is_ok())
        .then_some(anchor)
    }

    /// The snapshots stored as changes to `snapshot`.
    pub fn layers_of(&self, snapshot: &Snapshot) -> Result<Vec<String>> {
        let family = self.snapshots_of_with_held(snapshot.name.container())?;
        Ok(layers_over(&family, &snapshot.name))
    }

    /// What would stop `snapshot` from being deleted: a pin (without
    /// `force`), a running snapshot container, or containers built on it.
    pub fn check_deletable(&self, snapshot: &Snapshot, force: bool) -> Result<()> {
        if snapshot.meta.pinned && !force {
            return Err(
                Error::new(ErrorKind::Other, format!("{} is pinned", snapshot.name)).with_hint(
                    format!(
                        "unpin it (lxc-snap unpin {}) or delete with --force",
                        snapshot.name
                    ),
                ),
            );
        }
        ensure_stopped(self.dir(), &snapshot.name.to_string())?;
        // Its own layers are no obstacle: it is held for them.
        let layers = self.layers_of(snapshot)?;
        let dependents = read_dependency_file(&self.snapshot_dir(snapshot)?, "lxc_snapshots")?;
        if let Some(d) = dependents
            .iter()
            .find(|d| d.lxcpath != self.dir() || !layers.contains(&d.name))
        {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "{} is needed by container {} in {}",
                    snapshot.name,
                    d.name,
                    d.lxcpath.display()
                ),
            )
            .with_hint(format!(
                "destroy it first: lxc-destroy -P {} -n {}",
                d.lxcpath.display(),
                d.name
            )));
        }
        Ok(())
    }

    /// Deletes a snapshot that passed [`Store::check_deletable`] (its
    /// container's lock is held) and takes it out of its bases'
    /// `lxc_snapshots`. If layers are stored as changes to it, what of its
    /// tree they show stays for them (held, no longer listed) until the
    /// last of them is deleted. Returns the allocated bytes freed.
    pub fn delete_checked(&self, snapshot: &Snapshot, lock: &NameLock) -> Result<u64> {
        self.note_issued(lock, &snapshot.name)?;
        self.changing_disk(lock, || {
            let unregister = self.unregistration(snapshot)?;
            let freed = if self.layers_of(snapshot)?.is_empty() {
                self.remove(snapshot, lock, unregister)? + self.remove_held(lock, true)?
            } else {
                self.hold(snapshot, unregister)?
            };
            Ok((freed.all(), freed.change()))
        })
    }

    /// What takes `snapshot` out of its bases' `lxc_snapshots`; read before
    /// the snapshot is moved aside, run after.
    fn unregistration(&self, snapshot: &Snapshot) -> Result<impl FnOnce() -> Result<()> + '_> {
        let bases = read_dependency_file(&self.snapshot_dir(snapshot)?, "lxc_rdepends")?;
        let me = self.entry(&snapshot.name);
        Ok(move || {
            let places = self.places()?;
            for base in &bases {
                update_dependents(&places, base, &me, false)?;
            }
            Ok(())
        })
    }

    /// Of the `deleted` snapshots of `container`, those whose trees stay
    /// for layers stored as changes to them, with those layers and what
    /// each holds alone.
    pub fn held_for_layers(
        &self,
        container: &ContainerName,
        deleted: &[Snapshot],
    ) -> Result<Vec<(String, Vec<String>, u64)>> {
        let family = self.snapshots_of_with_held(container)?;
        Ok(family
            .iter()
            .filter(|s| s.meta.held && deleted.iter().any(|d| d.name == s.name))
            .map(|held| {
                let layers = layers_over(&family, &held.name);
                (held.name.to_string(), layers, held.meta.used_bytes)
            })
            .collect())
    }

    /// Removes the held snapshots of the locked container that no layer needs
    /// any more (the last one was deleted, perhaps by a run that died), and
    /// finishes holding those a run that died left with their config; with
    /// `trim`, also removes from the others what their layers all hide now
    /// ([`Store::trim_held`]). Returns the allocated bytes freed.
    pub fn remove_unneeded_held(&self, lock: &NameLock, trim: bool) -> Result<u64> {
        let family = self.snapshots_of_with_held(lock.name())?;
        if !family.iter().any(|s| s.meta.held) {
            return Ok(0);
        }
        self.changing_disk(lock, || {
            let freed = self.remove_held(lock, trim)?;
            Ok((freed.all(), freed.change()))
        })
    }

    /// [`Store::remove_unneeded_held`] within a change already recorded.
    fn remove_held(&self, lock: &NameLock, trim: bool) -> Result<Freed> {
        let family = self.snapshots_of_with_held(lock.name())?;
        let mut freed = Freed::default();
        for held in family.iter().filter(|s| s.meta.held) {
            let unregister = self.unregistration(held)?;
            if layers_over(&family, &held.name).is_empty() {
                freed = freed + self.remove(held, lock, unregister)?;
            } else if held.dir.join("config").exists() {
                freed = freed + self.hold(held, unregister)?;
            } else if trim {
                freed.bytes += self.trim_held(held, &family)?;
            }
        }
        Ok(freed)
    }

    /// Deletes `snapshot` (of the locked container): first renames it out
    /// of sight, so that a crash never leaves a half-deleted snapshot that
    /// lists; `unregister` runs between the rename and the removal. What a
    /// crash leaves is a leftover that the next run removes. Returns what
    /// that freed.
    fn remove(
        &self,
        snapshot: &Snapshot,
        lock: &NameLock,
        unregister: impl FnOnce() -> Result<()>,
    ) -> Result<Freed> {
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
        let scratch = remove_scratch(&root.open_dir(&hidden)?)?;
        let bytes = root.remove_tree_freed(&hidden)?;
        Ok(Freed { bytes, scratch })
    }

    /// Keeps a deleted snapshot's tree for the layers over it: marks it
    /// held (it no longer lists), runs `unregister`, then removes its
    /// config, so it cannot be started, and its comment and time stamp,
    /// what it wrote when started, and from its tree what the layers all
    /// hide. Returns what that freed.
    fn hold(&self, snapshot: &Snapshot, unregister: impl FnOnce() -> Result<()>) -> Result<Freed> {
        let mut meta = snapshot.meta.clone();
        meta.held = true;
        meta.pinned = false;
        meta.hidden_bytes = None;
        meta.format_version = FORMAT_VERSION;
        let dir = self.snapshot_dir(snapshot)?;
        write_metadata(&dir, &meta)?;
        unregister()?;
        let mut freed = 0;
        for name in BESIDE_TREE {
            if let Some(st) = dir.stat_at(name)? {
                dir.remove_file(name)?;
                freed += crate::dir::allocated(&st);
            }
        }
        dir.sync()?;
        let scratch = remove_scratch(&dir)?;
        let family = self.snapshots_of_with_held(snapshot.name.container())?;
        let held = self.get_with_held(&snapshot.name)?;
        let bytes = freed + self.trim_held(&held, &family)?;
        Ok(Freed { bytes, scratch })
    }
}

/// What removing (part of) a snapshot freed: `bytes` of what the family's
/// record of its size counts, and `scratch`, what it wrote when started.
#[derive(Debug, Clone, Copy, Default)]
struct Freed {
    bytes: u64,
    scratch: u64,
}

impl Freed {
    fn all(self) -> u64 {
        self.bytes + self.scratch
    }

    fn change(self) -> DiskChange {
        DiskChange {
            added: 0,
            freed: self.bytes,
        }
    }
}

impl std::ops::Add for Freed {
    type Output = Freed;
    fn add(self, other: Freed) -> Freed {
        Freed {
            bytes: self.bytes + other.bytes,
            scratch: self.scratch + other.scratch,
        }
    }
}

/// Removes what a snapshot wrote when started (its scratch directory);
/// returns the bytes freed.
fn remove_scratch(snapshot_dir: &Dir) -> Result<u64> {
    let private = match snapshot_dir.open_dir("private") {
        Ok(dir) => dir,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    private.remove_tree_freed("scratch")
}
