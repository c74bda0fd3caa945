//! `lxc-snap exec`: commands run in throwaway linked clones of real
//! busybox containers, with what they leave collected, hostile paths
//! refused, and nothing left behind however the run ends.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lxc::{mounts_under, tree_manifest, Lab};

/// A busybox base with a veth eth0 and its overlay clone `web`, stopped,
/// with /srv/data written inside.
fn web_lab(test: &str) -> Option<Lab> {
    if !common::system_tests_enabled(test, true) {
        return None;
    }
    let lab = Lab::new();
    let lp = lab.lxcpath();
    lab.create_base_with_mac("base");
    lab.overlay_clone("base", "web");
    lab.start(lp, "web");
    lab.attach(lp, "web", "mkdir -p /srv && echo data > /srv/data && sync");
    lab.stop(lp, "web");
    std::fs::create_dir(lab.snapdir()).expect("snapdir");
    Some(lab)
}

fn exec_lxcpath(lab: &Lab) -> PathBuf {
    lab.snapdir().join(".lxc-snap/exec")
}

/// Nothing of a run is left: no throwaway copy, no mount, no staging.
fn assert_nothing_left(lab: &Lab) {
    let copies: Vec<String> = std::fs::read_dir(exec_lxcpath(lab))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(copies.is_empty(), "left in the exec lxcpath: {copies:?}");
    let mounts = mounts_under(lab.env.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let staged: Vec<String> = std::fs::read_dir(lab.lxcpath())
        .expect("lxcpath")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(staged.is_empty(), "left in the lxcpath: {staged:?}");
}

fn dest(lab: &Lab) -> PathBuf {
    let d = lab.env.path().join("dest");
    std::fs::create_dir_all(&d).expect("dest");
    d
}

fn exec(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    lab.env.run(&all)
}

#[test]
fn exec_runs_a_command_in_a_throwaway_copy_of_a_container_and_collects_its_files() {
    let Some(lab) =
        web_lab("exec_runs_a_command_in_a_throwaway_copy_of_a_container_and_collects_its_files")
    else {
        return;
    };
    let lp = lab.lxcpath();
    let before = tree_manifest(&lab.delta("web"));
    let config = lab.config(lp, "web");
    let dest = dest(&lab);
    let out = exec(
        &lab,
        &[
            "-e",
            "GREETING=hi there",
            "--collect",
            "/out",
            "--collect",
            "/srv/link",
            "--dest",
            dest.to_str().expect("utf-8"),
            "web",
            "--",
            "/bin/sh",
            "-c",
            "mkdir /out && echo \"$GREETING\" > /out/msg && cat /srv/data >> /out/msg && \
             truncate -s 10G /out/sparse && mkfifo /out/fifo && ln -s /etc/shadow /srv/link && \
             echo changed > /srv/data && echo stdout-line && echo stderr-line >&2; exit 7",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stdout-line\n");
    assert!(stderr.contains("stderr-line"), "{stderr}");
    assert!(stderr.contains("collected /out as "), "{stderr}");

    assert_eq!(
        std::fs::read_to_string(dest.join("out/msg")).expect("msg"),
        "hi there\ndata\n"
    );
    // A huge sparse file comes back sparse; a fifo as a fifo, never opened.
    let sparse = std::fs::metadata(dest.join("out/sparse")).expect("sparse");
    assert_eq!(sparse.len(), 10 << 30);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "{} blocks",
        sparse.blocks()
    );
    let fifo = std::fs::symlink_metadata(dest.join("out/fifo")).expect("fifo");
    assert!(fifo.file_type().is_fifo());
    // A symlink to a host file is a symlink, not the host file.
    let link = std::fs::symlink_metadata(dest.join("link")).expect("link");
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(dest.join("link")).expect("readlink"),
        Path::new("/etc/shadow")
    );

    // The container is as it was, and the snapshot taken for the run is gone.
    assert_eq!(tree_manifest(&lab.delta("web")), before);
    assert_eq!(lab.config(lp, "web"), config);
    assert!(common::fixtures::names_of(&lab.env, "web").is_empty());
    assert_nothing_left(&lab);

    // With --keep-snapshot it stays.
    let out = exec(&lab, &["--keep-snapshot", "web", "--", "true"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(common::fixtures::names_of(&lab.env, "web"), ["web_1"]);
    assert_nothing_left(&lab);
}

#[test]
fn exec_of_a_snapshot_refuses_hostile_paths_and_honours_its_options() {
    let Some(lab) = web_lab("exec_of_a_snapshot_refuses_hostile_paths_and_honours_its_options")
    else {
        return;
    };
    lab.env.ok(&["snap", "web"]);
    let captured = lab.snapdir().join("web_0/private/delta");
    let before = tree_manifest(&captured);
    let dest = dest(&lab);
    let d = dest.to_str().expect("utf-8");

    // `..` is refused before anything is made.
    let out = exec(
        &lab,
        &[
            "--collect",
            "/srv/../etc",
            "--dest",
            d,
            "web_0",
            "--",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A symlink with --no-symlinks, a device node, a symlink on the way:
    // refused, nothing copied.
    let out = exec(
        &lab,
        &[
            "--no-symlinks",
            "--collect",
            "/srv/link",
            "--dest",
            d,
            "web_0",
            "--",
            "ln",
            "-s",
            "/etc/shadow",
            "/srv/link",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("a symlink (--no-symlinks)"));
    let out = exec(
        &lab,
        &[
            "--collect",
            "/srv",
            "--dest",
            d,
            "web_0",
            "--",
            "mknod",
            "/srv/mem",
            "c",
            "1",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a device node"),
        "{out:?}"
    );
    let out = exec(
        &lab,
        &[
            "--collect",
            "/srv/etc/shadow",
            "--dest",
            d,
            "web_0",
            "--",
            "ln",
            "-s",
            "/etc",
            "/srv/etc",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not follow"),
        "{out:?}"
    );
    let copied: Vec<_> = std::fs::read_dir(&dest).expect("dest").collect();
    assert!(copied.is_empty(), "copied: {copied:?}");

    // The network, the environment, the status.
    let out = exec(&lab, &["web_0", "--", "ls", "/sys/class/net"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("eth0"),
        "{out:?}"
    );
    let out = exec(
        &lab,
        &["--no-network", "web_0", "--", "ls", "/sys/class/net"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "lo\n", "{out:?}");
    let out = exec(&lab, &["web_0", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let started = Instant::now();
    let out = exec(&lab, &["--timeout", "1s", "web_0", "--", "sleep", "60"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));

    // The snapshot is untouched and still there; nothing is left.
    assert_eq!(tree_manifest(&captured), before);
    assert_eq!(common::fixtures::names_of(&lab.env, "web"), ["web_0"]);
    assert_nothing_left(&lab);
    lab.env.ok(&["delete", "web_0"]);
}

/// Waits until the throwaway copy runs; returns false if the run ended first.
fn wait_for_copy(lab: &Lab, child: &mut std::process::Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        let running = Command::new("lxc-ls")
            .arg("-P")
            .arg(exec_lxcpath(lab))
            .arg("--running")
            .output()
            .expect("lxc-ls");
        if !String::from_utf8_lossy(&running.stdout).trim().is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn wait_until_nothing_left(lab: &Lab) {
    let start = Instant::now();
    loop {
        let left = std::fs::read_dir(exec_lxcpath(lab))
            .map(|d| d.count())
            .unwrap_or(0);
        let snaps = common::fixtures::names_of(&lab.env, "web");
        if left == 0 && snaps.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "after 30 s: {left} copies, snapshots {snaps:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_nothing_left(lab);
}

#[test]
fn exec_killed_or_stopped_by_a_signal_leaves_no_copy_and_no_snapshot() {
    let Some(lab) = web_lab("exec_killed_or_stopped_by_a_signal_leaves_no_copy_and_no_snapshot")
    else {
        return;
    };
    for signal in [nix::sys::signal::SIGKILL, nix::sys::signal::SIGTERM] {
        let mut child = lab
            .env
            .cmd()
            .args(["exec", "web", "--", "sleep", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lxc-snap exec");
        assert!(wait_for_copy(&lab, &mut child), "the copy never ran");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("kill");
        let status = child.wait().expect("wait");
        if signal == nix::sys::signal::SIGTERM {
            assert_eq!(status.code(), Some(143), "{status:?}");
        }
        wait_until_nothing_left(&lab);
    }

    // The watchdog killed too (as if the host went down): the copy stays,
    // and the next exec destroys it and says so.
    let mut child = lab
        .env
        .cmd()
        .args(["exec", "web", "--", "sleep", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lxc-snap exec");
    assert!(wait_for_copy(&lab, &mut child), "the copy never ran");
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", "lxc-snap-watchdog"])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no watchdog to kill");
    child.kill().expect("kill");
    child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(500));
    let left = std::fs::read_dir(exec_lxcpath(&lab))
        .expect("exec lxcpath")
        .count();
    assert_eq!(left, 1, "the copy of the killed run");
    let snaps = common::fixtures::names_of(&lab.env, "web");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let out = exec(&lab, &[&snaps[0], "--", "true"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a throwaway copy left by an interrupted exec"),
        "{stderr}"
    );
    // The snapshot taken for the killed run is left, and says what it was.
    let info = lab.env.ok(&["info", &snaps[0]]);
    assert!(info.contains("taken by lxc-snap exec"), "{info}");
    lab.env.ok(&["delete", &snaps[0]]);
    assert_nothing_left(&lab);
}
