//! Layers: a copy of a tree stored as its changes from an older copy.
//!
//! `U` is a tree to capture (a container's overlay upper, or a whole root
//! filesystem) over read-only `lowers` (none for a whole root filesystem);
//! `A`, the anchor, is an older copy of `U`, complete and immutable. A
//! layer `L` of `U` over `A` is a tree such that:
//!
//! - the overlay `L:A:lowers` shows what `U:lowers` shows (so a snapshot
//!   stored as a layer is mounted and started with `A` as one more lower);
//! - [`flatten`] of `L` over `A` gives back `U` entry for entry, with every
//!   field the copier preserves (atimes aside: an unchanged file keeps the
//!   atime it had when `A` was taken, as a hard-linked one does).
//!
//! `L` holds:
//! - whole copies of the entries of `U` that differ from `A` (type, mode,
//!   owner, size, mtime to the nanosecond, device number, extended
//!   attributes; contents and symlink targets too with
//!   [`Compare::Checksum`]) and of those `A` lacks; a file with several
//!   names goes with all of them or none, so its names stay one inode
//!   (see [`plan`]);
//! - directories that exist in both, when something below them is in `L`
//!   or their own metadata differs (and so every directory above such a
//!   one), with `U`'s metadata and never opaque (so `A`'s entries below
//!   still show);
//! - a whiteout for each entry of `A` that `U` no longer has. These are
//!   listed in the plan ([`LayerPlan::removed`]): flattening drops them
//!   instead of copying them, since `U` has nothing there.
//!
//! What a layer cannot say makes [`plan`] answer [`Plan::Full`]: an entry
//! of `A` that `U` lacks while one of the `lowers` has it (a whiteout would
//! hide the lower's too), a directory that was opaque in `A` and is not in
//! `U`, a whiteout `U` lost, a mount point in `U`, an opaque root. The
//! caller then takes a whole copy.
//!
//! Nothing here follows a symlink: entries are looked at by name relative
//! to directories opened one name at a time from the roots with
//! `O_NOFOLLOW` (so no path length limit applies); the copies are made by
//! the copier, under its own invariants. What the comparison keeps is
//! bounded by the tree, not by its depth squared: a directory waiting to be
//! compared holds its name and its parents' descriptors, shared, and what
//! the plan lists is a tree of names ([`Selection`]).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;

use super::index::{ADir, AnchorIndex};
use super::{
    allocated, copy_dir, file_type, held, is_opaque_attr, is_whiteout, list_dir, lock,
    open_verified, read_link, read_xattrs, same_contents, same_xattrs, stat_entry,
    xattr_list_len_at, Compare, CopyOptions, CopyStats, Node, Select, Selection, Xattrs, DIR, FILE,
};
use crate::dir::{open_rel, raise_fd_limit, Dir, RelPath};
use crate::error::{Error, Result};
use crate::progress::{cancelled, Cancel, Counts, Progress};

/// Threads comparing the two trees.
const WORKERS: usize = 2;

/// What [`plan`] found.
#[derive(Debug)]
pub enum Plan {
    Layer(LayerPlan),
    /// A layer cannot express the change; the reason, for the user.
    Full(String),
}

/// The entries of `U` that make up its layer over `A`.
#[derive(Debug)]
pub struct LayerPlan {
    /// What the copy of `U` takes: entries copied whole, and the
    /// directories passed through to reach them or whose own metadata
    /// changed.
    select: Selection,
    /// Entries of `A` that `U` no longer has, sorted: whited out in the
    /// layer, dropped when flattening.
    pub removed: Vec<PathBuf>,
    removed_at: Vec<RelPath>,
    /// Directories of `U` that are opaque over `lowers`, and whose copies
    /// in the layer must not be (they would hide `A`).
    opaque: Vec<RelPath>,
    /// The status of directories that get whiteouts, to put their times back.
    parents: Vec<(RelPath, FileStat)>,
    /// Entries in `U`, as the copier counts them, and bytes of its regular
    /// files (each inode once).
    pub tree_entries: u64,
    pub tree_bytes: u64,
    /// Allocated bytes of `U`'s entries below its root, each inode once.
    pub tree_allocated: u64,
}

