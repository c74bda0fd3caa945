//! `lxc-snap delete SNAP... | NAME_A..NAME_B | --all NAME [--force]` (alias
//! `rm`). Each deleted snapshot is reported as it goes (by the terminal's
//! observer), so there is nothing left to print after.

use super::Context;
use crate::error::Result;
use crate::ops::{self, Selection};

pub fn run(ctx: &Context, targets: &[Selection], force: bool) -> Result<()> {
    ops::delete(ctx.store, targets, force).map(drop)
}
