//! The walk: one thread goes through the source tree with an explicit
//! stack of levels (one directory descriptor a level on each side),
//! creates directories, symlinks, devices and links, and hands regular
//! files in batches to worker threads; directories get their metadata
//! once all their entries exist. Entries are opened beneath their parent's
//! descriptor and checked to be what was inspected; mounts are not crossed.

use super::*;

/// A directory being copied, shared by the walker and the files in it
/// still being copied.
pub(super) struct DirCopy {
    pub(super) src: File,
    pub(super) dst: File,
    /// The directories at the same place in the reference trees, top
    /// first: the reference's, then (for a layer) its anchor's, where
    /// there are such directories that show (see [`CopyOptions::reference_below`]).
    pub(super) reference: Vec<File>,
    /// Where it is below the roots: one name, shared with its parent's.
    pub(super) rel: RelPath,
    pub(super) st: FileStat,
    pub(super) xattrs: Xattrs,
    /// Its node in [`CopyOptions::select`], when its entries are copied
    /// only as that says.
    pub(super) sel: Option<usize>,
    /// `dst` existed before the copy (merging).
    pub(super) existing: bool,
    /// Entries of `dst` that copying threads are still creating, plus one
    /// while the walker has names left: the directory gets its metadata
    /// when this drops to zero.
    pub(super) pending: AtomicUsize,
}

/// The first copy of a source inode with several names.
pub(super) struct FirstCopy {
    pub(super) dir: RelPath,
    pub(super) name: OsString,
    /// Names of the source inode not linked yet.
    pub(super) left: u64,
}

impl DirCopy {
    pub(super) fn src_path(&self, c: &Copier) -> PathBuf {
        self.rel.under(&c.src_root)
    }

    pub(super) fn dst_path(&self, c: &Copier) -> PathBuf {
        self.rel.under(&c.dst_root_path)
    }
}

/// A directory on the walker's stack: its entries still to do.
pub(super) struct Level {
    pub(super) dir: Arc<DirCopy>,
    pub(super) names: Vec<(OsString, Option<Type>)>,
}

/// Regular files (by their directory entries' type) for a copying thread.
pub(super) struct FileTask {
    pub(super) dir: Arc<DirCopy>,
    pub(super) names: Vec<OsString>,
}

/// What every thread of one copy shares.
pub(super) struct Copier<'a> {
    /// The roots' paths, for messages.
    pub(super) src_root: PathBuf,
    pub(super) dst_root_path: PathBuf,
    /// (st_dev, mount id) of `src`.
    pub(super) root: (u64, Option<u64>),
    pub(super) dst_root: File,
    pub(super) dst_root_id: (u64, u64),
    /// (st_dev, mount id) of the reference.
    pub(super) reference_root: Option<(u64, Option<u64>)>,
    pub(super) compare: Compare,
    pub(super) data: DataCopier,
    /// The owner every entry the copy creates gets from the kernel, when
    /// that is certain: setting the same owner again is skipped.
    pub(super) created_as: Option<(u32, u32)>,
    /// The umask, if a file created with mode `m` gets exactly `m & !umask`
    /// (no default ACL at the destination decides instead).
    pub(super) create_umask: Option<u32>,
    pub(super) progress: Option<&'a dyn Progress>,
    pub(super) total: Option<Counts>,
    pub(super) cancel: Option<&'a Cancel>,
    pub(super) select: Option<&'a Selection>,
    pub(super) merge: bool,
    pub(super) overlay_private: Option<&'a str>,
    pub(super) keep_link_atimes: bool,
    /// Cleared for good once the filesystems refuse it.
    pub(super) can_link_reference: AtomicBool,
    /// Names an inode may have on the destination's filesystem.
    pub(super) link_max: u64,
    pub(super) noatime: AtomicBool,
    /// (dev, ino) of multiply-linked source inodes -> their first copy
    /// (its directory and name) and how many names are still to link.
    /// Held while such a first copy is made, so no name links to a file
    /// not yet complete.
    pub(super) links: Mutex<HashMap<(u64, u64), FirstCopy>>,
    /// (dev, ino) of reference inodes linked into the copy.
    pub(super) reference_used: Mutex<HashSet<(u64, u64)>>,
    pub(super) entries: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) linked: AtomicU64,
    pub(super) linked_bytes: AtomicU64,
    pub(super) created_bytes: AtomicU64,
    pub(super) linked_allocated: AtomicU64,
    pub(super) reference_unshared_bytes: AtomicU64,
    pub(super) reference_multi_linked: Mutex<Vec<(u64, u64, u64)>>,
    /// Inode number in the copy -> its names there, for inodes with several.
    pub(super) multi_name_inodes: Mutex<HashMap<u64, u64>>,
    /// What was last reported to `progress`.
    pub(super) reported: Mutex<Counts>,
    pub(super) skipped_mounts: Mutex<Vec<PathBuf>>,
    /// The first failure; everything stops soon after it.
    pub(super) error: Mutex<Option<Error>>,
    pub(super) failed: AtomicBool,
    pub(super) fd_soft_limit: AtomicU64,
    pub(super) fd_hard_limit: u64,
}

