//! Shared test support: the system-test guard and a throwaway environment
//! (own lxcpath and snapdir under a temp dir) that runs the real binary.
#![allow(dead_code)]

pub mod fidelity;
pub mod fixtures;

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
        let mut c = Command::new(env!("CARGO_BIN_EXE_lxc-snap"));
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
