//! `exec SOURCE -- CMD...`: runs a command in a throwaway linked clone of
//! a snapshot (or of a stopped container, snapshotted first), never in the
//! container itself, collects files out of the copy's tree, and throws
//! the copy away.
//!
//! The copy lives in an lxcpath of its own (`<snapdir>/.lxc-snap/exec`),
//! under a name no container of the user's can have, so it never shows
//! among the containers. It is stopped and destroyed whatever happens: on
//! success, failure, timeout, SIGINT and SIGTERM by this code, and if
//! lxc-snap is killed, by a [`Watchdog`] started before the copy exists,
//! which also deletes a snapshot taken only for the run.
//!
//! Files are collected from the copy's layers (its upper over the
//! snapshot's trees) through descriptors, as `cp` copies out of a
//! snapshot: nothing on the way is followed, a symlink is copied as a
//! symlink (or refused with `no_symlinks`), and a device node is refused,
//! since it would give whoever can reach the destination a door into the
//! host.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::files::{copy_found, find, parse, Copied};
use super::require_root;
use super::restore::{make_container, Make};
use super::take::{take, Increment, TakeOptions};
use crate::copy::view::{EntryType, Tree, View};
use crate::dir::Below;
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::Lxcpath;
use crate::lxc::tools;
use crate::lxc::watchdog::Watchdog;
use crate::names::{ContainerName, SnapshotName};
use crate::notice::{Leftover, Notice};
use crate::printable::{escape, escape_bytes};
use crate::store::Store;

/// What to run, where, and what to bring back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// A snapshot's name, or a stopped container's.
    pub source: String,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Keep the snapshot taken of a container `source`.
    pub keep_snapshot: bool,
    /// Paths in the copy's tree to copy out when the command ends.
    pub collect: Vec<Vec<u8>>,
    /// Where collected paths go.
    pub dest: PathBuf,
    /// Refuse to collect a symlink instead of copying it as one.
    pub no_symlinks: bool,
    /// Give the copy no network devices.
    pub no_network: bool,
    /// Stop the command after this long.
    pub timeout: Option<Duration>,
    /// `KEY=VALUE` pairs for the command's environment.
    pub env: Vec<String>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signalled(i32),
    /// Stopped when the timeout passed.
    TimedOut(Duration),
}

impl Ended {
    /// The exit status to pass on: the command's own, 128 + a signal, or
    /// 124 for a timeout (as `timeout(1)`).
    pub fn exit_code(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signalled(s) => 128 + s,
            Ended::TimedOut(_) => 124,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The snapshot the copy was made of.
    pub snapshot: SnapshotName,
    /// It was taken for this run (and is deleted unless kept).
    pub snapshot_taken: bool,
    pub ended: Ended,
    /// What was collected, in the order asked.
    pub collected: Vec<Copied>,
}

/// How long a throwaway copy may take to be RUNNING.
const START_TIMEOUT_SECS: &str = "30";

/// What the watchdog does if lxc-snap dies: `$1` the copies' lxcpath,
/// `$2` the copy, `$3` lxc-snap, `$4` a snapshot to delete (or empty),
/// `$5` the snapdir, `$6` the containers' lxcpath.
const CLEAN_UP: &str = "lxc-stop -P \"$1\" -n \"$2\" -k; lxc-destroy -P \"$1\" -n \"$2\" -f; \
    [ -z \"$4\" ] || \"$3\" --snapdir \"$5\" -P \"$6\" -q delete \"$4\"";

pub fn exec(store: &Store, opts: &ExecOptions) -> Result<Executed> {
    require_root("running a command in a throwaway copy")?;
    check_options(opts)?;
    let (snapshot, taken) = source_snapshot(store, &opts.source)?;
    let result = run_in_copy(store, &snapshot, taken, opts);
    let removed = if taken && !opts.keep_snapshot {
        delete_quietly(store, &snapshot)
    } else {
        Ok(())
    };
    let (ended, collected) = result?;
    removed?;
    Ok(Executed {
        snapshot,
        snapshot_taken: taken,
        ended,
        collected,
    })
}

/// Deletes the snapshot taken for the run, saying nothing: standard
/// output is the command's.
fn delete_quietly(store: &Store, name: &SnapshotName) -> Result<()> {
    let lock = store.lock(name.container())?;
    let snapshot = store.get(name)?;
    store.check_deletable(&snapshot, false)?;
    store.delete_checked(&snapshot, &lock).map(|_| ())
}

/// Refuses, before anything is made, what cannot work.
fn check_options(opts: &ExecOptions) -> Result<()> {
    if opts.command.is_empty() {
        return Err(Error::new(ErrorKind::Usage, "exec: no command given")
            .with_hint("e.g. lxc-snap exec web_2 -- /bin/sh -c 'mysqldump db > /dump.sql'"));
    }
    for pair in &opts.env {
        let key = pair.split_once('=').map_or("", |(k, _)| k);
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || pair.contains('\0') {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("-e {}: not KEY=VALUE", escape(pair)),
            ));
        }
    }
    for path in &opts.collect {
        parse(path)?;
    }
    let st = nix::sys::stat::stat(&opts.dest)
        .map_err(|e| Error::sys("collecting into", &opts.dest, e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("collecting into {}: not a directory", opts.dest.display()),
        ));
    }
    Ok(())
}

