//! Putting paths of a stopped container back as a snapshot has them
//! (snapper's `undochange`), without touching anything else.
//!
//! What changes is what `diff` finds between the container now and the
//! snapshot below each path given ([`crate::diff::diff_at`]); `--dry-run`
//! prints just that. Each change is then written into the container's own
//! tree (an overlay's upper, or a directory-backed rootfs), so that the
//! container's view shows the snapshot's version at that path:
//! - where the tree hides or replaces a lower layer's entry that is the
//!   very one the snapshot shows (the same inode, or for a directory the
//!   same lower directories), the tree's entry is removed (a whiteout
//!   goes, say) and nothing is copied;
//! - any other entry the snapshot has is copied from the snapshot's view (a
//!   directory that is added or replaces something else with all that is
//!   below it); a directory that would merge with a lower one of the same
//!   name is marked opaque, so what the lower one holds stays hidden; a
//!   directory whose own metadata changed gets the snapshot's, its entries
//!   left as they are;
//! - an entry the snapshot lacks is removed from the tree, and where a
//!   lower layer would then show one of that name, a whiteout hides it;
//! - a directory on the way that the tree lacks is copied up first (with
//!   the metadata the container sees now, or the snapshot's where the
//!   container has none), as overlayfs itself would.
//!
//! Names of one file in the snapshot that are put back stay one file.
//!
//! A path whose parent the container has as something else than a
//! directory (a file, a symlink) while the snapshot has a directory is
//! refused before anything is written: undo that parent instead.
//!
//! Safety: every write is beneath the container's tree, opened through
//! descriptors one name at a time without following a symlink; what
//! replaces an entry is built in a staging directory beside the tree (in
//! the container's own directory, never inside the tree) and swapped in
//! with one rename, so each path holds its old or its new version, and the
//! old one goes with the staging directory. A safety snapshot is taken
//! first unless told not to.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

use serde::Serialize;

use super::files::{absolute, parse};
use super::require_root;
use super::take::take_backup;
use crate::copy::view::{self, EntryType, Lookup, Tree, View};
use crate::copy::{self, CopyOptions};
use crate::diff::{Change, Kind, Options, Summary};
use crate::dir::Dir;
use crate::durable::Staging;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::{Container, Rootfs};
use crate::names::{ContainerName, SnapshotName};
use crate::printable::escape_bytes;
use crate::store::Store;

/// The overlay attributes lxc-snap's containers use (mounted by root,
/// without `userxattr`).
const PRIVATE: &str = "trusted.overlay.";

/// What to undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoOptions {
    pub snapshot: SnapshotName,
    /// Paths in the container, raw bytes.
    pub paths: Vec<Vec<u8>>,
    /// Only say what would change.
    pub dry_run: bool,
    /// Snapshot the container first.
    pub backup: bool,
    /// Compare file contents, not only sizes and times.
    pub content: bool,
}

/// What an undo did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undone {
    pub container: ContainerName,
    pub snapshot: SnapshotName,
    pub dry_run: bool,
    /// The snapshot of the state before, when one was taken.
    pub backup: Option<SnapshotName>,
    /// From the container now to the snapshot, in path order.
    pub changes: Vec<Change>,
    pub summary: Summary,
}

