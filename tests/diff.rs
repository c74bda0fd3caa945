//! `lxc_snap::diff` against real layers, as root: deltas written by a real
//! overlayfs mount (whiteouts, opaque directories, copy-ups), hand-built
//! layer stacks, and the resolver checked against what the kernel shows.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, lchown, symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lxc_snap::copy::{copy_tree, make_layer, plan_layer, Compare, CopyOptions, Plan};
use lxc_snap::diff::{diff, format_line, Change, Kind, Options, Summary, View};
use lxc_snap::ErrorKind;
use nix::fcntl::{self, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lxc-snap-diff.")
        .tempdir_in("/tmp")
        .expect("creating temp dir")
}

/// An overlayfs mount, unmounted on drop so a failing test leaves none behind.
struct Overlay(PathBuf);

impl Overlay {
    /// Read-only: every layer a lower, top first.
    fn read_only(layers: &[PathBuf], target: &Path) -> Overlay {
        let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        Overlay::mount(
            target,
            MsFlags::MS_RDONLY,
            &format!("lowerdir={}", lower.join(":")),
        )
    }

    /// Writable, as LXC mounts an overlay container: `upper` over `lower`.
    fn writable(upper: &Path, work: &Path, lower: &Path, target: &Path) -> Overlay {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        Overlay::mount(target, MsFlags::empty(), &opts)
    }

