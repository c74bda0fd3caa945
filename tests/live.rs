//! Snapshots of running containers (`snap --freeze`): real busybox
//! containers started with `lxc-start`, a writer inside that never pauses,
//! and lxc-snap killed while the container is frozen.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lxc::Lab;

/// A running overlay clone `c` of a busybox base, appending numbered
/// records to /records without pause.
fn writing_container(test: &str) -> Option<Lab> {
    if !common::system_tests_enabled(test, true) {
        return None;
    }
    let lab = Lab::new();
    lab.create_base("base");
    lab.overlay_clone("base", "c");
    lab.start(lab.lxcpath(), "c");
    // Each record goes to /records, then to /z/records: frozen at one
    // instant, the second has as many or one fewer; copied while it ran,
    // with thousands of files copied between the two, they would drift.
    lab.attach(
        lab.lxcpath(),
        "c",
        "mkdir -p /m /z && for i in $(seq 1 3000); do echo $i > /m/$i; done",
    );
    lab.attach(
        lab.lxcpath(),
        "c",
        "setsid sh -c 'i=0; while :; do i=$((i+1)); echo \"record $i\" >> /records; \
         echo \"record $i\" >> /z/records; done' </dev/null >/dev/null 2>&1 &",
    );
    // Some records first.
    let start = Instant::now();
    while records_now(&lab) < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the writer writes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(lab)
}

fn records_now(lab: &Lab) -> usize {
    std::fs::read_to_string(lab.delta("c").join("records"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Checks that `text` is records 1..=n, each whole; returns n.
fn whole_records(text: &str, what: &str) -> usize {
    assert!(
        text.ends_with('\n'),
        "{what}: the last record is cut: {:?}",
        text.lines().last()
    );
    for (i, line) in text.lines().enumerate() {
        assert_eq!(line, format!("record {}", i + 1), "{what}: line {}", i + 1);
    }
    text.lines().count()
}

#[test]
fn a_running_container_is_snapshotted_frozen_with_every_record_whole() {
    let Some(lab) =
        writing_container("a_running_container_is_snapshotted_frozen_with_every_record_whole")
    else {
        return;
    };
    let env = &lab.env;
    // Without --freeze a running container is refused, as before.
    let err = env.fails_with(5, &["snap", "c"]);
    assert!(err.contains("running"), "{err}");
    let mut last = 0;
    for round in 0..3 {
        let out = env.run(&["snap", "--freeze", "c"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("container c was frozen for ") && stderr.contains(" ms"),
            "{stderr}"
        );
        let snap = format!("c_{round}");
        let text = env.ok(&["cat", &snap, "/records"]);
        let n = whole_records(&text, &snap);
        let second = whole_records(&env.ok(&["cat", &snap, "/z/records"]), &snap);
        assert!(
            second == n || second + 1 == n,
            "{snap}: {n} records in /records but {second} in /z/records: not one instant"
        );
        assert!(
            n > last,
            "{snap} holds more records than the one before ({n} vs {last})"
        );
        last = n;
        assert_eq!(lab.state(lab.lxcpath(), "c"), "RUNNING", "after {snap}");
    }
    // The writer goes on after the last snapshot.
    let start = Instant::now();
    while records_now(&lab) <= last {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the writer writes on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A snapshot taken live restores whole.
    env.ok(&["-q", "restore", "c_1", "back"]);
    let text = std::fs::read_to_string(lab.delta("back").join("records")).expect("records");
    whole_records(&text, "the restored c_1");
    lab.stop(lab.lxcpath(), "c");

    // A stopped container with --freeze: a plain snapshot, nothing frozen.
    let out = env.run(&["snap", "--freeze", "c"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("frozen"));
}

#[test]
fn a_snap_killed_while_the_container_is_frozen_leaves_it_running() {
    let Some(lab) =
        writing_container("a_snap_killed_while_the_container_is_frozen_leaves_it_running")
    else {
        return;
    };
    let env = &lab.env;
    std::fs::create_dir_all(&env.snapdir).expect("snapdir");
    let child = env
        .cmd()
        .args(["snap", "--freeze", "c"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lxc-snap");
    // The staging directory appears once the container is frozen.
    let staging = common::kill_when_staging_appears(child, &env.snapdir, ".lxc-snap.tmp.");
    assert!(!staging.as_os_str().is_empty());
    let killed_at = Instant::now();
    loop {
        let state = lab.state(lab.lxcpath(), "c");
        if state == "RUNNING" {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "still {state} {:?} after lxc-snap was killed",
            killed_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = records_now(&lab);
    let start = Instant::now();
    while records_now(&lab) <= before {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the writer writes on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next run clears what the killed one left, and works.
    let out = env.run(&["snap", "--freeze", "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed"));
    let names = common::fixtures::names_of(env, "c");
    assert_eq!(names, ["c_0"]);
    lab.stop(lab.lxcpath(), "c");
}

#[test]
fn a_snap_stopped_by_sigterm_while_frozen_thaws_and_leaves_nothing() {
    let Some(lab) =
        writing_container("a_snap_stopped_by_sigterm_while_frozen_thaws_and_leaves_nothing")
    else {
        return;
    };
    let env = &lab.env;
    std::fs::create_dir_all(&env.snapdir).expect("snapdir");
    let child = env
        .cmd()
        .args(["snap", "--freeze", "c"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lxc-snap");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Once the staging directory is there, the container is frozen.
    loop {
        let staged = std::fs::read_dir(&env.snapdir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".lxc-snap.tmp.")
            });
        if staged {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // It finished before the signal arrived: a whole snapshot.
        assert!(stderr.contains("was frozen for"), "{stderr}");
    } else {
        assert_eq!(out.status.code(), Some(143), "{stderr}");
        assert!(common::fixtures::names_of(env, "c").is_empty());
    }
    assert_eq!(
        lab.state(lab.lxcpath(), "c"),
        "RUNNING",
        "thawed when lxc-snap exits"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&env.snapdir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".lxc-snap.tmp.")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    lab.stop(lab.lxcpath(), "c");
}
