//! Faults that must lose nothing: lxc-snap SIGKILLed at random moments of
//! snap, restore, delete, prune and rollback (during the copy and during
//! publishing), and a full disk during snap, restore and rollback.

mod common;
#[path = "common/loopfs.rs"]
#[allow(dead_code)]
mod loopfs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fixtures::{json, names_of};
use common::history::Rng;
use common::lxc::Lab;
use common::TestEnv;

/// Entries in `dir` whose names start with `.lxc-snap.tmp.`.
fn staged(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".lxc-snap.tmp.")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Every container directory under the lxcpath is whole: a config, and
/// the tree it names.
fn no_half_containers(lxcpath: &Path) {
    for entry in fs::read_dir(lxcpath).expect("lxcpath") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let config = entry.path().join("config");
        assert!(config.is_file(), "{name}: a container without a config");
        let text = fs::read_to_string(&config).expect("config");
        assert!(
            text.contains("lxc.rootfs.path"),
            "{name}: a config without a rootfs"
        );
    }
}

/// Every listed snapshot is whole: `info` succeeds on it.
fn only_whole_snapshots(env: &TestEnv, container: &str) -> Vec<String> {
    let names = names_of(env, container);
    for n in &names {
        let out = env.run(&["info", n]);
        assert!(
            out.status.success(),
            "{n} is listed but not whole: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    names
}

/// Runs `args`, SIGKILLed after a random part of `typical`.
fn kill_at_random(env: &TestEnv, rng: &mut Rng, typical: Duration, args: &[&str]) {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lxc-snap");
    let micros = typical.as_micros().max(1) as usize;
    std::thread::sleep(Duration::from_micros(rng.below(micros + micros / 4) as u64));
    let _ = child.kill();
    let _ = child.wait();
}

/// How long `args` takes when nothing stops it.
fn timed(env: &TestEnv, args: &[&str]) -> Duration {
    let start = Instant::now();
    env.ok(args);
    start.elapsed()
}

#[test]
fn killed_at_random_moments_nothing_is_lost_or_left_half_made() {
    if !common::system_tests_enabled(
        "killed_at_random_moments_nothing_is_lost_or_left_half_made",
        true,
    ) {
        return;
    }
    let lab = Lab::new();
    lab.create_base("base");
    lab.overlay_clone("base", "c");
    let env = &lab.env;
    let delta = lab.delta("c");
    // Enough to copy that a kill lands in the middle as often as not.
    for d in 0..20 {
        let dir = delta.join(format!("data/{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..40 {
            fs::write(dir.join(format!("{f}")), format!("{d} {f}\n").repeat(50)).expect("write");
        }
    }
    fs::create_dir_all(&env.snapdir).expect("snapdir");
    let mut rng = Rng(0x00c0_ffee_0b57);
    let runs = 50;

    // snap: each run changes a file first, so most snapshots are layers.
    let typical = timed(env, &["-q", "snap", "c"]);
    for i in 0..runs {
        fs::write(delta.join("data/0/0"), format!("round {i}\n")).expect("write");
        kill_at_random(env, &mut rng, typical, &["-q", "snap", "c"]);
        only_whole_snapshots(env, "c");
    }
    // restore, to names that come and go.
    let last = names_of(env, "c").pop().expect("a snapshot");
    let typical = timed(env, &["-q", "restore", &last, "r"]);
    env.ok(&["-q", "delete", &last]).to_string();
    let _ = fs::remove_dir_all(lab.lxcpath().join("r"));
    for i in 0..runs {
        let snaps = names_of(env, "c");
        let snap = &snaps[rng.below(snaps.len())];
        kill_at_random(
            env,
            &mut rng,
            typical,
            &["-q", "restore", snap, &format!("r{i}")],
        );
        no_half_containers(lab.lxcpath());
    }
    // rollback of the stopped container.
    let snaps = names_of(env, "c");
    let typical = timed(env, &["-q", "rollback", "--no-backup", &snaps[0]]);
    for _ in 0..runs {
        let snaps = names_of(env, "c");
        let snap = &snaps[rng.below(snaps.len())];
        kill_at_random(env, &mut rng, typical, &["-q", "rollback", snap]);
        no_half_containers(lab.lxcpath());
        only_whole_snapshots(env, "c");
        assert!(
            delta.join("data/19/39").is_file(),
            "the container's tree is whole"
        );
    }
    // delete and prune, each run on what is there.
    let typical = timed(env, &["-q", "prune", "c", "--keep-last", "1000"]);
    for i in 0..runs {
        let snaps = names_of(env, "c");
        if snaps.len() < 4 {
            break;
        }
        if i % 2 == 0 {
            let snap = &snaps[rng.below(snaps.len())];
            kill_at_random(env, &mut rng, typical * 4, &["-q", "delete", snap]);
        } else {
            let keep = (snaps.len() - 1).to_string();
            kill_at_random(
                env,
                &mut rng,
                typical * 4,
                &["-q", "prune", "c", "--keep-last", &keep],
            );
        }
        only_whole_snapshots(env, "c");
    }

    // The next run reports and clears what the killed ones left.
    env.ok(&["-q", "snap", "c"]);
    assert!(
        staged(&env.snapdir).is_empty(),
        "{:?}",
        staged(&env.snapdir)
    );
    let check = env.run(&["check", "c", "--repair"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // What each snapshot alone holds was right already: measuring it again
    // changes nothing.
    let before = json(env, &["list", "c", "--json"]);
    env.ok(&["-q", "check", "c", "--repair"]);
    let after = json(env, &["list", "c", "--json"]);
    let used = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v.as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or("").to_string(),
                    r["used_bytes"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(used(&before), used(&after), "USED after the kills");

    // Every snapshot that is left restores to a container that starts.
    let snaps = only_whole_snapshots(env, "c");
    assert!(!snaps.is_empty());
    for (i, snap) in snaps.iter().enumerate() {
        let name = format!("back{i}");
        env.ok(&["-q", "restore", snap, &name]);
        lab.start(lab.lxcpath(), &name);
        assert_eq!(
            lab.attach(lab.lxcpath(), &name, "cat /data/19/39"),
            "19 39\n".repeat(50)
        );
        lab.stop(lab.lxcpath(), &name);
    }
    no_half_containers(lab.lxcpath());
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_everything_as_it_was() {
    if !common::system_tests_enabled(
        "a_full_disk_fails_clearly_and_leaves_everything_as_it_was",
        false,
    ) {
        return;
    }
    let Some(disk) = loopfs::LoopFs::new("ext4") else {
        panic!("a full disk test needs mkfs.ext4 (apt-get install e2fsprogs)");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let env = TestEnv {
        dir,
        lxcpath: disk.path().join("lxc"),
        snapdir: disk.path().join("snaps"),
    };
    fs::create_dir(&env.lxcpath).expect("lxcpath");
    let delta = common::fixtures::overlay_clone(&env, "c");
    fs::write(delta.join("big"), vec![7u8; 8 << 20]).expect("write");
    env.ok(&["-q", "snap", "c"]);
    // A stream of it, off the small disk, to import onto the full one.
    let stream = env.path().join("c_0.tar");
    let stream = stream.to_str().expect("utf-8");
    env.ok(&["-q", "export", "--compression", "none", "-o", stream, "c_0"]);
    // Fill it, the blocks ext4 keeps for root included.
    let free = || {
        let st = nix::sys::statvfs::statvfs(disk.path()).expect("statvfs");
        st.blocks_free() as u64 * st.fragment_size()
    };
    let mut fillers = Vec::new();
    while free() > 3 << 20 {
        let chunk = (free() - (2 << 20)).clamp(1 << 20, 256 << 20);
        let f =
            fs::File::create(disk.path().join(format!("filler{}", fillers.len()))).expect("filler");
        if nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            nix::fcntl::FallocateFlags::empty(),
            0,
            (chunk - (1 << 20)) as i64,
        )
        .is_err()
        {
            break;
        }
        fillers.push(f);
    }
    // What stays is what ext4 keeps for its own metadata (4096 blocks).
    assert!(free() <= 17 << 20, "filled: {} bytes free", free());

    let places = [
        env.snapdir.clone(),
        env.lxcpath.clone(),
        env.lxcpath.join("c"),
    ];
    for args in [
        vec!["snap", "--full", "c"],
        vec!["restore", "c_0", "r"],
        vec!["rollback", "--no-backup", "c_0"],
        vec!["import", stream],
    ] {
        let out = env.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded on a full disk");
        assert!(
            stderr.contains("No space left on device"),
            "{args:?}: {stderr}"
        );
        for p in &places {
            assert!(staged(p).is_empty(), "{args:?} left {:?}", staged(p));
        }
        assert_eq!(names_of(&env, "c"), ["c_0"], "{args:?}");
        assert!(!env.lxcpath.join("r").exists(), "{args:?}");
        assert_eq!(env.ok(&["cat", "c_0", "/big"]).len(), 8 << 20);
        assert!(
            env.ok(&["cat", "c_0", "/big"]).bytes().all(|b| b == 7),
            "{args:?}: c_0 intact"
        );
    }
    drop(fillers);
    for i in 0.. {
        if fs::remove_file(disk.path().join(format!("filler{i}"))).is_err() {
            break;
        }
    }
    env.ok(&["-q", "snap", "c"]);
    assert_eq!(names_of(&env, "c"), ["c_0", "c_1"]);
}
