//! A tree into a tar stream ([`pack`]), and a stream back into a tree
//! ([`Unpacker`]), with the fidelity of the copier.
//!
//! Invariants of packing:
//! - the walk is the copier's: entries are looked at by name below their
//!   parent's descriptor, never through a symlink, each file opened and
//!   checked to be the inode inspected; mounts are not crossed (listed in
//!   [`PackStats::skipped`]);
//! - the order is fixed: depth first, names in byte order, a directory
//!   before its entries; with `atimes` off and the same tree, the bytes are
//!   the same every time;
//! - each entry carries its numeric owner, mode, nanosecond times, every
//!   extended attribute, device number, link target; a file with several
//!   names is written once and its other names as hard links to the first;
//!   a file with holes is written sparse; sockets, which tar cannot hold,
//!   are left out and listed.
//!
//! Invariants of unpacking (the stream is untrusted):
//! - every path is relative, made of plain names (no `.`, `..`, empty
//!   component, NUL), at most [`super::tar::MAX_PATH`] bytes, and below the
//!   tree's root; an entry's directory must have come before it in the
//!   stream and still be one of the directories the walk is in (the order
//!   [`pack`] writes); it is opened name by name without following
//!   symlinks, so a symlink in the stream never leads out of the tree;
//! - nothing existing is replaced: a name that comes twice is an error;
//! - a hard link names an earlier entry of the same tree, looked up the
//!   same way, and never a directory;
//! - device nodes other than whiteouts are created only when allowed; the
//!   total size (sparse files at their full length) and the number of
//!   entries are bounded;
//! - directories are created private and get their metadata when the walk
//!   leaves them, so their times are the stream's.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd;

use super::tar::{Header, Kind, Reader, Sparse, TarError, Writer, MAX_SPARSE_SEGMENTS};
use super::{
    apply_metadata, file_type, held, is_whiteout, list_dir, open_verified, read_link, read_xattrs,
    stat_entry, Node, DIR, FILE,
};
use crate::dir::{open_at, raise_fd_limit, Dir};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{cancelled, Cancel};

/// What [`pack`] writes besides the tree.
#[derive(Clone, Copy, Default)]
pub struct PackOptions<'a> {
    /// Write access times (not for content-addressed layers: reading a file
    /// moves its atime).
    pub atimes: bool,
    /// Write the files' data; without, only the headers (to fingerprint).
    pub no_contents: bool,
    /// Write an OCI image layer: overlay whiteouts as `.wh.NAME` files,
    /// opaque directories with a `.wh..wh..opq` file, overlay attributes
    /// left out.
    pub oci: bool,
    pub cancel: Option<&'a Cancel>,
}

/// What [`pack`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackStats {
    /// Entries below the root.
    pub entries: u64,
    /// Bytes of regular files, each inode once (sparse ones at full length).
    pub bytes: u64,
    /// Device nodes other than whiteouts.
    pub devices: u64,
    /// What was left out: mount points and sockets, below the root.
    pub skipped: Vec<PathBuf>,
}

