//! `lxc-snap [-c FILE] NAME` / `lxc-snap snap [-c FILE | -m TEXT] NAME`.
//!
//! Copies the container's overlay delta (or, for a directory-backed
//! container, its whole rootfs) into a staging directory in the snapdir,
//! writes a config that stacks the copy read-only under a scratch upper,
//! records metadata, registers the snapshot with the base container, and
//! renames the whole into place.

use chrono::Local;

use super::{
    copy_config_files, copy_tree, copying, finish_container_dir, forget_registrations,
    read_comment, require_root, Context,
};
use crate::cli::{CommentSource, Increment};
use crate::copy::{Compare, Plan};
use crate::dir::Dir;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::config::{random_mac, Retarget};
use crate::lxc::container::{bases_of_lowers, DependencyEntry};
use crate::lxc::{Container, Rootfs};
use crate::names::{ContainerName, SnapshotName};
use crate::store::{
    self, Backing, Layer, Metadata, NameLock, TreeFingerprint, FORMAT_VERSION, WHOLE_FORMAT_VERSION,
};

pub fn run(
    ctx: &Context,
    name: &ContainerName,
    comment: Option<&CommentSource>,
    increment: Increment,
) -> Result<()> {
    let comment = comment.map(read_comment).transpose()?;
    require_root("taking a snapshot")?;
    let source = Container::open(ctx.lxcpath()?, name)?;
    let lock = ctx.store.lock(name, ctx.ui)?;
    let snapshot = take(ctx, &source, &lock, comment.as_deref(), increment)?;
    ctx.ui.done(&format!("created snapshot {snapshot}"));
    Ok(())
}

