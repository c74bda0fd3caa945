//! A reproducible tree shaped like the delta of a container's root
//! filesystem, for `make bench`.
//!
//! Everything about the tree (names, sizes, contents, modes, mtimes,
//! xattrs, link targets) is decided up front by [`plan`] from a seeded
//! PRNG, then [`write`] puts it on disk. The same seed, entry count and byte
//! budget give the same tree on every run and every machine with the same
//! libm (sizes go through `ln`/`exp`; a last-bit difference there would have
//! to land on a rounding edge to change a size).
//!
//! Shape, for the default 50,000 entries and 650 MiB:
//! - about 7% directories, 2 to 8 path components deep (files sit at depth
//!   2..=8, most at 3..=5);
//! - regular files with log-normal sizes (median a few KiB, most under
//!   16 KiB, a few percent empty), one in ten thousand of 10-100 MiB (scaled
//!   down when the byte budget is small), one in 2,500 sparse (1-32 MiB with
//!   a few data extents, some ending in a hole), a few setuid/setgid;
//! - about 5% symlinks (relative, absolute within the container, to
//!   directories, dangling), about 1% extra hard links to existing files;
//! - `user.*` xattrs on about 3% of files and 2% of directories.
//!
//! `bytes` is the data written: the sizes of ordinary files plus the data
//! extents of sparse files; the holes of sparse files come on top of it.

use std::collections::HashSet;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    /// Entries in the tree (directories, files, symlinks, hard links),
    /// the root itself not counted.
    pub entries: u64,
    /// Data bytes written (see the module documentation).
    pub bytes: u64,
}

pub const MIN_ENTRIES: u64 = 100;
/// Deepest directory below the root; files go one level deeper.
pub const MAX_DIR_DEPTH: usize = 7;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// mtimes fall in the three years before this (2023-11-14).
const EPOCH_END: u64 = 1_700_000_000;
const TOP_DIRS: [&str; 6] = ["usr", "etc", "var", "opt", "srv", "home"];

const DIR_WORDS: &[&str] = &[
    "lib",
    "share",
    "doc",
    "bin",
    "include",
    "python3",
    "dist-packages",
    "locale",
    "man",
    "systemd",
    "system",
    "network",
    "ssl",
    "certs",
    "perl5",
    "x86_64-linux-gnu",
    "gconv",
    "zoneinfo",
    "Europe",
    "America",
    "apt",
    "dpkg",
    "info",
    "cache",
    "log",
    "journal",
    "fonts",
    "icons",
    "hicolor",
    "mime",
    "terminfo",
    "pam.d",
    "security",
    "udev",
    "rules.d",
    "modules",
    "kernel",
    "drivers",
    "net",
    "crypto",
    "firmware",
    "php",
    "node_modules",
    "site-packages",
    "examples",
    "tests",
    "config",
    "data",
    "static",
    "templates",
    "i18n",
    "plugins",
    "extensions",
    "backup",
    "spool",
    "mail",
    "www",
    "html",
    "assets",
    "vendor",
    "src",
    "local",
    "sbin",
    "games",
    "state",
    "tmp",
    "run",
    "opt",
    "conf.d",
    "default",
];

const FILE_STEMS: &[&str] = &[
    "libssl",
    "libcrypto",
    "libz",
    "libpython3",
    "README",
    "copyright",
    "changelog",
    "index",
    "main",
    "util",
    "config",
    "settings",
    "module",
    "core",
    "common",
    "types",
    "__init__",
    "setup",
    "LICENSE",
    "messages",
    "icon",
    "default",
    "base",
    "client",
    "server",
    "api",
    "parser",
    "helpers",
    "schema",
    "locale",
    "libstdc++",
    "libgcc_s",
    "update",
    "status",
    "history",
    "session",
    "cert",
    "key",
    "Makefile",
    "plugin",
    "theme",
    "widget",
    "table",
];

