//! The benchmark tree generator (examples/gen_tree) is deterministic for a
//! seed and writes every kind of entry it promises. Needs no root.

#[allow(dead_code)]
#[path = "../examples/gen_tree/tree.rs"]
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// One line per entry: everything the generator decides, and the hard-link
/// structure (every name of an inode points at its first name).
fn manifest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_name: HashMap<u64, String> = HashMap::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for item in walk {
        let item = item.expect("walking the tree");
        let path = item.path();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(path).expect("lstat");
        let ft = md.file_type();
        let mut line = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!(
                "symlink -> {}",
                fs::read_link(path).expect("readlink").display()
            )
        } else if ft.is_file() {
            let link = match first_name.get(&md.ino()) {
                Some(first) => format!(" link of {first}"),
                None => {
                    first_name.insert(md.ino(), rel.clone());
                    String::new()
                }
            };
            let sparse = is_sparse(&md);
            format!(
                "file size {} hash {:016x} sparse {sparse}{link}",
                md.size(),
                hash_file(path)
            )
        } else {
            panic!("{rel}: unexpected file type {ft:?}");
        };
        if !ft.is_symlink() {
            line.push_str(&format!(" mode {:o}", md.mode() & 0o7777));
        }
        line.push_str(&format!(" mtime {}.{:09}", md.mtime(), md.mtime_nsec()));
        let mut names: Vec<String> = xattr::list(path)
            .expect("listing xattrs")
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let value = xattr::get(path, &name)
                .expect("reading xattr")
                .unwrap_or_default();
            line.push_str(&format!(" {name}={}", String::from_utf8_lossy(&value)));
        }
        out.insert(rel, line);
    }
    out
}

/// Fewer blocks than bytes; small files are left out, as a filesystem may
/// keep their data inline in the inode.
fn is_sparse(md: &fs::Metadata) -> bool {
    md.size() >= 64 * 1024 && md.blocks() * 512 < md.size()
}

fn hash_file(path: &Path) -> u64 {
    let mut f = fs::File::open(path).expect("open");
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return h.finish();
        }
        h.write(&buf[..n]);
    }
}

/// A temp dir the generated tree can be removed from even without root
/// (the tree holds a mode 0555 directory).
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for item in walkdir::WalkDir::new(self.0.path()).into_iter().flatten() {
            if item.file_type().is_dir() {
                let _ = fs::set_permissions(item.path(), fs::Permissions::from_mode(0o755));
            }
        }
    }
}

const SMALL: tree::Options = tree::Options {
    seed: 7,
    entries: 600,
    bytes: 6 * 1024 * 1024,
};

#[test]
fn same_seed_gives_the_same_tree_and_another_seed_does_not() {
    let tmp = Scratch::new();
    let (a, b, c) = (
        tmp.0.path().join("a"),
        tmp.0.path().join("b"),
        tmp.0.path().join("c"),
    );
    let sa = tree::generate(&SMALL, &a).expect("generating a");
    let sb = tree::generate(&SMALL, &b).expect("generating b");
    assert_eq!(sa, sb);
    let (ma, mb) = (manifest(&a), manifest(&b));
    assert_eq!(ma.len(), 600);
    if ma != mb {
        let diffs: Vec<String> = ma
            .iter()
            .filter(|(k, v)| mb.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}: {v} / {:?}", mb.get(k)))
            .take(20)
            .collect();
        panic!("two runs with seed 7 differ:\n{}", diffs.join("\n"));
    }

    let other = tree::Options { seed: 8, ..SMALL };
    let sc = tree::generate(&other, &c).expect("generating c");
    assert_ne!(sa.plan_digest, sc.plan_digest);
    assert_ne!(ma, manifest(&c));
}

