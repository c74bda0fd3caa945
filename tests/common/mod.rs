//! Shared test support: the system-test guard and a throwaway environment
//! (own lxcpath and snapdir under a temp dir) that runs the real binary.
#![allow(dead_code)]

pub mod fidelity;
pub mod fixtures;
pub mod history;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod lxc;

/// Tests that need root (and, with `lxc`, LXC) call this first. It returns
/// false only when the person running the tests asked to skip them with
/// `LXC_SNAP_SKIP_SYSTEM_TESTS=1`, and says so; otherwise a missing
/// requirement fails the test.
pub fn system_tests_enabled(what: &str, lxc: bool) -> bool {
    if std::env::var("LXC_SNAP_SKIP_SYSTEM_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {what}: LXC_SNAP_SKIP_SYSTEM_TESTS=1");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (set LXC_SNAP_SKIP_SYSTEM_TESTS=1 to skip system tests)"
    );
    if lxc {
        for tool in [
            "lxc-start",
            "lxc-create",
            "lxc-copy",
            "lxc-attach",
            "lxc-info",
        ] {
            assert!(
                Command::new(tool).arg("--version").output().is_ok(),
                "{what} needs {tool}: apt-get install lxc busybox-static \
                 (or set LXC_SNAP_SKIP_SYSTEM_TESTS=1 to skip system tests)"
            );
        }
    }
    true
}

/// The lxc-snap binary under test: this build's, or the one
/// `LXC_SNAP_TEST_BIN` names (to run the tests against another build, such
/// as one without a fix, and see them fail).
pub fn bin() -> PathBuf {
    std::env::var_os("LXC_SNAP_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lxc-snap")))
}

