//! Many runs on one container at once: snap, delete, prune, list, comment,
//! restore and rollback in parallel loops for two minutes
//! (`LXC_SNAP_STRESS_SECS` to change that). Each run succeeds, or says the
//! lock is held, or (delete, comment, rollback, restore of a snapshot
//! another loop just removed) that the snapshot is gone; no snapshot is
//! lost, duplicated or torn, and numbers stay distinct and increasing.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixtures::{names_of, overlay_clone};
use common::TestEnv;

/// What one run ended with.
#[derive(Debug)]
enum Outcome {
    Done(String),
    Busy,
    Gone,
}

fn run(env: &TestEnv, args: &[&str]) -> Outcome {
    let out = env
        .cmd()
        .args(["--wait", "3s"])
        .args(args)
        .output()
        .expect("lxc-snap");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Outcome::Done(stdout),
        Some(8) => {
            assert!(
                stderr.contains("another lxc-snap run"),
                "{args:?}: {stderr}"
            );
            Outcome::Busy
        }
        Some(3) if stderr.contains("not found") => Outcome::Gone,
        code => panic!("lxc-snap {args:?} ended with {code:?}:\n{stdout}\n{stderr}"),
    }
}

/// One loop's step: the environment and the step's number.
type Step = Box<dyn Fn(&TestEnv, usize) + Send>;

fn number(name: &str) -> u64 {
    name.rsplit_once('_')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("{name:?} is no snapshot name"))
}

#[test]
fn parallel_runs_on_one_container_lose_and_tear_nothing() {
    if !common::system_tests_enabled(
        "parallel_runs_on_one_container_lose_and_tear_nothing",
        false,
    ) {
        return;
    }
    let secs: u64 = std::env::var("LXC_SNAP_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let env = Arc::new(TestEnv::new());
    let delta = overlay_clone(&env, "c");
    for i in 0..200 {
        std::fs::write(delta.join(format!("f{i}")), format!("{i}\n")).expect("write");
    }
    env.ok(&["-q", "snap", "c"]);
    let until = Instant::now() + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(vec!["c_0".to_string()]));
    let deleted = Arc::new(Mutex::new(BTreeSet::new()));
    let newest = |env: &TestEnv| names_of(env, "c").pop();

    let mut loops = Vec::new();
    let spawn = |f: Step| {
        let env = Arc::clone(&env);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                f(&env, i);
                i += 1;
            }
            i
        })
    };
    {
        let created = Arc::clone(&created);
        loops.push((
            "snap",
            spawn(Box::new(move |env, i| {
                std::fs::write(env.lxcpath.join("c/overlay/delta/f0"), format!("{i}\n"))
                    .expect("write");
                if let Outcome::Done(out) = run(env, &["snap", "c"]) {
                    let name = out
                        .trim()
                        .strip_prefix("created snapshot ")
                        .expect("name")
                        .to_string();
                    let mut all = created.lock().expect("lock");
                    let last = all.last().map_or(0, |l| number(l));
                    assert!(number(&name) > last, "{name} after {last}");
                    all.push(name);
                }
            })),
        ));
    }
    {
        let deleted = Arc::clone(&deleted);
        loops.push((
            "delete",
            spawn(Box::new(move |env, _| {
                let names = names_of(env, "c");
                if names.len() > 4 {
                    if let Outcome::Done(_) = run(env, &["-q", "delete", &names[1]]) {
                        deleted.lock().expect("lock").insert(names[1].clone());
                    }
                }
            })),
        ));
    }
    {
        let deleted = Arc::clone(&deleted);
        loops.push((
            "prune",
            spawn(Box::new(move |env, _| {
                if let Outcome::Done(out) = run(env, &["prune", "c", "--keep-last", "6"]) {
                    for line in out.lines() {
                        if let Some(rest) = line.strip_prefix("deleted ") {
                            let name = rest.split(',').next().unwrap_or("").trim().to_string();
                            deleted.lock().expect("lock").insert(name);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            })),
        ));
    }
    loops.push((
        "list",
        spawn(Box::new(move |env, _| {
            let out = env.ok(&["list", "c", "--json"]);
            let rows: serde_json::Value =
                serde_json::from_str(&out).expect("list --json is whole JSON");
            let numbers: Vec<u64> = rows
                .as_array()
                .expect("rows")
                .iter()
                .map(|r| r["number"].as_u64().expect("number"))
                .collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        })),
    ));
    loops.push((
        "comment",
        spawn(Box::new(move |env, i| {
            if let Some(n) = newest(env) {
                run(env, &["comment", &n, &format!("comment {i}")]);
            }
        })),
    ));
    loops.push((
        "restore",
        spawn(Box::new(move |env, i| {
            if let Some(n) = newest(env) {
                run(env, &["-q", "restore", &n, &format!("r{i}")]);
            }
        })),
    ));
    loops.push((
        "rollback",
        spawn(Box::new(move |env, _| {
            if let Some(n) = newest(env) {
                run(env, &["-q", "rollback", "--no-backup", &n]);
            }
            std::thread::sleep(Duration::from_millis(100));
        })),
    ));
    let mut counts = Vec::new();
    for (what, handle) in loops {
        match handle.join() {
            Ok(n) => counts.push((what, n)),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                std::panic::resume_unwind(e);
            }
        }
    }
    for (what, n) in &counts {
        assert!(*n > 0, "the {what} loop ran: {counts:?}");
    }

    // Nothing lost, nothing duplicated, nothing torn.
    let listed = names_of(&env, "c");
    let distinct: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(distinct.len(), listed.len(), "{listed:?}");
    let created = created.lock().expect("lock").clone();
    let deleted = deleted.lock().expect("lock").clone();
    for name in &created {
        assert!(
            listed.contains(name) || deleted.contains(name),
            "{name} was created, never deleted, and is gone ({counts:?})"
        );
    }
    for name in &listed {
        assert!(created.contains(name), "{name} listed but never created");
        env.ok(&["info", name]);
    }
    let check = env.run(&["check", "c"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    eprintln!(
        "runs: {counts:?}; {} created, {} deleted, {} left",
        created.len(),
        deleted.len(),
        listed.len()
    );
}
