//! Sizes: what deleting a snapshot frees ([`Usage`], from the recorded
//! `used_bytes`), how that record is kept true as neighbours come and go,
//! and what a tree occupies on disk.
//!
//! A snapshot shares inodes only with the snapshots of its container on
//! the same base: each new one hard-links the files unchanged since the
//! newest of them. So `used_bytes` changes only for the neighbours of a
//! snapshot taken or deleted, and only those are recomputed.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Snapshot, Store};
use crate::copy::CopyStats;
use crate::dir::Dir;
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

/// what removing the tree would free. Walks without following symlinks.
pub fn exclusive_bytes(tree: &Dir) -> Result<u64> {
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

/// Allocated bytes below `root`, each inode once, without following links
/// or touching access times; `None` when the tree cannot be read.
pub fn disk_usage(root: &Dir) -> Option<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    crate::walk::for_each_entry(root, |st| {
        if seen.insert((st.st_dev, st.st_ino)) {
            total += st.st_blocks as u64 * 512;
        }
    })
    .ok()?;
    Some(total)
}

impl Store {
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
        let remaining = self.snapshots_of(container)?;
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