/// Writes `root` into `out`, its entries named `prefix/PATH` and itself
/// `prefix`.
pub fn pack<W: Write>(
    root: &Dir,
    prefix: &str,
    out: &mut Writer<W>,
    opts: &PackOptions,
) -> Result<PackStats> {
    let noatime = AtomicBool::new(true);
    let (file, st, _) = held(root)?;
    let root_dev = st.st_dev;
    let mut stats = PackStats::default();
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let write_err = |e: std::io::Error| Error::io("writing the stream of", root.path(), e);
    let xattrs = read_xattrs(Node::Fd(&file), root.path())?;
    out.header(&header_of(prefix.as_bytes().to_vec(), &st, xattrs, opts))
        .map_err(write_err)?;
    let names = sorted_names(&file, root.path())?;
    // (directory, its path in the stream, its path on disk, names left)
    let mut stack = vec![(
        file,
        prefix.as_bytes().to_vec(),
        root.path().to_path_buf(),
        names,
    )];
    while let Some((dir, name_in_stream, path, todo)) = stack.last_mut() {
        let Some(name) = todo.pop() else {
            stack.pop();
            continue;
        };
        if stats.entries % 4096 == 0 && opts.cancel.is_some_and(Cancel::is_cancelled) {
            return Err(cancelled());
        }
        let child = path.join(&name);
        let in_stream = [name_in_stream.as_slice(), b"/", name.as_bytes()].concat();
        let (st, mount_root) =
            stat_entry(dir, &name).map_err(|e| Error::sys("inspecting", &child, e))?;
        let kind = file_type(&st);
        if st.st_dev != root_dev || mount_root == Some(true) || kind == SFlag::S_IFSOCK {
            stats.skipped.push(child);
            continue;
        }
        stats.entries += 1;
        let xattrs = read_xattrs(Node::At(dir, &name), &child)?;
        let opaque_dir = kind == SFlag::S_IFDIR
            && xattrs
                .iter()
                .any(|(n, v)| super::is_opaque_attr(n) && v.as_slice() == b"y");
        let mut h = header_of(in_stream.clone(), &st, xattrs, opts);
        if opts.oci && is_whiteout(&st) {
            let mut wh = Header::new(
                [name_in_stream.as_slice(), b"/.wh.", name.as_bytes()].concat(),
                Kind::File,
            );
            wh.mtime = h.mtime;
            out.header(&wh).map_err(write_err)?;
            continue;
        }
        // A name of an inode written already: a link to the first.
        if kind != SFlag::S_IFDIR && st.st_nlink > 1 && !is_whiteout(&st) {
            match links.get(&(st.st_dev, st.st_ino)) {
                Some(first) => {
                    let mut link = Header::new(in_stream, Kind::HardLink);
                    link.link = Some(first.clone());
                    link.mtime = h.mtime;
                    link.mode = h.mode;
                    link.uid = h.uid;
                    link.gid = h.gid;
                    out.header(&link).map_err(write_err)?;
                    continue;
                }
                None => {
                    links.insert((st.st_dev, st.st_ino), in_stream.clone());
                }
            }
        }
        match kind {
            SFlag::S_IFDIR => {
                let (sub, _) = open_verified(Some(dir), &name, &st, DIR, &noatime)
                    .map_err(|e| e.into_error(&child))?;
                out.header(&h).map_err(write_err)?;
                if opts.oci && opaque_dir {
                    let mut opq = Header::new(
                        [in_stream.as_slice(), b"/.wh..wh..opq"].concat(),
                        Kind::File,
                    );
                    opq.mtime = h.mtime;
                    out.header(&opq).map_err(write_err)?;
                }
                let names = sorted_names(&sub, &child)?;
                raise_fd_limit(stack.len() as u64 + 16);
                stack.push((sub, in_stream, child, names));
            }
            SFlag::S_IFREG => {
                stats.bytes += st.st_size as u64;
                let (f, _) = open_verified(Some(dir), &name, &st, FILE, &noatime)
                    .map_err(|e| e.into_error(&child))?;
                let segments =
                    data_segments(&f, &st).map_err(|e| Error::sys("reading", &child, e))?;
                if let Some(segments) = &segments {
                    h.size = segments.iter().map(|(_, len)| len).sum();
                    h.sparse = Some(Sparse {
                        real_size: st.st_size as u64,
                        segments: segments.clone(),
                    });
                }
                out.header(&h).map_err(write_err)?;
                if !opts.no_contents {
                    let whole = [(0, st.st_size as u64)];
                    let parts = segments.as_deref().unwrap_or(&whole);
                    write_data(&f, parts, out, &child)?;
                    out.pad().map_err(write_err)?;
                }
            }
            SFlag::S_IFLNK => {
                let target = read_link(dir, &name, &st, true, &child)?;
                h.link = Some(target.into_vec());
                out.header(&h).map_err(write_err)?;
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                if !is_whiteout(&st) && kind != SFlag::S_IFIFO {
                    stats.devices += 1;
                }
                out.header(&h).map_err(write_err)?;
            }
            _ => stats.skipped.push(child),
        }
    }
    Ok(stats)
}

fn sorted_names(dir: &File, path: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = list_dir(dir, path)?.into_iter().map(|(n, _)| n).collect();
    // Popped from the end: last name first here, so the first comes first.
    names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    Ok(names)
}

