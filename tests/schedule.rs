//! Expiry and scheduled snapshots, with the clock set by `LXC_SNAP_NOW`:
//! `snap --expiry/--expires-at`, `expire`, `prune --expired`, and `auto`
//! over days of policy-driven snapshots.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::fixtures::{json, names_of, overlay_clone};
use common::TestEnv;

fn at(env: &TestEnv, now: &str, args: &[&str]) -> Output {
    env.cmd()
        .env("LXC_SNAP_NOW", now)
        .args(args)
        .output()
        .expect("lxc-snap")
}

fn ok_at(env: &TestEnv, now: &str, args: &[&str]) -> String {
    let out = at(env, now, args);
    assert!(
        out.status.success(),
        "at {now}: lxc-snap {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn expiry_of(env: &TestEnv, snap: &str) -> serde_json::Value {
    let container = snap.rsplit_once('_').expect("name").0;
    json(env, &["list", container, "--json"])
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["name"] == snap)
        .unwrap_or_else(|| panic!("{snap} listed"))["expires_at"]
        .clone()
}

#[test]
fn snapshots_expire_when_told_and_prune_expired_deletes_them() {
    if !common::system_tests_enabled(
        "snapshots_expire_when_told_and_prune_expired_deletes_them",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let jan1 = "2026-01-01T00:00:00+00:00";
    ok_at(&env, jan1, &["-q", "snap", "--expiry", "2w", "c"]);
    ok_at(
        &env,
        jan1,
        &["-q", "snap", "--expires-at", "2026-02-01T00:00:00Z", "c"],
    );
    ok_at(&env, jan1, &["-q", "snap", "c"]);
    ok_at(&env, jan1, &["-q", "snap", "--expiry", "1d12h", "c"]);
    assert_eq!(expiry_of(&env, "c_0"), "2026-01-15T00:00:00Z");
    assert_eq!(expiry_of(&env, "c_1"), "2026-02-01T00:00:00Z");
    assert!(expiry_of(&env, "c_2").is_null());
    assert_eq!(expiry_of(&env, "c_3"), "2026-01-02T12:00:00Z");

    ok_at(&env, jan1, &["expire", "c_2", "30m"]);
    assert_eq!(expiry_of(&env, "c_2"), "2026-01-01T00:30:00Z");
    ok_at(&env, jan1, &["expire", "c_1", "never"]);
    assert!(expiry_of(&env, "c_1").is_null());
    // Durations and times that make no expiry.
    for bad in [
        vec!["snap", "--expiry", "0s", "c"],
        vec!["snap", "--expiry", "3x", "c"],
        vec!["snap", "--expires-at", "2025-12-31T00:00:00Z", "c"],
        vec!["expire", "c_2", "soon"],
    ] {
        let out = at(&env, jan1, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let table = env.ok(&["list", "c"]);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("EXPIRES")),
        "{table}"
    );

    // On Jan 10th: c_2 and c_3 have expired; c_3 is pinned.
    env.ok(&["-q", "pin", "c_3"]);
    let jan10 = "2026-01-10T00:00:00Z";
    let plan = json_at(
        &env,
        jan10,
        &["prune", "c", "--expired", "--dry-run", "--json"],
    );
    let verdict = |snap: &str| {
        let row = plan
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["snapshot"] == snap)
            .cloned()
            .unwrap_or_else(|| panic!("{snap} in the plan"));
        (
            row["action"].as_str().unwrap_or("").to_string(),
            row["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(verdict("c_0"), ("keep".into(), "not expired".into()));
    assert_eq!(verdict("c_1"), ("keep".into(), "not expired".into()));
    assert_eq!(
        verdict("c_2"),
        ("remove".into(), "expired (2026-01-01T00:30:00Z)".into())
    );
    assert_eq!(verdict("c_3"), ("keep".into(), "pinned".into()));
    ok_at(&env, jan10, &["-q", "prune", "c", "--expired"]);
    assert_eq!(names_of(&env, "c"), ["c_0", "c_1", "c_3"]);

    // Expiry wins over the rules that would keep a snapshot.
    let feb = "2026-02-01T00:00:00Z";
    ok_at(
        &env,
        feb,
        &["-q", "prune", "c", "--expired", "--keep-last", "5"],
    );
    assert_eq!(names_of(&env, "c"), ["c_1", "c_3"]);
    // Without --expired, expiry is not looked at.
    ok_at(&env, "2027-01-01T00:00:00Z", &["-q", "expire", "c_1", "1d"]);
    ok_at(
        &env,
        "2030-01-01T00:00:00Z",
        &["-q", "prune", "c", "--keep-last", "5"],
    );
    assert_eq!(names_of(&env, "c"), ["c_1", "c_3"]);
    let err = env.fails_with(2, &["prune", "c"]);
    assert!(err.contains("--expired or at least one --keep-*"), "{err}");
}

fn json_at(env: &TestEnv, now: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok_at(env, now, args)).expect("JSON")
}

#[test]
fn auto_takes_what_policies_say_is_due_and_prunes_only_its_own() {
    if !common::system_tests_enabled(
        "auto_takes_what_policies_say_is_due_and_prunes_only_its_own",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "web");
    overlay_clone(&env, "db");
    overlay_clone(&env, "other");
    let policies = env.path().join("policies");
    fs::create_dir(&policies).expect("mkdir");
    fs::set_permissions(&policies, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(
        policies.join("web.conf"),
        "# web: daily, two kept, none older than three days\nevery = 1d\nkeep-last = 2\nexpiry = 3d\n",
    )
    .expect("write");
    fs::write(policies.join("db.conf"), "every = 12h\nkeep-dayly = 3\n").expect("write");
    let dir = policies.to_str().expect("utf-8");

    // A snapshot of web taken by hand, and an expiring one of a container
    // without a policy.
    ok_at(
        &env,
        "2026-01-01T00:00:00Z",
        &["-q", "snap", "-m", "by hand", "web"],
    );
    ok_at(
        &env,
        "2026-01-01T00:00:00Z",
        &["-q", "snap", "--expiry", "2d", "other"],
    );

    let dry = at(
        &env,
        "2026-01-01T03:00:00Z",
        &["auto", "--policy-dir", dir, "--dry-run"],
    );
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(said.contains("web: a snapshot is due"), "{said}");
    assert_eq!(names_of(&env, "web"), ["web_0"], "a dry run takes nothing");

    for day in 1..=5 {
        fs::write(delta.join("day"), format!("{day}\n")).expect("write");
        let now = format!("2026-01-0{day}T03:00:00Z");
        let out = at(&env, &now, &["auto", "--policy-dir", dir]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The bad policy fails the run; the good one is carried out.
        assert_eq!(out.status.code(), Some(1), "day {day}: {stderr}");
        assert!(
            stderr.contains("db.conf, line 2: unknown key \"keep-dayly\""),
            "{stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("(scheduled)"),
            "day {day}"
        );
        // Again the same day: nothing is due.
        let again = at(
            &env,
            &format!("2026-01-0{day}T09:00:00Z"),
            &["auto", "--policy-dir", dir],
        );
        let said = String::from_utf8_lossy(&again.stderr);
        assert!(said.contains("web: next snapshot due at"), "{said}");
        assert!(!String::from_utf8_lossy(&again.stdout).contains("(scheduled)"));
    }
    // The newest two automatic snapshots, and the one taken by hand.
    let rows = json(&env, &["list", "web", "--json"]);
    let rows = rows.as_array().expect("rows");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["web_0", "web_4", "web_5"]);
    assert_eq!(rows[0]["auto"], false);
    assert!(rows[1..].iter().all(|r| r["auto"] == true));
    assert_eq!(rows[2]["expires_at"], "2026-01-08T03:00:00Z");
    assert_eq!(rows[2]["comment"], "automatic snapshot (every 1d)");
    assert_eq!(
        env.ok(&["cat", "web_5", "/day"]),
        "5\n",
        "the last snapshot has the last day's change"
    );
    // The expired snapshot of the container without a policy went.
    assert!(names_of(&env, "other").is_empty());
    assert!(
        names_of(&env, "db").is_empty(),
        "a bad policy takes nothing"
    );
}
