//! Adopting the snapshots of the original lxc-snap: each `NAME_N` clone
//! becomes a snapshot in lxc-snap's own layout (metadata, fingerprints of
//! the lowers, sizes, a layer over the one before where that pays), under
//! the same name, time and comment, oldest first. Each is built beside the
//! clone and swapped in with one atomic rename, so a crash leaves the
//! clone or the snapshot, never a mix.

use super::require_root;
use super::take::{take_as, Increment};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::Lxcpath;
use crate::lxc::Container;
use crate::names::{ContainerName, SnapshotName};
use crate::store::Store;

/// One snapshot adopted (or, in a dry run, to adopt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedSnapshot {
    pub name: SnapshotName,
    /// Where its tree is in the clone, relative to its directory.
    pub tree: std::path::PathBuf,
    /// After adoption: the snapshot it is stored as changes to, if any.
    pub layer_over: Option<String>,
}

/// Adopts every snapshot of `container` the original lxc-snap made; with
/// `dry_run`, only says which.
pub fn adopt(
    store: &Store,
    container: &ContainerName,
    dry_run: bool,
) -> Result<Vec<AdoptedSnapshot>> {
    require_root("adopting snapshots")?;
    let lock = store.lock(container)?;
    let legacy: Vec<_> = store
        .snapshots_of(container)?
        .into_iter()
        .filter(|s| s.is_legacy())
        .collect();
    if legacy.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{container} has no snapshots of the original lxc-snap in {}",
                store.dir().display()
            ),
        ));
    }
    if dry_run {
        return Ok(legacy
            .iter()
            .map(|s| AdoptedSnapshot {
                name: s.name.clone(),
                tree: s.tree_rel(),
                layer_over: None,
            })
            .collect());
    }
    // The clones are containers in the snapdir.
    let snapdir = Lxcpath::open(store.dir())?;
    let mut adopted = Vec::new();
    for old in &legacy {
        let as_container = ContainerName::parse(&old.name.to_string())?;
        let clone = Container::open(&snapdir, &as_container)?;
        let comment = store.comment(old)?;
        let new = take_as(
            store,
            &clone,
            &lock,
            comment.as_deref(),
            Increment::QuickCheck,
            Some(old),
        )
        .map_err(|e| {
            super::when_cancelled(
                e.prefixed(&format!("adopting {}", old.name)),
                &format!("{} stays as the original lxc-snap made it", old.name),
            )
        })?;
        adopted.push(AdoptedSnapshot {
            name: new.name.clone(),
            tree: old.tree_rel(),
            layer_over: new.meta.layer.as_ref().map(|l| l.anchor.clone()),
        });
    }
    Ok(adopted)
}
