//! Linking to a reference: a regular file unchanged since an older copy
//! of the same tree (a previous snapshot) becomes a hard link to its copy
//! there, under the rules the module documentation lists.

use super::*;

impl Copier<'_> {
    /// The directories `name` is in the references, below `parents` (the
    /// reference directories of its parent, top first): each that has a
    /// directory of that name on the reference's own mount, down to the
    /// first that has something else there (a file, a whiteout), which
    /// hides the rest. Only looked up in, never read.
    pub(super) fn open_reference_dirs(&self, parents: &[File], name: &OsStr) -> Vec<File> {
        let mut found = Vec::new();
        for parent in parents {
            match stat_entry(parent, name) {
                Err(Errno::ENOENT) => continue,
                Ok((st, _)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                // A file or a whiteout hides what is below; anything
                // amiss only means linking less.
                _ => break,
            }
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
            let Ok(dir) = open_at(Some(parent), name, flags, Mode::empty()) else {
                break;
            };
            match identify(&dir) {
                Ok((_, dev, _, mount)) if Some((dev, mount)) == self.reference_root => {
                    found.push(dir)
                }
                _ => break,
            }
        }
        found
    }

    /// The reference directory whose entry `name` is the reference's: the
    /// first of `parent`'s that has one, with its status.
    fn reference_entry<'d>(
        parent: &'d DirCopy,
        name: &OsStr,
    ) -> Option<(&'d File, (FileStat, Option<bool>))> {
        for dir in &parent.reference {
            match stat_entry(dir, name) {
                Ok(found) => return Some((dir, found)),
                Err(Errno::ENOENT) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Links `name` to its copy in the reference if that is unchanged (see
    /// the module documentation), returning the copy's status from before
    /// the link. None: it must be copied. Anything amiss in the reference
    /// only means copying. With the quick check neither file is opened:
    /// attributes are read by name, without following a symlink, and the
    /// reference's entry is linked by name (`linkat` never follows it).
    pub(super) fn link_unchanged(
        &self,
        parent: &DirCopy,
        name: &OsStr,
        st: &FileStat,
        src_path: &Path,
        dst_path: &Path,
    ) -> Result<Option<FileStat>> {
        if parent.reference.is_empty() || !self.can_link_reference.load(Relaxed) {
            return Ok(None);
        }
        let Some((dir, (old, mount_root))) = Self::reference_entry(parent, name) else {
            return Ok(None);
        };
        let same_inode_data = (old.st_mode, old.st_uid, old.st_gid, old.st_size)
            == (st.st_mode, st.st_uid, st.st_gid, st.st_size);
        let same_mtime = (old.st_mtime, old.st_mtime_nsec) == (st.st_mtime, st.st_mtime_nsec);
        // Some(false) also says the kernel tells mount roots, so the
        // source entry, never opened here, was checked not to be one.
        if !same_inode_data
            || (self.compare == Compare::QuickCheck && !same_mtime)
            || mount_root != Some(false)
            || Some(old.st_dev) != self.reference_root.map(|(dev, _)| dev)
        {
            return Ok(None);
        }
        // Room for every name of the source inode: its other names are
        // linked to the same inode afterwards, and must not run out.
        if old.st_nlink + st.st_nlink > self.link_max {
            return Ok(None);
        }
        let id = (old.st_dev, old.st_ino);
        if lock(&self.reference_used).contains(&id) {
            return Ok(None);
        }
        let xattrs = read_xattrs(Node::At(&parent.src, name), src_path)?;
        refuse_redirects(&xattrs, src_path)?;
        let Ok(old_xattrs) = read_xattrs(Node::At(dir, name), dst_path) else {
            return Ok(None);
        };
        if !same_xattrs(xattrs, old_xattrs) {
            return Ok(None);
        }
        if self.compare == Compare::Checksum && !self.same_contents_at(parent, dir, name, st, &old)
        {
            return Ok(None);
        }
        if !lock(&self.reference_used).insert(id) {
            return Ok(None);
        }
        match unistd::linkat(
            Some(dir.as_raw_fd()),
            name,
            Some(parent.dst.as_raw_fd()),
            name,
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(Some(old)),
            Err(e @ (Errno::EXDEV | Errno::EMLINK | Errno::EPERM)) => {
                // Another filesystem (or mount): no file will link; too many
                // names already: this one will not.
                if e == Errno::EXDEV {
                    self.can_link_reference.store(false, Relaxed);
                }
                lock(&self.reference_used).remove(&id);
                Ok(None)
            }
            Err(e) => Err(Error::sys("linking", dst_path, e)),
        }
    }

    /// Whether `name` in the source (status `st`) and in the reference
    /// directory `dir` (status `old`) have the same bytes; opened as the
    /// inodes inspected, or not at all.
    pub(super) fn same_contents_at(
        &self,
        parent: &DirCopy,
        dir: &File,
        name: &OsStr,
        st: &FileStat,
        old: &FileStat,
    ) -> bool {
        let src = open_verified(Some(&parent.src), name, st, FILE, &self.noatime);
        let old_file = open_verified(Some(dir), name, old, FILE, &self.noatime);
        match (src, old_file) {
            (Ok((src, mount)), Ok((old_file, _))) if mount == self.root.1 => {
                same_contents(&src, &old_file, st.st_size as u64).unwrap_or(false)
            }
            _ => false,
        }
    }
}

/// `LINK_MAX` of the filesystem `dir` is on; ext4's when it cannot be told.
pub(super) fn link_max(dir: &File) -> u64 {
    match unistd::fpathconf(dir, unistd::PathconfVar::LINK_MAX) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 65_000,
    }
}