    fn mount(target: &Path, flags: MsFlags, opts: &str) -> Overlay {
        fs::create_dir_all(target).expect("creating mount point");
        mount(Some("overlay"), target, Some("overlay"), flags, Some(opts))
            .unwrap_or_else(|e| panic!("mounting overlay {opts} on {}: {e}", target.display()));
        Overlay(target.to_path_buf())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("creating parent");
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn mkdirs(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

fn whiteout(path: &Path) {
    if let Some(parent) = path.parent() {
        mkdirs(parent);
    }
    stat::mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).expect("mknod whiteout");
}

fn opaque(path: &Path) {
    mkdirs(path);
    xattr::set(path, "trusted.overlay.opaque", b"y").expect("setting opaque");
}

fn set_mtime(path: &Path, secs: i64) {
    let t = TimeSpec::new(secs, 0);
    stat::utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).expect("utimensat");
}

/// Runs the diff and returns `letter path<TAB>details` lines and the summary.
fn lines(old: &View, new: &View, content: bool) -> (Vec<String>, Summary) {
    let mut out = Vec::new();
    let summary = diff(
        old,
        new,
        &Options {
            content,
            ..Options::default()
        },
        |c: &Change| {
            out.push(format!("{}\t{}", format_line(c), c.details()));
        },
    )
    .expect("diff");
    (out, summary)
}

fn assert_lines(got: &[String], want: &[&str]) {
    assert_eq!(
        got,
        want,
        "\ngot:\n{}\nwant:\n{}",
        got.join("\n"),
        want.join("\n")
    );
}

/// The summary's counts must agree with the lines.
fn assert_counts(lines: &[String], s: &Summary) {
    let n = |letter: char| lines.iter().filter(|l| l.starts_with(letter)).count() as u64;
    assert_eq!(
        (s.added, s.modified, s.deleted, s.type_changed),
        (n('A'), n('M'), n('D'), n('R')),
        "{s:?}"
    );
}

/// A container's root filesystem to build overlays on.
fn build_base(base: &Path) {
    let p = |r: &str| base.join(r);
    write(&p("etc/motd"), b"hello\n");
    write(&p("etc/hostname"), b"base\n");
    write(&p("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n");
    write(&p("etc/shadow"), b"root:*::::::\n");
    fs::set_permissions(p("etc/shadow"), fs::Permissions::from_mode(0o640)).expect("chmod");
    write(&p("usr/bin/tool"), &[7u8; 1000]);
    fs::set_permissions(p("usr/bin/tool"), fs::Permissions::from_mode(0o755)).expect("chmod");
    write(&p("usr/share/doc/a/README"), b"doc a\n");
    write(&p("usr/share/doc/b/README"), b"doc b\n");
    write(&p("var/lib/app/db"), b"0123456789");
    write(&p("var/lib/app/cache/x"), b"xx");
    write(&p("opt/old/1"), b"1");
    write(&p("opt/old/2"), b"22");
    write(&p("srv/file"), b"file");
    write(&p("srv/tofile"), b"tofile");
    mkdirs(&p("lib"));
    symlink("target1", p("lib/link")).expect("symlink");
    symlink("usr/bin", p("bin")).expect("symlink");
    mkdirs(&p("tmp"));
    set_mtime(&p("etc/motd"), 1_600_000_000);
}

#[test]
fn snapshots_and_live_state_of_a_real_overlay_container() {
    if !common::system_tests_enabled(
        "snapshots_and_live_state_of_a_real_overlay_container",
        false,
    ) {
        return;
    }
    let tmp = temp_dir();
    let t = |r: &str| tmp.path().join(r);
    let base = t("base/rootfs");
    build_base(&base);
    // The container as LXC 4+ lays it out, and two snapshots of it.
    let (delta, work) = (t("c1/overlay/delta"), t("c1/overlay/work"));
    mkdirs(&delta);
    mkdirs(&work);
    let lowers = [base.clone()];
    let live = View::overlay(&delta, &lowers);
    let snap = |n: u32| t(&format!("snaps/c1_{n}/private/delta"));
    mkdirs(&t("snaps/c1_0/private"));
    mkdirs(&t("snaps/c1_1/private"));
    let snap0 = View::overlay(snap(0), &lowers);
    let snap1 = View::overlay(snap(1), &lowers);

    // Before the first snapshot.
    {
        let m = Overlay::writable(&delta, &work, &base, &t("c1/rootfs"));
        write(&m.path("etc/hostname"), b"c1\n");
        write(&m.path("home/user/.profile"), b"PS1='$ '\n");
    }
    copy_tree(&delta, &snap(0)).expect("snapshot 0");

    // Changes made inside the running container, through the overlay.
    let m = Overlay::writable(&delta, &work, &base, &t("c1/rootfs"));
    let motd = m.path("etc/motd");
    write(&motd, b"HELLO\n");
    set_mtime(&motd, 1_600_000_000);
    fs::set_permissions(m.path("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    chown(m.path("etc/shadow"), Some(0), Some(42)).expect("chown");
    xattr::set(m.path("etc/passwd"), "user.tag", b"edited").expect("setxattr");
    fs::remove_file(m.path("etc/hostname")).expect("rm");
    fs::remove_dir_all(m.path("usr/share/doc/a")).expect("rm -r");
    // Replaced directory: the kernel makes /var/lib/app opaque.
    fs::remove_dir_all(m.path("var/lib/app")).expect("rm -r");
    write(&m.path("var/lib/app/new"), b"new");
    fs::remove_file(m.path("srv/file")).expect("rm");
    write(&m.path("srv/file/inside"), b"in");
    fs::remove_file(m.path("srv/tofile")).expect("rm");
    symlink("/etc/passwd", m.path("srv/tofile")).expect("symlink");
    fs::remove_file(m.path("lib/link")).expect("rm");
    symlink("target2", m.path("lib/link")).expect("symlink");
    write(&m.path("home/user/proj/src/main.c"), b"int main;\n");
    fs::remove_dir_all(m.path("opt/old")).expect("rm -r");
    for name in [&b"new\nline"[..], b"bad\xff", b"-rf"] {
        let mut rel = b"tmp/".to_vec();
        rel.extend_from_slice(name);
        write(&m.path("").join(OsStr::from_bytes(&rel)), b"!");
    }

    // Against the live state, while mounted.
    let want = [
        "M /etc/passwd\txattrs",
        "M /etc/shadow\towner 0:0 -> 0:42",
        "A /home/user/proj\tdirectory",
        "A /home/user/proj/src\tdirectory",
        "A /home/user/proj/src/main.c\tfile",
        "M /lib/link\ttarget target1 -> target2",
        "D /opt/old\tdirectory",
        "D /opt/old/1\tfile",
        "D /opt/old/2\tfile",
        "R /srv/file\tfile -> directory",
        "A /srv/file/inside\tfile",
        "R /srv/tofile\tfile -> symlink",
        "A /tmp/-rf\tfile",
        "A /tmp/bad\\xff\tfile",
        "A /tmp/new\\nline\tfile",
        "M /usr/bin/tool\tmode 0755 -> 4755",
        "D /usr/share/doc/a\tdirectory",
        "D /usr/share/doc/a/README\tfile",
        "D /var/lib/app/cache\tdirectory",
        "D /var/lib/app/cache/x\tfile",
        "D /var/lib/app/db\tfile",
        "A /var/lib/app/new\tfile",
    ];
    // /etc/hostname was copied up before snapshot 0, so its whiteout is a
    // deletion between the two deltas; /etc/motd kept its size and mtime.
    let mut with_hostname: Vec<&str> = want.to_vec();
    with_hostname.insert(0, "D /etc/hostname\tfile");
    let (got, summary) = lines(&snap0, &live, false);
    assert_lines(&got, &with_hostname);
    assert_counts(&got, &summary);
    assert_eq!(
        summary,
        Summary {
            added: 8,
            modified: 4,
            deleted: 9,
            type_changed: 2,
            bytes_added: 10 + 2 + 1 + 1 + 1 + 3,
            bytes_removed: 3 + 1 + 2 + 6 + 2 + 10 + 4 + 6,
            bytes_changed: 0,
        }
    );
    let (got_content, _) = lines(&snap0, &live, true);
    let mut with_motd = with_hostname.clone();
    with_motd.insert(1, "M /etc/motd\tcontent");
    assert_lines(&got_content, &with_motd);

    // The same comparison through the kernel: both views mounted, compared
    // as plain trees, must give the same lines.
    {
        let s0 = Overlay::read_only(&snap0.layers, &t("mnt/snap0"));
        let (through_kernel, _) = lines(&View::dir(&s0.0), &View::dir(&m.0), true);
        assert_lines(&through_kernel, &with_motd);
    }
    drop(m);

    // A second snapshot of the stopped container says the same, and nothing
    // differs between it and the container.
    copy_tree(&delta, &snap(1)).expect("snapshot 1");
    let (got, _) = lines(&snap0, &snap1, true);
    assert_lines(&got, &with_motd);
    let (got, summary) = lines(&snap1, &live, true);
    assert_lines(&got, &[]);
    assert_eq!(summary, Summary::default());
    // Stored as a layer over snapshot 0 instead, it says the same.
    let Plan::Layer(plan) = plan_layer(
        &delta,
        &snap(0),
        &lowers,
        Compare::QuickCheck,
        None,
        false,
        None,
    )
    .expect("plan") else {
        panic!("changes made through the overlay fit a layer");
    };
    let layer = t("snaps/c1_2/private/delta");
    mkdirs(&t("snaps/c1_2/private"));
    make_layer(&delta, &layer, &plan, &CopyOptions::default()).expect("layer");
    let layered = View::overlay(&layer, &[snap(0), base.clone()]);
    let (got, _) = lines(&snap0, &layered, true);
    assert_lines(&got, &with_motd);
    let (got, _) = lines(&layered, &live, true);
    assert_lines(&got, &[]);
    // And backwards, every addition is a deletion.
    let (got, _) = lines(&live, &snap0, false);
    assert!(got.contains(&"D /home/user/proj/src/main.c\tfile".to_string()));
    assert!(got.contains(&"A /var/lib/app/db\tfile".to_string()));
    assert!(got.contains(&"R /srv/file\tdirectory -> file".to_string()));
    assert!(got.contains(&"A /etc/hostname\tfile".to_string()));
}

/// Two hand-built deltas over one base: old = [da, base], new = [db, base].
struct Layers {
    tmp: tempfile::TempDir,
}

impl Layers {
    fn new() -> Layers {
        let tmp = temp_dir();
        for d in ["base", "da", "db"] {
            mkdirs(&tmp.path().join(d));
        }
        Layers { tmp }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn old(&self) -> View {
        View::overlay(self.p("da"), &[self.p("base")])
    }

    fn new_view(&self) -> View {
        View::overlay(self.p("db"), &[self.p("base")])
    }
}

#[test]
fn whiteout_in_the_newer_layer_is_a_deletion() {
    if !common::system_tests_enabled("whiteout_in_the_newer_layer_is_a_deletion", false) {
        return;
    }
    let l = Layers::new();
    write(&l.p("base/etc/motd"), b"hi");
    write(&l.p("base/etc/keep"), b"k");
    write(&l.p("base/usr/lib/a/b"), b"bb");
    whiteout(&l.p("db/etc/motd"));
    // A whited-out directory takes everything below it.
    whiteout(&l.p("db/usr/lib"));
    // A whiteout of a name no lower has hides nothing and shows nothing.
    whiteout(&l.p("db/never"));
    for d in ["base/etc", "db/etc", "base/usr", "db/usr"] {
        fs::set_permissions(l.p(d), fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    let (got, s) = lines(&l.old(), &l.new_view(), false);
    assert_lines(
        &got,
        &[
            "D /etc/motd\tfile",
            "D /usr/lib\tdirectory",
            "D /usr/lib/a\tdirectory",
            "D /usr/lib/a/b\tfile",
        ],
    );
    assert_eq!((s.deleted, s.bytes_removed), (4, 4));
}

#[test]
fn opaque_directory_hides_the_older_contents() {
    if !common::system_tests_enabled("opaque_directory_hides_the_older_contents", false) {
        return;
    }
    let l = Layers::new();
    write(&l.p("base/opt/a"), b"a");
    write(&l.p("base/opt/sub/deep"), b"deep");
    write(&l.p("base/opt/same"), b"same");
    set_mtime(&l.p("base/opt/same"), 1_000_000);
    opaque(&l.p("db/opt"));
    write(&l.p("db/opt/same"), b"same");
    set_mtime(&l.p("db/opt/same"), 1_000_000);
    write(&l.p("db/opt/fresh"), b"fresh");
    for d in ["base/opt", "db/opt"] {
        fs::set_permissions(l.p(d), fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    let (got, s) = lines(&l.old(), &l.new_view(), true);
    // The opaque attribute itself is the overlay's, not a change.
    assert_lines(
        &got,
        &[
            "D /opt/a\tfile",
            "A /opt/fresh\tfile",
            "D /opt/sub\tdirectory",
            "D /opt/sub/deep\tfile",
        ],
    );
    assert_counts(&got, &s);

    // In the older view the same directory hides base's contents too.
    opaque(&l.p("da/opt"));
    fs::set_permissions(l.p("da/opt"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let (got, _) = lines(&l.old(), &l.new_view(), true);
    assert_lines(&got, &["A /opt/fresh\tfile", "A /opt/same\tfile"]);
}

#[test]
fn owner_mode_xattr_content_target_and_type_changes() {
    if !common::system_tests_enabled("owner_mode_xattr_content_target_and_type_changes", false) {
        return;
    }
    let l = Layers::new();
    let both = |rel: &str, data: &[u8]| {
        for top in ["da", "db"] {
            let p = l.p(&format!("{top}/{rel}"));
            write(&p, data);
            set_mtime(&p, 1_000_000);
        }
    };
    both("f/owner", b"o");
    chown(l.p("db/f/owner"), Some(100000), Some(100000)).expect("chown");
    both("f/mode", b"m");
    fs::set_permissions(l.p("db/f/mode"), fs::Permissions::from_mode(0o2755)).expect("chmod");
    both("f/xattr", b"x");
    xattr::set(l.p("da/f/xattr"), "trusted.note", b"1").expect("setxattr");
    xattr::set(l.p("db/f/xattr"), "trusted.note", b"2").expect("setxattr");
    // Same size, other bytes, mtime put back: only --content sees it.
    both("f/sneaky", b"abc");
    write(&l.p("db/f/sneaky"), b"abd");
    set_mtime(&l.p("db/f/sneaky"), 1_000_000);
    both("f/file-to-dir", b"12");
    fs::remove_file(l.p("db/f/file-to-dir")).expect("rm");
    write(&l.p("db/f/file-to-dir/x"), b"x");
    both("f/file-to-link", b"123");
    fs::remove_file(l.p("db/f/file-to-link")).expect("rm");
    symlink("/etc/shadow", l.p("db/f/file-to-link")).expect("symlink");
    symlink("a", l.p("da/f/link")).expect("symlink");
    symlink("b", l.p("db/f/link")).expect("symlink");
    lchown(l.p("db/f/link"), Some(5), Some(5)).expect("lchown");
    stat::mknod(
        &l.p("da/f/dev"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        stat::makedev(1, 3),
    )
    .expect("mknod");
    stat::mknod(
        &l.p("db/f/dev"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        stat::makedev(1, 5),
    )
    .expect("mknod");
    fs::set_permissions(l.p("db/f"), fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::set_permissions(l.p("da/f"), fs::Permissions::from_mode(0o755)).expect("chmod");

    let (got, s) = lines(&l.old(), &l.new_view(), false);
    let mut want = vec![
        "M /f\tmode 0755 -> 0700",
        "M /f/dev\tdevice",
        "R /f/file-to-dir\tfile -> directory",
        "A /f/file-to-dir/x\tfile",
        "R /f/file-to-link\tfile -> symlink",
        "M /f/link\ttarget a -> b, owner 0:0 -> 5:5",
        "M /f/mode\tmode 0644 -> 2755",
        "M /f/owner\towner 0:0 -> 100000:100000",
        "M /f/xattr\txattrs",
    ];
    assert_lines(&got, &want);
    assert_counts(&got, &s);
    assert_eq!((s.bytes_added, s.bytes_removed), (1, 2 + 3));

    let (got, s) = lines(&l.old(), &l.new_view(), true);
    want.insert(8, "M /f/sneaky\tcontent");
    assert_lines(&got, &want);
    assert_eq!(s.bytes_changed, 3);
}

#[test]
fn symlinks_in_a_layer_are_never_followed() {
    if !common::system_tests_enabled("symlinks_in_a_layer_are_never_followed", false) {
        return;
    }
    let l = Layers::new();
    write(&l.p("base/etc/motd"), b"hi");
    // The newer layer replaces /etc with a link to the host's /etc, and
    // adds a directory-looking link: neither is entered.
    symlink("/etc", l.p("db/etc")).expect("symlink");
    symlink("/", l.p("db/root-of-host")).expect("symlink");
    let (got, _) = lines(&l.old(), &l.new_view(), true);
    assert_lines(
        &got,
        &[
            "R /etc\tdirectory -> symlink",
            "D /etc/motd\tfile",
            "A /root-of-host\tsymlink -> /",
        ],
    );

    // A layer given as a symlink is refused, not followed.
    symlink(l.p("db"), l.p("db-link")).expect("symlink");
    let linked = View::overlay(l.p("db-link"), &[l.p("base")]);
    let err = diff(&l.old(), &linked, &Options::default(), |_| {}).expect_err("refused");
    assert!(err.message().contains("symbolic link"), "{err}");
}

#[test]
fn redirected_layers_are_refused() {
    if !common::system_tests_enabled("redirected_layers_are_refused", false) {
        return;
    }
    let l = Layers::new();
    write(&l.p("base/a/x"), b"x");
    mkdirs(&l.p("db/b"));
    xattr::set(l.p("db/b"), "trusted.overlay.redirect", b"/a").expect("setxattr");
    let err = diff(&l.old(), &l.new_view(), &Options::default(), |_| {}).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("db/b"), "{err}");
}

/// Every path of a tree as the kernel shows it: (type, mode, uid, gid, size).
fn walk_mount(root: &Path) -> BTreeMap<Vec<u8>, (u32, u32, u32, u64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            // overlayfs lists a whiteout in a directory only one lower layer
            // has, but it cannot be looked up: not there.
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path.strip_prefix(root).expect("below root");
            let mut key = b"/".to_vec();
            key.extend_from_slice(rel.as_os_str().as_bytes());
            let size = if md.is_file() { md.len() } else { 0 };
            out.insert(key, (md.mode(), md.uid(), md.gid(), size));
            if md.is_dir() {
                todo.push(path);
            }
        }
    }
    out
}

/// Every path of a view as the resolver sees it, from a diff against nothing.
fn resolve(view: &View, empty: &Path) -> BTreeMap<Vec<u8>, (u32, u32, u32, u64)> {
    let mut paths = Vec::new();
    diff(&View::dir(empty), view, &Options::default(), |c| {
        assert_eq!(c.kind, Kind::Added, "{}", format_line(c));
        paths.push((c.path.clone(), c.new_size));
    })
    .expect("diff");
    // Owner and mode from the topmost layer holding the path: the one the
    // resolver took it from. No reported path goes through a symlink.
    let mut out = BTreeMap::new();
    for (path, size) in paths {
        let st = view
            .layers
            .iter()
            .find_map(|layer| fs::symlink_metadata(layer.join(OsStr::from_bytes(&path[1..]))).ok())
            .expect("found in some layer");
        out.insert(path, (st.mode(), st.uid(), st.gid(), size));
    }
    out
}

#[test]
fn resolver_agrees_with_a_real_overlay_mount() {
    if !common::system_tests_enabled("resolver_agrees_with_a_real_overlay_mount", false) {
        return;
    }
    let tmp = temp_dir();
    let p = |r: &str| tmp.path().join(r);
    for d in ["top", "mid", "bot", "other", "empty"] {
        mkdirs(&p(d));
    }
    // bot: the base.
    write(&p("bot/etc/a"), b"a");
    write(&p("bot/etc/b"), b"bb");
    write(&p("bot/etc/sub/c"), b"ccc");
    write(&p("bot/usr/x"), b"x");
    write(&p("bot/usr/y/z"), b"z");
    write(&p("bot/var/file"), b"f");
    write(&p("bot/opt/deep/deeper/f"), b"f");
    write(&p("bot/link-dir/inner"), b"i");
    write(&p("bot/only-bot/q"), b"q");
    whiteout(&p("bot/etc/ghost"));
    // mid: whiteouts and an opaque directory in a middle layer.
    whiteout(&p("mid/etc/a"));
    write(&p("mid/etc/m"), b"mm");
    opaque(&p("mid/usr"));
    write(&p("mid/usr/new"), b"n");
    mkdirs(&p("mid/var/file"));
    write(&p("mid/var/file/under"), b"u");
    whiteout(&p("mid/only-mid/w"));
    write(&p("mid/only-mid/k"), b"k");
    mkdirs(&p("mid/opt/deep"));
    chown(p("mid/opt/deep"), Some(7), Some(8)).expect("chown");
    // Whiteouts as marked empty files, in a directory marked to hold them.
    mkdirs(&p("mid/xw"));
    write(&p("bot/xw/gone"), b"g");
    write(&p("bot/xw/kept"), b"k");
    write(&p("mid/xw/gone"), b"");
    xattr::set(p("mid/xw/gone"), "trusted.overlay.whiteout", b"").expect("setxattr");
    xattr::set(p("mid/xw"), "trusted.overlay.opaque", b"x").expect("setxattr");
    // top: over all of it. overlayfs ignores `opaque` on a layer's root.
    xattr::set(p("top"), "trusted.overlay.opaque", b"y").expect("setxattr");
    write(&p("top/etc/b"), b"BB!");
    whiteout(&p("top/etc/sub"));
    mkdirs(&p("top/usr"));
    fs::set_permissions(p("top/usr"), fs::Permissions::from_mode(0o711)).expect("chmod");
    write(&p("top/usr/x"), b"back");
    write(&p("top/var/file/more"), b"more");
    symlink("/etc", p("top/link-dir")).expect("symlink");
    write(&p("top/opt/deep/deeper/g"), b"g");
    write(&p("top").join(OsStr::from_bytes(b"\xff\nname")), b"odd");
    // other: a second view that shares mid and bot.
    write(&p("other/etc/a"), b"back again");
    whiteout(&p("other/var"));
    opaque(&p("other/opt/deep"));

    let view = View::overlay(p("top"), &[p("mid"), p("bot")]);
    let other = View::overlay(p("other"), &[p("mid"), p("bot")]);
    let m = Overlay::read_only(&view.layers, &p("mnt/view"));
    let o = Overlay::read_only(&other.layers, &p("mnt/other"));

    let kernel = walk_mount(&m.0);
    let ours = resolve(&view, &p("empty"));
    assert_eq!(
        ours.keys()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>(),
        kernel
            .keys()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );
    assert_eq!(ours, kernel);
    assert!(kernel.contains_key(&b"/usr/new"[..]));
    assert!(!kernel.contains_key(&b"/usr/y"[..]));
    assert!(!kernel.contains_key(&b"/xw/gone"[..]));
    assert_eq!(walk_mount(&o.0), resolve(&other, &p("empty")));

    // The diff of the two stacks equals the diff of the two mounts.
    for content in [false, true] {
        let (layers, s) = lines(&view, &other, content);
        let (mounts, _) = lines(&View::dir(&m.0), &View::dir(&o.0), content);
        assert_lines(
            &layers,
            &mounts.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_counts(&layers, &s);
        assert!(!layers.is_empty());
    }
}

#[test]
fn walks_a_very_deep_tree_on_a_small_stack() {
    if !common::system_tests_enabled("walks_a_very_deep_tree_on_a_small_stack", false) {
        return;
    }
    const DEPTH: usize = 1500;
    let l = Layers::new();
    // Too deep for paths (PATH_MAX): build level by level. The newer delta
    // has the whole chain (as a copy-up makes it) and a changed leaf.
    for (top, data) in [("base", &b"old"[..]), ("db", b"new!")] {
        let mut dir = fs::File::open(l.p(top)).expect("open");
        for _ in 0..DEPTH {
            stat::mkdirat(Some(dir.as_raw_fd()), "d", Mode::S_IRWXU).expect("mkdirat");
            let fd = fcntl::openat(
                Some(dir.as_raw_fd()),
                "d",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .expect("openat");
            // SAFETY: openat just returned this descriptor.
            dir = unsafe { fs::File::from_raw_fd(fd) };
        }
        let fd = fcntl::openat(
            Some(dir.as_raw_fd()),
            "leaf",
            OFlag::O_WRONLY | OFlag::O_CREAT,
            Mode::S_IRUSR,
        )
        .expect("creating leaf");
        // SAFETY: openat just returned this descriptor.
        let leaf = unsafe { fs::File::from_raw_fd(fd) };
        leaf.write_all_at(data, 0).expect("write");
    }

    // Three descriptors a level: the walk must raise a low soft limit itself.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard as usize > 3 * DEPTH + 100,
        "hard RLIMIT_NOFILE {hard} too low for this test"
    );
    setrlimit(Resource::RLIMIT_NOFILE, 1024, hard).expect("lowering soft limit");
    let (old, new) = (l.old(), l.new_view());
    let got = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || lines(&old, &new, true))
        .expect("spawning")
        .join()
        .expect("diff thread panicked");

    let path = format!("{}/leaf", "/d".repeat(DEPTH));
    assert_eq!(got.0, [format!("M {path}\tcontent")]);
    assert_eq!(got.1.bytes_changed, 4);
}
