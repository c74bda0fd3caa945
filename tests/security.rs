//! lxc-snap as root against a hostile container, a hostile host user and
//! a hostile config: what each attack tried, and that it fails (see
//! SECURITY.md). A host user is played by chown-ing what that user would
//! own to uid 1000 and doing, as root, what the user could then do.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::fixtures::overlay_clone;
use common::TestEnv;

const USER: u32 = 1000;

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every entry below `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.expect("walk")
                .path()
                .strip_prefix(dir)
                .expect("below")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn unsafe_refusal(env: &TestEnv, args: &[&str]) -> String {
    env.fails_with(7, args)
}

// 1, 2, 3: the snapdir and its state directory.

#[test]
fn a_symlinked_state_directory_is_refused_and_its_target_untouched() {
    if !common::system_tests_enabled(
        "a_symlinked_state_directory_is_refused_and_its_target_untouched",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let victim = env.path().join("victim");
    fs::create_dir(&victim).expect("mkdir");
    fs::create_dir(&env.snapdir).expect("mkdir");
    std::os::unix::fs::symlink(&victim, env.snapdir.join(".lxc-snap")).expect("symlink");
    let stderr = unsafe_refusal(&env, &["c"]);
    assert!(stderr.contains(".lxc-snap"), "{stderr}");
    assert!(listing(&victim).is_empty(), "{:?}", listing(&victim));
    assert!(!env.snapdir.join("c_0").exists());
}

#[test]
fn a_snapdir_or_state_directory_a_user_can_change_is_refused() {
    if !common::system_tests_enabled(
        "a_snapdir_or_state_directory_a_user_can_change_is_refused",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    fs::create_dir(&env.snapdir).expect("mkdir");
    chown(&env.snapdir, USER);
    let stderr = unsafe_refusal(&env, &["c"]);
    let snapdir = env.snapdir.display().to_string();
    assert!(
        stderr.contains(&format!("{snapdir}: it is owned by uid 1000")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("chown root:root {snapdir}")),
        "{stderr}"
    );
    assert!(listing(&env.snapdir).is_empty(), "nothing written in it");

    // Root's, but writable by a group or by anyone (not sticky): the same.
    chown(&env.snapdir, 0);
    std::os::unix::fs::chown(&env.snapdir, None, Some(USER)).expect("chgrp");
    chmod(&env.snapdir, 0o775);
    assert!(unsafe_refusal(&env, &["c"]).contains("group 1000 can write to it"));
    std::os::unix::fs::chown(&env.snapdir, None, Some(0)).expect("chgrp");
    chmod(&env.snapdir, 0o757);
    assert!(unsafe_refusal(&env, &["c"]).contains("anyone can write to it"));

    // A parent a user owns: they could swap the snapdir for another.
    chmod(&env.snapdir, 0o755);
    let outer = env.path().join("outer");
    fs::create_dir(&outer).expect("mkdir");
    chown(&outer, USER);
    let inner = outer.join("snaps");
    let out = Command::new(common::bin())
        .arg("-P")
        .arg(&env.lxcpath)
        .arg("--snapdir")
        .arg(&inner)
        .arg("c")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(!inner.exists(), "not even created");

    // The state directory a user owns: they could plant lock files there.
    env.ok(&["-q", "c"]);
    chown(&env.snapdir.join(".lxc-snap"), USER);
    assert!(unsafe_refusal(&env, &["c"]).contains(".lxc-snap"));
}

#[test]
fn a_lock_file_someone_else_made_is_refused_instead_of_waited_on() {
    if !common::system_tests_enabled(
        "a_lock_file_someone_else_made_is_refused_instead_of_waited_on",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    // Left from a time the state directory was the user's, and held.
    let lock = env.snapdir.join(".lxc-snap/c.lock");
    fs::remove_file(&lock).expect("rm");
    fs::write(&lock, "").expect("plant");
    chown(&lock, USER);
    chmod(&lock, 0o644);
    let held = nix::fcntl::Flock::lock(
        fs::File::open(&lock).expect("open"),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .expect("hold it");
    let run = common::run_measured(
        {
            let mut c = env.cmd();
            c.arg("c");
            c
        },
        u64::MAX,
        Duration::from_secs(60),
    );
    drop(held);
    assert_eq!(run.killed, None, "it waited for the planted lock: {run:?}");
    assert_eq!(run.code, Some(7), "{run:?}");
    assert!(run.stderr.contains("c.lock"), "{run:?}");
}

// 4: restore into an lxcpath a user owns.

#[test]
fn an_lxcpath_a_user_owns_is_refused_for_restore_and_snapshot() {
    if !common::system_tests_enabled(
        "an_lxcpath_a_user_owns_is_refused_for_restore_and_snapshot",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    let theirs = env.path().join("home-lxc");
    fs::create_dir(&theirs).expect("mkdir");
    chown(&theirs, USER);
    let run = |args: &[&str]| {
        Command::new(common::bin())
            .arg("-P")
            .arg(&theirs)
            .arg("--snapdir")
            .arg(&env.snapdir)
            .args(args)
            .output()
            .expect("run")
    };
    let out = run(&["restore", "c_0", "mine"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(listing(&theirs).is_empty());
    let out = run(&["c"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
}

// 5: mount points named through a symlink.

#[test]
fn mount_and_umount_refuse_a_path_through_a_symlink() {
    if !common::system_tests_enabled("mount_and_umount_refuse_a_path_through_a_symlink", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    // A user's directory, swapped for a symlink to somewhere of root's.
    let roots = env.path().join("roots");
    fs::create_dir_all(roots.join("etc")).expect("mkdir");
    let users = env.path().join("users");
    std::os::unix::fs::symlink(&roots, &users).expect("symlink");
    let through = users.join("etc");
    let through = through.to_str().expect("utf-8");
    let stderr = unsafe_refusal(&env, &["mount", "c_0", through]);
    assert!(stderr.contains("symlink"), "{stderr}");
    assert!(
        common::lxc::mounts_under(&roots).is_empty(),
        "nothing mounted"
    );

    // A real mount, and an unmount asked for through the symlink.
    let direct = roots.join("etc");
    env.ok(&["-q", "mount", "c_0", direct.to_str().expect("utf-8")]);
    assert_eq!(
        common::lxc::mounts_under(&roots),
        std::slice::from_ref(&direct)
    );
    unsafe_refusal(&env, &["umount", through]);
    assert_eq!(
        common::lxc::mounts_under(&roots),
        std::slice::from_ref(&direct)
    );
    // Read-only, nosuid, nodev.
    let opts = fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(direct.to_str().expect("utf-8")))
        .map(|l| l.split(' ').nth(5).unwrap_or("").to_string())
        .expect("listed");
    for opt in ["ro", "nosuid", "nodev"] {
        assert!(opts.split(',').any(|o| o == opt), "{opts}");
    }
    // A directory inside the mount is no mount of ours to remove.
    let inside = direct.join("etc");
    if inside.is_dir() {
        env.fails_with(3, &["umount", inside.to_str().expect("utf-8")]);
    }
    env.ok(&["-q", "umount", direct.to_str().expect("utf-8")]);
    assert!(common::lxc::mounts_under(&roots).is_empty());
}

// 6, 7, 8: config values used as paths.

fn set_config(env: &TestEnv, name: &str, key: &str, value: &str) {
    let path = env.lxcpath.join(name).join("config");
    let text = fs::read_to_string(&path).expect("config");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.split('=').next().map(str::trim) != Some(key))
        .map(str::to_string)
        .collect();
    lines.push(format!("{key} = {value}"));
    fs::write(&path, lines.join("\n") + "\n").expect("config");
}

#[test]
fn rollback_never_replaces_a_tree_outside_the_container() {
    if !common::system_tests_enabled("rollback_never_replaces_a_tree_outside_the_container", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    let host = env.path().join("host-dir");
    fs::create_dir(&host).expect("mkdir");
    fs::write(host.join("precious"), "keep me\n").expect("write");
    let base = env.lxcpath.join("base/rootfs");
    set_config(
        &env,
        "c",
        "lxc.rootfs.path",
        &format!("overlay:{}:{}", base.display(), host.display()),
    );
    let stderr = unsafe_refusal(&env, &["rollback", "c_0", "--no-backup"]);
    assert!(stderr.contains("outside"), "{stderr}");
    assert_eq!(listing(&host), ["precious"]);
    assert_eq!(
        fs::read_to_string(host.join("precious")).expect("read"),
        "keep me\n"
    );
    assert!(delta.join("added").exists());
}

#[test]
fn a_lower_outside_containers_and_snapshots_needs_allow_lower() {
    if !common::system_tests_enabled(
        "a_lower_outside_containers_and_snapshots_needs_allow_lower",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let secret = env.path().join("secret");
    fs::create_dir(&secret).expect("mkdir");
    chmod(&secret, 0o700);
    fs::write(secret.join("key"), "root only\n").expect("write");
    set_config(
        &env,
        "c",
        "lxc.rootfs.path",
        &format!("overlay:{}:{}", secret.display(), delta.display()),
    );
    let stderr = unsafe_refusal(&env, &["c"]);
    assert!(stderr.contains("--allow-lower"), "{stderr}");
    assert!(!env.snapdir.join("c_0").exists());

    // The admin allows it: then it is a base like any other.
    let allow = format!("--allow-lower={}", secret.display());
    env.ok(&["-q", &allow, "c"]);
    let dir = env.path().join("browse");
    fs::create_dir(&dir).expect("mkdir");
    // Mounting it needs the same word.
    unsafe_refusal(&env, &["mount", "c_0", dir.to_str().expect("utf-8")]);
    assert!(common::lxc::mounts_under(&dir).is_empty());
    env.ok(&["-q", &allow, "mount", "c_0", dir.to_str().expect("utf-8")]);
    env.ok(&["-q", "umount", dir.to_str().expect("utf-8")]);
}

#[test]
fn a_dependency_file_cannot_make_root_write_elsewhere() {
    if !common::system_tests_enabled("a_dependency_file_cannot_make_root_write_elsewhere", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let elsewhere = env.path().join("elsewhere");
    fs::create_dir_all(elsewhere.join("victim")).expect("mkdir");
    fs::write(elsewhere.join("victim/config"), "").expect("config");
    fs::write(
        env.lxcpath.join("c/lxc_rdepends"),
        format!("{}\nvictim\n", elsewhere.display()),
    )
    .expect("rdepends");
    let stderr = unsafe_refusal(&env, &["c"]);
    assert!(stderr.contains("victim"), "{stderr}");
    assert!(!elsewhere.join("victim/lxc_snapshots").exists());
    assert!(!env.snapdir.join("c_0").exists());
}

// 9, 10, 11: hooks and fstab.

#[test]
fn a_hook_someone_else_can_change_is_refused() {
    if !common::system_tests_enabled("a_hook_someone_else_can_change_is_refused", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let theirs = env.path().join("users-hooks");
    fs::create_dir(&theirs).expect("mkdir");
    fs::write(theirs.join("pre"), "#!/bin/sh\n").expect("write");
    chown(&theirs, USER);
    set_config(
        &env,
        "c",
        "lxc.hook.pre-start",
        &theirs.join("pre").display().to_string(),
    );
    let stderr = unsafe_refusal(&env, &["c"]);
    assert!(stderr.contains("lxc.hook.pre-start"), "{stderr}");

    // In a directory only root can change: kept as it is.
    let roots = env.path().join("roots-hooks");
    fs::create_dir(&roots).expect("mkdir");
    fs::write(roots.join("pre"), "#!/bin/sh\n").expect("write");
    chmod(&roots.join("pre"), 0o755);
    let hook = roots.join("pre").display().to_string();
    set_config(&env, "c", "lxc.hook.pre-start", &hook);
    env.ok(&["-q", "c"]);
    let config = fs::read_to_string(env.snapdir.join("c_0/config")).expect("config");
    // (Beside the hook lxc-snap adds to empty the snapshot's scratch.)
    let hooks: Vec<&str> = config
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == "lxc.hook.pre-start")
        .map(|(_, v)| v.trim())
        .collect();
    assert_eq!(hooks.len(), 2, "{config}");
    assert_eq!(hooks[0], hook, "{config}");
    assert!(hooks[1].ends_with(" reset --from-lxc"), "{config}");
    // ...unless the file itself is anyone's to write.
    chmod(&roots.join("pre"), 0o757);
    unsafe_refusal(&env, &["c"]);
    // A hook that runs inside the container is the container's business.
    set_config(&env, "c", "lxc.hook.pre-start", "/bin/true");
    set_config(
        &env,
        "c",
        "lxc.hook.start",
        &theirs.join("pre").display().to_string(),
    );
    env.ok(&["-q", "c"]);
}

#[test]
fn an_fstab_inside_the_containers_own_tree_is_refused() {
    if !common::system_tests_enabled("an_fstab_inside_the_containers_own_tree_is_refused", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    // The container's root makes etc a symlink to a host directory and
    // puts an fstab there; the config names it.
    let host = env.path().join("host-etc");
    fs::create_dir(&host).expect("mkdir");
    fs::create_dir_all(delta.join("real")).expect("mkdir");
    fs::write(delta.join("real/fstab"), "proc proc proc defaults 0 0\n").expect("write");
    std::os::unix::fs::symlink(&host, delta.join("etc")).expect("symlink");
    set_config(
        &env,
        "c",
        "lxc.mount.fstab",
        &delta.join("real/fstab").display().to_string(),
    );
    let stderr = unsafe_refusal(&env, &["c"]);
    assert!(
        stderr.contains("inside the container's own tree"),
        "{stderr}"
    );
    // The snapshot taken before restores without writing through the tree.
    env.ok(&["-q", "restore", "c_0", "back"]);
    assert!(listing(&host).is_empty());
}

#[test]
fn copied_hooks_get_explicit_modes_whatever_the_umask() {
    if !common::system_tests_enabled("copied_hooks_get_explicit_modes_whatever_the_umask", true) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let hooks = env.lxcpath.join("c/hooks");
    fs::create_dir(&hooks).expect("mkdir");
    fs::write(hooks.join("pre"), "#!/bin/sh\n").expect("write");
    chmod(&hooks.join("pre"), 0o755);
    set_config(
        &env,
        "c",
        "lxc.hook.pre-start",
        &hooks.join("pre").display().to_string(),
    );
    let mode = |p: &Path| fs::symlink_metadata(p).expect("stat").mode() & 0o7777;
    // A umask that would close everything, then one that would open it.
    for (umask, snap) in [("077", "c_0"), ("000", "c_1")] {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$@\""))
            .arg("sh")
            .arg(common::bin())
            .arg("-P")
            .arg(&env.lxcpath)
            .arg("--snapdir")
            .arg(&env.snapdir)
            .args(["-q", "c"])
            .status()
            .expect("run");
        assert!(status.success());
        let s = env.snapdir.join(snap);
        assert_eq!(mode(&s), 0o755, "umask {umask}");
        assert_eq!(mode(&s.join("hooks")), 0o755, "umask {umask}");
        assert_eq!(mode(&s.join("hooks/pre")), 0o755, "umask {umask}");
        assert_eq!(mode(&s.join("config")), 0o640, "umask {umask}");
        assert_eq!(mode(&s.join("lxc-snap.json")), 0o644, "umask {umask}");
        assert_eq!(mode(&s.join("private")), 0o700, "umask {umask}");
        assert_eq!(mode(&env.snapdir.join(".lxc-snap")), 0o755, "umask {umask}");
        // Created by the first run, under umask 077: still readable.
        assert_eq!(
            mode(&env.lxcpath.join("base/lxc_snapshots")),
            0o644,
            "umask {umask}"
        );
    }
}

// 12, 13: deep trees.

const NAME: usize = 255;

#[test]
fn a_deep_tree_costs_little_memory_and_no_path_length_limit() {
    if !common::system_tests_enabled(
        "a_deep_tree_costs_little_memory_and_no_path_length_limit",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    // 1,000 levels of 255-byte names: a path of 256 KB, far past PATH_MAX.
    let deepest = common::make_deep(&delta, 1000, NAME, b'd');
    common::write_at(&deepest, "leaf", b"deep\n");
    let measured = |args: &[&str]| {
        let mut c = env.cmd();
        c.args(args);
        let run = common::run_measured(c, u64::MAX, Duration::from_secs(300));
        assert_eq!(run.code, Some(0), "lxc-snap {args:?}: {run:?}");
        eprintln!("lxc-snap {args:?}: peak {} KiB", run.max_rss_kib);
        assert!(
            run.max_rss_kib < 64 * 1024,
            "lxc-snap {args:?} peaked at {} KiB",
            run.max_rss_kib
        );
        run
    };
    // A layer over c_0, then a whole copy, a diff and a restore.
    measured(&["-q", "c"]);
    assert!(
        common::fixtures::json(&env, &["info", "c_1", "--json"])["layer_over"].is_string(),
        "a layer"
    );
    measured(&["-q", "snap", "--whole", "c"]);
    let diff = measured(&["diff", "c_0", "c_1"]);
    assert!(
        diff.stdout.contains("1001 added"),
        "{}",
        &diff.stdout[diff.stdout.len().saturating_sub(200)..]
    );
    measured(&["-q", "restore", "c_1", "back"]);
    // The leaf came back, 1,000 levels down.
    let back = env.lxcpath.join("back/overlay/delta");
    let dir = common::open_deep(&back, 1000, NAME, b'd');
    assert_eq!(common::read_at(&dir, "leaf"), b"deep\n");
}

#[test]
fn deep_hard_links_are_copied_as_one_inode() {
    if !common::system_tests_enabled("deep_hard_links_are_copied_as_one_inode", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    // Two names of one file, each deeper than PATH_MAX.
    for tag in [b'a', b'b'] {
        common::make_deep(&delta, 20, NAME, tag);
    }
    let a = common::open_deep(&delta, 20, NAME, b'a');
    let b = common::open_deep(&delta, 20, NAME, b'b');
    common::write_at(&a, "one", b"shared\n");
    common::link_at(&a, "one", &b, "two");
    env.ok(&["-q", "snap", "--full", "c"]);
    env.ok(&["-q", "c"]);
    for snap in ["c_0", "c_1"] {
        let tree = common::fixtures::captured(&env, snap);
        let a = common::open_deep(&tree, 20, NAME, b'a');
        let b = common::open_deep(&tree, 20, NAME, b'b');
        let (sa, sb) = (common::stat_at(&a, "one"), common::stat_at(&b, "two"));
        assert_eq!((sa.st_dev, sa.st_ino), (sb.st_dev, sb.st_ino), "{snap}");
        assert_eq!(sa.st_nlink, 2, "{snap}");
    }
}

// 14: many subdirectories.

#[test]
fn a_wide_base_needs_no_more_descriptors() {
    if !common::system_tests_enabled("a_wide_base_needs_no_more_descriptors", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let base = env.lxcpath.join("base/rootfs");
    for i in 0..1500 {
        fs::create_dir(base.join(format!("w{i}"))).expect("mkdir");
        fs::create_dir(delta.join(format!("u{i}"))).expect("mkdir");
    }
    let limited = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut c = env.cmd();
        c.args(args);
        // SAFETY: only setrlimit between fork and exec.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 1024,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = c.output().expect("run");
        assert!(out.status.success(), "lxc-snap {args:?}: {out:?}");
    };
    limited(&["-q", "c"]);
    fs::create_dir(delta.join("u7/more")).expect("mkdir");
    limited(&["-q", "c"]);
    limited(&["-q", "info", "c_1"]);
    limited(&["-q", "diff", "c_0", "c_1"]);
    limited(&["-q", "restore", "c_1", "back"]);
}

// 15: sparse files.

#[test]
fn sparse_terabytes_are_compared_by_their_data_only() {
    if !common::system_tests_enabled("sparse_terabytes_are_compared_by_their_data_only", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let f = fs::File::create(delta.join("huge")).expect("create");
    std::os::unix::fs::FileExt::write_all_at(&f, b"start", 0).expect("write");
    std::os::unix::fs::FileExt::write_all_at(&f, b"end", (1 << 40) - 3).expect("write");
    drop(f);
    env.ok(&["-q", "c"]);
    let watched = |args: &[&str]| {
        let mut c = env.cmd();
        c.args(args);
        let run = common::run_measured(c, 1 << 30, Duration::from_secs(600));
        assert_eq!(
            run.killed, None,
            "lxc-snap {args:?} read the holes: {run:?}"
        );
        assert_eq!(run.code, Some(0), "{run:?}");
        run
    };
    let diff = watched(&["diff", "--content", "c_0"]);
    assert!(
        diff.stdout.starts_with("0 added, 0 modified"),
        "{}",
        diff.stdout
    );
    watched(&["-q", "snap", "--checksum", "--whole", "c"]);
    watched(&["-q", "snap", "--checksum", "c"]);
}

// 16: the base's lxc_snapshots.

#[test]
fn a_hostile_lxc_snapshots_file_neither_hangs_nor_floods_memory() {
    if !common::system_tests_enabled(
        "a_hostile_lxc_snapshots_file_neither_hangs_nor_floods_memory",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let file = env.lxcpath.join("base/lxc_snapshots");
    nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("fifo");
    let run = common::run_measured(
        {
            let mut c = env.cmd();
            c.arg("c");
            c
        },
        u64::MAX,
        Duration::from_secs(60),
    );
    assert_eq!(run.killed, None, "hung on the fifo: {run:?}");
    assert_eq!(run.code, Some(7), "{run:?}");
    fs::remove_file(&file).expect("rm");
    // 2 GiB, most of it a hole.
    let f = fs::File::create(&file).expect("create");
    f.set_len(2 << 30).expect("size");
    drop(f);
    let run = common::run_measured(
        {
            let mut c = env.cmd();
            c.arg("c");
            c
        },
        u64::MAX,
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(7), "{run:?}");
    assert!(run.max_rss_kib < 64 * 1024, "{} KiB", run.max_rss_kib);
}

// 17: terminal escapes.

#[test]
fn names_and_comments_reach_the_terminal_escaped() {
    if !common::system_tests_enabled("names_and_comments_reach_the_terminal_escaped", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let evil = "\u{1b}]0;owned\u{7}\u{1b}[2J";
    let base = env.lxcpath.join("base/rootfs");
    fs::write(base.join(format!("x{evil}")), "base\n").expect("write");
    fs::write(delta.join(format!("x{evil}")), "copied up\n").expect("write");
    env.ok(&["-q", "snap", "-m", &format!("comment {evil}"), "c"]);
    let list = env.ok(&["list", "c"]);
    let info = env.ok(&["info", "c_0"]);
    // The copy taken out by hand: the next snapshot says why it is whole.
    fs::remove_file(delta.join(format!("x{evil}"))).expect("rm");
    let out = env.run(&["c"]);
    assert!(out.status.success(), "{out:?}");
    let note = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(note.contains("taking a whole snapshot"), "{note}");
    // An error naming a path with them.
    let err = Command::new(common::bin())
        .arg("-P")
        .arg(env.path().join(format!("lxc{evil}")))
        .arg("--snapdir")
        .arg(&env.snapdir)
        .arg("c")
        .output()
        .expect("run");
    assert!(!err.status.success());
    for (what, text) in [
        ("list", list.as_bytes()),
        ("info", info.as_bytes()),
        ("note", note.as_bytes()),
        ("error", &err.stderr[..]),
    ] {
        assert!(
            !text.contains(&0x1b),
            "{what}: {:?}",
            String::from_utf8_lossy(text)
        );
        assert!(
            !text.contains(&0x07),
            "{what}: {:?}",
            String::from_utf8_lossy(text)
        );
    }
    assert!(note.contains("\\x1b"), "{note}");
    // Asked for, the comment itself is printed as it is, to a pipe.
    assert_eq!(env.ok(&["comment", "c_0"]), format!("comment {evil}\n"));
}

// 18: -c through a directory a user controls.

#[test]
fn a_comment_file_through_a_symlinked_directory_is_refused() {
    if !common::system_tests_enabled(
        "a_comment_file_through_a_symlinked_directory_is_refused",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let secret_dir = env.path().join("root-only");
    fs::create_dir(&secret_dir).expect("mkdir");
    chmod(&secret_dir, 0o700);
    fs::write(secret_dir.join("shadow"), "root:secret\n").expect("write");
    // The user's directory, made a symlink to root's.
    let users = env.path().join("users");
    std::os::unix::fs::symlink(&secret_dir, &users).expect("symlink");
    let stderr = env.fails_with(
        2,
        &["-c", users.join("shadow").to_str().expect("utf-8"), "c"],
    );
    assert!(stderr.contains("symlink"), "{stderr}");
    assert!(!env.snapdir.join("c_0").exists());
}

// 19: rollback with something mounted inside.

#[test]
fn rollback_never_deletes_what_is_mounted_inside_the_old_tree() {
    if !common::system_tests_enabled(
        "rollback_never_deletes_what_is_mounted_inside_the_old_tree",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    env.ok(&["-q", "c"]);
    let host = env.path().join("host-data");
    fs::create_dir(&host).expect("mkdir");
    fs::write(host.join("precious"), "keep me\n").expect("write");
    let point = delta.join("mnt");
    fs::create_dir(&point).expect("mkdir");
    nix::mount::mount(
        Some(&host),
        &point,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(point.clone());
    let stderr = unsafe_refusal(&env, &["rollback", "c_0", "--no-backup"]);
    assert!(stderr.contains("mounted inside"), "{stderr}");
    assert_eq!(
        fs::read_to_string(host.join("precious")).expect("read"),
        "keep me\n"
    );
}

// Kept: attacks that failed before these fixes, kept failing.

#[test]
fn deleting_a_snapshot_full_of_symlinks_deletes_only_the_snapshot() {
    if !common::system_tests_enabled(
        "deleting_a_snapshot_full_of_symlinks_deletes_only_the_snapshot",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let outside = env.path().join("outside");
    fs::create_dir_all(outside.join("dir")).expect("mkdir");
    fs::write(outside.join("dir/file"), "keep\n").expect("write");
    for (i, target) in [
        outside.clone(),
        outside.join("dir"),
        outside.join("dir/file"),
    ]
    .iter()
    .enumerate()
    {
        std::os::unix::fs::symlink(target, delta.join(format!("l{i}"))).expect("symlink");
        fs::create_dir_all(delta.join(format!("d{i}"))).expect("mkdir");
        std::os::unix::fs::symlink(target, delta.join(format!("d{i}/l"))).expect("symlink");
    }
    env.ok(&["-q", "c"]);
    env.ok(&["-q", "delete", "c_0"]);
    assert!(!env.snapdir.join("c_0").exists());
    assert_eq!(
        fs::read_to_string(outside.join("dir/file")).expect("read"),
        "keep\n"
    );
}

#[test]
fn a_directory_of_200000_entries_snapshots_in_little_memory() {
    if !common::system_tests_enabled(
        "a_directory_of_200000_entries_snapshots_in_little_memory",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let wide = delta.join("wide");
    fs::create_dir(&wide).expect("mkdir");
    for i in 0..200_000 {
        fs::File::create(wide.join(format!("entry-with-a-longish-name-{i:06}"))).expect("create");
    }
    for args in [
        &["-q", "c"][..],
        &["-q", "snap", "--whole", "c"],
        &["diff", "c_0", "c_1"],
    ] {
        let mut c = env.cmd();
        c.args(args);
        let run = common::run_measured(c, u64::MAX, Duration::from_secs(600));
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        eprintln!("lxc-snap {args:?}: peak {} KiB", run.max_rss_kib);
        assert!(
            run.max_rss_kib < 100 * 1024,
            "{args:?}: {} KiB",
            run.max_rss_kib
        );
    }
}

#[test]
fn comment_and_config_files_of_every_odd_kind_are_refused_without_hanging() {
    if !common::system_tests_enabled(
        "comment_and_config_files_of_every_odd_kind_are_refused_without_hanging",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let odd = env.path().join("odd");
    fs::create_dir(&odd).expect("mkdir");
    nix::unistd::mkfifo(
        &odd.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("fifo");
    nix::sys::stat::mknod(
        &odd.join("zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 5),
    )
    .expect("mknod");
    fs::write(odd.join("real"), "text\n").expect("write");
    std::os::unix::fs::symlink(odd.join("real"), odd.join("link")).expect("symlink");
    fs::write(odd.join("huge"), vec![b'x'; 65 * 1024]).expect("write");
    fs::write(odd.join("binary"), b"\xff\xfe\x00bin").expect("write");
    let with_limit = |args: Vec<String>| {
        let mut c = env.cmd();
        c.args(&args);
        let run = common::run_measured(c, 1 << 26, Duration::from_secs(60));
        assert_eq!(run.killed, None, "{args:?}: {run:?}");
        run
    };
    for name in ["fifo", "zero", "link", "huge", "binary"] {
        let path = odd.join(name).display().to_string();
        let run = with_limit(vec!["-c".into(), path, "c".into()]);
        assert_eq!(run.code, Some(2), "comment from {name}: {run:?}");
    }
    assert!(!env.snapdir.join("c_0").exists());

    // The container's own config, each odd kind in its place.
    let config = env.lxcpath.join("c/config");
    let good = fs::read(&config).expect("config");
    for name in ["fifo", "zero", "link", "binary"] {
        fs::remove_file(&config).expect("rm");
        match name {
            "link" => std::os::unix::fs::symlink(odd.join("real"), &config).expect("symlink"),
            "binary" => fs::write(&config, b"lxc.rootfs.path = \xff\n").expect("write"),
            other => {
                if other == "fifo" {
                    nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o644))
                        .expect("fifo");
                } else {
                    nix::sys::stat::mknod(
                        &config,
                        nix::sys::stat::SFlag::S_IFCHR,
                        nix::sys::stat::Mode::from_bits_truncate(0o644),
                        nix::sys::stat::makedev(1, 5),
                    )
                    .expect("mknod");
                }
            }
        }
        let run = with_limit(vec!["c".into()]);
        assert_ne!(run.code, Some(0), "config as {name}: {run:?}");
    }
    fs::remove_file(&config).expect("rm");
    let mut huge = good.clone();
    huge.extend(std::iter::repeat_n(b'#', 2 << 20));
    fs::write(&config, huge).expect("write");
    let run = with_limit(vec!["c".into()]);
    assert_ne!(run.code, Some(0), "a 2 MiB config: {run:?}");
    assert!(!env.snapdir.join("c_0").exists());
}

#[test]
fn diff_content_never_opens_fifos_devices_or_sockets() {
    if !common::system_tests_enabled("diff_content_never_opens_fifos_devices_or_sockets", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    nix::unistd::mkfifo(
        &delta.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("fifo");
    nix::sys::stat::mknod(
        &delta.join("zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 5),
    )
    .expect("mknod");
    let _socket = std::os::unix::net::UnixListener::bind(delta.join("sock")).expect("socket");
    env.ok(&["-q", "c"]);
    let mut c = env.cmd();
    c.args(["diff", "--content", "c_0"]);
    let run = common::run_measured(c, 1 << 26, Duration::from_secs(60));
    assert_eq!(run.killed, None, "{run:?}");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.starts_with("0 added, 0 modified"),
        "{}",
        run.stdout
    );
}

#[test]
fn hostile_names_survive_snapshot_and_restore_exactly() {
    if !common::system_tests_enabled("hostile_names_survive_snapshot_and_restore_exactly", true) {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let names: Vec<&[u8]> = vec![
        b"-rf",
        b"new\nline",
        b"tab\tand space ",
        b"\xff\xfenot utf-8",
        b"\x1b]0;title\x07",
        b"..dots",
        &[b'n'; 255],
        b"\\back\\slash",
    ];
    for name in &names {
        fs::write(delta.join(std::ffi::OsStr::from_bytes(name)), *name).expect("write");
    }
    env.ok(&["-q", "c"]);
    env.ok(&["-q", "restore", "c_0", "back"]);
    let restored = env.lxcpath.join("back/overlay/delta");
    for name in &names {
        let path = restored.join(std::ffi::OsStr::from_bytes(name));
        assert_eq!(fs::read(&path).expect("restored"), *name, "{path:?}");
    }
    fs::remove_file(delta.join(std::ffi::OsStr::from_bytes(b"new\nline"))).expect("rm");
    let diff = env.ok(&["diff", "c_0"]);
    assert!(diff.starts_with("D /new\\nline\n"), "{diff}");
    assert!(!diff.as_bytes().contains(&0x1b));
}

/// Swaps a real directory of the delta with a symlink to `outside`, over
/// and over, until told to stop: the race `docker cp` lost
/// (CVE-2018-15664).
fn race_symlink_exchange(
    delta: PathBuf,
    outside: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let (real, link) = (delta.join("swap"), delta.join("swap-link"));
        fs::create_dir_all(&real).expect("mkdir");
        fs::write(real.join("file"), "inside\n").expect("write");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        let mut swaps = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            nix::fcntl::renameat2(
                None,
                &real,
                None,
                &link,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .expect("exchange");
            swaps += 1;
        }
        swaps
    })
}

#[test]
fn a_symlink_exchange_racer_never_reaches_the_host() {
    if !common::system_tests_enabled("a_symlink_exchange_racer_never_reaches_the_host", true) {
        return;
    }
    let env = TestEnv::new();
    let delta = overlay_clone(&env, "c");
    let outside = env.path().join("host-secrets");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("file"), "HOST SECRET\n").expect("write");
    let before = listing(&outside);
    env.ok(&["-q", "c"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = race_symlink_exchange(delta.clone(), outside.clone(), stop.clone());
    for round in 0..20 {
        let args: &[&str] = match round % 5 {
            0 => &["-q", "c"],
            1 => &["-q", "snap", "--full", "c"],
            2 => &["-q", "snap", "--checksum", "c"],
            3 => &["diff", "--content", "c_0"],
            _ => &["-q", "snap", "--whole", "c"],
        };
        // A run may fail ("changed while being copied"); it must never
        // read or write through the symlink.
        let out = env.run(args);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("HOST SECRET"),
            "{out:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(racer.join().expect("racer") > 0);
    for name in common::fixtures::names_of(&env, "c") {
        let tree = common::fixtures::captured(&env, &name);
        for entry in walkdir::WalkDir::new(&tree) {
            let entry = entry.expect("walk");
            if entry.file_type().is_file() {
                let data = fs::read(entry.path()).expect("read");
                assert!(
                    !String::from_utf8_lossy(&data).contains("HOST SECRET"),
                    "{name} captured a host file at {:?}",
                    entry.path()
                );
            }
        }
        env.ok(&["-q", "restore", &name, &format!("r-{name}")]);
    }
    assert_eq!(listing(&outside), before);
    assert_eq!(
        fs::read_to_string(outside.join("file")).expect("read"),
        "HOST SECRET\n"
    );
}

#[test]
fn an_lxc_snap_others_can_change_is_no_hook_of_a_snapshot() {
    if !common::system_tests_enabled(
        "an_lxc_snap_others_can_change_is_no_hook_of_a_snapshot",
        true,
    ) {
        return;
    }
    let env = TestEnv::new();
    overlay_clone(&env, "c");
    let open = env.path().join("anyones");
    fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let copy = open.join("lxc-snap");
    fs::copy(common::bin(), &copy).expect("copying the binary");
    let out = Command::new(&copy)
        .arg("-P")
        .arg(&env.lxcpath)
        .arg("--snapdir")
        .arg(&env.snapdir)
        .args(["snap", "c"])
        .env_remove("LXC_SNAP_DIR")
        .output()
        .expect("running the copy");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("c_0 keeps what it writes when started until lxc-snap reset c_0"),
        "{stderr}"
    );
    let config = fs::read_to_string(env.snapdir.join("c_0/config")).expect("config");
    assert!(!config.contains("reset --from-lxc"), "{config}");
    // The trusted one puts its hook in.
    env.ok(&["-q", "c"]);
    let config = fs::read_to_string(env.snapdir.join("c_1/config")).expect("config");
    assert!(config.contains("reset --from-lxc"), "{config}");
}
