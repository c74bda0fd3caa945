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
//!   or their own metadata differs, with `U`'s metadata and never opaque
//!   (so `A`'s entries below still show);
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
//! to directories opened beneath the roots with `RESOLVE_NO_SYMLINKS`; the
//! copies are made by the copier, under its own invariants.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;

use super::{
    beneath, copy_tree_with, file_type, is_opaque_attr, is_whiteout, lock, lstat_dir,
    open_verified, read_link, read_xattrs, same_contents, same_xattrs, stat_entry,
    xattr_list_len_at, Compare, CopyOptions, CopyStats, Node, Select, Xattrs, DIR, FILE,
};
use crate::{Error, Result};

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
#[derive(Debug, Default)]
pub struct LayerPlan {
    /// Copied whole, with everything below.
    whole: HashSet<PathBuf>,
    /// Directories created so that entries below can be, or whose own
    /// metadata changed.
    pass: HashSet<PathBuf>,
    /// Entries of `A` that `U` no longer has, sorted: whited out in the
    /// layer, dropped when flattening.
    pub removed: Vec<PathBuf>,
    /// Directories of `U` that are opaque over `lowers`, and their copies
    /// in the layer must not be (they would hide `A`).
    opaque: Vec<PathBuf>,
    /// The status of directories that get whiteouts, to put their times back.
    parents: Vec<(PathBuf, FileStat)>,
    /// Entries in `U`, as the copier counts them, and bytes of its regular
    /// files (each inode once).
    pub tree_entries: u64,
    pub tree_bytes: u64,
}

impl LayerPlan {
    fn select(&self, rel: &Path) -> Select {
        if self.whole.contains(rel) {
            Select::All
        } else if self.pass.contains(rel) {
            Select::Descend
        } else {
            Select::Skip
        }
    }
}