/// An entry, by its own descriptor or by name in an open directory.
#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Fd(&'a File),
    At(&'a File, &'a OsStr),
}

/// Addresses an entry itself without following it: the l*xattr calls do
/// not follow the last component, and `/proc/self/fd/N` pins the directory
/// so no earlier component can be swapped.
pub(super) fn proc_path(dir: &File, name: &OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Copier<'_> {
    /// Walks on this thread while the workers copy regular files; returns
    /// the first failure of any of them.
    pub(super) fn run(&self, root: Level) -> Result<()> {
        let (queue, tasks) = mpsc::sync_channel::<FileTask>(QUEUE);
        // Shared by the workers only: if they all die, sending fails
        // instead of blocking for ever.
        let tasks = Arc::new(Mutex::new(tasks));
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS));
        std::thread::scope(|scope| {
            let mut started = 0;
            for _ in 0..workers {
                let tasks = Arc::clone(&tasks);
                let spawned = std::thread::Builder::new()
                    .name("copy".into())
                    .spawn_scoped(scope, move || self.work(&tasks));
                started += usize::from(spawned.is_ok());
            }
            drop(tasks);
            if let Err(e) = self.walk(root, (started > 0).then_some(&queue)) {
                self.fail(e);
            }
            // Lets the workers finish.
            drop(queue);
        });
        // Whatever else failed on the way, a cancelled copy says so.
        if self.cancelled() {
            return Err(cancelled());
        }
        match lock(&self.error).take() {
            Some(e) => Err(e),
            None => {
                self.report_progress(true);
                Ok(())
            }
        }
    }

    /// Depth first with an explicit stack. Regular files go to `queue` when
    /// there is one.
    pub(super) fn walk(&self, mut root: Level, queue: Option<&SyncSender<FileTask>>) -> Result<()> {
        self.hand_out_files(&mut root, queue)?;
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            if self.stopping() {
                return Ok(());
            }
            let Some((name, _)) = top.names.pop() else {
                if let Some(done) = stack.pop() {
                    self.release(&done.dir, 1);
                }
                continue;
            };
            let dir = Arc::clone(&top.dir);
            self.make_room_for(stack.len() + 1);
            if let Some(mut child) = self.copy_entry(&dir, &name)? {
                self.hand_out_files(&mut child, queue)?;
                stack.push(child);
            }
        }
        Ok(())
    }

    /// Sends the level's regular files (as its directory lists them) to
    /// the copying threads, a batch at a time: one wake-up per file would
    /// cost more than many a small file's copy.
    pub(super) fn hand_out_files(
        &self,
        level: &mut Level,
        queue: Option<&SyncSender<FileTask>>,
    ) -> Result<()> {
        let Some(queue) = queue else {
            return Ok(());
        };
        let (files, others) = std::mem::take(&mut level.names)
            .into_iter()
            .partition::<Vec<_>, _>(|(_, kind)| *kind == Some(Type::File));
        level.names = others;
        let mut files = files.into_iter().map(|(name, _)| name).peekable();
        while files.peek().is_some() {
            let names: Vec<OsString> = files.by_ref().take(BATCH).collect();
            level.dir.pending.fetch_add(names.len(), Relaxed);
            let task = FileTask {
                dir: Arc::clone(&level.dir),
                names,
            };
            if queue.send(task).is_err() {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "copying {}: the copying threads died",
                        level.dir.src_path(self).display()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn work(&self, tasks: &Mutex<Receiver<FileTask>>) {
        loop {
            let Ok(task) = lock(tasks).recv() else {
                return;
            };
            for name in &task.names {
                if self.stopping() {
                    break;
                }
                // A directory now where a file was listed: walk it here.
                let done = self
                    .copy_entry(&task.dir, name)
                    .and_then(|child| match child {
                        Some(child) => self.walk(child, None),
                        None => Ok(()),
                    });
                if let Err(e) = done {
                    self.fail(e);
                }
            }
            self.release(&task.dir, task.names.len());
        }
    }

    /// Whether the caller asked the copy to stop.
    pub(super) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(Cancel::is_cancelled)
    }

    /// Whether the copy is to stop: it failed or it was cancelled.
    pub(super) fn stopping(&self) -> bool {
        self.failed.load(Relaxed) || self.cancelled()
    }

    pub(super) fn fail(&self, e: Error) {
        lock(&self.error).get_or_insert(e);
        self.failed.store(true, Relaxed);
    }

    /// `n` entries of `dir` are done; the last one sets its metadata.
    pub(super) fn release(&self, dir: &DirCopy, n: usize) {
        if dir.pending.fetch_sub(n, AcqRel) == n && !self.stopping() {
            // Last, so that creating its entries does not change its times.
            let dst_path = dir.dst_path(self);
            let done = drop_stale_xattrs(dir, &dst_path)
                .and_then(|()| {
                    apply_metadata(
                        Node::Fd(&dir.dst),
                        &dir.st,
                        &dir.xattrs,
                        &dst_path,
                        self.created_as,
                    )
                })
                .and_then(|()| self.count_created(Node::Fd(&dir.dst), &dst_path));
            if let Err(e) = done {
                self.fail(e);
            }
        }
    }

    /// Deep trees need three descriptors per level; the soft limit is often
    /// far below the hard one.
    pub(super) fn make_room_for(&self, depth: usize) {
        let soft = self.fd_soft_limit.load(Relaxed);
        let hard = self.fd_hard_limit;
        let needed = 3 * (depth + QUEUE + MAX_WORKERS) as u64 + FD_RESERVE;
        if needed > soft && soft < hard {
            self.fd_soft_limit.store(hard, Relaxed);
            // If this fails, the open that runs out of descriptors names its path.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }

    pub(super) fn report_progress(&self, last: bool) {
        let Some(progress) = self.progress else {
            return;
        };
        let done = Counts {
            entries: self.entries.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        };
        // Whoever holds it reports for everyone; reports never go backwards.
        let mut reported = if last {
            lock(&self.reported)
        } else {
            match self.reported.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        };
        let due = done.bytes >= reported.bytes + PROGRESS_STEP
            || done.entries >= reported.entries + PROGRESS_ENTRIES;
        if due || (last && done != *reported) {
            *reported = done;
            progress.advance(done, self.total);
        }
    }

    pub(super) fn add_bytes(&self, n: u64) {
        let done = self.bytes.fetch_add(n, Relaxed) + n;
        if done / PROGRESS_STEP != (done - n) / PROGRESS_STEP {
            self.report_progress(false);
        }
    }

    /// One more entry created.
    pub(super) fn count_entry(&self) {
        if (self.entries.fetch_add(1, Relaxed) + 1) % PROGRESS_ENTRIES == 0 {
            self.report_progress(false);
        }
    }

    pub(super) fn copy_entry(&self, parent: &DirCopy, name: &OsStr) -> Result<Option<Level>> {
        let mut sel = None;
        if let (Some(node), Some(select)) = (parent.sel, self.select) {
            match select.lookup(node, name) {
                (Select::Skip, _) => return Ok(None),
                (Select::Descend, child) => sel = child,
                (Select::All, _) => {}
            }
        }
        // Built for this entry only; nothing keeps a whole path a level.
        let src_path = parent.src_path(self).join(name);
        let dst_path = parent.dst_path(self).join(name);
        let (st, mount_root) =
            stat_entry(&parent.src, name).map_err(|e| Error::sys("inspecting", &src_path, e))?;
        let kind = file_type(&st);
        if st.st_dev != self.root.0 || mount_root == Some(true) {
            self.skip_mount(parent, name, &st, src_path, &dst_path)?;
            return Ok(None);
        }
        if kind == SFlag::S_IFDIR {
            return self.enter_dir(parent, name, st, src_path, dst_path, sel);
        }
        let whiteout = is_whiteout(&st);
        if self.is_overlay_whiteout(parent, name, &st, &src_path)? {
            return Ok(None);
        }
        if st.st_nlink == 1 || whiteout {
            self.copy_non_dir(parent, name, &st, src_path, &dst_path)?;
            return Ok(None);
        }
        let id = (st.st_dev, st.st_ino);
        let mut links = lock(&self.links);
        if let Some(first) = links.get_mut(&id) {
            let ino = self.link(first, parent, name, &dst_path)?;
            self.count_entry();
            *lock(&self.multi_name_inodes).entry(ino).or_insert(1) += 1;
            first.left = first.left.saturating_sub(1);
            if first.left == 0 {
                // Every name is in: the entry is no longer needed.
                links.remove(&id);
            }
        } else if self.copy_non_dir(parent, name, &st, src_path, &dst_path)? {
            links.insert(
                id,
                FirstCopy {
                    dir: parent.rel.clone(),
                    name: name.to_os_string(),
                    left: st.st_nlink.saturating_sub(1),
                },
            );
        }
        Ok(None)
    }

    /// Returns false when the entry turned out to be mounted on and was left out.
    pub(super) fn copy_non_dir(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<bool> {
        let kind = file_type(st);
        let copied = if kind == SFlag::S_IFREG {
            self.copy_file(parent, name, st, src_path, dst_path)?
        } else {
            self.copy_node(parent, name, st, kind, &src_path, dst_path)?;
            self.count_created(Node::At(&parent.dst, name), dst_path)?;
            true
        };
        if copied {
            self.count_entry();
        }
        Ok(copied)
    }

    pub(super) fn enter_dir(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: FileStat,
        src_path: PathBuf,
        dst_path: PathBuf,
        sel: Option<usize>,
    ) -> Result<Option<Level>> {
        let (dir, mount) = open_verified(Some(&parent.src), name, &st, DIR, &self.noatime)
            .map_err(|e| e.into_error(&src_path))?;
        if mount != self.root.1 {
            self.skip_mount(parent, name, &st, src_path, &dst_path)?;
            return Ok(None);
        }
        if (st.st_dev, st.st_ino) == self.dst_root_id {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "copying {}: is the destination itself (a tree cannot be copied into itself)",
                    src_path.display()
                ),
            ));
        }
        let xattrs = self.source_xattrs(Node::Fd(&dir), &src_path)?;
        let names = list_dir(&dir, &src_path)?;
        let (out, existing) = match make_dir(&parent.dst, name, &dst_path) {
            Err(e) if self.merge && e.kind() == ErrorKind::Exists => (
                open_at(
                    Some(&parent.dst),
                    name,
                    DIR | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| Error::sys("opening", &dst_path, e))?,
                true,
            ),
            other => (other?, false),
        };
        let reference = self.open_reference_dirs(&parent.reference, name);
        self.count_entry();
        Ok(Some(Level {
            dir: Arc::new(DirCopy {
                src: dir,
                dst: out,
                reference,
                rel: parent.rel.child(name),
                st,
                xattrs,
                sel,
                existing,
                pending: AtomicUsize::new(1),
            }),
            names,
        }))
    }

    /// An entry's extended attributes, refused when they make it part of a
    /// layer that is not self-contained, without the overlay's own when
    /// the copy is to be a plain tree.
    pub(super) fn source_xattrs(&self, node: Node, path: &Path) -> Result<Xattrs> {
        let mut xattrs = read_xattrs(node, path)?;
        refuse_redirects(&xattrs, path)?;
        drop_private(&mut xattrs, self.overlay_private);
        Ok(xattrs)
    }

    /// Whether the entry is a whiteout of the overlay the source is a
    /// layer of (see [`CopyOptions::overlay_private`]).
    pub(super) fn is_overlay_whiteout(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        path: &Path,
    ) -> Result<bool> {
        let Some(prefix) = self.overlay_private else {
            return Ok(false);
        };
        if is_whiteout(st) {
            return Ok(true);
        }
        if file_type(st) != SFlag::S_IFREG || st.st_size != 0 {
            return Ok(false);
        }
        let attr = format!("{prefix}whiteout");
        let marked = xattr::get(proc_path(&parent.src, name), attr)
            .map_err(|e| Error::io("reading extended attributes of", path, e))?;
        Ok(marked.is_some())
    }

    /// Only mount points reach here, so nothing on the mounted filesystem is read.
    pub(super) fn skip_mount(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: PathBuf,
        dst_path: &Path,
    ) -> Result<()> {
        if file_type(st) == SFlag::S_IFDIR {
            let out = make_dir(&parent.dst, name, dst_path)?;
            apply_metadata(Node::Fd(&out), st, &[], dst_path, self.created_as)?;
            self.count_created(Node::Fd(&out), dst_path)?;
            self.count_entry();
        }
        lock(&self.skipped_mounts).push(src_path);
        Ok(())
    }

    /// Adds the allocated size of `node`, an inode this copy created.
    pub(super) fn count_created(&self, node: Node, path: &Path) -> Result<()> {
        let st = match node {
            Node::Fd(f) => stat::fstat(f.as_raw_fd()),
            Node::At(dir, name) => {
                stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            }
        }
        .map_err(|e| Error::sys("inspecting", path, e))?;
        self.created_bytes.fetch_add(allocated(&st), Relaxed);
        Ok(())
    }

    /// Makes `name` another name of the copy's `first`; returns its inode number.
    pub(super) fn link(
        &self,
        first: &FirstCopy,
        parent: &DirCopy,
        name: &OsStr,
        dst_path: &Path,
    ) -> Result<u64> {
        let err = |e| Error::sys("linking", dst_path, e);
        // Resolved below the destination root one name at a time without
        // any symlink (and so without any limit on the path's length): the
        // link can only ever point at our own first copy.
        let dir = open_rel(&self.dst_root, &first.dir.names(), OFlag::O_PATH).map_err(err)?;
        unistd::linkat(
            Some(dir.as_raw_fd()),
            first.name.as_os_str(),
            Some(parent.dst.as_raw_fd()),
            name,
            AtFlags::empty(),
        )
        .map_err(err)?;
        let st = stat::fstatat(
            Some(parent.dst.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
        Ok(st.st_ino)
    }

    /// Symlinks, fifos, sockets and devices: made from their lstat and xattrs,
    /// never opened.
    pub(super) fn copy_node(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        kind: SFlag,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<()> {
        let xattrs = self.source_xattrs(Node::At(&parent.src, name), src_path)?;
        let dst_dir = Some(parent.dst.as_raw_fd());
        if kind == SFlag::S_IFLNK {
            let target = read_link(&parent.src, name, st, self.keep_link_atimes, src_path)?;
            unistd::symlinkat(target.as_os_str(), dst_dir, name)
                .map_err(|e| Error::sys("creating", dst_path, e))?;
        } else if matches!(
            kind,
            SFlag::S_IFIFO | SFlag::S_IFSOCK | SFlag::S_IFCHR | SFlag::S_IFBLK
        ) {
            stat::mknodat(
                dst_dir,
                name,
                kind,
                Mode::S_IRUSR | Mode::S_IWUSR,
                st.st_rdev,
            )
            .map_err(|e| Error::sys("creating", dst_path, e))?;
        } else {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "copying {}: unknown file type {:o}",
                    src_path.display(),
                    st.st_mode
                ),
            ));
        }
        apply_metadata(
            Node::At(&parent.dst, name),
            st,
            &xattrs,
            dst_path,
            self.created_as,
        )
    }
}

pub(super) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// A held directory's own descriptor (a new one), status and mount.
pub(super) fn held(dir: &Dir) -> Result<(File, FileStat, Option<u64>)> {
    let file = dir
        .file()
        .try_clone()
        .map_err(|e| Error::io("opening", dir.path(), e))?;
    let st = stat::fstat(file.as_raw_fd()).map_err(|e| Error::sys("inspecting", dir.path(), e))?;
    let (_, _, _, mount) = identify(&file).map_err(|e| Error::sys("inspecting", dir.path(), e))?;
    Ok((file, st, mount))
}

/// Creates `name` in `parent` (private until its metadata is set), or
/// with `merge` opens it if it exists; says whether it existed.
pub(super) fn create_dest_root(parent: &Dir, name: &OsStr, merge: bool) -> Result<(File, bool)> {
    let dst = &parent.join(name);
    let parent = parent.file();
    let open = || {
        open_at(
            Some(parent),
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("opening", dst, e))
    };
    match stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU) {
        Err(Errno::EEXIST) if merge => Ok((open()?, true)),
        Err(Errno::EEXIST) => Err(Error::new(
            ErrorKind::Exists,
            format!("creating {}: already exists", dst.display()),
        )),
        Err(e) => Err(Error::sys("creating", dst, e)),
        Ok(()) => Ok((open()?, false)),
    }
}