/// [`plan_at`] for trees named by the caller, trusted up to their last
/// component; with `indexed`, the anchor is read into an [`AnchorIndex`]
/// first, as for a running container's snapshot.
pub fn plan(
    upper: &Path,
    anchor: &Path,
    lowers: &[PathBuf],
    compare: Compare,
    anchor_names: Option<&HashMap<u64, u64>>,
    indexed: bool,
    cancel: Option<&Cancel>,
) -> Result<Plan> {
    let lowers = lowers
        .iter()
        .map(|l| Dir::open_given(l, "comparing"))
        .collect::<Result<Vec<_>>>()?;
    let anchor = Dir::open_given(anchor, "comparing")?;
    let index = match indexed {
        true => AnchorIndex::build(&anchor, cancel)?,
        false => None,
    };
    plan_at(
        &Dir::open_given(upper, "comparing")?,
        &anchor,
        &lowers,
        compare,
        anchor_names,
        index.as_ref(),
        cancel,
    )
}

/// Compares `upper` with its older copy `anchor` (both over `lowers`) and
/// says what its layer holds, or why it cannot be one.
///
/// A file with several names is left out only if every one of its names
/// is unchanged and is a name of one inode of the anchor that has exactly
/// those names there: as `anchor_names` says (the anchor's inodes with
/// several names and their counts, as its copy recorded them), or without
/// it, as its link count says.
///
/// With `index` (of `anchor`, see [`AnchorIndex`]), the anchor's entries
/// are looked up there instead of read; it is not used to compare by
/// contents.
#[allow(clippy::too_many_arguments)]
pub fn plan_at(
    upper: &Dir,
    anchor: &Dir,
    lowers: &[Dir],
    compare: Compare,
    anchor_names: Option<&HashMap<u64, u64>>,
    index: Option<&AnchorIndex>,
    cancel: Option<&Cancel>,
) -> Result<Plan> {
    let noatime = AtomicBool::new(true);
    // The layer's root always gets the upper's metadata.
    let (u_root, u_st, _) = held(upper)?;
    let a_root = match index.filter(|_| compare == Compare::QuickCheck) {
        Some(index) => ADir::Indexed(index, 0),
        None => ADir::Open(held(anchor)?.0),
    };
    let u_x = read_xattrs(Node::Fd(&u_root), upper.path())?;
    if opaque(&u_x) {
        return Ok(Plan::Full(format!(
            "{} is marked opaque",
            upper.path().display()
        )));
    }
    let planner = Planner {
        upper: upper.path(),
        anchor: anchor.path(),
        lowers: lowers.iter().map(Dir::file).collect(),
        compare,
        noatime,
        cancel,
        dev: u_st.st_dev,
        jobs: Mutex::new((
            vec![Job {
                pair: None,
                roots: Some(Arc::new(Pair {
                    u: u_root,
                    a: a_root,
                })),
                rel: RelPath::root(),
                opaque: false,
                st: u_st,
            }],
            0,
        )),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        outcome: Mutex::new(None),
        found: Mutex::new(Found::default()),
        groups: Mutex::new(HashMap::new()),
    };
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| planner.work());
        }
    });
    match planner
        .outcome
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
    {
        Some(Err(e)) => return Err(e),
        Some(Ok(why)) => return Ok(Plan::Full(why)),
        None => {}
    }
    let mut found = planner
        .found
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let groups = planner
        .groups
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    for group in groups.into_values() {
        let first = group.names.first().and_then(|(_, a)| *a);
        let unchanged = group.names.len() as u64 == group.nlink
            && group.names.iter().all(|(_, a)| *a == first)
            && first.is_some_and(|(ino, nlink)| match anchor_names {
                Some(names) => names.get(&ino) == Some(&group.nlink),
                None => nlink == group.nlink,
            });
        if !unchanged {
            found
                .whole
                .extend(group.names.into_iter().map(|(rel, _)| rel));
        }
    }
    // A directory whose own metadata changed is reached through its
    // parents, as is anything copied whole or whited out: setting an
    // entry in the selection descends into every directory above it.
    let mut select = Selection::new(Select::Skip);
    for rel in &found.pass {
        select.set(&rel.names(), Select::Descend, Select::Skip);
    }
    for rel in &found.whole {
        select.set(&rel.names(), Select::All, Select::Skip);
    }
    for rel in &found.removed {
        if let Some(parent) = rel.parent().filter(|p| !p.is_root()) {
            select.set(&parent.names(), Select::Descend, Select::Skip);
        }
    }
    let passed = |rel: &RelPath| rel.is_root() || select.descends(&rel.names());
    let opaque_dirs = found.opaque.into_iter().filter(|p| passed(p)).collect();
    let parents = found
        .parents
        .into_iter()
        .filter(|(p, _)| passed(p))
        .collect();
    let mut removed: Vec<(PathBuf, RelPath)> = found
        .removed
        .into_iter()
        .map(|r| (r.to_path(), r))
        .collect();
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    let (removed, removed_at) = removed.into_iter().unzip();
    Ok(Plan::Layer(LayerPlan {
        select,
        removed,
        removed_at,
        opaque: opaque_dirs,
        parents,
        tree_entries: found.entries,
        tree_bytes: found.bytes,
        tree_allocated: found.allocated,
    }))
}

