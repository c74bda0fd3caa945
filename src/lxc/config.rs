//! Reading and rewriting LXC container configs in every spelling.
//!
//! A config is kept as its lines: rewriting changes the values of the keys
//! it must change and leaves every other line (comments, unknown keys,
//! includes, order, spacing) byte for byte as it was. The rootfs value is
//! parsed into a [`Rootfs`]; clone-style rewriting (what `lxc-copy` does to
//! a copy) is [`LxcConfig::retarget`].

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Keys that name the root filesystem (`lxc.rootfs.mount` and
/// `lxc.rootfs.options` do not).
const ROOTFS_KEYS: [&str; 2] = ["lxc.rootfs.path", "lxc.rootfs"];
const HOSTNAME_KEYS: [&str; 2] = ["lxc.uts.name", "lxc.utsname"];
const FSTAB_KEYS: [&str; 2] = ["lxc.mount.fstab", "lxc.mount"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Entry {
        key: String,
        value: String,
        raw: Option<String>,
    },
    Other(String),
}

/// A parsed config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LxcConfig {
    lines: Vec<Line>,
    trailing_newline: bool,
}

/// How a container's root filesystem is stored, from its rootfs value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// `overlay:LOWER[:LOWER...]:UPPER` or `overlayfs:...`; lowers top first.
    Overlay {
        prefix: String,
        lowers: Vec<PathBuf>,
        upper: PathBuf,
    },
    /// `dir:PATH` (prefix `dir`) or a bare `/PATH` (empty prefix).
    Dir { prefix: String, path: PathBuf },
    /// Any other backend (btrfs, zfs, lvm, loop, rbd, nbd, ...).
    Unsupported { kind: String },
}

impl Rootfs {
    pub fn parse(value: &str) -> Result<Rootfs> {
        if value.starts_with('/') {
            return Ok(Rootfs::Dir {
                prefix: String::new(),
                path: PathBuf::from(value),
            });
        }
        let Some((prefix, rest)) = value.split_once(':') else {
            return Ok(Rootfs::Unsupported {
                kind: if value.is_empty() {
                    "none".into()
                } else {
                    value.into()
                },
            });
        };
        match prefix {
            "overlay" | "overlayfs" => {
                // LXC splits at the LAST ":/": the upper is one path, the
                // part before may hold several lowers.
                let malformed = || {
                    Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "cannot parse overlay rootfs {value:?}: expected {prefix}:LOWER:UPPER"
                        ),
                    )
                };
                let split = rest.rfind(":/").ok_or_else(malformed)?;
                let (lower, upper) = (&rest[..split], &rest[split + 1..]);
                if lower.is_empty() || lower.split(':').any(|l| !l.starts_with('/')) {
                    return Err(malformed());
                }
                Ok(Rootfs::Overlay {
                    prefix: prefix.to_string(),
                    lowers: lower.split(':').map(PathBuf::from).collect(),
                    upper: PathBuf::from(upper),
                })
            }
            "dir" if rest.starts_with('/') => Ok(Rootfs::Dir {
                prefix: prefix.to_string(),
                path: PathBuf::from(rest),
            }),
            _ => Ok(Rootfs::Unsupported {
                kind: prefix.to_string(),
            }),
        }
    }

    /// The value that names this rootfs in a config.
    pub fn to_value(&self) -> String {
        match self {
            Rootfs::Overlay {
                prefix,
                lowers,
                upper,
            } => {
                let mut v = prefix.clone();
                for l in lowers {
                    v.push(':');
                    v.push_str(&l.to_string_lossy());
                }
                v.push(':');
                v.push_str(&upper.to_string_lossy());
                v
            }
            Rootfs::Dir { prefix, path } if prefix.is_empty() => {
                path.to_string_lossy().into_owned()
            }
            Rootfs::Dir { prefix, path } => format!("{prefix}:{}", path.display()),
            Rootfs::Unsupported { kind } => kind.clone(),
        }
    }

    /// The spelling of an overlay prefix that goes with a config's keys:
    /// LXC before 2.1 (`lxc.rootfs`) knew only `overlayfs`.
    pub fn overlay_prefix_for(rootfs_key: &str, current: &str) -> String {
        if current == "overlay" || current == "overlayfs" {
            current.to_string()
        } else if rootfs_key == "lxc.rootfs" {
            "overlayfs".into()
        } else {
            "overlay".into()
        }
    }
}