const TEXT_EXTS: &[&str] = &[
    ".conf", ".txt", ".py", ".pm", ".h", ".json", ".xml", ".html", ".js", ".css", ".md", ".list",
    ".service", ".rules", ".mo", ".pyc", ".gz", ".png", ".svg", "",
];
const BINARY_EXTS: &[&str] = &[".so", ".so.1", ".so.6", ".so.3", ".a", "", ".bin"];
const LARGE_EXTS: &[&str] = &[".so.3", ".db", ".pack", ".img", ".tar", ".ibd"];

const XATTR_KEYS: &[&str] = &[
    "user.checksum.sha256",
    "user.mime_type",
    "user.origin",
    "user.comment",
    "user.pkg",
];

/// A small, fast, seedable PRNG (xoshiro256**, seeded through SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-uniform in `[lo, hi]`.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        size: u64,
        /// Seeds the PRNG that writes the contents.
        content_seed: u64,
        /// Data extents `(offset, len)` of a sparse file, sorted, disjoint;
        /// `None` for a file written in full.
        extents: Option<Vec<(u64, u64)>>,
    },
    Symlink {
        target: String,
    },
    /// An extra name for the file at `nodes[to]`.
    HardLink {
        to: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Relative to the root, `/`-separated.
    pub path: String,
    /// Path components (a top-level directory has depth 1).
    pub depth: usize,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (unused for links).
    pub mode: u32,
    /// Seconds and nanoseconds since the epoch; also the atime.
    pub mtime: (u64, u32),
    pub xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub entries: u64,
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub empty_files: u64,
    pub small_files_under_16k: u64,
    pub large_files: u64,
    pub sparse_files: u64,
    pub setuid_files: u64,
    pub xattr_entries: u64,
    /// Data written: ordinary file sizes plus sparse data extents.
    pub data_bytes: u64,
    /// Sum of file sizes (holes included), each inode once.
    pub apparent_bytes: u64,
    pub largest_file: u64,
    pub max_depth: u64,
    /// FNV-1a of the whole plan: equal digests, equal trees.
    pub plan_digest: String,
}

pub struct Plan {
    pub seed: u64,
    pub nodes: Vec<Node>,
    /// Indices of the large files (10-100 MiB before scaling).
    pub large: Vec<usize>,
}

struct Names {
    taken: HashSet<String>,
    counter: u64,
}

impl Names {
    /// A path for a new entry in `dir` (`""` is the root), based on
    /// `wanted`, never one that exists already.
    fn claim(&mut self, dir: &str, wanted: &str) -> String {
        let mut path = join(dir, wanted);
        while self.taken.contains(&path) {
            self.counter += 1;
            path = join(dir, &format!("{wanted}-{}", self.counter));
        }
        self.taken.insert(path.clone());
        path
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn base_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// `target` as seen from a symlink in directory `from_dir`.
fn relative(from_dir: &str, target: &str) -> String {
    let from: Vec<&str> = from_dir.split('/').filter(|s| !s.is_empty()).collect();
    let to: Vec<&str> = target.split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        // A link to its own directory, like Debian's /usr/bin/X11 -> .
        return ".".to_string();
    }
    parts.join("/")
}

fn mtime(rng: &mut Rng) -> (u64, u32) {
    let secs = EPOCH_END - rng.below(3 * 365 * 86_400);
    (secs, rng.below(1_000_000_000) as u32)
}

fn xattrs(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let n = 1 + rng.below(3) as usize;
    let mut keys: Vec<&str> = Vec::new();
    while keys.len() < n {
        let k = *rng.pick(XATTR_KEYS);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| {
            let len = 8 + rng.below(113) as usize;
            let value: Vec<u8> = (0..len)
                .map(|_| b"0123456789abcdef"[rng.below(16) as usize])
                .collect();
            (k.to_string(), value)
        })
        .collect()
}

fn file_name(rng: &mut Rng, exts: &[&str]) -> String {
    let stem = *rng.pick(FILE_STEMS);
    let mut name = stem.to_string();
    if rng.chance(0.4) {
        name.push('-');
        let word = *rng.pick(DIR_WORDS);
        name.push_str(word);
    }
    if rng.chance(0.3) {
        name.push_str(&format!("{}", rng.below(40)));
    }
    let ext = *rng.pick(exts);
    name.push_str(ext);
    name
}

/// Builds the node list; every random choice goes through `rng`, in order.
struct Planner {
    rng: Rng,
    nodes: Vec<Node>,
    names: Names,
    /// `by_depth[d]`: directories of depth `d` (index 0, the root, unused).
    by_depth: Vec<Vec<usize>>,
}

impl Planner {
    fn add_dir(&mut self, parent_dir: &str, depth: usize, wanted: &str) -> usize {
        let path = self.names.claim(parent_dir, wanted);
        let roll = self.rng.unit();
        let mode = if roll < 0.90 {
            0o755
        } else if roll < 0.95 {
            0o700
        } else if roll < 0.98 {
            0o750
        } else {
            0o2775
        };
        let xa = if self.rng.chance(0.02) {
            xattrs(&mut self.rng)
        } else {
            Vec::new()
        };
        let idx = self.nodes.len();
        self.by_depth[depth].push(idx);
        self.nodes.push(Node {
            path,
            depth,
            kind: Kind::Dir,
            mode,
            mtime: mtime(&mut self.rng),
            xattrs: xa,
        });
        idx
    }