/// The snapshot `source` names, or a new one of the container it names.
fn source_snapshot(store: &Store, source: &str) -> Result<(SnapshotName, bool)> {
    if let Some(name) = SnapshotName::try_parse(source) {
        match store.get(&name) {
            Ok(_) => return Ok((name, false)),
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
    }
    let container = ContainerName::parse(source)?;
    if !store.container_exists(&container) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{container} is neither a snapshot nor a container"),
        )
        .with_hint("see what there is: lxc-snap list"));
    }
    let taken = take(
        store,
        &TakeOptions {
            container,
            comment: Some("taken by lxc-snap exec".into()),
            increment: Increment::QuickCheck,
            freeze: false,
            expires_at: None,
            auto: false,
        },
    )?;
    Ok((taken.name, true))
}

/// The throwaway copy: stopped and destroyed when dropped.
struct Throwaway {
    lxcpath: Lxcpath,
    name: ContainerName,
    watchdog: Option<Watchdog>,
}

impl Throwaway {
    fn lxc(&self, tool: &str) -> Command {
        tools::command(tool, self.lxcpath.path(), self.name.as_str())
    }

    fn stop(&self) {
        stop_copy(&self.lxcpath, &self.name);
    }

    /// Stops and destroys the copy (which takes it out of the snapshot's
    /// `lxc_snapshots`), then dismisses the watchdog.
    fn destroy(mut self) -> Result<()> {
        let result = self.remove();
        if result.is_ok() {
            if let Some(w) = self.watchdog.take() {
                w.dismiss();
            }
        }
        result
    }

    fn remove(&self) -> Result<()> {
        destroy_copy(&self.lxcpath, &self.name)
    }
}

/// Stops and destroys the copy `name` in `lxcpath`, if it is there.
fn destroy_copy(lxcpath: &Lxcpath, name: &ContainerName) -> Result<()> {
    if !lxcpath.has(name)? {
        return Ok(());
    }
    stop_copy(lxcpath, name);
    let out = tools::command("lxc-destroy", lxcpath.path(), name.as_str())
        .arg("-f")
        .output()
        .map_err(|e| Error::io("running", Path::new("lxc-destroy"), e))?;
    if out.status.success() && !lxcpath.has(name)? {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Other,
        format!(
            "destroying the throwaway copy {name}: lxc-destroy failed: {}",
            escape(String::from_utf8_lossy(&out.stderr).trim())
        ),
    )
    .with_hint(format!(
        "remove it by hand: lxc-destroy -P {} -n {name} -f",
        lxcpath.path().display()
    )))
}

/// Kills the copy `name` (a throwaway: nothing to shut down cleanly).
fn stop_copy(lxcpath: &Lxcpath, name: &ContainerName) {
    let _ = tools::command("lxc-stop", lxcpath.path(), name.as_str())
        .arg("-k")
        .output();
}

