//! `lxc-snap export SNAP [-o FILE]` and `lxc-snap import FILE|-`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::ops::{self, ExportOptions, ImportOptions};

pub fn export(ctx: &Context, opts: &ExportOptions, output: Option<&Path>) -> Result<()> {
    let exported = match output {
        None => {
            if io::stdout().is_terminal() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "export: standard output is a terminal, not a place for a stream",
                )
                .with_hint(format!(
                    "lxc-snap export -o FILE {}, or pipe it: lxc-snap export {} | ssh HOST lxc-snap import -",
                    opts.snapshot, opts.snapshot
                )));
            }
            let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            ops::export(ctx.store, opts, out)?
        }
        Some(path) => write_whole(path, |file| ops::export(ctx.store, opts, file))?,
    };
    for p in &exported.skipped {
        ctx.ui.warn(&format!(
            "left out of the stream (a socket or mount point): {}",
            p.display()
        ));
    }
    let whereto = output.map_or("standard output".to_string(), |p| p.display().to_string());
    ctx.ui.done(&format!(
        "exported {} to {whereto}: {} entries, {}",
        exported.snapshot,
        exported.entries,
        ctx.ui.size(exported.bytes)
    ));
    Ok(())
}

/// Writes `path` whole or not at all: into a new file beside it, flushed
/// to disk, then renamed over it.
fn write_whole<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<T>,
) -> Result<T> {
    let name = path.file_name().ok_or_else(|| {
        Error::new(
            ErrorKind::Usage,
            format!("export -o {}: not a file name", path.display()),
        )
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".lxc-snap-tmp.{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(|e| Error::io("creating", &temp, e))?;
    let done = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let value = write(&mut out)?;
        out.flush().map_err(|e| Error::io("writing", &temp, e))?;
        drop(out);
        file.sync_all()
            .map_err(|e| Error::io("flushing", &temp, e))?;
        fs::rename(&temp, path).map_err(|e| Error::io("renaming into place", path, e))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        Ok(value)
    })();
    if done.is_err() {
        let _ = fs::remove_file(&temp);
    }
    done
}

pub fn import(ctx: &Context, opts: &ImportOptions, input: &Path) -> Result<()> {
    let imported = if input.as_os_str() == "-" {
        ops::import(ctx.store, opts, io::stdin().lock())?
    } else {
        let file = File::open(input).map_err(|e| Error::io("opening", input, e))?;
        ops::import(ctx.store, opts, file)?
    };
    ctx.ui.done(&format!(
        "imported {} as {}: {} entries, {}",
        imported.from,
        imported.snapshot,
        imported.entries,
        ctx.ui.size(imported.bytes)
    ));
    Ok(())
}

pub fn export_oci(
    ctx: &Context,
    snapshot: &crate::names::SnapshotName,
    dir: &Path,
    tag: &str,
) -> Result<()> {
    let made = ops::oci::export_oci(ctx.store, snapshot, dir, tag)?;
    ctx.ui.done(&format!(
        "exported {} as the image {}:{} ({} layers, {})",
        made.snapshot,
        dir.display(),
        made.tag,
        made.layers.len(),
        made.digest
    ));
    Ok(())
}

pub fn push(
    ctx: &Context,
    snapshot: &crate::names::SnapshotName,
    reference: &str,
    insecure: bool,
) -> Result<()> {
    let pushed = ops::oci::push(ctx.store, snapshot, reference, insecure)?;
    ctx.ui.done(&format!(
        "pushed {} as {} ({} layers, {})",
        pushed.snapshot,
        pushed.reference,
        pushed.layers.len(),
        pushed.digest
    ));
    Ok(())
}

pub fn pull(ctx: &Context, opts: &ops::oci::PullOptions) -> Result<()> {
    match ops::oci::pull(ctx.store, opts)? {
        ops::oci::Pulled::Snapshot(imported) => ctx.ui.done(&format!(
            "pulled {} as {}: {} entries, {}",
            imported.from,
            imported.snapshot,
            imported.entries,
            ctx.ui.size(imported.bytes)
        )),
        ops::oci::Pulled::Container { container, layers } => ctx.ui.done(&format!(
            "pulled {} as the container {container} ({layers} layers)",
            opts.reference
        )),
    }
    Ok(())
}
