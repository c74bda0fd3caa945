//! The command line in ordinary shell use: output to a closed pipe or a
//! full disk, usage errors, mistyped subcommands and snapdirs, and hints
//! that name the right thing.

mod common;

use std::fs;
use std::os::fd::OwnedFd;
use std::process::{Output, Stdio};

use common::fixtures::overlay_clone;
use common::TestEnv;

/// `c` with two snapshots, c_0 and c_1 (a layer), a file changed between.
fn two_snapshots(env: &TestEnv) {
    let delta = overlay_clone(env, "c");
    for i in 0..50 {
        fs::write(delta.join(format!("f{i}")), format!("file {i}\n")).expect("write");
    }
    env.ok(&["-q", "snap", "-m", "first", "c"]);
    fs::write(delta.join("f1"), "changed\n").expect("write");
    env.ok(&["-q", "c"]);
}

/// Every command that prints to stdout, with arguments that make it print.
const PRINTING: &[&[&str]] = &[
    &["-l"],
    &["-l", "c"],
    &["list", "c"],
    &["list", "c", "--json"],
    &["info", "c_1"],
    &["info", "c_1", "--json"],
    &["diff", "c_0", "c_1"],
    &["diff", "c_0", "c_1", "--json"],
    &["prune", "c", "--keep-last", "1", "--dry-run"],
    &["prune", "c", "--keep-last", "1", "--dry-run", "--json"],
    &["rm", "--dry-run", "c_0"],
    &["reset", "c_0"],
    &["--bytes", "list", "c", "-o", "number,stored,used"],
    &["comment", "c_0"],
    &["completions", "bash"],
    &["--help"],
    &["list", "--help"],
    &["--version"],
];

fn run_with_stdout(env: &TestEnv, args: &[&str], stdout: Stdio) -> Output {
    env.cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("running lxc-snap")
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    if !common::system_tests_enabled("output_to_a_closed_pipe_ends_quietly", true) {
        return;
    }
    let env = TestEnv::new();
    two_snapshots(&env);
    for args in PRINTING {
        // The reading end is closed before lxc-snap writes anything, so
        // every write to stdout fails with EPIPE.
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
        drop(read);
        let out = run_with_stdout(&env, args, Stdio::from(write));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing said");
    }
}