/// Private until its contents are done: its real mode is set last.
pub(super) fn make_dir(parent: &File, name: &OsStr, dst_path: &Path) -> Result<File> {
    stat::mkdirat(Some(parent.as_raw_fd()), name, Mode::S_IRWXU).map_err(|e| match e {
        Errno::EEXIST => Error::new(
            ErrorKind::Exists,
            format!("creating {}: already exists", dst_path.display()),
        ),
        e => Error::sys("creating", dst_path, e),
    })?;
    open_at(
        Some(parent),
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("opening", dst_path, e))
}

/// An overlay whiteout: a 0/0 character device.
pub(super) fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Why a source entry could not be opened.
pub(super) enum OpenError {
    Sys(Errno),
    /// It is not the inode that was inspected.
    Changed,
}

impl OpenError {
    pub(super) fn into_error(self, path: &Path) -> Error {
        match self {
            OpenError::Sys(e) => Error::sys("opening", path, e),
            OpenError::Changed => Error::new(
                ErrorKind::Other,
                format!("copying {}: changed while being copied", path.display()),
            ),
        }
    }
}

/// Opens an entry read-only without following it or touching its atime,
/// checks it is still the inode `st` describes, and tells its mount.
pub(super) fn open_verified(
    dir: Option<&File>,
    name: &OsStr,
    st: &FileStat,
    flags: OFlag,
    noatime: &AtomicBool,
) -> std::result::Result<(File, Option<u64>), OpenError> {
    let flags = flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW;
    let file = if noatime.load(Relaxed) {
        match open_at(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
            // Refused on inodes we do not own without CAP_FOWNER.
            Err(Errno::EPERM) => {
                noatime.store(false, Relaxed);
                open_at(dir, name, flags, Mode::empty())
            }
            other => other,
        }
    } else {
        open_at(dir, name, flags, Mode::empty())
    }
    .map_err(OpenError::Sys)?;
    let (mode, dev, ino, mount) = identify(&file).map_err(OpenError::Sys)?;
    let format = SFlag::S_IFMT.bits();
    if (dev, ino) != (st.st_dev, st.st_ino) || mode & format != st.st_mode & format {
        return Err(OpenError::Changed);
    }
    Ok((file, mount))
}

