//! A real-LXC lab for end-to-end tests.
//!
//! A [`Lab`] owns a [`TestEnv`] (its own lxcpath and snapdir under a temp
//! dir) and drives LXC's own tools against it: busybox base containers,
//! overlay clones, start/attach/stop. Tests run in parallel, so nothing here
//! touches /var/lib/lxc or /var/lib/lxcsnaps, and container names only need
//! to be unique within one lab.
//!
//! Dropping a Lab cleans up even when the test panicked: it stops every
//! container still running in the lab's lxcpath and snapdir, detaches every
//! mount left under the temp dir (deepest first), and only then lets the
//! temp dir be removed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::TestEnv;

/// Network setting of a base container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// `lxc.net.0.type = empty`: only a loopback device, starts fastest.
    Empty,
    /// `lxc.net.0.type = veth` with a `lxc.net.0.hwaddr` and no link: the
    /// container gets an eth0 showing the configured MAC, no bridge needed.
    Veth,
}

pub struct Lab {
    pub env: TestEnv,
    /// Containers of different Labs share the host's cgroup names (LXC
    /// names cgroups after the container, not its lxcpath), and freezing one
    /// while another of the same name starts can hang: one Lab at a time.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static LABS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Lab {
    pub fn new() -> Lab {
        // A test that failed while holding the lock leaves it poisoned;
        // its Lab has cleaned up all the same.
        let guard = LABS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Lab {
            env: TestEnv::new(),
            _one_at_a_time: guard,
        }
    }

    pub fn lxcpath(&self) -> &Path {
        &self.env.lxcpath
    }

    pub fn snapdir(&self) -> &Path {
        &self.env.snapdir
    }

    /// `<lxcpath>/<name>`
    pub fn dir(&self, lxcpath: &Path, name: &str) -> PathBuf {
        lxcpath.join(name)
    }

    /// A busybox container in the lab's lxcpath without network devices.
    pub fn create_base(&self, name: &str) {
        self.create_base_with(name, Net::Empty);
    }

    /// A busybox container with a veth eth0; returns the MAC in its config.
    pub fn create_base_with_mac(&self, name: &str) -> String {
        self.create_base_with(name, Net::Veth);
        let macs = config_values(&self.config(self.lxcpath(), name), "lxc.net.0.hwaddr");
        assert_eq!(macs.len(), 1, "hwaddr of {name}: {macs:?}");
        macs[0].clone()
    }

    pub fn create_base_with(&self, name: &str, net: Net) {
        let conf = self.env.path().join(format!("create-{name}.conf"));
        let text = match net {
            Net::Empty => "lxc.net.0.type = empty\n".to_string(),
            // lxc-create fills in the x's with random hex digits.
            Net::Veth => "lxc.net.0.type = veth\nlxc.net.0.hwaddr = 10:66:6a:xx:xx:xx\n\
                          lxc.net.0.flags = up\n"
                .to_string(),
        };
        fs::write(&conf, text).expect("writing lxc-create config");
        let conf = conf.to_str().expect("utf-8 temp path").to_string();
        self.lxc(
            "lxc-create",
            &[
                "-P",
                self.lxcpath_str(),
                "-t",
                "busybox",
                "-n",
                name,
                "-f",
                &conf,
            ],
        );
        assert!(
            self.lxcpath()
                .join(name)
                .join("rootfs/bin/busybox")
                .exists(),
            "lxc-create made no busybox rootfs for {name}"
        );
    }

    /// `lxc-copy -s -B overlayfs -n BASE -N NAME` in the lab's lxcpath.
    pub fn overlay_clone(&self, base: &str, name: &str) {
        self.lxc(
            "lxc-copy",
            &[
                "-P",
                self.lxcpath_str(),
                "-s",
                "-B",
                "overlayfs",
                "-n",
                base,
                "-N",
                name,
            ],
        );
        assert!(
            self.delta(name).is_dir(),
            "lxc-copy made no {}",
            self.delta(name).display()
        );
    }