/// What [`LxcConfig::retarget`] changes, besides the files it names.
#[derive(Debug, Clone)]
pub struct Retarget<'a> {
    /// The old container directory, in every spelling the config may use.
    pub old_dirs: &'a [&'a Path],
    pub new_dir: &'a Path,
    pub new_name: &'a str,
    /// What `lxc.uts.name` says: the host name (a DNS label).
    pub host_name: &'a str,
    pub rootfs: &'a Rootfs,
}

/// The arguments that mark the `lxc.hook.pre-start` lxc-snap puts in a
/// snapshot's config to empty its scratch at each start.
pub const RESET_HOOK_ARGS: &str = "reset --from-lxc";

/// A rewritten config and the files it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retargeted {
    pub config: LxcConfig,
    /// Files inside the old container directory (relative to it) that the
    /// config now names at the same place in the new one: to be copied.
    pub copy: Vec<PathBuf>,
    /// Files outside it that root reads or runs on the host when the new
    /// container starts (fstab, hook programs), with their keys, kept as
    /// they are.
    pub outside: Vec<(String, PathBuf)>,
}

/// Hooks that run inside the container (their program is the
/// container's), and the key that only sets the hooks' calling convention.
const NOT_HOST_HOOKS: [&str; 2] = ["lxc.hook.start", "lxc.hook.version"];