impl LayerPlan {
    /// What the layer takes of `U` ([`Selection::listed`]).
    pub fn selected(&self) -> Vec<(PathBuf, Select)> {
        self.select.listed()
    }
}

/// [`make_layer_at`] for trees named by the caller.
pub fn make_layer(
    upper: &Path,
    dst: &Path,
    plan: &LayerPlan,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    let (upper, parent, name) = super::open_src_and_dst_parent(upper, dst)?;
    make_layer_at(&upper, &parent, name, plan, opts)
}

/// Builds the layer `plan` describes from `upper` as `dst_name` in
/// `dst_parent` (which must not exist yet), sharing unchanged files with
/// `opts.reference` as the copier does.
pub fn make_layer_at(
    upper: &Dir,
    dst_parent: &Dir,
    dst_name: &OsStr,
    plan: &LayerPlan,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    let mut stats = copy_dir(
        upper,
        dst_parent,
        dst_name,
        &CopyOptions {
            select: Some(&plan.select),
            merge: false,
            ..*opts
        },
    )?;
    let root = dst_parent.open_dir(dst_name)?;
    let dst = root.path();
    let open = |rel: &RelPath| {
        open_rel(root.file(), &rel.names(), OFlag::O_RDONLY)
            .map_err(|e| Error::sys("opening directory", &rel.under(dst), e))
    };
    for rel in &plan.removed_at {
        let (Some(parent), Some(name)) = (rel.parent(), rel.name()) else {
            continue;
        };
        let dir = open(parent)?;
        stat::mknodat(
            Some(dir.as_raw_fd()),
            name,
            SFlag::S_IFCHR,
            Mode::empty(),
            0,
        )
        .map_err(|e| Error::sys("creating a whiteout at", &rel.under(dst), e))?;
        stats.entries += 1;
    }
    for rel in &plan.opaque {
        let dir = open(rel)?;
        for name in super::OPAQUE {
            match xattr::FileExt::remove_xattr(&dir, name) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => {
                    return Err(Error::io(
                        "removing extended attributes of",
                        &rel.under(dst),
                        e,
                    ))
                }
            }
        }
    }
    for (rel, st) in &plan.parents {
        let dir = open(rel)?;
        stat::futimens(
            dir.as_raw_fd(),
            &TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        )
        .map_err(|e| Error::sys("setting times of", &rel.under(dst), e))?;
    }
    Ok(stats)
}

/// Reports a second pass's progress after a first one's.
pub(super) struct After<'a> {
    pub(super) inner: &'a dyn Progress,
    pub(super) before: Counts,
}

impl Progress for After<'_> {
    fn advance(&self, done: Counts, total: Option<Counts>) {
        let done = Counts {
            entries: self.before.entries + done.entries,
            bytes: self.before.bytes + done.bytes,
        };
        self.inner.advance(done, total);
    }
}

/// [`flatten_at`] for trees named by the caller.
pub fn flatten(
    layer: &Path,
    anchor: &Path,
    removed: &[PathBuf],
    dst: &Path,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    let (layer, parent, name) = super::open_src_and_dst_parent(layer, dst)?;
    let anchor = Dir::open_given(anchor, "copying")?;
    flatten_at(&layer, &anchor, removed, &parent, name, opts)
}

/// Copies `layer` over `anchor` as `dst_name` in `dst_parent` (which must
/// not exist yet): what the captured tree was. `removed` are the layer's
/// whiteouts that stand for entries the tree no longer had
/// ([`LayerPlan::removed`]). Of `opts`, only the progress sink, the total
/// and the cancel flag count; progress runs over both passes.
pub fn flatten_at(
    layer: &Dir,
    anchor: &Dir,
    removed: &[PathBuf],
    dst_parent: &Dir,
    dst_name: &OsStr,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    let Shadows {
        below,
        mut above,
        merged,
    } = shadows(layer, anchor)?;
    for rel in removed {
        let names: Vec<&OsStr> = rel.iter().collect();
        if !names.is_empty() {
            above.set(&names, Select::Skip, Select::All);
        }
    }
    let first = copy_dir(
        anchor,
        dst_parent,
        dst_name,
        &CopyOptions {
            select: Some(&below),
            progress: opts.progress,
            total: opts.total,
            cancel: opts.cancel,
            keep_link_atimes: true,
            ..CopyOptions::default()
        },
    )?;
    let after_first = opts.progress.map(|inner| After {
        inner,
        before: Counts {
            entries: first.entries,
            bytes: first.bytes,
        },
    });
    let second = copy_dir(
        layer,
        dst_parent,
        dst_name,
        &CopyOptions {
            select: Some(&above),
            merge: true,
            progress: after_first.as_ref().map(|p| p as &dyn Progress),
            total: opts.total,
            cancel: opts.cancel,
            keep_link_atimes: true,
            ..CopyOptions::default()
        },
    )?;
    let mut skipped_mounts = first.skipped_mounts;
    skipped_mounts.extend(second.skipped_mounts);
    skipped_mounts.sort();
    Ok(CopyStats {
        // Directories in both are counted once.
        entries: first.entries + second.entries - merged,
        bytes: first.bytes + second.bytes,
        created_bytes: first.created_bytes + second.created_bytes,
        skipped_mounts,
        ..CopyStats::default()
    })
}