/// Snapshots `source`, whose lock the caller holds; returns the new name.
pub(super) fn take(
    ctx: &Context,
    source: &Container,
    lock: &NameLock,
    comment: Option<&str>,
    increment: Increment,
) -> Result<SnapshotName> {
    let name = &source.name;
    let lxcpath = source.lxcpath.clone();
    let comment = comment.filter(|c| !c.is_empty());
    let (rootfs_key, _) = source
        .config
        .rootfs_entry()
        .unwrap_or(("lxc.rootfs.path", ""));
    let rootfs_key = rootfs_key.to_string();
    let tree = source.tree().map_err(|e| {
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
            return Err(unsupported(name, &format!("its rootfs backend is {kind}")))
        }
    };
    let lower_dirs = lowers
        .iter()
        .map(|l| ctx.open_lower(l))
        .collect::<Result<Vec<Dir>>>()?;
    // As resolved: what the metadata records and later runs compare.
    let lowers: Vec<std::path::PathBuf> =
        lower_dirs.iter().map(|d| d.path().to_path_buf()).collect();

    let snapdir = ctx.store.root()?;
    for leftover in ctx
        .store
        .remove_leftovers(lock, |dir, n| forget_registrations(ctx, dir, snapdir, n))?
    {
        ctx.ui.note(&format!(
            "removed {}: an incomplete snapshot left by an interrupted run",
            leftover.display()
        ));
    }
    super::delete::remove_unneeded_held(ctx, lock)?;
    source.ensure_stopped()?;

    let new = ctx.store.begin(lock)?;
    let final_dir = new.final_path();
    let snap_name = new.name.to_string();
    let private = new.dir().mkdir("private", 0o700)?;
    private.mkdir("scratch", 0o700)?;
    // Snapshots are immutable, so a file unchanged since the previous
    // snapshot of this container (on the same base) can share its inode,
    // and a snapshot can be stored as its changes since an older one.
    let previous = match increment {
        Increment::Full => None,
        _ => ctx
            .store
            .snapshots_of(name, ctx.ui)?
            .into_iter()
            .rev()
            .find(|s| {
                s.meta.backing == backing && s.meta.lowers == lowers && s.ensure_complete().is_ok()
            }),
    };
    let compare = if increment.by_contents() {
        Compare::Checksum
    } else {
        Compare::QuickCheck
    };
    let anchor = previous
        .as_ref()
        .filter(|_| increment.layered())
        .and_then(|p| anchor_for(ctx, p));
    let plan = match &anchor {
        Some(anchor) => match crate::copy::plan_layer_at(
            &tree.dir,
            &ctx.store.tree_dir(anchor)?,
            &lower_dirs,
            compare,
            anchor
                .meta
                .multi_name_inodes
                .as_ref()
                .map(|names| names.iter().copied().collect())
                .as_ref(),
        )? {
            Plan::Layer(plan) => Some(plan),
            Plan::Full(why) => {
                ctx.ui.note(&format!("taking a whole snapshot: {why}"));
                None
            }
        },
        None => None,
    };
    if backing == Backing::Dir && plan.is_none() {
        ctx.ui.note(&format!(
            "{name} is directory-backed: copying its whole rootfs; an overlay clone \
             (lxc-copy -s -B overlayfs -n {name} -N {name}-ov) snapshots only its changes"
        ));
    }
    // Shares files with the previous snapshot; a whole copy after a layer
    // shares them with the layer's anchor, which has them all.
    let reference = match (&plan, &previous) {
        (None, Some(p)) if p.meta.layer.is_some() => anchor_of(ctx, p),
        _ => previous.clone(),
    };
    let reference_tree = reference
        .as_ref()
        .map(|s| ctx.store.tree_dir(s))
        .transpose()?;
    let tree_name = match backing {
        Backing::Overlay => "delta",
        Backing::Dir => "rootfs",
    };
    let stats = match &plan {
        Some(plan) => copying(ctx, reference_tree.as_ref(), compare, |opts| {
            crate::copy::make_layer_at(&tree.dir, &private, tree_name.as_ref(), plan, opts)
        })?,
        None => copy_tree(
            ctx,
            &tree.dir,
            &private,
            tree_name,
            reference_tree.as_ref(),
            compare,
        )?,
    };
    let layer = plan
        .as_ref()
        .zip(anchor.as_ref())
        .map(|(plan, anchor)| Layer {
            anchor: anchor.name.to_string(),
            entries: stats.entries,
            bytes: stats.bytes,
            removed: plan.removed.clone(),
        });

    let mut stacked = vec![store::tree_path(&final_dir, backing)];
    if let (Some(_), Some(anchor)) = (&layer, &anchor) {
        stacked.push(anchor.tree());
    }
    stacked.extend(lowers.iter().cloned());
    let snap_rootfs = Rootfs::Overlay {
        prefix: Rootfs::overlay_prefix_for(&rootfs_key, &prefix),
        lowers: stacked,
        upper: store::scratch_upper(&final_dir),
    };
    let retarget = Retarget {
        old_dirs: &source.dir_spellings(),
        new_dir: &final_dir,
        new_name: &snap_name,
        rootfs: &snap_rootfs,
    };
    let retargeted = source.config.retarget(&retarget, random_mac);
    copy_config_files(&retargeted, source.dir(), &tree.rel, new.dir())?;

    let created = Local::now().fixed_offset();
    new.dir()
        .write_file(store::TS_FILE, store::ts_text(&created).as_bytes(), 0o644)?;
    store::write_comment(new.dir(), comment)?;
    let (files, bytes) = match &plan {
        Some(plan) => (plan.tree_entries, plan.tree_bytes),
        None => (stats.entries, stats.bytes),
    };
    let meta = Metadata {
        format_version: if layer.is_some() {
            FORMAT_VERSION
        } else {
            WHOLE_FORMAT_VERSION
        },
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        container: name.to_string(),
        lxcpath,
        created: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        backing,
        rootfs_key,
        rootfs_prefix: prefix,
        lowers: lowers.clone(),
        files,
        bytes,
        // Nothing links to the inodes the copy created yet.
        used_bytes: stats.created_bytes,
        pinned: false,
        lower_fingerprints: lower_dirs
            .iter()
            .map(TreeFingerprint::of)
            .collect::<Result<_>>()?,
        multi_name_inodes: Some(stats.multi_name_inodes.clone()),
        layer,
        held: false,
        other: serde_json::Map::new(),
    };
    store::write_metadata(new.dir(), &meta)?;

    let mut bases = source.rdepends()?;
    if bases.is_empty() {
        bases = bases_of_lowers(&lowers, ctx.lxcpath()?);
    }
    // A layer needs its anchor as a clone needs its origin: registered
    // there, lxc-destroy refuses to remove the anchor under it. (A held
    // anchor is no container LXC could destroy.)
    if let (Some(_), Some(anchor)) = (&meta.layer, &anchor) {
        if !anchor.meta.held {
            bases.push(DependencyEntry {
                lxcpath: ctx.store.dir().to_path_buf(),
                name: anchor.name.to_string(),
            });
        }
    }
    let registered = finish_container_dir(
        ctx,
        new.dir(),
        &retargeted.config,
        &bases,
        DependencyEntry {
            lxcpath: ctx.store.dir().to_path_buf(),
            name: snap_name.clone(),
        },
    )?;
    let snapshot = ctx.store.commit(new, lock)?;
    registered.keep();
    if let Some(reference) = &reference {
        previous_now_shares(ctx, reference, &stats)?;
    }
    Ok(snapshot.name)
}

