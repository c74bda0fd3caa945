//! Moving file contents: a whole-file clone where the filesystems can,
//! else `copy_file_range` over the data segments (holes kept), else read
//! and write; early writeback of big files; comparing contents.

use super::*;

thread_local! {
    /// Per thread, so copying and comparing allocate nothing per file.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Copier<'_> {
    /// Returns false when the file turned out to be mounted on and was left out.
    pub(super) fn copy_file(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<bool> {
        let size = st.st_size as u64;
        if let Some(old) = self.link_unchanged(parent, name, st, &src_path, dst_path)? {
            self.linked.fetch_add(1, Relaxed);
            self.linked_bytes.fetch_add(size, Relaxed);
            self.linked_allocated.fetch_add(allocated(&old), Relaxed);
            if old.st_nlink == 1 {
                self.reference_unshared_bytes
                    .fetch_add(allocated(&old), Relaxed);
            } else {
                lock(&self.reference_multi_linked).push((
                    old.st_ino,
                    old.st_nlink,
                    allocated(&old),
                ));
            }
            self.add_bytes(size);
            return Ok(true);
        }
        let (file, mount) = open_verified(Some(&parent.src), name, st, FILE, &self.noatime)
            .map_err(|e| e.into_error(&src_path))?;
        if mount != self.root.1 {
            lock(&self.skipped_mounts).push(src_path);
            return Ok(false);
        }
        let xattrs = self.source_xattrs(Node::Fd(&file), &src_path)?;
        let perms = st.st_mode & 0o7777;
        let final_mode = self.create_umask.is_some_and(|umask| {
            perms & (0o7000 | umask) == 0 && !xattrs.iter().any(|(n, _)| n == ACL_ACCESS)
        });
        let mode = if final_mode { perms } else { 0o600 };
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let out = open_at(
            Some(&parent.dst),
            name,
            flags,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| Error::sys("creating", dst_path, e))?;
        // Progress moves within a big file, not only after it.
        let moved = AtomicU64::new(0);
        let report = |n: u64| {
            moved.fetch_add(n, Relaxed);
            self.add_bytes(n);
        };
        self.data
            .copy(&file, &out, st, &src_path, dst_path, &report)?;
        if st.st_size >= EARLY_WRITEBACK {
            start_writeback(&out);
        }
        // After the data: writing clears setuid bits and security.capability.
        apply_metadata_but_mode(
            Node::Fd(&out),
            st,
            &xattrs,
            dst_path,
            final_mode,
            self.created_as,
        )?;
        self.count_created(Node::Fd(&out), dst_path)?;
        // Holes count as done too.
        self.add_bytes(size.saturating_sub(moved.into_inner()));
        Ok(true)
    }
}

/// Moves file contents by the fastest way the filesystems allow.
pub(super) struct DataCopier {
    pub(super) path: DataPath,
    /// Cleared for good once the filesystems refuse it.
    pub(super) can_clone: AtomicBool,
    pub(super) can_copy_range: AtomicBool,
}

impl DataCopier {
    pub(super) fn new(path: DataPath) -> DataCopier {
        DataCopier {
            path,
            can_clone: AtomicBool::new(matches!(path, DataPath::Auto | DataPath::Clone)),
            can_copy_range: AtomicBool::new(path != DataPath::ReadWrite),
        }
    }

    /// Copies the contents of `src` into the empty `dst`, holes kept, and
    /// sizes it, telling `moved` of the bytes as they are copied (a clone
    /// tells nothing).
    pub(super) fn copy(
        &self,
        src: &File,
        dst: &File,
        st: &FileStat,
        src_path: &Path,
        dst_path: &Path,
        moved: &dyn Fn(u64),
    ) -> Result<()> {
        let size = st.st_size;
        if size == 0 {
            return Ok(());
        }
        // Allocated blocks cover the size: no holes worth looking for.
        let dense = st.st_blocks * 512 >= size;
        // Where the filesystems clone, a clone beats even a small file's
        // write: that would still cost its writeback in the caller's sync.
        // Elsewhere one read and one write beat copy_file_range.
        if self.path == DataPath::Auto
            && dense
            && size < SMALL_FILE
            && !self.can_clone.load(Relaxed)
        {
            return self.copy_range(src, dst, 0, size, src_path, dst_path, moved);
        }
        if self.can_clone.load(Relaxed) {
            // SAFETY: FICLONE takes the source descriptor as its argument.
            let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
            match Errno::result(rc) {
                Ok(_) => return Ok(()),
                Err(e) if self.path == DataPath::Clone => {
                    return Err(Error::sys("cloning", src_path, e))
                }
                // Not between these filesystems, ever.
                Err(Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::ENOSYS | Errno::EXDEV) => {
                    self.can_clone.store(false, Relaxed)
                }
                // Not this file (say, a swap file or a different checksum setting).
                Err(Errno::EINVAL | Errno::ETXTBSY) => {}
                Err(e) => return Err(Error::sys("cloning", dst_path, e)),
            }
        }
        if dense {
            return self.copy_range(src, dst, 0, size, src_path, dst_path, moved);
        }
        let fd = src.as_raw_fd();
        let mut pos = 0;
        while pos < size {
            let start = match unistd::lseek(fd, pos, Whence::SeekData) {
                Ok(start) => start,
                // Only a hole is left.
                Err(Errno::ENXIO) => break,
                Err(e) => return Err(Error::sys("reading", src_path, e)),
            };
            if start >= size {
                break;
            }
            let end = unistd::lseek(fd, start, Whence::SeekHole)
                .map_err(|e| Error::sys("reading", src_path, e))?
                .min(size);
            self.copy_range(src, dst, start, end - start, src_path, dst_path, moved)?;
            pos = end;
        }
        dst.set_len(size as u64)
            .map_err(|e| Error::io("sizing", dst_path, e))
    }

    /// Copies `len` bytes at `start`: by `copy_file_range` where possible,
    /// except small pieces, which one read and one write copy faster;
    /// `moved` hears of each piece done.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_range(
        &self,
        src: &File,
        dst: &File,
        start: i64,
        len: i64,
        src_path: &Path,
        dst_path: &Path,
        moved: &dyn Fn(u64),
    ) -> Result<()> {
        let in_kernel = len >= SMALL_FILE || self.path == DataPath::CopyFileRange;
        let shrank = || {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being copied",
            );
            Error::io("copying", src_path, e)
        };
        let mut done = 0;
        while done < len && in_kernel && self.can_copy_range.load(Relaxed) {
            let mut off_in = start + done;
            let mut off_out = off_in;
            let want = (len - done).min(CHUNK) as usize;
            match fcntl::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
                Ok(0) => return Err(shrank()),
                Ok(n) => {
                    done += n as i64;
                    moved(n as u64);
                }
                Err(e @ (Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG)) => {
                    return Err(Error::sys("writing", dst_path, e))
                }
                Err(e) if self.path == DataPath::CopyFileRange => {
                    return Err(Error::sys("copying", src_path, e))
                }
                // Not possible between these filesystems: copy through memory from now on.
                Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                    self.can_copy_range.store(false, Relaxed)
                }
                // Not possible for this file.
                Err(Errno::EINVAL) => break,
                Err(e) => return Err(Error::sys("copying", src_path, e)),
            }
        }
        copy_by_reading(
            src,
            dst,
            start + done,
            len - done,
            src_path,
            dst_path,
            moved,
        )
        .map_err(|e| e.unwrap_or_else(shrank))
    }
}