/// Destroys the copies of runs that are gone without their watchdog
/// having done it (the host went down, say): `exec-PID-N` whose PID is no
/// process, and what such a run was still building (its registrations
/// taken back). Returns the copies' paths.
fn clear_stale(store: &Store, lxcpath: &Lxcpath) -> Result<Vec<PathBuf>> {
    let dead = |name: &str| {
        name.strip_prefix("exec-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|pid| {
                pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
            })
    };
    let mut cleared = Vec::new();
    for entry in lxcpath.dir().names()? {
        if let Some(building) = crate::durable::staged_final_name(&entry) {
            if let Ok(name) = ContainerName::parse(&building) {
                if dead(name.as_str()) {
                    store.remove_restore_leftovers(lxcpath.dir(), &name)?;
                }
            }
            continue;
        }
        let Some(text) = entry.to_str() else { continue };
        if let Ok(name) = ContainerName::parse(text) {
            if dead(name.as_str()) {
                destroy_copy(lxcpath, &name)?;
                cleared.push(lxcpath.path().join(text));
            }
        }
    }
    Ok(cleared)
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if self.watchdog.is_some() && self.remove().is_ok() {
            if let Some(w) = self.watchdog.take() {
                w.dismiss();
            }
        }
        // Otherwise the watchdog tries once more when it sees the pipe close.
    }
}

fn run_in_copy(
    store: &Store,
    snapshot: &SnapshotName,
    taken: bool,
    opts: &ExecOptions,
) -> Result<(Ended, Vec<Copied>)> {
    let lxcpath = store.exec_lxcpath()?;
    for path in clear_stale(store, &lxcpath)? {
        store.observer().notice(Notice::RemovedLeftover {
            path,
            of: Leftover::Exec,
        });
    }
    let name = free_name(&lxcpath)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("finding", Path::new("/proc/self/exe"), e))?;
    let doomed: OsString = if taken && !opts.keep_snapshot {
        snapshot.to_string().into()
    } else {
        OsString::new()
    };
    let watchdog = Watchdog::start(
        "the throwaway copy's watchdog",
        CLEAN_UP,
        &[
            lxcpath.path().as_os_str(),
            name.as_str().as_ref(),
            exe.as_os_str(),
            &doomed,
            store.dir().as_os_str(),
            store.lxcpath()?.path().as_os_str(),
        ],
    )?;
    let copy = Throwaway {
        lxcpath,
        name,
        watchdog: Some(watchdog),
    };
    make_container(store, snapshot, &copy.name, Make::Link, Some(&copy.lxcpath))?;
    if opts.no_network {
        let dir = copy.lxcpath.dir().open_dir(copy.name.as_str())?;
        let mut config = crate::lxc::container::read_config(&dir)?;
        config.without_network();
        dir.write_file("config", config.render().as_bytes(), 0o640)?;
    }
    store.cancel().check()?;
    start(&copy)?;
    let ended = run_command(store, &copy, opts)?;
    copy.stop();
    let collected = collect(store, snapshot, &copy, opts)?;
    copy.destroy()?;
    Ok((ended, collected))
}

/// `exec-PID-N`: no name lxc-snap gives a container of the user's.
fn free_name(lxcpath: &Lxcpath) -> Result<ContainerName> {
    for n in 0..1000 {
        let name = ContainerName::parse(&format!("exec-{}-{n}", std::process::id()))?;
        if !lxcpath.has(&name)? {
            return Ok(name);
        }
    }
    Err(Error::new(
        ErrorKind::Exists,
        format!(
            "no free name for a throwaway copy in {}",
            lxcpath.path().display()
        ),
    ))
}

fn start(copy: &Throwaway) -> Result<()> {
    let out = copy
        .lxc("lxc-start")
        .arg("-d")
        .output()
        .map_err(|e| Error::io("running", Path::new("lxc-start"), e))?;
    let waited = || {
        copy.lxc("lxc-wait")
            .args(["-s", "RUNNING", "-t", START_TIMEOUT_SECS])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if out.status.success() && waited() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Other,
        format!(
            "starting the throwaway copy {}: lxc-start failed: {}",
            copy.name,
            escape(String::from_utf8_lossy(&out.stderr).trim())
        ),
    ))
}

