//! Trees that change at random through a real overlay, shared by the
//! tests that check layers, diffs and files against the kernel's view.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A small deterministic generator (xorshift64*), so a failure repeats.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Unmounts what it mounted, even when the test fails.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

pub fn mount_overlay(target: &Path, lowers: &[&Path], upper: Option<(&Path, &Path)>) -> Mounted {
    fs::create_dir_all(target).expect("mountpoint");
    let lowerdir = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut data = format!("lowerdir={lowerdir},redirect_dir=off,index=off,metacopy=off");
    if let Some((upper, work)) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    let flags = if upper.is_some() {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    mount(
        Some("lxc-snap-test"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .unwrap_or_else(|e| panic!("mounting an overlay on {}: {e} ({data})", target.display()));
    Mounted(target.to_path_buf())
}

/// A base tree: directories of files, some with attributes, a symlink, a
/// nested directory.
pub fn make_base(base: &Path) {
    for d in 0..4 {
        let dir = base.join(format!("d{d}"));
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for f in 0..4 {
            let path = dir.join(format!("f{f}"));
            fs::write(&path, format!("base {d} {f}\n").repeat(f + 1)).expect("write");
            if f == 1 {
                xattr::set(&path, "user.origin", b"base").expect("xattr");
            }
        }
        fs::write(dir.join("sub/deep"), b"deep\n").expect("write");
        symlink("../d0/f0", dir.join("link")).expect("symlink");
    }
}

/// What the random changes may touch: paths in the merged view.
pub const DIRS: [&str; 7] = ["d0", "d1", "d2", "d3", "d1/sub", "new", "new/inner"];

/// Gives `path` times no other change has: a file rewritten within one
/// clock tick keeps its mtime, and the quick check could not tell.
pub fn stamp(path: &Path, step: usize) {
    let t = nix::sys::time::TimeSpec::new(1_700_000_000 + step as i64, step as i64);
    let _ = nix::sys::stat::utimensat(
        None,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

/// One random change through the mounted overlay at `m`. Only creates,
/// writes, removes and sets metadata: never reads, so no atime moves.
pub fn change(rng: &mut Rng, m: &Path, step: usize) {
    let dir = m.join(DIRS[rng.below(DIRS.len())]);
    let name = format!("f{}", rng.below(6));
    let path = dir.join(&name);
    let _ = fs::create_dir_all(&dir);
    match rng.below(12) {
        0 | 1 => {
            let _ = fs::remove_file(&path);
            let size = rng.below(3) * 5000 + rng.below(100);
            let _ = fs::write(&path, vec![b'a' + (step % 26) as u8; size]);
            stamp(&path, step);
        }
        2 => {
            // Rewrites in place, keeping size.
            if let Ok(md) = fs::symlink_metadata(&path) {
                if md.is_file() {
                    let len = md.len() as usize;
                    let _ = fs::write(&path, vec![b'z'; len]);
                    stamp(&path, step);
                }
            }
        }
        3 => {
            let _ = fs::remove_file(&path);
        }
        4 => {
            let _ = fs::remove_dir_all(&dir);
        }
        5 => {
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::create_dir_all(&dir);
            let _ = fs::write(dir.join("fresh"), format!("fresh {step}\n"));
        }
        6 => {
            let _ = fs::set_permissions(
                &path,
                fs::Permissions::from_mode(0o600 + rng.below(64) as u32),
            );
        }
        7 => {
            let _ = xattr::set(&path, "user.step", step.to_string().as_bytes());
        }
        8 => {
            let other = dir.join(format!("h{step}"));
            let _ = fs::hard_link(&path, other);
        }
        9 => {
            let _ = fs::remove_file(&path);
            let _ = symlink(format!("target-{step}"), &path);
        }
        10 => {
            // A file where a directory was, or the other way round.
            if fs::symlink_metadata(dir.join("sub")).is_ok_and(|m| m.is_dir()) {
                let _ = fs::remove_dir_all(dir.join("sub"));
                let _ = fs::write(dir.join("sub"), b"now a file\n");
            } else {
                let _ = fs::remove_file(dir.join("sub"));
                let _ = fs::create_dir_all(dir.join("sub"));
            }
        }
        _ => {
            let t =
                nix::sys::time::TimeSpec::new(1_600_000_000 + step as i64, rng.below(1000) as i64);
            let _ = nix::sys::stat::utimensat(
                None,
                &path,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
        }
    }
}
