//! A snapshot's state, computed one way for every command: whether its
//! trees are there and whether the base it stands on is still what it was.
//!
//! - `ok`: everything it needs is there, the base unchanged (or, for a
//!   snapshot recorded without fingerprints, not known to have changed).
//! - `base changed`: a lower layer is there but not what it was when the
//!   snapshot was taken; the snapshot still works, over today's base.
//! - `base missing`: a lower layer is gone (or no longer one lxc-snap
//!   accepts).
//! - `anchor missing`: a layer whose anchor's tree is gone.
//! - `broken`: its own captured tree is gone.
//!
//! Every command that reads a snapshot's trees asks [`Store::usable`]
//! first, so a snapshot that cannot work fails the same way everywhere.
//! Each lower is fingerprinted once per run, however many snapshots
//! stand on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::metadata::TreeFingerprint;
use super::{Snapshot, Store};
use crate::error::{Error, ErrorKind, Result};
use crate::notice::Notice;

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    BaseChanged,
    BaseMissing,
    AnchorMissing,
    Broken,
}

impl State {
    /// As tables and messages say it.
    pub fn text(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::BaseChanged => "base changed",
            State::BaseMissing => "base missing",
            State::AnchorMissing => "anchor missing",
            State::Broken => "broken",
        }
    }
}

/// A snapshot's state and, unless it is ok, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    pub why: Option<String>,
    /// A lower lxc-snap refuses to use (say, one outside the containers
    /// and snapshots without `--allow-lower`): its own error, kind and
    /// hint, which commands give as it is.
    refusal: Option<(ErrorKind, String, Option<String>)>,
}

/// What one lower looks like now.
#[derive(Debug, Clone)]
pub(super) enum LowerNow {
    Missing,
    Refused(ErrorKind, String, Option<String>),
    Seen(Option<TreeFingerprint>),
}

/// Lowers already looked at in this run.
pub(super) type LowerCache = std::sync::Mutex<HashMap<PathBuf, LowerNow>>;

impl Store {
    /// The state of `snapshot`.
    pub fn health(&self, snapshot: &Snapshot) -> Health {
        let bad = |state, why: String| Health {
            state,
            why: Some(why),
            refusal: None,
        };
        if let Some(why) = snapshot.missing() {
            let state = if snapshot.meta.layer.is_some() && !why.starts_with("its captured tree") {
                State::AnchorMissing
            } else {
                State::Broken
            };
            return bad(state, why);
        }
        let mut changed = Vec::new();
        for (i, lower) in snapshot.meta.lowers.iter().enumerate() {
            match self.lower_now(lower) {
                LowerNow::Missing => {
                    return bad(
                        State::BaseMissing,
                        format!("its base layer {} is missing", lower.display()),
                    )
                }
                LowerNow::Refused(kind, message, hint) => {
                    let mut health = bad(
                        State::BaseMissing,
                        format!(
                            "its base layer {} cannot be used: {message}",
                            lower.display()
                        ),
                    );
                    health.refusal = Some((kind, message, hint));
                    return health;
                }
                LowerNow::Seen(now) => {
                    let recorded = snapshot.meta.lower_fingerprints.get(i);
                    if let (Some(r), Some(n)) = (recorded, now) {
                        if *r != n {
                            changed.push(lower.display().to_string());
                        }
                    }
                }
            }
        }
        if !changed.is_empty() {
            return bad(
                State::BaseChanged,
                format!(
                    "its base layer {} changed since it was taken",
                    changed.join(", ")
                ),
            );
        }
        Health {
            state: State::Ok,
            why: None,
            refusal: None,
        }
    }

    /// Fails, the one way every command does, unless `snapshot` can be
    /// read; a changed base is told (it still works, over today's base).
    pub fn usable(&self, snapshot: &Snapshot) -> Result<()> {
        let health = self.health(snapshot);
        if let Some((kind, message, hint)) = health.refusal {
            let e = Error::new(kind, message);
            return Err(match hint {
                Some(h) => e.with_hint(h),
                None => e,
            });
        }
        let why = health.why.unwrap_or_default();
        match health.state {
            State::Ok => Ok(()),
            State::BaseChanged => {
                self.observer().notice(Notice::BaseChanged {
                    snapshot: snapshot.name.to_string(),
                    why,
                });
                Ok(())
            }
            state => Err(Error::new(
                ErrorKind::Other,
                format!(
                    "snapshot {} cannot be used ({}): {why}",
                    snapshot.name,
                    state.text()
                ),
            )
            .with_hint(format!(
                "lxc-snap check {} says what is wrong and what can be done",
                snapshot.name.container()
            ))),
        }
    }

    fn lower_now(&self, path: &Path) -> LowerNow {
        let mut cache = self
            .lowers_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(seen) = cache.get(path) {
            return seen.clone();
        }
        let now = match self.open_lower(path) {
            Ok(dir) => LowerNow::Seen(TreeFingerprint::of(&dir).ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => LowerNow::Missing,
            Err(e) => LowerNow::Refused(
                e.kind(),
                e.message().to_string(),
                e.hint().map(str::to_string),
            ),
        };
        cache.insert(path.to_path_buf(), now.clone());
        now
    }
}