/// Runs the command in the copy with `lxc-attach`, its output going where
/// lxc-snap's goes; stops it on timeout or cancel.
fn run_command(store: &Store, copy: &Throwaway, opts: &ExecOptions) -> Result<Ended> {
    let mut cmd = copy.lxc("lxc-attach");
    cmd.arg("--clear-env");
    for pair in &opts.env {
        cmd.arg("-v").arg(pair);
    }
    cmd.arg("--").args(&opts.command);
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("running", Path::new("lxc-attach"), e))?;
    let began = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("waiting for", Path::new("lxc-attach"), e))?
        {
            return Ok(match (status.code(), status.signal()) {
                (Some(c), _) => Ended::Exited(c),
                (None, Some(s)) => Ended::Signalled(s),
                (None, None) => Ended::Exited(1),
            });
        }
        let timed_out = opts.timeout.filter(|t| began.elapsed() >= *t);
        if timed_out.is_some() || store.cancel().is_cancelled() {
            let _ = child.kill();
            copy.stop();
            let _ = child.wait();
            store.cancel().check()?;
            return Ok(Ended::TimedOut(began.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies each path to collect out of the stopped copy's layers.
fn collect(
    store: &Store,
    snapshot: &SnapshotName,
    copy: &Throwaway,
    opts: &ExecOptions,
) -> Result<Vec<Copied>> {
    if opts.collect.is_empty() {
        return Ok(Vec::new());
    }
    let upper = copy.lxcpath.dir().open_below(
        &Path::new(copy.name.as_str()).join("overlay/delta"),
        Below::Parents,
    )?;
    let mut layers = vec![upper];
    layers.extend(store.snapshot_layers_unchecked(&store.get(snapshot)?)?);
    let tree = Tree::open(&View::of_dirs(layers))?;
    let mut collected = Vec::new();
    for path in &opts.collect {
        let entry = find(&tree, snapshot, path)?;
        refuse_kinds(&entry, opts.no_symlinks, 0)?;
        collected.push(copy_found(store, snapshot, &entry, &opts.dest)?);
    }
    Ok(collected)
}

/// The deepest directory looked into for kinds that are refused; the
/// copier bounds depth the same way.
const MAX_DEPTH: usize = 4096;

/// Refuses a device node anywhere in what is collected, and a symlink
/// with `no_symlinks`.
fn refuse_kinds(entry: &crate::copy::view::Entry, no_symlinks: bool, depth: usize) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::new(
            ErrorKind::Unsafe,
            format!(
                "collecting {}: it is {why}",
                escape_bytes(&entry.path, true)
            ),
        ))
    };
    match entry.kind {
        EntryType::CharDevice | EntryType::BlockDevice => {
            refuse("a device node, which lxc-snap does not bring to the host")
        }
        EntryType::Symlink if no_symlinks => refuse("a symlink (--no-symlinks)"),
        EntryType::Directory if depth < MAX_DEPTH => {
            for child in entry.children()? {
                refuse_kinds(&child, no_symlinks, depth + 1)?;
            }
            Ok(())
        }
        EntryType::Directory => refuse("deeper than lxc-snap goes"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn opts() -> ExecOptions {
        ExecOptions {
            source: "web_1".into(),
            command: vec![OsStr::new("true").into()],
            keep_snapshot: false,
            collect: Vec::new(),
            dest: PathBuf::from("/"),
            no_symlinks: false,
            no_network: false,
            timeout: None,
            env: Vec::new(),
        }
    }

    #[test]
    fn options_that_cannot_work_are_refused_before_anything_is_made() {
        assert!(check_options(&opts()).is_ok());
        let mut o = opts();
        o.command.clear();
        assert_eq!(
            check_options(&o).expect_err("no command").kind(),
            ErrorKind::Usage
        );
        for bad in ["=x", "1A=x", "A-B=x", "novalue", "A=\0"] {
            let mut o = opts();
            o.env = vec![bad.into()];
            assert!(check_options(&o).is_err(), "{bad:?}");
        }
        let mut o = opts();
        o.env = vec!["A_1=x=y".into()];
        assert!(check_options(&o).is_ok());
        let mut o = opts();
        o.collect = vec![b"/etc/../shadow".to_vec()];
        assert!(check_options(&o).is_err());
        let mut o = opts();
        o.dest = PathBuf::from("/etc/hostname");
        assert!(check_options(&o).is_err());
    }

    #[test]
    fn the_exit_status_is_the_commands() {
        assert_eq!(Ended::Exited(3).exit_code(), 3);
        assert_eq!(Ended::Signalled(9).exit_code(), 137);
        assert_eq!(Ended::TimedOut(Duration::from_secs(1)).exit_code(), 124);
    }
}