/// Compares `upper` with its older copy `anchor` (both over `lowers`) and
/// says what its layer holds, or why it cannot be one.
///
/// A file with several names is left out only if every one of its names
/// is unchanged and is a name of one inode of the anchor that has exactly
/// those names there: as `anchor_names` says (the anchor's inodes with
/// several names and their counts, as its copy recorded them), or without
/// it, as its link count says.
pub fn plan(
    upper: &Path,
    anchor: &Path,
    lowers: &[PathBuf],
    compare: Compare,
    anchor_names: Option<&HashMap<u64, u64>>,
) -> Result<Plan> {
    let noatime = AtomicBool::new(true);
    let open_root = |path: &Path| -> Result<(File, FileStat)> {
        let st = lstat_dir(path, "comparing")?;
        let (dir, _) = open_verified(None, path.as_os_str(), &st, DIR, &noatime)
            .map_err(|e| e.into_error(path))?;
        Ok((dir, st))
    };
    // The layer's root always gets the upper's metadata.
    let (u_root, u_st) = open_root(upper)?;
    let (a_root, _) = open_root(anchor)?;
    // A lower that cannot be opened has everything, as far as removals go.
    let lowers = lowers
        .iter()
        .map(|l| {
            let flags = OFlag::O_PATH | DIR | OFlag::O_NOFOLLOW;
            crate::copy::open_at(None, l.as_os_str(), flags, Mode::empty()).ok()
        })
        .collect::<Vec<_>>();
    let u_x = read_xattrs(Node::Fd(&u_root), upper)?;
    if opaque(&u_x) {
        return Ok(Plan::Full(format!("{} is marked opaque", upper.display())));
    }
    let planner = Planner {
        upper,
        anchor,
        u_root,
        a_root,
        lowers,
        compare,
        noatime,
        dev: u_st.st_dev,
        jobs: Mutex::new((
            vec![Job {
                rel: PathBuf::new(),
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
    let mut out = LayerPlan {
        tree_entries: found.entries,
        tree_bytes: found.bytes,
        ..LayerPlan::default()
    };
    // A directory whose own metadata changed is reached through its
    // parents, as is anything copied whole or whited out.
    let mut pass = found.pass.clone();
    for p in found
        .whole
        .iter()
        .chain(found.removed.iter())
        .chain(found.pass.iter())
    {
        pass.extend(p.ancestors().skip(1).map(Path::to_path_buf));
    }
    pass.remove(Path::new(""));
    out.opaque = found
        .opaque
        .into_iter()
        .filter(|p| pass.contains(p))
        .collect();
    out.parents = found
        .parents
        .into_iter()
        .filter(|(p, _)| p.as_os_str().is_empty() || pass.contains(p))
        .collect();
    out.pass = pass;
    out.whole = found.whole.into_iter().collect();
    out.removed = found.removed;
    out.removed.sort();
    Ok(Plan::Layer(out))
}

/// Builds the layer `plan` describes from `upper` at `dst` (which must not
/// exist), sharing unchanged files with `opts.reference` as the copier does.
pub fn make_layer(
    upper: &Path,
    dst: &Path,
    plan: &LayerPlan,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    let select = |rel: &Path| plan.select(rel);
    let mut stats = copy_tree_with(
        upper,
        dst,
        &CopyOptions {
            select: Some(&select),
            merge: false,
            ..*opts
        },
    )?;
    let root = File::open(dst).map_err(|e| Error::io("opening", dst, e))?;
    for rel in &plan.removed {
        let (parent, name) = split(rel);
        let dir = open_beneath(&root, parent, dst)?;
        stat::mknodat(
            Some(dir.as_raw_fd()),
            name,
            SFlag::S_IFCHR,
            Mode::empty(),
            0,
        )
        .map_err(|e| Error::sys("creating a whiteout at", &dst.join(rel), e))?;
        stats.entries += 1;
    }
    for rel in &plan.opaque {
        let dir = open_beneath(&root, rel, dst)?;
        for name in super::OPAQUE {
            match xattr::FileExt::remove_xattr(&dir, name) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => {
                    return Err(Error::io(
                        "removing extended attributes of",
                        &dst.join(rel),
                        e,
                    ))
                }
            }
        }
    }
    for (rel, st) in &plan.parents {
        let dir = open_beneath(&root, rel, dst)?;
        stat::futimens(
            dir.as_raw_fd(),
            &TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        )
        .map_err(|e| Error::sys("setting times of", &dst.join(rel), e))?;
    }
    Ok(stats)
}

/// Copies `layer` over `anchor` into `dst` (which must not exist): what
/// the captured tree was. `removed` are the layer's whiteouts that stand
/// for entries the tree no longer had ([`LayerPlan::removed`]).
pub fn flatten(
    layer: &Path,
    anchor: &Path,
    removed: &[PathBuf],
    dst: &Path,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<CopyStats> {
    let (shadowed, merged) = shadows(layer, anchor)?;
    let below = |rel: &Path| {
        if merged.contains(rel) {
            Select::Descend
        } else if shadowed.contains(rel) {
            Select::Skip
        } else {
            Select::All
        }
    };
    let removed: HashSet<&Path> = removed.iter().map(PathBuf::as_path).collect();
    let above = |rel: &Path| {
        if removed.contains(rel) {
            Select::Skip
        } else if merged.contains(rel) {
            Select::Descend
        } else {
            Select::All
        }
    };
    let first = copy_tree_with(
        anchor,
        dst,
        &CopyOptions {
            select: Some(&below),
            progress,
            keep_link_atimes: true,
            ..CopyOptions::default()
        },
    )?;
    let after_first = |bytes: u64| {
        if let Some(p) = progress {
            p(first.bytes + bytes);
        }
    };
    let second = copy_tree_with(
        layer,
        dst,
        &CopyOptions {
            select: Some(&above),
            merge: true,
            progress: Some(&after_first),
            keep_link_atimes: true,
            ..CopyOptions::default()
        },
    )?;
    let mut skipped_mounts = first.skipped_mounts;
    skipped_mounts.extend(second.skipped_mounts);
    skipped_mounts.sort();
    Ok(CopyStats {
        // Directories in both are counted once.
        entries: first.entries + second.entries - merged.len() as u64,
        bytes: first.bytes + second.bytes,
        created_bytes: first.created_bytes + second.created_bytes,
        skipped_mounts,
        ..CopyStats::default()
    })
}

/// The layer's entries that replace the anchor's at the same path
/// (`shadowed`), and its directories that merge with the anchor's
/// (`merged`: not opaque, over a directory).
fn shadows(layer: &Path, anchor: &Path) -> Result<(HashSet<PathBuf>, HashSet<PathBuf>)> {
    let l_root = File::open(layer).map_err(|e| Error::io("opening", layer, e))?;
    let a_root = File::open(anchor).map_err(|e| Error::io("opening", anchor, e))?;
    let mut shadowed = HashSet::new();
    let mut merged = HashSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let l_dir = open_beneath(&l_root, &rel, layer)?;
        let a_dir = open_beneath(&a_root, &rel, anchor)?;
        for (name, _) in super::list_dir(&l_dir, &layer.join(&rel))? {
            let child = rel.join(&name);
            let (l_st, _) = stat_entry(&l_dir, &name)
                .map_err(|e| Error::sys("inspecting", &layer.join(&child), e))?;
            let a_is_dir =
                stat_entry(&a_dir, &name).is_ok_and(|(st, _)| file_type(&st) == SFlag::S_IFDIR);
            let l_opaque = file_type(&l_st) == SFlag::S_IFDIR
                && opaque(&read_xattrs(Node::At(&l_dir, &name), &layer.join(&child))?);
            if file_type(&l_st) == SFlag::S_IFDIR && a_is_dir && !l_opaque {
                merged.insert(child.clone());
                stack.push(child);
            } else {
                shadowed.insert(child);
            }
        }
    }
    Ok((shadowed, merged))
}

/// A directory to compare: `rel` below both roots.
struct Job {
    rel: PathBuf,
    /// `U`'s directory there is opaque (and so is `A`'s).
    opaque: bool,
    /// `U`'s directory's status.
    st: FileStat,
}

#[derive(Default)]
struct Found {
    whole: Vec<PathBuf>,
    pass: HashSet<PathBuf>,
    removed: Vec<PathBuf>,
    opaque: Vec<PathBuf>,
    parents: Vec<(PathBuf, FileStat)>,
    entries: u64,
    bytes: u64,
}

struct Planner<'a> {
    upper: &'a Path,
    anchor: &'a Path,
    u_root: File,
    a_root: File,
    lowers: Vec<Option<File>>,
    compare: Compare,
    noatime: AtomicBool,
    dev: u64,
    /// Directories to compare, and how many threads are comparing one.
    jobs: Mutex<(Vec<Job>, usize)>,
    wake: Condvar,
    stop: AtomicBool,
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
    names: Vec<(PathBuf, Option<(u64, u64)>)>,
}

/// What a directory's entry turned out to be.
enum Verdict {
    Same,
    Whole,
    Descend(Job),
    Full(String),
}

impl Planner<'_> {
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
            let done = self.visit(job, &mut found, &mut more);
            {
                let mut jobs = lock(&self.jobs);
                jobs.0.extend(more);
                jobs.1 -= 1;
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
        all.pass.extend(found.pass);
        all.removed.append(&mut found.removed);
        all.opaque.append(&mut found.opaque);
        all.parents.append(&mut found.parents);
        all.entries += found.entries;
        all.bytes += found.bytes;
    }

    fn finish(&self, outcome: Result<String>) {
        lock(&self.outcome).get_or_insert(outcome);
        self.stop.store(true, Relaxed);
    }

    /// Compares one directory's entries; returns why a layer cannot do, if so.
    fn visit(&self, job: Job, found: &mut Found, more: &mut Vec<Job>) -> Result<Option<String>> {
        let u_path = self.upper.join(&job.rel);
        let u_dir = open_beneath(&self.u_root, &job.rel, self.upper)?;
        let a_dir = open_beneath(&self.a_root, &job.rel, self.anchor)?;
        let mut a_names: HashSet<OsString> = super::list_dir(&a_dir, &self.anchor.join(&job.rel))?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut removed_any = false;
        for (name, _) in super::list_dir(&u_dir, &u_path)? {
            if self.stop.load(Relaxed) {
                return Ok(None);
            }
            let rel = job.rel.join(&name);
            let in_anchor = a_names.remove(&name);
            match self.compare_entry(&u_dir, &a_dir, &name, &rel, in_anchor, found)? {
                Verdict::Same => {}
                Verdict::Whole => found.whole.push(rel),
                Verdict::Descend(child) => more.push(child),
                Verdict::Full(why) => return Ok(Some(why)),
            }
        }
        for name in a_names {
            let rel = job.rel.join(&name);
            let a_path = self.anchor.join(&rel);
            let (a_st, _) =
                stat_entry(&a_dir, &name).map_err(|e| Error::sys("inspecting", &a_path, e))?;
            if is_whiteout(&a_st) {
                return Ok(Some(format!(
                    "the whiteout {} was removed from the tree",
                    self.upper.join(&rel).display()
                )));
            }
            if !job.opaque && self.lowers_have(&rel) {
                return Ok(Some(format!(
                    "{} was removed from the tree, showing the lower layer's again",
                    self.upper.join(&rel).display()
                )));
            }
            if rel.to_str().is_none() {
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

    fn compare_entry(
        &self,
        u_dir: &File,
        a_dir: &File,
        name: &OsStr,
        rel: &Path,
        in_anchor: bool,
        found: &mut Found,
    ) -> Result<Verdict> {
        let u_path = self.upper.join(rel);
        let (u_st, mount_root) =
            stat_entry(u_dir, name).map_err(|e| Error::sys("inspecting", &u_path, e))?;
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
            let anchor = match (in_anchor, stat_entry(a_dir, name)) {
                (true, Ok((a_st, _)))
                    if self.same_non_dir(
                        u_dir,
                        a_dir,
                        name,
                        &u_st,
                        &a_st,
                        &u_path,
                        &self.anchor.join(rel),
                    )? =>
                {
                    Some((a_st.st_ino, a_st.st_nlink))
                }
                _ => None,
            };
            self.add_name(&u_st, rel, anchor, found);
            return Ok(Verdict::Same);
        }
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
        let a_path = self.anchor.join(rel);
        let Ok((a_st, _)) = stat_entry(a_dir, name) else {
            if u_kind == SFlag::S_IFDIR {
                self.count_below(u_dir, name, rel, found)?;
            }
            return Ok(Verdict::Whole);
        };
        let a_kind = file_type(&a_st);
        if u_kind != SFlag::S_IFDIR {
            return Ok(
                if self.same_non_dir(u_dir, a_dir, name, &u_st, &a_st, &u_path, &a_path)? {
                    Verdict::Same
                } else {
                    Verdict::Whole
                },
            );
        }
        let u_x = read_xattrs(Node::At(u_dir, name), &u_path)?;
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
        let a_x = read_xattrs(Node::At(a_dir, name), &a_path)?;
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
            found.pass.insert(rel.to_path_buf());
        }
        Ok(Verdict::Descend(Job {
            rel: rel.to_path_buf(),
            opaque: u_opaque,
            st: u_st,
        }))
    }

    /// Counts what is below a directory copied whole.
    fn count_below(&self, u_dir: &File, name: &OsStr, rel: &Path, found: &mut Found) -> Result<()> {
        let path = self.upper.join(rel);
        let (st, _) = stat_entry(u_dir, name).map_err(|e| Error::sys("inspecting", &path, e))?;
        let (dir, _) = open_verified(Some(u_dir), name, &st, DIR, &self.noatime)
            .map_err(|e| e.into_error(&path))?;
        let mut stack = vec![(dir, path)];
        while let Some((dir, path)) = stack.pop() {
            for (name, _) in super::list_dir(&dir, &path)? {
                let child = path.join(&name);
                let Ok((st, _)) = stat_entry(&dir, &name) else {
                    continue;
                };
                found.entries += 1;
                match file_type(&st) {
                    SFlag::S_IFDIR if st.st_dev == self.dev => {
                        let (sub, _) = open_verified(Some(&dir), &name, &st, DIR, &self.noatime)
                            .map_err(|e| e.into_error(&child))?;
                        stack.push((sub, child));
                    }
                    // Copied with the directory: its other names must be too.
                    _ if multi_name(&st) => {
                        let rel = child.strip_prefix(self.upper).unwrap_or(&child);
                        self.add_name(&st, rel, None, found);
                    }
                    SFlag::S_IFREG => found.bytes += st.st_size as u64,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Records a name of an inode with several; its bytes count once.
    fn add_name(&self, st: &FileStat, rel: &Path, anchor: Option<(u64, u64)>, found: &mut Found) {
        let mut groups = lock(&self.groups);
        let group = groups.entry(st.st_ino).or_default();
        if group.names.is_empty() && file_type(st) == SFlag::S_IFREG {
            found.bytes += st.st_size as u64;
        }
        group.nlink = st.st_nlink;
        group.names.push((rel.to_path_buf(), anchor));
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
        a_dir: &File,
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
            if u_target != read_link(a_dir, name, a, true, a_path)? {
                return Ok(false);
            }
        }
        let no_xattrs = |dir: &File| xattr_list_len_at(dir, name) == Some(0);
        if !(no_xattrs(u_dir) && no_xattrs(a_dir)) {
            let u_x = read_xattrs(Node::At(u_dir, name), u_path)?;
            let a_x = read_xattrs(Node::At(a_dir, name), a_path)?;
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
            let (a_file, _) = open(a_dir, a, a_path)?;
            return Ok(same_contents(&u_file, &a_file, u.st_size as u64));
        }
        Ok(true)
    }

    /// Whether any lower has an entry at `rel` (or cannot tell for sure).
    fn lowers_have(&self, rel: &Path) -> bool {
        self.lowers.iter().any(|lower| match lower {
            None => true,
            Some(lower) => match beneath(lower, rel, OFlag::O_PATH) {
                Ok(_) => true,
                Err(Errno::ENOENT | Errno::ENOTDIR) => false,
                Err(_) => true,
            },
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

/// `rel`'s parent (empty for the root's entries) and last name.
fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or_default(),
    )
}

/// The directory `rel` below `root` (whose path is `root_path`), opened
/// read-only without following any symlink or touching its atime.
fn open_beneath(root: &File, rel: &Path, root_path: &Path) -> Result<File> {
    let flags = OFlag::O_RDONLY | DIR;
    beneath(root, rel, flags | OFlag::O_NOATIME)
        .or_else(|e| match e {
            Errno::EPERM => beneath(root, rel, flags),
            e => Err(e),
        })
        .map_err(|e| Error::sys("opening directory", &root_path.join(rel), e))
}