    fn add_file(
        &mut self,
        dir: usize,
        size: u64,
        extents: Option<Vec<(u64, u64)>>,
        exts: &[&str],
        mode: u32,
    ) -> usize {
        let up = self.nodes[dir].path.clone();
        let depth = self.nodes[dir].depth + 1;
        let wanted = file_name(&mut self.rng, exts);
        let path = self.names.claim(&up, &wanted);
        let xa = if self.rng.chance(0.03) {
            xattrs(&mut self.rng)
        } else {
            Vec::new()
        };
        let content_seed = self.rng.next_u64();
        let idx = self.nodes.len();
        self.nodes.push(Node {
            path,
            depth,
            kind: Kind::File {
                size,
                content_seed,
                extents,
            },
            mode,
            mtime: mtime(&mut self.rng),
            xattrs: xa,
        });
        idx
    }

    /// A link (hard or symbolic) named after `wanted` in directory `dir`.
    fn add_link(&mut self, dir: usize, wanted: &str, kind: Kind) {
        let up = self.nodes[dir].path.clone();
        let path = self.names.claim(&up, wanted);
        let (mode, mtime) = match kind {
            Kind::HardLink { to } => (self.nodes[to].mode, self.nodes[to].mtime),
            _ => (0o777, mtime(&mut self.rng)),
        };
        let depth = self.nodes[dir].depth + 1;
        self.nodes.push(Node {
            path,
            depth,
            kind,
            mode,
            mtime,
            xattrs: Vec::new(),
        });
    }

