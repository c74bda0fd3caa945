//! Throwaway filesystems of a given type in loop-mounted image files under
//! /tmp, for copying on filesystems other than the one /tmp is on. Needs
//! root. Unmounted and removed on drop, even when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopFs {
    /// Holds the image and the mount point; removed after unmounting.
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl LoopFs {
    /// A fresh, mounted filesystem of `fstype` (`xfs` with reflink, `btrfs`
    /// or `ext4`), or `None` when `mkfs.<fstype>` is not installed.
    pub fn new(fstype: &str) -> Option<LoopFs> {
        let mkfs = format!("mkfs.{fstype}");
        if Command::new("which")
            .arg(&mkfs)
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("lxc-snap-{fstype}."))
            .tempdir_in("/tmp")
            .expect("creating temp dir");
        let image = dir.path().join("image");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("creating mount point");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(1 << 30))
            .expect("creating image");
        let options: &[&str] = match fstype {
            "xfs" => &["-q", "-f", "-m", "reflink=1"],
            "btrfs" => &["-q", "-f"],
            _ => &["-q", "-F"],
        };
        run(Command::new(&mkfs).args(options).arg(&image));
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mount));
        Some(LoopFs { _dir: dir, mount })
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for LoopFs {
    /// The loop device goes with the mount (`mount -o loop` sets
    /// autoclear); the image with `_dir`, dropped right after this.
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether some extent of `path` is shared with another file (a clone),
/// as `filefrag` tells from FIEMAP.
pub fn shares_extents(path: &Path) -> bool {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .expect("running filefrag (e2fsprogs)");
    assert!(out.status.success(), "filefrag {}", path.display());
    String::from_utf8_lossy(&out.stdout).contains("shared")
}
