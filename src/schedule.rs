//! Scheduled snapshots: a container's policy, as `/etc/lxc-snap/NAME.conf`
//! says it, and when its next snapshot is due. Pure, like
//! [`crate::prune`]: it sees text, times and names, never the disk or the
//! clock.
//!
//! The policy lives in a file of lxc-snap's own, not in the container's
//! config: LXC refuses a config with a key it does not know, so an
//! `lxc-snap.*` key there would stop the container from starting.
//!
//! The file is `key = value` lines; `#` starts a comment, blank lines are
//! ignored, and a key given twice or one not listed here is an error (a
//! typo must not leave a container without snapshots):
//!
//! ```text
//! every = 1d            # how often (required): 30m, 6h, 1d, 1w, ...
//! keep-last = 7         # the prune rules, as prune's --keep-* options
//! keep-hourly = 24
//! keep-daily = 7
//! keep-weekly = 4
//! keep-monthly = 12
//! keep-within = 2d
//! expiry = 30d          # automatic snapshots expire this long after they are taken
//! freeze = yes          # snapshot the container while it runs (default: no, skip it)
//! prune-manual = no     # the rules prune snapshots taken by hand too (default: no)
//! ```

use chrono::{DateTime, FixedOffset};

use crate::error::{Error, ErrorKind, Result};
use crate::prune::{Count, Lifetime, Policy, Within};

/// What a container's policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// How often a snapshot is taken.
    pub every: Lifetime,
    /// Which of its automatic snapshots prune keeps; no rule keeps them
    /// all (only expiry removes any).
    pub keep: Policy,
    /// How long an automatic snapshot lives.
    pub expiry: Option<Lifetime>,
    /// Snapshot the container while it runs, frozen; else a running
    /// container is skipped.
    pub freeze: bool,
    /// The rules prune snapshots taken by hand too.
    pub prune_manual: bool,
}

impl Schedule {
    /// Reads a policy file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Schedule> {
        let bad = |line: usize, why: String| {
            Error::new(ErrorKind::Usage, format!("{source}, line {line}: {why}"))
        };
        let mut every = None;
        let mut keep = Policy::default();
        let mut expiry = None;
        let mut freeze = false;
        let mut prune_manual = false;
        let mut seen: Vec<String> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(n, format!("expected key = value, found {line:?}")));
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.iter().any(|k| k == key) {
                return Err(bad(n, format!("{key} is given twice")));
            }
            seen.push(key.to_string());
            let with_line = |e: Error| bad(n, e.message().to_string());
            let count = |v: &str| Count::parse(v).map(Some).map_err(with_line);
            let yes_no = |v: &str| match v {
                "yes" | "true" | "1" => Ok(true),
                "no" | "false" | "0" => Ok(false),
                _ => Err(bad(n, format!("{key} is yes or no, not {v:?}"))),
            };
            match key {
                "every" => every = Some(Lifetime::parse(value).map_err(with_line)?),
                "keep-last" => keep.last = count(value)?,
                "keep-hourly" => keep.hourly = count(value)?,
                "keep-daily" => keep.daily = count(value)?,
                "keep-weekly" => keep.weekly = count(value)?,
                "keep-monthly" => keep.monthly = count(value)?,
                "keep-within" => keep.within = Some(Within::parse(value).map_err(with_line)?),
                "expiry" => expiry = Some(Lifetime::parse(value).map_err(with_line)?),
                "freeze" => freeze = yes_no(value)?,
                "prune-manual" => prune_manual = yes_no(value)?,
                _ => return Err(bad(n, format!("unknown key {key:?}"))),
            }
        }
        let every = every.ok_or_else(|| {
            Error::new(
                ErrorKind::Usage,
                format!("{source}: no `every` (how often to take a snapshot, e.g. every = 1d)"),
            )
        })?;
        Ok(Schedule {
            every,
            keep,
            expiry,
            freeze,
            prune_manual,
        })
    }

    /// Whether a snapshot is due at `now`, the newest automatic one having
    /// been taken at `last` (if there is one): when `every` has passed
    /// since. A clock set back makes none due until it catches up.
    pub fn due(&self, last: Option<&DateTime<FixedOffset>>, now: &DateTime<FixedOffset>) -> bool {
        match last {
            None => true,
            Some(t) => self.every.after(t).is_some_and(|next| next <= *now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(t).expect("time")
    }

    #[test]
    fn a_policy_reads_every_key_and_refuses_what_it_does_not_know() {
        let s = Schedule::parse(
            "# nightly\nevery = 1d\nkeep-daily = 7 # a week\nkeep-within = 2d\n\n\
             expiry = 30d\nfreeze = yes\n",
            "mysql.conf",
        )
        .expect("parse");
        assert_eq!(s.every.days, 1);
        assert_eq!(s.keep.daily, Some(Count::Limit(7)));
        assert_eq!(s.keep.within.map(|w| w.days), Some(2));
        assert_eq!(s.expiry.map(|e| e.days), Some(30));
        assert!(s.freeze && !s.prune_manual);
        for (text, why) in [
            ("keep-daily = 7\n", "no `every`"),
            (
                "every = 1d\nkeep-dayly = 7\n",
                "line 2: unknown key \"keep-dayly\"",
            ),
            ("every = 1d\nevery = 2d\n", "line 2: every is given twice"),
            ("every = 1x\n", "line 1: invalid duration"),
            (
                "every = 1d\nfreeze = maybe\n",
                "line 2: freeze is yes or no",
            ),
            ("every 1d\n", "line 1: expected key = value"),
        ] {
            let e = Schedule::parse(text, "mysql.conf").expect_err(text);
            assert!(e.message().contains(why), "{text:?}: {}", e.message());
        }
    }

    #[test]
    fn a_snapshot_is_due_once_every_has_passed_since_the_last() {
        let s = Schedule::parse("every = 6h\n", "p").expect("parse");
        let last = at("2026-12-04T00:00:00+01:00");
        assert!(s.due(None, &last));
        assert!(!s.due(Some(&last), &at("2026-12-04T05:59:59+01:00")));
        assert!(s.due(Some(&last), &at("2026-12-04T06:00:00+01:00")));
        assert!(s.due(Some(&last), &at("2026-12-04T05:00:00Z")));
        // A clock set back: nothing is due.
        assert!(!s.due(Some(&last), &at("2026-12-03T00:00:00+01:00")));
    }
}