    /// The directory holding node `idx`.
    fn dir_of(&self, idx: usize) -> usize {
        let up = parent(&self.nodes[idx].path);
        let depth = self.nodes[idx].depth - 1;
        *self.by_depth[depth]
            .iter()
            .find(|&&d| self.nodes[d].path == up)
            .expect("every file is in a planned directory")
    }
}

/// Sparse files: `(length, data extents)`; lengths and extents in whole
/// 4 KiB blocks, at least one hole in each.
fn plan_sparse(rng: &mut Rng, n_sparse: u64, bytes: u64) -> Vec<(u64, Vec<(u64, u64)>)> {
    let block = 4 * KIB;
    let len_cap = (bytes / 16).max(64 * KIB);
    let data_cap = (bytes / 64 / n_sparse).max(block);
    let mut sparse = Vec::new();
    for _ in 0..n_sparse {
        let len = (rng.log_uniform(MIB as f64, 32.0 * MIB as f64) as u64).min(len_cap);
        let blocks = (len / block).max(16);
        let len = blocks * block;
        let mut extents: Vec<(u64, u64)> = Vec::new();
        let mut data = 0;
        for _ in 0..1 + rng.below(4) {
            let ext_blocks = 1 + rng.below((blocks / 8).clamp(1, 16));
            let ext_len = ext_blocks * block;
            if data + ext_len > data_cap {
                break;
            }
            let start = rng.below(blocks - ext_blocks + 1) * block;
            // Keep a hole between extents, so they stay separate.
            let touches = extents
                .iter()
                .any(|&(o, l)| start < o + l + block && o < start + ext_len + block);
            if !touches {
                extents.push((start, ext_len));
                data += ext_len;
            }
        }
        if extents.is_empty() {
            extents.push((0, block));
        }
        // Every other sparse file has data in its last block; the rest end
        // in a hole.
        if rng.chance(0.5) {
            let last = len - block;
            if !extents.iter().any(|&(o, l)| o + l + block > last) {
                extents.push((last, block));
            }
        }
        extents.sort_unstable();
        sparse.push((len, extents));
    }
    sparse
}

/// The whole tree, decided from `opts` alone.
pub fn plan(opts: &Options) -> Result<Plan, String> {
    if opts.entries < MIN_ENTRIES {
        return Err(format!("--entries must be at least {MIN_ENTRIES}"));
    }
    let e = opts.entries;
    let n_dirs = (e * 7 / 100).max(TOP_DIRS.len() as u64 + MAX_DIR_DEPTH as u64);
    let n_symlinks = (e / 20).max(1);
    let n_hardlinks = (e / 100).max(1);
    let n_files = e - n_dirs - n_symlinks - n_hardlinks;
    let n_large = (e / 10_000).max(1);
    let n_sparse = (e / 2_500).max(1);
    let n_setuid = (e / 12_500).max(1);
    let n_small = n_files - n_large - n_sparse;
    let min_bytes = (n_files * 64).max(MIB);
    if opts.bytes < min_bytes {
        return Err(format!(
            "--bytes must be at least {min_bytes} for {e} entries"
        ));
    }

    let mut p = Planner {
        rng: Rng::new(opts.seed),
        nodes: Vec::with_capacity(e as usize),
        names: Names {
            taken: HashSet::new(),
            counter: 0,
        },
        by_depth: vec![Vec::new(); MAX_DIR_DEPTH + 1],
    };

    for top in TOP_DIRS {
        p.add_dir("", 1, top);
    }
    // One chain down to the deepest level, so every depth exists.
    let mut deepest = p.by_depth[1][0];
    for depth in 2..=MAX_DIR_DEPTH {
        let up = p.nodes[deepest].path.clone();
        let word = *p.rng.pick(DIR_WORDS);
        deepest = p.add_dir(&up, depth, word);
    }
    // The other directories: most at depth 2..=4, like /usr/share/doc/PKG.
    const DEPTH_WEIGHTS: [(usize, f64); 6] = [
        (2, 0.15),
        (3, 0.30),
        (4, 0.25),
        (5, 0.15),
        (6, 0.08),
        (7, 0.07),
    ];
    while (p.nodes.len() as u64) < n_dirs {
        let mut roll = p.rng.unit();
        let mut depth = MAX_DIR_DEPTH;
        for (d, w) in DEPTH_WEIGHTS {
            if roll < w {
                depth = d;
                break;
            }
            roll -= w;
        }
        let parent_idx = *p.rng.pick(&p.by_depth[depth - 1]);
        let up = p.nodes[parent_idx].path.clone();
        let word = *p.rng.pick(DIR_WORDS);
        let wanted = if p.rng.chance(0.25) {
            format!("{word}{}", p.rng.below(100))
        } else {
            word.to_string()
        };
        p.add_dir(&up, depth, &wanted);
    }
    let dirs: Vec<usize> = (0..p.nodes.len()).collect();
    // A world-writable sticky directory and a read-only one, as in a real root.
    let sticky = *p.rng.pick(&p.by_depth[2]);
    p.nodes[sticky].mode = 0o1777;
    let read_only = *p.rng.pick(&p.by_depth[3]);
    if read_only != sticky {
        p.nodes[read_only].mode = 0o555;
    }

    // Sizes first, then placement.
    let large_budget = opts.bytes * 35 / 100;
    let mut large_sizes: Vec<f64> = (0..n_large)
        .map(|_| p.rng.log_uniform(10.0 * MIB as f64, 100.0 * MIB as f64))
        .collect();
    let large_sum: f64 = large_sizes.iter().sum();
    if large_sum > large_budget as f64 {
        let f = large_budget as f64 / large_sum;
        large_sizes.iter_mut().for_each(|s| *s *= f);
    }
    let large_sizes: Vec<u64> = large_sizes.iter().map(|s| *s as u64).collect();
    let sparse = plan_sparse(&mut p.rng, n_sparse, opts.bytes);
    let sparse_data: u64 = sparse
        .iter()
        .flat_map(|(_, ex)| ex.iter().map(|(_, l)| *l))
        .sum();
    let small_budget = opts
        .bytes
        .checked_sub(large_sizes.iter().sum::<u64>() + sparse_data)
        .ok_or_else(|| format!("--bytes {} is too small for {e} entries", opts.bytes))?;
    // Log-normal, median 2.5 KB before scaling to the budget.
    let natural: Vec<f64> = (0..n_small)
        .map(|_| {
            if p.rng.chance(0.03) {
                0.0
            } else {
                (2500f64.ln() + 1.6 * p.rng.normal())
                    .exp()
                    .min(8.0 * MIB as f64)
            }
        })
        .collect();
    let natural_sum: f64 = natural.iter().sum();
    let f = small_budget as f64 / natural_sum;
    let mut small_sizes: Vec<u64> = natural.iter().map(|s| (s * f) as u64).collect();
    let rest = small_budget - small_sizes.iter().sum::<u64>();
    if let Some(last) = small_sizes.iter_mut().rev().find(|s| **s > 0) {
        *last += rest;
    }

    let mut files: Vec<usize> = Vec::new();
    let mut large = Vec::new();
    for size in large_sizes {
        let dir = *p.rng.pick(&dirs);
        let idx = p.add_file(dir, size, None, LARGE_EXTS, 0o644);
        files.push(idx);
        large.push(idx);
    }
    for (len, extents) in sparse {
        let dir = *p.rng.pick(&dirs);
        files.push(p.add_file(dir, len, Some(extents), &[".db", ".img", ".log", ""], 0o640));
    }
    // The first small file goes to the deepest directory, so some file
    // sits at the deepest depth.
    let mut setuid_left = n_setuid;
    for (i, size) in small_sizes.into_iter().enumerate() {
        let dir = if i == 0 { deepest } else { *p.rng.pick(&dirs) };
        let roll = p.rng.unit();
        let (exts, mut mode) = if roll < 0.15 {
            (BINARY_EXTS, 0o755)
        } else if roll < 0.19 {
            (TEXT_EXTS, 0o600)
        } else if roll < 0.22 {
            (TEXT_EXTS, 0o640)
        } else {
            (TEXT_EXTS, 0o644)
        };
        if setuid_left > 0 && size > 0 && (p.rng.chance(0.05) || i as u64 + setuid_left >= n_small)
        {
            mode = [0o4755, 0o2755, 0o4750][(setuid_left % 3) as usize];
            setuid_left -= 1;
        }
        files.push(p.add_file(dir, size, None, exts, mode));
    }

    // Hard links: another name for an existing file, often the same base
    // name in another directory.
    for _ in 0..n_hardlinks {
        let to = *p.rng.pick(&files);
        let dir = *p.rng.pick(&dirs);
        let wanted = if p.rng.chance(0.5) {
            base_name(&p.nodes[to].path).to_string()
        } else {
            file_name(&mut p.rng, BINARY_EXTS)
        };
        p.add_link(dir, &wanted, Kind::HardLink { to });
    }

    for _ in 0..n_symlinks {
        let roll = p.rng.unit();
        if (0.75..0.90).contains(&roll) {
            // libfoo.so -> libfoo.so.1, beside its target.
            let to = *p.rng.pick(&files);
            let dir = p.dir_of(to);
            let name = base_name(&p.nodes[to].path).to_string();
            let short = name
                .rsplit_once('.')
                .map_or(name.as_str(), |(s, _)| s)
                .to_string();
            p.add_link(dir, &short, Kind::Symlink { target: name });
            continue;
        }
        let dir = *p.rng.pick(&dirs);
        let up = p.nodes[dir].path.clone();
        let (wanted, target) = if roll < 0.40 {
            let to = p.nodes[*p.rng.pick(&files)].path.clone();
            (file_name(&mut p.rng, BINARY_EXTS), relative(&up, &to))
        } else if roll < 0.65 {
            // Absolute: the container's /, never the host's.
            let to = p.nodes[*p.rng.pick(&files)].path.clone();
            (file_name(&mut p.rng, TEXT_EXTS), format!("/{to}"))
        } else if roll < 0.75 {
            let to = p.nodes[*p.rng.pick(&dirs)].path.clone();
            (p.rng.pick(DIR_WORDS).to_string(), relative(&up, &to))
        } else {
            let word = *p.rng.pick(DIR_WORDS);
            (
                file_name(&mut p.rng, BINARY_EXTS),
                format!("/nonexistent/{word}"),
            )
        };
        p.add_link(dir, &wanted, Kind::Symlink { target });
    }
    debug_assert_eq!(p.nodes.len() as u64, e);
    Ok(Plan {
        seed: opts.seed,
        nodes: p.nodes,
        large,
    })
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate fields, so ("ab","c") and ("a","bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn num(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            seed: self.seed,
            entries: self.nodes.len() as u64,
            large_files: self.large.len() as u64,
            ..Summary::default()
        };
        let mut h = Fnv::new();
        h.num(self.seed);
        for n in &self.nodes {
            h.bytes(n.path.as_bytes());
            h.num(u64::from(n.mode));
            h.num(n.mtime.0);
            h.num(u64::from(n.mtime.1));
            for (k, v) in &n.xattrs {
                h.bytes(k.as_bytes());
                h.bytes(v);
            }
            if !n.xattrs.is_empty() {
                s.xattr_entries += 1;
            }
            s.max_depth = s.max_depth.max(n.depth as u64);
            match &n.kind {
                Kind::Dir => {
                    h.bytes(b"d");
                    s.dirs += 1;
                }
                Kind::File {
                    size,
                    content_seed,
                    extents,
                } => {
                    h.bytes(b"f");
                    h.num(*size);
                    h.num(*content_seed);
                    s.files += 1;
                    s.apparent_bytes += size;
                    s.largest_file = s.largest_file.max(*size);
                    if *size == 0 {
                        s.empty_files += 1;
                    }
                    if n.mode & 0o6000 != 0 {
                        s.setuid_files += 1;
                    }
                    match extents {
                        Some(ex) => {
                            s.sparse_files += 1;
                            for (o, l) in ex {
                                h.num(*o);
                                h.num(*l);
                                s.data_bytes += l;
                            }
                        }
                        None => {
                            s.data_bytes += size;
                            if *size < 16 * KIB {
                                s.small_files_under_16k += 1;
                            }
                        }
                    }
                }
                Kind::Symlink { target } => {
                    h.bytes(b"l");
                    h.bytes(target.as_bytes());
                    s.symlinks += 1;
                }
                Kind::HardLink { to } => {
                    h.bytes(b"h");
                    h.num(*to as u64);
                    s.hardlinks += 1;
                }
            }
        }
        s.plan_digest = format!("{:016x}", h.0);
        s
    }
}

