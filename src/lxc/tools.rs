//! LXC's command-line tools, run on one container: `TOOL -P LXCPATH -n
//! NAME ...`, the lxcpath and name passed as arguments, never through a
//! shell.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, ErrorKind, Result};
use crate::printable::escape;

/// `tool -P lxcpath -n name`, to add arguments to and run.
pub fn command(tool: &str, lxcpath: &Path, name: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(tool);
    cmd.arg("-P").arg(lxcpath).arg("-n").arg(name);
    cmd
}

/// Runs `tool -P lxcpath -n name args...`; an error that says what it
/// printed on standard error when it fails.
pub fn run(tool: &str, lxcpath: &Path, name: &str, args: &[&str]) -> Result<()> {
    let out = command(tool, lxcpath, name)
        .args(args)
        .output()
        .map_err(|e| Error::io("running", Path::new(tool), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Other,
        format!(
            "{tool} {name} failed: {}",
            escape(String::from_utf8_lossy(&out.stderr).trim())
        ),
    ))
}
