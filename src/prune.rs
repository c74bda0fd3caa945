//! Retention policy for `lxc-snap prune`: which snapshots a set of
//! `--keep-*` rules keeps, and why. Pure: it sees names, creation times and
//! pin flags, never the clock or the disk, so every decision can be checked
//! by hand.
//!
//! The rules follow restic's `forget`:
//!
//! - Snapshots are ordered newest first by their recorded creation time (an
//!   instant; the offset does not change the order). Two snapshots created
//!   at the same instant are ordered by their position in the input: the
//!   later one counts as newer, as the store lists by ascending number.
//! - `--keep-last N` keeps the N newest snapshots.
//! - `--keep-hourly/daily/weekly/monthly N` keep the newest snapshot of each
//!   of the N newest periods that hold a snapshot. Periods without a
//!   snapshot are skipped, not counted: `--keep-daily 7` over a container
//!   snapshotted on Mondays keeps seven Mondays. A period is an hour, a
//!   calendar day, an ISO 8601 week (Monday to Sunday, numbered within the
//!   ISO week-year, so 2027-01-03 is in 2026-W53) or a calendar month,
//!   read in the offset [`Candidate::created`] carries. Callers pass the
//!   offset the snapshot recorded when it was taken (the wall clock of its
//!   `ts` file), so the decision does not depend on the zone, or the `TZ`,
//!   of whoever runs prune later; it only differs from converting to the
//!   current local zone if that zone has changed since.
//! - `--keep-within D` keeps every snapshot created strictly after the
//!   instant D before the *newest* snapshot (not before now), so a
//!   container that stopped being snapshotted does not lose its history.
//!   D is `[Ny][Nm][Nd][Nh]`: years, months, days, hours (`m` is months),
//!   each at most once, in any order.
//!   Years and months are calendar arithmetic on the newest snapshot's wall
//!   clock that clamps to the end of a shorter month (Mar 31 - 1m = Feb 28
//!   or 29), then days, then hours.
//! - A snapshot is kept when any rule keeps it. Pinned snapshots are always
//!   kept; they still take part in the rules like any other snapshot (a
//!   pinned snapshot can be the "newest of its day").
//! - A count of `unlimited` keeps every period (every snapshot for
//!   `--keep-last`). A count of 0 or a zero duration keeps nothing, and a
//!   policy made only of those is no policy: [`decide`] refuses to run
//!   without at least one rule that can keep something.
//!
//! Where this departs from restic, on purpose: there is no `--keep-yearly`
//! and no `--keep-within-*`; `-1` is not accepted for `unlimited`; restic
//! 0.17+ also keeps the oldest snapshot while a rule has counts left, which
//! this does not (each rule keeps exactly the newest of its periods);
//! restic's month arithmetic overflows (Mar 31 - 1m = Mar 3) where this
//! clamps; and restic ignores snapshots dated in the future when finding
//! the newest, which needs the clock, so here a snapshot from a clock set
//! ahead moves the `--keep-within` window with it. Within a rule, a period
//! that was already used is never used again, even when snapshots with
//! different offsets interleave (restic compares only with the last one).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, FixedOffset, IsoWeek, Months, NaiveDate, TimeDelta, Timelike,
};

use crate::error::{Error, ErrorKind, Result};

/// How many snapshots (or periods) a rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Limit(u32),
    Unlimited,
}

impl Count {
    /// A decimal number or `unlimited`.
    pub fn parse(s: &str) -> Result<Count> {
        if s == "unlimited" {
            return Ok(Count::Unlimited);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("invalid count {s:?}: expected a number or \"unlimited\""),
            ));
        }
        s.parse().map(Count::Limit).map_err(|_| {
            Error::new(
                ErrorKind::Usage,
                format!("invalid count {s:?}: too large (use \"unlimited\")"),
            )
        })
    }

    /// Whether a rule with this count can keep anything at all.
    fn keeps_any(self) -> bool {
        self != Count::Limit(0)
    }

    /// Whether `used` periods leave room for one more.
    fn allows(self, used: u32) -> bool {
        match self {
            Count::Limit(n) => used < n,
            Count::Unlimited => true,
        }
    }
}

impl FromStr for Count {
    type Err = Error;

