//! `lxc-snap rebuild`: working containers cloned from a template's
//! snapshot, each with its own data, MAC, host name and attached mount,
//! put onto the upgraded template's snapshot and booted with LXC.

mod common;

use std::path::Path;

use common::lxc::{config_value, config_values, Lab};

const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

fn clones(lab: &Lab, snap: &str) -> Vec<String> {
    common::fixtures::clones_of(&lab.env, snap)
}

/// The config without its rootfs line.
fn config_but_rootfs(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("lxc.rootfs.path"))
        .map(str::to_string)
        .collect()
}

#[test]
fn working_containers_are_rebuilt_onto_a_new_template_keeping_their_data() {
    if !common::system_tests_enabled(
        "working_containers_are_rebuilt_onto_a_new_template_keeping_their_data",
        true,
    ) {
        return;
    }
    let lab = Lab::new();
    let env = &lab.env;
    let lp = lab.lxcpath();
    lab.create_base_with_mac("base");
    lab.overlay_clone("base", "tmpl");
    lab.start(lp, "tmpl");
    lab.attach(
        lp,
        "tmpl",
        "mkdir -p /srv/app /etc/ssh && echo 1 > /srv/app/version && \
         echo template-key > /etc/ssh/host_key && sync",
    );
    lab.stop(lp, "tmpl");
    std::fs::create_dir(lab.snapdir()).expect("snapdir");
    env.ok(&["snap", "tmpl"]);
    env.ok(&["clone", "tmpl_0", "w1", "w2", "w3"]);

    for w in WORKERS {
        // Attached data, outside the container.
        let data = env.path().join(format!("data-{w}"));
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::write(data.join("db"), format!("db of {w}\n")).expect("db");
        let config = lp.join(w).join("config");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str(&format!(
            "lxc.mount.entry = {} srv/data none bind,create=dir 0 0\n",
            data.display()
        ));
        // busybox's init powers off on SIGUSR2, so lxc-stop need not wait.
        text.push_str("lxc.signal.halt = SIGUSR2\n");
        std::fs::write(&config, text).expect("config");
        lab.start(lp, w);
        lab.attach(
            lp,
            w,
            &format!(
                "echo key-{w} > /etc/ssh/host_key && mkdir -p /var/lib/app && \
                 echo state-{w} > /var/lib/app/state && echo junk > /scratch && sync"
            ),
        );
        lab.stop(lp, w);
    }
    let before: Vec<String> = WORKERS.iter().map(|w| lab.config(lp, w)).collect();

    // The template is upgraded, and a whole snapshot of it taken.
    lab.start(lp, "tmpl");
    lab.attach(
        lp,
        "tmpl",
        "echo 2 > /srv/app/version && echo new > /srv/app/feature && rm /etc/ssh/host_key && sync",
    );
    lab.stop(lp, "tmpl");
    env.ok(&["snap", "--whole", "tmpl"]);

    // A running one is refused without --restart.
    lab.start(lp, "w1");
    env.fails_with(5, &["rebuild", "w1", "--from", "tmpl_1"]);
    let out = env.run(&[
        "rebuild",
        "w1",
        "w2",
        "w3",
        "--from",
        "tmpl_1",
        "--restart",
        "--keep",
        "/etc/ssh",
        "--keep",
        "/var/lib/app",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for w in WORKERS {
        assert!(
            stdout.contains(&format!("rebuilt {w} from tmpl_1 (")),
            "{stdout}"
        );
    }
    assert!(stderr.contains("w1 was down for "), "{stderr}");
    assert_eq!(lab.state(lp, "w1"), "RUNNING");
    lab.stop(lp, "w1");

    let base_rootfs = lp.join("base/rootfs");
    for (w, old) in WORKERS.iter().zip(&before) {
        let now = lab.config(lp, w);
        assert_eq!(
            config_but_rootfs(&now),
            config_but_rootfs(old),
            "{w}'s config"
        );
        let rootfs = config_value(&now, "lxc.rootfs.path");
        let want = format!(
            "overlay:{}:{}:{}",
            lab.snapdir().join("tmpl_1/private/delta").display(),
            base_rootfs.display(),
            lp.join(w).join("overlay/delta.rebuilt").display()
        );
        assert_eq!(rootfs, want, "{w}'s rootfs");
        assert!(
            !lp.join(w).join("overlay/delta").exists(),
            "{w}'s old upper is left"
        );
        let mac = config_values(old, "lxc.net.0.hwaddr");
        lab.start(lp, w);
        let seen = lab.attach(
            lp,
            w,
            "cat /srv/app/version /srv/app/feature /etc/ssh/host_key /var/lib/app/state \
             /srv/data/db /sys/class/net/eth0/address; hostname; test -e /scratch && echo scratch; true",
        );
        assert_eq!(
            seen,
            format!("2\nnew\nkey-{w}\nstate-{w}\ndb of {w}\n{}\n{w}\n", mac[0]),
            "inside {w}"
        );
        lab.stop(lp, w);
    }
    // The state before each rebuild was snapshotted.
    for w in WORKERS {
        let names = common::fixtures::names_of(env, w);
        assert_eq!(names, [format!("{w}_0")]);
    }
    // They stand on tmpl_1 now, no longer on tmpl_0.
    assert_eq!(clones(&lab, "tmpl_1"), WORKERS);
    assert!(
        clones(&lab, "tmpl_0").is_empty(),
        "{:?}",
        clones(&lab, "tmpl_0")
    );

    // Once more, as a whole copy: the upper's name goes back to delta and
    // nothing stands on tmpl_1 any more.
    env.ok(&[
        "rebuild",
        "w3",
        "--from",
        "tmpl_1",
        "--copy",
        "--no-backup",
        "--keep",
        "/etc/ssh",
    ]);
    let now = lab.config(lp, "w3");
    assert_eq!(
        config_value(&now, "lxc.rootfs.path"),
        format!(
            "overlay:{}:{}",
            base_rootfs.display(),
            lp.join("w3/overlay/delta").display()
        )
    );
    assert!(!Path::new(&lp.join("w3/overlay/delta.rebuilt")).exists());
    assert_eq!(clones(&lab, "tmpl_1"), ["w1", "w2"]);
    lab.start(lp, "w3");
    assert_eq!(
        lab.attach(
            lp,
            "w3",
            "cat /srv/app/version /etc/ssh/host_key; test -e /var/lib/app || echo gone"
        ),
        "2\nkey-w3\ngone\n"
    );
    lab.stop(lp, "w3");
    assert_eq!(common::fixtures::names_of(env, "w3"), ["w3_0"]);
}

/// The snapshot whose tree is the top lower of `container`'s rootfs.
fn standing_on(lab: &Lab, container: &str) -> String {
    let rootfs = config_value(&lab.config(lab.lxcpath(), container), "lxc.rootfs.path");
    let parts: Vec<&str> = rootfs.split(':').collect();
    let upper = Path::new(parts[parts.len() - 1]);
    assert!(
        upper.is_dir(),
        "{container}'s config names {upper:?}, which is not there"
    );
    for lower in &parts[1..parts.len() - 1] {
        assert!(
            Path::new(lower).is_dir(),
            "{container}'s lower {lower} is not there"
        );
    }
    let keep = std::fs::read_to_string(upper.join("data/keep")).expect("the kept file");
    assert_eq!(keep, "mine\n", "{container}'s kept data");
    let top = Path::new(parts[1]);
    top.strip_prefix(lab.snapdir())
        .expect("a snapshot's tree")
        .components()
        .next()
        .expect("snapshot")
        .as_os_str()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_rebuild_killed_at_random_moments_leaves_the_old_state_or_the_new() {
    if !common::system_tests_enabled(
        "a_rebuild_killed_at_random_moments_leaves_the_old_state_or_the_new",
        true,
    ) {
        return;
    }
    let lab = Lab::new();
    let env = &lab.env;
    let lp = lab.lxcpath();
    lab.create_base("base");
    lab.overlay_clone("base", "tmpl");
    std::fs::write(lab.delta("tmpl").join("version"), "0\n").expect("version");
    std::fs::create_dir(lab.snapdir()).expect("snapdir");
    env.ok(&["snap", "tmpl"]);
    std::fs::write(lab.delta("tmpl").join("version"), "1\n").expect("version");
    env.ok(&["snap", "--whole", "tmpl"]);
    env.ok(&["clone", "tmpl_0", "w"]);
    std::fs::create_dir(lab.delta("w").join("data")).expect("data");
    std::fs::write(lab.delta("w").join("data/keep"), "mine\n").expect("keep");

    let mut rng = common::history::Rng(0x005e_ed0f_4eb0);
    let args = |to: &str| {
        vec![
            "-q".to_string(),
            "rebuild".into(),
            "w".into(),
            "--from".into(),
            to.to_string(),
            "--no-backup".into(),
            "--keep".into(),
            "/data".into(),
        ]
    };
    let start = std::time::Instant::now();
    env.ok(&args("tmpl_1")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let typical = start.elapsed();
    assert_eq!(standing_on(&lab, "w"), "tmpl_1");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let to = if i % 2 == 0 { "tmpl_0" } else { "tmpl_1" };
        let mut child = env
            .cmd()
            .args(args(to))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("lxc-snap");
        let micros = typical.as_micros().max(1) as usize;
        std::thread::sleep(std::time::Duration::from_micros(
            rng.below(micros + micros / 4) as u64,
        ));
        let _ = child.kill();
        let _ = child.wait();
        // Old or new, whole either way.
        seen.insert(standing_on(&lab, "w"));
    }
    // Both outcomes happened, and the next run clears what was left.
    assert_eq!(seen.len(), 2, "only ever {seen:?}");
    env.ok(&args("tmpl_0")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(standing_on(&lab, "w"), "tmpl_0");
    let left: Vec<String> = std::fs::read_dir(lp.join("w/overlay"))
        .expect("overlay")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "olwork")
        .collect();
    assert_eq!(left.len(), 1, "beside the upper: {left:?}");
    assert_eq!(common::fixtures::clones_of(env, "tmpl_0"), ["w"]);
    lab.start(lp, "w");
    assert_eq!(lab.attach(lp, "w", "cat /version /data/keep"), "0\nmine\n");
    lab.stop(lp, "w");
}
