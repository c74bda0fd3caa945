//! delete, pin, info, rollback, mount over hand-built containers in a
//! throwaway lxcpath and snapdir. (Rollback inside a started container is
//! in tests/e2e.rs.)

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::fidelity::assert_trees_identical;
use common::fixtures::{captured, json, make_base, names_of, overlay_clone, set_created};
use common::TestEnv;

fn base_dependents(env: &TestEnv) -> String {
    fs::read_to_string(env.lxcpath.join("base/lxc_snapshots")).unwrap_or_default()
}

#[test]
fn delete_one_range_and_all_and_unregister_from_the_base() {
    if !common::system_tests_enabled(
        "delete_one_range_and_all_and_unregister_from_the_base",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    overlay_clone(&env, "d");
    for _ in 0..7 {
        env.ok(&["-q", "c"]);
    }
    env.ok(&["-q", "d"]);
    env.ok(&["-q", "d"]);
    assert!(base_dependents(&env).contains("\nc_3\n"));

    // What a deletion frees is said, and is what du sees go.
    let before = common::du(&env.snapdir);
    let out = env.ok(&["--bytes", "delete", "c_3"]);
    let freed: u64 = out
        .strip_prefix("deleted c_3, freed ")
        .and_then(|rest| rest.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let gone = before - common::du(&env.snapdir);
    assert!(gone.abs_diff(freed) <= 8192, "freed {freed}, du {gone}");
    assert!(freed > 0);
    assert!(
        !base_dependents(&env).contains("\nc_3\n"),
        "{}",
        base_dependents(&env)
    );
    env.ok(&["rm", "c_1..c_4"]);
    assert_eq!(names_of(&env, "c"), ["c_0", "c_5", "c_6"]);

    // A missing name refuses the whole command.
    env.fails_with(3, &["rm", "c_0", "c_9"]);
    assert_eq!(names_of(&env, "c"), ["c_0", "c_5", "c_6"]);
    env.fails_with(3, &["rm", "c_1..c_4"]);

    env.ok(&["rm", "--all", "d"]);
    assert_eq!(names_of(&env, "d"), Vec::<String>::new());
    assert!(
        !base_dependents(&env).contains("\nd_"),
        "{}",
        base_dependents(&env)
    );
    env.fails_with(3, &["rm", "--all", "d"]);

    // Numbers are not reused after deleting the newest.
    env.ok(&["rm", "c_6"]);
    env.ok(&["-q", "c"]);
    assert_eq!(names_of(&env, "c"), ["c_0", "c_5", "c_7"]);
    let hidden: Vec<_> = fs::read_dir(&env.snapdir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lxc-snap.tmp"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn pinned_snapshots_need_force_and_show_in_list() {
    if !common::system_tests_enabled("pinned_snapshots_need_force_and_show_in_list", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    env.ok(&["-q", "c"]);
    assert_eq!(env.ok(&["pin", "c_0"]), "pinned c_0\n");
    let list = json(&env, &["list", "c", "--json"]);
    assert_eq!(list[0]["pinned"], true);
    assert_eq!(list[1]["pinned"], false);
    let table = env.ok(&["-l", "c"]);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("PINNED")),
        "{table}"
    );
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("yes")),
        "{table}"
    );
    assert!(
        !table.lines().nth(2).is_some_and(|l| l.contains("yes")),
        "{table}"
    );

    let stderr = env.fails_with(1, &["rm", "c_0..c_1"]);
    assert!(
        stderr.contains("c_0 is pinned") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(names_of(&env, "c"), ["c_0", "c_1"], "nothing deleted");
    env.ok(&["unpin", "c_0"]);
    env.ok(&["pin", "c_0"]);
    env.ok(&["rm", "--force", "c_0"]);
    assert_eq!(names_of(&env, "c"), ["c_1"]);
    env.ok(&["unpin", "c_1"]);
    assert_eq!(json(&env, &["list", "c", "--json"])[0]["pinned"], false);
}

#[test]
fn delete_refuses_a_snapshot_something_depends_on() {
    if !common::system_tests_enabled("delete_refuses_a_snapshot_something_depends_on", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    // What `lxc-copy -s -P <snapdir> -n c_0 -N clone` records on the snapshot.
    let snap = env.snapdir.join("c_0");
    fs::write(
        snap.join("lxc_snapshots"),
        format!("{}\nclone\n", env.lxcpath.display()),
    )
    .expect("write");
    let stderr = env.fails_with(1, &["rm", "c_0"]);
    assert!(
        stderr.contains("c_0 is needed by container clone"),
        "{stderr}"
    );
    assert!(snap.exists());
    fs::write(snap.join("lxc_snapshots"), "").expect("empty");
    env.ok(&["rm", "c_0"]);
}

#[test]
fn info_reports_everything_and_fails_on_a_broken_snapshot() {
    if !common::system_tests_enabled(
        "info_reports_everything_and_fails_on_a_broken_snapshot",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    fs::write(delta.join("data"), vec![1u8; 10_000]).expect("write");
    env.ok(&["-q", "snap", "-m", "first\nsecond", "c"]);
    env.ok(&["pin", "c_0"]);
    let info = json(&env, &["info", "c_0", "--json"]);
    assert_eq!(info["name"], "c_0");
    assert_eq!(info["container"], "c");
    assert_eq!(info["number"], 0);
    assert_eq!(info["comment"], "first\nsecond");
    assert_eq!(info["pinned"], true);
    assert_eq!(info["backing"], "overlay");
    assert_eq!(info["tree_present"], true);
    assert_eq!(info["files"], 2);
    assert_eq!(info["bytes"], 10_000 + "added in c\n".len());
    assert!(
        info["bytes_on_disk"].as_u64().is_some_and(|b| b >= 10_000),
        "{info}"
    );
    assert_eq!(
        info["lowers"][0]["path"],
        env.lxcpath.join("base/rootfs").to_str().expect("utf-8")
    );
    assert_eq!(info["lowers"][0]["state"], "unchanged");
    assert_eq!(info["base"][0]["name"], "base");
    assert_eq!(info["dependents"], serde_json::json!([]));
    let text = env.ok(&["info", "c_0"]);
    for want in [
        "snapshot:      c_0",
        "pinned:        yes",
        "(unchanged)",
        "base:          base",
        "  second",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }

    fs::write(
        env.lxcpath.join("base/rootfs/etc/motd"),
        "changed under the snapshot\n",
    )
    .expect("write");
    assert_eq!(
        json(&env, &["info", "c_0", "--json"])["lowers"][0]["state"],
        "changed"
    );

    fs::rename(
        env.lxcpath.join("base/rootfs"),
        env.lxcpath.join("base/rootfs.moved"),
    )
    .expect("move base");
    let out = env.run(&["info", "c_0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(missing)"));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("snapshot c_0 cannot be used (base missing): its base layer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(
        env.lxcpath.join("base/rootfs.moved"),
        env.lxcpath.join("base/rootfs"),
    )
    .expect("move back");

    fs::remove_dir_all(env.snapdir.join("c_0/private/delta")).expect("break the tree");
    let out = env.run(&["info", "c_0", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("captured tree"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rollback_puts_the_delta_back_and_keeps_a_backup() {
    if !common::system_tests_enabled("rollback_puts_the_delta_back_and_keeps_a_backup", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    fs::write(delta.join("v"), "1\n").expect("write");
    env.ok(&["-q", "c"]);
    let config_before = fs::read(env.lxcpath.join("c/config")).expect("config");
    fs::write(delta.join("v"), "2\n").expect("write");
    fs::write(delta.join("new"), "later\n").expect("write");
    fs::remove_file(delta.join("added")).expect("rm");

    let out = env.ok(&["rollback", "c_0"]);
    assert_eq!(out, "rolled c back to c_0 (the state before is c_1)\n");
    assert_trees_identical(&captured(&env, "c_0"), &delta);
    assert_eq!(fs::read_to_string(delta.join("v")).expect("read"), "1\n");
    assert!(!delta.join("new").exists());
    assert_eq!(env.ok(&["comment", "c_1"]), "before rollback to c_0\n");
    let backup = captured(&env, "c_1");
    assert_eq!(fs::read_to_string(backup.join("v")).expect("read"), "2\n");
    assert!(backup.join("new").exists() && !backup.join("added").exists());
    assert_eq!(
        fs::read(env.lxcpath.join("c/config")).expect("config"),
        config_before,
        "config untouched"
    );

    env.ok(&["rollback", "--no-backup", "c_1"]);
    assert_eq!(names_of(&env, "c"), ["c_0", "c_1"]);
    assert_eq!(fs::read_to_string(delta.join("v")).expect("read"), "2\n");
    let leftovers: Vec<_> = fs::read_dir(delta.parent().expect("parent"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    env.fails_with(3, &["rollback", "c_9"]);
}

#[test]
fn a_killed_rollback_leaves_the_old_or_the_new_state() {
    if !common::system_tests_enabled("a_killed_rollback_leaves_the_old_or_the_new_state", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    for i in 0..64 {
        fs::write(delta.join(format!("f{i}")), vec![1u8; 2 << 20]).expect("write");
    }
    env.ok(&["-q", "c"]);
    for i in 0..64 {
        fs::write(delta.join(format!("f{i}")), vec![2u8; 2 << 20]).expect("write");
    }
    let parent = delta.parent().expect("parent").to_path_buf();
    let child = env
        .cmd()
        .args(["rollback", "--no-backup", "c_0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    common::kill_when_staging_appears(child, &parent, ".lxc-snap.tmp.delta.");
    // Whole old state or whole new state: every file agrees.
    let firsts: Vec<u8> = (0..64)
        .map(|i| fs::read(delta.join(format!("f{i}"))).expect("read")[0])
        .collect();
    assert!(
        firsts.iter().all(|&b| b == firsts[0]),
        "mixed state: {firsts:?}"
    );
    // The next rollback cleans up and completes.
    env.ok(&["rollback", "--no-backup", "c_0"]);
    assert_trees_identical(&env.snapdir.join("c_0/private/delta"), &delta);
    let leftovers = fs::read_dir(&parent)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(leftovers, 0);
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn is_mountpoint(dir: &Path) -> bool {
    let table = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = dir.to_string_lossy().replace(' ', "\\040");
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

#[test]
fn mount_shows_the_whole_snapshot_read_only() {
    if !common::system_tests_enabled("mount_shows_the_whole_snapshot_read_only", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    fs::create_dir_all(delta.join("bin")).expect("mkdir");
    nix::sys::stat::mknod(
        &delta.join("bin/sh"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .expect("whiteout");
    env.ok(&["-q", "c"]);
    let dir = env.path().join("browse");
    fs::create_dir(&dir).expect("mkdir");
    assert_eq!(
        env.ok(&["mount", "c_0", dir.to_str().expect("utf-8")]),
        format!("mounted c_0 read-only at {}\n", dir.display())
    );
    let _guard = Mounted(dir.clone());
    assert_eq!(
        fs::read_to_string(dir.join("added")).expect("layer file"),
        "added in c\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("etc/motd")).expect("base file"),
        "base motd\n"
    );
    assert!(
        !dir.join("bin/sh").exists(),
        "the whiteout hides the base's file"
    );
    let err = fs::write(dir.join("added"), "x").expect_err("read-only");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(fs::create_dir(dir.join("newdir")).is_err());

    let busy = env.path().join("busy");
    fs::create_dir(&busy).expect("mkdir");
    fs::write(busy.join("x"), "").expect("write");
    env.fails_with(2, &["mount", "c_0", busy.to_str().expect("utf-8")]);
    env.fails_with(
        2,
        &[
            "mount",
            "c_0",
            env.path().join("nowhere").to_str().expect("utf-8"),
        ],
    );
    env.fails_with(3, &["umount", busy.to_str().expect("utf-8")]);

    env.ok(&["umount", dir.to_str().expect("utf-8")]);
    assert!(!is_mountpoint(&dir));
    assert_eq!(
        fs::read_to_string(env.snapdir.join("c_0/private/delta/added")).expect("unchanged"),
        "added in c\n"
    );
}

#[test]
fn mount_of_a_dir_backed_snapshot_is_a_read_only_bind() {
    if !common::system_tests_enabled("mount_of_a_dir_backed_snapshot_is_a_read_only_bind", true) {
        return;
    }
    let env = TestEnv::new();
    make_base(&env, "plain");
    env.ok(&["-q", "plain"]);
    let dir = env.path().join("browse");
    fs::create_dir(&dir).expect("mkdir");
    env.ok(&["mount", "plain_0", dir.to_str().expect("utf-8")]);
    let _guard = Mounted(dir.clone());
    assert_eq!(
        fs::read_to_string(dir.join("etc/motd")).expect("file"),
        "base motd\n"
    );
    assert_eq!(
        fs::write(dir.join("etc/motd"), "x")
            .expect_err("read-only")
            .raw_os_error(),
        Some(libc::EROFS)
    );
    env.ok(&["umount", dir.to_str().expect("utf-8")]);
    assert!(!is_mountpoint(&dir));
}

fn decisions(env: &TestEnv, args: &[&str]) -> Vec<(String, String, String)> {
    json(env, args)
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["snapshot"].as_str().expect("snapshot").to_string(),
                r["action"].as_str().expect("action").to_string(),
                r["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

#[test]
fn prune_follows_the_rules_on_recorded_times_and_keeps_pins() {
    if !common::system_tests_enabled(
        "prune_follows_the_rules_on_recorded_times_and_keeps_pins",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let times = [
        "2026-11-20T10:00:00+00:00",
        "2026-11-21T09:00:00+00:00",
        "2026-11-21T18:00:00+00:00",
        "2026-11-22T08:00:00+00:00",
        "2026-11-23T07:00:00+00:00",
        "2026-11-23T12:00:00+00:00",
    ];
    for (n, t) in times.iter().enumerate() {
        env.ok(&["-q", "c"]);
        set_created(&env, &format!("c_{n}"), t);
    }
    env.ok(&["pin", "c_0"]);
    env.fails_with(2, &["prune", "c"]);
    env.fails_with(2, &["prune", "c", "--keep-within", "1w"]);

    // Hand-computed: last 1 keeps c_5; daily 3 keeps the newest of 23rd
    // (c_5), 22nd (c_3) and 21st (c_2); c_0 is pinned.
    let got = decisions(
        &env,
        &[
            "prune",
            "c",
            "--keep-last",
            "1",
            "--keep-daily",
            "3",
            "--dry-run",
            "--json",
        ],
    );
    let actions: Vec<(&str, &str)> = got
        .iter()
        .map(|(s, a, _)| (s.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("c_0", "keep"),
            ("c_1", "remove"),
            ("c_2", "keep"),
            ("c_3", "keep"),
            ("c_4", "remove"),
            ("c_5", "keep")
        ]
    );
    assert!(got[0].2.contains("pinned"), "{got:?}");
    assert!(
        got[5].2.contains("last") && got[5].2.contains("daily"),
        "{got:?}"
    );
    assert!(got[3].2.contains("daily (2026-11-22)"), "{got:?}");

    // Within one day of the newest (not of now): c_4 and c_5.
    let within = decisions(
        &env,
        &["prune", "c", "--keep-within", "1d", "--dry-run", "--json"],
    );
    let kept: Vec<&str> = within
        .iter()
        .filter(|(_, a, _)| a == "keep")
        .map(|(s, _, _)| s.as_str())
        .collect();
    assert_eq!(kept, ["c_0", "c_4", "c_5"]);

    let table = env.ok(&[
        "prune",
        "c",
        "--keep-last",
        "1",
        "--keep-daily",
        "3",
        "--dry-run",
    ]);
    assert!(
        table.contains("ACTION") && table.contains("remove") && table.contains("REASON"),
        "{table}"
    );
    assert_eq!(names_of(&env, "c").len(), 6, "a dry run changes nothing");

    let out = env.ok(&["prune", "c", "--keep-last", "1", "--keep-daily", "3"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // Newest first, so that layers go before what they are over.
    assert!(lines[0].starts_with("deleted c_4, freed "), "{out}");
    assert!(lines[1].starts_with("deleted c_1, freed "), "{out}");
    assert!(
        lines[2].starts_with("freed ") && lines[2].ends_with(" in all"),
        "{out}"
    );
    assert_eq!(names_of(&env, "c"), ["c_0", "c_2", "c_3", "c_5"]);
}

#[test]
fn prune_all_covers_every_container() {
    if !common::system_tests_enabled("prune_all_covers_every_container", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "a");
    overlay_clone(&env, "b");
    for _ in 0..3 {
        env.ok(&["-q", "a"]);
        env.ok(&["-q", "b"]);
    }
    env.ok(&["prune", "--all", "--keep-last", "1"]);
    assert_eq!(names_of(&env, "a"), ["a_2"]);
    assert_eq!(names_of(&env, "b"), ["b_2"]);
}

fn changes(env: &TestEnv, args: &[&str]) -> (Vec<(String, String, String)>, serde_json::Value) {
    let report = json(env, args);
    let list = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().expect("kind").to_string(),
                c["path"].as_str().expect("path").to_string(),
                c["what"]
                    .as_array()
                    .expect("what")
                    .iter()
                    .map(|w| w.as_str().expect("str"))
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })
        .collect();
    (list, report["summary"].clone())
}

#[test]
fn diff_between_snapshots_and_against_the_live_container() {
    if !common::system_tests_enabled(
        "diff_between_snapshots_and_against_the_live_container",
        true,
    ) {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    for f in ["f", "g", "h", "i"] {
        fs::write(delta.join(f), "same\n").expect("write");
    }
    env.ok(&["-q", "c"]);

    fs::remove_file(delta.join("added")).expect("rm");
    fs::create_dir_all(delta.join("added/inner")).expect("file -> dir");
    fs::write(delta.join("new.txt"), "0123456789").expect("write");
    fs::create_dir(delta.join("bin")).expect("mkdir");
    nix::sys::stat::mknod(
        &delta.join("bin/sh"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .expect("whiteout");
    fs::create_dir(delta.join("etc")).expect("mkdir");
    xattr::set(delta.join("etc"), "trusted.overlay.opaque", b"y").expect("opaque");
    fs::write(delta.join("etc/new.conf"), "x").expect("write");
    fs::set_permissions(delta.join("f"), fs::Permissions::from_mode(0o600)).expect("chmod");
    nix::unistd::chown(
        &delta.join("g"),
        Some(nix::unistd::Uid::from_raw(1000)),
        None,
    )
    .expect("chown");
    xattr::set(delta.join("h"), "user.note", b"1").expect("xattr");
    fs::write(delta.join("i"), "different\n").expect("write");
    fs::write(delta.join("new\nline"), "").expect("hostile name");
    fs::write(delta.join(std::ffi::OsStr::from_bytes(b"bad\xff")), "").expect("invalid UTF-8 name");
    env.ok(&["-q", "c"]);

    let (got, summary) = changes(&env, &["diff", "--json", "c_0", "c_1"]);
    let mut set: Vec<(String, String, String)> = got.clone();
    set.sort();
    let mut want: Vec<(String, String, String)> = [
        ("type_changed", "/added", "type"),
        ("added", "/added/inner", ""),
        ("added", "/new.txt", ""),
        ("deleted", "/bin/sh", ""),
        ("deleted", "/etc/motd", ""),
        ("added", "/etc/new.conf", ""),
        ("modified", "/f", "mode"),
        ("modified", "/g", "owner"),
        ("modified", "/h", "xattrs"),
        ("modified", "/i", "content"),
        ("added", "/new\nline", ""),
        ("added", "/bad\\xff", ""),
    ]
    .iter()
    .map(|(k, p, w)| (k.to_string(), p.to_string(), w.to_string()))
    .collect();
    want.sort();
    assert_eq!(set, want);
    assert_eq!(summary["added"], 5);
    assert_eq!(summary["deleted"], 2);
    assert_eq!(summary["modified"], 4);
    assert_eq!(summary["type_changed"], 1);
    assert_eq!(summary["bytes_added"], 11);
    let report = json(&env, &["diff", "--json", "c_0", "c_1"]);
    let bad = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["path"] == "/bad\\xff")
        .expect("bad name");
    assert_eq!(
        bad["path_bytes"],
        serde_json::json!([47, 98, 97, 100, 255]),
        "exact bytes in JSON"
    );

    let text = env.ok(&["diff", "c_0", "c_1"]);
    assert!(text.contains("R /added\t(file -> directory)\n"), "{text}");
    assert!(
        text.contains("D /bin/sh\n")
            && text.contains("A /new\\nline\n")
            && text.contains("M /f\t(mode 0644 -> 0600)\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("5 added, 4 modified, 2 deleted, 1 type changed;")),
        "{text}"
    );

    // Against the live container: only what changed since c_1.
    fs::write(delta.join("live"), "now\n").expect("write");
    let (live, _) = changes(&env, &["diff", "--json", "c_1"]);
    assert_eq!(
        live,
        [("added".to_string(), "/live".to_string(), String::new())]
    );

    // Same size, mtime put back: only --content sees it.
    let meta = fs::metadata(delta.join("f")).expect("stat");
    fs::write(delta.join("f"), "SAME\n").expect("rewrite");
    let mtime = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        None,
        &delta.join("f"),
        &mtime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
    fs::remove_file(delta.join("live")).expect("rm");
    let (quick, _) = changes(&env, &["diff", "--json", "c_1"]);
    assert!(quick.is_empty(), "{quick:?}");
    let (exact, _) = changes(&env, &["diff", "--json", "--content", "c_1"]);
    assert_eq!(
        exact,
        [(
            "modified".to_string(),
            "/f".to_string(),
            "content".to_string()
        )]
    );

    env.fails_with(2, &["diff", "c_0", "d_1"]);
    env.fails_with(3, &["diff", "c_0", "c_7"]);
}
