//! `lxc-snap info SNAP [--json]`: everything known about one snapshot, and
//! a failure status when it is broken (its tree or a base layer is gone).

use super::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::names::SnapshotName;
use crate::ops::{self, info::Dependency, SnapshotInfo};
use crate::store::Backing;
use crate::ui::{human_bytes, print_json_value};

pub fn run(ctx: &Context, name: &SnapshotName, json: bool) -> Result<()> {
    let info = ops::info(ctx.store, name)?;
    if json {
        print_json_value(&info)?;
    } else {
        print_text(&info);
    }
    if info.broken.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Other,
            format!("snapshot {name} is broken: {}", info.broken.join("; ")),
        ))
    }
}

/// One line of the report, escaped: paths and comments come from
/// containers and users.
macro_rules! line {
    ($($arg:tt)*) => {
        crate::ui::out_line(&crate::printable::escape(&format!($($arg)*)))
    };
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