/// The entries of `anchor` that every one of `layers` hides (replaces,
/// removes with a whiteout, or covers with an opaque directory), topmost
/// first and only the topmost: what no overlay of one of the layers over
/// the anchor shows, and flattening none of them takes. The walk is of the
/// layers, not of the anchor, so it costs what the layers hold; a path
/// listed may not exist in the anchor. With no layers, nothing is hidden.
pub fn hidden_by_all(anchor: &Dir, layers: &[&Dir]) -> Result<Vec<RelPath>> {
    /// What one layer makes of an entry of the anchor.
    #[derive(Clone, Copy)]
    enum Seen {
        Hides,
        Shows,
        /// A directory that merges: ask about each entry (this node).
        Below(usize),
    }
    if layers.is_empty() {
        return Ok(Vec::new());
    }
    let selections = layers
        .iter()
        .map(|l| shadows(l, anchor).map(|s| s.below))
        .collect::<Result<Vec<Selection>>>()?;
    let mut hidden = Vec::new();
    let mut todo = vec![(RelPath::root(), vec![Seen::Below(0); selections.len()])];
    while let Some((rel, seen)) = todo.pop() {
        // An entry some layer does not mention shows through it; so only
        // the names the first merging layer lists can be hidden by all.
        let Some((first, first_node)) = seen.iter().enumerate().find_map(|(i, s)| match s {
            Seen::Below(n) => Some((i, *n)),
            _ => None,
        }) else {
            continue;
        };
        for (name, _) in selections[first].children(first_node) {
            let below: Vec<Seen> = seen
                .iter()
                .zip(&selections)
                .map(|(s, sel)| match *s {
                    Seen::Below(node) => match sel.lookup(node, name) {
                        (Select::Skip, _) => Seen::Hides,
                        (Select::Descend, Some(child)) => Seen::Below(child),
                        _ => Seen::Shows,
                    },
                    other => other,
                })
                .collect();
            if below.iter().any(|s| matches!(s, Seen::Shows)) {
                continue;
            }
            let child = rel.child(name);
            if below.iter().all(|s| matches!(s, Seen::Hides)) {
                hidden.push(child);
            } else {
                todo.push((child, below));
            }
        }
    }
    Ok(hidden)
}

/// What flattening copies of each tree.
struct Shadows {
    /// Of the anchor: everything but the entries the layer replaces, and
    /// the directories it merges with, entered.
    below: Selection,
    /// Of the layer: everything, the directories that merge entered.
    above: Selection,
    /// How many directories merge (they are in both copies).
    merged: u64,
}