fn header_of(
    path: Vec<u8>,
    st: &FileStat,
    xattrs: Vec<(OsString, Vec<u8>)>,
    opts: &PackOptions,
) -> Header {
    let kind = match file_type(st) {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        SFlag::S_IFCHR => Kind::Char,
        SFlag::S_IFBLK => Kind::Block,
        SFlag::S_IFIFO => Kind::Fifo,
        _ => Kind::File,
    };
    let mut h = Header::new(path, kind);
    h.mode = st.st_mode & 0o7777;
    h.uid = st.st_uid;
    h.gid = st.st_gid;
    h.mtime = (st.st_mtime, st.st_mtime_nsec as u32);
    if opts.atimes {
        h.atime = Some((st.st_atime, st.st_atime_nsec as u32));
    }
    if matches!(kind, Kind::Char | Kind::Block) {
        h.dev_major = libc::major(st.st_rdev);
        h.dev_minor = libc::minor(st.st_rdev);
    }
    if kind == Kind::File {
        h.size = st.st_size as u64;
    }
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattrs
        .into_iter()
        .map(|(n, v)| (n.into_vec(), v))
        .filter(|(n, _)| {
            !(opts.oci && (n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.")))
        })
        .collect();
    xattrs.sort();
    h.xattrs = xattrs;
    h
}

/// A file's data segments when it has holes (fewer blocks than its size
/// needs), found with SEEK_DATA/SEEK_HOLE; `None` for a dense file, or one
/// with too many segments to list (written dense).
fn data_segments(f: &File, st: &FileStat) -> nix::Result<Option<Vec<(u64, u64)>>> {
    let size = st.st_size;
    if size == 0 || st.st_blocks * 512 >= size {
        return Ok(None);
    }
    let fd = f.as_raw_fd();
    let mut segments = Vec::new();
    let mut at = 0i64;
    while at < size {
        let data = match unistd::lseek(fd, at, unistd::Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(e),
        };
        let hole = unistd::lseek(fd, data, unistd::Whence::SeekHole)?.min(size);
        segments.push((data as u64, (hole - data) as u64));
        if segments.len() >= MAX_SPARSE_SEGMENTS {
            return Ok(None);
        }
        at = hole;
    }
    // The map always ends at the file's end, as GNU tar writes it.
    if segments
        .last()
        .map_or(true, |(off, len)| off + len < size as u64)
    {
        segments.push((size as u64, 0));
    }
    Ok(Some(segments))
}

fn write_data<W: Write>(
    f: &File,
    parts: &[(u64, u64)],
    out: &mut Writer<W>,
    path: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    for &(off, len) in parts {
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = f
                .read_at(&mut buf[..want], off + done)
                .map_err(|e| Error::io("reading", path, e))?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("reading {}: it shrank while being read", path.display()),
                ));
            }
            out.data(&buf[..n])
                .map_err(|e| Error::io("writing the stream of", path, e))?;
            done += n as u64;
        }
    }
    Ok(())
}

/// Bounds on what a stream may create.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Bytes of regular files, at their full lengths.
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Device nodes other than whiteouts are allowed.
    pub devices: bool,
}

/// What an [`Unpacker`] created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    /// Allocated bytes of what was created, each inode once.
    pub allocated: u64,
}

/// How an OCI image layer is applied over what earlier layers made
/// ([`Unpacker::layered`]): its entries replace those of the same name
/// (directories merge), `.wh.NAME` removes NAME and `.wh..wh..opq` what a
/// directory held, and a directory the layer does not list is taken as it
/// is.
#[derive(Debug, Clone)]
pub enum Whiteouts {
    /// The result is one root filesystem: removed is removed.
    Drop,
    /// The result is an overlay layer: a removed name becomes an overlay
    /// whiteout (it hides the lower layers' entry), but for the paths
    /// listed (relative to the root), which the tree no longer has at all;
    /// an opaque marker makes its directory opaque.
    Keep(std::collections::HashSet<Vec<u8>>),
}

/// A directory the walk is in, with the metadata it gets when left.
struct Open {
    /// Its path below the root, as names.
    names: Vec<Vec<u8>>,
    file: File,
    header: Option<Header>,
}

