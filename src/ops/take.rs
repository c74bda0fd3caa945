//! Taking a snapshot: copies the container's overlay delta (or, for a
//! directory-backed container, its whole rootfs) into a staging directory
//! in the snapdir, as a layer over an older snapshot when the changes are
//! small; writes a config that stacks the copy read-only under a scratch
//! upper, records metadata, registers the snapshot with its bases, and
//! renames the whole into place.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};

use super::copying::{copy_tree, copying};
use super::require_root;
use crate::copy::{AnchorIndex, Compare, CopyStats, LayerPlan, Plan};
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::config::{random_mac, Retarget};
use crate::lxc::container::bases_of_lowers;
use crate::lxc::container::Tree;
use crate::lxc::files::copy_config_files;
use crate::lxc::{Container, LxcConfig, Rootfs, State};
use crate::names::{host_name_for, ContainerName, SnapshotName};
use crate::notice::Notice;
use crate::progress::Counts;
use crate::store::{
    self, Backing, Layer, Metadata, NameLock, NewSnapshot, Snapshot, Store, TreeFingerprint,
    FORMAT_VERSION, WHOLE_FORMAT_VERSION,
};

/// How a snapshot relates to the previous snapshots of the same container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Increment {
    /// Stored as a layer: only what changed (type, size, mtime, mode,
    /// owner, xattrs) since an older snapshot, whose tree goes below it;
    /// where a layer cannot do, as `Whole`.
    #[default]
    QuickCheck,
    /// Like `QuickCheck`, comparing file contents instead of size and mtime.
    Checksum,
    /// `QuickCheck`, but a whole tree: files unchanged since the previous
    /// snapshot are hard links to its copies.
    Whole,
    /// `Whole`, comparing file contents.
    WholeChecksum,
    /// A whole tree; every file is copied.
    Full,
}

impl Increment {
    /// Whether the snapshot may be stored as a layer.
    pub fn layered(self) -> bool {
        matches!(self, Increment::QuickCheck | Increment::Checksum)
    }

    /// Whether unchanged files are found by their contents.
    pub fn by_contents(self) -> bool {
        matches!(self, Increment::Checksum | Increment::WholeChecksum)
    }
}

/// What to snapshot, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeOptions {
    pub container: ContainerName,
    /// Checked text ([`store::validate_comment`]); empty is none.
    pub comment: Option<String>,
    pub increment: Increment,
    /// A running container is frozen while its tree is read (else it is
    /// refused).
    pub freeze: bool,
    /// When the snapshot expires.
    pub expires_at: Option<DateTime<FixedOffset>>,
    /// Taken by `auto` under a policy.
    pub auto: bool,
}

/// How a snapshot is taken, beyond what it is of.
#[derive(Debug, Clone, Default)]
pub(super) struct Taking {
    /// Freeze a running container while its tree is read.
    pub freeze: bool,
    pub expires_at: Option<DateTime<FixedOffset>>,
    pub auto: bool,
}

/// Snapshots a stopped container; returns the new snapshot.
pub fn take(store: &Store, opts: &TakeOptions) -> Result<Snapshot> {
    require_root("taking a snapshot")?;
    let source = Container::open(store.lxcpath()?, &opts.container)?;
    store.create_root()?;
    let lock = store.lock(&opts.container)?;
    take_as(
        store,
        &source,
        &lock,
        opts.comment.as_deref(),
        opts.increment,
        None,
        &Taking {
            freeze: opts.freeze,
            expires_at: opts.expires_at,
            auto: opts.auto,
        },
    )
    .map_err(|e| super::when_cancelled(e, "no snapshot was taken"))
}

/// Snapshots `source`, whose lock the caller holds: finds what to
/// capture, tidies up after runs that died, chooses how to store the new
/// snapshot, copies, writes its config and metadata, and publishes it.
/// A safety snapshot of the locked container before something changes it
/// in place (a rollback, an undo); cancelled, it says the container was
/// not touched.
pub(super) fn take_backup(
    store: &Store,
    container: &Container,
    lock: &NameLock,
    comment: &str,
) -> Result<SnapshotName> {
    take_locked(store, container, lock, Some(comment), Increment::QuickCheck)
        .map(|taken| taken.name)
        .map_err(|e| super::when_cancelled(e, &format!("{} was not touched", container.name)))
}