fn at(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn times(mtime: (u64, u32)) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(mtime.0, mtime.1)
}

fn set_xattrs(path: &Path, node: &Node) -> io::Result<()> {
    for (k, v) in &node.xattrs {
        xattr::set(path, k, v).map_err(|e| at(e, &format!("setting {k} on"), path))?;
    }
    Ok(())
}

fn write_file(
    path: &Path,
    node: &Node,
    size: u64,
    seed: u64,
    extents: &Option<Vec<(u64, u64)>>,
) -> io::Result<()> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| at(e, "creating", path))?;
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 256 * KIB as usize];
    match extents {
        None => {
            let mut left = size;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                rng.fill(&mut buf[..n]);
                f.write_all(&buf[..n]).map_err(|e| at(e, "writing", path))?;
                left -= n as u64;
            }
        }
        Some(extents) => {
            f.set_len(size).map_err(|e| at(e, "sizing", path))?;
            for &(off, len) in extents {
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(buf.len() as u64) as usize;
                    rng.fill(&mut buf[..n]);
                    f.write_all_at(&buf[..n], off + done)
                        .map_err(|e| at(e, "writing", path))?;
                    done += n as u64;
                }
            }
        }
    }
    // xattrs before the mode (user.* needs write permission), the mode
    // after the data (writing clears setuid), the times last.
    set_xattrs(path, node)?;
    f.set_permissions(fs::Permissions::from_mode(node.mode))
        .map_err(|e| at(e, "chmod", path))?;
    let t = times(node.mtime);
    f.set_times(FileTimes::new().set_accessed(t).set_modified(t))
        .map_err(|e| at(e, "setting times of", path))?;
    Ok(())
}

