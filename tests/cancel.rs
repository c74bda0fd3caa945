//! SIGINT and SIGTERM half way through a snapshot, a restore and a
//! rollback: the run stops, removes what it began and exits 130 (143 for
//! SIGTERM); nothing is left in the snapdir, the lxcpath or the
//! container's directory, and the bases' dependency files are as before.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};

use common::fixtures::overlay_clone;
use common::TestEnv;
use nix::sys::signal::Signal;

/// Fills `delta` with enough files that copying them takes a while.
fn fill(delta: &Path) {
    for d in 0..40 {
        let dir = delta.join(format!("data/d{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            fs::write(dir.join(format!("f{f}")), [d as u8; 4096]).expect("write");
        }
    }
}

/// Entries below `dir`, not following symlinks.
fn count(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .count()
}

/// The entries of `dir` whose names start with `prefix`.
fn starting_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `signal` to `child` once a staging directory (`prefix` in `dir`)
/// holds more than 500 entries: the copy is under way. Returns how
/// the run ended and what it printed on stderr.
fn signal_mid_copy(
    mut child: Child,
    dir: &Path,
    prefix: &str,
    signal: Signal,
) -> (ExitStatus, String) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    loop {
        if starting_with(dir, prefix).iter().any(|s| count(s) > 500) {
            nix::sys::signal::kill(pid, signal).expect("kill");
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before the copy could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().expect("reap");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    env.cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn base_dependents(env: &TestEnv) -> String {
    fs::read_to_string(env.lxcpath.join("base/lxc_snapshots")).unwrap_or_default()
}

#[test]
fn a_cancelled_snapshot_leaves_nothing() {
    if !common::system_tests_enabled("a_cancelled_snapshot_leaves_nothing", true) {
        return;
    }
    let env = TestEnv::new();
    fill(&overlay_clone(&env, "c"));
    let before = base_dependents(&env);
    for (signal, status) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let child = spawn(&env, &["snap", "c"]);
        let (exit, stderr) = signal_mid_copy(child, &env.snapdir, ".lxc-snap.tmp.c_", signal);
        assert_eq!(exit.code(), Some(status), "{signal}: {stderr}");
        assert!(stderr.contains("cancelled"), "{stderr}");
        assert_eq!(names_in(&env.snapdir), [".lxc-snap"], "{signal}");
        assert_eq!(base_dependents(&env), before);
    }
    // The next run is not disturbed; the number was never issued.
    env.ok(&["-q", "c"]);
    assert_eq!(names_in(&env.snapdir), [".lxc-snap", "c_0"]);
}

#[test]
fn a_cancelled_restore_leaves_nothing() {
    if !common::system_tests_enabled("a_cancelled_restore_leaves_nothing", true) {
        return;
    }
    let env = TestEnv::new();
    fill(&overlay_clone(&env, "c"));
    env.ok(&["-q", "c"]);
    let lxcpath = names_in(&env.lxcpath);
    let before = base_dependents(&env);
    let child = spawn(&env, &["restore", "c_0", "r"]);
    let (exit, stderr) = signal_mid_copy(child, &env.lxcpath, ".lxc-snap.tmp.r.", Signal::SIGINT);
    assert_eq!(exit.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled: r was not created"), "{stderr}");
    assert_eq!(names_in(&env.lxcpath), lxcpath);
    assert_eq!(base_dependents(&env), before);
    assert_eq!(names_in(&env.snapdir), [".lxc-snap", "c_0"]);
}

#[test]
fn a_cancelled_rollback_leaves_the_container_and_no_backup() {
    if !common::system_tests_enabled(
        "a_cancelled_rollback_leaves_the_container_and_no_backup",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    fill(&delta);
    env.ok(&["-q", "c"]);
    fs::write(delta.join("after"), "written after c_0\n").expect("write");
    fs::remove_dir_all(delta.join("data/d7")).expect("rm");
    let entries = count(&delta);
    let before = base_dependents(&env);
    let overlay = delta.parent().expect("overlay dir").to_path_buf();
    let child = spawn(&env, &["rollback", "c_0"]);
    let (exit, stderr) = signal_mid_copy(child, &overlay, ".lxc-snap.tmp.delta.", Signal::SIGINT);
    assert_eq!(exit.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled: c was not touched"), "{stderr}");
    // The container is as it was, and the safety snapshot is gone again.
    assert_eq!(names_in(&overlay), ["delta"]);
    assert_eq!(
        fs::read_to_string(delta.join("after")).expect("kept"),
        "written after c_0\n"
    );
    assert!(!delta.join("data/d7").exists());
    assert_eq!(count(&delta), entries);
    assert_eq!(names_in(&env.snapdir), [".lxc-snap", "c_0"]);
    assert_eq!(base_dependents(&env), before);
}

/// Lets a stopped run go on, and ends it, whatever the test found.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
        let _ = self.0.wait();
    }
}

#[test]
fn a_held_lock_names_its_holder_and_is_waited_for_as_asked() {
    if !common::system_tests_enabled(
        "a_held_lock_names_its_holder_and_is_waited_for_as_asked",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    fill(&overlay_clone(&env, "c"));
    // A run stopped half way through its copy holds the lock.
    let mut holder = spawn(&env, &["snap", "c"]);
    let pid = nix::unistd::Pid::from_raw(holder.id() as i32);
    loop {
        if starting_with(&env.snapdir, ".lxc-snap.tmp.c_")
            .iter()
            .any(|s| count(s) > 200)
        {
            nix::sys::signal::kill(pid, Signal::SIGSTOP).expect("stop");
            break;
        }
        assert!(holder.try_wait().expect("wait").is_none(), "ended too soon");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let holder = Stopped(holder);
    let who = format!("PID {}", holder.0.id());

    let started = std::time::Instant::now();
    let err = env.fails_with(8, &["--no-wait", "snap", "c"]);
    assert!(err.contains("c is locked by another lxc-snap run"), "{err}");
    assert!(err.contains(&who) && err.contains("snap c)"), "{err}");
    assert!(err.contains("--wait DURATION"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let started = std::time::Instant::now();
    let err = env.fails_with(8, &["snap", "--wait", "1s", "c"]);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert!(err.contains("still locked after 1 s"), "{err}");
    assert!(err.contains(&who), "{err}");

    // Without a limit, the run waits, says for whom, and goes on once the
    // holder is done.
    let waiter = spawn(&env, &["snap", "c"]);
    let lock_notice = "waiting for another lxc-snap run on c: ";
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(holder);
    let out = waiter.wait_with_output().expect("waiter");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{lock_notice}{who}")), "{stderr}");
    assert_eq!(names_in(&env.snapdir), [".lxc-snap", "c_0", "c_1"]);
}
