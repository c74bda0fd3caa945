//! `lxc-snap info SNAP [--json]`: everything known about one snapshot, and
//! a failure status when it is broken (its tree or a base layer is gone).

use super::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::names::SnapshotName;
use crate::ops::{self, info::Dependency, SnapshotInfo};
use crate::store::Backing;
use crate::store::SnapshotState;
use crate::ui::{human_bytes, print_json_value};

pub fn run(ctx: &Context, name: &SnapshotName, json: bool) -> Result<()> {
    let info = ops::info(ctx.store, name)?;
    if json {
        print_json_value(&info)?;
    } else {
        print_text(&info);
    }
    match info.state {
        SnapshotState::Ok | SnapshotState::BaseChanged => Ok(()),
        state => Err(Error::new(
            ErrorKind::Other,
            format!(
                "snapshot {name} cannot be used ({}): {}",
                state.text(),
                info.state_why.as_deref().unwrap_or("")
            ),
        )
        .with_hint(format!(
            "lxc-snap check {} says what is wrong and what can be done",
            name.container()
        ))),
    }
}

/// One line of the report, escaped: paths and comments come from
/// containers and users.
macro_rules! line {
    ($($arg:tt)*) => {
        crate::ui::out_line(&crate::printable::escape(&format!($($arg)*)))
    };
}

/// Why a snapshot's USED is what it is, a sentence a line.
fn used_explained(i: &SnapshotInfo) -> Vec<String> {
    let mut why = Vec::new();
    if !i.layers_over.is_empty() {
        why.push(format!(
            "= what {} (stored as changes to it) all hide: deleting it keeps the rest of its tree for them",
            i.layers_over.join(", ")
        ));
    } else if let Some(held) = &i.used_includes_held {
        why.push(format!(
            "= its own files and what the deleted {held} still holds for it alone"
        ));
    } else {
        why.push("= the files only it holds".to_string());
    }
    if !i.shares_with.is_empty() {
        why.push(format!(
            "it shares unchanged files with {}; those are in no one's USED",
            i.shares_with.join(" and ")
        ));
    }
    why.push("USED changes when a snapshot it shares files with is taken or deleted".to_string());
    why
}

fn print_text(i: &SnapshotInfo) {
    let created = format!(
        "{} ({})",
        crate::ui::local_time(&i.created_at),
        crate::ui::zone_label()
    );
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
    match &i.state_why {
        Some(why) => line!("state:         {}: {why}", i.state.text()),
        None => line!("state:         {}", i.state.text()),
    }
    if let Some(at) = &i.expires_at {
        line!("expires:       {}", crate::ui::local_time(at));
    }
    if i.auto {
        line!("taken by:      lxc-snap auto (its container's policy)");
    }
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
            "stored as:     changes to {anchor}{} ({n} {})",
            if i.layer_over_held {
                ", deleted but kept for its layers"
            } else {
                ""
            },
            if n == 1 { "entry" } else { "entries" }
        ),
        _ if i.legacy => line!("stored as:     a clone the original lxc-snap made (read as it is)"),
        _ => line!("stored as:     a whole tree"),
    }
    for l in &i.lowers {
        line!("lower:         {} ({})", l.path.display(), l.state);
    }
    line!("files:         {}", i.files);
    line!(
        "size:          {} ({} bytes in its files)",
        human_bytes(i.bytes),
        i.bytes
    );
    line!(
        "refers to:     {} ({} bytes allocated, as du counts; REFER)",
        human_bytes(i.refer_bytes),
        i.refer_bytes
    );
    line!(
        "used:          {} ({} bytes; USED: what deleting it alone frees)",
        human_bytes(i.used_bytes),
        i.used_bytes
    );
    for why in used_explained(i) {
        line!("               {why}");
    }
    match i.bytes_on_disk {
        Some(b) => line!("bytes on disk: {b} ({}, of its own tree)", human_bytes(b)),
        None => line!("bytes on disk: unknown"),
    }
    match i.scratch_bytes {
        Some(b) => line!(
            "scratch:       {} (what it wrote when last started; emptied at each start)",
            human_bytes(b)
        ),
        None => line!("scratch:       unknown"),
    }
    line!("base:          {}", dep_list(&i.base));
    line!("dependents:    {}", dep_list(&i.dependents));
    line!("clones:        {}", dep_list(&i.clones));
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
