//! `lxc-snap ls SNAP [PATH] [-l] [--json]`: names one a line, or with
//! `-l` a line each as `ls -l` has it (mode, owner, size or device
//! numbers, mtime in local time, name and a symlink's target).

use super::Context;
use crate::error::Result;
use crate::names::SnapshotName;
use crate::ops::files::EntryType;
use crate::ops::{self, FileRecord};
use crate::printable::escape_bytes;
use crate::ui::{local_time, out, print_json_value};

pub fn run(ctx: &Context, name: &SnapshotName, path: &[u8], long: bool, json: bool) -> Result<()> {
    let listing = ops::ls(ctx.store, name, path)?;
    if json {
        return print_json_value(&listing);
    }
    // A directory's entries by name; anything else by the path asked for.
    let shown =
        |r: &FileRecord| escape_bytes(if listing.directory { &r.name } else { &r.path }, true);
    let mut text = String::new();
    if !long {
        for r in &listing.entries {
            text.push_str(&shown(r));
            text.push('\n');
        }
        out(&text);
        return Ok(());
    }
    let size = |r: &FileRecord| match r.device {
        Some((major, minor)) => format!("{major}, {minor}"),
        None => r.size.to_string(),
    };
    let width = |cell: &dyn Fn(&FileRecord) -> String| {
        listing
            .entries
            .iter()
            .map(|r| cell(r).len())
            .max()
            .unwrap_or(1)
    };
    let owner_width = width(&|r| r.uid.to_string());
    let group_width = width(&|r| r.gid.to_string());
    let size_width = width(&size);
    let links_width = width(&|r| r.nlink.to_string());
    for r in &listing.entries {
        let when = local_time(&ops::files::mtime_text(r.mtime));
        let mut line = format!(
            "{} {:>links_width$} {:>owner_width$} {:>group_width$} {:>size_width$} {when} {}",
            mode_string(r.kind, r.mode),
            r.nlink,
            r.uid,
            r.gid,
            size(r),
            shown(r),
        );
        if let Some(target) = &r.target {
            line.push_str(" -> ");
            line.push_str(&escape_bytes(target, true));
        }
        text.push_str(&line);
        text.push('\n');
    }
    out(&text);
    Ok(())
}

/// `drwxr-xr-x`, `-rwsr-xr-x`, `lrwxrwxrwx` as `ls -l` writes them.
fn mode_string(kind: EntryType, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        EntryType::File => '-',
        EntryType::Directory => 'd',
        EntryType::Symlink => 'l',
        EntryType::Fifo => 'p',
        EntryType::Socket => 's',
        EntryType::CharDevice => 'c',
        EntryType::BlockDevice => 'b',
    });
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let special = |x: bool, set: bool, on: char, off: char| match (x, set) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_writes_them() {
        assert_eq!(mode_string(EntryType::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(EntryType::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(EntryType::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(EntryType::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryType::Fifo, 0o1666), "prw-rw-rwT");
        assert_eq!(mode_string(EntryType::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(EntryType::CharDevice, 0o600), "crw-------");
    }
}