/// The snapshot a new one may be stored as changes to, given the latest
/// one on the same base: that one if it is whole, or the one it is a layer
/// over, while the changes since are small (an eighth of the entries and
/// of the bytes); then a new whole snapshot starts afresh.
fn anchor_for(ctx: &Context, previous: &store::Snapshot) -> Option<store::Snapshot> {
    let Some(layer) = &previous.meta.layer else {
        return Some(previous.clone());
    };
    if layer.entries.saturating_mul(8) > previous.meta.files
        || layer.bytes.saturating_mul(8) > previous.meta.bytes
    {
        return None;
    }
    anchor_of(ctx, previous)
}

/// The whole snapshot on the same base that `layer` is stored as changes
/// to, held or not, if it is complete.
fn anchor_of(ctx: &Context, layer: &store::Snapshot) -> Option<store::Snapshot> {
    let anchor = ctx.store.get_with_held(&layer.anchor()?).ok()?;
    (anchor.meta.layer.is_none()
        && anchor.meta.backing == layer.meta.backing
        && anchor.meta.lowers == layer.meta.lowers
        && anchor.ensure_complete().is_ok())
    .then_some(anchor)
}

/// Updates what `previous` holds alone now that the copy `stats` describe
/// linked some of its inodes. Only a later snapshot made from `previous`
/// links to its inodes, and this is the first, so `previous` held a linked
/// inode alone exactly when all the names it had before were in
/// `previous`: one name, or as many as `previous` recorded for it. Metadata
/// from before that record takes a walk instead.
fn previous_now_shares(
    ctx: &Context,
    previous: &store::Snapshot,
    stats: &crate::copy::CopyStats,
) -> Result<()> {
    let mut unshared = stats.reference_unshared_bytes;
    if !stats.reference_multi_linked.is_empty() {
        let Some(recorded) = &previous.meta.multi_name_inodes else {
            return ctx.store.refresh_used(previous);
        };
        let names: std::collections::HashMap<u64, u64> = recorded.iter().copied().collect();
        unshared += stats
            .reference_multi_linked
            .iter()
            .filter(|(ino, before, _)| names.get(ino) == Some(before))
            .map(|(_, _, bytes)| bytes)
            .sum::<u64>();
    }
    let used = previous.meta.used_bytes.saturating_sub(unshared);
    ctx.store.set_used(previous, used)
}

fn unsupported(name: &ContainerName, why: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("cannot snapshot {name}: {why}"),
    )
    .with_hint("lxc-snap supports overlay (overlay: or overlayfs:) and directory-backed containers")
}
