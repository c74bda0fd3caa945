//! `lxc-snap check NAME|--all [--repair] [--json]`: a line per problem
//! with what to do about it, then a summary; exit status 1 unless all is
//! well (or was made so).

use super::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::names::ContainerName;
use crate::ops;
use crate::ui::{out_line, print_json_value};

pub fn run(
    ctx: &Context,
    container: Option<&ContainerName>,
    repair: bool,
    json: bool,
) -> Result<()> {
    let report = ops::check(ctx.store, container, repair)?;
    if json {
        print_json_value(&report)?;
    } else {
        for p in &report.problems {
            let about = p.snapshot.as_deref().unwrap_or(&p.container);
            let done = if p.repaired { " (repaired)" } else { "" };
            out_line(&crate::printable::escape(&format!(
                "{about}: {}{done}",
                p.what
            )));
            if !p.repaired {
                out_line(&crate::printable::escape(&format!("  fix: {}", p.fix)));
            }
        }
        for c in &report.changed {
            ctx.ui.done(c);
        }
        let open = report.problems.iter().filter(|p| !p.repaired).count();
        ctx.ui.done(&format!(
            "{} checked, {} found, {} left",
            plural(report.checked, "snapshot"),
            plural(report.problems.len(), "problem"),
            open
        ));
    }
    if report.clean() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Other,
            "check found problems it did not repair (see above)",
        ))
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