#[test]
fn the_tree_has_every_kind_of_entry_promised() {
    let tmp = Scratch::new();
    let root = tmp.0.path().join("t");
    let summary = tree::generate(&SMALL, &root).expect("generating");
    let walk: Vec<_> = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .map(|e| e.expect("walking"))
        .collect();
    assert_eq!(walk.len() as u64, SMALL.entries);

    let (mut dirs, mut files, mut symlinks, mut extra_links) = (0u64, 0u64, 0u64, 0u64);
    let (mut sparse, mut setuid, mut xattrs, mut small, mut largest) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut relative, mut absolute, mut sticky) = (0u64, 0u64, 0u64);
    let mut data_bytes_of_full_files = 0u64;
    let mut seen_inodes = std::collections::HashSet::new();
    let mut depths = std::collections::BTreeSet::new();
    let mut mtimes = std::collections::BTreeSet::new();
    for e in &walk {
        let md = fs::symlink_metadata(e.path()).expect("lstat");
        depths.insert(e.depth());
        mtimes.insert(md.mtime());
        if xattr::list(e.path())
            .expect("xattrs")
            .any(|n| n.to_string_lossy().starts_with("user."))
        {
            xattrs += 1;
        }
        let ft = md.file_type();
        if ft.is_dir() {
            dirs += 1;
            if md.mode() & 0o1000 != 0 {
                sticky += 1;
            }
        } else if ft.is_symlink() {
            symlinks += 1;
            if fs::read_link(e.path()).expect("readlink").is_absolute() {
                absolute += 1;
            } else {
                relative += 1;
            }
        } else {
            assert!(ft.is_file(), "{}: unexpected type", e.path().display());
            if !seen_inodes.insert(md.ino()) {
                extra_links += 1;
                continue;
            }
            files += 1;
            largest = largest.max(md.size());
            if md.mode() & 0o6000 != 0 {
                setuid += 1;
            }
            if is_sparse(&md) {
                sparse += 1;
            } else {
                data_bytes_of_full_files += md.size();
                if md.size() < 16 * 1024 {
                    small += 1;
                }
            }
        }
    }
    assert_eq!(dirs, summary.dirs);
    assert!(dirs >= 13, "directories: {dirs}");
    assert!(symlinks >= SMALL.entries / 25, "symlinks: {symlinks}");
    assert!(
        relative > 0 && absolute > 0,
        "symlinks: {relative} relative, {absolute} absolute"
    );
    assert!(
        extra_links >= SMALL.entries / 150,
        "hard links: {extra_links}"
    );
    assert_eq!(extra_links, summary.hardlinks);
    assert!(sparse >= 1, "no sparse file");
    assert_eq!(sparse, summary.sparse_files);
    assert!(setuid >= 1, "no setuid file");
    assert!(xattrs >= 1, "no user.* xattr");
    assert!(sticky >= 1, "no sticky directory");
    assert!(
        small * 10 >= files * 7,
        "only {small} of {files} files under 16 KiB"
    );
    assert!(largest >= SMALL.bytes / 5, "largest file {largest} bytes");
    assert_eq!(*depths.first().expect("entries"), 1);
    assert_eq!(*depths.last().expect("entries"), 8, "deepest entry");
    assert!(
        mtimes.len() as u64 > SMALL.entries / 2,
        "mtimes are not varied"
    );
    // The byte budget is met exactly: full files plus sparse data extents.
    let sparse_data = summary.data_bytes - data_bytes_of_full_files;
    assert!(
        sparse_data > 0 && sparse_data < SMALL.bytes / 10,
        "sparse data {sparse_data} of {}",
        summary.data_bytes
    );
    assert_eq!(summary.data_bytes, SMALL.bytes);
}

#[test]
fn sizes_parse_with_binary_units() {
    assert_eq!(tree::parse_size("650M"), Ok(650 * 1024 * 1024));
    assert_eq!(tree::parse_size("1.5G"), Ok(3 * 512 * 1024 * 1024));
    assert_eq!(tree::parse_size("4096"), Ok(4096));
    assert!(tree::parse_size("12Q").is_err());
    assert!(tree::parse_size("lots").is_err());
}