    fn from_str(s: &str) -> Result<Count> {
        Count::parse(s)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Limit(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A `--keep-within` duration, restic's `1y2m3d4h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    /// One or more `<number><unit>` with units `y` (years), `m` (months),
    /// `d` (days) and `h` (hours), each at most once, in any order.
    pub fn parse(s: &str) -> Result<Within> {
        let bad = |why: &str| {
            Error::new(ErrorKind::Usage, format!("invalid duration {s:?}: {why}"))
                .with_hint("durations look like 1y2m3d4h: years, months, days, hours")
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut within = Within::default();
        let mut seen = String::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let number: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad(&format!("{} is too large", &rest[..digits])))?;
            let Some(unit) = rest[digits..].chars().next() else {
                return Err(bad(&format!("no unit after {number}")));
            };
            let field = match unit {
                'y' => &mut within.years,
                'm' => &mut within.months,
                'd' => &mut within.days,
                'h' => &mut within.hours,
                _ => return Err(bad(&format!("unknown unit {unit:?} (use y, m, d or h)"))),
            };
            if seen.contains(unit) {
                return Err(bad(&format!("unit {unit:?} given twice")));
            }
            seen.push(unit);
            *field = number;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(within)
    }

    pub fn is_zero(&self) -> bool {
        *self == Within::default()
    }

    /// The instant this long before `t`, in `t`'s offset: years and months
    /// on the calendar (clamping the day to the month's end), then days,
    /// then hours. `None` when that lies outside the dates chrono can
    /// represent, i.e. before any snapshot.
    pub fn before(&self, t: &DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        let local = t
            .naive_local()
            .checked_sub_months(Months::new(months))?
            .checked_sub_days(Days::new(u64::from(self.days)))?
            .checked_sub_signed(TimeDelta::hours(i64::from(self.hours)))?;
        local.and_local_timezone(*t.offset()).single()
    }
}

impl FromStr for Within {
    type Err = Error;

    fn from_str(s: &str) -> Result<Within> {
        Within::parse(s)
    }
}

impl fmt::Display for Within {
    /// `1y2m3d4h` without the zero parts; `0h` when all are zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// How long a snapshot lives before it expires (`snap --expiry`, a
/// policy's `expiry`), or how often `auto` takes one: one or more
/// `<number><unit>`, each unit at most once, with units `y` (years), `mo`
/// (months), `w` (weeks), `d` (days), `h` (hours), `m` (minutes, as in
/// `--wait`) and `s` (seconds): `30s`, `10m`, `1d12h`, `2w`, `6mo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Lifetime {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
    pub minutes: u32,
    pub seconds: u32,
}

impl Lifetime {
    pub fn parse(s: &str) -> Result<Lifetime> {
        let bad = |why: &str| {
            Error::new(ErrorKind::Usage, format!("invalid duration {s:?}: {why}")).with_hint(
                "durations look like 2w or 1d12h: y, mo (months), w, d, h, m (minutes), s",
            )
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut life = Lifetime::default();
        let mut seen: Vec<&str> = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let number: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad(&format!("{} is too large", &rest[..digits])))?;
            let after = &rest[digits..];
            let unit = ["mo", "y", "w", "d", "h", "m", "s"]
                .into_iter()
                .find(|u| after.starts_with(u))
                .ok_or_else(|| match after.chars().next() {
                    Some(c) => bad(&format!("unknown unit {c:?}")),
                    None => bad(&format!("no unit after {number}")),
                })?;
            if seen.contains(&unit) {
                return Err(bad(&format!("unit {unit:?} given twice")));
            }
            seen.push(unit);
            *match unit {
                "y" => &mut life.years,
                "mo" => &mut life.months,
                "w" => &mut life.weeks,
                "d" => &mut life.days,
                "h" => &mut life.hours,
                "m" => &mut life.minutes,
                _ => &mut life.seconds,
            } = number;
            rest = &after[unit.len()..];
        }
        if life == Lifetime::default() {
            return Err(bad("it is zero"));
        }
        Ok(life)
    }

    /// The instant this long after `t`: years and months on the calendar
    /// of `t`'s offset (clamping the day to the month's end), then the
    /// rest; `None` past the dates chrono represents.
    pub fn after(&self, t: &DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        let secs = i64::from(self.weeks) * 7 * 86_400
            + i64::from(self.days) * 86_400
            + i64::from(self.hours) * 3_600
            + i64::from(self.minutes) * 60
            + i64::from(self.seconds);
        let local = t
            .naive_local()
            .checked_add_months(Months::new(months))?
            .checked_add_signed(TimeDelta::try_seconds(secs)?)?;
        local.and_local_timezone(*t.offset()).single()
    }
}

impl FromStr for Lifetime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Lifetime> {
        Lifetime::parse(s)
    }
}

impl fmt::Display for Lifetime {
    /// `1d12h` without the zero parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, "y"),
            (self.months, "mo"),
            (self.weeks, "w"),
            (self.days, "d"),
            (self.hours, "h"),
            (self.minutes, "m"),
            (self.seconds, "s"),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// The `--keep-*` rules; `None` means the rule was not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<Count>,
    pub hourly: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub within: Option<Within>,
}

impl Policy {
    /// True when no rule could keep anything: every rule is absent, a
    /// count of 0 or a zero duration.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
        ];
        !counts.iter().flatten().any(|c| c.keeps_any()) && self.within.map_or(true, |w| w.is_zero())
    }
}

impl fmt::Display for Policy {
    /// The rules given, e.g. `last 3, daily 7, within 2d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
        ]
        .iter()
        .filter_map(|(rule, count)| count.map(|c| format!("{rule} {c}")))
        .collect();
        if let Some(w) = self.within {
            parts.push(format!("within {w}"));
        }
        if parts.is_empty() {
            f.write_str("no rule")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    /// From the metadata, with the offset it recorded.
    pub created: DateTime<FixedOffset>,
    pub pinned: bool,
}

/// Why a snapshot is kept. The periods are those of the snapshot's own
/// recorded offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Pinned,
    /// Its rank among all snapshots, newest first, from 1.
    Last(u32),
    Hourly {
        date: NaiveDate,
        hour: u32,
    },
    Daily(NaiveDate),
    Weekly(IsoWeek),
    Monthly {
        year: i32,
        month: u32,
    },
    Within(Within),
}