/// Recreates a tree below a directory from a stream's entries, one
/// [`Unpacker::entry`] at a time (see the module's invariants).
pub struct Unpacker {
    /// What the stream calls the root: its entries are `prefix/PATH`.
    prefix: Vec<u8>,
    root_path: PathBuf,
    stack: Vec<Open>,
    limits: UnpackLimits,
    stats: UnpackStats,
    /// Applying an image layer (see [`Whiteouts`]) rather than creating a
    /// tree of one stream.
    layered: Option<Whiteouts>,
}

impl Unpacker {
    /// Unpacks the entries named `prefix` and `prefix/PATH` into the
    /// empty directory `root`.
    pub fn new(root: &Dir, prefix: &str, limits: UnpackLimits) -> Result<Unpacker> {
        let (file, _, _) = held(root)?;
        Ok(Unpacker {
            prefix: prefix.as_bytes().to_vec(),
            root_path: root.path().to_path_buf(),
            stack: vec![Open {
                names: Vec::new(),
                file,
                header: None,
            }],
            limits,
            stats: UnpackStats::default(),
            layered: None,
        })
    }

    /// Applies image layers named `prefix/PATH` to the directory `root`,
    /// one after the other (see [`Whiteouts`]).
    pub fn layered(
        root: &Dir,
        prefix: &str,
        limits: UnpackLimits,
        whiteouts: Whiteouts,
    ) -> Result<Unpacker> {
        let mut u = Unpacker::new(root, prefix, limits)?;
        u.layered = Some(whiteouts);
        Ok(u)
    }

    /// Done with one layer: every directory left, the next one starts at
    /// the root.
    pub fn end_layer(&mut self) -> Result<()> {
        while self.stack.len() > 1 {
            self.leave()?;
        }
        Ok(())
    }

    fn refuse(&self, rel: &[u8], why: &str) -> Error {
        Error::new(
            ErrorKind::Unsafe,
            format!(
                "refusing the stream's entry {}: {why}",
                Path::new(OsStr::from_bytes(rel)).display()
            ),
        )
    }

