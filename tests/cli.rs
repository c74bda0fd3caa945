//! The binary over hand-built containers in a throwaway lxcpath and
//! snapdir: every config spelling, every kind of file, every refusal.
//! (Tests that start containers with LXC are in tests/e2e.rs.)

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;

use common::fidelity::{assert_trees_identical, build_every_kind};
use common::fixtures::{
    captured, config_value, json, make_base, make_clone, names_of, overlay_clone,
};
use common::TestEnv;

#[test]
fn snapshot_and_restore_keep_every_kind_of_file() {
    if !common::system_tests_enabled("snapshot_and_restore_keep_every_kind_of_file", true) {
        return;
    }
    let env = TestEnv::new();
    make_base(&env, "base");
    let delta = env.lxcpath.join("c1/overlay/delta");
    fs::create_dir_all(env.lxcpath.join("c1/overlay")).expect("mkdir");
    build_every_kind(&delta);
    let lower = env.lxcpath.join("base/rootfs");
    fs::write(
        env.lxcpath.join("c1/config"),
        format!(
            "lxc.rootfs.path = overlay:{}:{}\nlxc.uts.name = c1\n",
            lower.display(),
            delta.display()
        ),
    )
    .expect("config");

    assert_eq!(env.ok(&["c1"]).trim(), "created snapshot c1_0");
    let snap = env.snapdir.join("c1_0");
    assert_trees_identical(&delta, &snap.join("private/delta"));
    assert_eq!(
        fs::metadata(snap.join("private")).expect("stat").mode() & 0o777,
        0o700
    );

    env.ok(&["-r", "c1_0", "copy"]);
    // Against the snapshot, what restore copied: reading a symlink (as the
    // comparison above did) moves its atime, in the source as in any tree.
    assert_trees_identical(
        &snap.join("private/delta"),
        &env.lxcpath.join("copy/overlay/delta"),
    );
    // The restored copy is independent of the snapshot: no shared inodes.
    for entry in walkdir::WalkDir::new(env.lxcpath.join("copy/overlay/delta")) {
        let entry = entry.expect("walk");
        let rel = entry
            .path()
            .strip_prefix(env.lxcpath.join("copy/overlay/delta"))
            .expect("rel");
        let restored = fs::symlink_metadata(entry.path()).expect("stat");
        let captured = fs::symlink_metadata(snap.join("private/delta").join(rel)).expect("stat");
        assert_ne!(
            restored.ino(),
            captured.ino(),
            "{} shares an inode with the snapshot",
            rel.display()
        );
    }

    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(snap.join("lxc-snap.json")).expect("meta")).expect("json");
    assert_eq!(meta["container"], "c1");
    assert_eq!(meta["backing"], "overlay");
    assert_eq!(meta["format_version"], 1);
    assert_eq!(meta["lowers"][0], lower.to_str().expect("utf-8"));
    let walked = walkdir::WalkDir::new(&delta)
        .min_depth(1)
        .into_iter()
        .count() as u64;
    assert_eq!(meta["files"], walked, "file count in the metadata");
}

