//! Which lower layers lxc-snap accepts, and the layers of a snapshot held
//! open. A lower's path comes from a config or a snapshot's metadata, which
//! is data: only a container's rootfs in the lxcpath, a snapshot's tree in
//! the snapdir, or what the admin allowed (`--allow-lower`) is used.

use std::path::{Path, PathBuf};

use super::{Snapshot, Store};
use crate::dir::{self, Below, Dir};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::Lxcpath;
use crate::lxc::{Container, Rootfs};
use crate::names::{ContainerName, SnapshotName};

impl Store {
    /// Opens a lower layer that a config or a snapshot's metadata names.
    /// Only these are used: the rootfs directory of a container in the
    /// lxcpath (`<lxcpath>/<name>/rootfs`, or the directory its config
    /// names inside its own directory), a snapshot's captured tree in the
    /// snapdir, or a path the admin allowed with `--allow-lower`. Every
    /// directory on the way must be root's alone.
    pub fn open_lower(&self, path: &Path) -> Result<Dir> {
        if self.allow_lowers.iter().any(|a| a == path) {
            return Dir::open_trusted_parents(path, "lower layer");
        }
        let lxcpath = self.lxcpath()?;
        if let Some(rel) = lxcpath.inside(path) {
            if let Some(dir) = container_rootfs(lxcpath, &rel)? {
                return Ok(dir);
            }
        }
        let snapdir = self.root()?;
        if let Some(rel) =
            dir::inside(path, snapdir.path()).or_else(|| dir::inside(path, self.dir()))
        {
            let parts = dir::plain_components(rel).unwrap_or_default();
            if let [snap, private, tree] = parts.as_slice() {
                let known = snap
                    .to_str()
                    .and_then(SnapshotName::try_parse)
                    .is_some_and(|n| self.get_with_held(&n).is_ok());
                if known && *private == "private" && (*tree == "delta" || *tree == "rootfs") {
                    return snapdir.open_below(rel, Below::Nothing);
                }
            }
        }
        Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing the lower layer {}: it is neither a container's rootfs in {} nor a snapshot in {}",
                path.display(),
                lxcpath.path().display(),
                self.dir().display()
            ),
        )
        .with_hint(format!(
            "if it is a base you trust, allow it: --allow-lower {}",
            path.display()
        )))
    }

    /// Opens every lower in `paths`, in order.
    pub fn open_lowers(&self, paths: &[PathBuf]) -> Result<Vec<Dir>> {
        paths.iter().map(|l| self.open_lower(l)).collect()
    }

    /// Every read-only layer of what `snapshot` captured, top first and
    /// held open: its tree, the anchor's for a layer, then its lowers (the
    /// ones lxc-snap accepts, see [`Store::open_lower`]).
    pub fn snapshot_layers(&self, snapshot: &Snapshot) -> Result<Vec<Dir>> {
        self.usable(snapshot)?;
        self.snapshot_layers_unchecked(snapshot)
    }

    /// [`Store::snapshot_layers`] once [`Store::usable`] said yes.
    pub fn snapshot_layers_unchecked(&self, snapshot: &Snapshot) -> Result<Vec<Dir>> {
        let mut layers = vec![self.tree_dir(snapshot)?];
        layers.extend(self.anchor_tree_dir(snapshot)?);
        for lower in &snapshot.meta.lowers {
            layers.push(self.open_lower(lower)?);
        }
        Ok(layers)
    }

    /// Every layer of a container's filesystem as it is now, top first:
    /// its own tree, then its lowers.
    pub fn container_layers(&self, tree: Dir, rootfs: &Rootfs) -> Result<Vec<Dir>> {
        let mut layers = vec![tree];
        if let Rootfs::Overlay { lowers, .. } = rootfs {
            for l in lowers {
                layers.push(self.open_lower(l)?);
            }
        }
        Ok(layers)
    }
}

/// The rootfs of the container `rel` (below the lxcpath) names, if it is
/// one: `NAME/rootfs`, or the directory NAME's config names inside its own
/// directory.
fn container_rootfs(lxcpath: &Lxcpath, rel: &Path) -> Result<Option<Dir>> {
    let parts = dir::plain_components(rel).unwrap_or_default();
    let Some(name) = parts
        .first()
        .and_then(|n| n.to_str())
        .and_then(|n| ContainerName::parse(n).ok())
    else {
        return Ok(None);
    };
    let Ok(container) = Container::open(lxcpath, &name) else {
        return Ok(None);
    };
    let inner: PathBuf = parts[1..].iter().collect();
    let own_rootfs = match container.config.rootfs() {
        Ok(Rootfs::Dir { path, .. }) => container.inside(&path),
        _ => None,
    };
    if inner != Path::new("rootfs") && Some(&inner) != own_rootfs.as_ref() {
        return Ok(None);
    }
    container.dir().open_below(&inner, Below::Parents).map(Some)
}