/// Walks the layer: its entries replace the anchor's at the same path,
/// except its directories that merge with the anchor's (not opaque, over a
/// directory). Depth first, one descriptor pair and listing a level.
fn shadows(layer: &Dir, anchor: &Dir) -> Result<Shadows> {
    struct Level {
        l: File,
        a: File,
        rel: RelPath,
        todo: Vec<OsString>,
    }
    let mut below = Selection::new(Select::All);
    let mut above = Selection::new(Select::All);
    let mut merged = 0;
    let (l, _, _) = held(layer)?;
    let (a, _, _) = held(anchor)?;
    let todo = names_of(&l, layer.path())?;
    let mut stack = vec![Level {
        l,
        a,
        rel: RelPath::root(),
        todo,
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.todo.pop() else {
            stack.pop();
            continue;
        };
        let child = level.rel.child(&name);
        let l_path = || child.under(layer.path());
        let (l_st, _) =
            stat_entry(&level.l, &name).map_err(|e| Error::sys("inspecting", &l_path(), e))?;
        let a_st = stat_entry(&level.a, &name).ok().map(|(st, _)| st);
        let a_is_dir = a_st.is_some_and(|st| file_type(&st) == SFlag::S_IFDIR);
        let l_is_dir = file_type(&l_st) == SFlag::S_IFDIR;
        let l_opaque = l_is_dir && opaque(&read_xattrs(Node::At(&level.l, &name), &l_path())?);
        let names = child.names();
        if l_is_dir && a_is_dir && !l_opaque {
            below.set(&names, Select::Descend, Select::All);
            above.set(&names, Select::Descend, Select::All);
            merged += 1;
            let noatime = AtomicBool::new(true);
            let (l_dir, _) = open_verified(Some(&level.l), &name, &l_st, DIR, &noatime)
                .map_err(|e| e.into_error(&l_path()))?;
            let a_path = child.under(anchor.path());
            let a_dir = match a_st {
                Some(st) => {
                    open_verified(Some(&level.a), &name, &st, DIR, &noatime)
                        .map_err(|e| e.into_error(&a_path))?
                        .0
                }
                None => continue,
            };
            let todo = names_of(&l_dir, &l_path())?;
            raise_fd_limit(2 * stack.len() as u64 + 2);
            stack.push(Level {
                l: l_dir,
                a: a_dir,
                rel: child,
                todo,
            });
        } else {
            below.set(&names, Select::Skip, Select::All);
        }
    }
    Ok(Shadows {
        below,
        above,
        merged,
    })
}

fn names_of(dir: &File, path: &Path) -> Result<Vec<OsString>> {
    Ok(list_dir(dir, path)?.into_iter().map(|(n, _)| n).collect())
}

/// The directories at one place in `U` and `A`.
struct Pair<'a> {
    u: File,
    a: ADir<'a>,
}

/// A directory to compare: `rel` below both roots, found in the
/// directories `pair` (its parents') or, for the roots, `roots` itself.
struct Job<'a> {
    pair: Option<Arc<Pair<'a>>>,
    roots: Option<Arc<Pair<'a>>>,
    rel: RelPath,
    /// `U`'s directory there is opaque (and so is `A`'s).
    opaque: bool,
    /// `U`'s directory's status.
    st: FileStat,
}

#[derive(Default)]
struct Found {
    whole: Vec<RelPath>,
    pass: Vec<RelPath>,
    removed: Vec<RelPath>,
    opaque: Vec<RelPath>,
    parents: Vec<(RelPath, FileStat)>,
    entries: u64,
    bytes: u64,
    /// Allocated bytes, each inode once.
    allocated: u64,
}

struct Planner<'a> {
    upper: &'a Path,
    anchor: &'a Path,
    lowers: Vec<&'a File>,
    compare: Compare,
    noatime: AtomicBool,
    dev: u64,
    /// Directories to compare, last found first (so the walk goes depth
    /// first and few parents stay open), and how many threads are
    /// comparing one.
    jobs: Mutex<(Vec<Job<'a>>, usize)>,
    wake: Condvar,
    stop: AtomicBool,
    /// Checked before each directory: once set, planning fails with
    /// [`crate::error::ErrorKind::Cancelled`].
    cancel: Option<&'a Cancel>,
    /// Set once: a failure, or why a layer cannot do.
    outcome: Mutex<Option<Result<String>>>,
    found: Mutex<Found>,
    /// Files with several names, by inode number in `U`.
    groups: Mutex<HashMap<u64, Group>>,
}

/// The names of one inode of `U` with several, as far as seen.
#[derive(Default)]
struct Group {
    nlink: u64,
    /// Each name, and the inode and link count of the same name in `A`
    /// when that is unchanged.
    names: Vec<(RelPath, Option<(u64, u64)>)>,
}

/// What a directory's entry turned out to be.
enum Verdict {
    Same,
    Whole,
    Descend { opaque: bool, st: FileStat },
    Full(String),
}

