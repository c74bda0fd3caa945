//! `export` and `import`: a real busybox container's snapshots written as
//! streams (zstd, gzip, plain, through a pipe), recreated in a second
//! snapdir ("another host" with the same base), restored there and
//! started; and streams that are cut, damaged, forged or too big refused
//! with nothing left behind.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::lxc::{tree_manifest, Lab};

/// lxc-snap on the lab's lxcpath with the snapdir `snapdir`.
fn on(lab: &Lab, snapdir: &Path, args: &[&str]) -> Output {
    Command::new(common::bin())
        .arg("-P")
        .arg(lab.lxcpath())
        .arg("--snapdir")
        .arg(snapdir)
        .args(args)
        .output()
        .expect("running lxc-snap")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
        + String::from_utf8_lossy(&out.stderr).as_ref()
}

/// A base, its overlay clone `c1` with some files, and `c1_0` (whole) and
/// `c1_1` (a layer over it).
fn lab(test: &str) -> Option<Lab> {
    if !common::system_tests_enabled(test, true) {
        return None;
    }
    let lab = Lab::new();
    let lp = lab.lxcpath();
    lab.create_base("base");
    lab.overlay_clone("base", "c1");
    lab.start(lp, "c1");
    lab.attach(
        lp,
        "c1",
        "mkdir -p /srv/db && echo one > /srv/db/rows && ln /srv/db/rows /srv/db/rows.link \
         && ln -s rows /srv/db/current && mkfifo /srv/db/fifo && rm /bin/vi && sync",
    );
    lab.stop(lp, "c1");
    let delta = lab.delta("c1");
    xattr::set(delta.join("srv/db/rows"), "user.origin", b"host\n").expect("setxattr");
    let sparse = fs::File::create(delta.join("srv/db/sparse")).expect("create");
    sparse.set_len(64 << 20).expect("truncate");
    std::os::unix::fs::FileExt::write_at(&sparse, b"end", (64 << 20) - 3).expect("write");
    drop(sparse);
    // Bulk that does not change, for the incremental stream to leave out.
    fs::create_dir(delta.join("srv/bulk")).expect("mkdir");
    for i in 0..300 {
        fs::write(
            delta.join(format!("srv/bulk/{i}")),
            format!("{i}\n").repeat(1000),
        )
        .expect("write");
    }
    fs::create_dir(lab.snapdir()).expect("snapdir");
    lab.env.ok(&["snap", "c1"]);
    lab.start(lp, "c1");
    lab.attach(lp, "c1", "echo two >> /srv/db/rows && rm /bin/ls && sync");
    lab.stop(lp, "c1");
    let comment = lab.env.path().join("comment");
    fs::write(&comment, "after the second row\n").expect("comment");
    lab.env
        .ok(&["snap", "-c", comment.to_str().expect("utf-8"), "c1"]);
    let info: serde_json::Value =
        serde_json::from_str(&lab.env.ok(&["info", "--json", "c1_1"])).expect("info");
    assert_eq!(info["layer_over"], "c1_0", "c1_1 is a layer: {info}");
    Some(lab)
}

fn second_snapdir(lab: &Lab) -> PathBuf {
    let s2 = lab.env.path().join("snaps2");
    fs::create_dir(&s2).expect("snapdir 2");
    s2
}