impl LxcConfig {
    pub fn parse(text: &str) -> LxcConfig {
        let trailing_newline = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n').map(parse_line).collect()
        };
        LxcConfig {
            lines,
            trailing_newline: trailing_newline || text.is_empty(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            match line {
                Line::Entry { raw: Some(raw), .. } | Line::Other(raw) => out.push_str(raw),
                Line::Entry {
                    key,
                    value,
                    raw: None,
                } => {
                    out.push_str(key);
                    out.push_str(" = ");
                    out.push_str(value);
                }
            }
        }
        if self.trailing_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    /// The host uid and gid the container's root is mapped to
    /// (`lxc.idmap = u 0 UID N` and `g 0 GID N`, or the 2.x `lxc.id_map`):
    /// set for an unprivileged container.
    pub fn mapped_root(&self) -> Option<(u32, u32)> {
        let root_of = |kind: &str| {
            self.entries()
                .filter(|(k, _)| *k == "lxc.idmap" || *k == "lxc.id_map")
                .find_map(|(_, v)| {
                    let parts: Vec<&str> = v.split_whitespace().collect();
                    match parts.as_slice() {
                        [k, "0", host, _] if *k == kind => host.parse::<u32>().ok(),
                        _ => None,
                    }
                })
        };
        Some((root_of("u")?, root_of("g")?))
    }

    /// The value of `key`; the last one wins, as in LXC.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// Every `key = value` line, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry { key, value, .. } => Some((key.as_str(), value.as_str())),
            Line::Other(_) => None,
        })
    }

    /// The key that names the rootfs, as spelled in this config, and its value.
    pub fn rootfs_entry(&self) -> Option<(&str, &str)> {
        self.entries()
            .filter(|(k, _)| ROOTFS_KEYS.contains(k))
            .last()
    }

    pub fn rootfs(&self) -> Result<Rootfs> {
        match self.rootfs_entry() {
            Some((_, value)) => Rootfs::parse(value),
            None => Ok(Rootfs::Unsupported {
                kind: "none (no lxc.rootfs.path)".into(),
            }),
        }
    }

    /// Whether this config uses the LXC 1.x/2.0 key spellings.
    fn is_legacy(&self) -> bool {
        matches!(self.rootfs_entry(), Some(("lxc.rootfs", _)))
    }

    /// Sets every line whose key satisfies `pred` with `f(key, value)`.
    fn map_values(
        &mut self,
        pred: impl Fn(&str) -> bool,
        mut f: impl FnMut(&str, &str) -> Option<String>,
    ) -> usize {
        let mut n = 0;
        for line in &mut self.lines {
            if let Line::Entry { key, value, raw } = line {
                if pred(key) {
                    if let Some(new) = f(key, value) {
                        if new != *value {
                            *value = new;
                            *raw = None;
                        }
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Names `rootfs` as the root filesystem, with the key spelling the
    /// config has (`lxc.rootfs.path` if it has none), and sets
    /// `lxc.rootfs.backend` where there is one.
    pub fn set_rootfs(&mut self, rootfs: &Rootfs) {
        let value = rootfs.to_value();
        if self.map_values(|k| ROOTFS_KEYS.contains(&k), |_, _| Some(value.clone())) == 0 {
            self.push("lxc.rootfs.path", &value);
        }
        let backend = match rootfs {
            Rootfs::Overlay { prefix, .. } => prefix.clone(),
            _ => "dir".to_string(),
        };
        self.map_values(|k| k == "lxc.rootfs.backend", |_, _| Some(backend.clone()));
    }

    /// Replaces every network device with none: `lxc.net.0.type = empty`
    /// (`lxc.network.type = empty` in a 1.x/2.0 config).
    pub fn without_network(&mut self) {
        self.lines.retain(|l| {
            !matches!(l, Line::Entry { key, .. }
                if key.starts_with("lxc.net.") || key.starts_with("lxc.network."))
        });
        if self.is_legacy() {
            self.push("lxc.network.type", "empty");
        } else {
            self.push("lxc.net.0.type", "empty");
        }
    }

    /// Removes the scratch-emptying hook lxc-snap put in a snapshot's
    /// config ([`RESET_HOOK_ARGS`]) and, with `command`, puts this one in.
    pub fn set_reset_hook(&mut self, command: Option<&str>) {
        self.lines.retain(|l| {
            !matches!(l, Line::Entry { key, value, .. }
                if key == "lxc.hook.pre-start" && value.contains(RESET_HOOK_ARGS))
        });
        if let Some(command) = command {
            self.push("lxc.hook.pre-start", command);
        }
    }

    fn push(&mut self, key: &str, value: &str) {
        self.lines.push(Line::Entry {
            key: key.to_string(),
            value: value.to_string(),
            raw: None,
        });
    }

    /// Rewrites a copy of this config for a container that lives in
    /// `new_dir` under the name `new_name` with root filesystem `rootfs`,
    /// the way `lxc-copy` rewrites a clone: rootfs (same key spelling),
    /// host name (both spellings), new MACs, fstab and hook scripts that
    /// lived in the old directory (returned, to be copied), overlay paths in
    /// mount entries, and `lxc.ephemeral` cleared.
    pub fn retarget(&self, t: &Retarget<'_>, mut random_mac: impl FnMut() -> String) -> Retargeted {
        let mut c = self.clone();
        let mut files = Vec::new();
        let mut outside = Vec::new();
        c.set_rootfs(t.rootfs);

        if c.map_values(
            |k| HOSTNAME_KEYS.contains(&k),
            |_, _| Some(t.host_name.to_string()),
        ) == 0
        {
            let key = if c.is_legacy() {
                "lxc.utsname"
            } else {
                "lxc.uts.name"
            };
            c.push(key, t.host_name);
        }
        // A snapshot's own hook is no hook of the new container.
        c.set_reset_hook(None);
        c.map_values(is_hwaddr_key, |_, _| Some(random_mac()));
        c.map_values(|k| k == "lxc.ephemeral", |_, _| Some("0".to_string()));

        let mut relocate = |key: &str, value: &str| -> Option<String> {
            let path = Path::new(value);
            let Some(rel) = t.old_dirs.iter().find_map(|d| inside(path, d)) else {
                if path.is_absolute() {
                    outside.push((key.to_string(), path.to_path_buf()));
                }
                return None;
            };
            files.push(rel.to_path_buf());
            Some(t.new_dir.join(rel).to_string_lossy().into_owned())
        };
        c.map_values(|k| FSTAB_KEYS.contains(&k), &mut relocate);
        c.map_values(
            |k| k.starts_with("lxc.hook.") && !NOT_HOST_HOOKS.contains(&k),
            |key, v| {
                // A hook is a command line; only its program is a file.
                let (program, args) = match v.split_once(char::is_whitespace) {
                    Some((p, a)) => (p, Some(a)),
                    None => (v, None),
                };
                let program = relocate(key, program)?;
                Some(match args {
                    Some(a) => format!("{program} {a}"),
                    None => program,
                })
            },
        );

        let new_prefix = format!("{}/", t.new_dir.display());
        for old_dir in t.old_dirs {
            let old_prefix = format!("{}/", old_dir.display());
            c.map_values(
                |k| k == "lxc.mount.entry",
                |_, v| {
                    let opts_overlay = v.contains("upperdir=") || v.contains("workdir=");
                    (opts_overlay && v.contains(&old_prefix))
                        .then(|| v.replace(&old_prefix, &new_prefix))
                },
            );
        }
        Retargeted {
            config: c,
            copy: files,
            outside,
        }
    }
}

fn parse_line(raw: &str) -> Line {
    let trimmed = raw.trim_start();
    if trimmed.starts_with('#') {
        return Line::Other(raw.to_string());
    }
    match trimmed.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Line::Entry {
            key: key.trim().to_string(),
            value: unquote(value.trim()).to_string(),
            raw: Some(raw.to_string()),
        },
        _ => Line::Other(raw.to_string()),
    }
}

/// LXC drops one pair of matching quotes around a value (the busybox
/// template writes `lxc.uts.name = "base"`).
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

fn is_hwaddr_key(key: &str) -> bool {
    let Some(rest) = key.strip_suffix(".hwaddr") else {
        return false;
    };
    let index_ok = |s: &str| s.is_empty() || s.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = rest.strip_prefix("lxc.net.") {
        return !n.is_empty() && index_ok(n);
    }
    if rest == "lxc.network" {
        return true;
    }
    rest.strip_prefix("lxc.network.")
        .is_some_and(|n| !n.is_empty() && index_ok(n))
}

use crate::dir::inside;

/// A random locally administered MAC with LXC's prefix `10:66:6a`.
pub fn random_mac() -> String {
    let b = crate::dir::random_bytes::<3>();
    format!("10:66:6a:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(prefix: &str, lowers: &[&str], upper: &str) -> Rootfs {
        Rootfs::Overlay {
            prefix: prefix.into(),
            lowers: lowers.iter().map(PathBuf::from).collect(),
            upper: upper.into(),
        }
    }

    #[test]
    fn parses_every_rootfs_spelling() {
        let cases = [
            (
                "overlay:/var/lib/lxc/base/rootfs:/var/lib/lxc/c/overlay/delta",
                overlay(
                    "overlay",
                    &["/var/lib/lxc/base/rootfs"],
                    "/var/lib/lxc/c/overlay/delta",
                ),
            ),
            (
                "overlayfs:/var/lib/lxc/base/rootfs:/var/lib/lxc/c/delta0",
                overlay(
                    "overlayfs",
                    &["/var/lib/lxc/base/rootfs"],
                    "/var/lib/lxc/c/delta0",
                ),
            ),
            (
                "overlay:/s/delta:/b/rootfs:/s/scratch/upper",
                overlay("overlay", &["/s/delta", "/b/rootfs"], "/s/scratch/upper"),
            ),
            (
                "dir:/var/lib/lxc/c/rootfs",
                Rootfs::Dir {
                    prefix: "dir".into(),
                    path: "/var/lib/lxc/c/rootfs".into(),
                },
            ),
            (
                "/var/lib/lxc/c/rootfs",
                Rootfs::Dir {
                    prefix: String::new(),
                    path: "/var/lib/lxc/c/rootfs".into(),
                },
            ),
            (
                "btrfs:/var/lib/lxc/c/rootfs",
                Rootfs::Unsupported {
                    kind: "btrfs".into(),
                },
            ),
            ("zfs:tank/lxc/c", Rootfs::Unsupported { kind: "zfs".into() }),
            ("lvm:/dev/vg/c", Rootfs::Unsupported { kind: "lvm".into() }),
            (
                "loop:/var/lib/lxc/c/rootdev",
                Rootfs::Unsupported {
                    kind: "loop".into(),
                },
            ),
            ("rbd:pool/c", Rootfs::Unsupported { kind: "rbd".into() }),
        ];
        for (value, want) in cases {
            let got = Rootfs::parse(value).expect(value);
            assert_eq!(got, want, "{value}");
            if !matches!(want, Rootfs::Unsupported { .. }) {
                assert_eq!(got.to_value(), value, "round trip of {value}");
            }
        }
    }

    #[test]
    fn refuses_malformed_overlay_values() {
        for value in [
            "overlay:",
            "overlay:/only",
            "overlay:relative:/upper",
            "overlayfs:a:b",
        ] {
            assert_eq!(
                Rootfs::parse(value).expect_err(value).kind(),
                ErrorKind::Unsupported,
                "{value}"
            );
        }
    }

    #[test]
    fn finds_rootfs_in_both_key_spellings_but_not_mount_or_options() {
        let new = LxcConfig::parse("lxc.rootfs.path = dir:/a\nlxc.rootfs.mount = /mnt\nlxc.rootfs.options = idmap=container\n");
        assert_eq!(new.rootfs_entry(), Some(("lxc.rootfs.path", "dir:/a")));
        let old = LxcConfig::parse(
            "lxc.rootfs = overlayfs:/b/rootfs:/c/delta0\nlxc.rootfs.backend = overlayfs\n",
        );
        assert_eq!(
            old.rootfs_entry(),
            Some(("lxc.rootfs", "overlayfs:/b/rootfs:/c/delta0"))
        );
        assert_eq!(
            old.rootfs().expect("parses"),
            overlay("overlayfs", &["/b/rootfs"], "/c/delta0")
        );
        let none = LxcConfig::parse("lxc.rootfs.mount = /mnt\n");
        assert!(matches!(none.rootfs(), Ok(Rootfs::Unsupported { .. })));
    }

    #[test]
    fn untouched_config_renders_byte_for_byte() {
        let text = "# comment\n\nlxc.include = /usr/share/lxc/config/common.conf\n  lxc.arch=linux64  \nnot a key line\nlxc.rootfs.path = dir:/x\n";
        assert_eq!(LxcConfig::parse(text).render(), text);
        let no_newline = "lxc.uts.name = a";
        assert_eq!(LxcConfig::parse(no_newline).render(), no_newline);
        assert_eq!(LxcConfig::parse("").render(), "");
    }

    const NEW_STYLE: &str = "\
# Template used to create this container
lxc.include = /usr/share/lxc/config/common.conf
lxc.net.0.type = veth
lxc.net.0.hwaddr = 00:16:3e:11:22:33
lxc.net.1.type = veth
lxc.net.1.hwaddr = 00:16:3e:44:55:66
lxc.mount.fstab = /var/lib/lxc/c1/fstab
lxc.hook.pre-start = /var/lib/lxc/c1/pre.sh --flag x
lxc.hook.post-stop = /usr/share/lxc/hooks/shared
lxc.mount.entry = overlay opt overlay lowerdir=/srv/o,upperdir=/var/lib/lxc/c1/oupper,workdir=/var/lib/lxc/c1/owork,create=dir 0 0
lxc.mount.entry = /lib lib none ro,bind 0 0
lxc.rootfs.path = overlay:/var/lib/lxc/base/rootfs:/var/lib/lxc/c1/overlay/delta
lxc.rootfs.mount = /usr/lib/x86_64-linux-gnu/lxc/rootfs
lxc.uts.name = c1
lxc.ephemeral = 1
";

    #[test]
    fn the_reset_hook_is_set_once_and_never_carried_to_a_restore() {
        let mut cfg = LxcConfig::parse(NEW_STYLE);
        let ours = "'/usr/bin/lxc-snap' --snapdir '/s' reset --from-lxc";
        cfg.set_reset_hook(Some(ours));
        cfg.set_reset_hook(Some(ours));
        let hooks = |c: &LxcConfig| {
            c.entries()
                .filter(|(k, _)| *k == "lxc.hook.pre-start")
                .map(|(_, v)| v.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            hooks(&cfg),
            ["/var/lib/lxc/c1/pre.sh --flag x", ours],
            "the container's own hook stays, ours once"
        );
        let rootfs = overlay("overlay", &["/var/lib/lxc/base/rootfs"], "/l/r/delta");
        let t = Retarget {
            old_dirs: &[Path::new("/s/c1_0")],
            new_dir: Path::new("/l/r"),
            new_name: "r",
            host_name: "r",
            rootfs: &rootfs,
        };
        let r = cfg.retarget(&t, || "10:66:6a:00:00:01".to_string());
        assert_eq!(hooks(&r.config), ["/var/lib/lxc/c1/pre.sh --flag x"]);
        assert!(r.outside.iter().all(|(_, p)| !p.ends_with("lxc-snap'")));
    }

    #[test]
    fn retarget_rewrites_what_lxc_copy_rewrites_in_new_spelling() {
        let cfg = LxcConfig::parse(NEW_STYLE);
        let rootfs = overlay(
            "overlay",
            &["/s/c1_0/private/delta", "/var/lib/lxc/base/rootfs"],
            "/s/c1_0/private/scratch/upper",
        );
        let t = Retarget {
            old_dirs: &[Path::new("/var/lib/lxc/c1")],
            new_dir: Path::new("/s/c1_0"),
            new_name: "c1_0",
            host_name: "c1-0",
            rootfs: &rootfs,
        };
        let mut macs = ["10:66:6a:00:00:01", "10:66:6a:00:00:02"].into_iter();
        let r = cfg.retarget(&t, || macs.next().expect("two MACs").to_string());
        let (out, files) = (r.config, r.copy);
        assert_eq!(out.get("lxc.rootfs.path"), Some("overlay:/s/c1_0/private/delta:/var/lib/lxc/base/rootfs:/s/c1_0/private/scratch/upper"));
        assert_eq!(
            out.get("lxc.rootfs.mount"),
            Some("/usr/lib/x86_64-linux-gnu/lxc/rootfs")
        );
        assert_eq!(out.get("lxc.uts.name"), Some("c1-0"));
        assert_eq!(out.get("lxc.net.0.hwaddr"), Some("10:66:6a:00:00:01"));
        assert_eq!(out.get("lxc.net.1.hwaddr"), Some("10:66:6a:00:00:02"));
        assert_eq!(out.get("lxc.mount.fstab"), Some("/s/c1_0/fstab"));
        assert_eq!(
            out.get("lxc.hook.pre-start"),
            Some("/s/c1_0/pre.sh --flag x")
        );
        assert_eq!(
            out.get("lxc.hook.post-stop"),
            Some("/usr/share/lxc/hooks/shared")
        );
        assert_eq!(out.get("lxc.ephemeral"), Some("0"));
        let text = out.render();
        assert!(
            text.contains("upperdir=/s/c1_0/oupper,workdir=/s/c1_0/owork"),
            "{text}"
        );
        assert!(text.contains("lxc.mount.entry = /lib lib none ro,bind 0 0\n"));
        assert!(text.starts_with("# Template used to create this container\nlxc.include = /usr/share/lxc/config/common.conf\n"));
        assert!(!text.contains("/var/lib/lxc/c1/"), "{text}");
        assert_eq!(files, [PathBuf::from("fstab"), PathBuf::from("pre.sh")]);
        assert_eq!(
            r.outside,
            [(
                "lxc.hook.post-stop".to_string(),
                PathBuf::from("/usr/share/lxc/hooks/shared")
            )]
        );
    }

    #[test]
    fn retarget_keeps_legacy_spellings() {
        let text = "lxc.utsname = old\nlxc.network.type = veth\nlxc.network.hwaddr = 00:16:3e:aa:bb:cc\nlxc.network.1.hwaddr = 00:16:3e:aa:bb:cd\nlxc.mount = /var/lib/lxc/old/fstab\nlxc.rootfs = overlayfs:/var/lib/lxc/base/rootfs:/var/lib/lxc/old/delta0\nlxc.rootfs.backend = overlayfs\n";
        let cfg = LxcConfig::parse(text);
        let rootfs = overlay(
            "overlayfs",
            &["/var/lib/lxc/base/rootfs"],
            "/var/lib/lxc/new/overlay/delta",
        );
        let t = Retarget {
            old_dirs: &[Path::new("/var/lib/lxc/old")],
            new_dir: Path::new("/var/lib/lxc/new"),
            new_name: "new",
            host_name: "new",
            rootfs: &rootfs,
        };
        let r = cfg.retarget(&t, random_mac);
        let (out, files) = (r.config, r.copy);
        assert_eq!(
            out.get("lxc.rootfs"),
            Some("overlayfs:/var/lib/lxc/base/rootfs:/var/lib/lxc/new/overlay/delta")
        );
        assert_eq!(out.get("lxc.rootfs.path"), None);
        assert_eq!(out.get("lxc.rootfs.backend"), Some("overlayfs"));
        assert_eq!(out.get("lxc.utsname"), Some("new"));
        assert_eq!(out.get("lxc.uts.name"), None);
        assert_eq!(out.get("lxc.mount"), Some("/var/lib/lxc/new/fstab"));
        for key in ["lxc.network.hwaddr", "lxc.network.1.hwaddr"] {
            let mac = out.get(key).expect(key);
            assert!(
                mac.starts_with("10:66:6a:") && mac.len() == 17,
                "{key} = {mac}"
            );
        }
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn retarget_adds_missing_host_name_in_the_configs_spelling() {
        let rootfs = Rootfs::Dir {
            prefix: "dir".into(),
            path: "/l/n/rootfs".into(),
        };
        let t = Retarget {
            old_dirs: &[Path::new("/l/o")],
            new_dir: Path::new("/l/n"),
            new_name: "n",
            host_name: "n",
            rootfs: &rootfs,
        };
        let new = LxcConfig::parse("lxc.rootfs.path = dir:/l/o/rootfs\n")
            .retarget(&t, random_mac)
            .config;
        assert_eq!(new.get("lxc.uts.name"), Some("n"));
        let old = LxcConfig::parse("lxc.rootfs = /l/o/rootfs\n")
            .retarget(&t, random_mac)
            .config;
        assert_eq!(old.get("lxc.utsname"), Some("n"));
        assert_eq!(old.get("lxc.rootfs"), Some("dir:/l/n/rootfs"));
    }

    #[test]
    fn files_outside_the_old_directory_are_not_copied() {
        let text = "lxc.rootfs.path = dir:/l/o/rootfs\nlxc.mount.fstab = /l/o/../../etc/shadow\nlxc.hook.start = /l/other/hook\nlxc.hook.pre-start = /l/other/pre\nlxc.hook.version = 1\n";
        let rootfs = Rootfs::Dir {
            prefix: "dir".into(),
            path: "/l/n/rootfs".into(),
        };
        let t = Retarget {
            old_dirs: &[Path::new("/l/o")],
            new_dir: Path::new("/l/n"),
            new_name: "n",
            host_name: "n",
            rootfs: &rootfs,
        };
        let r = LxcConfig::parse(text).retarget(&t, random_mac);
        let (out, files) = (r.config, r.copy);
        assert!(files.is_empty(), "{files:?}");
        // Root reads the fstab and runs the host hook: the caller must
        // check them; the in-container hook and the version are no files.
        assert_eq!(
            r.outside,
            [
                (
                    "lxc.mount.fstab".to_string(),
                    PathBuf::from("/l/o/../../etc/shadow")
                ),
                (
                    "lxc.hook.pre-start".to_string(),
                    PathBuf::from("/l/other/pre")
                ),
            ]
        );
        assert_eq!(out.get("lxc.mount.fstab"), Some("/l/o/../../etc/shadow"));
    }

    #[test]
    fn quoted_values_are_unquoted_like_lxc_does() {
        let cfg = LxcConfig::parse(
            "lxc.uts.name = \"base\"\nlxc.rootfs.path = 'dir:/l/base/rootfs'\nlxc.arch = \"x\n",
        );
        assert_eq!(cfg.get("lxc.uts.name"), Some("base"));
        assert_eq!(cfg.get("lxc.arch"), Some("\"x"));
        assert_eq!(
            cfg.rootfs().expect("parses"),
            Rootfs::Dir {
                prefix: "dir".into(),
                path: "/l/base/rootfs".into()
            }
        );
        assert_eq!(
            cfg.render(),
            "lxc.uts.name = \"base\"\nlxc.rootfs.path = 'dir:/l/base/rootfs'\nlxc.arch = \"x\n"
        );
    }

    #[test]
    fn hwaddr_keys_in_every_spelling() {
        for k in [
            "lxc.net.0.hwaddr",
            "lxc.net.12.hwaddr",
            "lxc.network.hwaddr",
            "lxc.network.3.hwaddr",
        ] {
            assert!(is_hwaddr_key(k), "{k}");
        }
        for k in [
            "lxc.net.hwaddr",
            "lxc.net.x.hwaddr",
            "lxc.net.0.link",
            "lxc.hwaddr",
            "lxc.net.0.hwaddrx",
        ] {
            assert!(!is_hwaddr_key(k), "{k}");
        }
        let mac = random_mac();
        assert!(mac.starts_with("10:66:6a:") && mac.len() == 17, "{mac}");
    }
}
