//! The JSON that `list`, `info`, `prune --dry-run`, `diff`, `ls` and `undo` print is an
//! interface scripts parse: these tests pin it byte for byte against
//! tests/golden/, for snapshots whose times and contents are fixed.
//! Only what differs from one run to the next is masked: the temp dir's
//! path, and the allocated sizes (`used_bytes`, `bytes_on_disk`), which
//! depend on how the filesystem places blocks.
//!
//! `LXC_SNAP_BLESS=1` rewrites the golden files from the binary under test.

mod common;

use std::fs;
use std::path::Path;

use common::fixtures::{overlay_clone, set_created};
use common::TestEnv;

/// Gives every entry below `root` the same times, so that what a diff
/// reports of them does not depend on when the test ran.
fn fix_times(root: &Path) {
    let t = nix::sys::time::TimeSpec::new(1_700_000_000, 0);
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.expect("walk");
        nix::sys::stat::utimensat(
            None,
            entry.path(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
    }
}

/// Masks what changes between runs: the temp dir, and the values of the
/// fields named in `sizes`.
fn normalize(env: &TestEnv, text: &str) -> String {
    let root = env.path().to_str().expect("utf-8");
    let mut out = String::new();
    for line in text.replace(root, "$TMP").lines() {
        let field = line.trim_start().split(':').next().unwrap_or("");
        let sizes = [
            "\"used_bytes\"",
            "\"bytes_on_disk\"",
            "\"refer_bytes\"",
            "\"disk_bytes\"",
            "\"scratch_bytes\"",
        ];
        if sizes.contains(&field) {
            let (key, _) = line.split_once(':').expect("field");
            let comma = if line.ends_with(',') { "," } else { "" };
            out.push_str(&format!("{key}: \"$SIZE\"{comma}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn check(env: &TestEnv, golden: &str, args: &[&str]) {
    let got = normalize(env, &env.ok(args));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(golden);
    if std::env::var("LXC_SNAP_BLESS").as_deref() == Ok("1") {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, &got).expect("bless");
        return;
    }
    let want = fs::read_to_string(&path).expect("golden file");
    assert_eq!(
        got, want,
        "lxc-snap {args:?} changed its JSON (tests/golden/{golden})"
    );
}

#[test]
fn json_outputs_are_pinned() {
    if !common::system_tests_enabled("json_outputs_are_pinned", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "web");
    fs::create_dir_all(delta.join("srv/www")).expect("mkdir");
    fs::write(delta.join("srv/www/index.html"), "<h1>one</h1>\n").expect("write");
    fs::write(delta.join("srv/www/old.txt"), "old\n").expect("write");
    fix_times(&delta);
    env.ok(&["-q", "snap", "-m", "first\nsecond line", "web"]);
    fs::write(delta.join("srv/www/index.html"), "<h1>two, longer</h1>\n").expect("write");
    fs::remove_file(delta.join("srv/www/old.txt")).expect("rm");
    fs::write(delta.join("srv/new.txt"), "new\n").expect("write");
    fix_times(&delta);
    env.ok(&["-q", "web"]);
    env.ok(&["-q", "pin", "web_0"]);
    fs::write(delta.join("srv/new.txt"), "newer\n").expect("write");
    fix_times(&delta);
    env.ok(&["-q", "web"]);
    overlay_clone(&env, "db");
    env.ok(&["-q", "db"]);
    set_created(&env, "web_0", "2026-01-02T03:04:05+00:00");
    set_created(&env, "web_1", "2026-02-03T04:05:06+01:00");
    set_created(&env, "web_2", "2026-03-04T05:06:07-05:00");
    set_created(&env, "db_0", "2026-04-05T06:07:08+00:00");

    check(&env, "list.json", &["list", "--json"]);
    check(&env, "list-web.json", &["list", "web", "--json"]);
    check(&env, "info-web_0.json", &["info", "web_0", "--json"]);
    check(&env, "info-web_1.json", &["info", "web_1", "--json"]);
    check(
        &env,
        "prune-web.json",
        &["prune", "web", "--keep-last", "1", "--dry-run", "--json"],
    );
    check(
        &env,
        "diff-web_0-web_2.json",
        &["diff", "web_0", "web_2", "--json"],
    );
    check(
        &env,
        "diff-web_0-content.json",
        &["diff", "--content", "web_0", "--json"],
    );
    check(
        &env,
        "ls-web_0-www.json",
        &["ls", "--json", "web_0", "/srv/www"],
    );
    check(
        &env,
        "undo-web_0-srv.json",
        &["undo", "--dry-run", "--json", "web_0", "/srv"],
    );
}