/// The status of `name` in `dir`, not following it, and whether it is the
/// root of a mount (None when the kernel cannot tell).
pub(super) fn stat_entry(dir: &File, name: &OsStr) -> nix::Result<(FileStat, Option<bool>)> {
    let name = std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT;
    let stx = match statx(dir, &name, flags, libc::STATX_BASIC_STATS) {
        Ok(stx) => stx,
        // A kernel (or seccomp filter) without statx: the plain status.
        Err(Errno::ENOSYS) => {
            let st = stat::fstatat(
                Some(dir.as_raw_fd()),
                name.as_c_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            return Ok((st, None));
        }
        Err(e) => return Err(e),
    };
    // SAFETY: struct stat is plain old data; every field used is set below.
    let mut st: FileStat = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    st.st_ino = stx.stx_ino;
    st.st_nlink = stx.stx_nlink.into();
    st.st_mode = stx.stx_mode.into();
    st.st_uid = stx.stx_uid;
    st.st_gid = stx.stx_gid;
    st.st_rdev = libc::makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
    st.st_size = stx.stx_size as i64;
    st.st_blksize = stx.stx_blksize.into();
    st.st_blocks = stx.stx_blocks as i64;
    st.st_atime = stx.stx_atime.tv_sec;
    st.st_atime_nsec = stx.stx_atime.tv_nsec.into();
    st.st_mtime = stx.stx_mtime.tv_sec;
    st.st_mtime_nsec = stx.stx_mtime.tv_nsec.into();
    st.st_ctime = stx.stx_ctime.tv_sec;
    st.st_ctime_nsec = stx.stx_ctime.tv_nsec.into();
    let known = stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    let root = stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Ok((st, known.then_some(root)))
}

/// `statx(2)` of `name` relative to `dir`.
pub(super) fn statx(
    dir: &File,
    name: &std::ffi::CStr,
    flags: i32,
    mask: u32,
) -> nix::Result<libc::statx> {
    // SAFETY: a zeroed struct statx is valid, and statx writes at most one
    // into it; the name is NUL-terminated.
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        Errno::result(libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
            mask,
            &mut stx,
        ))?;
        Ok(stx)
    }
}