/// A temp dir holding `lxc/` (the lxcpath) and `snaps/` (the snapdir).
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub lxcpath: PathBuf,
    pub snapdir: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("lxc-snap-test.")
            .tempdir_in(std::env::var_os("LXC_SNAP_TEST_TMPDIR").unwrap_or_else(|| "/tmp".into()))
            .expect("creating test temp dir");
        let lxcpath = dir.path().join("lxc");
        let snapdir = dir.path().join("snaps");
        std::fs::create_dir(&lxcpath).expect("creating lxcpath");
        TestEnv {
            dir,
            lxcpath,
            snapdir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `lxc-snap -P <lxcpath> --snapdir <snapdir> ARGS...`
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("-P")
            .arg(&self.lxcpath)
            .arg("--snapdir")
            .arg(&self.snapdir);
        c.env_remove("LXC_SNAP_DIR");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running lxc-snap")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lxc-snap {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts the exit status; returns stderr.
    pub fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "lxc-snap {args:?}: expected exit {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Kills `child` with SIGKILL as soon as an entry whose name starts with
/// `prefix` appears in `dir` (a staging directory: the run is mid-way),
/// reaps it, and returns that entry's path. Fails if the run ends first.
pub fn kill_when_staging_appears(
    mut child: std::process::Child,
    dir: &Path,
    prefix: &str,
) -> PathBuf {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let found = loop {
        let entry = std::fs::read_dir(dir).ok().and_then(|entries| {
            entries
                .filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        });
        if let Some(entry) = entry {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
            break entry.path();
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    child.wait().expect("reap");
    found
}

/// A directory held open, for the library calls that take one.
pub fn held(path: &Path) -> lxc_snap::dir::Dir {
    lxc_snap::dir::Dir::open_given(path, "opening")
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// How a measured run went.
#[derive(Debug)]
pub struct Measured {
    /// None: killed (by a limit below, or a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory of the program, in KiB, as sampled (VmHWM of
    /// its own address space: wait4's maxrss would count the test process
    /// it was forked from).
    pub max_rss_kib: u64,
    /// Most bytes it was seen to have read (`/proc/PID/io` rchar), sampled.
    pub read_bytes: u64,
    /// It was killed for reading more than allowed or taking too long.
    pub killed: Option<&'static str>,
}

/// Runs `cmd`, watching what it reads: killed once it has read more than
/// `max_read` bytes or run for `limit` (a hang), so that a run that would
/// read a terabyte fails the test instead of stalling it.
pub fn run_measured(mut cmd: Command, max_read: u64, limit: std::time::Duration) -> Measured {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let pid = child.id() as libc::pid_t;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    );
    let start = std::time::Instant::now();
    let mut read_bytes = 0;
    let mut peak = 0;
    let mut killed = None;
    let (status, _usage) = loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        if let Some(n) = io
            .lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            read_bytes = read_bytes.max(n);
        }
        if killed.is_none() && (read_bytes > max_read || start.elapsed() > limit) {
            killed = Some(if read_bytes > max_read {
                "read too much"
            } else {
                "took too long"
            });
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: a zeroed rusage is valid; wait4 fills it for our child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child, without blocking.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break (status, usage);
        }
        assert!(rc == 0, "wait4: {}", std::io::Error::last_os_error());
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // Reaped above: the Child must not be waited for again.
    std::mem::forget(child);
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
        max_rss_kib: peak,
        read_bytes,
        killed,
    }
}

/// Makes a chain of `depth` directories below `root`, each named by
/// `name_len` bytes, one level at a time (no path limit applies); returns
/// the deepest, held open.
pub fn make_deep(root: &Path, depth: usize, name_len: usize, tag: u8) -> std::fs::File {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    use std::os::fd::FromRawFd;
    let name: String = std::iter::repeat(char::from(tag)).take(name_len).collect();
    let mut dir = std::fs::File::open(root).expect("open root");
    for _ in 0..depth {
        use std::os::fd::AsRawFd;
        mkdirat(
            Some(dir.as_raw_fd()),
            name.as_str(),
            Mode::from_bits_truncate(0o755),
        )
        .expect("mkdirat");
        let fd = openat(
            Some(dir.as_raw_fd()),
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .expect("openat");
        // SAFETY: a new descriptor that nothing else owns.
        dir = unsafe { std::fs::File::from_raw_fd(fd) };
    }
    dir
}

/// The deepest of a chain [`make_deep`] made, opened one level at a time.
pub fn open_deep(root: &Path, depth: usize, name_len: usize, tag: u8) -> std::fs::File {
    let name: String = std::iter::repeat(char::from(tag)).take(name_len).collect();
    let names: Vec<&std::ffi::OsStr> = (0..depth).map(|_| std::ffi::OsStr::new(&name)).collect();
    let root = std::fs::File::open(root).expect("open root");
    lxc_snap::dir::open_rel(&root, &names, nix::fcntl::OFlag::O_RDONLY)
        .unwrap_or_else(|e| panic!("opening {depth} levels below {}: {e}", "the root"))
}

fn open_in(dir: &std::fs::File, name: &str, flags: nix::fcntl::OFlag) -> std::fs::File {
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap_or_else(|e| panic!("opening {name}: {e}"));
    // SAFETY: a new descriptor that nothing else owns.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// Writes a new file `name` in an open directory.
pub fn write_at(dir: &std::fs::File, name: &str, data: &[u8]) {
    use std::io::Write;
    let flags =
        nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_EXCL | nix::fcntl::OFlag::O_WRONLY;
    open_in(dir, name, flags).write_all(data).expect("write");
}

/// Reads the file `name` in an open directory.
pub fn read_at(dir: &std::fs::File, name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut data = Vec::new();
    open_in(dir, name, nix::fcntl::OFlag::O_RDONLY)
        .read_to_end(&mut data)
        .expect("read");
    data
}

/// Links `name` in `dir` as `new` in `to`.
pub fn link_at(dir: &std::fs::File, name: &str, to: &std::fs::File, new: &str) {
    use std::os::fd::AsRawFd;
    nix::unistd::linkat(
        Some(dir.as_raw_fd()),
        name,
        Some(to.as_raw_fd()),
        new,
        nix::fcntl::AtFlags::empty(),
    )
    .expect("linkat");
}

/// The status of `name` in an open directory, not following it.
pub fn stat_at(dir: &std::fs::File, name: &str) -> nix::sys::stat::FileStat {
    use std::os::fd::AsRawFd;
    nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("fstatat")
}

/// What `du -s -B1` says `path` takes, read through a read-only
/// `noatime` bind mount of it, so that du's reading moves no atime in the
/// trees it walks (which tests compare to the nanosecond).
#[allow(dead_code)]
pub fn du(path: &Path) -> u64 {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let at = std::env::temp_dir().join(format!(
        "lxc-snap-du.{}.{}",
        std::process::id(),
        lxc_snap::dir::random_suffix()
    ));
    std::fs::create_dir(&at).expect("mount point");
    let none: Option<&str> = None;
    mount(
        Some(path),
        &at,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .expect("bind mount for du");
    let bound = Unmount(at);
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOATIME;
    mount(none, &bound.0, none, flags, none).expect("remounting noatime for du");
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(&bound.0)
        .output()
        .expect("du");
    assert!(out.status.success(), "du {}: {out:?}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a number")
}