    /// The path of a stream's entry below this tree's root (empty for the
    /// root), if it is in this tree.
    pub fn below<'p>(&self, path: &'p [u8]) -> Option<&'p [u8]> {
        below(&self.prefix, path)
    }

    /// Creates the entry `h` of this tree, reading its data from `r`.
    pub fn entry<R: Read>(&mut self, h: &Header, r: &mut Reader<R>) -> Result<()> {
        let Some(rel) = self.below(&h.path) else {
            return Err(self.refuse(&h.path, "not in the tree being unpacked"));
        };
        let names = split(rel)
            .ok_or_else(|| self.refuse(rel, "not a plain relative path below the tree"))?;
        if names.is_empty() {
            if h.kind != Kind::Dir {
                return Err(self.refuse(rel, "the tree's root is not a directory"));
            }
            self.stack[0].header = Some(h.clone());
            return Ok(());
        }
        self.stats.entries += 1;
        if self.stats.entries > self.limits.max_entries {
            return Err(self.refuse(rel, "the stream holds more entries than allowed"));
        }
        let (name, parents) = names.split_last().expect("not empty");
        // Leave the directories this entry is not in.
        while !is_within(parents, &self.top().names) {
            self.leave()?;
        }
        if self.layered.is_some() {
            // A directory of an earlier layer, or one the layer leaves out.
            while self.top().names.len() < parents.len() {
                let depth = self.top().names.len();
                let part = OsStr::from_bytes(parents[depth]);
                let at = self
                    .root_path
                    .join(OsStr::from_bytes(&parents[..=depth].join(&b'/')));
                let parent = &self.top().file;
                match stat::mkdirat(
                    Some(parent.as_raw_fd()),
                    part,
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(Error::sys("creating", &at, e)),
                }
                let file = open_at(Some(parent), part, DIR | OFlag::O_NOFOLLOW, Mode::empty())
                    .map_err(|_| self.refuse(rel, "a name on its way is no directory"))?;
                self.stack.push(Open {
                    names: parents[..=depth].iter().map(|n| n.to_vec()).collect(),
                    file,
                    header: None,
                });
            }
            if self.apply_whiteout(rel, name, h)? {
                return Ok(());
            }
            self.make_room(rel, name, h)?;
        }
        if parents.len() != self.top().names.len() {
            return Err(self.refuse(
                rel,
                "its directory is not in the stream before it (or is no directory)",
            ));
        }
        if h.kind == Kind::File {
            let full = h.sparse.as_ref().map_or(h.size, |s| s.real_size);
            self.stats.bytes = self.stats.bytes.saturating_add(full);
            if self.stats.bytes > self.limits.max_bytes {
                return Err(self.refuse(
                    rel,
                    &format!(
                        "the stream's files add up to more than the {} bytes allowed",
                        self.limits.max_bytes
                    ),
                ));
            }
        }
        let path = self.root_path.join(OsStr::from_bytes(rel));
        let name = OsStr::from_bytes(name);
        let parent = &self.top().file;
        let mut allocated = 0;
        let exists = |e: Errno| match e {
            Errno::EEXIST => self.refuse(rel, "it comes twice"),
            e => Error::sys("creating", &path, e),
        };
        match h.kind {
            Kind::Dir => {
                match stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU) {
                    // A directory of an earlier layer: merged.
                    Err(Errno::EEXIST) if self.layered.is_some() => {}
                    other => other.map_err(exists)?,
                }
                let file = open_at(Some(parent), name, DIR | OFlag::O_NOFOLLOW, Mode::empty())
                    .map_err(|e| Error::sys("opening", &path, e))?;
                raise_fd_limit(self.stack.len() as u64 + 16);
                self.stack.push(Open {
                    names: names.iter().map(|n| n.to_vec()).collect(),
                    file,
                    header: Some(h.clone()),
                });
                return Ok(());
            }
            Kind::File => {
                let file = open_at(
                    Some(parent),
                    name,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .map_err(exists)?;
                write_entry_data(&file, h, r, &path)?;
                let st = stat_of(h)?;
                apply_metadata(Node::Fd(&file), &st, &os_xattrs(h), &path, None)?;
                let st = stat::fstat(file.as_raw_fd())
                    .map_err(|e| Error::sys("inspecting", &path, e))?;
                allocated = st.st_blocks as u64 * 512;
            }
            Kind::HardLink => {
                let target = h.link.as_deref().unwrap_or_default();
                let (t_dir, t_name) = self.lookup(rel, target)?;
                let t_st = stat_entry(&t_dir, OsStr::from_bytes(&t_name))
                    .map_err(|_| self.refuse(rel, "it links to an entry not in the tree"))?
                    .0;
                if file_type(&t_st) == SFlag::S_IFDIR {
                    return Err(self.refuse(rel, "it links to a directory"));
                }
                let parent = &self.top().file;
                unistd::linkat(
                    Some(t_dir.as_raw_fd()),
                    OsStr::from_bytes(&t_name),
                    Some(parent.as_raw_fd()),
                    name,
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(exists)?;
            }
            Kind::Symlink => {
                let target = h.link.as_deref().unwrap_or_default();
                if target.is_empty() {
                    return Err(self.refuse(rel, "a symlink without a target"));
                }
                unistd::symlinkat(OsStr::from_bytes(target), Some(parent.as_raw_fd()), name)
                    .map_err(exists)?;
                let st = stat_of(h)?;
                apply_metadata(Node::At(parent, name), &st, &os_xattrs(h), &path, None)?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let whiteout = h.kind == Kind::Char && h.dev_major == 0 && h.dev_minor == 0;
                if !whiteout && h.kind != Kind::Fifo && !self.limits.devices {
                    return Err(self
                        .refuse(rel, "a device node, which this stream may not hold")
                        .with_hint(
                            "device nodes come only in a stream whose metadata says it holds them",
                        ));
                }
                let st = stat_of(h)?;
                stat::mknodat(
                    Some(parent.as_raw_fd()),
                    name,
                    file_type(&st),
                    Mode::S_IRUSR | Mode::S_IWUSR,
                    st.st_rdev,
                )
                .map_err(exists)?;
                apply_metadata(Node::At(parent, name), &st, &os_xattrs(h), &path, None)?;
            }
        }
        self.stats.allocated += allocated;
        Ok(())
    }

    /// Bytes of files created so far, sparse ones at their full length.
    pub fn bytes(&self) -> u64 {
        self.stats.bytes
    }

    /// A layer's `.wh.NAME` or `.wh..wh..opq`, applied; whether `name` was
    /// one.
    fn apply_whiteout(&mut self, rel: &[u8], name: &[u8], h: &Header) -> Result<bool> {
        let Some(target) = name.strip_prefix(b".wh.") else {
            return Ok(false);
        };
        let dir_path = self.root_path.join(OsStr::from_bytes(
            rel.strip_suffix(name).unwrap_or_default(),
        ));
        let parent = Dir::held(
            self.top()
                .file
                .try_clone()
                .map_err(|e| Error::io("opening", &dir_path, e))?,
            dir_path,
        );
        if target == b".wh..opq" {
            for child in parent.names()? {
                parent.remove_tree(&child)?;
            }
            if matches!(self.layered, Some(Whiteouts::Keep(_))) {
                let top = self.stack.last_mut().expect("the root stays");
                match &mut top.header {
                    Some(dh) => dh
                        .xattrs
                        .push((b"trusted.overlay.opaque".to_vec(), b"y".to_vec())),
                    None => parent.set_attr("trusted.overlay.opaque", b"y")?,
                }
            }
            return Ok(true);
        }
        let target_os = OsStr::from_bytes(target);
        if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
            return Err(self.refuse(rel, "a whiteout of no plain name"));
        }
        parent.remove_tree(target_os)?;
        if let Some(Whiteouts::Keep(removed)) = &self.layered {
            let whited = [rel.strip_suffix(name).unwrap_or_default(), target].concat();
            if !removed.contains(&whited) {
                parent.make_whiteout(target_os)?;
                let mut wh = Header::new(whited, Kind::Char);
                wh.mtime = h.mtime;
                let st = stat_of(&wh)?;
                apply_metadata(
                    Node::At(parent.file(), target_os),
                    &st,
                    &[],
                    &parent.join(target_os),
                    None,
                )?;
            }
        }
        Ok(true)
    }

    /// Before a layer's entry is created: what an earlier layer has at its
    /// name goes, unless both are directories (which merge: the entry is
    /// entered, and gets the layer's metadata when left).
    fn make_room(&mut self, rel: &[u8], name: &[u8], h: &Header) -> Result<()> {
        let name_os = OsStr::from_bytes(name);
        let parent_path = self.root_path.join(OsStr::from_bytes(
            rel.strip_suffix(name).unwrap_or_default(),
        ));
        let parent = Dir::held(
            self.top()
                .file
                .try_clone()
                .map_err(|e| Error::io("opening", &parent_path, e))?,
            parent_path,
        );
        let Some(st) = parent.stat_at(name_os)? else {
            return Ok(());
        };
        if h.kind == Kind::Dir && file_type(&st) == SFlag::S_IFDIR {
            return Ok(());
        }
        parent.remove_tree(name_os)
    }

    fn top(&self) -> &Open {
        self.stack.last().expect("the root stays")
    }

    /// Gives the directory on top its metadata and leaves it.
    fn leave(&mut self) -> Result<()> {
        let open = self.stack.pop().expect("not the root");
        if let Some(h) = &open.header {
            let path = self
                .root_path
                .join(OsStr::from_bytes(&open.names.join(&b'/')));
            apply_metadata(
                Node::Fd(&open.file),
                &stat_of(h)?,
                &os_xattrs(h),
                &path,
                None,
            )?;
        }
        Ok(())
    }

    /// The directory and name of an earlier entry at `target` below the
    /// root, opened name by name without following symlinks.
    fn lookup(&self, rel: &[u8], target: &[u8]) -> Result<(File, Vec<u8>)> {
        let names = self
            .below(target)
            .and_then(split)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.refuse(rel, "it links to a path out of the tree"))?;
        let (name, parents) = names.split_last().expect("not empty");
        let mut dir = self.stack[0]
            .file
            .try_clone()
            .map_err(|e| Error::io("opening", &self.root_path, e))?;
        for p in parents {
            dir = open_at(
                Some(&dir),
                OsStr::from_bytes(p),
                DIR | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|_| self.refuse(rel, "it links to an entry not in the tree"))?;
        }
        Ok((dir, name.to_vec()))
    }

    /// Leaves every directory, the root last; what was created.
    pub fn finish(mut self) -> Result<UnpackStats> {
        while self.stack.len() > 1 {
            self.leave()?;
        }
        let root = &self.stack[0];
        if let Some(h) = &root.header {
            apply_metadata(
                Node::Fd(&root.file),
                &stat_of(h)?,
                &os_xattrs(h),
                &self.root_path,
                None,
            )?;
        }
        Ok(self.stats)
    }
}