impl<'a> Planner<'a> {
    fn work(&self) {
        let mut found = Found::default();
        loop {
            let job = {
                let mut jobs = lock(&self.jobs);
                loop {
                    if self.stop.load(Relaxed) {
                        break None;
                    }
                    if let Some(job) = jobs.0.pop() {
                        jobs.1 += 1;
                        break Some(job);
                    }
                    if jobs.1 == 0 {
                        break None;
                    }
                    jobs = self.wake.wait(jobs).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(job) = job else {
                break;
            };
            let mut more = Vec::new();
            let done = if self.cancel.is_some_and(Cancel::is_cancelled) {
                Err(cancelled())
            } else {
                self.visit(job, &mut found, &mut more)
            };
            {
                let mut jobs = lock(&self.jobs);
                // Pushed in reverse, so the first listed is done first.
                more.reverse();
                jobs.0.extend(more);
                jobs.1 -= 1;
                raise_fd_limit(2 * jobs.0.len() as u64 + 16);
            }
            match done {
                Ok(None) => {}
                Ok(Some(why)) => self.finish(Ok(why)),
                Err(e) => self.finish(Err(e)),
            }
            self.wake.notify_all();
        }
        self.wake.notify_all();
        let mut all = lock(&self.found);
        all.whole.append(&mut found.whole);
        all.pass.append(&mut found.pass);
        all.removed.append(&mut found.removed);
        all.opaque.append(&mut found.opaque);
        all.parents.append(&mut found.parents);
        all.entries += found.entries;
        all.bytes += found.bytes;
        all.allocated += found.allocated;
    }

    fn finish(&self, outcome: Result<String>) {
        lock(&self.outcome).get_or_insert(outcome);
        self.stop.store(true, Relaxed);
    }

    /// Opens a job's directories in both trees, by name from its parents'.
    fn open(&self, job: &Job<'a>) -> Result<Arc<Pair<'a>>> {
        if let Some(roots) = &job.roots {
            return Ok(Arc::clone(roots));
        }
        let (Some(pair), Some(name)) = (&job.pair, job.rel.name()) else {
            return Err(Error::new(
                crate::error::ErrorKind::Other,
                "comparing: a directory without a parent",
            ));
        };
        let u_path = || job.rel.under(self.upper);
        let (u, _) = open_verified(Some(&pair.u), name, &job.st, DIR, &self.noatime)
            .map_err(|e| e.into_error(&u_path()))?;
        let a_path = job.rel.under(self.anchor);
        let a_st = pair
            .a
            .stat(name)
            .map_err(|e| Error::sys("inspecting", &a_path, e))?;
        let a = pair.a.open(name, &a_st, &self.noatime, &a_path)?;
        Ok(Arc::new(Pair { u, a }))
    }

    /// Compares one directory's entries; returns why a layer cannot do, if so.
    fn visit(
        &self,
        job: Job<'a>,
        found: &mut Found,
        more: &mut Vec<Job<'a>>,
    ) -> Result<Option<String>> {
        let pair = self.open(&job)?;
        // This directory's paths, once: each entry's is one join away.
        let u_path = job.rel.under(self.upper);
        let a_dir_path = job.rel.under(self.anchor);
        let mut a_names: HashSet<OsString> = pair.a.names(&a_dir_path)?.into_iter().collect();
        let mut removed_any = false;
        for (name, _) in super::list_dir(&pair.u, &u_path)? {
            if self.stop.load(Relaxed) {
                return Ok(None);
            }
            let rel = job.rel.child(&name);
            let in_anchor = a_names.remove(&name);
            let paths = (u_path.join(&name), a_dir_path.join(&name));
            match self.compare_entry(&pair.u, &pair.a, &name, &rel, &paths, in_anchor, found)? {
                Verdict::Same => {}
                Verdict::Whole => found.whole.push(rel),
                Verdict::Descend { opaque, st } => {
                    more.push(Job {
                        pair: Some(Arc::clone(&pair)),
                        roots: None,
                        rel,
                        opaque,
                        st,
                    });
                }
                Verdict::Full(why) => return Ok(Some(why)),
            }
        }
        for name in a_names {
            let rel = job.rel.child(&name);
            let a_path = rel.under(self.anchor);
            let a_st = pair
                .a
                .stat(&name)
                .map_err(|e| Error::sys("inspecting", &a_path, e))?;
            if is_whiteout(&a_st) {
                return Ok(Some(format!(
                    "the whiteout {} was removed from the tree",
                    rel.under(self.upper).display()
                )));
            }
            if !job.opaque && self.lowers_have(&rel) {
                return Ok(Some(format!(
                    "{} was removed from the tree, showing the lower layer's again",
                    rel.under(self.upper).display()
                )));
            }
            if name.to_str().is_none() || job.rel.names().iter().any(|n| n.to_str().is_none()) {
                return Ok(Some(format!(
                    "{} was removed and its name is not UTF-8",
                    a_path.display()
                )));
            }
            found.removed.push(rel);
            removed_any = true;
        }
        if removed_any {
            found.parents.push((job.rel.clone(), job.st));
        }
        if job.opaque {
            found.opaque.push(job.rel);
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn compare_entry(
        &self,
        u_dir: &File,
        a_dir: &ADir,
        name: &OsStr,
        rel: &RelPath,
        (u_path, a_path): &(PathBuf, PathBuf),
        in_anchor: bool,
        found: &mut Found,
    ) -> Result<Verdict> {
        let (u_st, mount_root) =
            stat_entry(u_dir, name).map_err(|e| Error::sys("inspecting", u_path, e))?;
        if u_st.st_dev != self.dev || mount_root == Some(true) {
            return Ok(Verdict::Full(format!(
                "{} is a mount point",
                u_path.display()
            )));
        }
        let u_kind = file_type(&u_st);
        found.entries += 1;
        let multi = multi_name(&u_st);
        if multi {
            // Decided once every name is seen (see `plan`).
            let anchor = match (in_anchor, a_dir.stat(name)) {
                (true, Ok(a_st))
                    if self.same_non_dir(u_dir, a_dir, name, &u_st, &a_st, u_path, a_path)? =>
                {
                    Some((a_st.st_ino, a_st.st_nlink))
                }
                _ => None,
            };
            self.add_name(&u_st, rel.clone(), anchor, found);
            return Ok(Verdict::Same);
        }
        found.allocated += allocated(&u_st);
        if u_kind == SFlag::S_IFREG {
            found.bytes += u_st.st_size as u64;
        }
        if u_kind == SFlag::S_IFDIR {
            // Everything below counts too, whatever is copied.
            if !in_anchor {
                self.count_below(u_dir, name, rel, found)?;
                return Ok(Verdict::Whole);
            }
        } else if !in_anchor {
            return Ok(Verdict::Whole);
        }
        let Ok(a_st) = a_dir.stat(name) else {
            if u_kind == SFlag::S_IFDIR {
                self.count_below(u_dir, name, rel, found)?;
            }
            return Ok(Verdict::Whole);
        };
        let a_kind = file_type(&a_st);
        if u_kind != SFlag::S_IFDIR {
            return Ok(
                if self.same_non_dir(u_dir, a_dir, name, &u_st, &a_st, u_path, a_path)? {
                    Verdict::Same
                } else {
                    Verdict::Whole
                },
            );
        }
        let u_x = read_xattrs(Node::At(u_dir, name), u_path)?;
        let u_opaque = opaque(&u_x);
        if a_kind != SFlag::S_IFDIR {
            self.count_below(u_dir, name, rel, found)?;
            if !u_opaque && self.lowers_have(rel) {
                return Ok(Verdict::Full(format!(
                    "the directory {} replaced a file and shows the lower layer's directory",
                    u_path.display()
                )));
            }
            return Ok(Verdict::Whole);
        }
        let a_x = a_dir.xattrs(name, a_path)?;
        let a_opaque = opaque(&a_x);
        if u_opaque && !a_opaque {
            self.count_below(u_dir, name, rel, found)?;
            return Ok(Verdict::Whole);
        }
        if !u_opaque && a_opaque {
            return Ok(Verdict::Full(format!(
                "the directory {} is no longer opaque",
                u_path.display()
            )));
        }
        if !self.same_dir_meta(&u_st, &a_st, &u_x, &a_x) {
            found.pass.push(rel.clone());
        }
        Ok(Verdict::Descend {
            opaque: u_opaque,
            st: u_st,
        })
    }

    /// Counts what is below a directory copied whole: depth first, one
    /// descriptor and listing a level.
    fn count_below(
        &self,
        u_dir: &File,
        name: &OsStr,
        rel: &RelPath,
        found: &mut Found,
    ) -> Result<()> {
        let path = rel.under(self.upper);
        let (st, _) = stat_entry(u_dir, name).map_err(|e| Error::sys("inspecting", &path, e))?;
        let (dir, _) = open_verified(Some(u_dir), name, &st, DIR, &self.noatime)
            .map_err(|e| e.into_error(&path))?;
        let todo = names_of(&dir, &path)?;
        let mut stack = vec![(dir, rel.clone(), todo)];
        while let Some((dir, here, todo)) = stack.last_mut() {
            let Some(name) = todo.pop() else {
                stack.pop();
                continue;
            };
            let Ok((st, _)) = stat_entry(dir, &name) else {
                continue;
            };
            found.entries += 1;
            if !multi_name(&st) {
                found.allocated += allocated(&st);
            }
            let child = here.child(&name);
            match file_type(&st) {
                SFlag::S_IFDIR if st.st_dev == self.dev => {
                    let child_path = child.under(self.upper);
                    let (sub, _) = open_verified(Some(dir), &name, &st, DIR, &self.noatime)
                        .map_err(|e| e.into_error(&child_path))?;
                    let todo = names_of(&sub, &child_path)?;
                    raise_fd_limit(stack.len() as u64 + 1);
                    stack.push((sub, child, todo));
                }
                // Copied with the directory: its other names must be too.
                _ if multi_name(&st) => self.add_name(&st, child, None, found),
                SFlag::S_IFREG => found.bytes += st.st_size as u64,
                _ => {}
            }
        }
        Ok(())
    }

    /// Records a name of an inode with several; its bytes count once.
    fn add_name(&self, st: &FileStat, rel: RelPath, anchor: Option<(u64, u64)>, found: &mut Found) {
        let mut groups = lock(&self.groups);
        let group = groups.entry(st.st_ino).or_default();
        if group.names.is_empty() {
            found.allocated += allocated(st);
            if file_type(st) == SFlag::S_IFREG {
                found.bytes += st.st_size as u64;
            }
        }
        group.nlink = st.st_nlink;
        group.names.push((rel, anchor));
    }

    fn same_dir_meta(&self, u: &FileStat, a: &FileStat, u_x: &Xattrs, a_x: &Xattrs) -> bool {
        (u.st_mode, u.st_uid, u.st_gid, u.st_mtime, u.st_mtime_nsec)
            == (a.st_mode, a.st_uid, a.st_gid, a.st_mtime, a.st_mtime_nsec)
            && same_xattrs(u_x.clone(), a_x.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn same_non_dir(
        &self,
        u_dir: &File,
        a_dir: &ADir,
        name: &OsStr,
        u: &FileStat,
        a: &FileStat,
        u_path: &Path,
        a_path: &Path,
    ) -> Result<bool> {
        let same_status = (u.st_mode, u.st_uid, u.st_gid, u.st_size, u.st_rdev)
            == (a.st_mode, a.st_uid, a.st_gid, a.st_size, a.st_rdev)
            && (u.st_mtime, u.st_mtime_nsec) == (a.st_mtime, a.st_mtime_nsec);
        if !same_status {
            return Ok(false);
        }
        let kind = file_type(u);
        // Reading a link can move its atime, in the anchor too: only the
        // checksum compares targets.
        if kind == SFlag::S_IFLNK && self.compare == Compare::Checksum {
            // The anchor is a snapshot: its atimes stay as captured.
            let u_target = read_link(u_dir, name, u, false, u_path)?;
            if u_target != read_link(a_dir.file(a_path)?, name, a, true, a_path)? {
                return Ok(false);
            }
        }
        let no_xattrs = xattr_list_len_at(u_dir, name) == Some(0);
        if !(no_xattrs && a_dir.no_xattrs(name) == Some(true)) {
            let u_x = read_xattrs(Node::At(u_dir, name), u_path)?;
            let a_x = a_dir.xattrs(name, a_path)?;
            if !same_xattrs(u_x, a_x) {
                return Ok(false);
            }
        }
        if self.compare == Compare::Checksum && kind == SFlag::S_IFREG {
            let open = |dir: &File, st: &FileStat, path: &Path| {
                open_verified(Some(dir), name, st, FILE, &self.noatime)
                    .map_err(|e| e.into_error(path))
            };
            let (u_file, _) = open(u_dir, u, u_path)?;
            let (a_file, _) = open(a_dir.file(a_path)?, a, a_path)?;
            // A read error counts as a change: the entry is copied.
            return Ok(same_contents(&u_file, &a_file, u.st_size as u64).unwrap_or(false));
        }
        Ok(true)
    }

    /// Whether any lower has an entry at `rel` (or cannot tell for sure),
    /// looked up one name at a time.
    fn lowers_have(&self, rel: &RelPath) -> bool {
        let (Some(parent), Some(name)) = (rel.parent(), rel.name()) else {
            return true;
        };
        let parent = parent.names();
        self.lowers
            .iter()
            .any(|lower| match open_rel(lower, &parent, OFlag::O_PATH) {
                Ok(dir) => {
                    match stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(_) => true,
                        Err(Errno::ENOENT) => false,
                        Err(_) => true,
                    }
                }
                Err(Errno::ENOENT | Errno::ENOTDIR) => false,
                Err(_) => true,
            })
    }
}

/// A non-directory with several names (whiteouts aside: the kernel links
/// them to one inode outside the tree, and they are never linked).
fn multi_name(st: &FileStat) -> bool {
    file_type(st) != SFlag::S_IFDIR && st.st_nlink > 1 && !is_whiteout(st)
}

fn opaque(xattrs: &Xattrs) -> bool {
    xattrs.iter().any(|(n, v)| is_opaque_attr(n) && v == b"y")
}
