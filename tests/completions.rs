//! Shell completion: the names lookup over a hand-built lxcpath and snapdir,
//! and the generated scripts run in the shells themselves, as a user's TAB
//! would run them.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestEnv;

/// A snapshot as `lxc-snap` leaves it, as far as listing cares.
fn make_snapshot(env: &TestEnv, container: &str, number: u64) {
    let dir = env.snapdir.join(format!("{container}_{number}"));
    fs::create_dir_all(&dir).expect("mkdir snapshot");
    let meta = serde_json::json!({
        "format_version": 1,
        "tool_version": "0.1.0",
        "container": container,
        "lxcpath": env.lxcpath,
        "created": "2026-01-02T03:04:05+00:00",
        "backing": "overlay",
        "rootfs_key": "lxc.rootfs.path",
        "rootfs_prefix": "overlay",
        "lowers": [],
        "files": 1,
        "bytes": 0,
    });
    fs::write(dir.join("lxc-snap.json"), meta.to_string()).expect("write metadata");
}

fn make_container(env: &TestEnv, name: &str) {
    let dir = env.lxcpath.join(name);
    fs::create_dir_all(&dir).expect("mkdir container");
    fs::write(dir.join("config"), format!("lxc.uts.name = {name}\n")).expect("config");
}

/// mysql_0, mysql_3 and web_1 in the snapdir; containers db and web.
fn populated() -> TestEnv {
    let env = TestEnv::new();
    make_snapshot(&env, "mysql", 0);
    make_snapshot(&env, "mysql", 3);
    make_snapshot(&env, "web", 1);
    // Not ours: lxc-snapshot's tree, and a name without metadata.
    fs::create_dir_all(env.snapdir.join("db/snap0")).expect("mkdir");
    fs::create_dir_all(env.snapdir.join("stray_7")).expect("mkdir");
    make_container(&env, "db");
    make_container(&env, "web");
    env
}

/// `lxc-snap __complete-names -- WORDS...` with the lxcpath and snapdir
/// given in the words, as a user would have typed them.
fn lookup(env: &TestEnv, words: &[&str]) -> (bool, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_lxc-snap"))
        .arg("__complete-names")
        .arg("--")
        .arg("-P")
        .arg(&env.lxcpath)
        .arg("--snapdir")
        .arg(&env.snapdir)
        .args(words)
        .env_remove("LXC_SNAP_DIR")
        .output()
        .expect("running lxc-snap");
    let names = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    (out.status.success(), names)
}

#[test]
fn lookup_prints_snapshot_names_where_a_snapshot_goes() {
    let env = populated();
    for words in [
        &["restore"][..],
        &["comment"],
        &["-r"],
        &["-q", "comment", "-c", "f"],
    ] {
        assert_eq!(
            lookup(&env, words),
            (
                true,
                vec!["mysql_0".into(), "mysql_3".into(), "web_1".into()]
            ),
            "{words:?}"
        );
    }
}

#[test]
fn lookup_prints_container_names_where_a_container_goes() {
    let env = populated();
    // Containers of the lxcpath and containers that have snapshots.
    let all: Vec<String> = ["db", "mysql", "web"].map(String::from).to_vec();
    for words in [
        &[][..],
        &["snap"],
        &["list", "--json"],
        &["-l"],
        &["-c", "f"],
    ] {
        assert_eq!(lookup(&env, words), (true, all.clone()), "{words:?}");
    }
}

#[test]
fn lookup_fails_quietly_where_no_name_goes() {
    let env = populated();
    for words in [
        &["restore", "mysql_0"][..],
        &["snap", "-m"],
        &["completions"],
        &["--snapdir"],
        &["mysql"],
    ] {
        assert_eq!(lookup(&env, words), (false, vec![]), "{words:?}");
    }
}

#[test]
fn lookup_uses_lxc_snap_dir_and_an_empty_store_gives_no_names() {
    let env = populated();
    let run = |snapdir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_lxc-snap"))
            .args(["__complete-names", "--", "restore"])
            .env("LXC_SNAP_DIR", snapdir)
            .output()
            .expect("running lxc-snap")
    };
    let out = run(&env.snapdir);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "mysql_0\nmysql_3\nweb_1\n"
    );
    let out = run(&env.path().join("missing"));
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

fn script(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lxc-snap"))
        .args(["completions", shell])
        .output()
        .expect("running lxc-snap");
    assert!(out.status.success(), "completions {shell}");
    assert!(out.stderr.is_empty());
    String::from_utf8(out.stdout).expect("UTF-8 script")
}