    /// `lxc-start -d`, then waits until the container is RUNNING. On failure
    /// the panic message carries the tail of LXC's log.
    pub fn start(&self, lxcpath: &Path, name: &str) {
        let tag = lxcpath
            .file_name()
            .map(|s| s.to_string_lossy().into_owned());
        let log = self
            .env
            .path()
            .join(format!("start-{}-{name}.log", tag.unwrap_or_default()));
        let out = Command::new("lxc-start")
            .arg("-P")
            .arg(lxcpath)
            .args(["-n", name, "-d", "-l", "INFO", "-o"])
            .arg(&log)
            .output()
            .expect("running lxc-start");
        if !out.status.success() {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "lxc-start -P {} -n {name} failed ({:?})\nstderr: {}\nlog tail:\n{}",
                lxcpath.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr),
                tail.join("\n")
            );
        }
        let lp = path_str(lxcpath);
        self.lxc(
            "lxc-wait",
            &["-P", lp, "-n", name, "-s", "RUNNING", "-t", "30"],
        );
    }

    /// Runs `sh -c SCRIPT` inside the container (clean environment); asserts
    /// success and returns stdout.
    pub fn attach(&self, lxcpath: &Path, name: &str, script: &str) -> String {
        let out = self.attach_output(lxcpath, name, script);
        assert!(
            out.status.success(),
            "in {name}: sh -c {script:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn attach_output(&self, lxcpath: &Path, name: &str, script: &str) -> Output {
        Command::new("lxc-attach")
            .arg("-P")
            .arg(lxcpath)
            .args(["-n", name, "--clear-env", "--", "/bin/sh", "-c", script])
            .output()
            .expect("running lxc-attach")
    }

    /// `lxc-stop -k` and waits until STOPPED.
    pub fn stop(&self, lxcpath: &Path, name: &str) {
        let lp = path_str(lxcpath);
        self.lxc("lxc-stop", &["-P", lp, "-n", name, "-k"]);
        self.lxc(
            "lxc-wait",
            &["-P", lp, "-n", name, "-s", "STOPPED", "-t", "30"],
        );
    }

    /// RUNNING, STOPPED, FROZEN, ... as `lxc-info -s -H` prints it.
    pub fn state(&self, lxcpath: &Path, name: &str) -> String {
        let lp = path_str(lxcpath);
        self.lxc("lxc-info", &["-P", lp, "-n", name, "-s", "-H"])
            .trim()
            .to_string()
    }

    /// PID of the container's init as the host sees it.
    pub fn init_pid(&self, lxcpath: &Path, name: &str) -> u32 {
        let lp = path_str(lxcpath);
        let text = self.lxc("lxc-info", &["-P", lp, "-n", name, "-p", "-H"]);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("lxc-info -p printed {text:?}"))
    }

    /// `<lxcpath>/<name>/overlay/delta` (where LXC 4+ keeps an overlay clone's upper).
    pub fn delta(&self, name: &str) -> PathBuf {
        self.lxcpath().join(name).join("overlay/delta")
    }

    pub fn config(&self, lxcpath: &Path, name: &str) -> String {
        let path = lxcpath.join(name).join("config");
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// Runs an LXC tool (or any command), asserts success, returns stdout.
    pub fn lxc(&self, tool: &str, args: &[&str]) -> String {
        let out = self.lxc_output(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a tool with a time limit (two minutes), so that a hung LXC
    /// command fails the test instead of stalling the whole run.
    pub fn lxc_output(&self, tool: &str, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["--kill-after=10", "120", tool])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"))
    }

    pub fn lxcpath_str(&self) -> &str {
        path_str(self.lxcpath())
    }

    pub fn snapdir_str(&self) -> &str {
        path_str(self.snapdir())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // No panics in here: a second panic while unwinding would abort the
        // whole test binary and leave containers behind.
        // The last: where `exec` runs its throwaway copies.
        let exec = self.env.snapdir.join(".lxc-snap/exec");
        for lxcpath in [&self.env.lxcpath, &self.env.snapdir, &exec] {
            stop_all_running(lxcpath);
        }
        detach_mounts_under(self.env.path());
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Stops every container `lxc-ls --running` reports in LXCPATH (running or frozen).
pub fn stop_all_running(lxcpath: &Path) {
    if !lxcpath.is_dir() {
        return;
    }
    let out = match Command::new("lxc-ls")
        .arg("-P")
        .arg(lxcpath)
        .args(["--running", "-1"])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("cleanup: running lxc-ls: {e}");
            return;
        }
    };
    for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let res = Command::new("lxc-stop")
            .arg("-P")
            .arg(lxcpath)
            .args(["-n", name, "-k"])
            .output();
        match res {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "cleanup: lxc-stop -P {} -n {name} -k: {}",
                lxcpath.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("cleanup: running lxc-stop: {e}"),
        }
    }
}

/// Mount points at or under DIR, per /proc/self/mountinfo, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything mounted under DIR, deepest first; a few
/// rounds, since one path can carry several stacked mounts.
pub fn detach_mounts_under(dir: &Path) {
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("cleanup: umount2({}, MNT_DETACH): {e}", m.display());
            }
        }
    }
    let left = mounts_under(dir);
    if !left.is_empty() {
        eprintln!("cleanup: still mounted: {left:?}");
    }
}