pub(super) fn take_locked(
    store: &Store,
    source: &Container,
    lock: &NameLock,
    comment: Option<&str>,
    increment: Increment,
) -> Result<Snapshot> {
    take_as(
        store,
        source,
        lock,
        comment,
        increment,
        None,
        &Taking::default(),
    )
}

/// A snapshot another tool made, taken over as a snapshot of the locked
/// container: `source` is that snapshot, an LXC container itself.
pub(super) struct Adoption<'a> {
    /// A snapshot of the original lxc-snap, which the new one replaces in
    /// place: it takes its name and is stored over the older ones only.
    pub replace: Option<&'a Snapshot>,
    /// When it was taken.
    pub created: DateTime<FixedOffset>,
    /// The lxcpath of the container it is a snapshot of.
    pub lxcpath: PathBuf,
    /// Where it came from, recorded so that it is adopted once.
    pub from: Option<PathBuf>,
}

/// The key of [`Adoption::from`] in `lxc-snap.json`.
pub(super) const ADOPTED_FROM: &str = "adopted_from";

/// [`take_locked`], or with `adoption` the snapshot it describes taken
/// over (see [`Adoption`]): a replacement is built beside what it
/// replaces and swapped in.
pub(super) fn take_as(
    store: &Store,
    source: &Container,
    lock: &NameLock,
    comment: Option<&str>,
    increment: Increment,
    adoption: Option<&Adoption>,
    taking: &Taking,
) -> Result<Snapshot> {
    let replacing = adoption.and_then(|a| a.replace);
    let mut src = Source::of(store, source)?;
    src.family = lock.name().clone();
    src.before = replacing.map(|r| r.name.number());
    store.remove_leftovers(lock)?;
    store.remove_unneeded_held(lock, false)?;
    // What a running container's snapshot compares with is read before
    // it is frozen, which halves the work done while it waits.
    let ahead = if taking.freeze && source.state()? == State::Running {
        ReadAhead::of(store, &src, increment)?
    } else {
        None
    };
    // Frozen from here until the tree is copied, and thawed before
    // anything else happens, the removal of what a failure left included.
    let frozen = if taking.freeze {
        let frozen = source.freeze_if_running()?;
        if frozen.is_some() {
            src.tree.dir.sync_filesystem()?;
        }
        frozen
    } else {
        source.ensure_stopped()?;
        None
    };
    // Held out here, so that a failure removes it only after the thaw.
    let mut begun = None;
    let copied = (|| {
        let new = begun.insert(match replacing {
            Some(r) => store.begin_as(lock, &r.name)?,
            None => store.begin(lock)?,
        });
        let private = new.dir().mkdir("private", 0o700)?;
        private.mkdir("scratch", 0o700)?;
        let how = Storage::choose(store, &src, increment, ahead.as_ref())?;
        let stats = how.copy(store, &src, &private)?;
        Ok((how, stats))
    })();
    if let Some(frozen) = frozen {
        let millis = frozen.thaw()?.as_millis() as u64;
        store.observer().notice(Notice::Frozen {
            container: source.name.to_string(),
            millis,
        });
    }
    let (how, stats) = copied?;
    let Some(new) = begun else {
        return Err(Error::new(
            ErrorKind::Other,
            "taking a snapshot: nothing was begun",
        ));
    };
    let hook = match reset_hook(store) {
        Ok(hook) => Some(hook),
        Err(e) if e.kind() == ErrorKind::Unsafe => {
            store.observer().notice(Notice::NoResetHook {
                snapshot: new.name.to_string(),
                why: e.to_string(),
            });
            None
        }
        Err(e) => return Err(e),
    };
    let config = src.config_for(&new, &how, hook.as_deref())?;
    let created = match adoption {
        Some(a) => a.created,
        None => store.now(),
    };
    new.dir()
        .write_file(store::TS_FILE, store::ts_text(&created).as_bytes(), 0o644)?;
    store::write_comment(new.dir(), comment.filter(|c| !c.is_empty()))?;
    let mut meta = src.metadata(&created, &how, &stats)?;
    meta.expires_at = taking.expires_at.map(store::expiry_text);
    meta.auto = taking.auto;
    if let Some(a) = adoption {
        meta.lxcpath = a.lxcpath.clone();
        if let Some(from) = &a.from {
            meta.other.insert(
                ADOPTED_FROM.to_string(),
                from.to_string_lossy().into_owned().into(),
            );
        }
    }
    store::write_metadata(new.dir(), &meta)?;

    // An original lxc-snap clone also names the container it was cloned
    // from; a snapshot needs only its lowers' containers.
    let mut bases = match adoption {
        Some(_) => Vec::new(),
        None => source.rdepends()?,
    };
    if bases.is_empty() {
        bases = bases_of_lowers(&src.lowers, store.lxcpath()?);
    }
    // A layer needs its anchor as a clone needs its origin: registered
    // there, lxc-destroy refuses to remove the anchor under it. (A held
    // anchor is no container LXC could destroy.)
    if let (Some(_), Some(anchor)) = (&how.plan, &how.anchor) {
        if !anchor.meta.held {
            bases.push(store.entry(&anchor.name));
        }
    }
    // The last moment a cancel still leaves nothing behind.
    store.cancel().check()?;
    // What replaces a snapshot registers only where that one was not:
    // taken back on failure, no registration of the old one may go.
    let old_bases = match replacing {
        Some(r) => store.registered_bases(r)?,
        None => Vec::new(),
    };
    let new_bases: Vec<_> = bases
        .iter()
        .filter(|b| !old_bases.contains(b))
        .cloned()
        .collect();
    let registered = store.finish_container_dir_with(
        new.dir(),
        &config,
        &bases,
        &new_bases,
        store.entry(&new.name),
    )?;
    let snapshot = match replacing {
        Some(_) => store.commit_replacing(new, lock, stats.created_bytes)?,
        None => store.commit(new, lock, stats.created_bytes)?,
    };
    registered.keep();
    for stale in old_bases.iter().filter(|b| !bases.contains(b)) {
        store.unregister(stale, &snapshot.name)?;
    }
    if let (Some(_), Some(anchor)) = (&how.plan, &how.anchor) {
        if !anchor.meta.held {
            store.refresh_hidden(anchor)?;
        }
    }
    match (&how.reference, &how.reference_below) {
        (Some(reference), None) => store.now_shares(reference, &stats)?,
        // Linked from a layer and its anchor, which already share with
        // others: what each now holds alone takes a walk.
        (Some(reference), Some(below)) => {
            store.refresh_used(reference)?;
            store.refresh_used(below)?;
        }
        (None, _) => {}
    }
    Ok(snapshot)
}