#[test]
fn output_to_a_full_disk_is_one_clear_error() {
    if !common::system_tests_enabled("output_to_a_full_disk_is_one_clear_error", true) {
        return;
    }
    let env = TestEnv::new();
    two_snapshots(&env);
    for args in PRINTING {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = run_with_stdout(&env, args, Stdio::from(full));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("lxc-snap: writing to standard output: No space left on device\n"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn usage_errors_say_what_is_missing_and_where_to_look() {
    let env = TestEnv::new();
    let err = env.fails_with(2, &["restore", "web_1"]);
    assert!(err.contains("<NEWNAME>"), "{err}");
    assert!(err.contains("Usage: lxc-snap restore"), "{err}");
    assert!(
        err.ends_with("lxc-snap: hint: lxc-snap restore --help shows its usage\n"),
        "{err}"
    );
    for args in [&["snap"][..], &["delete"], &["prune", "--keep-last", "1"]] {
        let err = env.fails_with(2, args);
        assert!(err.contains("<"), "{args:?} names the argument: {err}");
        assert!(err.contains("Usage:"), "{args:?}: {err}");
    }
    let err = env.fails_with(2, &["completions", "tcsh"]);
    assert!(
        err.contains("bash") && err.contains("zsh") && err.contains("fish"),
        "{err}"
    );
    // Nothing at all: the usage, on stderr, as a usage error.
    let out = std::process::Command::new(common::bin())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"));
    // Global options under their own heading in a subcommand's help.
    let help = env.ok(&["list", "--help"]);
    let (own, global) = help.split_once("Global options:").expect("heading");
    assert!(global.contains("--snapdir"), "{help}");
    assert!(!own.contains("--snapdir"), "{help}");
}

#[test]
fn a_mistyped_subcommand_is_not_taken_for_a_container() {
    if !common::system_tests_enabled("a_mistyped_subcommand_is_not_taken_for_a_container", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let err = env.fails_with(3, &["lsit"]);
    assert!(err.contains("container lsit not found"), "{err}");
    assert!(err.contains("hint: did you mean lxc-snap list?"), "{err}");
    // A container of that name is snapshotted.
    overlay_clone(&env, "lsit");
    assert_eq!(env.ok(&["lsit"]), "created snapshot lsit_0\n");
    // Not one edit from a subcommand: no guess.
    let err = env.fails_with(3, &["mysql"]);
    assert!(!err.contains("did you mean"), "{err}");
    // The hint names the lxcpath it looked in.
    assert!(
        err.contains(&format!("lxc-ls -P {} ", env.lxcpath.display())),
        "{err}"
    );
    assert!(!err.contains("LXCPATH"), "{err}");
}

#[test]
fn a_snapdir_that_does_not_exist_is_an_error_and_is_created_only_near_what_exists() {
    if !common::system_tests_enabled(
        "a_snapdir_that_does_not_exist_is_an_error_and_is_created_only_near_what_exists",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    assert!(!env.snapdir.exists());
    for args in [
        &["-l"][..],
        &["list", "c"],
        &["list", "--json"],
        &["info", "c_0"],
    ] {
        let err = env.fails_with(3, args);
        assert!(
            err.contains(&format!("snapdir {} does not exist", env.snapdir.display())),
            "{args:?}: {err}"
        );
        assert!(err.contains("hint: the first snapshot creates it"), "{err}");
    }
    // Its parent exists: the first snapshot creates it, and says so.
    let out = env.run(&["c"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("lxc-snap: created snapdir {}\n", env.snapdir.display())
    );
    assert!(env.snapdir.join("c_0").is_dir());
    // Further from what exists: refused, nothing created.
    let far = env.path().join("a/b/c");
    let err = String::from_utf8_lossy(
        &std::process::Command::new(common::bin())
            .arg("-P")
            .arg(&env.lxcpath)
            .arg("--snapdir")
            .arg(&far)
            .arg("c")
            .output()
            .expect("run")
            .stderr,
    )
    .into_owned();
    assert!(err.contains("does not exist, nor does"), "{err}");
    assert!(!env.path().join("a").exists());
}

#[test]
fn hints_point_at_the_right_thing() {
    if !common::system_tests_enabled("hints_point_at_the_right_thing", true) {
        return;
    }
    let env = TestEnv::new();
    two_snapshots(&env);
    env.ok(&["restore", "c_0", "other"]);
    // Onto its own container: that is a rollback.
    let err = env.fails_with(4, &["restore", "c_0", "c"]);
    assert!(
        err.contains("hint: to put c back to c_0: lxc-snap rollback c_0"),
        "{err}"
    );
    // Onto the base everything stands on: never suggest destroying it.
    let err = env.fails_with(4, &["restore", "c_0", "base"]);
    assert!(err.contains("base is the base c_0 stands on"), "{err}");
    assert!(!err.contains("lxc-destroy"), "{err}");
    // Onto another container: remove it or choose another name.
    let err = env.fails_with(4, &["restore", "c_0", "other"]);
    assert!(err.contains("lxc-destroy"), "{err}");
    // One entry is one entry.
    let info = env.ok(&["info", "c_1"]);
    assert!(info.contains("changes to c_0 (1 entry)"), "{info}");
    // A snapshot's name where a container's goes.
    let err = env.fails_with(3, &["-l", "c_1"]);
    assert!(err.contains("hint: c_1 is a snapshot of c"), "{err}");
}

#[test]
fn comments_print_with_a_newline_and_removing_one_says_so() {
    if !common::system_tests_enabled(
        "comments_print_with_a_newline_and_removing_one_says_so",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["-q", "snap", "-m", "no newline", "c"]);
    assert_eq!(env.ok(&["comment", "c_0"]), "no newline\n");
    assert_eq!(
        env.ok(&["comment", "c_0", ""]),
        "removed the comment of c_0\n"
    );
    assert_eq!(env.ok(&["comment", "c_0"]), "");
    assert_eq!(env.ok(&["comment", "c_0", "x"]), "set the comment of c_0\n");
    // A comment file that is not there is a usage error, not a missing
    // container or snapshot.
    let missing = env.path().join("no-such-file");
    let err = env.fails_with(2, &["-c", missing.to_str().expect("utf-8"), "c"]);
    assert!(err.contains("No such file or directory"), "{err}");
}

#[test]
fn tables_show_local_time_with_the_zone_and_json_shows_utc() {
    if !common::system_tests_enabled(
        "tables_show_local_time_with_the_zone_and_json_shows_utc",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    two_snapshots(&env);
    // Recorded by someone in another zone.
    common::fixtures::set_created(&env, "c_0", "2026-01-02T03:04:05-05:00");
    let in_kolkata = |args: &[&str]| {
        let out = env
            .cmd()
            .args(args)
            .env("TZ", "Asia/Kolkata")
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let local = "2026-01-02 13:34:05";
    let list = in_kolkata(&["list", "c"]);
    assert!(
        list.lines()
            .next()
            .expect("header")
            .contains("CREATED (Asia/Kolkata)"),
        "{list}"
    );
    assert!(list.contains(local), "{list}");
    let prune = in_kolkata(&["prune", "c", "--keep-last", "1", "--dry-run"]);
    assert!(prune.contains("CREATED (Asia/Kolkata)"), "{prune}");
    assert!(prune.contains(local), "{prune}");
    let info = in_kolkata(&["info", "c_0"]);
    assert!(info.contains(&format!("{local} (Asia/Kolkata)")), "{info}");
    for args in [
        &["list", "c", "--json"][..],
        &["info", "c_0", "--json"],
        &["prune", "c", "--keep-last", "1", "--dry-run", "--json"],
    ] {
        let text = in_kolkata(args);
        assert!(
            text.contains("\"created_at\": \"2026-01-02T08:04:05Z\""),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn scripts_get_the_new_snapshot_as_json_and_tables_without_a_header() {
    if !common::system_tests_enabled(
        "scripts_get_the_new_snapshot_as_json_and_tables_without_a_header",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    two_snapshots(&env);
    let taken: serde_json::Value =
        serde_json::from_str(&env.ok(&["snap", "--json", "c"])).expect("JSON");
    assert_eq!(taken["name"], "c_2", "{taken}");
    assert_eq!(taken["number"], 2);
    assert_eq!(taken["layer_over"], "c_0", "stored as a layer");
    // The same record list --json gives, now that it is taken.
    let listed = common::fixtures::json(&env, &["list", "c", "--json"]);
    assert_eq!(listed[2], taken);
    let rows = env.ok(&["list", "c", "--no-header"]);
    let names: Vec<&str> = rows
        .lines()
        .map(|l| l.split_whitespace().next().expect("name"))
        .collect();
    assert_eq!(names, ["c_0", "c_1", "c_2"], "{rows}");
    let rows = env.ok(&["list", "--no-header"]);
    assert!(rows.trim_start().starts_with("c "), "{rows}");
    assert_eq!(rows.lines().count(), 1, "{rows}");
}

/// Quotes `word` for `sh`.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[test]
fn the_progress_line_on_a_terminal_knows_the_total_share_and_time_left() {
    if !common::system_tests_enabled(
        "the_progress_line_on_a_terminal_knows_the_total_share_and_time_left",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    // Big enough that the copy outlasts the second before the line shows.
    let chunk: Vec<u8> = (0..(64u32 << 20)).map(|i| (i % 253) as u8).collect();
    let mut big = fs::File::create(delta.join("big")).expect("create");
    for _ in 0..48 {
        std::io::Write::write_all(&mut big, &chunk).expect("write");
    }
    drop(big);
    let bin = common::bin();
    let line = [
        bin.to_str().expect("utf-8"),
        "-P",
        env.lxcpath.to_str().expect("utf-8"),
        "--snapdir",
        env.snapdir.to_str().expect("utf-8"),
        "snap",
        "c",
    ]
    .iter()
    .map(|w| sh_quote(w))
    .collect::<Vec<_>>()
    .join(" ");
    // script(1) gives the run a terminal, as an administrator's shell does.
    let out = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env_remove("LXC_SNAP_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("created snapshot c_0"), "{text}");
    // The first snapshot counts the tree first: the line knows the total.
    assert!(text.contains(" of 3.0 GiB, "), "no total in: {text}");
    assert!(text.contains(" entries, "), "{text}");
    let share = shares_in(&text);
    assert!(
        share.iter().any(|p| *p > 0 && *p < 100),
        "a share between none and all: {share:?} in {text}"
    );
    assert!(text.contains(" s left"), "no time left in: {text}");
}

/// Every `NN%` in `text`.
fn shares_in(text: &str) -> Vec<u64> {
    text.split('%')
        .filter_map(|before| {
            let digits: String = before
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.chars().rev().collect::<String>().parse().ok()
        })
        .collect()
}
