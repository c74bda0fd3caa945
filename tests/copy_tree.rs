//! The tree copier against real trees, as root: fidelity, what it refuses,
//! what it never follows and where it stops.

mod common;
#[path = "common/loopfs.rs"]
mod loopfs;

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::fidelity;
use loopfs::LoopFs;
use lxc_snap::copy::{
    copy_tree, copy_tree_by, copy_tree_with, Compare, CopyOptions, CopyStats, DataPath, Select,
    Selection,
};
use lxc_snap::progress::{Cancel, Counts, Progress};
use lxc_snap::ErrorKind;
use nix::fcntl::{self, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::stat::{self, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lxc-snap-copy.")
        .tempdir_in("/tmp")
        .expect("creating temp dir")
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn new(
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Mounted {
        mount(Some(source), target, fstype, flags, data)
            .unwrap_or_else(|e| panic!("mounting {source} on {}: {e}", target.display()));
        Mounted(target.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

#[test]
fn copies_every_kind_of_entry_faithfully() {
    if !common::system_tests_enabled("copies_every_kind_of_entry_faithfully", false) {
        return;
    }
    let tmp = temp_dir();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fidelity::build_every_kind(&src);

    let stats = copy_tree(&src, &dst).expect("copying");

    fidelity::assert_trees_identical(&src, &dst);
    fidelity::assert_whiteouts_fresh(&dst);
    for (rel, st) in fidelity::lstat_tree(&dst) {
        if fidelity::is_whiteout(&st) {
            assert_eq!(
                st.st_nlink,
                1,
                "/{}: whiteout not made fresh",
                rel.display()
            );
        }
    }
    assert_eq!(stats.entries as usize, fidelity::lstat_tree(&src).len() - 1);
    assert!(stats.skipped_mounts.is_empty(), "{stats:?}");
}

#[test]
fn counts_entries_once_per_name_and_bytes_once_per_inode() {
    if !common::system_tests_enabled(
        "counts_entries_once_per_name_and_bytes_once_per_inode",
        false,
    ) {
        return;
    }
    let tmp = temp_dir();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("a")).expect("mkdir");
    fs::write(src.join("a/ten"), b"0123456789").expect("write");
    fs::write(src.join("five"), b"01234").expect("write");
    fs::hard_link(src.join("five"), src.join("a/five-again")).expect("link");
    symlink("five", src.join("link")).expect("symlink");
    nix::unistd::mkfifo(&src.join("fifo"), Mode::S_IRUSR).expect("mkfifo");
    let sparse = fs::File::create(src.join("sparse")).expect("create");
    sparse.write_all_at(b"end", (1 << 20) - 3).expect("write");
    fidelity::settle_link_atimes(&src);

    let stats = copy_tree(&src, &dst).expect("copying");

    assert_eq!(
        stats,
        CopyStats {
            entries: 7,
            bytes: 10 + 5 + (1 << 20),
            linked: 0,
            linked_bytes: 0,
            multi_name_inodes: vec![(inode(&dst.join("five")).1, 2)],
            created_bytes: allocated_outside(&dst, None),
            linked_allocated: 0,
            reference_unshared_bytes: 0,
            reference_multi_linked: vec![],
            skipped_mounts: vec![],
        }
    );
    assert!(stats.created_bytes >= 4096 + 10 + 5, "{stats:?}");
    fidelity::assert_trees_identical(&src, &dst);
}

/// Allocated bytes of the inodes in `tree` (each once) that have no name
/// in `other`: what the copier reports as created.
fn allocated_outside(tree: &Path, other: Option<&Path>) -> u64 {
    let ids = |t: &Path| -> std::collections::HashMap<(u64, u64), u64> {
        fidelity::lstat_tree(t)
            .into_iter()
            .map(|(_, st)| ((st.st_dev, st.st_ino), st.st_blocks as u64 * 512))
            .collect()
    };
    let theirs = other.map(ids).unwrap_or_default();
    ids(tree)
        .into_iter()
        .filter(|(id, _)| !theirs.contains_key(id))
        .map(|(_, bytes)| bytes)
        .sum()
}

#[test]
fn never_follows_symlinks_out_of_the_tree() {
    if !common::system_tests_enabled("never_follows_symlinks_out_of_the_tree", false) {
        return;
    }
    let tmp = temp_dir();
    let (src, dst, host) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("host"),
    );
    fs::create_dir_all(host.join("dir")).expect("mkdir");
    fs::write(host.join("file"), b"host file\n").expect("write");
    fs::write(host.join("dir/secret"), b"host secret\n").expect("write");
    fs::create_dir(&src).expect("mkdir");
    symlink(host.join("file"), src.join("to-file")).expect("symlink");
    symlink(host.join("dir"), src.join("to-dir")).expect("symlink");
    symlink("../host/dir", src.join("relative-to-dir")).expect("symlink");
    fidelity::settle_link_atimes(&src);
    let before = fidelity::lstat_tree(&host);

    copy_tree(&src, &dst).expect("copying");

    let copied: Vec<PathBuf> = fidelity::lstat_tree(&dst)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let expected: Vec<PathBuf> = ["", "relative-to-dir", "to-dir", "to-file"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(copied, expected, "only the links themselves are copied");
    fidelity::assert_trees_identical(&src, &dst);
    assert_eq!(
        fs::read_link(dst.join("to-dir")).expect("readlink"),
        host.join("dir")
    );
    let after = fidelity::lstat_tree(&host);
    for ((rel, b), (_, a)) in before.iter().zip(&after) {
        let times = |s: &nix::sys::stat::FileStat| {
            (
                s.st_atime,
                s.st_atime_nsec,
                s.st_mtime,
                s.st_mtime_nsec,
                s.st_ctime,
                s.st_ctime_nsec,
            )
        };
        assert_eq!(
            times(b),
            times(a),
            "host entry /{} was touched",
            rel.display()
        );
    }
    assert_eq!(fs::read(host.join("file")).expect("read"), b"host file\n");
}

#[test]
fn refuses_overlay_redirect_and_metacopy() {
    if !common::system_tests_enabled("refuses_overlay_redirect_and_metacopy", false) {
        return;
    }
    for (attr, is_dir) in [
        ("trusted.overlay.redirect", true),
        ("user.overlay.redirect", true),
        ("trusted.overlay.metacopy", false),
        ("user.overlay.metacopy", false),
    ] {
        let tmp = temp_dir();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        let entry = src.join("usr/lib");
        fs::create_dir_all(entry.parent().expect("parent")).expect("mkdir");
        if is_dir {
            fs::create_dir(&entry).expect("mkdir");
        } else {
            fs::write(&entry, b"").expect("write");
        }
        xattr::set(&entry, attr, b"/elsewhere").expect("setting xattr");

        let err = copy_tree(&src, &dst).expect_err(attr);

        assert_eq!(err.kind(), ErrorKind::Unsupported, "{attr}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&entry.display().to_string()), "{attr}: {msg}");
        assert!(msg.contains("not self-contained"), "{attr}: {msg}");
        assert!(
            msg.contains("redirect_dir") && msg.contains("metacopy"),
            "{attr}: {msg}"
        );
    }
}

#[test]
fn refuses_an_existing_destination() {
    if !common::system_tests_enabled("refuses_an_existing_destination", false) {
        return;
    }
    let tmp = temp_dir();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("file"), b"x").expect("write");
    fs::create_dir(&dst).expect("mkdir");
    let err = copy_tree(&src, &dst).expect_err("existing dir");
    assert_eq!(err.kind(), ErrorKind::Exists, "{err}");
    assert!(
        err.to_string().contains(&dst.display().to_string()),
        "{err}"
    );
    assert_eq!(fs::read_dir(&dst).expect("read_dir").count(), 0);

    // Nor is a symlink at dst followed.
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let link = tmp.path().join("link");
    symlink(&elsewhere, &link).expect("symlink");
    let err = copy_tree(&src, &link).expect_err("symlink at dst");
    assert_eq!(err.kind(), ErrorKind::Exists, "{err}");
    assert_eq!(fs::read_dir(&elsewhere).expect("read_dir").count(), 0);
}

#[test]
fn refuses_a_symlink_as_source() {
    if !common::system_tests_enabled("refuses_a_symlink_as_source", false) {
        return;
    }
    let tmp = temp_dir();
    let (real, src, dst) = (
        tmp.path().join("real"),
        tmp.path().join("src"),
        tmp.path().join("dst"),
    );
    fs::create_dir(&real).expect("mkdir");
    fs::write(real.join("file"), b"x").expect("write");
    symlink(&real, &src).expect("symlink");
    let err = copy_tree(&src, &dst).expect_err("symlink source");
    assert!(
        err.to_string().contains(&src.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(
        fs::symlink_metadata(&dst).is_err(),
        "dst must not be created"
    );
}

#[test]
fn does_not_cross_mounts_below_the_source() {
    if !common::system_tests_enabled("does_not_cross_mounts_below_the_source", false) {
        return;
    }
    let tmp = temp_dir();
    let (src, dst, host) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("host"),
    );
    for dir in ["src/tmpfs", "src/bind-dir", "host/dir"] {
        fs::create_dir_all(tmp.path().join(dir)).expect("mkdir");
    }
    fs::write(src.join("kept"), b"kept").expect("write");
    fs::write(src.join("bind-file"), b"underneath").expect("write");
    fs::write(host.join("dir/secret"), b"host").expect("write");
    fs::write(host.join("file"), b"host file").expect("write");

    let tmpfs = Mounted::new(
        "tmpfs",
        &src.join("tmpfs"),
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0751,uid=4321,gid=8765"),
    );
    fs::write(src.join("tmpfs/inside"), b"on tmpfs").expect("write");
    // Bind mounts from the same filesystem keep st_dev; only the mount id tells.
    let bind_dir = Mounted::new(
        &host.join("dir").to_string_lossy(),
        &src.join("bind-dir"),
        None,
        MsFlags::MS_BIND,
        None,
    );
    let bind_file = Mounted::new(
        &host.join("file").to_string_lossy(),
        &src.join("bind-file"),
        None,
        MsFlags::MS_BIND,
        None,
    );

    let stats = copy_tree(&src, &dst).expect("copying");

    let mut skipped = stats.skipped_mounts.clone();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            src.join("bind-dir"),
            src.join("bind-file"),
            src.join("tmpfs")
        ]
    );
    let copied: Vec<PathBuf> = fidelity::lstat_tree(&dst)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let expected: Vec<PathBuf> = ["", "bind-dir", "kept", "tmpfs"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(copied, expected);
    let mount_root = fs::metadata(dst.join("tmpfs")).expect("stat");
    assert_eq!(
        (
            mount_root.mode() & 0o7777,
            mount_root.uid(),
            mount_root.gid()
        ),
        (0o751, 4321, 8765)
    );
    assert_eq!(stats.entries, 3);
    drop((bind_file, bind_dir, tmpfs));
}

#[test]
fn copies_a_very_deep_tree_on_a_small_stack() {
    if !common::system_tests_enabled("copies_a_very_deep_tree_on_a_small_stack", false) {
        return;
    }
    const DEPTH: usize = 2000;
    let tmp = temp_dir();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).expect("mkdir");
    // Too deep for paths (PATH_MAX): build and check level by level.
    let mut dir = open_dir(None, &src);
    for _ in 0..DEPTH {
        stat::mkdirat(Some(dir.as_raw_fd()), "d", Mode::S_IRWXU).expect("mkdirat");
        dir = open_dir(Some(&dir), Path::new("d"));
    }
    let leaf = fcntl::openat(
        Some(dir.as_raw_fd()),
        "leaf",
        OFlag::O_WRONLY | OFlag::O_CREAT,
        Mode::S_IRUSR,
    )
    .expect("creating leaf");
    // SAFETY: openat just returned this descriptor.
    let leaf = unsafe { fs::File::from_raw_fd(leaf) };
    leaf.write_all_at(b"bottom", 0).expect("write");
    drop((leaf, dir));

    // The copier must raise a low soft limit itself: two descriptors a level.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard as usize > 2 * DEPTH + 100,
        "hard RLIMIT_NOFILE {hard} too low for this test"
    );
    setrlimit(Resource::RLIMIT_NOFILE, 1024, hard).expect("lowering soft limit");
    let (s, d) = (src.clone(), dst.clone());
    let stats = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || copy_tree(&s, &d))
        .expect("spawning")
        .join()
        .expect("copy thread panicked")
        .expect("copying");

    assert_eq!(stats.entries, DEPTH as u64 + 1);
    let mut dir = open_dir(None, &dst);
    for _ in 0..DEPTH {
        dir = open_dir(Some(&dir), Path::new("d"));
    }
    let leaf = fcntl::openat(
        Some(dir.as_raw_fd()),
        "leaf",
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .expect("opening copied leaf");
    // SAFETY: openat just returned this descriptor.
    let leaf = unsafe { fs::File::from_raw_fd(leaf) };
    let mut buf = [0u8; 16];
    let n = leaf.read_at(&mut buf, 0).expect("read");
    assert_eq!(&buf[..n], b"bottom");
}

fn open_dir(parent: Option<&fs::File>, name: &Path) -> fs::File {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = fcntl::openat(parent.map(|p| p.as_raw_fd()), name, flags, Mode::empty())
        .expect("opening directory");
    // SAFETY: openat just returned this descriptor.
    unsafe { fs::File::from_raw_fd(fd) }
}

/// lower/, upper/, work/ and merged/ under `dir`, with `lower` filled.
fn overlay_dirs(dir: &Path) -> [PathBuf; 4] {
    let names = ["lower", "upper", "work", "merged"].map(|n| dir.join(n));
    for d in &names {
        fs::create_dir(d).expect("mkdir");
    }
    let lower = &names[0];
    fs::create_dir_all(lower.join("etc")).expect("mkdir");
    fs::create_dir_all(lower.join("var/lib/app")).expect("mkdir");
    fs::write(lower.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("write");
    fs::write(lower.join("etc/hosts"), b"127.0.0.1 localhost\n").expect("write");
    fs::write(lower.join("var/lib/app/state"), b"lower state\n").expect("write");
    names
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, on: &Path, extra: &str) -> Mounted {
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{extra}",
        lower.display(),
        upper.display(),
        work.display()
    );
    Mounted::new(
        "overlay",
        on,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
    )
}

#[test]
fn a_copied_overlay_delta_mounts_to_the_same_view() {
    if !common::system_tests_enabled("a_copied_overlay_delta_mounts_to_the_same_view", false) {
        return;
    }
    let tmp = temp_dir();
    let [lower, upper, work, merged] = overlay_dirs(tmp.path());
    {
        let _m = mount_overlay(&lower, &upper, &work, &merged, "");
        fs::remove_file(merged.join("etc/hosts")).expect("whiteout");
        fs::remove_dir_all(merged.join("var/lib/app")).expect("whiteout dir");
        fs::create_dir(merged.join("var/lib/app")).expect("opaque dir");
        fs::write(merged.join("var/lib/app/state"), b"new state\n").expect("write");
        fs::write(merged.join("etc/passwd"), b"root:x:0:0::/root:/bin/bash\n").expect("copy-up");
        fs::write(merged.join("etc/new"), b"new\n").expect("write");
        fs::hard_link(merged.join("etc/new"), merged.join("new-link")).expect("link");
        xattr::set(merged.join("etc/new"), "user.note", b"kept").expect("xattr");
    }
    fidelity::settle_link_atimes(&upper);
    let upper2 = tmp.path().join("upper2");

    copy_tree(&upper, &upper2).expect("copying the delta");

    fidelity::assert_trees_identical(&upper, &upper2);
    fidelity::assert_whiteouts_fresh(&upper2);
    let (work2, merged2) = (tmp.path().join("work2"), tmp.path().join("merged2"));
    fs::create_dir(&work2).expect("mkdir");
    fs::create_dir(&merged2).expect("mkdir");
    let _a = mount_overlay(&lower, &upper, &work, &merged, "");
    let _b = mount_overlay(&lower, &upper2, &work2, &merged2, "");
    fidelity::assert_trees_identical(&merged, &merged2);
    assert!(fs::symlink_metadata(merged2.join("etc/hosts")).is_err());
    assert_eq!(
        fs::read(merged2.join("var/lib/app/state")).expect("read"),
        b"new state\n"
    );
}

#[test]
fn refuses_a_real_redirect_dir_or_metacopy_delta() {
    if !common::system_tests_enabled("refuses_a_real_redirect_dir_or_metacopy_delta", false) {
        return;
    }
    for options in [",redirect_dir=on", ",metacopy=on"] {
        let tmp = temp_dir();
        let [lower, upper, work, merged] = overlay_dirs(tmp.path());
        {
            let _m = mount_overlay(&lower, &upper, &work, &merged, options);
            // A renamed lower dir gets a redirect; a chmod copies up metadata only.
            fs::rename(merged.join("var/lib/app"), merged.join("var/lib/renamed")).expect("rename");
            fs::set_permissions(merged.join("etc/passwd"), fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        let err = copy_tree(&upper, &tmp.path().join("copy")).expect_err(options);
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{options}: {err}");
        assert!(
            err.to_string().contains(&upper.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn refuses_to_copy_a_tree_into_itself() {
    if !common::system_tests_enabled("refuses_to_copy_a_tree_into_itself", false) {
        return;
    }
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    let err = copy_tree(&src, &src.join("sub/copy")).expect_err("copy into itself");
    assert!(err.to_string().contains("into itself"), "{err}");
}

/// (st_dev, st_ino) of an entry itself.
fn inode(path: &Path) -> (u64, u64) {
    let st = stat::lstat(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    (st.st_dev, st.st_ino)
}

fn reference(reference: &lxc_snap::dir::Dir, compare: Compare) -> CopyOptions<'_> {
    CopyOptions {
        reference: Some(reference),
        compare,
        ..CopyOptions::default()
    }
}

fn set_times(path: &Path, secs: i64, nsecs: i64) {
    let t = TimeSpec::new(secs, nsecs);
    stat::utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).expect("setting times");
}

#[test]
fn every_data_path_copies_faithfully_on_ext4_xfs_and_btrfs() {
    if !common::system_tests_enabled(
        "every_data_path_copies_faithfully_on_ext4_xfs_and_btrfs",
        false,
    ) {
        return;
    }
    let tmp = temp_dir();
    let xfs = LoopFs::new("xfs").expect("mkfs.xfs missing: apt-get install xfsprogs");
    let btrfs = LoopFs::new("btrfs");
    if btrfs.is_none() {
        eprintln!("btrfs not tested: mkfs.btrfs missing (apt-get install btrfs-progs)");
    }
    let mut places = vec![("ext4", tmp.path(), false), ("xfs", xfs.path(), true)];
    places.extend(btrfs.as_ref().map(|fs| ("btrfs", fs.path(), true)));

    for (fs_name, root, clones) in places {
        let src = root.join("src");
        fidelity::build_every_kind(&src);
        let mut paths = vec![DataPath::Auto, DataPath::CopyFileRange, DataPath::ReadWrite];
        if clones {
            paths.push(DataPath::Clone);
        }
        for path in paths {
            let dst = root.join(format!("{path:?}"));
            let stats = copy_tree_by(&src, &dst, &CopyOptions::default(), path)
                .unwrap_or_else(|e| panic!("{fs_name}, {path:?}: {e}"));
            assert_eq!(stats.linked, 0);
            fidelity::assert_trees_identical(&src, &dst);
            fidelity::assert_whiteouts_fresh(&dst);
            let shared = loopfs::shares_extents(&dst.join("big"));
            match path {
                DataPath::Auto | DataPath::Clone => {
                    assert_eq!(shared, clones, "{fs_name}, {path:?}")
                }
                DataPath::ReadWrite => assert!(!shared, "{fs_name}: read/write shares extents"),
                // The kernel may clone for copy_file_range too.
                DataPath::CopyFileRange => {}
            }
        }
        if !clones {
            let err = copy_tree_by(
                &src,
                &root.join("no-clone"),
                &CopyOptions::default(),
                DataPath::Clone,
            )
            .expect_err("cloning on ext4");
            assert!(err.to_string().contains("cloning"), "{err}");
        }

        // Hard links to the reference: every regular file, once per inode.
        let linked = root.join("linked");
        let stats = copy_tree_with(
            &src,
            &linked,
            &reference(&common::held(&root.join("Auto")), Compare::QuickCheck),
        )
        .unwrap_or_else(|e| panic!("{fs_name}, linking: {e}"));
        let files: std::collections::HashSet<u64> = fidelity::lstat_tree(&src)
            .into_iter()
            .filter(|(_, st)| fidelity::kind(st) == stat::SFlag::S_IFREG)
            .map(|(_, st)| st.st_ino)
            .collect();
        assert_eq!(stats.linked as usize, files.len(), "{fs_name}");
        fidelity::assert_trees_identical(&src, &linked);
        fidelity::assert_whiteouts_fresh(&linked);
    }

    // A reference on another filesystem cannot be linked to: all is copied.
    let src = xfs.path().join("src");
    let dst = xfs.path().join("from-other-fs");
    let stats = copy_tree_with(
        &src,
        &dst,
        &reference(&common::held(&tmp.path().join("Auto")), Compare::QuickCheck),
    )
    .expect("copying with a reference elsewhere");
    assert_eq!((stats.linked, stats.linked_bytes), (0, 0));
    fidelity::assert_trees_identical(&src, &dst);
}

#[test]
fn a_clone_of_a_big_tree_on_xfs_takes_no_data_space() {
    if !common::system_tests_enabled("a_clone_of_a_big_tree_on_xfs_takes_no_data_space", false) {
        return;
    }
    let xfs = LoopFs::new("xfs").expect("mkfs.xfs missing: apt-get install xfsprogs");
    let src = xfs.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    for i in 0..40 {
        let file = fs::File::create(src.join(format!("f{i}"))).expect("create");
        for k in 0..8u64 {
            file.write_all_at(&chunk, k << 20).expect("write");
        }
    }
    nix::unistd::sync();
    let used = || {
        let s = nix::sys::statvfs::statvfs(xfs.path()).expect("statvfs");
        (s.blocks() - s.blocks_free()) * s.fragment_size()
    };
    let before = used();

    let stats = copy_tree(&src, &xfs.path().join("dst")).expect("copying");
    nix::unistd::sync();

    assert_eq!(stats.bytes, 40 << 23);
    let grew = used() - before;
    assert!(grew < 16 << 20, "320 MiB of clones took {grew} bytes");
    fidelity::assert_trees_identical(&src, &xfs.path().join("dst"));
}

#[test]
fn unchanged_files_are_linked_to_the_reference_and_outlive_it() {
    if !common::system_tests_enabled(
        "unchanged_files_are_linked_to_the_reference_and_outlive_it",
        false,
    ) {
        return;
    }
    let tmp = temp_dir();
    let (src, old, new) = (
        tmp.path().join("src"),
        tmp.path().join("old"),
        tmp.path().join("new"),
    );
    fidelity::build_every_kind(&src);
    let full = copy_tree(&src, &old).expect("first copy");
    let progress = Reports::default();
    let old_dir = common::held(&old);
    let opts = CopyOptions {
        reference: Some(&old_dir),
        compare: Compare::QuickCheck,
        progress: Some(&progress),
        ..CopyOptions::default()
    };

    let stats = copy_tree_with(&src, &new, &opts).expect("incremental copy");

    // Every regular file is shared, a file with several names once; the
    // reference held each alone before, with one name or with several.
    let (mut linked_bytes, mut unshared, mut multi) = (0, 0, Vec::new());
    let mut files = std::collections::HashSet::new();
    for (rel, st) in fidelity::lstat_tree(&src).into_iter().skip(1) {
        let (n, o) = (inode(&new.join(&rel)), inode(&old.join(&rel)));
        if fidelity::kind(&st) != stat::SFlag::S_IFREG {
            assert_ne!(n, o, "/{}: shared with the reference", rel.display());
            continue;
        }
        assert_eq!(n, o, "/{}: not linked to the reference", rel.display());
        if !files.insert(n) {
            continue;
        }
        linked_bytes += st.st_size as u64;
        let bytes = st.st_blocks as u64 * 512;
        match st.st_nlink {
            1 => unshared += bytes,
            names => multi.push((n.1, names, bytes)),
        }
    }
    multi.sort();
    assert!(!multi.is_empty(), "the tree has hard links");
    assert_eq!(
        stats,
        CopyStats {
            linked: files.len() as u64,
            linked_bytes,
            created_bytes: allocated_outside(&new, Some(&old)),
            linked_allocated: unshared + multi.iter().map(|m| m.2).sum::<u64>(),
            reference_unshared_bytes: unshared,
            reference_multi_linked: multi,
            // The same names, on the reference's inodes.
            multi_name_inodes: stats.multi_name_inodes.clone(),
            ..full.clone()
        }
    );
    assert_eq!(
        stats
            .multi_name_inodes
            .iter()
            .map(|m| m.1)
            .collect::<Vec<_>>(),
        {
            let mut names: Vec<u64> = full.multi_name_inodes.iter().map(|m| m.1).collect();
            names.sort();
            names
        },
        "as many inodes with as many names as in the first copy"
    );
    assert!(
        unshared > 0 && stats.created_bytes < full.created_bytes,
        "{stats:?}"
    );
    let reports = progress.0.into_inner().expect("lock");
    assert!(
        reports
            .windows(2)
            .all(|w| w[0].bytes <= w[1].bytes && w[0].entries <= w[1].entries && w[0] != w[1]),
        "{reports:?}"
    );
    let last = Counts {
        entries: stats.entries,
        bytes: stats.bytes,
    };
    assert_eq!(reports.last(), Some(&last), "{reports:?}");

    fs::remove_dir_all(&old).expect("deleting the reference");
    fidelity::assert_trees_identical(&src, &new);
    fidelity::assert_whiteouts_fresh(&new);
}

#[test]
fn changed_files_are_copied_and_only_unchanged_ones_linked() {
    if !common::system_tests_enabled(
        "changed_files_are_copied_and_only_unchanged_ones_linked",
        false,
    ) {
        return;
    }
    let tmp = temp_dir();
    let (src, old, new) = (
        tmp.path().join("src"),
        tmp.path().join("old"),
        tmp.path().join("new"),
    );
    let names = [
        "same",
        "content",
        "mode",
        "owner",
        "group",
        "xattr",
        "mtime",
        "gone-in-old",
        "link-in-old",
        "sub/file",
        "real/file",
    ];
    for dir in ["sub", "real"] {
        fs::create_dir_all(src.join(dir)).expect("mkdir");
    }
    for name in names {
        let path = src.join(name);
        fs::write(&path, b"0123456789").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        nix::unistd::chown(&path, Some(100_000.into()), Some(100_000.into())).expect("chown");
        set_times(&path, 1_600_000_000, 123_456_789);
    }
    copy_tree(&src, &old).expect("first copy");

    fs::write(src.join("content"), b"9876543210").expect("write");
    fs::set_permissions(src.join("mode"), fs::Permissions::from_mode(0o640)).expect("chmod");
    nix::unistd::chown(&src.join("owner"), Some(100_001.into()), None).expect("chown");
    nix::unistd::chown(&src.join("group"), None, Some(100_001.into())).expect("chown");
    xattr::set(src.join("xattr"), "user.new", b"v").expect("xattr");
    set_times(&src.join("mtime"), 1_600_000_000, 123_456_790);
    set_times(&src.join("content"), 1_600_000_001, 0);
    // Not the same entry in the reference: gone, a symlink, a directory
    // reached through a symlink (never followed).
    fs::remove_file(old.join("gone-in-old")).expect("rm");
    fs::remove_file(old.join("link-in-old")).expect("rm");
    symlink("same", old.join("link-in-old")).expect("symlink");
    fs::remove_dir_all(old.join("sub")).expect("rm");
    symlink("real", old.join("sub")).expect("symlink");

    let stats = copy_tree_with(
        &src,
        &new,
        &reference(&common::held(&old), Compare::QuickCheck),
    )
    .expect("incremental copy");

    for name in names {
        // old/sub/file resolves through the symlink to old/real/file.
        let shared = stat::lstat(&old.join(name))
            .is_ok_and(|_| inode(&new.join(name)) == inode(&old.join(name)));
        assert_eq!(shared, ["same", "real/file"].contains(&name), "{name}");
    }
    assert_eq!((stats.linked, stats.linked_bytes), (2, 20));
    assert_eq!(stats.bytes, 10 * names.len() as u64);
    fidelity::assert_trees_identical(&src, &new);
}

/// QuickCheck trusts size and mtime, as rsync does by default: a file
/// rewritten in place whose mtime was put back (by `touch -r`, a restore
/// from backup, a clock step) looks unchanged, and its stale copy in the
/// reference is shared. Checksum reads both files and is not fooled.
#[test]
fn quick_check_trusts_mtimes_checksum_reads_contents() {
    if !common::system_tests_enabled("quick_check_trusts_mtimes_checksum_reads_contents", false) {
        return;
    }
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    let old = tmp.path().join("old");
    fs::create_dir(&src).expect("mkdir");
    for name in ["rewritten", "untouched"] {
        fs::write(src.join(name), vec![b'a'; 300_000]).expect("write");
        set_times(&src.join(name), 1_600_000_000, 5);
    }
    copy_tree(&src, &old).expect("first copy");
    let mut data = vec![b'a'; 300_000];
    data[299_999] = b'b';
    fs::write(src.join("rewritten"), &data).expect("rewrite");
    set_times(&src.join("rewritten"), 1_600_000_000, 5);

    let quick = tmp.path().join("quick");
    let stats = copy_tree_with(
        &src,
        &quick,
        &reference(&common::held(&old), Compare::QuickCheck),
    )
    .expect("quick check copy");
    assert_eq!(stats.linked, 2);
    assert_eq!(
        inode(&quick.join("rewritten")),
        inode(&old.join("rewritten"))
    );
    assert_ne!(
        fs::read(quick.join("rewritten")).expect("read"),
        data,
        "the quick check should have been fooled"
    );

    let sum = tmp.path().join("sum");
    let stats = copy_tree_with(
        &src,
        &sum,
        &reference(&common::held(&old), Compare::Checksum),
    )
    .expect("checksum copy");
    assert_eq!((stats.linked, stats.linked_bytes), (1, 300_000));
    assert_eq!(inode(&sum.join("untouched")), inode(&old.join("untouched")));
    assert_ne!(inode(&sum.join("rewritten")), inode(&old.join("rewritten")));
    fidelity::assert_trees_identical(&src, &sum);
}

#[test]
fn hard_links_in_the_copy_are_exactly_those_of_the_source() {
    if !common::system_tests_enabled(
        "hard_links_in_the_copy_are_exactly_those_of_the_source",
        false,
    ) {
        return;
    }
    let tmp = temp_dir();
    let (src, old, new) = (
        tmp.path().join("src"),
        tmp.path().join("old"),
        tmp.path().join("new"),
    );
    fs::create_dir(&src).expect("mkdir");
    for name in ["x", "y", "pair-1"] {
        fs::write(src.join(name), b"same bytes").expect("write");
        set_times(&src.join(name), 1_600_000_000, 7);
    }
    fs::hard_link(src.join("pair-1"), src.join("pair-2")).expect("link");
    copy_tree(&src, &old).expect("first copy");
    // The reference has x and y as one inode; the source has two.
    fs::remove_file(old.join("y")).expect("rm");
    fs::hard_link(old.join("x"), old.join("y")).expect("link");

    let stats = copy_tree_with(
        &src,
        &new,
        &reference(&common::held(&old), Compare::QuickCheck),
    )
    .expect("incremental copy");

    assert_eq!(
        stats.linked, 2,
        "one of x and y is linked, the other copied; the pair is linked once"
    );
    assert_ne!(inode(&new.join("x")), inode(&new.join("y")));
    assert_eq!(inode(&new.join("pair-1")), inode(&new.join("pair-2")));
    assert_eq!(inode(&new.join("pair-1")), inode(&old.join("pair-1")));
    let pair = inode(&new.join("pair-1")).1;
    assert_eq!(stats.multi_name_inodes, vec![(pair, 2)]);
    assert_eq!(stats.reference_multi_linked.len(), 2, "{stats:?}");
    fidelity::assert_trees_identical(&src, &new);
}

#[test]
fn refuses_a_reference_that_is_the_source_or_a_symlink() {
    if !common::system_tests_enabled("refuses_a_reference_that_is_the_source_or_a_symlink", false) {
        return;
    }
    let tmp = temp_dir();
    let (src, link) = (tmp.path().join("src"), tmp.path().join("link"));
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("file"), b"x").expect("write");
    symlink(&src, &link).expect("symlink");

    let err = copy_tree_with(
        &src,
        &tmp.path().join("a"),
        &reference(&common::held(&src), Compare::QuickCheck),
    )
    .expect_err("the source as reference");
    assert!(err.to_string().contains("is the source itself"), "{err}");
    // A reference is held open; a symlink is never opened as one.
    let err = lxc_snap::dir::Dir::open_given(&link, "using reference")
        .expect_err("a symlink as reference");
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

/// What the kernel gives a new entry is skipped only when certain: under a
/// setgid directory of another group, new entries get that group, and the
/// copy must still end up with the source's owners.
#[test]
fn owners_are_exact_under_a_setgid_destination_of_another_group() {
    if !common::system_tests_enabled(
        "owners_are_exact_under_a_setgid_destination_of_another_group",
        true,
    ) {
        return;
    }
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a/b")).expect("mkdir");
    fs::write(src.join("a/b/file"), b"root's").expect("write");
    fs::write(src.join("theirs"), b"someone else's").expect("write");
    symlink("a/b/file", src.join("link")).expect("symlink");
    nix::unistd::chown(
        &src.join("theirs"),
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .expect("chown");
    fidelity::settle_link_atimes(&src);
    for (group, mode) in [(4242, 0o2775), (4242, 0o775)] {
        let parent = tmp.path().join(format!("parent-{mode:o}"));
        fs::create_dir(&parent).expect("mkdir");
        nix::unistd::chown(&parent, None, Some(nix::unistd::Gid::from_raw(group))).expect("chown");
        fs::set_permissions(&parent, fs::Permissions::from_mode(mode)).expect("chmod");
        let dst = parent.join("dst");
        copy_tree(&src, &dst).expect("copying");
        fidelity::assert_trees_identical(&src, &dst);
        assert_eq!(
            fs::symlink_metadata(dst.join("a/b/file"))
                .expect("lstat")
                .gid(),
            0,
            "parent mode {mode:o}"
        );
    }
}

/// A file with several names shared along many snapshots gathers names on
/// one inode: near the filesystem's limit, the copy makes a new inode
/// instead of failing half-way through the names.
#[test]
fn a_reference_inode_near_the_link_limit_is_copied_not_linked() {
    if !common::system_tests_enabled(
        "a_reference_inode_near_the_link_limit_is_copied_not_linked",
        false,
    ) {
        return;
    }
    let ext4 = LoopFs::new("ext4").expect("mkfs.ext4 missing: apt-get install e2fsprogs");
    let root = ext4.path();
    let src = root.join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("g1"), b"one inode, two names").expect("write");
    set_times(&src.join("g1"), 1_600_000_000, 7);
    fs::hard_link(src.join("g1"), src.join("g2")).expect("link");
    let old = root.join("old");
    copy_tree(&src, &old).expect("first copy");
    // Other snapshots' names of the same inode, up to ext4's 65,000 less
    // what the two source names need, plus one.
    let others = root.join("others");
    fs::create_dir(&others).expect("mkdir");
    for i in 0..64_997 {
        fs::hard_link(old.join("g1"), others.join(i.to_string())).expect("link");
    }
    let shared = inode(&old.join("g1"));

    let full = root.join("full");
    copy_tree_with(
        &src,
        &full,
        &reference(&common::held(&old), Compare::QuickCheck),
    )
    .expect("copying");
    assert_ne!(inode(&full.join("g1")), shared, "no room: a new inode");
    assert_eq!(inode(&full.join("g1")), inode(&full.join("g2")));
    fidelity::assert_trees_identical(&src, &full);

    fs::remove_file(others.join("0")).expect("rm");
    let room = root.join("room");
    copy_tree_with(
        &src,
        &room,
        &reference(&common::held(&old), Compare::QuickCheck),
    )
    .expect("copying");
    assert_eq!(
        inode(&room.join("g1")),
        shared,
        "room for both names: linked"
    );
    assert_eq!(inode(&room.join("g2")), shared);
}

#[test]
fn keep_link_atimes_leaves_the_source_links_as_they_were() {
    if !common::system_tests_enabled(
        "keep_link_atimes_leaves_the_source_links_as_they_were",
        false,
    ) {
        return;
    }
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::os::unix::fs::symlink("target", src.join("link")).expect("symlink");
    // Older than its ctime: relatime moves it at the next read.
    set_times(&src.join("link"), 1_000_000_000, 5);
    let opts = CopyOptions {
        keep_link_atimes: true,
        ..CopyOptions::default()
    };
    for n in 0..2 {
        copy_tree_with(&src, &tmp.path().join(format!("copy{n}")), &opts).expect("copy");
        for root in [&src, &tmp.path().join(format!("copy{n}"))] {
            let st = stat::lstat(&root.join("link")).expect("lstat");
            assert_eq!(
                (st.st_atime, st.st_atime_nsec),
                (1_000_000_000, 5),
                "{}",
                root.display()
            );
        }
    }
}

#[test]
fn select_and_merge_copy_into_an_existing_tree() {
    if !common::system_tests_enabled("select_and_merge_copy_into_an_existing_tree", false) {
        return;
    }
    let tmp = temp_dir();
    let p = |r: &str| tmp.path().join(r);
    for d in ["src/keep/sub", "src/left-out", "dst/keep"] {
        std::fs::create_dir_all(p(d)).expect("mkdir");
    }
    std::fs::write(p("src/keep/sub/f"), b"f").expect("write");
    std::fs::write(p("src/keep/g"), b"g").expect("write");
    std::fs::write(p("src/left-out/h"), b"h").expect("write");
    xattr::set(p("src/keep"), "user.new", b"1").expect("xattr");
    xattr::set(p("dst/keep"), "user.stale", b"1").expect("xattr");
    xattr::set(p("dst/keep"), "trusted.overlay.opaque", b"y").expect("xattr");
    std::fs::write(p("dst/other"), b"already here").expect("write");
    set_times(&p("src/keep"), 1_000_000_000, 7);

    let mut select = Selection::new(Select::All);
    select.set(&["left-out".as_ref()], Select::Skip, Select::All);
    select.set(&["keep".as_ref()], Select::Descend, Select::All);
    let opts = CopyOptions {
        select: Some(&select),
        merge: true,
        ..CopyOptions::default()
    };
    copy_tree_with(&p("src"), &p("dst"), &opts).expect("merging copy");
    assert!(!p("dst/left-out").exists(), "left out");
    assert_eq!(std::fs::read(p("dst/keep/sub/f")).expect("read"), b"f");
    assert_eq!(
        std::fs::read(p("dst/other")).expect("read"),
        b"already here"
    );
    let keep = p("dst/keep");
    assert_eq!(
        xattr::get(&keep, "user.new").expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        xattr::get(&keep, "user.stale").expect("get"),
        None,
        "the source lacks it"
    );
    assert_eq!(
        xattr::get(&keep, "trusted.overlay.opaque").expect("get"),
        Some(b"y".to_vec()),
        "opaque stays"
    );
    let st = stat::lstat(&keep).expect("lstat");
    assert_eq!((st.st_mtime, st.st_mtime_nsec), (1_000_000_000, 7));

    // Anything but a directory in the way fails the copy.
    std::fs::remove_dir_all(p("dst/keep/sub")).expect("rm");
    std::os::unix::fs::symlink("/etc", p("dst/keep/sub")).expect("symlink");
    assert!(copy_tree_with(&p("src"), &p("dst"), &opts).is_err());
    assert!(
        !Path::new("/etc/f").exists(),
        "nothing written through the symlink"
    );
    std::fs::remove_file(p("dst/keep/sub")).expect("rm");
    std::fs::create_dir(p("dst/keep/sub")).expect("mkdir");
    let err = copy_tree_with(&p("src"), &p("dst"), &opts).expect_err("g exists");
    assert!(err.to_string().contains("dst/keep/g"), "{err}");
    assert_eq!(std::fs::read(p("dst/keep/g")).expect("read"), b"g");
}

/// Every progress report, in order.
#[derive(Default)]
struct Reports(Mutex<Vec<Counts>>);

impl Progress for Reports {
    fn advance(&self, done: Counts, _total: Option<Counts>) {
        self.0.lock().expect("lock").push(done);
    }
}

/// `dirs` directories of `files` small files each under `root`.
fn many_files(root: &Path, dirs: usize, files: usize) -> usize {
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..files {
            fs::write(dir.join(format!("f{f}")), b"data").expect("write");
        }
    }
    dirs * (files + 1)
}

#[test]
fn a_set_cancel_flag_stops_the_copy_before_it_starts() {
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    many_files(&src, 3, 10);
    let cancel = Cancel::new();
    cancel.cancel();
    let opts = CopyOptions {
        cancel: Some(&cancel),
        ..CopyOptions::default()
    };
    let err = copy_tree_with(&src, &tmp.path().join("dst"), &opts).expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let created = walkdir::WalkDir::new(tmp.path().join("dst"))
        .into_iter()
        .count();
    assert!(created <= 1, "{created} entries copied after the cancel");
}

/// Cancels once the first progress report arrives.
struct CancelOnFirstReport<'a>(&'a Cancel, Mutex<Vec<Counts>>);

impl Progress for CancelOnFirstReport<'_> {
    fn advance(&self, done: Counts, _total: Option<Counts>) {
        self.1.lock().expect("lock").push(done);
        self.0.cancel();
    }
}

#[test]
fn a_cancel_half_way_stops_between_entries_with_the_cancelled_error() {
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    let total = many_files(&src, 40, 250);
    let cancel = Cancel::new();
    let sink = CancelOnFirstReport(&cancel, Mutex::default());
    let expected = Counts {
        entries: total as u64,
        bytes: 4 * 40 * 250,
    };
    let opts = CopyOptions {
        cancel: Some(&cancel),
        progress: Some(&sink),
        total: Some(expected),
        ..CopyOptions::default()
    };
    let dst = tmp.path().join("dst");
    let err = copy_tree_with(&src, &dst, &opts).expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let reports = sink.1.into_inner().expect("lock");
    assert!(!reports.is_empty());
    let created = walkdir::WalkDir::new(&dst).into_iter().count() - 1;
    assert!(
        created < total / 2,
        "{created} of {total} entries copied: the copy went on after the cancel"
    );
}

#[test]
fn progress_reports_entries_and_bytes_up_to_the_totals() {
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    many_files(&src, 20, 500);
    fs::write(src.join("big"), vec![7u8; 9 << 20]).expect("write");
    let sink = Reports::default();
    let opts = CopyOptions {
        progress: Some(&sink),
        ..CopyOptions::default()
    };
    let stats = copy_tree_with(&src, &tmp.path().join("dst"), &opts).expect("copy");
    let reports = sink.0.into_inner().expect("lock");
    assert!(reports.len() > 2, "{reports:?}");
    assert!(
        reports
            .windows(2)
            .all(|w| w[0].entries <= w[1].entries && w[0].bytes <= w[1].bytes),
        "{reports:?}"
    );
    let last = Counts {
        entries: stats.entries,
        bytes: stats.bytes,
    };
    assert_eq!(reports.last(), Some(&last));
}

#[test]
fn progress_moves_within_a_big_file() {
    let tmp = temp_dir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let size: u64 = 64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("big"), &data).expect("write");
    for path in [DataPath::CopyFileRange, DataPath::ReadWrite] {
        let sink = Reports::default();
        let opts = CopyOptions {
            progress: Some(&sink),
            ..CopyOptions::default()
        };
        let dst = tmp.path().join(format!("dst-{path:?}"));
        copy_tree_by(&src, &dst, &opts, path).expect("copy");
        let reports = sink.0.into_inner().expect("lock");
        let within = reports
            .iter()
            .filter(|r| r.bytes > 0 && r.bytes < size)
            .count();
        assert!(within >= 3, "{path:?}: {reports:?}");
        assert_eq!(reports.last().map(|r| r.bytes), Some(size), "{path:?}");
    }
}

#[test]
fn planning_and_flattening_layers_honour_a_set_cancel_flag() {
    use lxc_snap::copy::{flatten, plan_layer};
    let tmp = temp_dir();
    let (upper, anchor) = (tmp.path().join("upper"), tmp.path().join("anchor"));
    many_files(&upper, 2, 5);
    many_files(&anchor, 2, 5);
    let cancel = Cancel::new();
    cancel.cancel();
    for indexed in [false, true] {
        let err = plan_layer(
            &upper,
            &anchor,
            &[],
            Compare::QuickCheck,
            None,
            indexed,
            Some(&cancel),
        )
        .expect_err("cancelled");
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    }
    let opts = CopyOptions {
        cancel: Some(&cancel),
        ..CopyOptions::default()
    };
    let err =
        flatten(&upper, &anchor, &[], &tmp.path().join("flat"), &opts).expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
}
