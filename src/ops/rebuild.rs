//! `rebuild NAME... --from SNAP`: a working container put onto a new
//! template snapshot, keeping its config (mount entries, host name, MACs,
//! limits, hooks) and, with `keep`, paths of its old root filesystem.
//!
//! For each container: stopped first with `restart` (else a running one
//! is refused), a safety snapshot (unless told not to), then a new upper
//! is built beside the old one (empty over SNAP's trees, as a linked
//! clone has it, or with `copy` a whole copy of SNAP's tree over its
//! base), the kept paths are written into it as `undo` writes changes
//! (so the container shows exactly the old version there, or nothing
//! where the old one had nothing), and the host name. Then:
//! 1. the container is registered with its new bases (their
//!    `lxc_snapshots`), and its `lxc_rdepends` names old and new;
//! 2. the new upper is renamed to its final name (`delta` and
//!    `delta.rebuilt` take turns), which the config does not name yet;
//! 3. the config is replaced in one rename, naming the new upper and
//!    lowers: the moment of the switch. A crash before leaves the old
//!    state (and a leftover the next run clears), after it the new;
//! 4. the old bases are unregistered, `lxc_rdepends` names the new ones
//!    only, and the old upper is removed.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::copying::copy_snapshot_tree;
use super::require_root;
use super::take::take_backup;
use super::undo::{changes_below, normalise, write_changes};
use crate::copy::view::{Tree, View};
use crate::diff::Change;
use crate::dir::Dir;
use crate::durable::{self, Staging};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::{
    read_dependency_file, update_dependents, write_rdepends, DependencyEntry,
};
use crate::lxc::hostname::set_hostname;
use crate::lxc::tools;
use crate::lxc::{Container, Rootfs, State};
use crate::names::{ContainerName, SnapshotName};
use crate::notice::Leftover;
use crate::store::Store;

/// What to rebuild, onto what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildOptions {
    pub containers: Vec<ContainerName>,
    pub from: SnapshotName,
    /// Stop a running container first and start it again after.
    pub restart: bool,
    /// Snapshot each container first.
    pub backup: bool,
    /// A whole copy of the snapshot's tree instead of a linked clone.
    pub copy: bool,
    /// Paths of the old root filesystem to carry over, raw bytes.
    pub keep: Vec<Vec<u8>>,
}

/// What a rebuild did to one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub container: ContainerName,
    pub from: SnapshotName,
    pub backup: Option<SnapshotName>,
    /// The changes that carried the kept paths over.
    pub kept: Vec<Change>,
    /// From the stop to the start again, with `restart` and a running
    /// container.
    pub down_for: Option<Duration>,
}

/// Rebuilds each container in turn; stops at the first that fails (those
/// before it stay rebuilt, and the error says which they are).
pub fn rebuild(store: &Store, opts: &RebuildOptions) -> Result<Vec<Rebuilt>> {
    require_root("rebuilding a container")?;
    let keep = normalise(&opts.keep)?;
    if keep.iter().any(Vec::is_empty) {
        return Err(Error::new(
            ErrorKind::Usage,
            "--keep /: that would keep the whole root filesystem",
        )
        .with_hint(
            "name the paths that hold the container's own data, e.g. --keep /var/lib/mysql",
        ));
    }
    let mut done: Vec<Rebuilt> = Vec::new();
    for name in &opts.containers {
        match rebuild_one(store, name, opts, &keep) {
            Ok(r) => done.push(r),
            Err(e) => {
                let e = super::when_cancelled(e, &format!("{name} was not touched"));
                return Err(if done.is_empty() {
                    e
                } else {
                    let names: Vec<String> = done.iter().map(|r| r.container.to_string()).collect();
                    e.prefixed(&format!("{} rebuilt, then", names.join(", ")))
                });
            }
        }
    }
    Ok(done)
}