impl fmt::Display for Reason {
    /// `pinned`, `last (#2)`, `hourly (2026-11-23 14:00)`, `daily
    /// (2026-11-23)`, `weekly (2026-W48)`, `monthly (2026-11)`, `within
    /// (3d)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Pinned => f.write_str("pinned"),
            Reason::Last(rank) => write!(f, "last (#{rank})"),
            Reason::Hourly { date, hour } => write!(f, "hourly ({date} {hour:02}:00)"),
            Reason::Daily(date) => write!(f, "daily ({date})"),
            Reason::Weekly(week) => write!(f, "weekly ({week:?})"),
            Reason::Monthly { year, month } => write!(f, "monthly ({year:04}-{month:02})"),
            Reason::Within(w) => write!(f, "within ({w})"),
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub name: &'a str,
    /// Exactly when `reasons` is not empty.
    pub keep: bool,
    /// Every rule that keeps it, in the order pinned, last, hourly, daily,
    /// weekly, monthly, within; empty when it is to be removed.
    pub reasons: Vec<Reason>,
}

impl Decision<'_> {
    /// `keep` or `remove`.
    pub fn verdict(&self) -> &'static str {
        if self.keep {
            "keep"
        } else {
            "remove"
        }
    }

    /// The reasons joined by `, `, or `no rule keeps it`: the column a
    /// dry run shows.
    pub fn why(&self) -> String {
        if self.reasons.is_empty() {
            "no rule keeps it".to_string()
        } else {
            let reasons: Vec<String> = self.reasons.iter().map(Reason::to_string).collect();
            reasons.join(", ")
        }
    }
}

/// A rule that keeps the newest snapshot of each of its newest periods.
struct PeriodRule {
    count: Count,
    period: fn(&DateTime<FixedOffset>) -> Reason,
    used: HashSet<Reason>,
}

impl PeriodRule {
    fn new(count: Option<Count>, period: fn(&DateTime<FixedOffset>) -> Reason) -> Option<Self> {
        count.filter(|c| c.keeps_any()).map(|count| PeriodRule {
            count,
            period,
            used: HashSet::new(),
        })
    }

    /// Called newest first; the reason when `t` opens a new period and
    /// there is room for one.
    fn keeps(&mut self, t: &DateTime<FixedOffset>) -> Option<Reason> {
        let used = u32::try_from(self.used.len()).unwrap_or(u32::MAX);
        if !self.count.allows(used) {
            return None;
        }
        let period = (self.period)(t);
        self.used.insert(period).then_some(period)
    }
}

fn hour(t: &DateTime<FixedOffset>) -> Reason {
    Reason::Hourly {
        date: t.date_naive(),
        hour: t.hour(),
    }
}

fn day(t: &DateTime<FixedOffset>) -> Reason {
    Reason::Daily(t.date_naive())
}

fn week(t: &DateTime<FixedOffset>) -> Reason {
    Reason::Weekly(t.iso_week())
}

fn month(t: &DateTime<FixedOffset>) -> Reason {
    Reason::Monthly {
        year: t.year(),
        month: t.month(),
    }
}

