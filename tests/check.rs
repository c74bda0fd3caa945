//! Snapshot states, told one way everywhere, and `check [--repair]`.

mod common;

use std::fs;

use common::fixtures::{json, overlay_clone};
use common::TestEnv;

/// `check c --json`, which fails when it finds problems.
fn check_json(env: &TestEnv) -> serde_json::Value {
    let out = env.run(&["check", "c", "--json"]);
    assert_eq!(out.status.code(), Some(1), "problems make check fail");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn state_of(env: &TestEnv, snap: &str) -> String {
    json(env, &["list", "c", "--json"])
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["name"] == snap)
        .map(|r| r["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("{snap} listed"))
}

#[test]
fn a_snapshot_has_one_state_and_every_command_tells_it_the_same_way() {
    if !common::system_tests_enabled(
        "a_snapshot_has_one_state_and_every_command_tells_it_the_same_way",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    env.ok(&["-q", "snap", "c"]);
    fs::write(delta.join("added"), "changed\n").expect("write");
    env.ok(&["-q", "snap", "c"]);
    assert_eq!(state_of(&env, "c_0"), "ok");
    let table = env.ok(&["list", "c"]);
    assert!(
        !table.contains("STATE"),
        "no STATE column while all is well:\n{table}"
    );

    // A changed base: listed, explained, and a restore still works, with a warning.
    let base = env.lxcpath.join("base/rootfs");
    fs::write(base.join("etc/motd"), "the base changed\n").expect("write");
    assert_eq!(state_of(&env, "c_0"), "base_changed");
    let table = env.ok(&["list", "c"]);
    assert!(
        table.contains("STATE") && table.contains("base changed"),
        "{table}"
    );
    let info = env.ok(&["info", "c_0"]);
    assert!(
        info.contains("state:         base changed: its base layer"),
        "{info}"
    );
    let out = env.run(&["restore", "c_0", "r0"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed since it was taken"));

    // A missing base: every command that needs it fails alike.
    let aside = env.path().join("base-aside");
    fs::rename(&base, &aside).expect("rename");
    assert_eq!(state_of(&env, "c_0"), "base_missing");
    let mnt = env.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let mut firsts = Vec::new();
    for args in [
        vec!["restore", "c_0", "r1"],
        vec!["mount", "c_0", mnt.to_str().expect("utf-8")],
        vec!["diff", "c_0", "c_1"],
        vec!["ls", "c_0"],
        vec!["cat", "c_0", "/added"],
        vec![
            "cp",
            "c_0:/added",
            env.path().join("x").to_str().expect("utf-8"),
        ],
    ] {
        let err = env.fails_with(1, &args);
        let first = err.lines().next().unwrap_or("").to_string();
        assert!(
            first.contains("snapshot c_0 cannot be used (base missing): its base layer"),
            "{args:?}: {err}"
        );
        assert!(err.contains("lxc-snap check c"), "{args:?}: {err}");
        firsts.push(first);
    }
    firsts.dedup();
    assert_eq!(firsts.len(), 1, "one wording: {firsts:?}");
    let report = check_json(&env);
    let problems = report["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p["snapshot"] == "c_0"
        && p["what"].as_str().unwrap_or("").starts_with("base missing")
        && p["fix"]
            .as_str()
            .unwrap_or("")
            .contains("lxc-snap delete c_0")));
    env.fails_with(1, &["check", "c"]);
    fs::rename(&aside, &base).expect("rename back");

    // The anchor's tree gone: the layer cannot be read either.
    let tree = env.snapdir.join("c_0/private/delta");
    fs::rename(&tree, env.path().join("tree-aside")).expect("rename");
    assert_eq!(state_of(&env, "c_0"), "broken");
    assert_eq!(state_of(&env, "c_1"), "anchor_missing");
    let err = env.fails_with(1, &["restore", "c_1", "r2"]);
    assert!(
        err.contains("snapshot c_1 cannot be used (anchor missing)"),
        "{err}"
    );
    fs::rename(env.path().join("tree-aside"), &tree).expect("rename back");
}

#[test]
fn check_repair_removes_leftovers_and_registers_snapshots_again() {
    if !common::system_tests_enabled(
        "check_repair_removes_leftovers_and_registers_snapshots_again",
        false,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["-q", "snap", "c"]);
    let out = env.ok(&["check", "c"]);
    assert!(
        out.contains("1 snapshot checked, 0 problems found, 0 left"),
        "{out}"
    );

    // What a killed run and a careless hand leave.
    let leftover = env.snapdir.join(".lxc-snap.tmp.c_1.dead");
    fs::create_dir(&leftover).expect("mkdir");
    let registry = env.lxcpath.join("base/lxc_snapshots");
    let text = fs::read_to_string(&registry).expect("lxc_snapshots");
    assert!(text.contains("c_0"), "{text}");
    fs::write(&registry, "").expect("write");

    let report = check_json(&env);
    let whats: Vec<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["what"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(whats.len(), 2, "{whats:?}");
    assert!(whats.iter().any(|w| w.contains("half-built")), "{whats:?}");
    assert!(
        whats
            .iter()
            .any(|w| w.contains("does not list it in lxc_snapshots")),
        "{whats:?}"
    );
    env.fails_with(1, &["check", "c"]);
    assert!(leftover.exists(), "check alone changes nothing");

    let out = env.ok(&["check", "c", "--repair"]);
    assert!(
        out.contains("(repaired)") && out.contains("2 problems found, 0 left"),
        "{out}"
    );
    assert!(!leftover.exists());
    assert!(fs::read_to_string(&registry).expect("read").contains("c_0"));
    let out = env.ok(&["check", "--all"]);
    assert!(out.contains("0 problems found"), "{out}");
}