fn rebuild_one(
    store: &Store,
    name: &ContainerName,
    opts: &RebuildOptions,
    keep: &[Vec<OsString>],
) -> Result<Rebuilt> {
    let from = &opts.from;
    if from.container() == name {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("rebuilding {name} from its own snapshot {from}"),
        )
        .with_hint(format!("to go back to it: lxc-snap rollback {from}")));
    }
    let container = Container::open(store.lxcpath()?, name)?;
    let lp: &Path = &container.lxcpath;
    // The container and the snapshot's, in name order (as restore).
    let mut names = [name.clone(), from.container().clone()];
    names.sort();
    let locks = names
        .iter()
        .map(|n| Ok((n.clone(), store.lock(n)?)))
        .collect::<Result<Vec<_>>>()?;
    let lock = &locks
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| Error::new(ErrorKind::Other, "lock"))?
        .1;
    let snapshot = store.get(from)?;
    store.usable(&snapshot)?;
    if !opts.copy {
        super::clone::ensure_clonable(&snapshot, &container.config)?;
    }
    let tree = container.tree()?;
    let Rootfs::Overlay {
        prefix,
        upper: old_upper,
        ..
    } = &tree.rootfs
    else {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("rebuilding {name}: its root filesystem is not an overlay"),
        )
        .with_hint(format!(
            "restore {from} as a new container instead: lxc-snap restore {from} NEWNAME"
        )));
    };
    super::rollback::refuse_mounts_inside(&tree.dir)?;
    let leaf = tree
        .name
        .to_str()
        .ok_or_else(|| Error::new(ErrorKind::Other, "the container's upper has no usable name"))?
        .to_string();
    let next = if leaf == "delta" {
        "delta.rebuilt"
    } else {
        "delta"
    };
    let removed = durable::remove_leftovers(&tree.parent, |n| n == leaf || n == next, |_, _| {})?;
    store.tell_removed(removed, Leftover::Rollback);
    // A `next` the config does not name is what a rebuild that died left.
    if tree.parent.stat_at(next)?.is_some() {
        let old = Staging::create(&tree.parent, next, 0o700)?;
        tree.parent.rename_new(next, old.dir(), "old")?;
        old.discard()?;
    }

    let state = container.state()?;
    let stopped_at = match state {
        State::Stopped => None,
        _ if opts.restart => {
            let at = Instant::now();
            tools::run("lxc-stop", lp, name.as_str(), &["-t", "30"])?;
            Some(at)
        }
        _ => {
            return Err(Error::new(
                ErrorKind::Running,
                format!("cannot rebuild {name}: it is running"),
            )
            .with_hint(format!(
            "stop it first, or let rebuild do it: lxc-snap rebuild {name} --from {from} --restart"
        )))
        }
    };
    // Until the config is replaced, a failure leaves the old state; either
    // way a container stopped for the rebuild is started again.
    let switched = (|| -> Result<(Option<SnapshotName>, Vec<Change>)> {
        let backup = if opts.backup {
            Some(take_backup(
                store,
                &container,
                lock,
                &format!("before rebuild from {from}"),
            )?)
        } else {
            None
        };

        // The new upper, beside the old.
        let staging = Staging::create(&tree.parent, next, 0o700)?;
        let host_name = container
            .config
            .get("lxc.uts.name")
            .or_else(|| container.config.get("lxc.utsname"))
            .unwrap_or(name.as_str())
            .to_string();
        let snapshot_dir = store.snapshot_dir(&snapshot)?;
        let (lowers, new_bases) = if opts.copy {
            copy_snapshot_tree(store, &snapshot, staging.dir(), "tree")?;
            let lowers = store.open_lowers(&snapshot.meta.lowers)?;
            let refs: Vec<&Dir> = lowers.iter().collect();
            set_hostname(&staging.dir().open_dir("tree")?, &refs, &host_name)?;
            let anchor = snapshot.anchor().map(|a| store.entry(&a));
            let bases: Vec<DependencyEntry> = read_dependency_file(&snapshot_dir, "lxc_rdepends")?
                .into_iter()
                .filter(|b| Some(b) != anchor.as_ref())
                .collect();
            (lowers, bases)
        } else {
            let layers = store.snapshot_layers_unchecked(&snapshot)?;
            Store::empty_upper(staging.dir(), "tree", &layers, &host_name)?;
            let mut bases = vec![store.entry(from)];
            bases.extend(read_dependency_file(&snapshot_dir, "lxc_rdepends")?);
            (layers, bases)
        };
        let new_upper = staging.dir().open_dir("tree")?;
        let kept = if keep.is_empty() {
            Vec::new()
        } else {
            let old_view =
                View::of_dirs(store.container_layers(tree.dir.try_clone()?, &tree.rootfs)?);
            let mut now_layers = vec![new_upper.try_clone()?];
            for l in &lowers {
                now_layers.push(l.try_clone()?);
            }
            let now_view = View::of_dirs(now_layers);
            let (changes, _) = changes_below(
                store,
                &now_view,
                &old_view,
                keep,
                false,
                (&format!("{from}"), name.as_str()),
            )?;
            write_changes(
                store,
                &new_upper,
                true,
                &Tree::open(&old_view)?,
                &now_view,
                &staging,
                &changes,
            )?;
            changes
        };
        staging.sync()?;
        store.cancel().check()?;

        let lower_paths: Vec<PathBuf> = lowers.iter().map(|d| d.path().to_path_buf()).collect();
        let upper = old_upper.with_file_name(next);
        super::clone::check_stack(&lower_paths, &upper)?;
        let new_rootfs = Rootfs::Overlay {
            prefix: prefix.clone(),
            lowers: lower_paths,
            upper,
        };
        let mut config = container.config.clone();
        config.set_rootfs(&new_rootfs);

        // 1. Registered with the new bases; lxc_rdepends names old and new.
        let me = DependencyEntry {
            lxcpath: store.lxcpath()?.path().to_path_buf(),
            name: name.to_string(),
        };
        let old_bases = read_dependency_file(container.dir(), "lxc_rdepends")?;
        let places = store.places()?;
        for base in &new_bases {
            update_dependents(&places, base, &me, true)?;
        }
        let mut both = old_bases.clone();
        both.extend(new_bases.iter().filter(|b| !old_bases.contains(b)).cloned());
        write_rdepends(container.dir(), &both)?;
        // 2. The new upper under its final name.
        staging.dir().rename_new("tree", &tree.parent, next)?;
        tree.parent.sync()?;
        // 3. The switch.
        container
            .dir()
            .write_file("config", config.render().as_bytes(), 0o640)?;
        // 4. What stood on the old state goes.
        for base in old_bases.iter().filter(|b| !new_bases.contains(b)) {
            update_dependents(&places, base, &me, false)?;
        }
        if new_bases.is_empty() {
            container.dir().remove_file("lxc_rdepends")?;
        } else {
            write_rdepends(container.dir(), &new_bases)?;
        }
        tree.parent
            .rename_new(OsStr::new(&leaf), staging.dir(), "old")?;
        staging.discard()?;
        Ok((backup, kept))
    })();
    let (backup, kept) = match switched {
        Ok(done) => done,
        Err(e) => {
            if stopped_at.is_some() {
                let _ = tools::run("lxc-start", lp, name.as_str(), &["-d"]);
            }
            return Err(e);
        }
    };

    let down_for = match stopped_at {
        Some(at) => {
            tools::run("lxc-start", lp, name.as_str(), &["-d"])?;
            tools::run(
                "lxc-wait",
                lp,
                name.as_str(),
                &["-s", "RUNNING", "-t", "30"],
            )?;
            Some(at.elapsed())
        }
        None => None,
    };
    Ok(Rebuilt {
        container: name.clone(),
        from: from.clone(),
        backup,
        kept,
        down_for,
    })
}
