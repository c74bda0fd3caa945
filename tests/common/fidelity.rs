//! Tree fidelity: a tree holding every kind of entry an overlay delta can
//! hold, and a field-by-field comparison of two trees. Needs root.
//!
//! Nothing here follows a symlink, and directories and files are read with
//! `O_NOATIME`, so comparing trees does not change what is compared. The one
//! exception the kernel leaves no way around: reading a symlink may set its
//! atime to now (relatime does so while atime <= ctime). So
//! [`build_every_kind`] ends by reading every link once, after which relatime
//! leaves them alone (see [`settle_link_atimes`]), and
//! [`assert_trees_identical`] reads all metadata before any link or content.
//! A fresh copy's links are not settled, so compare a copy only once.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, FileExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::{self, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Creates `root` (which must not exist) and fills it with every kind of
/// entry. Also creates `<root>.work` and `<root>.outside` beside it: an
/// overlay-like work dir holding the inode of a hard-linked whiteout, and a
/// host directory that symlinks in the tree point at.
pub fn build_every_kind(root: &Path) {
    assert!(
        fs::symlink_metadata(root).is_err(),
        "{} already exists",
        root.display()
    );
    fs::create_dir(root).expect("creating root");
    let p = |rel: &str| root.join(rel);
    let mkdirs = |rel: &str| fs::create_dir_all(p(rel)).expect("creating dirs");

    // Regular and sparse files.
    fs::write(p("empty"), b"").expect("writing empty");
    fs::write(p("small"), b"small file\n").expect("writing small");
    fs::write(p("big"), pseudo_random((3 << 20) + 12345)).expect("writing big");
    let chunk = pseudo_random(64 << 10);
    sparse(
        &p("sparse-hole-start"),
        &[(1 << 20, &chunk)],
        (1 << 20) + (64 << 10),
    );
    sparse(
        &p("sparse-hole-middle"),
        &[(0, &chunk), (2 << 20, &chunk)],
        (2 << 20) + (64 << 10),
    );
    sparse(&p("sparse-hole-end"), &[(0, &chunk)], 4 << 20);

    // Symlinks, none of which may ever be followed.
    let outside = sibling(root, "outside");
    fs::create_dir(&outside).expect("creating outside dir");
    fs::write(outside.join("secret"), b"host data\n").expect("writing outside file");
    mkdirs("links");
    for (name, target) in [
        ("abs-shadow", Path::new("/etc/shadow")),
        ("relative", Path::new("../small")),
        ("dangling", Path::new("no/such/target")),
        ("escape", Path::new("../../..")),
        ("host-dir", outside.as_path()),
        ("etc-dir", Path::new("/etc")),
    ] {
        symlink(target, p("links").join(name)).expect("creating symlink");
    }
    lchown(p("links/relative"), Some(100_001), Some(100_002)).expect("lchown symlink");
    xattr::set(p("links/relative"), "trusted.on-a-link", b"link attr").expect("xattr on symlink");

    // One inode under three names in different directories.
    mkdirs("hard/a");
    mkdirs("hard/b");
    fs::write(p("hard/a/one"), b"linked three times\n").expect("writing hard link");
    fs::hard_link(p("hard/a/one"), p("hard/b/two")).expect("hard link");
    fs::hard_link(p("hard/a/one"), p("hard/three")).expect("hard link");

    mkdirs("nested/a/b/c");
    fs::write(p("nested/a/b/c/file"), b"nested\n").expect("writing nested");
    mkdirs("empty-dir");

    // Special files.
    mkdirs("special");
    nix::unistd::mkfifo(&p("special/fifo"), Mode::from_bits_truncate(0o640)).expect("mkfifo");
    drop(UnixListener::bind(p("special/socket")).expect("binding socket"));
    mknod(&p("special/null"), SFlag::S_IFCHR, 0o666, 1, 3);
    mknod(&p("special/loop0"), SFlag::S_IFBLK, 0o660, 7, 0);

    // Overlay upper-layer entries.
    mkdirs("overlay/opaque");
    mknod(&p("overlay/whiteout"), SFlag::S_IFCHR, 0o000, 0, 0);
    let work = sibling(root, "work");
    fs::create_dir(&work).expect("creating work dir");
    mknod(&work.join("#whiteout"), SFlag::S_IFCHR, 0o000, 0, 0);
    // What the kernel does: every whiteout a link to one inode in the work dir.
    for rel in ["overlay/linked-whiteout", "nested/a/linked-whiteout"] {
        fs::hard_link(work.join("#whiteout"), p(rel)).expect("linking whiteout");
    }
    xattr::set(p("overlay/opaque"), "trusted.overlay.opaque", b"y").expect("opaque xattr");
    fs::write(p("overlay/opaque/kept"), b"kept\n").expect("writing in opaque dir");

    // Owners and modes.
    mkdirs("perms/setgid-dir");
    mkdirs("perms/sticky-dir");
    for (rel, uid, gid, mode) in [
        ("perms/setgid-dir", 100_000, 100_007, 0o2755),
        ("perms/sticky-dir", 0, 0, 0o1777),
    ] {
        own(&p(rel), uid, gid, mode);
    }
    for (rel, uid, gid, mode) in [
        ("perms/setuid", 100_000, 100_000, 0o4755),
        ("perms/setgid", 100_033, 4242, 0o2755),
        ("perms/none", 100_000, 65_534, 0o000),
        ("perms/private", 123_456, 100_000, 0o600),
    ] {
        fs::write(p(rel), b"#!/bin/sh\n").expect("writing perms file");
        own(&p(rel), uid, gid, mode);
    }

    // Extended attributes in every namespace.
    mkdirs("xattrs");
    fs::write(p("xattrs/user"), b"u\n").expect("writing");
    xattr::set(p("xattrs/user"), "user.comment", b"hello").expect("user xattr");
    fs::write(p("xattrs/trusted"), b"t\n").expect("writing");
    xattr::set(p("xattrs/trusted"), "trusted.blob", b"\0\x01\xffbinary\0").expect("trusted xattr");
    fs::write(p("xattrs/cap"), b"#!/bin/sh\n").expect("writing");
    own(&p("xattrs/cap"), 100_000, 100_000, 0o755);
    xattr::set(
        p("xattrs/cap"),
        "security.capability",
        &capability_v2(1 << 10, 0),
    )
    .expect("security.capability xattr");
    // What a container's root gets from setcap inside a user namespace.
    fs::write(p("xattrs/cap-v3"), b"#!/bin/sh\n").expect("writing");
    own(&p("xattrs/cap-v3"), 100_000, 100_000, 0o755);
    let mut v3 = capability_v2(1 << 13, 0);
    v3[3] = 0x03;
    v3.extend(100_000u32.to_le_bytes());
    xattr::set(p("xattrs/cap-v3"), "security.capability", &v3).expect("v3 security.capability");
    fs::write(p("xattrs/acl-file"), b"a\n").expect("writing");
    let acl = acl(&[
        (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
        (ACL_USER, 4, 100_005),
        (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
        (ACL_GROUP, 6, 100_006),
        (ACL_MASK, 6, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ]);
    xattr::set(p("xattrs/acl-file"), "system.posix_acl_access", &acl).expect("access ACL");
    mkdirs("xattrs/acl-dir");
    xattr::set(p("xattrs/acl-dir"), "system.posix_acl_access", &acl).expect("access ACL on dir");
    xattr::set(p("xattrs/acl-dir"), "system.posix_acl_default", &acl).expect("default ACL");
    fs::write(p("xattrs/acl-dir/inherits"), b"i\n").expect("writing under default ACL");

    // Names that break naive tools.
    mkdirs("names");
    for name in [
        &b"new\nline"[..],
        b"bad\xff\xfeutf8",
        b"-leading-dash",
        b"with spaces  ",
    ] {
        fs::write(p("names").join(OsStr::from_bytes(name)), name).expect("writing odd name");
    }

    let mut deep = p("deep");
    for level in 1..=20 {
        deep.push(format!("level{level}"));
    }
    fs::create_dir_all(&deep).expect("creating deep path");
    fs::write(deep.join("leaf"), b"deep\n").expect("writing deep leaf");

    own(root, 100_000, 100_000, 0o755);
    xattr::set(root, "user.root-attr", b"root").expect("xattr on root");

    // Times last, every directory after its contents (reverse pre-order).
    for (i, (rel, _)) in lstat_tree(root).iter().rev().enumerate() {
        let i = i as i64;
        let atime = TimeSpec::new(1_000_000_000 + i * 1000, 123_456_789 + i * 7919);
        let mtime = TimeSpec::new(999_000_000 + i * 1000, 987_654_321 - i * 6421);
        stat::utimensat(
            None,
            &root.join(rel),
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .expect("setting times");
    }
    settle_link_atimes(root);
}

/// Reads every symlink under `root` once, a moment after their times were
/// last set, so that relatime will not move their atimes again (see the
/// module doc). Call it on hand-built source trees before copying them.
pub fn settle_link_atimes(root: &Path) {
    std::thread::sleep(Duration::from_millis(50));
    for (rel, st) in lstat_tree(root) {
        if kind(&st) == SFlag::S_IFLNK {
            fs::read_link(root.join(rel)).expect("reading link");
        }
    }
}

/// `<root>.<suffix>` beside root.
pub fn sibling(root: &Path, suffix: &str) -> PathBuf {
    let name = root.file_name().expect("root has a name");
    let mut name = name.to_os_string();
    name.push(format!(".{suffix}"));
    root.with_file_name(name)
}

/// Panics naming the relative path and the field at the first difference.
pub fn assert_trees_identical(a: &Path, b: &Path) {
    // All metadata first: reading links can move their atime.
    let stats_a = lstat_tree(a);
    let stats_b = lstat_tree(b);
    let paths_a: Vec<&PathBuf> = stats_a.iter().map(|(p, _)| p).collect();
    let paths_b: Vec<&PathBuf> = stats_b.iter().map(|(p, _)| p).collect();
    if paths_a != paths_b {
        let only_a: Vec<_> = paths_a.iter().filter(|p| !paths_b.contains(p)).collect();
        let only_b: Vec<_> = paths_b.iter().filter(|p| !paths_a.contains(p)).collect();
        panic!(
            "entries differ: only in {}: {only_a:?}; only in {}: {only_b:?}",
            a.display(),
            b.display()
        );
    }
    for ((rel, sa), (_, sb)) in stats_a.iter().zip(&stats_b) {
        let differs = |field: &str, x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| {
            panic!(
                "/{}: {field} differs: {x:?} in {} vs {y:?} in {}",
                rel.display(),
                a.display(),
                b.display()
            )
        };
        let k = kind(sa);
        if kind(sa) != kind(sb) {
            differs("type", &kind(sa), &kind(sb));
        }
        let fields = [
            ("mode", sa.st_mode as i64, sb.st_mode as i64),
            ("uid", sa.st_uid as i64, sb.st_uid as i64),
            ("gid", sa.st_gid as i64, sb.st_gid as i64),
            ("atime", sa.st_atime, sb.st_atime),
            ("atime nanoseconds", sa.st_atime_nsec, sb.st_atime_nsec),
            ("mtime", sa.st_mtime, sb.st_mtime),
            ("mtime nanoseconds", sa.st_mtime_nsec, sb.st_mtime_nsec),
            ("rdev", sa.st_rdev as i64, sb.st_rdev as i64),
        ];
        for (field, x, y) in fields {
            if x != y {
                differs(field, &x, &y);
            }
        }
        // A directory's size is an artefact of its filesystem's history.
        if k != SFlag::S_IFDIR && sa.st_size != sb.st_size {
            differs("size", &sa.st_size, &sb.st_size);
        }
        if k == SFlag::S_IFREG && sb.st_blocks > sa.st_blocks + 16 {
            differs(
                "allocated blocks (holes not kept)",
                &sa.st_blocks,
                &sb.st_blocks,
            );
        }
        let (xa, xb) = (xattrs(&a.join(rel)), xattrs(&b.join(rel)));
        if xa != xb {
            differs("xattrs", &xa, &xb);
        }
    }
    assert_same_links(a, &stats_a, b, &stats_b);
    for (rel, st) in &stats_a {
        match kind(st) {
            SFlag::S_IFLNK => {
                let ta = fs::read_link(a.join(rel)).expect("reading link");
                let tb = fs::read_link(b.join(rel)).expect("reading link");
                assert_eq!(ta, tb, "/{}: symlink target differs", rel.display());
            }
            SFlag::S_IFREG => {
                let (ca, cb) = (read_noatime(&a.join(rel)), read_noatime(&b.join(rel)));
                assert!(ca == cb, "/{}: contents differ", rel.display());
            }
            _ => {}
        }
    }
}

/// Every whiteout (0/0 character device) under `root` is either a single
/// name or shares its inode only with other names under `root`.
pub fn assert_whiteouts_fresh(root: &Path) {
    let stats = lstat_tree(root);
    let mut names: HashMap<(u64, u64), u64> = HashMap::new();
    for (_, st) in &stats {
        *names.entry((st.st_dev, st.st_ino)).or_default() += 1;
    }
    for (rel, st) in &stats {
        if is_whiteout(st) {
            let inside = names[&(st.st_dev, st.st_ino)];
            assert_eq!(
                st.st_nlink,
                inside,
                "/{}: whiteout is linked to {} names outside {}",
                rel.display(),
                st.st_nlink - inside,
                root.display()
            );
        }
    }
}

/// `(relative path, lstat)` of `root` ("") and everything below, parents
/// before children, siblings by name. Never follows a symlink; reads
/// directories without touching their atime.
pub fn lstat_tree(root: &Path) -> Vec<(PathBuf, FileStat)> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let path = root.join(&rel);
        let st = stat::lstat(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        if kind(&st) == SFlag::S_IFDIR {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_NOATIME;
            let mut dir = Dir::open(&path, flags, Mode::empty())
                .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            let mut names: Vec<OsString> = dir
                .iter()
                .map(|e| {
                    e.expect("reading directory")
                        .file_name()
                        .to_bytes()
                        .to_vec()
                })
                .filter(|n| n != b"." && n != b"..")
                .map(|n| OsStr::from_bytes(&n).to_os_string())
                .collect();
            names.sort();
            todo.extend(names.iter().rev().map(|n| rel.join(n)));
        }
        out.push((rel, st));
    }
    out
}

pub fn is_whiteout(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Every xattr of the entry itself (l*xattr: symlinks are not followed).
pub fn xattrs(path: &Path) -> BTreeMap<OsString, Vec<u8>> {
    xattr::list(path)
        .unwrap_or_else(|e| panic!("listing xattrs of {}: {e}", path.display()))
        .filter_map(|name| {
            let value = xattr::get(path, &name).expect("reading xattr")?;
            Some((name, value))
        })
        .collect()
}

pub fn read_noatime(path: &Path) -> Vec<u8> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut data).expect("reading");
    data
}

/// Two non-directories share an inode in `a` iff they do in `b`. Whiteouts
/// are left out: sharing their inode is the overlay's business, and copies
/// make each one fresh.
fn assert_same_links(
    a: &Path,
    stats_a: &[(PathBuf, FileStat)],
    b: &Path,
    stats_b: &[(PathBuf, FileStat)],
) {
    fn groups(stats: &[(PathBuf, FileStat)]) -> Vec<Vec<&PathBuf>> {
        let mut by_inode: HashMap<(u64, u64), Vec<&PathBuf>> = HashMap::new();
        for (rel, st) in stats {
            if kind(st) != SFlag::S_IFDIR && !is_whiteout(st) {
                by_inode
                    .entry((st.st_dev, st.st_ino))
                    .or_default()
                    .push(rel);
            }
        }
        let mut groups: Vec<_> = by_inode.into_values().filter(|g| g.len() > 1).collect();
        groups.iter_mut().for_each(|g| g.sort());
        groups.sort();
        groups
    }
    let (ga, gb) = (groups(stats_a), groups(stats_b));
    assert_eq!(
        ga,
        gb,
        "hard links differ between {} and {}",
        a.display(),
        b.display()
    );
}

fn own(path: &Path, uid: u32, gid: u32, mode: u32) {
    lchown(path, Some(uid), Some(gid)).expect("lchown");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mknod(path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) {
    stat::mknod(
        path,
        kind,
        Mode::from_bits_truncate(mode),
        stat::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

fn sparse(path: &Path, data: &[(u64, &[u8])], size: u64) {
    let file = File::create(path).expect("creating sparse file");
    for (offset, bytes) in data {
        file.write_all_at(bytes, *offset)
            .expect("writing sparse file");
    }
    file.set_len(size).expect("sizing sparse file");
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A VFS_CAP_REVISION_2 `security.capability` value with the effective bit.
pub fn capability_v2(permitted: u64, inheritable: u64) -> Vec<u8> {
    [
        0x0200_0000u32 | 1,
        permitted as u32,
        inheritable as u32,
        (permitted >> 32) as u32,
        (inheritable >> 32) as u32,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect()
}

pub const ACL_USER_OBJ: u16 = 0x01;
pub const ACL_USER: u16 = 0x02;
pub const ACL_GROUP_OBJ: u16 = 0x04;
pub const ACL_GROUP: u16 = 0x08;
pub const ACL_MASK: u16 = 0x10;
pub const ACL_OTHER: u16 = 0x20;
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// A `system.posix_acl_*` value: version 2, then (tag, perm, id) entries.
pub fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut blob = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        blob.extend(tag.to_le_bytes());
        blob.extend(perm.to_le_bytes());
        blob.extend(id.to_le_bytes());
    }
    blob
}