/// The most `copy_file_range` is asked to move at once, so that progress
/// moves within a big file.
const CHUNK: i64 = 16 << 20;

/// Starts writing `file`'s dirty pages to disk without waiting for them.
/// Only a hint: a failure shows up in the caller's sync.
pub(super) fn start_writeback(file: &File) {
    // SAFETY: a plain syscall on a descriptor we own.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

pub(super) use crate::dir::allocated;

/// Whether two files hold the same first `size` bytes, holes reading as
/// zeros. Only data is read: a stretch that is a hole in both files is
/// skipped (found with `SEEK_DATA`/`SEEK_HOLE`), so comparing two sparse
/// files costs what their data costs, not their size. A file that ends
/// early differs.
pub fn same_contents(a: &File, b: &File, size: u64) -> io::Result<bool> {
    BUFFERS.with_borrow_mut(|(x, y)| {
        x.resize(BUF_SIZE, 0);
        y.resize(BUF_SIZE, 0);
        let mut off = 0;
        while off < size {
            let (a_data, a_end) = stretch(a, off, size)?;
            let (b_data, b_end) = stretch(b, off, size)?;
            let end = a_end.min(b_end);
            if a_data || b_data {
                while off < end {
                    let want = (end - off).min(BUF_SIZE as u64) as usize;
                    let (x, y) = (&mut x[..want], &mut y[..want]);
                    let read = |f: &File, buf: &mut [u8]| match f.read_exact_at(buf, off) {
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                        Err(e) => Err(e),
                        Ok(()) => Ok(true),
                    };
                    if !read(a, x)? || !read(b, y)? || x != y {
                        return Ok(false);
                    }
                    off += want as u64;
                }
            }
            off = end;
        }
        Ok(true)
    })
}

/// Whether `file` has data at `off`, and where that stretch of data (or of
/// hole) ends, at most at `size`.
pub(super) fn stretch(file: &File, off: u64, size: u64) -> io::Result<(bool, u64)> {
    let fd = file.as_raw_fd();
    let at = off as i64;
    match unistd::lseek(fd, at, Whence::SeekData) {
        Ok(data) if data == at => {
            let hole = unistd::lseek(fd, at, Whence::SeekHole).map_err(io::Error::from)?;
            Ok((true, (hole as u64).clamp(off + 1, size)))
        }
        Ok(data) => Ok((false, (data as u64).min(size))),
        // Only a hole is left (or the file is shorter than said).
        Err(Errno::ENXIO) => Ok((false, size)),
        // A filesystem that cannot tell: all data.
        Err(Errno::EINVAL | Errno::EOPNOTSUPP) => Ok((true, size)),
        Err(e) => Err(e.into()),
    }
}

/// `Err(None)`: the source ended early.
pub(super) fn copy_by_reading(
    src: &File,
    dst: &File,
    start: i64,
    len: i64,
    src_path: &Path,
    dst_path: &Path,
    moved: &dyn Fn(u64),
) -> std::result::Result<(), Option<Error>> {
    if len == 0 {
        return Ok(());
    }
    BUFFERS.with_borrow_mut(|(buf, _)| {
        buf.resize(BUF_SIZE, 0);
        let mut done = 0;
        while done < len {
            let want = ((len - done) as usize).min(buf.len());
            let off = (start + done) as u64;
            let n = match src.read_at(&mut buf[..want], off) {
                Ok(0) => return Err(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Some(Error::io("reading", src_path, e))),
            };
            dst.write_all_at(&buf[..n], off)
                .map_err(|e| Some(Error::io("writing", dst_path, e)))?;
            done += n as i64;
            moved(n as u64);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sparse_data_keeps_holes_and_size_by_every_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src_path = dir.path().join("src");
        let mut src = File::create(&src_path).expect("create src");
        src.write_all_at(b"middle", 1 << 20).expect("write middle");
        src.set_len(3 << 20).expect("extend");
        src.flush().expect("flush");
        let src = File::open(&src_path).expect("open src");
        let st = stat::fstat(src.as_raw_fd()).expect("fstat");
        let blocks = |p: &Path| stat::stat(p).expect("stat").st_blocks;

        for path in [DataPath::Auto, DataPath::CopyFileRange, DataPath::ReadWrite] {
            let dst_path = dir.path().join(format!("{path:?}"));
            let dst = File::create(&dst_path).expect("create dst");
            let data = DataCopier::new(path);
            data.copy(&src, &dst, &st, &src_path, &dst_path, &|_| {})
                .expect("copy");

            let data = std::fs::read(&dst_path).expect("read dst");
            assert_eq!(data.len(), 3 << 20, "{path:?}");
            assert_eq!(&data[1 << 20..(1 << 20) + 6], b"middle", "{path:?}");
            assert!(data[..1 << 20].iter().all(|&b| b == 0), "{path:?}");
            assert!(blocks(&dst_path) <= blocks(&src_path) + 16, "{path:?}");
        }
    }

    #[test]
    fn same_contents_compares_every_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut data = vec![7u8; BUF_SIZE * 2 + 5];
        let write = |name: &str, data: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, data).expect("write");
            File::open(path).expect("open")
        };
        let a = write("a", &data);
        let size = data.len() as u64;
        let same = |f: &File| same_contents(&a, f, size).expect("compare");
        assert!(same(&write("same", &data)));
        *data.last_mut().expect("not empty") = 8;
        assert!(!same(&write("last-byte", &data)));
        assert!(!same(&write("short", &data[..10])));
    }

    #[test]
    fn same_contents_skips_holes_in_both_and_reads_a_hole_as_zeros() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sparse = |name: &str, data: &[(u64, &[u8])]| {
            let path = dir.path().join(name);
            let f = File::create(&path).expect("create");
            for (at, bytes) in data {
                f.write_all_at(bytes, *at).expect("write");
            }
            // A terabyte, nearly all hole: reading it would take hours.
            f.set_len(1 << 40).expect("extend");
            File::open(path).expect("open")
        };
        let a = sparse("a", &[(4096, b"data"), (1 << 39, b"far")]);
        let b = sparse("b", &[(4096, b"data"), (1 << 39, b"far")]);
        let c = sparse("c", &[(4096, b"data"), (1 << 39, b"FAR")]);
        // Zeros written where the other has a hole are the same bytes.
        let d = sparse(
            "d",
            &[(0, &[0u8; 4096]), (4096, b"data"), (1 << 39, b"far")],
        );
        // Bytes this process has read so far (other tests' reads too, but
        // nothing near a terabyte).
        let read_so_far = || {
            let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .expect("rchar")
        };
        let before = read_so_far();
        assert!(same_contents(&a, &b, 1 << 40).expect("compare"));
        assert!(!same_contents(&a, &c, 1 << 40).expect("compare"));
        assert!(same_contents(&a, &d, 1 << 40).expect("compare"));
        let read = read_so_far() - before;
        assert!(read < 1 << 30, "{read} bytes read: the holes were read");
    }
}