/// Applies `policy` to `snapshots` (in any order) and returns one decision
/// per snapshot, in the input's order. Refuses (a usage error) a policy
/// with no rule that can keep anything, even for an empty list.
pub fn decide<'a>(policy: &Policy, snapshots: &[Candidate<'a>]) -> Result<Vec<Decision<'a>>> {
    if policy.is_empty() {
        let mut e = Error::new(
            ErrorKind::Usage,
            "prune needs at least one of --keep-last, --keep-hourly, --keep-daily, \
             --keep-weekly, --keep-monthly, --keep-within",
        );
        if *policy != Policy::default() {
            e = e.with_hint("a count of 0 or a zero duration keeps nothing and is not a rule");
        }
        return Err(e);
    }

    // Newest first; at equal instants the later input is newer.
    let mut order: Vec<usize> = (0..snapshots.len()).collect();
    order.sort_by(|&a, &b| (snapshots[b].created, b).cmp(&(snapshots[a].created, a)));

    // Everything strictly after `cutoff` is within; `Some(None)` when the
    // window reaches back past any representable date.
    let within = policy.within.filter(|w| !w.is_zero());
    let cutoff = match (within, order.first()) {
        (Some(w), Some(&newest)) => Some(w.before(&snapshots[newest].created)),
        _ => None,
    };

    let last = policy.last.filter(|c| c.keeps_any());
    let mut periods: Vec<PeriodRule> = [
        PeriodRule::new(policy.hourly, hour),
        PeriodRule::new(policy.daily, day),
        PeriodRule::new(policy.weekly, week),
        PeriodRule::new(policy.monthly, month),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut reasons: Vec<Vec<Reason>> = snapshots
        .iter()
        .map(|s| {
            if s.pinned {
                vec![Reason::Pinned]
            } else {
                Vec::new()
            }
        })
        .collect();
    for (rank, &i) in order.iter().enumerate() {
        let t = &snapshots[i].created;
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        if last.is_some_and(|c| c.allows(rank)) {
            reasons[i].push(Reason::Last(rank.saturating_add(1)));
        }
        for rule in &mut periods {
            reasons[i].extend(rule.keeps(t));
        }
        if let (Some(w), Some(cutoff)) = (within, cutoff) {
            if cutoff.map_or(true, |c| *t > c) {
                reasons[i].push(Reason::Within(w));
            }
        }
    }

    Ok(snapshots
        .iter()
        .zip(reasons)
        .map(|(s, reasons)| Decision {
            name: s.name,
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(rfc3339).expect("test time")
    }

    fn snap(name: &'static str, created: &str) -> Candidate<'static> {
        Candidate {
            name,
            created: at(created),
            pinned: false,
        }
    }

    fn pinned(name: &'static str, created: &str) -> Candidate<'static> {
        Candidate {
            pinned: true,
            ..snap(name, created)
        }
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    fn week(year: i32, week: u32) -> Reason {
        Reason::Weekly(
            NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon)
                .expect("test week")
                .iso_week(),
        )
    }

    fn within(s: &str) -> Within {
        Within::parse(s).expect("test duration")
    }

    fn run<'a>(policy: Policy, snapshots: &[Candidate<'a>]) -> Vec<Decision<'a>> {
        let decisions = decide(&policy, snapshots).expect("decide");
        assert_eq!(decisions.len(), snapshots.len());
        for (d, s) in decisions.iter().zip(snapshots) {
            assert_eq!(d.name, s.name, "decisions come in the input's order");
            assert_eq!(d.keep, !d.reasons.is_empty(), "{d:?}");
        }
        decisions
    }

    /// Names of the kept snapshots, in the input's order.
    fn kept(policy: Policy, snapshots: &[Candidate<'_>]) -> Vec<String> {
        run(policy, snapshots)
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.name.to_string())
            .collect()
    }

    fn reasons_of(decisions: &[Decision<'_>], name: &str) -> Vec<Reason> {
        decisions
            .iter()
            .find(|d| d.name == name)
            .expect("decision for name")
            .reasons
            .clone()
    }

    fn last(n: u32) -> Policy {
        Policy {
            last: Some(Count::Limit(n)),
            ..Policy::default()
        }
    }

    // ---- refusing to run ----

    #[test]
    fn empty_policy_is_refused_even_without_snapshots() {
        let e = decide(&Policy::default(), &[]).expect_err("no rule");
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.message().contains("--keep-last"), "{e}");
        assert!(e.hint().is_none());
        let e = decide(
            &Policy::default(),
            &[snap("a_0", "2026-11-23T10:00:00+01:00")],
        )
        .expect_err("no rule");
        assert_eq!(e.kind(), ErrorKind::Usage);
    }

    #[test]
    fn zero_counts_and_a_zero_duration_are_not_rules() {
        let zeros = Policy {
            last: Some(Count::Limit(0)),
            hourly: Some(Count::Limit(0)),
            daily: Some(Count::Limit(0)),
            weekly: Some(Count::Limit(0)),
            monthly: Some(Count::Limit(0)),
            within: Some(within("0d")),
        };
        assert!(zeros.is_empty());
        let e = decide(&zeros, &[snap("a_0", "2026-11-23T10:00:00+01:00")])
            .expect_err("only zero rules");
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.hint().is_some_and(|h| h.contains("0")), "{:?}", e.hint());

        assert!(!last(1).is_empty());
        assert!(!Policy {
            weekly: Some(Count::Unlimited),
            ..Policy::default()
        }
        .is_empty());
        assert!(!Policy {
            within: Some(within("1h")),
            ..Policy::default()
        }
        .is_empty());
    }

    #[test]
    fn a_zero_count_beside_a_real_rule_keeps_nothing_itself() {
        let s = [
            snap("a_0", "2026-11-21T10:00:00+01:00"),
            snap("a_1", "2026-11-22T10:00:00+01:00"),
            snap("a_2", "2026-11-23T10:00:00+01:00"),
        ];
        let policy = Policy {
            last: Some(Count::Limit(1)),
            hourly: Some(Count::Limit(0)),
            daily: Some(Count::Limit(0)),
            within: Some(Within::default()),
            ..Policy::default()
        };
        let d = run(policy, &s);
        assert_eq!(kept(policy, &s), ["a_2"]);
        assert_eq!(reasons_of(&d, "a_2"), [Reason::Last(1)]);
    }

    #[test]
    fn no_snapshots_means_no_decisions() {
        assert!(run(last(3), &[]).is_empty());
        let w = Policy {
            within: Some(within("1d")),
            ..Policy::default()
        };
        assert!(run(w, &[]).is_empty());
    }

    // ---- keep-last ----

    #[test]
    fn keep_last_keeps_the_newest_whatever_the_input_order() {
        let s = [
            snap("a_3", "2026-11-23T12:00:00+01:00"),
            snap("a_0", "2026-11-20T12:00:00+01:00"),
            snap("a_2", "2026-11-22T12:00:00+01:00"),
            snap("a_1", "2026-11-21T12:00:00+01:00"),
        ];
        let d = run(last(2), &s);
        assert_eq!(
            d.iter().map(|d| d.keep).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(reasons_of(&d, "a_3"), [Reason::Last(1)]);
        assert_eq!(reasons_of(&d, "a_2"), [Reason::Last(2)]);
        assert!(reasons_of(&d, "a_1").is_empty());
    }

    #[test]
    fn keep_last_beyond_the_history_or_unlimited_keeps_everything() {
        let s = [
            snap("a_0", "2026-11-20T12:00:00+01:00"),
            snap("a_1", "2026-11-21T12:00:00+01:00"),
        ];
        assert_eq!(kept(last(5), &s), ["a_0", "a_1"]);
        let unlimited = Policy {
            last: Some(Count::Unlimited),
            ..Policy::default()
        };
        let d = run(unlimited, &s);
        assert_eq!(reasons_of(&d, "a_0"), [Reason::Last(2)]);
        assert_eq!(reasons_of(&d, "a_1"), [Reason::Last(1)]);
    }

    #[test]
    fn snapshots_at_the_same_instant_count_the_later_input_as_newer() {
        // 12:00+01:00 and 11:00Z are the same instant.
        let s = [
            snap("a_4", "2026-11-23T12:00:00+01:00"),
            snap("a_5", "2026-11-23T11:00:00+00:00"),
            snap("a_3", "2026-11-23T09:00:00+01:00"),
        ];
        let d = run(last(1), &s);
        assert_eq!(reasons_of(&d, "a_5"), [Reason::Last(1)]);
        assert!(!d[0].keep);
        let daily = Policy {
            daily: Some(Count::Limit(1)),
            ..Policy::default()
        };
        // a_5's own day is 2026-11-23 too (11:00Z).
        assert_eq!(kept(daily, &s), ["a_5"]);
    }

    // ---- period rules ----

    #[test]
    fn keep_hourly_keeps_the_newest_of_each_hour() {
        let s = [
            snap("a_0", "2026-11-23T10:05:00+01:00"),
            snap("a_1", "2026-11-23T10:40:00+01:00"),
            snap("a_2", "2026-11-23T11:15:00+01:00"),
            snap("a_3", "2026-11-23T11:50:00+01:00"),
            snap("a_4", "2026-11-23T12:30:00+01:00"),
        ];
        let policy = Policy {
            hourly: Some(Count::Limit(2)),
            ..Policy::default()
        };
        let d = run(policy, &s);
        assert_eq!(kept(policy, &s), ["a_3", "a_4"]);
        let day = date("2026-11-23");
        assert_eq!(
            reasons_of(&d, "a_4"),
            [Reason::Hourly {
                date: day,
                hour: 12
            }]
        );
        assert_eq!(
            reasons_of(&d, "a_3"),
            [Reason::Hourly {
                date: day,
                hour: 11
            }]
        );
        let three = Policy {
            hourly: Some(Count::Limit(3)),
            ..Policy::default()
        };
        assert_eq!(kept(three, &s), ["a_1", "a_3", "a_4"]);
    }

    #[test]
    fn keep_daily_keeps_one_per_day_and_skips_days_without_snapshots() {
        let s = [
            snap("a_0", "2026-11-01T08:00:00+01:00"),
            snap("a_1", "2026-11-05T08:00:00+01:00"),
            snap("a_2", "2026-11-05T20:00:00+01:00"),
            snap("a_3", "2026-11-09T07:00:00+01:00"),
            snap("a_4", "2026-11-09T09:00:00+01:00"),
            snap("a_5", "2026-11-09T23:59:59+01:00"),
        ];
        let policy = Policy {
            daily: Some(Count::Limit(2)),
            ..Policy::default()
        };
        let d = run(policy, &s);
        assert_eq!(kept(policy, &s), ["a_2", "a_5"]);
        assert_eq!(reasons_of(&d, "a_5"), [Reason::Daily(date("2026-11-09"))]);
        assert_eq!(reasons_of(&d, "a_2"), [Reason::Daily(date("2026-11-05"))]);
        let unlimited = Policy {
            daily: Some(Count::Unlimited),
            ..Policy::default()
        };
        assert_eq!(kept(unlimited, &s), ["a_0", "a_2", "a_5"]);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks_across_the_new_year() {
        // 2026 starts on a Thursday, so it has a week 53 that runs from
        // Mon 2026-12-28 to Sun 2027-01-03; 2027-W01 starts Mon 2027-01-04.
        let s = [
            snap("a_0", "2026-12-28T10:00:00+01:00"),
            snap("a_1", "2026-12-31T10:00:00+01:00"),
            snap("a_2", "2027-01-03T10:00:00+01:00"),
            snap("a_3", "2027-01-04T10:00:00+01:00"),
            snap("a_4", "2027-01-10T10:00:00+01:00"),
            snap("a_5", "2027-01-11T10:00:00+01:00"),
        ];
        let policy = Policy {
            weekly: Some(Count::Limit(3)),
            ..Policy::default()
        };
        let d = run(policy, &s);
        assert_eq!(kept(policy, &s), ["a_2", "a_4", "a_5"]);
        assert_eq!(reasons_of(&d, "a_5"), [week(2027, 2)]);
        assert_eq!(reasons_of(&d, "a_4"), [week(2027, 1)]);
        assert_eq!(reasons_of(&d, "a_2"), [week(2026, 53)]);
        assert_eq!(reasons_of(&d, "a_2")[0].to_string(), "weekly (2026-W53)");
    }

    #[test]
    fn keep_weekly_puts_the_last_days_of_december_in_next_years_week_one() {
        // Mon 2024-12-30 is in 2025-W01 with Fri 2025-01-03; Sun 2024-12-29
        // closes 2024-W52.
        let s = [
            snap("a_0", "2024-12-29T10:00:00+00:00"),
            snap("a_1", "2024-12-30T10:00:00+00:00"),
            snap("a_2", "2025-01-03T10:00:00+00:00"),
        ];
        let one = Policy {
            weekly: Some(Count::Limit(1)),
            ..Policy::default()
        };
        assert_eq!(kept(one, &s), ["a_2"]);
        let two = Policy {
            weekly: Some(Count::Limit(2)),
            ..Policy::default()
        };
        let d = run(two, &s);
        assert_eq!(kept(two, &s), ["a_0", "a_2"]);
        assert_eq!(reasons_of(&d, "a_2"), [week(2025, 1)]);
        assert_eq!(reasons_of(&d, "a_0"), [week(2024, 52)]);
    }

    #[test]
    fn keep_monthly_keeps_the_newest_of_each_month_whatever_its_length() {
        let s = [
            snap("a_0", "2026-01-31T10:00:00+01:00"),
            snap("a_1", "2026-02-01T10:00:00+01:00"),
            snap("a_2", "2026-02-28T10:00:00+01:00"),
            snap("a_3", "2026-03-01T10:00:00+01:00"),
            snap("a_4", "2026-03-31T10:00:00+02:00"),
            snap("a_5", "2026-04-30T10:00:00+02:00"),
        ];
        let policy = Policy {
            monthly: Some(Count::Limit(3)),
            ..Policy::default()
        };
        let d = run(policy, &s);
        assert_eq!(kept(policy, &s), ["a_2", "a_4", "a_5"]);
        assert_eq!(
            reasons_of(&d, "a_2"),
            [Reason::Monthly {
                year: 2026,
                month: 2
            }]
        );
        let unlimited = Policy {
            monthly: Some(Count::Unlimited),
            ..Policy::default()
        };
        assert_eq!(kept(unlimited, &s), ["a_0", "a_2", "a_4", "a_5"]);
    }

    #[test]
    fn periods_are_read_in_each_snapshots_recorded_offset() {
        // a_1 is 23:10Z, older than a_0 (23:30Z), but was taken on the 24th
        // by its own clock. a_2 (22:00Z) is in a_0's day, which already has
        // its newest snapshot, so it is not kept though the last day kept
        // (a_1's) differs from its own.
        let s = [
            snap("a_2", "2026-11-23T22:00:00+00:00"),
            snap("a_1", "2026-11-24T00:10:00+01:00"),
            snap("a_0", "2026-11-23T23:30:00+00:00"),
        ];
        for n in [2, 3] {
            let policy = Policy {
                daily: Some(Count::Limit(n)),
                ..Policy::default()
            };
            let d = run(policy, &s);
            assert_eq!(kept(policy, &s), ["a_1", "a_0"], "keep-daily {n}");
            assert_eq!(reasons_of(&d, "a_0"), [Reason::Daily(date("2026-11-23"))]);
            assert_eq!(reasons_of(&d, "a_1"), [Reason::Daily(date("2026-11-24"))]);
        }
        let hourly = Policy {
            hourly: Some(Count::Limit(1)),
            ..Policy::default()
        };
        let d = run(hourly, &s);
        assert_eq!(
            reasons_of(&d, "a_0"),
            [Reason::Hourly {
                date: date("2026-11-23"),
                hour: 23
            }]
        );
    }

    // ---- keep-within ----

    #[test]
    fn keep_within_counts_back_from_the_newest_snapshot_not_from_now() {
        // Long ago: measured from the clock, nothing would be within 2d.
        let s = [
            snap("a_0", "2001-01-07T12:00:00+00:00"),
            snap("a_1", "2001-01-08T12:00:00+00:00"),
            snap("a_2", "2001-01-08T12:01:00+00:00"),
            snap("a_3", "2001-01-09T03:00:00+00:00"),
            snap("a_4", "2001-01-10T12:00:00+00:00"),
        ];
        let policy = Policy {
            within: Some(within("2d")),
            ..Policy::default()
        };
        let d = run(policy, &s);
        // The cutoff is 2001-01-08T12:00Z; a snapshot exactly on it is out.
        assert_eq!(kept(policy, &s), ["a_2", "a_3", "a_4"]);
        assert_eq!(reasons_of(&d, "a_4"), [Reason::Within(within("2d"))]);
    }

    #[test]
    fn keep_within_compares_instants_across_offsets() {
        // Newest: 10:00Z. a_1 is 09:30Z; a_0 looks later on its clock but is 07:30Z.
        let s = [
            snap("a_0", "2026-06-01T10:30:00+03:00"),
            snap("a_1", "2026-06-01T09:30:00+00:00"),
            snap("a_2", "2026-06-01T12:00:00+02:00"),
        ];
        let policy = Policy {
            within: Some(within("1h")),
            ..Policy::default()
        };
        assert_eq!(kept(policy, &s), ["a_1", "a_2"]);
    }

    #[test]
    fn keep_within_a_month_from_the_31st_reaches_back_to_the_end_of_february() {
        let s = [
            snap("a_0", "2026-02-27T23:00:00+02:00"),
            snap("a_1", "2026-02-28T10:00:00+02:00"),
            snap("a_2", "2026-02-28T10:30:00+02:00"),
            snap("a_3", "2026-03-01T00:00:00+02:00"),
            snap("a_4", "2026-03-31T10:00:00+02:00"),
        ];
        let policy = Policy {
            within: Some(within("1m")),
            ..Policy::default()
        };
        assert_eq!(kept(policy, &s), ["a_2", "a_3", "a_4"]);
    }

    #[test]
    fn within_subtracts_calendar_months_with_clamping_then_days_then_hours() {
        let cases = [
            (
                "1m",
                "2026-03-31T10:00:00+02:00",
                "2026-02-28T10:00:00+02:00",
            ),
            (
                "1m",
                "2024-03-31T10:00:00+02:00",
                "2024-02-29T10:00:00+02:00",
            ),
            (
                "1y",
                "2024-02-29T10:00:00+01:00",
                "2023-02-28T10:00:00+01:00",
            ),
            (
                "1m1d",
                "2026-03-31T10:00:00+02:00",
                "2026-02-27T10:00:00+02:00",
            ),
            (
                "2m",
                "2026-05-31T10:00:00+02:00",
                "2026-03-31T10:00:00+02:00",
            ),
            (
                "1y2m3d4h",
                "2026-11-23T11:01:25+01:00",
                "2025-09-20T07:01:25+01:00",
            ),
            (
                "13m",
                "2026-01-15T00:00:00-05:00",
                "2024-12-15T00:00:00-05:00",
            ),
            (
                "25h",
                "2026-03-01T00:30:00+00:00",
                "2026-02-27T23:30:00+00:00",
            ),
            (
                "0h",
                "2026-03-01T00:30:00+00:00",
                "2026-03-01T00:30:00+00:00",
            ),
        ];
        for (d, from, expected) in cases {
            assert_eq!(
                within(d).before(&at(from)),
                Some(at(expected)),
                "{from} - {d}"
            );
        }
        // The offset is kept, not converted.
        let t = within("1d")
            .before(&at("2026-11-23T11:00:00+05:30"))
            .expect("in range");
        assert_eq!(t.to_rfc3339(), "2026-11-22T11:00:00+05:30");
    }

    #[test]
    fn keep_within_past_the_representable_dates_keeps_everything() {
        let w = within("300000y");
        assert_eq!(w.before(&at("2026-11-23T11:00:00+01:00")), None);
        let s = [
            snap("a_0", "1970-01-01T00:00:00+00:00"),
            snap("a_1", "2026-11-23T11:00:00+01:00"),
        ];
        let policy = Policy {
            within: Some(w),
            ..Policy::default()
        };
        assert_eq!(kept(policy, &s), ["a_0", "a_1"]);
    }

    // ---- pins and combinations ----

    #[test]
    fn a_pinned_snapshot_no_rule_keeps_is_kept() {
        let s = [
            pinned("a_0", "2026-01-01T10:00:00+01:00"),
            snap("a_1", "2026-11-22T10:00:00+01:00"),
            snap("a_2", "2026-11-23T10:00:00+01:00"),
        ];
        let d = run(last(1), &s);
        assert_eq!(reasons_of(&d, "a_0"), [Reason::Pinned]);
        assert!(!d[1].keep);
        assert_eq!(reasons_of(&d, "a_2"), [Reason::Last(1)]);
    }

    #[test]
    fn pinned_snapshots_still_count_in_the_rules() {
        let s = [
            snap("a_0", "2026-11-21T10:00:00+01:00"),
            snap("a_1", "2026-11-22T10:00:00+01:00"),
            pinned("a_2", "2026-11-23T10:00:00+01:00"),
        ];
        let policy = Policy {
            last: Some(Count::Limit(2)),
            daily: Some(Count::Limit(1)),
            ..Policy::default()
        };
        let d = run(policy, &s);
        assert_eq!(
            reasons_of(&d, "a_2"),
            [
                Reason::Pinned,
                Reason::Last(1),
                Reason::Daily(date("2026-11-23"))
            ]
        );
        assert_eq!(reasons_of(&d, "a_1"), [Reason::Last(2)]);
        assert!(!d[0].keep);
    }

    /// Ten snapshots over three months, +01:00. 2026-11-23 is a Monday
    /// (2026-W48); 16 to 22 November is 2026-W47.
    fn history() -> Vec<Candidate<'static>> {
        vec![
            snap("c_0", "2026-09-15T10:00:00+01:00"),
            snap("c_1", "2026-10-20T10:00:00+01:00"),
            snap("c_2", "2026-10-31T23:00:00+01:00"),
            snap("c_3", "2026-11-16T09:00:00+01:00"),
            snap("c_4", "2026-11-20T09:00:00+01:00"),
            snap("c_5", "2026-11-21T09:00:00+01:00"),
            snap("c_6", "2026-11-22T09:00:00+01:00"),
            snap("c_7", "2026-11-22T18:00:00+01:00"),
            snap("c_8", "2026-11-23T09:00:00+01:00"),
            snap("c_9", "2026-11-23T12:00:00+01:00"),
        ]
    }

    #[test]
    fn rules_combine_a_snapshot_is_kept_if_any_rule_keeps_it() {
        let policy = Policy {
            last: Some(Count::Limit(2)),
            daily: Some(Count::Limit(3)),
            weekly: Some(Count::Limit(2)),
            monthly: Some(Count::Limit(2)),
            ..Policy::default()
        };
        let s = history();
        let d = run(policy, &s);
        assert_eq!(kept(policy, &s), ["c_2", "c_5", "c_7", "c_8", "c_9"]);
        assert_eq!(
            reasons_of(&d, "c_9"),
            [
                Reason::Last(1),
                Reason::Daily(date("2026-11-23")),
                week(2026, 48),
                Reason::Monthly {
                    year: 2026,
                    month: 11
                },
            ]
        );
        assert_eq!(reasons_of(&d, "c_8"), [Reason::Last(2)]);
        assert_eq!(
            reasons_of(&d, "c_7"),
            [Reason::Daily(date("2026-11-22")), week(2026, 47)]
        );
        assert_eq!(reasons_of(&d, "c_5"), [Reason::Daily(date("2026-11-21"))]);
        assert_eq!(
            reasons_of(&d, "c_2"),
            [Reason::Monthly {
                year: 2026,
                month: 10
            }]
        );
    }

    #[test]
    fn keep_within_adds_to_the_other_rules() {
        let policy = Policy {
            last: Some(Count::Limit(2)),
            daily: Some(Count::Limit(3)),
            weekly: Some(Count::Limit(2)),
            monthly: Some(Count::Limit(2)),
            within: Some(within("3d")),
            ..Policy::default()
        };
        let mut s = history();
        s[0].pinned = true;
        let d = run(policy, &s);
        // Within 3d of 2026-11-23 12:00: strictly after 2026-11-20 12:00.
        assert_eq!(
            kept(policy, &s),
            ["c_0", "c_2", "c_5", "c_6", "c_7", "c_8", "c_9"]
        );
        let w = Reason::Within(within("3d"));
        assert_eq!(reasons_of(&d, "c_0"), [Reason::Pinned]);
        assert_eq!(reasons_of(&d, "c_6"), [w]);
        assert_eq!(reasons_of(&d, "c_8"), [Reason::Last(2), w]);
        assert!(reasons_of(&d, "c_4").is_empty());
    }

    // ---- parsing and display ----

    #[test]
    fn durations_parse_as_restic_spells_them() {
        assert_eq!(
            within("1y2m3d4h"),
            Within {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(
            within("4h1y"),
            Within {
                years: 1,
                hours: 4,
                ..Within::default()
            }
        );
        assert_eq!(
            within("2m"),
            Within {
                months: 2,
                ..Within::default()
            }
        );
        assert_eq!(within("007d").days, 7);
        assert!(within("0d").is_zero());
        assert_eq!("36h".parse::<Within>().expect("parse").hours, 36);
    }

    #[test]
    fn bad_durations_are_usage_errors_naming_the_input() {
        for bad in [
            "",
            "1",
            "d",
            "1w",
            "1M",
            "1d1d",
            "-1d",
            "1.5d",
            "1 d",
            " 1d",
            "1d ",
            "1dd",
            "99999999999h",
            "1y2",
        ] {
            let e = Within::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad:?}");
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
            assert!(e.hint().is_some_and(|h| h.contains("1y2m3d4h")));
        }
        let e = Within::parse("1w").expect_err("weeks");
        assert!(e.message().contains("unknown unit 'w'"), "{e}");
        let e = Within::parse("1d1d").expect_err("twice");
        assert!(e.message().contains("twice"), "{e}");
    }

    #[test]
    fn durations_display_as_parsed_without_zero_parts() {
        for s in ["1y2m3d4h", "1y", "2m", "3d4h", "4h"] {
            assert_eq!(within(s).to_string(), s);
        }
        assert_eq!(within("4h1y").to_string(), "1y4h");
        assert_eq!(within("0y0d").to_string(), "0h");
    }

    #[test]
    fn counts_are_numbers_or_unlimited() {
        assert_eq!(Count::parse("0").expect("0"), Count::Limit(0));
        assert_eq!(Count::parse("7").expect("7"), Count::Limit(7));
        assert_eq!(Count::parse("unlimited").expect("u"), Count::Unlimited);
        assert_eq!("12".parse::<Count>().expect("12"), Count::Limit(12));
        assert_eq!(Count::Unlimited.to_string(), "unlimited");
        for bad in ["", "-1", "+1", "seven", "Unlimited", "4294967296", "1 "] {
            let e = Count::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad:?}");
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn reasons_say_which_rule_and_which_period() {
        let cases = [
            (Reason::Pinned, "pinned"),
            (Reason::Last(2), "last (#2)"),
            (
                Reason::Hourly {
                    date: date("2026-11-23"),
                    hour: 9,
                },
                "hourly (2026-11-23 09:00)",
            ),
            (Reason::Daily(date("2026-11-23")), "daily (2026-11-23)"),
            (week(2026, 48), "weekly (2026-W48)"),
            (
                Reason::Monthly {
                    year: 2026,
                    month: 3,
                },
                "monthly (2026-03)",
            ),
            (Reason::Within(within("1y2d")), "within (1y2d)"),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
    }

    #[test]
    fn decisions_explain_themselves_for_a_dry_run() {
        let s = [
            snap("a_0", "2026-11-22T10:00:00+01:00"),
            pinned("a_1", "2026-11-23T10:00:00+01:00"),
        ];
        let d = run(last(1), &s);
        assert_eq!(
            (d[0].verdict(), d[0].why().as_str()),
            ("remove", "no rule keeps it")
        );
        assert_eq!(
            (d[1].verdict(), d[1].why().as_str()),
            ("keep", "pinned, last (#1)")
        );
    }

    #[test]
    fn policies_display_the_rules_given() {
        assert_eq!(Policy::default().to_string(), "no rule");
        let p = Policy {
            last: Some(Count::Limit(3)),
            weekly: Some(Count::Unlimited),
            monthly: Some(Count::Limit(0)),
            within: Some(within("2d")),
            ..Policy::default()
        };
        assert_eq!(
            p.to_string(),
            "last 3, weekly unlimited, monthly 0, within 2d"
        );
    }
}
