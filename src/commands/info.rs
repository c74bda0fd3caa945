//! `lxc-snap info SNAP [--json]`: everything known about one snapshot, and
//! a failure status when it is broken (its tree or a base layer is gone).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::Local;
use serde::Serialize;

use super::{require_root, Context};
use crate::error::{Error, ErrorKind, Result};
use crate::lxc::container::{read_dependency_file, DependencyEntry};
use crate::names::SnapshotName;
use crate::store::{self, Backing, TreeFingerprint};
use crate::ui::human_bytes;

#[derive(Serialize)]
struct Lower {
    path: PathBuf,
    /// `unchanged`, `changed`, `missing`, `unknown` (no fingerprint
    /// recorded), or `refused` (not a lower lxc-snap accepts; see
    /// `--allow-lower`).
    state: &'static str,
}

#[derive(Serialize)]
struct Dependency {
    lxcpath: PathBuf,
    name: String,
}

#[derive(Serialize)]
struct Info {
    name: String,
    container: String,
    number: u64,
    path: PathBuf,
    created: String,
    comment: Option<String>,
    pinned: bool,
    backing: Backing,
    lxcpath: PathBuf,
    tree_present: bool,
    lowers: Vec<Lower>,
    files: u64,
    bytes: u64,
    /// Allocated bytes deleting this snapshot frees (recorded).
    used_bytes: u64,
    /// The snapshot this one is stored as changes to, if any.
    layer_over: Option<String>,
    /// Entries in the layer itself, for a layer.
    layer_entries: Option<u64>,
    /// The snapshot it is stored as changes to was deleted and is kept for
    /// its layers.
    layer_over_held: bool,
    /// Allocated bytes of the captured tree, each inode once; `None` when
    /// the tree cannot be read.
    bytes_on_disk: Option<u64>,
    base: Vec<Dependency>,
    dependents: Vec<Dependency>,
}

pub fn run(ctx: &Context, name: &SnapshotName, json: bool) -> Result<()> {
    // The captured tree is in a 0700 directory: without root it would look
    // missing.
    require_root("showing everything about a snapshot")?;
    let snapshot = ctx.store.get(name)?;
    let meta = &snapshot.meta;
    let tree_present = snapshot.ensure_complete().is_ok();
    let family = ctx.store.snapshots_of_with_held(name.container(), ctx.ui)?;
    let lowers = meta
        .lowers
        .iter()
        .enumerate()
        .map(|(i, path)| Lower {
            path: path.clone(),
            state: lower_state(ctx, path, meta.lower_fingerprints.get(i)),
        })
        .collect::<Vec<_>>();
    let snapshot_dir = ctx.store.snapshot_dir(&snapshot)?;
    let deps = |file: &str| -> Result<Vec<Dependency>> {
        Ok(read_dependency_file(&snapshot_dir, file)?
            .into_iter()
            .map(|DependencyEntry { lxcpath, name }| Dependency { lxcpath, name })
            .collect())
    };
    let info = Info {
        name: name.to_string(),
        container: meta.container.clone(),
        number: name.number(),
        path: snapshot.dir.clone(),
        created: meta.created_time()?.to_rfc3339(),
        comment: ctx.store.comment(&snapshot)?,
        pinned: meta.pinned,
        backing: meta.backing,
        lxcpath: meta.lxcpath.clone(),
        tree_present,
        lowers,
        files: meta.files,
        bytes: meta.bytes,
        used_bytes: store::Usage::new(&family).frees(&snapshot),
        layer_over: meta.layer.as_ref().map(|l| l.anchor.clone()),
        layer_entries: meta.layer.as_ref().map(|l| l.entries),
        layer_over_held: snapshot
            .anchor()
            .is_some_and(|a| family.iter().any(|s| s.name == a && s.meta.held)),
        bytes_on_disk: if tree_present {
            ctx.store
                .tree_dir(&snapshot)
                .ok()
                .as_ref()
                .and_then(disk_usage)
        } else {
            None
        },
        base: deps("lxc_rdepends")?,
        dependents: deps("lxc_snapshots")?,
    };
    if json {
        let text = serde_json::to_string_pretty(&info)
            .map_err(|e| Error::new(ErrorKind::Other, format!("encoding JSON: {e}")))?;
        println!("{text}");
    } else {
        print_text(&info);
    }
    let mut broken = Vec::new();
    broken.extend(snapshot.missing());
    for l in info.lowers.iter().filter(|l| l.state == "missing") {
        broken.push(format!("its base layer {} is missing", l.path.display()));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Other,
            format!("snapshot {name} is broken: {}", broken.join("; ")),
        ))
    }
}