/// What a snapshot of a container captures: its own tree, and the lowers
/// below it, held open.
struct Source<'c> {
    container: &'c Container,
    tree: Tree,
    backing: Backing,
    /// `lxc.rootfs.path` or `lxc.rootfs`, and its prefix, as spelled.
    rootfs_key: String,
    prefix: String,
    lower_dirs: Vec<Dir>,
    /// As resolved: what the metadata records and later runs compare.
    lowers: Vec<PathBuf>,
    /// The container whose snapshot this is (the source's own name, but
    /// for an original lxc-snap clone being adopted).
    family: ContainerName,
    /// Only snapshots numbered below this may be linked to or stored over.
    before: Option<u64>,
}

impl<'c> Source<'c> {
    fn of(store: &Store, container: &'c Container) -> Result<Source<'c>> {
        let (rootfs_key, _) = container
            .config
            .rootfs_entry()
            .unwrap_or(("lxc.rootfs.path", ""));
        let rootfs_key = rootfs_key.to_string();
        let tree = container.tree().map_err(|e| {
            if e.kind() == ErrorKind::Unsupported {
                Error::new(e.kind(), format!("cannot snapshot {}", e.message())).with_hint(
                    "lxc-snap supports overlay (overlay: or overlayfs:) and directory-backed containers",
                )
            } else {
                e
            }
        })?;
        let (backing, lowers, prefix) = match &tree.rootfs {
            Rootfs::Overlay { prefix, lowers, .. } => {
                (Backing::Overlay, lowers.clone(), prefix.clone())
            }
            Rootfs::Dir { prefix, .. } => (Backing::Dir, Vec::new(), prefix.clone()),
            Rootfs::Unsupported { kind } => {
                return Err(unsupported(
                    &container.name,
                    &format!("its rootfs backend is {kind}"),
                ))
            }
        };
        let lower_dirs = store.open_lowers(&lowers)?;
        let lowers = lower_dirs.iter().map(|d| d.path().to_path_buf()).collect();
        Ok(Source {
            container,
            tree,
            backing,
            rootfs_key,
            prefix,
            lower_dirs,
            lowers,
            family: container.name.clone(),
            before: None,
        })
    }

    /// The container's config rewritten for the snapshot `new`: its tree
    /// read-only (over its anchor's, for a layer) under a scratch upper
    /// that `reset_hook` empties at each start, its own name (and host
    /// name, a DNS label) and new MACs; the files it names copied beside
    /// it.
    fn config_for(
        &self,
        new: &NewSnapshot,
        how: &Storage,
        reset_hook: Option<&str>,
    ) -> Result<LxcConfig> {
        let final_dir = new.final_path();
        let mut stacked = vec![store::tree_path(&final_dir, self.backing)];
        if let (Some(_), Some(anchor)) = (&how.plan, &how.anchor) {
            stacked.push(anchor.tree());
        }
        stacked.extend(self.lowers.iter().cloned());
        let rootfs = Rootfs::Overlay {
            prefix: Rootfs::overlay_prefix_for(&self.rootfs_key, &self.prefix),
            lowers: stacked,
            upper: store::scratch_upper(&final_dir),
        };
        let name = new.name.to_string();
        let retarget = Retarget {
            old_dirs: &self.container.dir_spellings(),
            new_dir: &final_dir,
            new_name: &name,
            host_name: &host_name_for(&name),
            rootfs: &rootfs,
        };
        let mut retargeted = self.container.config.retarget(&retarget, random_mac);
        copy_config_files(&retargeted, self.container.dir(), &self.tree.rel, new.dir())?;
        retargeted.config.set_reset_hook(reset_hook);
        Ok(retargeted.config)
    }

    /// The new snapshot's `lxc-snap.json`.
    fn metadata(
        &self,
        created: &DateTime<FixedOffset>,
        how: &Storage,
        stats: &CopyStats,
    ) -> Result<Metadata> {
        let layer = how
            .plan
            .as_ref()
            .zip(how.anchor.as_ref())
            .map(|(plan, anchor)| Layer {
                anchor: anchor.name.to_string(),
                entries: stats.entries,
                bytes: stats.bytes,
                removed: plan.removed.clone(),
            });
        let (files, bytes, refer) = match &how.plan {
            Some(plan) => (plan.tree_entries, plan.tree_bytes, plan.tree_allocated),
            None => (
                stats.entries,
                stats.bytes,
                stats.created_bytes + stats.linked_allocated,
            ),
        };
        Ok(Metadata {
            format_version: if layer.is_some() {
                FORMAT_VERSION
            } else {
                WHOLE_FORMAT_VERSION
            },
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            container: self.family.to_string(),
            lxcpath: self.container.lxcpath.clone(),
            created: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            backing: self.backing,
            rootfs_key: self.rootfs_key.clone(),
            rootfs_prefix: self.prefix.clone(),
            lowers: self.lowers.clone(),
            files,
            bytes,
            refer_bytes: Some(refer),
            hidden_bytes: None,
            // Nothing links to the inodes the copy created yet.
            used_bytes: stats.created_bytes,
            pinned: false,
            expires_at: None,
            auto: false,
            lower_fingerprints: self
                .lower_dirs
                .iter()
                .map(TreeFingerprint::of)
                .collect::<Result<_>>()?,
            multi_name_inodes: Some(stats.multi_name_inodes.clone()),
            layer,
            held: false,
            legacy: None,
            other: serde_json::Map::new(),
        })
    }
}

/// The anchor a layer would be compared with, read ahead
/// ([`AnchorIndex`]).
struct ReadAhead {
    anchor: SnapshotName,
    index: AnchorIndex,
}

impl ReadAhead {
    /// Reads the anchor [`Storage::choose`] will choose, if it would
    /// compare by status with one; `None` when not, or too large.
    fn of(store: &Store, src: &Source, increment: Increment) -> Result<Option<ReadAhead>> {
        if !increment.layered() || increment.by_contents() {
            return Ok(None);
        }
        let Some(previous) =
            store.previous_before(&src.family, src.backing, &src.lowers, src.before)?
        else {
            return Ok(None);
        };
        // Why there is none is told when the snapshot is taken.
        let Ok(anchor) = store.anchor_for(&previous) else {
            return Ok(None);
        };
        let index = AnchorIndex::build(&store.tree_dir(&anchor)?, Some(store.cancel()))?;
        Ok(index.map(|index| ReadAhead {
            anchor: anchor.name.clone(),
            index,
        }))
    }
}

/// How the new snapshot is stored: as a layer over an anchor (`plan`), or
/// whole; sharing unchanged files with `reference` (and, when that is a
/// layer copied whole, with its anchor `reference_below`).
struct Storage {
    anchor: Option<Snapshot>,
    plan: Option<LayerPlan>,
    reference: Option<Snapshot>,
    reference_below: Option<Snapshot>,
    compare: Compare,
    /// What a whole copy is about to do, when known.
    estimate: Option<Counts>,
}

impl Storage {
    /// Snapshots are immutable, so a file unchanged since the previous
    /// snapshot of this container (on the same base) can share its inode,
    /// and a snapshot can be stored as its changes since an older one
    /// while they stay small ([`Store::anchor_for`]).
    fn choose(
        store: &Store,
        src: &Source,
        increment: Increment,
        ahead: Option<&ReadAhead>,
    ) -> Result<Storage> {
        let name = &src.family;
        let previous = match increment {
            Increment::Full => None,
            _ => store.previous_before(name, src.backing, &src.lowers, src.before)?,
        };
        let compare = if increment.by_contents() {
            Compare::Checksum
        } else {
            Compare::QuickCheck
        };
        let anchor = previous
            .as_ref()
            .filter(|_| increment.layered())
            .and_then(|p| match store.anchor_for(p) {
                Ok(anchor) => Some(anchor),
                Err(why) => {
                    if let Some(why) = why {
                        store.observer().notice(Notice::WholeSnapshot { why });
                    }
                    None
                }
            });
        let plan = match &anchor {
            Some(anchor) => match crate::copy::plan_layer_at(
                &src.tree.dir,
                &store.tree_dir(anchor)?,
                &src.lower_dirs,
                compare,
                anchor
                    .meta
                    .multi_name_inodes
                    .as_ref()
                    .map(|names| names.iter().copied().collect())
                    .as_ref(),
                ahead.filter(|a| a.anchor == anchor.name).map(|a| &a.index),
                Some(store.cancel()),
            )? {
                Plan::Layer(plan) => Some(plan),
                Plan::Full(why) => {
                    store.observer().notice(Notice::WholeSnapshot { why });
                    None
                }
            },
            None => None,
        };
        if src.backing == Backing::Dir && plan.is_none() {
            store.observer().notice(Notice::DirectoryBacked {
                container: name.to_string(),
            });
        }
        // A whole copy after a layer shares every file unchanged since it,
        // wherever the previous snapshot keeps it: in the layer, or in the
        // anchor the layer is over. (A new layer only holds what differs
        // from the anchor, so it shares with the previous layer alone.)
        let reference_below = match (&plan, &previous) {
            (None, Some(p)) if p.meta.layer.is_some() => store.anchor_of(p),
            _ => None,
        };
        // How much a whole copy has to do, for its progress line: about
        // what the last snapshot captured, or (for the first, when the
        // progress is shown) a quick count.
        let estimate = if plan.is_some() {
            None
        } else {
            let last = match &previous {
                Some(p) => Some(p.clone()),
                None => store.previous_before(name, src.backing, &src.lowers, src.before)?,
            };
            match last {
                Some(p) => Some(Counts {
                    entries: p.meta.files,
                    bytes: p.meta.bytes,
                }),
                None if store.observer().shows_progress() => Some(quick_count(&src.tree.dir)?),
                None => None,
            }
        };
        Ok(Storage {
            anchor,
            plan,
            reference: previous,
            reference_below,
            compare,
            estimate,
        })
    }