#[test]
fn every_config_spelling_snapshots_and_restores_in_its_own_spelling() {
    if !common::system_tests_enabled(
        "every_config_spelling_snapshots_and_restores_in_its_own_spelling",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    make_base(&env, "base");
    let spellings = [
        ("new", "lxc.rootfs.path", "overlay", "overlay/delta"),
        ("old", "lxc.rootfs", "overlayfs", "delta0"),
        ("mixed", "lxc.rootfs.path", "overlayfs", "delta0"),
        ("mixed2", "lxc.rootfs", "overlay", "overlay/delta"),
    ];
    for (name, key, prefix, delta_rel) in spellings {
        make_clone(&env, "base", name, key, prefix, delta_rel);
        env.ok(&["snap", name]);
        let snap_config =
            fs::read_to_string(env.snapdir.join(format!("{name}_0/config"))).expect("config");
        let stacked = config_value(&snap_config, key).expect("rootfs key kept");
        assert_eq!(
            stacked,
            format!(
                "{prefix}:{snap}/private/delta:{lower}:{snap}/private/scratch/upper",
                snap = env.snapdir.join(format!("{name}_0")).display(),
                lower = env.lxcpath.join("base/rootfs").display()
            )
        );
        let restored = format!("{name}-r");
        env.ok(&["restore", &format!("{name}_0"), &restored]);
        let config =
            fs::read_to_string(env.lxcpath.join(&restored).join("config")).expect("config");
        assert_eq!(
            config_value(&config, key),
            Some(format!(
                "{prefix}:{}:{}",
                env.lxcpath.join("base/rootfs").display(),
                env.lxcpath.join(&restored).join("overlay/delta").display()
            ))
        );
        assert!(
            config.starts_with("# clone of base\nlxc.net.0.type = empty\n"),
            "{config}"
        );
        assert_eq!(
            fs::read_to_string(env.lxcpath.join(&restored).join("overlay/delta/added"))
                .expect("restored file"),
            format!("added in {name}\n")
        );
    }
    let deps = fs::read_to_string(env.lxcpath.join("base/lxc_snapshots")).expect("lxc_snapshots");
    for (name, ..) in spellings {
        assert!(
            deps.contains(&format!("{}\n{name}_0\n", env.snapdir.display())),
            "{deps}"
        );
        assert!(
            deps.contains(&format!("{}\n{name}-r\n", env.lxcpath.display())),
            "{deps}"
        );
    }
    let rdeps = fs::read_to_string(env.lxcpath.join("new-r/lxc_rdepends")).expect("rdepends");
    assert_eq!(rdeps, format!("{}\nbase\n", env.lxcpath.display()));
}

#[test]
fn restore_rewrites_what_a_clone_rewrites() {
    if !common::system_tests_enabled("restore_rewrites_what_a_clone_rewrites", true) {
        return;
    }
    let env = TestEnv::new();
    make_base(&env, "base");
    let dir = env.lxcpath.join("web");
    let delta = overlay_clone(&env, "web");
    fs::write(dir.join("fstab"), "proc proc proc defaults 0 0\n").expect("fstab");
    fs::create_dir(dir.join("hooks")).expect("mkdir");
    fs::write(dir.join("hooks/pre"), "#!/bin/sh\nexit 0\n").expect("hook");
    fs::set_permissions(dir.join("hooks/pre"), fs::Permissions::from_mode(0o750)).expect("chmod");
    let mut config = fs::read_to_string(dir.join("config")).expect("config");
    config.push_str(&format!(
        "lxc.net.0.hwaddr = 00:16:3e:00:00:01\nlxc.mount.fstab = {d}/fstab\nlxc.hook.pre-start = {d}/hooks/pre arg\nlxc.mount.entry = overlay opt overlay lowerdir=/srv,upperdir={d}/up,workdir={d}/wk 0 0\nlxc.ephemeral = 1\nlxc.utsname = web\n",
        d = dir.display()
    ));
    fs::write(dir.join("config"), config).expect("config");
    fs::create_dir(delta.join("etc")).expect("mkdir");
    fs::write(delta.join("etc/hostname"), "web\n").expect("hostname");

    env.ok(&["web"]);
    env.ok(&["-r", "web_0", "web2"]);
    let new = env.lxcpath.join("web2");
    let text = fs::read_to_string(new.join("config")).expect("config");
    assert_eq!(config_value(&text, "lxc.uts.name").as_deref(), Some("web2"));
    assert_eq!(config_value(&text, "lxc.utsname").as_deref(), Some("web2"));
    let mac = config_value(&text, "lxc.net.0.hwaddr").expect("mac");
    assert!(mac.starts_with("10:66:6a:") && mac.len() == 17, "{mac}");
    let snap_mac = config_value(
        &fs::read_to_string(env.snapdir.join("web_0/config")).expect("config"),
        "lxc.net.0.hwaddr",
    );
    assert_ne!(
        Some(mac.clone()),
        snap_mac,
        "snapshot and restore get different MACs"
    );
    assert_eq!(
        config_value(&text, "lxc.mount.fstab"),
        Some(format!("{}/fstab", new.display()))
    );
    assert_eq!(
        fs::read_to_string(new.join("fstab")).expect("fstab copied"),
        "proc proc proc defaults 0 0\n"
    );
    assert_eq!(
        config_value(&text, "lxc.hook.pre-start"),
        Some(format!("{}/hooks/pre arg", new.display()))
    );
    assert_eq!(
        fs::metadata(new.join("hooks/pre"))
            .expect("hook copied")
            .mode()
            & 0o777,
        0o750
    );
    assert!(
        text.contains(&format!(
            "upperdir={d}/up,workdir={d}/wk",
            d = new.display()
        )),
        "{text}"
    );
    assert_eq!(config_value(&text, "lxc.ephemeral").as_deref(), Some("0"));
    assert!(
        !text.contains(&format!("{}/", dir.display())),
        "no path into the old container: {text}"
    );
    assert_eq!(
        fs::read_to_string(new.join("overlay/delta/etc/hostname")).expect("hostname"),
        "web2\n"
    );
    // The snapshot keeps what it captured.
    assert_eq!(
        fs::read_to_string(env.snapdir.join("web_0/private/delta/etc/hostname")).expect("captured"),
        "web\n"
    );
    assert_eq!(
        fs::read_to_string(delta.join("etc/hostname")).expect("original"),
        "web\n"
    );
}

#[test]
fn restore_copies_the_host_name_up_from_the_base_and_never_follows_symlinks() {
    if !common::system_tests_enabled(
        "restore_copies_the_host_name_up_from_the_base_and_never_follows_symlinks",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let lower = make_base(&env, "base");
    fs::write(lower.join("etc/hostname"), "base\n").expect("hostname");
    overlay_clone(&env, "a");
    env.ok(&["a"]);
    env.ok(&["-r", "a_0", "b"]);
    assert_eq!(
        fs::read_to_string(env.lxcpath.join("b/overlay/delta/etc/hostname")).expect("copied up"),
        "b\n"
    );
    assert_eq!(
        fs::read_to_string(lower.join("etc/hostname")).expect("base"),
        "base\n"
    );

    // A container whose /etc/hostname is a symlink to a host file.
    let victim = env.path().join("host-file");
    fs::write(&victim, "host secret\n").expect("victim");
    let delta = overlay_clone(&env, "evil");
    fs::create_dir(delta.join("etc")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, delta.join("etc/hostname")).expect("symlink");
    env.ok(&["evil"]);
    env.ok(&["-r", "evil_0", "evil2"]);
    assert_eq!(
        fs::read_to_string(&victim).expect("victim"),
        "host secret\n"
    );
    assert_eq!(
        fs::read_link(env.lxcpath.join("evil2/overlay/delta/etc/hostname"))
            .expect("still a symlink"),
        victim
    );
}

#[test]
fn dir_backed_containers_get_a_full_copy_and_restore_as_dir_containers() {
    if !common::system_tests_enabled(
        "dir_backed_containers_get_a_full_copy_and_restore_as_dir_containers",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let rootfs = make_base(&env, "plain");
    fs::create_dir(&env.snapdir).expect("mkdir snapdir");
    let out = env.run(&["plain"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("directory-backed") && stderr.contains("lxc-copy -s -B overlayfs"),
        "{stderr}"
    );
    assert_trees_identical(&rootfs, &env.snapdir.join("plain_0/private/rootfs"));
    let snap_config = fs::read_to_string(env.snapdir.join("plain_0/config")).expect("config");
    assert_eq!(
        config_value(&snap_config, "lxc.rootfs.path"),
        Some(format!(
            "overlay:{s}/private/rootfs:{s}/private/scratch/upper",
            s = env.snapdir.join("plain_0").display()
        ))
    );
    assert_eq!(json(&env, &["-l", "plain", "--json"])[0]["backing"], "dir");

    env.ok(&["-r", "plain_0", "plain2"]);
    let config = fs::read_to_string(env.lxcpath.join("plain2/config")).expect("config");
    assert_eq!(
        config_value(&config, "lxc.rootfs.path"),
        Some(format!(
            "dir:{}",
            env.lxcpath.join("plain2/rootfs").display()
        ))
    );
    assert_eq!(
        fs::read_to_string(env.lxcpath.join("plain2/rootfs/etc/motd")).expect("copied"),
        "base motd\n"
    );
    assert!(!env.lxcpath.join("plain2/lxc_rdepends").exists());
}

#[test]
fn unsupported_backends_are_refused_with_their_own_exit_status() {
    if !common::system_tests_enabled(
        "unsupported_backends_are_refused_with_their_own_exit_status",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    fs::create_dir(&env.snapdir).expect("mkdir snapdir");
    fs::create_dir_all(env.lxcpath.join("f")).expect("mkdir");
    let image = env.lxcpath.join("f/rootdev");
    fs::write(&image, "not a directory").expect("image");
    for (name, value) in [
        ("b", "btrfs:/var/lib/lxc/b/rootfs".to_string()),
        ("z", "zfs:tank/lxc/z".to_string()),
        ("l", "lvm:/dev/vg/l".to_string()),
        ("o", format!("loop:{}", image.display())),
        ("r", "rbd:pool/r".to_string()),
        ("f", image.display().to_string()),
    ] {
        fs::create_dir_all(env.lxcpath.join(name)).expect("mkdir");
        fs::write(
            env.lxcpath.join(name).join("config"),
            format!("lxc.rootfs.path = {value}\n"),
        )
        .expect("config");
        let stderr = env.fails_with(6, &[name]);
        assert!(
            stderr.starts_with(&format!("lxc-snap: cannot snapshot {name}: ")),
            "{stderr}"
        );
        assert!(stderr.contains("supports overlay"), "{stderr}");
    }
    assert!(!env.snapdir.join("b_0").exists());
}

#[test]
fn overlay_redirect_deltas_are_refused_and_leave_nothing() {
    if !common::system_tests_enabled(
        "overlay_redirect_deltas_are_refused_and_leave_nothing",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "r");
    fs::create_dir(delta.join("moved")).expect("mkdir");
    xattr::set(delta.join("moved"), "trusted.overlay.redirect", b"/etc").expect("xattr");
    let stderr = env.fails_with(6, &["r"]);
    assert!(stderr.contains("moved"), "{stderr}");
    let left: Vec<_> = fs::read_dir(&env.snapdir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, [".lxc-snap"], "no snapshot and no staging left");
    assert!(!fs::read_to_string(env.lxcpath.join("base/lxc_snapshots"))
        .unwrap_or_default()
        .contains("r_0"));
}

#[test]
fn invalid_names_touch_nothing() {
    let env = TestEnv::new();
    let long = "a".repeat(65);
    for args in [
        vec!["../x"],
        vec!["-x"],
        vec!["snap", "a/b"],
        vec!["snap", "--", "-x"],
        vec!["snap", &long],
        vec!["snap", ".hidden"],
        vec!["snap", "tab\tname"],
        vec!["-r", "mysql_1", "../../etc"],
        vec!["restore", "mysql_1", "a/b"],
        vec!["restore", "../mysql_1", "x"],
        vec!["-l", "a/b"],
        vec!["comment", "mysql_01"],
    ] {
        let stderr = env.fails_with(2, &args);
        assert!(stderr.starts_with("lxc-snap: "), "{args:?}: {stderr}");
    }
    assert!(!env.snapdir.exists(), "nothing created");
    assert_eq!(fs::read_dir(&env.lxcpath).expect("ls").count(), 0);
}

#[test]
fn missing_things_are_not_found_and_existing_targets_are_refused() {
    if !common::system_tests_enabled(
        "missing_things_are_not_found_and_existing_targets_are_refused",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let stderr = env.fails_with(3, &["ghost"]);
    assert!(
        stderr.starts_with("lxc-snap: container ghost not found in "),
        "{stderr}"
    );
    env.fails_with(3, &["-r", "ghost_0", "x"]);
    env.fails_with(3, &["-l", "ghost"]);
    env.fails_with(3, &["comment", "ghost_0"]);

    overlay_clone(&env, "c");
    env.ok(&["c"]);
    let before = fs::read_to_string(env.lxcpath.join("base/config")).expect("config");
    let stderr = env.fails_with(4, &["restore", "c_0", "base"]);
    assert!(
        stderr.contains("already exists") && stderr.contains("hint:"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(env.lxcpath.join("base/config")).expect("config"),
        before
    );
    assert!(!env.lxcpath.join("base/overlay").exists());
    let staged: Vec<_> = fs::read_dir(&env.lxcpath)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // An empty list for a container that exists but has no snapshots.
    assert_eq!(json(&env, &["-l", "base", "--json"]), serde_json::json!([]));
}

#[test]
fn restore_under_the_original_name_after_destroy() {
    if !common::system_tests_enabled("restore_under_the_original_name_after_destroy", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "mysql");
    fs::write(delta.join("table"), "v1\n").expect("write");
    env.ok(&["mysql"]);
    fs::write(delta.join("table"), "v2\n").expect("write");
    fs::remove_dir_all(env.lxcpath.join("mysql")).expect("destroy by hand");
    env.ok(&["-r", "mysql_0", "mysql"]);
    assert_eq!(
        fs::read_to_string(env.lxcpath.join("mysql/overlay/delta/table")).expect("restored"),
        "v1\n"
    );
    env.ok(&["mysql"]);
    assert_eq!(names_of(&env, "mysql"), ["mysql_0", "mysql_1"]);
}

#[test]
fn numbers_match_names_exactly_sort_numerically_and_are_never_reused() {
    if !common::system_tests_enabled(
        "numbers_match_names_exactly_sort_numerically_and_are_never_reused",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "my");
    overlay_clone(&env, "my_db");
    for _ in 0..11 {
        env.ok(&["-q", "my"]);
    }
    env.ok(&["my_db"]);
    let want: Vec<String> = (0..11).map(|n| format!("my_{n}")).collect();
    assert_eq!(names_of(&env, "my"), want);
    assert_eq!(names_of(&env, "my_db"), ["my_db_0"]);
    let all = json(&env, &["-l", "--json"]);
    assert_eq!(all[0]["container"], "my");
    assert_eq!(all[0]["snapshots"], 11);
    assert_eq!(all[1]["container"], "my_db");
    assert_eq!(all[1]["snapshots"], 1);

    fs::remove_dir_all(env.snapdir.join("my_10")).expect("delete newest by hand");
    env.ok(&["my"]);
    assert_eq!(
        names_of(&env, "my").last().map(String::as_str),
        Some("my_11")
    );

    let table = env.ok(&["-l", "my"]);
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("total: "))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(rows[..3], ["my_0", "my_1", "my_2"]);
    assert_eq!(rows.last(), Some(&"my_11"));
}

#[test]
fn comments_from_every_source_with_limits() {
    if !common::system_tests_enabled("comments_from_every_source_with_limits", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let file = env.path().join("comment");
    fs::write(
        &file,
        "Initial definition of table doomahicky\nsecond line\n",
    )
    .expect("write");
    env.ok(&["-c", file.to_str().expect("utf-8"), "c"]);
    env.ok(&["snap", "-m", "from -m", "c"]);
    let mut child = env
        .cmd()
        .args(["snap", "-c", "-", "c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        "from stdin".as_bytes(),
    )
    .expect("write");
    assert!(child.wait().expect("wait").success());
    env.ok(&["c"]);

    assert_eq!(
        env.ok(&["comment", "c_0"]),
        "Initial definition of table doomahicky\nsecond line\n"
    );
    assert_eq!(
        fs::read(env.snapdir.join("c_0/comment")).expect("file"),
        fs::read(&file).expect("file")
    );
    assert_eq!(
        env.ok(&["comment", "c_1"]),
        "from -m\n",
        "a comment ends with a newline"
    );
    assert_eq!(env.ok(&["comment", "c_2"]), "from stdin\n");
    assert_eq!(env.ok(&["comment", "c_3"]), "");
    assert!(
        !env.snapdir.join("c_3/comment").exists(),
        "no comment file without a comment"
    );

    let list = json(&env, &["list", "c", "--json"]);
    assert_eq!(
        list[0]["comment"],
        "Initial definition of table doomahicky\nsecond line\n"
    );
    assert_eq!(list[3]["comment"], serde_json::Value::Null);
    let table = env.ok(&["-l", "c"]);
    assert!(
        table.contains("Initial definition of table doomahicky"),
        "{table}"
    );
    assert!(
        !table.contains("second line"),
        "only the first line: {table}"
    );

    env.ok(&["comment", "c_3", "now commented"]);
    assert_eq!(env.ok(&["comment", "c_3"]), "now commented\n");
    env.ok(&["comment", "c_3", "-c", file.to_str().expect("utf-8")]);
    assert_eq!(
        env.ok(&["comment", "c_3"]),
        "Initial definition of table doomahicky\nsecond line\n"
    );

    let big = env.path().join("big");
    fs::write(&big, "x".repeat(64 * 1024 + 1)).expect("write");
    env.fails_with(2, &["comment", "c_3", "-c", big.to_str().expect("utf-8")]);
    let bad = env.path().join("bad");
    fs::write(&bad, b"\xff\xfe").expect("write");
    env.fails_with(2, &["-c", bad.to_str().expect("utf-8"), "c"]);
    let link = env.path().join("link");
    std::os::unix::fs::symlink("/etc/shadow", &link).expect("symlink");
    let stderr = env.fails_with(2, &["-c", link.to_str().expect("utf-8"), "c"]);
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(
        names_of(&env, "c").len(),
        4,
        "refused comments made no snapshot"
    );
    let exact = env.path().join("exact");
    fs::write(&exact, "y".repeat(64 * 1024)).expect("write");
    env.ok(&["comment", "c_3", "-c", exact.to_str().expect("utf-8")]);

    let ts = fs::read_to_string(env.snapdir.join("c_0/ts")).expect("ts");
    assert_eq!(ts.len(), 19, "{ts:?}");
    assert!(
        ts.chars().enumerate().all(|(i, ch)| match i {
            4 | 7 | 13 | 16 => ch == ':',
            10 => ch == ' ',
            _ => ch.is_ascii_digit(),
        }),
        "{ts:?}"
    );
}

#[test]
fn leftovers_of_a_crash_are_invisible_and_removed_by_the_next_run() {
    if !common::system_tests_enabled(
        "leftovers_of_a_crash_are_invisible_and_removed_by_the_next_run",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["c"]);
    let leftover = env.snapdir.join(".lxc-snap.tmp.c_1.XyZ123");
    fs::create_dir_all(leftover.join("private/delta/some/dir")).expect("mkdir");
    fs::write(leftover.join("lxc-snap.json"), "{}").expect("write");
    // A run that died between registering with the base and its rename.
    let registered = env.snapdir.join(".lxc-snap.tmp.c_5.QrS789");
    fs::create_dir(&registered).expect("mkdir");
    let base_entry = format!("{}\nbase\n", env.lxcpath.display());
    fs::write(registered.join("lxc_rdepends"), &base_entry).expect("rdepends");
    let deps_file = env.lxcpath.join("base/lxc_snapshots");
    let mut deps = fs::read_to_string(&deps_file).expect("lxc_snapshots");
    deps.push_str(&format!("{}\nc_5\n", env.snapdir.display()));
    fs::write(&deps_file, deps).expect("stale entry");
    let other = env.snapdir.join(".lxc-snap.tmp.d_0.AbC456");
    fs::create_dir(&other).expect("mkdir");
    assert_eq!(names_of(&env, "c"), ["c_0"]);
    let out = env.run(&["c"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("removed {}", leftover.display())),
        "{stderr}"
    );
    assert!(!leftover.exists());
    assert!(!registered.exists());
    let deps = fs::read_to_string(&deps_file).expect("lxc_snapshots");
    assert!(
        !deps.contains("c_5"),
        "stale registration taken back: {deps}"
    );
    assert!(
        deps.contains(&format!("{}\nc_0\n", env.snapdir.display())),
        "{deps}"
    );
    assert!(
        other.exists(),
        "another container's staging is not this run's business"
    );
    assert_eq!(names_of(&env, "c"), ["c_0", "c_1"]);
}

#[test]
fn lxc_snapshot_trees_in_the_snapdir_are_ignored_and_untouched() {
    if !common::system_tests_enabled(
        "lxc_snapshot_trees_in_the_snapdir_are_ignored_and_untouched",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "mysql");
    let theirs = env.snapdir.join("mysql/snap0");
    fs::create_dir_all(theirs.join("rootfs")).expect("mkdir");
    fs::write(theirs.join("config"), "lxc.rootfs.path = dir:/x\n").expect("config");
    fs::write(theirs.join("ts"), "2026:01:01 00:00:00").expect("ts");
    env.ok(&["mysql"]);
    assert_eq!(names_of(&env, "mysql"), ["mysql_0"]);
    assert_eq!(
        json(&env, &["-l", "--json"])
            .as_array()
            .expect("array")
            .len(),
        1
    );
    assert_eq!(
        fs::read_to_string(theirs.join("ts")).expect("ts"),
        "2026:01:01 00:00:00"
    );
    assert_eq!(
        fs::read_dir(env.snapdir.join("mysql")).expect("ls").count(),
        1
    );
}

#[test]
fn concurrent_snapshots_of_one_container_get_distinct_numbers() {
    if !common::system_tests_enabled(
        "concurrent_snapshots_of_one_container_get_distinct_numbers",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    for i in 0..200 {
        fs::write(delta.join(format!("f{i}")), vec![b'x'; 4096]).expect("write");
    }
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.cmd()
                .arg("c")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    assert_eq!(names_of(&env, "c"), ["c_0", "c_1", "c_2", "c_3"]);
    for n in 0..4 {
        assert_trees_identical(&delta, &captured(&env, &format!("c_{n}")));
    }
}

#[test]
fn without_root_it_says_so_in_one_line() {
    if !common::system_tests_enabled("without_root_it_says_so_in_one_line", false) {
        return;
    }
    let env = TestEnv::new();
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    // A copy of the binary that an unprivileged user can run wherever the
    // build tree lives.
    let binary = env.path().join("lxc-snap");
    fs::copy(env!("CARGO_BIN_EXE_lxc-snap"), &binary).expect("copy binary");
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).expect("chmod");
    for args in [
        vec!["c"],
        vec!["-r", "c_0", "d"],
        vec!["comment", "c_0", "text"],
        vec!["rm", "c_0"],
        vec!["rollback", "c_0"],
        vec!["info", "c_0"],
        vec!["diff", "c_0"],
    ] {
        let mut cmd = std::process::Command::new(&binary);
        cmd.arg("-P")
            .arg(&env.lxcpath)
            .arg("--snapdir")
            .arg(&env.snapdir);
        let out = std::os::unix::process::CommandExt::uid(&mut cmd, 65534)
            .args(&args)
            .output()
            .expect("run as nobody");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 2, "{stderr}");
        assert!(
            stderr.contains("needs root") && stderr.contains("sudo"),
            "{stderr}"
        );
    }
    assert!(!env.snapdir.exists());
}

#[test]
fn help_and_version() {
    let env = TestEnv::new();
    let help = env.ok(&["--help"]);
    for word in [
        "snap",
        "list",
        "restore",
        "comment",
        "--lxcpath",
        "--snapdir",
        "--quiet",
        "-r SNAP NEWNAME",
    ] {
        assert!(help.contains(word), "{word} in --help");
    }
    assert_eq!(
        env.ok(&["--version"]).trim(),
        format!("lxc-snap {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_full_disk_fails_cleanly_and_changes_nothing() {
    if !common::system_tests_enabled("a_full_disk_fails_cleanly_and_changes_nothing", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "big");
    fs::write(delta.join("blob"), vec![7u8; 4 << 20]).expect("write");
    fs::create_dir(&env.snapdir).expect("mkdir");
    nix::mount::mount(
        Some("tmpfs"),
        &env.snapdir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m,mode=0755"),
    )
    .expect("mount a 1 MiB tmpfs as the snapdir");
    let _guard = Mounted(env.snapdir.clone());
    let stderr = env.fails_with(1, &["big"]);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains(&env.snapdir.display().to_string()),
        "names the path: {stderr}"
    );
    let left: Vec<_> = fs::read_dir(&env.snapdir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, [".lxc-snap"], "no snapshot, no staging left");
    let deps = fs::read_to_string(env.lxcpath.join("base/lxc_snapshots")).unwrap_or_default();
    assert!(!deps.contains("big_"), "no registration left: {deps}");
    assert_eq!(json(&env, &["-l", "big", "--json"]), serde_json::json!([]));
}

#[test]
fn a_killed_snapshot_never_shows_and_the_next_run_cleans_up() {
    if !common::system_tests_enabled(
        "a_killed_snapshot_never_shows_and_the_next_run_cleans_up",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    for i in 0..64 {
        fs::write(delta.join(format!("f{i}")), vec![i as u8; 2 << 20]).expect("write");
    }
    let child = env
        .cmd()
        .arg("c")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let staging = common::kill_when_staging_appears(child, &env.snapdir, ".lxc-snap.tmp.c_0.");
    assert!(
        staging.exists(),
        "the killed run left its staging directory"
    );
    assert_eq!(json(&env, &["-l", "c", "--json"]), serde_json::json!([]));
    assert_eq!(json(&env, &["-l", "--json"]), serde_json::json!([]));
    let out = env.run(&["c"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("removed {}", staging.display()))
    );
    assert!(!staging.exists());
    assert_eq!(names_of(&env, "c"), ["c_0"]);
    assert_trees_identical(&delta, &env.snapdir.join("c_0/private/delta"));
}