/// `path` below `prefix` (empty for `prefix` itself), if it is there.
fn below<'p>(prefix: &[u8], path: &'p [u8]) -> Option<&'p [u8]> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    match path.strip_prefix(prefix)? {
        b"" => Some(b""),
        rest => rest.strip_prefix(b"/"),
    }
}

/// Whether the path `names` is `dir` or below it.
fn is_within(names: &[&[u8]], dir: &[Vec<u8>]) -> bool {
    names.len() >= dir.len() && names.iter().zip(dir).all(|(a, b)| *a == b.as_slice())
}

/// The names of a relative path; `None` unless every one is a plain name
/// (a trailing slash aside).
fn split(rel: &[u8]) -> Option<Vec<&[u8]>> {
    if rel.is_empty() {
        return Some(Vec::new());
    }
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    let names: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    if names
        .iter()
        .any(|n| n.is_empty() || *n == b"." || *n == b".." || n.contains(&0) || n.len() > 255)
    {
        return None;
    }
    Some(names)
}

fn os_xattrs(h: &Header) -> Vec<(OsString, Vec<u8>)> {
    h.xattrs
        .iter()
        .map(|(n, v)| (OsString::from_vec(n.clone()), v.clone()))
        .collect()
}

/// A status with the header's owner, mode, times and device, as
/// [`apply_metadata`] sets them.
fn stat_of(h: &Header) -> Result<FileStat> {
    // SAFETY: struct stat is plain old data; every field used is set below.
    let mut st: FileStat = unsafe { std::mem::zeroed() };
    let kind = match h.kind {
        Kind::Dir => libc::S_IFDIR,
        Kind::Symlink => libc::S_IFLNK,
        Kind::Char => libc::S_IFCHR,
        Kind::Block => libc::S_IFBLK,
        Kind::Fifo => libc::S_IFIFO,
        Kind::File | Kind::HardLink => libc::S_IFREG,
    };
    st.st_mode = kind | (h.mode & 0o7777);
    st.st_uid = h.uid;
    st.st_gid = h.gid;
    st.st_rdev = libc::makedev(h.dev_major, h.dev_minor);
    st.st_mtime = h.mtime.0;
    st.st_mtime_nsec = i64::from(h.mtime.1);
    let atime = h.atime.unwrap_or(h.mtime);
    st.st_atime = atime.0;
    st.st_atime_nsec = i64::from(atime.1);
    Ok(st)
}

fn write_entry_data<R: Read>(
    file: &File,
    h: &Header,
    r: &mut Reader<R>,
    path: &Path,
) -> Result<()> {
    let whole = [(0, h.size)];
    let segments = h.sparse.as_ref().map_or(&whole[..], |s| &s.segments[..]);
    let mut buf = vec![0u8; 256 << 10];
    let read_err = |e: TarError| {
        Error::new(
            ErrorKind::Other,
            format!("reading the data of {}: {e}", path.display()),
        )
    };
    for &(off, len) in segments {
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = r.read_data(&mut buf[..want]).map_err(read_err)?;
            if n == 0 {
                return Err(read_err(TarError::Truncated));
            }
            file.write_all_at(&buf[..n], off + done)
                .map_err(|e| Error::io("writing", path, e))?;
            done += n as u64;
        }
    }
    if let Some(s) = &h.sparse {
        file.set_len(s.real_size)
            .map_err(|e| Error::io("writing", path, e))?;
    }
    Ok(())
}
