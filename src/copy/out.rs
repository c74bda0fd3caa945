//! Copying out of a view: what a [`View`](super::view::View) shows at one
//! path, as a plain tree.
//!
//! The copy is the copier's, one pass per layer that shows something
//! there, bottom first, each told exactly which of its entries show (a
//! [`Selection`]): an entry a higher layer hides (replaces, whites out, or
//! covers with an opaque directory) is never looked at, and directories
//! that merge are created by the lowest pass and get the metadata of the
//! highest. So everything the copier keeps is kept, and what makes a tree
//! a layer is not: whiteouts are left out and the overlay's own
//! attributes are not copied ([`CopyOptions::overlay_private`]).
//!
//! Finding the passes' selections walks only the directories that merge
//! (are made of more than one layer); a directory that comes from one
//! layer alone is handed to that layer's pass whole.
//!
//! Hard links are kept between names that come from the same layer; two
//! names of one inode that show through different layers (which only
//! hand-made layers have) become two files.

use std::collections::{BTreeMap, BTreeSet};

use super::view::{child_stack, list_dir, lookup, Entry, Stack};
use super::*;
use crate::dir::raise_fd_limit;

/// Copies `entry` into the directory `dst_name` of `dst_parent`, which
/// must exist and be empty (a staging directory): the root of the view
/// becomes that directory itself, with the root's metadata; any other
/// entry becomes an entry of it under its own name.
pub fn copy_out(
    entry: &Entry,
    dst_parent: &Dir,
    dst_name: &OsStr,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    let side = entry.side();
    let start: Arc<Stack> = if entry.is_root() {
        Arc::new(entry.stack()?)
    } else {
        Arc::clone(&entry.parent)
    };
    let first_names: Vec<OsString> = if entry.is_root() {
        let mut names = BTreeSet::new();
        for dir in start.iter() {
            list_dir(dir, &mut names)?;
        }
        names.into_iter().collect()
    } else {
        vec![entry.name.clone()]
    };

    // Which entries each layer's pass takes.
    let mut passes: BTreeMap<usize, Selection> = BTreeMap::new();
    let mut take = |layer: usize, path: &[OsString], what: Select| {
        let names: Vec<&OsStr> = path.iter().map(OsString::as_os_str).collect();
        passes
            .entry(layer)
            .or_insert_with(|| Selection::new(Select::Skip))
            .set(&names, what, Select::Skip);
    };
    if entry.is_root() {
        // The root is made of every layer, even those with nothing showing.
        for dir in start.iter() {
            take(dir.layer, &[], Select::Descend);
        }
    }
    let mut merged = 0;
    let mut todo = vec![(Vec::<OsString>::new(), Arc::clone(&start), first_names)];
    while let Some((rel, stack, names)) = todo.pop() {
        if let Some(cancel) = opts.cancel {
            cancel.check()?;
        }
        for name in names {
            let Some(found) = lookup(&side, &stack, &name)? else {
                continue;
            };
            let mut path = rel.clone();
            path.push(name.clone());
            let layer = stack[found.pos].layer;
            if file_type(&found.st) != SFlag::S_IFDIR {
                take(layer, &path, Select::All);
                continue;
            }
            let below = child_stack(&side, &stack, &found, &name)?;
            if below.len() == 1 {
                take(layer, &path, Select::All);
                continue;
            }
            merged += below.len() as u64 - 1;
            let mut inner = BTreeSet::new();
            for dir in &below {
                take(dir.layer, &path, Select::Descend);
                list_dir(dir, &mut inner)?;
            }
            raise_fd_limit(((todo.len() + 2) * below.len()) as u64);
            todo.push((path, Arc::new(below), inner.into_iter().collect()));
        }
    }

    let private = side.overlay.then_some(side.private);
    let mut stats = CopyStats::default();
    let mut before = Counts::default();
    // Bottom first, so a higher layer's directory metadata wins.
    for (layer, select) in passes.iter().rev() {
        let Some(src) = start.iter().find(|d| d.layer == *layer) else {
            continue;
        };
        let src = Dir::held(
            src.fd
                .try_clone()
                .map_err(|e| Error::io("opening", &src.path(), e))?,
            src.path(),
        );
        let after = opts.progress.map(|inner| layer::After { inner, before });
        let pass = copy_dir(
            &src,
            dst_parent,
            dst_name,
            &CopyOptions {
                select: Some(select),
                merge: true,
                overlay_private: private,
                keep_link_atimes: true,
                progress: after.as_ref().map(|p| p as &dyn Progress),
                total: opts.total,
                cancel: opts.cancel,
                ..CopyOptions::default()
            },
        )?;
        before.entries += pass.entries;
        before.bytes += pass.bytes;
        stats.entries += pass.entries;
        stats.bytes += pass.bytes;
        stats.created_bytes += pass.created_bytes;
        stats.skipped_mounts.extend(pass.skipped_mounts);
    }
    // Directories several passes went through are one entry each.
    stats.entries = stats.entries.saturating_sub(merged);
    stats.skipped_mounts.sort();
    Ok(stats)
}

/// Gives the directory `dst` the metadata of the directory `entry` of a
/// view: owner, mode, times and extended attributes, the overlay's own
/// aside (those of `dst` with the prefix `keep` stay, the others it has
/// and `entry` lacks go). For putting one directory of a layer back as a
/// view has it, without touching what is in it.
pub fn copy_dir_metadata(entry: &Entry, dst: &Dir, keep: Option<&str>) -> Result<()> {
    let xattrs = entry.xattrs()?;
    let path = dst.path();
    let err = |e| Error::io("removing extended attributes of", path, e);
    for name in dst.file().list_xattr().map_err(err)? {
        let private = keep.is_some_and(|k| name.as_bytes().starts_with(k.as_bytes()));
        if !private && !xattrs.iter().any(|(n, _)| *n == name) {
            dst.file().remove_xattr(&name).map_err(err)?;
        }
    }
    apply_metadata(Node::Fd(dst.file()), entry.stat(), &xattrs, path, None)
}