pub fn undo(store: &Store, opts: &UndoOptions) -> Result<Undone> {
    require_root("undoing changes")?;
    let name = &opts.snapshot;
    let container = Container::open(store.lxcpath()?, name.container())?;
    let lock = if opts.dry_run {
        None
    } else {
        Some(store.lock(name.container())?)
    };
    let snapshot = store.get(name)?;
    if !opts.dry_run {
        container.ensure_stopped()?;
    }
    let tree = container.tree()?;
    let paths = normalise(&opts.paths)?;
    let snap_view = View::of_dirs(store.snapshot_layers(&snapshot)?);
    let now_view = View::of_dirs(store.container_layers(tree.dir.try_clone()?, &tree.rootfs)?);
    let snap = Tree::open(&snap_view)?;
    let (changes, summary) = changes_below(
        store,
        &now_view,
        &snap_view,
        &paths,
        opts.content,
        (container.name.as_str(), &name.to_string()),
    )?;
    let mut done = Undone {
        container: container.name.clone(),
        snapshot: name.clone(),
        dry_run: opts.dry_run,
        backup: None,
        changes,
        summary,
    };
    let Some(lock) = lock else {
        return Ok(done);
    };
    if done.changes.is_empty() {
        return Ok(done);
    }

    let leaf = super::rollback::clear_beside(store, &tree)?;
    if opts.backup {
        let shown: Vec<String> = paths
            .iter()
            .map(|p| escape_bytes(&absolute(&as_names(p)), true))
            .collect();
        let mut comment = format!("before undo of {} from {name}", shown.join(" "));
        if comment.len() > 200 {
            comment = format!("before undo of {} paths from {name}", shown.len());
        }
        done.backup = Some(take_backup(store, &container, &lock, &comment)?);
    }
    let overlay = matches!(tree.rootfs, Rootfs::Overlay { .. });
    let staging = Staging::create(&tree.parent, leaf, 0o700)?;
    let applied = write_changes(
        store,
        &tree.dir,
        overlay,
        &snap,
        &now_view,
        &staging,
        &done.changes,
    );
    if let Err(e) = applied {
        let _ = staging.discard();
        return Err(match &done.backup {
            Some(saved) => Error::new(
                e.kind(),
                format!(
                    "{} (some paths of {} may be undone already)",
                    e.message(),
                    container.name
                ),
            )
            .with_hint(format!(
                "the state before is {saved}: lxc-snap rollback {saved}"
            )),
            None => e,
        });
    }
    staging.discard()?;
    Ok(done)
}

/// What differs below each of `paths` between `now` and `from` (from `now`
/// to `from`), once no path is found below something `now` has as a
/// non-directory where `from` has a directory. `names` are the two views'
/// names for messages.
pub(super) fn changes_below(
    store: &Store,
    now: &View,
    from: &View,
    paths: &[Vec<OsString>],
    content: bool,
    names: (&str, &str),
) -> Result<(Vec<Change>, Summary)> {
    let theirs = Tree::open(from)?;
    for path in paths {
        refuse_changed_parents(&theirs, &Tree::open(now)?, path, names)?;
    }
    let mut changes = Vec::new();
    let mut summary = Summary::default();
    let compare = Options {
        content,
        cancel: Some(store.cancel().clone()),
    };
    for path in paths {
        let found = crate::diff::diff_at(now, from, &as_names(path), &compare, |c| {
            changes.push(c.clone())
        })?;
        summary.add(&found);
    }
    Ok((changes, summary))
}

/// Writes `changes` (from [`changes_below`]) into `upper`, the tree of the
/// view `now` (an overlay's upper with `overlay`, else a whole rootfs), so
/// that it shows what `from` shows; `staging` is beside it, never inside.
pub(super) fn write_changes(
    store: &Store,
    upper: &Dir,
    overlay: bool,
    from: &Tree,
    now: &View,
    staging: &Staging,
    changes: &[Change],
) -> Result<()> {
    let mut writer = Writer {
        upper,
        overlay,
        snap: from,
        now,
        staging,
        slots: 0,
        copied: HashMap::new(),
    };
    let mut covered: Option<Vec<u8>> = None;
    for change in changes {
        store.cancel().check()?;
        if covered.as_ref().is_some_and(|c| below(&change.path, c)) {
            continue;
        }
        if writer.apply(change)? {
            covered = Some(change.path.clone());
        }
    }
    Ok(())
}