/// Type and mode, st_dev, inode and (where the kernel can tell) mount of an
/// open file, in one call.
pub(super) fn identify(file: &File) -> nix::Result<(u32, u64, u64, Option<u64>)> {
    // The empty name with AT_EMPTY_PATH: the descriptor itself.
    let mask = libc::STATX_TYPE | libc::STATX_INO | libc::STATX_MNT_ID;
    let stx = statx(file, c"", libc::AT_EMPTY_PATH, mask)?;
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    let mount = (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id);
    Ok((u32::from(stx.stx_mode), dev, stx.stx_ino, mount))
}

/// Names with the type the directory entry gives, if it does.
pub(super) fn list_dir(dir: &File, path: &Path) -> Result<Vec<(OsString, Option<Type>)>> {
    let err = |e| Error::sys("reading directory", path, e);
    let fd = unistd::dup(dir.as_raw_fd()).map_err(err)?;
    let mut entries = DirStream::from_fd(fd).map_err(err)?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((OsStr::from_bytes(name).to_os_string(), entry.file_type()));
        }
    }
    Ok(names)
}

/// Whether two files start with the same `size` bytes; failing to read
/// either counts as different.
pub(super) fn sorted<T: Ord, C: IntoIterator<Item = T>>(m: Mutex<C>) -> Vec<T> {
    let mut v: Vec<T> = m
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .collect();
    v.sort();
    v
}
