//! A started snapshot's scratch: `private/scratch`, the overlay upper (and
//! work directory) its config names above the captured trees. Each start
//! begins from what was captured: the hook lxc-snap puts in the config
//! (`lxc.hook.pre-start`, see [`crate::lxc::config::RESET_HOOK_ARGS`])
//! empties the scratch and writes the snapshot's own host name into it.

use std::os::fd::AsRawFd;

use super::{sizes::SCRATCH, Snapshot, Store};
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::lxc::hostname::set_hostname;
use crate::names::host_name_for;

impl Store {
    /// Empties what `snapshot` wrote when started, then puts in its
    /// scratch upper only its host name (`/etc/hostname`, written as a
    /// copy-up would, where the captured trees have one), so that the next
    /// start begins from what was captured and calls itself by its own
    /// name. Returns the bytes freed.
    pub fn reset_scratch(&self, snapshot: &Snapshot) -> Result<u64> {
        let dir = self.snapshot_dir(snapshot)?;
        let private = dir.open_dir("private")?;
        let freed = private.remove_tree_freed("scratch")?;
        let scratch = private.mkdir("scratch", 0o700)?;
        let layers = self.snapshot_layers_unchecked(snapshot)?;
        Store::empty_upper(
            &scratch,
            "upper",
            &layers,
            &host_name_for(&snapshot.name.to_string()),
        )?;
        scratch.sync()?;
        private.sync()?;
        Ok(freed)
    }

    /// Makes `parent/name` an overlay upper over `layers` (top first) that
    /// holds only `host_name` (`/etc/hostname`, written as a copy-up would,
    /// where the layers have one). The merged root takes the upper's owner
    /// and mode, so it gets the top layer's root's, as a copy-up would.
    pub fn empty_upper(parent: &Dir, name: &str, layers: &[Dir], host_name: &str) -> Result<Dir> {
        let root = layers[0].stat()?;
        let upper = parent.mkdir(name, root.st_mode & 0o7777)?;
        nix::unistd::fchown(
            upper.file().as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(root.st_uid)),
            Some(nix::unistd::Gid::from_raw(root.st_gid)),
        )
        .map_err(|e| Error::sys("setting the owner of", upper.path(), e))?;
        let refs: Vec<&Dir> = layers.iter().collect();
        set_hostname(&upper, &refs, host_name)?;
        Ok(upper)
    }

    /// Where `snapshot` writes when started, for messages.
    pub fn scratch_path(&self, snapshot: &Snapshot) -> std::path::PathBuf {
        snapshot.dir.join(SCRATCH)
    }
}