/// Whether `path` is below `dir` (both from `/`).
fn below(path: &[u8], dir: &[u8]) -> bool {
    dir == b"/" || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

fn as_names(path: &[OsString]) -> Vec<&OsStr> {
    path.iter().map(OsString::as_os_str).collect()
}

/// The paths as names, sorted, each once, and none below another.
pub(super) fn normalise(paths: &[Vec<u8>]) -> Result<Vec<Vec<OsString>>> {
    let mut out: Vec<Vec<OsString>> = Vec::new();
    for path in paths {
        out.push(parse(path)?.into_iter().map(OsStr::to_os_string).collect());
    }
    out.sort();
    out.dedup();
    let mut kept: Vec<Vec<OsString>> = Vec::new();
    for path in out {
        if !kept.iter().any(|k| path.starts_with(k)) {
            kept.push(path);
        }
    }
    Ok(kept)
}

/// Refuses a path below something the container has as a non-directory
/// where the snapshot has a directory: the container's entry there is not
/// among the paths to undo, and putting the path back would replace it.
fn refuse_changed_parents(
    snap: &Tree,
    now: &Tree,
    path: &[OsString],
    (container, name): (&str, &str),
) -> Result<()> {
    let names = as_names(path);
    for end in 1..names.len() {
        let above = &names[..end];
        let Lookup::Found(theirs) = snap.find(above)? else {
            return Ok(());
        };
        if theirs.kind != EntryType::Directory {
            return Ok(());
        }
        match now.find(above)? {
            Lookup::Found(ours) if ours.kind != EntryType::Directory => {
                let shown = escape_bytes(&absolute(above), true);
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "cannot undo {}: {shown} is a {} in {container} but a directory in {name}",
                        escape_bytes(&absolute(&names), true),
                        ours.kind.name()
                    ),
                )
                .with_hint(format!("undo {shown} itself: lxc-snap undo {name} {shown}")));
            }
            Lookup::Found(_) => {}
            // Missing here: the directories from here on come from the snapshot.
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Writes changes into the container's tree.
struct Writer<'a> {
    upper: &'a Dir,
    /// The tree is an overlay's upper (else a whole rootfs).
    overlay: bool,
    snap: &'a Tree,
    now: &'a View,
    staging: &'a Staging,
    /// Staging subdirectories made so far.
    slots: u64,
    /// Files of the snapshot with several names, by (device, inode), and
    /// where the first name put back is in the tree.
    copied: HashMap<(u64, u64), (Dir, OsString)>,
}