    /// Copies the source's tree into `private` as this storage says.
    fn copy(&self, store: &Store, src: &Source, private: &Dir) -> Result<CopyStats> {
        let tree = |s: &Option<Snapshot>| s.as_ref().map(|s| store.tree_dir(s)).transpose();
        let reference_tree = tree(&self.reference)?;
        let below_tree = tree(&self.reference_below)?;
        let references = crate::ops::copying::References {
            top: reference_tree.as_ref(),
            below: below_tree.as_ref(),
        };
        let tree_name = store::tree_rel(src.backing)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("delta");
        match &self.plan {
            Some(plan) => copying(store, references, self.compare, None, |opts| {
                crate::copy::make_layer_at(&src.tree.dir, private, tree_name.as_ref(), plan, opts)
            }),
            None => copy_tree(
                store,
                &src.tree.dir,
                private,
                tree_name,
                references,
                self.compare,
                self.estimate,
            ),
        }
    }
}

/// The command LXC runs before each start of a snapshot to empty its
/// scratch: this program, on this snapdir and lxcpath, with the lowers
/// allowed now (the reset reads the lowers for `/etc/hostname`). LXC runs
/// hooks through `sh -c`, so every path is quoted; it appends the
/// snapshot's name. Root runs it at each start, so this program must be
/// root's alone, as any host hook must ([`ErrorKind::Unsafe`] if not).
pub(super) fn reset_hook(store: &Store) -> Result<String> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("finding", std::path::Path::new("/proc/self/exe"), e))?;
    crate::lxc::files::check_outside_file("lxc.hook.pre-start", &exe)?;
    let absolute =
        |p: &std::path::Path| std::path::absolute(p).map_err(|e| Error::io("resolving", p, e));
    let quote = |p: &std::path::Path| format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"));
    let mut words = vec![
        quote(&exe),
        "-P".to_string(),
        quote(&absolute(&store.lxcpath_path())?),
        "--snapdir".to_string(),
        quote(&absolute(store.dir())?),
    ];
    for lower in store.allowed_lowers() {
        words.push("--allow-lower".to_string());
        words.push(quote(&absolute(lower)?));
    }
    words.push(crate::lxc::config::RESET_HOOK_ARGS.to_string());
    Ok(words.join(" "))
}

/// Entries below `tree` and the sizes of its regular files (each inode
/// once), as a copy of it counts them.
fn quick_count(tree: &Dir) -> Result<Counts> {
    let mut seen = std::collections::HashSet::new();
    let mut counts = Counts::default();
    crate::walk::for_each_entry(tree, |st| {
        counts.entries += 1;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && seen.insert(st.st_ino) {
            counts.bytes += st.st_size as u64;
        }
    })?;
    // The root is no entry of the copy.
    counts.entries = counts.entries.saturating_sub(1);
    Ok(counts)
}

fn unsupported(name: &ContainerName, why: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("cannot snapshot {name}: {why}"),
    )
    .with_hint("lxc-snap supports overlay (overlay: or overlayfs:) and directory-backed containers")
}