/// What is in a snapdir besides lxc-snap's own state.
fn entries(snapdir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(snapdir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lxc-snap")
        .collect();
    names.sort();
    names
}

#[test]
fn a_snapshot_travels_as_a_stream_and_boots_where_it_lands() {
    let Some(lab) = lab("a_snapshot_travels_as_a_stream_and_boots_where_it_lands") else {
        return;
    };
    let s2 = second_snapdir(&lab);
    let dir = lab.env.path();
    let captured = tree_manifest(&lab.delta("c1"));
    let mtime = fs::symlink_metadata(lab.delta("c1").join("srv/db/rows")).expect("stat");

    // zstd by default; tar itself reads it.
    let zst = dir.join("c1_1.tar.zst");
    lab.env
        .ok(&["export", "-o", zst.to_str().expect("utf-8"), "c1_1"]);
    let listing = Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(&zst)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.starts_with("lxc-snap/manifest.json\nlxc-snap/config\ntree\n"),
        "{listing}"
    );
    assert!(listing.contains("tree/srv/db/rows.link"), "{listing}");
    let said = ok(
        on(&lab, &s2, &["import", zst.to_str().expect("utf-8")]),
        "import",
    );
    assert!(said.contains("imported c1_1 as c1_0"), "{said}");

    // The same tree, entry for entry (the layer was flattened).
    let imported = s2.join("c1_0/private/delta");
    assert_eq!(tree_manifest(&imported), captured);
    let st = fs::symlink_metadata(imported.join("srv/db/rows")).expect("stat");
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::mtime(&st),
            std::os::unix::fs::MetadataExt::mtime_nsec(&st)
        ),
        (
            std::os::unix::fs::MetadataExt::mtime(&mtime),
            std::os::unix::fs::MetadataExt::mtime_nsec(&mtime)
        ),
        "nanosecond mtime"
    );
    assert!(
        std::os::unix::fs::MetadataExt::blocks(
            &fs::symlink_metadata(imported.join("srv/db/sparse")).expect("stat")
        ) < 1024,
        "the sparse file came back dense"
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok(on(&lab, &s2, &["info", "--json", "c1_0"]), "info"))
            .expect("info JSON");
    let original: serde_json::Value =
        serde_json::from_str(&lab.env.ok(&["info", "--json", "c1_1"])).expect("info JSON");
    assert_eq!(info["comment"], original["comment"], "{info}");
    assert_eq!(info["created"], original["created"], "{info}");

    // gzip, plain, and through a pipe.
    let gz = dir.join("c1_1.tar.gz");
    lab.env.ok(&[
        "export",
        "--compression",
        "gzip",
        "-o",
        gz.to_str().expect("utf-8"),
        "c1_1",
    ]);
    ok(
        on(&lab, &s2, &["import", gz.to_str().expect("utf-8")]),
        "import gzip",
    );
    let mut export = lab
        .env
        .cmd()
        .args(["export", "--compression", "none", "c1_0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("export");
    let import = Command::new(common::bin())
        .arg("-P")
        .arg(lab.lxcpath())
        .arg("--snapdir")
        .arg(&s2)
        .args(["import", "--as", "other", "-"])
        .stdin(export.stdout.take().expect("pipe"))
        .output()
        .expect("import");
    assert!(export.wait().expect("export").success());
    ok(import, "import from a pipe");
    assert_eq!(entries(&s2), ["c1_0", "c1_1", "other_0"]);

    // Restored where it landed, it boots and has the data.
    ok(on(&lab, &s2, &["-r", "c1_0", "moved"]), "restore");
    lab.start(lab.lxcpath(), "moved");
    let rows = lab.attach(
        lab.lxcpath(),
        "moved",
        "cat /srv/db/rows; test -e /bin/ls || echo no-ls",
    );
    assert_eq!(rows, "one\ntwo\nno-ls\n");
    lab.stop(lab.lxcpath(), "moved");
}

#[test]
fn cut_damaged_forged_or_oversized_streams_leave_nothing() {
    let Some(lab) = lab("cut_damaged_forged_or_oversized_streams_leave_nothing") else {
        return;
    };
    let s2 = second_snapdir(&lab);
    let dir = lab.env.path();
    let plain = dir.join("c1_1.tar");
    lab.env.ok(&[
        "export",
        "--compression",
        "none",
        "-o",
        plain.to_str().expect("utf-8"),
        "c1_1",
    ]);
    let bytes = fs::read(&plain).expect("read");
    let import = |file: &Path, extra: &[&str]| {
        let mut args = vec!["import"];
        args.extend_from_slice(extra);
        args.push(file.to_str().expect("utf-8"));
        on(&lab, &s2, &args)
    };
    let refused = |name: &str, data: &[u8], code: i32, says: &str| {
        let file = dir.join(name);
        fs::write(&file, data).expect("write");
        let out = import(&file, &[]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert_eq!(entries(&s2), Vec::<String>::new(), "{name} left something");
        let work = s2.join(".lxc-snap");
        let leftovers: Vec<_> = fs::read_dir(&work)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains("tmp"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
    };
    refused("cut.tar", &bytes[..bytes.len() / 2], 1, "cut short");
    // One byte of a file's data changed: only the digest can tell.
    let mut damaged = bytes.clone();
    let at = find(&bytes, b"one\ntwo\n").expect("the rows file's data");
    damaged[at] = b'O';
    refused("damaged.tar", &damaged, 1, "digest does not match");
    let mut header = bytes.clone();
    header[1024 + 20] ^= 0x55;
    refused("header.tar", &header, 1, "corrupt");
    refused("empty.tar", &[0u8; 1024], 1, "ends before");
    refused(
        "noise",
        b"not a stream at all, not even close",
        1,
        "cut short",
    );
    let oversized = dir.join("ok.tar");
    fs::write(&oversized, &bytes).expect("write");
    let out = import(&oversized, &["--max-size", "1M"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bytes allowed"));
    assert_eq!(entries(&s2), Vec::<String>::new());

    // A base that is not what the snapshot stands on.
    let etc = lab.lxcpath().join("base/rootfs/etc");
    let before = nix::sys::stat::lstat(&etc).expect("stat");
    let base_file = etc.join("changed-on-this-host");
    fs::write(&base_file, b"x").expect("write");
    let out = import(&oversized, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the one it stands on"));
    fs::remove_file(&base_file).expect("rm");
    nix::sys::stat::utimensat(
        None,
        &etc,
        &nix::sys::time::TimeSpec::new(before.st_atime, before.st_atime_nsec),
        &nix::sys::time::TimeSpec::new(before.st_mtime, before.st_mtime_nsec),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("putting the times back");
    ok(import(&oversized, &[]), "import once the base is back");
}

#[test]
fn a_config_that_acts_on_the_host_needs_trust() {
    let Some(lab) = lab("a_config_that_acts_on_the_host_needs_trust") else {
        return;
    };
    let s2 = second_snapdir(&lab);
    let config = lab.lxcpath().join("c1/config");
    let mut text = fs::read_to_string(&config).expect("config");
    text.push_str("lxc.hook.post-stop = /bin/true\n");
    fs::write(&config, text).expect("config");
    lab.env.ok(&["snap", "c1"]);
    let file = lab.env.path().join("c1_2.tar.zst");
    lab.env
        .ok(&["export", "-o", file.to_str().expect("utf-8"), "c1_2"]);
    let out = on(&lab, &s2, &["import", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("lxc.hook.post-stop = /bin/true"), "{err}");
    assert!(err.contains("--trust-config"), "{err}");
    assert_eq!(entries(&s2), Vec::<String>::new());
    ok(
        on(
            &lab,
            &s2,
            &["import", "--trust-config", file.to_str().expect("utf-8")],
        ),
        "trusted import",
    );
    let imported = fs::read_to_string(s2.join("c1_0/config")).expect("config");
    assert!(
        imported.contains("lxc.hook.post-stop = /bin/true"),
        "{imported}"
    );
    assert!(
        imported.contains(&s2.join("c1_0").display().to_string()),
        "{imported}"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Stops what runs in an lxcpath of a test's own when the test ends.
struct StopAll(PathBuf);

impl Drop for StopAll {
    fn drop(&mut self) {
        common::lxc::stop_all_running(&self.0);
    }
}

#[test]
fn with_its_base_a_stream_makes_a_container_on_a_host_without_one() {
    let Some(lab) = lab("with_its_base_a_stream_makes_a_container_on_a_host_without_one") else {
        return;
    };
    // The other host: an lxcpath and a snapdir of its own, no base.
    let lxc2 = lab.env.path().join("lxc2");
    let s2 = lab.env.path().join("snaps2");
    fs::create_dir(&lxc2).expect("lxcpath 2");
    fs::create_dir(&s2).expect("snapdir 2");
    let _stop = StopAll(lxc2.clone());
    let there = |args: &[&str]| {
        Command::new(common::bin())
            .arg("-P")
            .arg(&lxc2)
            .arg("--snapdir")
            .arg(&s2)
            .args(args)
            .output()
            .expect("running lxc-snap")
    };
    let file = lab.env.path().join("c1_1.tar.zst");
    let path = file.to_str().expect("utf-8");
    // Without the base, the other host says what is missing.
    lab.env.ok(&["export", "-o", path, "c1_1"]);
    let out = there(&["import", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("base/rootfs, which is not here") && err.contains("--with-base"),
        "{err}"
    );
    assert_eq!(entries(&s2), Vec::<String>::new());

    lab.env.ok(&["export", "--with-base", "-o", path, "c1_1"]);
    ok(there(&["import", path]), "import with the base");
    assert_eq!(
        tree_manifest(&lxc2.join("base/rootfs")),
        tree_manifest(&lab.lxcpath().join("base/rootfs")),
        "the base came over entry for entry"
    );
    let config = fs::read_to_string(lxc2.join("base/config")).expect("base config");
    assert!(
        config.contains(&format!(
            "lxc.rootfs.path = dir:{}",
            lxc2.join("base/rootfs").display()
        )),
        "{config}"
    );
    // The second import uses the base it made.
    lab.env.ok(&["export", "--with-base", "-o", path, "c1_0"]);
    ok(
        there(&["import", path]),
        "import over the base that came first",
    );
    assert_eq!(entries(&s2), ["c1_0", "c1_1"]);

    ok(there(&["-r", "c1_0", "moved"]), "restore");
    lab.start(&lxc2, "moved");
    let rows = lab.attach(&lxc2, "moved", "cat /srv/db/rows");
    assert_eq!(rows, "one\ntwo\n");
    lab.stop(&lxc2, "moved");
    lab.start(&lxc2, "base");
    assert_eq!(
        lab.attach(&lxc2, "base", "test -e /bin/vi && echo vi"),
        "vi\n"
    );
    lab.stop(&lxc2, "base");
}

#[test]
fn an_incremental_stream_carries_only_the_changes_and_needs_what_they_are_over() {
    let Some(lab) =
        lab("an_incremental_stream_carries_only_the_changes_and_needs_what_they_are_over")
    else {
        return;
    };
    let s2 = second_snapdir(&lab);
    let dir = lab.env.path();
    let captured = tree_manifest(&lab.delta("c1"));
    let full = dir.join("c1_0.tar");
    let inc = dir.join("c1_1-since-c1_0.tar");
    let (full_s, inc_s) = (full.to_str().expect("utf-8"), inc.to_str().expect("utf-8"));
    lab.env
        .ok(&["export", "--compression", "none", "-o", full_s, "c1_0"]);
    lab.env.ok(&[
        "export",
        "--compression",
        "none",
        "--since",
        "c1_0",
        "-o",
        inc_s,
        "c1_1",
    ]);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&inc)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.contains("tree/srv/db/rows\n"), "{listing}");
    assert!(
        listing.contains("tree/bin/ls\n"),
        "the removal as a whiteout: {listing}"
    );
    assert!(
        !listing.contains("tree/srv/db/sparse"),
        "unchanged files travel: {listing}"
    );
    let (full_len, inc_len) = (
        fs::metadata(&full).expect("stat").len(),
        fs::metadata(&inc).expect("stat").len(),
    );
    assert!(
        inc_len * 20 < full_len,
        "incremental {inc_len} vs whole {full_len}"
    );

    // Where the older snapshot is not, the stream says what it needs.
    let out = on(&lab, &s2, &["import", inc_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("only the changes since c1_0"), "{err}");
    assert_eq!(entries(&s2), Vec::<String>::new());

    // Nor where a snapshot of that number has another tree.
    let s3 = dir.join("snaps3");
    fs::create_dir(&s3).expect("snapdir 3");
    let other = dir.join("c1_1.tar");
    lab.env
        .ok(&["export", "-o", other.to_str().expect("utf-8"), "c1_1"]);
    ok(
        on(&lab, &s3, &["import", other.to_str().expect("utf-8")]),
        "import",
    );
    assert_eq!(entries(&s3), ["c1_0"]);
    let out = on(&lab, &s3, &["import", inc_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(entries(&s3), ["c1_0"]);

    ok(on(&lab, &s2, &["import", full_s]), "import of c1_0");
    let said = ok(on(&lab, &s2, &["import", inc_s]), "incremental import");
    assert!(said.contains("imported c1_1 as c1_1"), "{said}");
    assert_eq!(tree_manifest(&s2.join("c1_1/private/delta")), captured);

    let err = lab
        .env
        .fails_with(2, &["export", "--since", "c1_1", "-o", inc_s, "c1_1"]);
    assert!(err.contains("another snapshot of c1"), "{err}");
}