impl Writer<'_> {
    /// Writes one change; returns whether everything below its path is
    /// done with it.
    fn apply(&mut self, change: &Change) -> Result<bool> {
        let names = view::parse_path(&change.path).unwrap_or_default();
        let Some((last, above)) = names.split_last() else {
            // The root itself can only have changed its own metadata.
            let root = self.snap_entry(&[])?;
            copy::copy_dir_metadata(&root, self.upper, Some(PRIVATE))?;
            return Ok(false);
        };
        let parent = self.parent_dir(above)?;
        let last = *last;
        match change.kind {
            Kind::Deleted => {
                parent.remove_tree(last)?;
                if self.overlay {
                    if let Lookup::Found(_) = Tree::open(self.now)?.find(&names)? {
                        // A lower layer has one: hide it.
                        let slot = self.slot()?;
                        slot.make_whiteout(last)?;
                        slot.rename_new(last, &parent, last)?;
                    }
                }
                Ok(true)
            }
            Kind::Added | Kind::TypeChanged => {
                self.put(&parent, &names)?;
                Ok(change.new_type == Some(EntryType::Directory))
            }
            Kind::Modified if change.new_type == Some(EntryType::Directory) => {
                let theirs = self.snap_entry(&names)?;
                let dir = self.parent_dir(&names)?;
                copy::copy_dir_metadata(&theirs, &dir, Some(PRIVATE))?;
                Ok(false)
            }
            Kind::Modified => {
                self.put(&parent, &names)?;
                Ok(true)
            }
        }
    }

    /// Puts the snapshot's entry at `names` in place of whatever the tree
    /// has there.
    fn put(&mut self, parent: &Dir, names: &[&OsStr]) -> Result<()> {
        let Some(last) = names.last() else {
            return Ok(());
        };
        let theirs = self.snap_entry(names)?;
        if self.overlay && parent.stat_at(last)?.is_some() {
            // Where the tree only hides (or replaces) what a lower layer
            // has, and that is the snapshot's very entry, removing the
            // tree's is enough.
            if let Lookup::Found(dir) = Tree::open(self.now)?.find(&names[..names.len() - 1])? {
                if let Some(under) = dir.child_below_top(last)? {
                    if under.same_as(&theirs)? {
                        return parent.remove_tree(last);
                    }
                }
            }
        }
        let slot = self.slot()?;
        // Names of one file in the snapshot stay one file: the second is
        // a link to the copy of the first.
        let st = theirs.stat();
        let key =
            (theirs.kind == EntryType::File && st.st_nlink > 1).then_some((st.st_dev, st.st_ino));
        match key.and_then(|k| self.copied.get(&k)) {
            Some((dir, name)) => dir.link(name, &slot, last)?,
            None => {
                copy::copy_out(
                    &theirs,
                    self.staging.dir(),
                    slot.path().file_name().unwrap_or_default(),
                    &CopyOptions::default(),
                )?;
            }
        }
        if self.overlay && theirs.kind == EntryType::Directory {
            // Over a whiteout or a non-directory, or opaque: nothing below
            // may show through (the snapshot has exactly this).
            slot.open_dir(last)?
                .set_attr(&format!("{PRIVATE}opaque"), b"y")?;
        }
        if parent.stat_at(last)?.is_some() {
            slot.exchange(last, parent, last)?;
        } else {
            slot.rename_new(last, parent, last)?;
        }
        if let Some(key) = key {
            self.copied
                .entry(key)
                .or_insert((parent.try_clone()?, last.to_os_string()));
        }
        Ok(())
    }

    /// A new empty directory in the staging directory.
    fn slot(&mut self) -> Result<Dir> {
        self.slots += 1;
        self.staging.dir().mkdir(self.slots.to_string(), 0o700)
    }

    fn snap_entry(&self, names: &[&OsStr]) -> Result<view::Entry> {
        match self.snap.find(names)? {
            Lookup::Found(entry) => Ok(entry),
            _ => Err(Error::new(
                ErrorKind::Other,
                format!(
                    "undoing {}: the snapshot no longer has it",
                    escape_bytes(&absolute(names), true)
                ),
            )),
        }
    }

    /// The directory `above` of the tree, copying up what it lacks.
    fn parent_dir(&mut self, above: &[&OsStr]) -> Result<Dir> {
        let mut dir = self.upper.try_clone()?;
        for end in 1..=above.len() {
            let name = above[end - 1];
            let here = &above[..end];
            let st = dir.stat_at(name)?;
            let kind = st.map(|st| st.st_mode & libc::S_IFMT);
            dir = match kind {
                Some(libc::S_IFDIR) => dir.open_dir(name)?,
                None => {
                    // The container sees a lower layer's directory here (its
                    // metadata is copied up), or none (the snapshot's).
                    let source = match Tree::open(self.now)?.find(here)? {
                        Lookup::Found(ours) if ours.kind == EntryType::Directory => ours,
                        _ => self.snap_entry(here)?,
                    };
                    let new = dir.mkdir(name, 0o700)?;
                    copy::copy_dir_metadata(&source, &new, None)?;
                    new
                }
                Some(libc::S_IFCHR) if self.overlay && st.is_some_and(|s| s.st_rdev == 0) => {
                    // Whited out: the snapshot's directory, hiding the lower one.
                    let theirs = self.snap_entry(here)?;
                    let slot = self.slot()?;
                    let new = slot.mkdir(name, 0o700)?;
                    copy::copy_dir_metadata(&theirs, &new, None)?;
                    new.set_attr(&format!("{PRIVATE}opaque"), b"y")?;
                    slot.exchange(name, &dir, name)?;
                    dir.open_dir(name)?
                }
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::Unsafe,
                        format!(
                            "undoing below {}: it is not a directory",
                            dir.join(name).display()
                        ),
                    ))
                }
            };
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_others_are_dropped_and_dots_refused() {
        let got = normalise(&[
            b"/etc/nginx".to_vec(),
            b"etc/nginx/nginx.conf".to_vec(),
            b"/var//lib/".to_vec(),
            b"/etc/nginx".to_vec(),
            b"/etc/nginx2".to_vec(),
        ])
        .expect("normalise");
        let shown: Vec<Vec<u8>> = got.iter().map(|p| absolute(&as_names(p))).collect();
        assert_eq!(
            shown,
            [
                b"/etc/nginx".to_vec(),
                b"/etc/nginx2".to_vec(),
                b"/var/lib".to_vec()
            ]
        );
        assert!(normalise(&[b"/etc/../root".to_vec()]).is_err());
        assert!(below(b"/etc/x", b"/etc"));
        assert!(!below(b"/etcx", b"/etc"));
        assert!(!below(b"/etc", b"/etc"));
        assert!(below(b"/etc", b"/"));
    }
}
