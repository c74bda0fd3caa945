//! Snapshot streams through the library: a tree packed into a tar stream
//! and unpacked comes back entry for entry, GNU tar reads the stream, and
//! what an untrusted stream may not do is refused.

mod common;

use std::fs;
use std::path::Path;

use lxc_snap::copy::pack::{pack, PackOptions, UnpackLimits, Unpacker};
use lxc_snap::copy::tar::{Header, Kind, Reader, Writer};
use lxc_snap::dir::Dir;
use lxc_snap::error::ErrorKind;

use common::fidelity;

const ROOMY: UnpackLimits = UnpackLimits {
    max_bytes: 1 << 40,
    max_entries: 1 << 20,
    devices: true,
};

fn packed(root: &Path, opts: &PackOptions) -> (Vec<u8>, lxc_snap::copy::pack::PackStats) {
    let dir = Dir::open_given(root, "packing").expect("open");
    let mut w = Writer::new(Vec::new());
    let stats = pack(&dir, "tree", &mut w, opts).expect("pack");
    (w.finish().expect("finish"), stats)
}

/// Unpacks every entry under `tree` into `dst` (created).
fn unpack(bytes: &[u8], dst: &Path, limits: UnpackLimits) -> lxc_snap::error::Result<()> {
    fs::create_dir(dst).expect("mkdir");
    let dir = Dir::open_given(dst, "unpacking").expect("open");
    let mut un = Unpacker::new(&dir, "tree", limits)?;
    let mut r = Reader::new(bytes);
    while let Some(h) = r
        .next_header()
        .map_err(|e| lxc_snap::error::Error::new(ErrorKind::Other, format!("reading: {e}")))?
    {
        un.entry(&h, &mut r)?;
    }
    un.finish().map(|_| ())
}

#[test]
fn every_kind_of_entry_comes_back_from_a_stream() {
    if !common::system_tests_enabled("every_kind_of_entry_comes_back_from_a_stream", false) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fidelity::build_every_kind(&src);
    // A file of 128 MiB with two bytes of data, and a name past ustar's 100.
    let sparse = fs::File::create(src.join("sparse")).expect("create");
    sparse.set_len(1 << 27).expect("truncate");
    std::os::unix::fs::FileExt::write_at(&sparse, b"x", 1 << 20).expect("write");
    std::os::unix::fs::FileExt::write_at(&sparse, b"y", (1 << 27) - 1).expect("write");
    drop(sparse);
    let long = "n".repeat(200);
    fs::create_dir_all(src.join(&long).join(&long)).expect("mkdir");
    fs::write(src.join(&long).join(&long).join("f"), b"deep").expect("write");
    fidelity::settle_link_atimes(&src);

    let (bytes, stats) = packed(
        &src,
        &PackOptions {
            atimes: true,
            ..PackOptions::default()
        },
    );
    // Sockets cannot be in a tar stream: left out, and said.
    assert!(
        stats.skipped.iter().any(|p| p.ends_with("special/socket")),
        "{:?}",
        stats.skipped
    );
    let before = nix::sys::stat::lstat(&src.join("special")).expect("stat");
    fs::remove_file(src.join("special/socket")).expect("rm socket");
    nix::sys::stat::utimensat(
        None,
        &src.join("special"),
        &nix::sys::time::TimeSpec::new(before.st_atime, before.st_atime_nsec),
        &nix::sys::time::TimeSpec::new(before.st_mtime, before.st_mtime_nsec),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("putting the times back");
    assert!(
        bytes.len() < 4 << 20,
        "the sparse file was written whole: {} bytes",
        bytes.len()
    );
    let dst = tmp.path().join("dst");
    unpack(&bytes, &dst, ROOMY).expect("unpack");
    fidelity::assert_trees_identical(&src, &dst);
    fidelity::assert_whiteouts_fresh(&dst);

    // Same tree, same bytes (without atimes, which reading moves).
    let opts = PackOptions::default();
    assert!(
        packed(&src, &opts).0 == packed(&src, &opts).0,
        "packing is not reproducible"
    );

    // GNU tar reads it: every path, the sparse file at its length.
    let archive = tmp.path().join("s.tar");
    fs::write(&archive, &bytes).expect("write");
    let out = std::process::Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-tvf"])
        .arg(&archive)
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(&format!("tree/{long}/{long}/f")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains("134217728") && l.ends_with("tree/sparse")),
        "{listing}"
    );
}

fn entry(path: &str, kind: Kind) -> Header {
    let mut h = Header::new(path.as_bytes().to_vec(), kind);
    h.mode = 0o755;
    h
}

fn stream(entries: &[(Header, &[u8])]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    for (h, data) in entries {
        let mut h = h.clone();
        if h.kind == Kind::File {
            h.size = data.len() as u64;
        }
        w.header(&h).expect("header");
        w.data(data).expect("data");
        w.pad().expect("pad");
    }
    w.finish().expect("finish")
}

#[test]
fn what_an_untrusted_stream_may_not_do_is_refused() {
    if !common::system_tests_enabled("what_an_untrusted_stream_may_not_do_is_refused", false) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    let root = || entry("tree", Kind::Dir);
    let link = |path: &str, kind: Kind, target: &str| {
        let mut h = entry(path, kind);
        h.link = Some(target.as_bytes().to_vec());
        h
    };
    let mut dev = entry("tree/sda", Kind::Block);
    dev.dev_major = 8;
    type Case<'a> = (&'a str, Vec<(Header, &'a [u8])>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "dot-dot",
            vec![(root(), b""), (entry("tree/../x", Kind::File), b"x")],
            "plain relative",
        ),
        (
            "absolute",
            vec![(root(), b""), (entry("tree//etc/x", Kind::File), b"x")],
            "plain relative",
        ),
        (
            "through a symlink",
            vec![
                (root(), b""),
                (
                    link("tree/up", Kind::Symlink, outside.to_str().expect("utf-8")),
                    b"",
                ),
                (entry("tree/up/x", Kind::File), b"x"),
            ],
            "its directory",
        ),
        (
            "hard link out",
            vec![
                (root(), b""),
                (link("tree/l", Kind::HardLink, "../../etc/passwd"), b""),
            ],
            "out of the tree",
        ),
        (
            "hard link to nothing",
            vec![
                (root(), b""),
                (link("tree/l", Kind::HardLink, "tree/nothing"), b""),
            ],
            "not in the tree",
        ),
        (
            "twice",
            vec![
                (root(), b""),
                (entry("tree/a", Kind::File), b"1"),
                (entry("tree/a", Kind::File), b"2"),
            ],
            "comes twice",
        ),
        ("device", vec![(root(), b""), (dev, b"")], "device node"),
        (
            "bomb",
            vec![
                (root(), b""),
                (entry("tree/big", Kind::File), &[0u8; 4096][..]),
            ],
            "bytes allowed",
        ),
    ];
    for (i, (what, entries, expect)) in cases.into_iter().enumerate() {
        let dst = tmp.path().join(format!("dst{i}"));
        let limits = UnpackLimits {
            max_bytes: 1000,
            max_entries: 100,
            devices: false,
        };
        let err = unpack(&stream(&entries), &dst, limits).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Unsafe, "{what}: {err}");
        assert!(err.to_string().contains(expect), "{what}: {err}");
        assert_eq!(
            fs::read_dir(&outside).expect("ls").count(),
            0,
            "{what} wrote outside"
        );
    }
}