#[test]
fn completions_refuses_other_shells() {
    let out = Command::new(env!("CARGO_BIN_EXE_lxc-snap"))
        .args(["completions", "tcsh"])
        .output()
        .expect("running lxc-snap");
    assert_eq!(out.status.code(), Some(2));
}

/// A directory whose `lxc-snap` is the binary under test, to put first in
/// PATH: the scripts call `lxc-snap` by name.
fn bin_dir(env: &TestEnv) -> PathBuf {
    let dir = env.path().join("bin");
    if !dir.exists() {
        fs::create_dir_all(&dir).expect("mkdir bin");
        symlink(env!("CARGO_BIN_EXE_lxc-snap"), dir.join("lxc-snap")).expect("symlink");
    }
    dir
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// What bash offers for `line` + TAB (the last word is the one completed).
fn bash_complete(env: &TestEnv, line: &[&str]) -> Vec<String> {
    let file = env.path().join("lxc-snap.bash");
    fs::write(&file, script("bash")).expect("write script");
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=({})\n\
         COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _lxc_snap lxc-snap \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display(),
        words.join(" ")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .current_dir(env.path())
        .env("PATH", path_with(&bin_dir(env)))
        .env("LXC_SNAP_DIR", &env.snapdir)
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    got.sort();
    got
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bash_completes_subcommands_options_and_names() {
    let env = populated();
    let lxcpath = env.lxcpath.display().to_string();
    assert_eq!(
        bash_complete(&env, &["lxc-snap", "restore", ""]),
        strings(&["mysql_0", "mysql_3", "web_1"])
    );
    assert_eq!(
        bash_complete(&env, &["lxc-snap", "-r", "m"]),
        strings(&["mysql_0", "mysql_3"])
    );
    assert_eq!(
        bash_complete(&env, &["lxc-snap", "-P", &lxcpath, "snap", ""]),
        strings(&["db", "mysql", "web"])
    );
    assert_eq!(
        bash_complete(&env, &["lxc-snap", "co"]),
        strings(&["comment", "completions"])
    );
    // The first word: subcommands and (the original syntax) containers.
    let first = bash_complete(&env, &["lxc-snap", "-P", &lxcpath, ""]);
    for want in [
        "snap",
        "list",
        "restore",
        "comment",
        "completions",
        "db",
        "web",
    ] {
        assert!(first.iter().any(|w| w == want), "{want} not in {first:?}");
    }
    assert!(!first.iter().any(|w| w.starts_with('-')), "{first:?}");
    // A subcommand's own options (clap_complete's bash needs a fix-up for
    // a program name with a hyphen).
    assert_eq!(
        bash_complete(&env, &["lxc-snap", "snap", "--m"]),
        strings(&["--message"])
    );
    assert_eq!(
        bash_complete(&env, &["lxc-snap", "completions", "z"]),
        strings(&["zsh"])
    );
}

/// Runs `shell` on `args` if it is installed; `None` (and a note) if not.
fn run_if_installed(shell: &str, args: &[&str], env: &TestEnv) -> Option<std::process::Output> {
    if Command::new(shell).arg("--version").output().is_err() {
        eprintln!("NOTE: {shell} is not installed: its completion script is not exercised");
        return None;
    }
    Some(
        Command::new(shell)
            .args(args)
            .current_dir(env.path())
            .env("PATH", path_with(&bin_dir(env)))
            .env("LXC_SNAP_DIR", &env.snapdir)
            .output()
            .expect("running the shell"),
    )
}

#[test]
fn zsh_and_fish_scripts_parse_and_fish_completes_names() {
    let env = populated();
    for (shell, file) in [("zsh", "_lxc-snap"), ("fish", "lxc-snap.fish")] {
        let path = env.path().join(file);
        fs::write(&path, script(shell)).expect("write script");
        let path = path.display().to_string();
        if let Some(out) = run_if_installed(shell, &["-n", &path], &env) {
            assert!(
                out.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let fish = env.path().join("lxc-snap.fish").display().to_string();
    let program = format!("source '{fish}'; complete -C 'lxc-snap restore '");
    if let Some(out) = run_if_installed("fish", &["-c", &program], &env) {
        assert!(out.status.success());
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect();
        assert_eq!(got, strings(&["mysql_0", "mysql_3", "web_1"]));
    }
}