/// Values of KEY in an LXC config text, in order, surrounding double quotes
/// removed (LXC accepts `lxc.uts.name = "base"`, as the busybox template writes).
pub fn config_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            if k.trim() != key {
                return None;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some(v.to_string())
        })
        .collect()
}

/// The single value of KEY; panics when it is missing or repeated.
pub fn config_value(text: &str, key: &str) -> String {
    let v = config_values(text, key);
    assert_eq!(v.len(), 1, "expected one {key} in config:\n{text}");
    v[0].clone()
}

/// Pairs of lines `LXCPATH\nNAME\n` as in `lxc_rdepends` / `lxc_snapshots`.
pub fn dependency_pairs(path: &Path) -> Vec<(String, String)> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() % 2 == 0,
        "{} is not pairs of lines: {text:?}",
        path.display()
    );
    lines
        .chunks(2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

/// What a tree entry is, for comparing trees: everything but times and inode numbers.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:o} {}:{} size {} hash {:016x}",
            self.kind, self.mode, self.uid, self.gid, self.size, self.content
        )?;
        for (k, v) in &self.xattrs {
            write!(f, " {k}={:?}", String::from_utf8_lossy(v))?;
        }
        Ok(())
    }
}

impl Entry {
    pub fn is_whiteout(&self) -> bool {
        self.kind == "char 0:0"
    }
}

/// Every entry under ROOT (ROOT itself as ""), keyed by relative path,
/// never following symlinks.
pub fn tree_manifest(root: &Path) -> BTreeMap<String, Entry> {
    manifest(root, false)
}

/// [`tree_manifest`] of an overlay mount, whose directory listings may
/// name whiteouts that cannot be looked up (a directory that comes from a
/// single layer lists that layer's whiteouts): those are not there.
pub fn view_manifest(root: &Path) -> BTreeMap<String, Entry> {
    manifest(root, true)
}

fn manifest(root: &Path, skip_unlisted: bool) -> BTreeMap<String, Entry> {
    let mut map = BTreeMap::new();
    for item in walkdir::WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(false)
    {
        let item = match item {
            Err(e)
                if skip_unlisted
                    && e.io_error().map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound) =>
            {
                continue
            }
            item => item.unwrap_or_else(|e| panic!("walking {}: {e}", root.display())),
        };
        let path = item.path();
        let rel = path
            .strip_prefix(root)
            .expect("walkdir stays under root")
            .to_string_lossy()
            .into_owned();
        let md = match fs::symlink_metadata(path) {
            Err(e) if skip_unlisted && e.kind() == std::io::ErrorKind::NotFound => continue,
            md => md.unwrap_or_else(|e| panic!("lstat {}: {e}", path.display())),
        };
        let ft = md.file_type();
        let mut content = 0;
        let kind = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_file() {
            content = hash_file(path);
            "file".to_string()
        } else if ft.is_symlink() {
            let target = fs::read_link(path).expect("readlink");
            format!("symlink -> {}", target.display())
        } else if ft.is_char_device() || ft.is_block_device() {
            let dev = md.rdev();
            let what = if ft.is_char_device() { "char" } else { "block" };
            format!("{what} {}:{}", libc::major(dev), libc::minor(dev))
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            "socket".to_string()
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(path) {
            for name in names {
                let name = name.to_string_lossy().into_owned();
                if let Ok(Some(v)) = xattr::get(path, &name) {
                    xattrs.insert(name, v);
                }
            }
        }
        let size = if ft.is_dir() { 0 } else { md.size() };
        map.insert(
            rel,
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size,
                content,
                xattrs,
            },
        );
    }
    map
}

fn hash_file(path: &Path) -> u64 {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).expect("reading file");
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    h.finish()
}

/// Asserts two manifests are equal apart from the paths in IGNORE, listing
/// every difference.
pub fn assert_same_tree(
    what: &str,
    left: &BTreeMap<String, Entry>,
    right: &BTreeMap<String, Entry>,
    ignore: &[&str],
) {
    let mut diffs = Vec::new();
    for (path, l) in left {
        if ignore.contains(&path.as_str()) {
            continue;
        }
        match right.get(path) {
            None => diffs.push(format!("only in left:  {path:?} {l:?}")),
            Some(r) if r != l => diffs.push(format!("differs: {path:?}\n   {l:?}\n   {r:?}")),
            Some(_) => {}
        }
    }
    for (path, r) in right {
        if !ignore.contains(&path.as_str()) && !left.contains_key(path) {
            diffs.push(format!("only in right: {path:?} {r:?}"));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// Names in a directory (empty when it does not exist), sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .map(|e| {
            e.expect("readdir")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
