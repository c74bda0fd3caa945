//! Sizes: what deleting a snapshot frees ([`Usage`], from the recorded
//! `used_bytes`), how that record is kept true as neighbours come and go,
//! and what a tree occupies on disk.
//!
//! A snapshot shares inodes only with the snapshots of its container on
//! the same base: each new one hard-links the files unchanged since the
//! newest of them. So `used_bytes` changes only for the neighbours of a
//! snapshot taken or deleted, and only those are recomputed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;

use nix::sys::stat::FileStat;

use super::family::layers_over;
use super::{NameLock, Snapshot, Store};
use crate::copy::CopyStats;
use crate::dir::{allocated, Dir};
use crate::error::Result;
use crate::names::{ContainerName, SnapshotName};

pub struct Usage<'a> {
    family: &'a [Snapshot],
    /// Snapshot -> how many listed layers are stored as changes to it.
    layers_over: HashMap<SnapshotName, usize>,
}

impl<'a> Usage<'a> {
    /// `family`: every snapshot of one container, held ones too.
    pub fn new(family: &'a [Snapshot]) -> Usage<'a> {
        let mut layers_over = HashMap::new();
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

    /// What deleting `snapshot` alone frees: what only it holds; while
    /// layers are stored over it, only what all of them hide (its tree
    /// stays for them without that); for the last layer over a held
    /// snapshot, that one's bytes as well.
    pub fn frees(&self, snapshot: &Snapshot) -> u64 {
        if self.layers_over.contains_key(&snapshot.name) {
            return snapshot.meta.hidden_bytes.unwrap_or(0);
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

/// The listed snapshots of `family` stored as changes to `name`.
fn layer_snapshots<'f>(family: &'f [Snapshot], name: &SnapshotName) -> Vec<&'f Snapshot> {
    let names = layers_over(family, name);
    family
        .iter()
        .filter(|s| names.contains(&s.name.to_string()))
        .collect()
}

/// Counts what removing names frees: every inode met, with how many of
/// its names were met. A directory is freed with its one name; any other
/// inode when all its names were met.
#[derive(Default)]
pub struct Tally {
    /// (dev, ino) -> (names met, link count, allocated bytes, directory)
    inodes: HashMap<(u64, u64), (u64, u64, u64, bool)>,
}

impl Tally {
    fn add(&mut self, st: &FileStat) {
        let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let slot = self.inodes.entry((st.st_dev, st.st_ino)).or_insert((
            0,
            st.st_nlink,
            allocated(st),
            dir,
        ));
        slot.0 += 1;
    }

    /// The tree and everything below it.
    pub fn add_tree(&mut self, tree: &Dir) -> Result<()> {
        crate::walk::for_each_entry(tree, |st| self.add(st))
    }

    /// `name` in `parent`, and everything below it; nothing if it is not
    /// there.
    pub fn add_entry(&mut self, parent: &Dir, name: &OsStr) -> Result<()> {
        let Some(st) = parent.stat_at(name)? else {
            return Ok(());
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            self.add_tree(&parent.open_dir(name)?)
        } else {
            self.add(&st);
            Ok(())
        }
    }

    /// Allocated bytes of what removing every name met would free.
    pub fn freed(&self) -> u64 {
        self.inodes
            .values()
            .filter(|(met, nlink, _, dir)| *dir || met >= nlink)
            .map(|(_, _, bytes, _)| bytes)
            .sum()
    }
}

/// The files of a snapshot's directory beside its tree, which deleting it
/// removes even while its tree stays for layers.
pub(super) const BESIDE_TREE: [&str; 3] = ["config", super::TS_FILE, super::COMMENT_FILE];

/// What removing the tree would free. Walks without following symlinks.
pub fn exclusive_bytes(tree: &Dir) -> Result<u64> {
    let mut tally = Tally::default();
    tally.add_tree(tree)?;
    Ok(tally.freed())
}

/// What a walk of a tree found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeMeasure {
    /// Entries below its root.
    pub entries: u64,
    /// Apparent sizes of its regular files, each inode once.
    pub bytes: u64,
    /// Allocated bytes, each inode once.
    pub allocated: u64,
    /// Allocated bytes of the inodes all of whose names are in it.
    pub exclusive: u64,
}

/// Measures `tree` ([`TreeMeasure`]), without following symlinks.
pub fn measure_tree(tree: &Dir) -> Result<TreeMeasure> {
    let mut tally = Tally::default();
    let mut m = TreeMeasure::default();
    let mut files = HashSet::new();
    crate::walk::for_each_entry(tree, |st| {
        tally.add(st);
        m.entries += 1;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && files.insert((st.st_dev, st.st_ino)) {
            m.bytes += st.st_size as u64;
        }
    })?;
    m.entries = m.entries.saturating_sub(1);
    m.allocated = tally.inodes.values().map(|(_, _, bytes, _)| bytes).sum();
    m.exclusive = tally.freed();
    Ok(m)
}

/// Allocated bytes below `root`, each inode once, without following links
/// or touching access times; `None` when the tree cannot be read.
pub fn disk_usage(root: &Dir) -> Option<u64> {
    let mut usage = DiskUsage::default();
    usage.add(root, &[]).ok()?;
    Some(usage.total)
}

/// Allocated bytes below one or more directories, each inode once
/// however many names it has in them.
#[derive(Default)]
struct DiskUsage {
    seen: HashSet<(u64, u64)>,
    total: u64,
}

impl DiskUsage {
    /// `root` and everything below it but the entries at `skip` (paths
    /// relative to `root`) and below them.
    fn add(&mut self, root: &Dir, skip: &[&std::path::Path]) -> Result<()> {
        crate::walk::for_each_entry_but(root, skip, |st| {
            if self.seen.insert((st.st_dev, st.st_ino)) {
                self.total += allocated(st);
            }
        })
    }
}

impl Store {
    /// The entries of `anchor`'s tree that every one of `layers` hides,
    /// each as its parent directory (opened beneath the tree, no symlink
    /// followed) and name; those not there are left out.
    fn hidden_entries(
        &self,
        anchor: &Snapshot,
        layers: &[&Snapshot],
    ) -> Result<Vec<(Dir, std::ffi::OsString)>> {
        let tree = self.tree_dir(anchor)?;
        let layer_trees = layers
            .iter()
            .map(|l| self.tree_dir(l))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Dir> = layer_trees.iter().collect();
        let mut found = Vec::new();
        for rel in crate::copy::hidden_by_all(&tree, &refs)? {
            let (Some(parent), Some(name)) = (rel.parent(), rel.name()) else {
                continue;
            };
            let dir = if parent.is_root() {
                tree.try_clone()?
            } else {
                match tree.open_below(&parent.to_path(), crate::dir::Below::Nothing) {
                    Ok(dir) => dir,
                    Err(e) if e.kind() == crate::error::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            };
            if dir.stat_at(name)?.is_some() {
                found.push((dir, name.to_os_string()));
            }
        }
        Ok(found)
    }

    /// Adds to `tally` what deleting `snapshot` while `layers` stay over
    /// it removes: the files beside its tree, its scratch directory and
    /// what all of them hide.
    pub fn tally_hidden(
        &self,
        tally: &mut Tally,
        snapshot: &Snapshot,
        layers: &[&Snapshot],
    ) -> Result<()> {
        let dir = self.snapshot_dir(snapshot)?;
        for name in BESIDE_TREE {
            tally.add_entry(&dir, OsStr::new(name))?;
        }
        match dir.open_dir("private") {
            Ok(private) => tally.add_entry(&private, OsStr::new("scratch"))?,
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for (parent, name) in self.hidden_entries(snapshot, layers)? {
            tally.add_entry(&parent, &name)?;
        }
        Ok(())
    }

    /// Removes from a held snapshot's tree what every layer over it hides
    /// (no overlay of one of them shows it, and flattening none takes it),
    /// and records what it holds alone now. Each removal leaves a tree the
    /// layers see as before, so a crash half way loses nothing. Returns
    /// the bytes freed.
    pub fn trim_held(&self, held: &Snapshot, family: &[Snapshot]) -> Result<u64> {
        let layers = layer_snapshots(family, &held.name);
        if layers.is_empty() {
            return Ok(0);
        }
        let mut freed = 0;
        for (parent, name) in self.hidden_entries(held, &layers)? {
            freed += parent.remove_tree_freed(&name)?;
        }
        if freed > 0 {
            self.set_used(held, held.meta.used_bytes.saturating_sub(freed))?;
        }
        Ok(freed)
    }

    /// Records in `anchor`'s metadata what all the listed layers over it
    /// hide ([`Usage::frees`] of a snapshot layers stand on).
    pub fn refresh_hidden(&self, anchor: &Snapshot) -> Result<()> {
        let family = self.snapshots_of_with_held(anchor.name.container())?;
        let layers = layer_snapshots(&family, &anchor.name);
        let hidden = if layers.is_empty() {
            None
        } else {
            let mut tally = Tally::default();
            for (parent, name) in self.hidden_entries(anchor, &layers)? {
                tally.add_entry(&parent, &name)?;
            }
            Some(tally.freed())
        };
        // Re-read: the caller's copy may be older than the metadata.
        let current = self.get_with_held(&anchor.name)?;
        if current.meta.hidden_bytes != hidden {
            let mut meta = current.meta.clone();
            meta.hidden_bytes = hidden;
            super::write_metadata(&self.snapshot_dir(&current)?, &meta)?;
        }
        Ok(())
    }

    /// What deleting `gone` (snapshots of `container`) would free, with
    /// the held snapshots that would go or be trimmed with them.
    pub fn predict_freed(&self, container: &ContainerName, gone: &[SnapshotName]) -> Result<u64> {
        let family = self.snapshots_of_with_held(container)?;
        let mut tally = Tally::default();
        for s in &family {
            let goes = gone.contains(&s.name);
            if !goes && !s.meta.held {
                continue;
            }
            let all = layer_snapshots(&family, &s.name);
            let staying: Vec<&Snapshot> = all
                .iter()
                .copied()
                .filter(|l| !gone.contains(&l.name))
                .collect();
            if staying.is_empty() {
                tally.add_tree(&self.snapshot_dir(s)?)?;
            } else if goes {
                self.tally_hidden(&mut tally, s, &staying)?;
            } else if staying.len() < all.len() {
                // A held snapshot trimmed to the layers that stay.
                for (parent, name) in self.hidden_entries(s, &staying)? {
                    tally.add_entry(&parent, &name)?;
                }
            }
        }
        Ok(tally.freed())
    }

    /// Recomputes what only `snapshot` holds (see [`exclusive_bytes`]) and
    /// records it in its metadata.
    pub fn refresh_used(&self, snapshot: &Snapshot) -> Result<()> {
        self.set_used(snapshot, exclusive_bytes(&self.tree_dir(snapshot)?)?)
    }

    /// Records `used` as what only `snapshot` holds.
    pub fn set_used(&self, snapshot: &Snapshot, used: u64) -> Result<()> {
        // A legacy snapshot shares nothing and records nothing.
        if used != snapshot.meta.used_bytes && !snapshot.is_legacy() {
            let mut meta = snapshot.meta.clone();
            meta.used_bytes = used;
            super::write_metadata(&self.snapshot_dir(snapshot)?, &meta)?;
        }
        Ok(())
    }

    /// After deleting `deleted`, the remaining snapshots that may now hold
    /// alone what they shared with one of them get their `used_bytes`
    /// recomputed: the nearest remaining ones on the same base before and
    /// after each deleted one, and the nearest before and after of any kind.
    pub fn refresh_neighbours(
        &self,
        container: &ContainerName,
        deleted: &[Snapshot],
    ) -> Result<()> {
        // Legacy snapshots share nothing.
        let remaining: Vec<Snapshot> = self
            .snapshots_of(container)?
            .into_iter()
            .filter(|s| !s.is_legacy())
            .collect();
        let mut touched = BTreeSet::new();
        for d in deleted.iter().filter(|d| d.name.container() == container) {
            let same_base =
                |s: &&Snapshot| s.meta.backing == d.meta.backing && s.meta.lowers == d.meta.lowers;
            let before = remaining.iter().rev().filter(|s| s.name < d.name);
            let after = remaining.iter().filter(|s| s.name > d.name);
            let nearest = [
                before.clone().next(),
                before.clone().find(same_base),
                after.clone().next(),
                after.clone().find(same_base),
            ];
            touched.extend(nearest.into_iter().flatten().map(|s| s.name.clone()));
        }
        for s in remaining.iter().filter(|s| touched.contains(&s.name)) {
            self.refresh_used(s)?;
        }
        // What their layers hide changed for the anchors of deleted layers.
        let anchors: BTreeSet<SnapshotName> = deleted.iter().filter_map(Snapshot::anchor).collect();
        for a in remaining.iter().filter(|s| anchors.contains(&s.name)) {
            self.refresh_hidden(a)?;
        }
        Ok(())
    }

    /// Updates what `previous` holds alone now that the copy `stats`
    /// describe linked some of its inodes. Only a later snapshot made from
    /// `previous` links to its inodes, and this is the first, so
    /// `previous` held a linked inode alone exactly when all the names it
    /// had before were in `previous`: one name, or as many as `previous`
    /// recorded for it. Metadata from before that record takes a walk
    /// instead.
    pub fn now_shares(&self, previous: &Snapshot, stats: &CopyStats) -> Result<()> {
        let mut unshared = stats.reference_unshared_bytes;
        if !stats.reference_multi_linked.is_empty() {
            let Some(recorded) = &previous.meta.multi_name_inodes else {
                return self.refresh_used(previous);
            };
            let names: HashMap<u64, u64> = recorded.iter().copied().collect();
            unshared += stats
                .reference_multi_linked
                .iter()
                .filter(|(ino, before, _)| names.get(ino) == Some(before))
                .map(|(_, _, bytes)| bytes)
                .sum::<u64>();
        }
        let used = previous.meta.used_bytes.saturating_sub(unshared);
        self.set_used(previous, used)
    }
}

/// What a family's snapshots take on disk is recorded in
/// `<snapdir>/.lxc-snap/NAME.disk` by every run that changes the family,
/// so that `list` need not walk every tree to tell. What started
/// snapshots write (below `private/scratch`) is left out: it changes while
/// they run, so `list` adds it when it looks.
const DISK_SUFFIX: &str = "disk";

/// Where a started snapshot writes, below its directory.
pub(super) const SCRATCH: &str = "private/scratch";

impl Store {
    /// What the snapdir's own directory and its state directory take on
    /// disk.
    pub fn own_disk(&self) -> Result<u64> {
        let Some(root) = self.existing_root()? else {
            return Ok(0);
        };
        let mut usage = DiskUsage::default();
        match root.open_dir(super::layout::STATE_DIR) {
            Ok(state) => usage.add(&state, &[])?,
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(allocated(&root.stat()?) + usage.total)
    }

    /// What `container`'s snapshots (held ones too) take on disk, scratch
    /// left out, as the last run that changed them recorded it.
    pub fn recorded_disk(&self, container: &ContainerName) -> Option<u64> {
        let root = self.existing_root().ok()??;
        let state = root.open_dir(super::layout::STATE_DIR).ok()?;
        let text = state
            .read_file(format!("{container}.{DISK_SUFFIX}"), 64, "size record")
            .ok()?;
        std::str::from_utf8(&text).ok()?.trim().parse().ok()
    }

    /// Measures again what `container`'s snapshots take on disk and
    /// records it (the locked container).
    pub fn remeasure_disk(&self, lock: &NameLock) -> Result<u64> {
        let record = format!("{}.{DISK_SUFFIX}", lock.name());
        let state = self.state_dir()?;
        state.remove_file(&record)?;
        let bytes = self.measure_disk(lock.name())?;
        state.write_file(&record, format!("{bytes}\n").as_bytes(), 0o644)?;
        Ok(bytes)
    }

    /// What `container`'s snapshots take on disk, scratch left out, by
    /// walking their directories (each inode once).
    pub fn measure_disk(&self, container: &ContainerName) -> Result<u64> {
        let mut usage = DiskUsage::default();
        let scratch = std::path::Path::new(SCRATCH);
        for s in self.snapshots_of_with_held(container)? {
            usage.add(&self.snapshot_dir(&s)?, &[scratch])?;
        }
        Ok(usage.total)
    }

    /// What `container`'s snapshots take on disk, scratch left out: as
    /// recorded, else measured.
    pub fn disk(&self, container: &ContainerName) -> Result<u64> {
        match self.recorded_disk(container) {
            Some(bytes) => Ok(bytes),
            None => self.measure_disk(container),
        }
    }

    /// The allocated bytes below a snapshot's scratch directory (what it
    /// wrote when last started), the directory included; `None` when it
    /// cannot be read.
    pub fn scratch_bytes(&self, snapshot: &Snapshot) -> Option<u64> {
        let dir = self
            .snapshot_dir(snapshot)
            .ok()?
            .open_below(std::path::Path::new(SCRATCH), crate::dir::Below::Nothing)
            .ok()?;
        disk_usage(&dir)
    }

    /// Runs `change`, which changes the locked container's snapshots on
    /// disk by the bytes it returns (added, freed), and keeps the record of
    /// what they take up to date. The record is removed first, so a run
    /// that dies half way leaves none, and the next one measures.
    pub(super) fn changing_disk<T>(
        &self,
        lock: &NameLock,
        change: impl FnOnce() -> Result<(T, DiskChange)>,
    ) -> Result<T> {
        let container = lock.name();
        let before = self.disk(container)?;
        let state = self.state_dir()?;
        let record = format!("{container}.{DISK_SUFFIX}");
        state.remove_file(&record)?;
        state.sync()?;
        let (value, delta) = change()?;
        let after = before
            .saturating_add(delta.added)
            .saturating_sub(delta.freed);
        state.write_file(&record, format!("{after}\n").as_bytes(), 0o644)?;
        Ok(value)
    }
}

/// How a change moved what a family takes on disk, scratch left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskChange {
    pub added: u64,
    pub freed: u64,
}

/// The allocated bytes of a snapshot's directory but its tree and
/// scratch: its metadata, config and the directories around the tree.
pub(super) fn beside_tree_bytes(dir: &Dir, trees: &[&std::path::Path]) -> Result<u64> {
    let mut skip = trees.to_vec();
    skip.push(std::path::Path::new(SCRATCH));
    let mut usage = DiskUsage::default();
    usage.add(dir, &skip)?;
    Ok(usage.total)
}