/// Writes the plan under `root`, which must be an empty directory or not
/// exist yet. The root's own mode and times are left alone: it is usually
/// a container's delta, whose mode is the container's `/`.
pub fn write(plan: &Plan, root: &Path) -> io::Result<()> {
    fs::create_dir_all(root).map_err(|e| at(e, "creating", root))?;
    if fs::read_dir(root)
        .map_err(|e| at(e, "reading", root))?
        .next()
        .is_some()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not empty", root.display()),
        ));
    }
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o700);
    for n in plan.nodes.iter().filter(|n| n.kind == Kind::Dir) {
        let p = root.join(&n.path);
        builder.create(&p).map_err(|e| at(e, "creating", &p))?;
    }
    for n in &plan.nodes {
        let p = root.join(&n.path);
        match &n.kind {
            Kind::Dir => {}
            Kind::File {
                size,
                content_seed,
                extents,
            } => write_file(&p, n, *size, *content_seed, extents)?,
            Kind::HardLink { to } => {
                let target = root.join(&plan.nodes[*to].path);
                fs::hard_link(&target, &p).map_err(|e| at(e, "linking", &p))?;
            }
            Kind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &p).map_err(|e| at(e, "creating", &p))?;
                let ts = nix::sys::time::TimeSpec::new(n.mtime.0 as i64, i64::from(n.mtime.1));
                nix::sys::stat::utimensat(
                    None,
                    &p,
                    &ts,
                    &ts,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| at(e.into(), "setting times of", &p))?;
            }
        }
    }
    // Directories last, deepest first: their mtimes must come after every
    // entry made inside them, and a read-only one must stay writable until
    // it is full.
    let mut dirs: Vec<&Node> = plan.nodes.iter().filter(|n| n.kind == Kind::Dir).collect();
    dirs.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.path.cmp(&b.path)));
    for n in dirs {
        let p = root.join(&n.path);
        set_xattrs(&p, n)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(n.mode))
            .map_err(|e| at(e, "chmod", &p))?;
        let t = times(n.mtime);
        File::open(&p)
            .and_then(|d| d.set_times(FileTimes::new().set_accessed(t).set_modified(t)))
            .map_err(|e| at(e, "setting times of", &p))?;
    }
    Ok(())
}

/// Plans and writes the tree; returns what was written.
pub fn generate(opts: &Options, root: &Path) -> Result<Summary, String> {
    let plan = plan(opts)?;
    write(&plan, root).map_err(|e| e.to_string())?;
    Ok(plan.summary())
}

/// Parses `650M`, `2G`, `512K`, `1000` (binary multiples) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => KIB,
                'M' => MIB,
                'G' => 1024 * MIB,
                'T' => 1024 * 1024 * MIB,
                _ => return Err(format!("bad size {text:?}: unit must be K, M, G or T")),
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected a number with an optional K/M/G/T"))?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(format!("bad size {text:?}"));
    }
    Ok((n * mult as f64) as u64)
}