fn lower_state(ctx: &Context, path: &Path, recorded: Option<&TreeFingerprint>) -> &'static str {
    let dir = match ctx.open_lower(path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == crate::ErrorKind::NotFound => return "missing",
        Err(_) => return "refused",
    };
    match (recorded, TreeFingerprint::of(&dir)) {
        (Some(r), Ok(now)) if *r == now => "unchanged",
        (Some(_), Ok(_)) => "changed",
        _ => "unknown",
    }
}

/// Allocated bytes below `root`, each inode once, without following links
/// or touching access times.
fn disk_usage(root: &crate::dir::Dir) -> Option<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    crate::walk::for_each_entry(root, |st| {
        if seen.insert((st.st_dev, st.st_ino)) {
            total += st.st_blocks as u64 * 512;
        }
    })
    .ok()?;
    Some(total)
}

/// One line of the report, escaped: paths and comments come from
/// containers and users.
macro_rules! line {
    ($($arg:tt)*) => {
        println!("{}", crate::printable::escape(&format!($($arg)*)))
    };
}

fn print_text(i: &Info) {
    let created = chrono::DateTime::parse_from_rfc3339(&i.created)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S %z")
                .to_string()
        })
        .unwrap_or_else(|_| i.created.clone());
    let dep_list = |d: &[Dependency]| {
        if d.is_empty() {
            "none".to_string()
        } else {
            d.iter()
                .map(|d| format!("{} (in {})", d.name, d.lxcpath.display()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    line!("snapshot:      {}", i.name);
    line!(
        "container:     {} (in {})",
        i.container,
        i.lxcpath.display()
    );
    line!("number:        {}", i.number);
    line!("created:       {created}");
    line!("pinned:        {}", if i.pinned { "yes" } else { "no" });
    line!(
        "backing:       {}",
        match i.backing {
            Backing::Overlay => "overlay",
            Backing::Dir => "dir",
        }
    );
    line!("path:          {}", i.path.display());
    line!(
        "tree:          {}",
        if i.tree_present { "present" } else { "MISSING" }
    );
    match (&i.layer_over, i.layer_entries) {
        (Some(anchor), Some(n)) => line!(
            "stored as:     changes to {anchor}{} ({n} entries)",
            if i.layer_over_held {
                ", deleted but kept for its layers"
            } else {
                ""
            }
        ),
        _ => line!("stored as:     a whole tree"),
    }
    for l in &i.lowers {
        line!("lower:         {} ({})", l.path.display(), l.state);
    }
    line!("files:         {}", i.files);
    line!(
        "refers to:     {} bytes ({})",
        i.bytes,
        human_bytes(i.bytes)
    );
    line!(
        "frees:         {} bytes ({}; what deleting it frees now)",
        i.used_bytes,
        human_bytes(i.used_bytes)
    );
    match i.bytes_on_disk {
        Some(b) => line!("bytes on disk: {b} ({})", human_bytes(b)),
        None => line!("bytes on disk: unknown"),
    }
    line!("base:          {}", dep_list(&i.base));
    line!("dependents:    {}", dep_list(&i.dependents));
    match &i.comment {
        Some(c) => {
            line!("comment:");
            for line in c.lines() {
                line!("  {line}");
            }
        }
        None => line!("comment:       none"),
    }
}
