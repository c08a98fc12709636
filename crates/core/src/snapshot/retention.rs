//! Retention: which snapshots a policy keeps (`lifeboat forget`).
//!
//! restic's rules, so that a policy moved from restic keeps the same snapshots. Snapshots are
//! looked at newest first. Each `--keep-<period> N` rule keeps the newest snapshot of each of
//! the N most recent periods (hours, days, ISO weeks, months, years of the chosen time zone)
//! that have a snapshot at all: a host that was off for a week still keeps seven daily
//! snapshots; and while a rule has periods left, it also keeps the oldest snapshot, so the
//! history reaches back as far as it can. `--keep-last N` keeps the N newest, `--keep-within
//! D` everything within D of the newest snapshot that is not in the future (not of now, so a
//! backup job that stopped does not let every snapshot expire), `--keep-tag T` every snapshot
//! tagged T (`a,b`: tagged both). A snapshot is kept when any rule keeps it, and the rules
//! that did are its reasons. A policy applies to each group of snapshots (by host and paths
//! unless told otherwise) on its own.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, LocalResult, Months, TimeDelta, TimeZone, Timelike, Utc};

use super::SnapshotEntry;
use crate::error::{Error, Result};

/// How many periods a rule keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Count {
    #[default]
    None,
    Some(u32),
    /// Every period (`-1`, or `unlimited`, on the command line).
    All,
}

impl Count {
    fn is_set(self) -> bool {
        !matches!(self, Count::None | Count::Some(0))
    }
}

impl FromStr for Count {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "-1" | "unlimited" | "all" => Ok(Count::All),
            _ => s.parse::<u32>().map(Count::Some).map_err(|_| {
                Error::InvalidInput(format!(
                    "{s:?} is not a count: use a number, or -1 (or \"unlimited\") for all"
                ))
            }),
        }
    }
}

/// A span of calendar time, as in `1y6m`, `30d`, `2w3d12h`: years, months, weeks, days, hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// `time` moved back by the span: months and days on the local calendar (a month back
    /// from March 31 is the end of February; a day back is the same wall-clock time, across a
    /// daylight-saving change too), then hours of elapsed time. A local time a clock change
    /// repeats resolves to its earlier instance (which keeps more); one it skips, to the
    /// instant it names in the offset before the change. `None` before the start of the
    /// calendar.
    fn before<Tz: TimeZone>(&self, time: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let zone = time.timezone();
        let local = time
            .naive_local()
            .checked_sub_months(Months::new(self.months))?
            .checked_sub_days(Days::new(self.days.into()))?;
        let at = match zone.from_local_datetime(&local) {
            LocalResult::Single(t) => t,
            LocalResult::Ambiguous(earlier, _) => earlier,
            LocalResult::None => zone
                .from_local_datetime(&local.checked_add_signed(TimeDelta::try_hours(1)?)?)
                .earliest()?,
        };
        at.checked_sub_signed(TimeDelta::try_hours(self.hours.into())?)
    }
}

impl FromStr for Span {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "{s:?} is not a duration: use numbers with units y, m (months), w, d, h, as in 1y6m or 36h"
            ))
        };
        let mut span = Span::default();
        let mut number = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number.parse().map_err(|_| bad())?;
            number.clear();
            let add = |field: &mut u32, times: u32| -> Result<()> {
                *field = n
                    .checked_mul(times)
                    .and_then(|v| field.checked_add(v))
                    .ok_or_else(bad)?;
                Ok(())
            };
            match c {
                'y' => add(&mut span.months, 12)?,
                'm' => add(&mut span.months, 1)?,
                'w' => add(&mut span.days, 7)?,
                'd' => add(&mut span.days, 1)?,
                'h' => add(&mut span.hours, 1)?,
                _ => return Err(bad()),
            }
        }
        if !number.is_empty() || s.is_empty() {
            return Err(bad());
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m) = (self.months / 12, self.months % 12);
        let mut any = false;
        for (n, unit) in [(y, 'y'), (m, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                any = true;
            }
        }
        if !any {
            write!(f, "0h")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub last: Count,
    pub hourly: Count,
    pub daily: Count,
    pub weekly: Count,
    pub monthly: Count,
    pub yearly: Count,
    pub within: Option<Span>,
    pub tags: Vec<String>,
}

/// The calendar periods a rule can count, finest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    pub const ALL: [Period; 5] = [
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];

    fn name(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The period `time` falls in, as a number that orders like time (weeks are ISO weeks,
    /// counted in their ISO year).
    pub fn bucket<Tz: TimeZone>(self, time: &DateTime<Tz>) -> i64 {
        let year = i64::from(time.year());
        let day = year * 10_000 + i64::from(time.month()) * 100 + i64::from(time.day());
        match self {
            Period::Hour => day * 100 + i64::from(time.hour()),
            Period::Day => day,
            Period::Week => {
                let week = time.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Period::Month => year * 100 + i64::from(time.month()),
            Period::Year => year,
        }
    }
}

impl RetentionPolicy {
    pub fn count(&self, period: Period) -> Count {
        match period {
            Period::Hour => self.hourly,
            Period::Day => self.daily,
            Period::Week => self.weekly,
            Period::Month => self.monthly,
            Period::Year => self.yearly,
        }
    }

    /// A policy without any rule would remove everything: callers refuse it.
    pub fn is_empty(&self) -> bool {
        !self.last.is_set()
            && Period::ALL.iter().all(|p| !self.count(*p).is_set())
            && self.within.map_or(true, |span| span.is_zero())
            && self.tags.iter().all(|t| t.split(',').all(str::is_empty))
    }
}

/// What the policy decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub keep: bool,
    /// The rules that kept it, as `daily snapshot 3 of 7` or `tag monthly`.
    pub reasons: Vec<String>,
}

/// Applies `policy` to one group of snapshots, with periods counted in `zone`. Returns the
/// snapshots newest first (ties by id), each with its verdict.
pub fn apply<'s, Tz: TimeZone>(
    policy: &RetentionPolicy,
    snapshots: &[&'s SnapshotEntry],
    zone: &Tz,
    now: DateTime<Utc>,
) -> Vec<(&'s SnapshotEntry, Verdict)> {
    let mut order: Vec<&SnapshotEntry> = snapshots.to_vec();
    order.sort_by(|a, b| {
        b.snapshot
            .time
            .cmp(&a.snapshot.time)
            .then_with(|| a.id.cmp(&b.id))
    });
    // The newest snapshot not in the future: one stamped years ahead by a wrong clock must not
    // make every other snapshot fall outside the span.
    let newest = order
        .iter()
        .map(|e| e.snapshot.time)
        .find(|t| *t < now)
        .map(|t| t.with_timezone(zone));
    let within = policy.within.filter(|span| !span.is_zero());
    // `None` keeps everything within: no snapshot before now, or no such calendar time.
    let within_from = within.map(|span| newest.as_ref().and_then(|n| span.before(n)));
    let mut last_bucket: [Option<i64>; 5] = [None; 5];
    let mut kept_in: [u32; 5] = [0; 5];
    let mut kept_last = 0u32;
    let count = order.len();
    let mut out = Vec::with_capacity(count);
    for (nr, entry) in order.into_iter().enumerate() {
        let time = entry.snapshot.time.with_timezone(zone);
        let oldest = nr + 1 == count;
        let mut reasons = Vec::new();
        if let Some(reason) = take(policy.last, &mut kept_last, "last snapshot") {
            reasons.push(reason);
        }
        for (i, period) in Period::ALL.into_iter().enumerate() {
            let bucket = period.bucket(&time);
            // As restic: the oldest snapshot is kept while a rule has periods left, so the
            // history kept reaches as far back as it can.
            let same_period = last_bucket[i] == Some(bucket);
            if same_period && !oldest {
                continue;
            }
            let what = format!("{} snapshot", period.name());
            if let Some(mut reason) = take(policy.count(period), &mut kept_in[i], &what) {
                if same_period {
                    reason.push_str(" (the oldest)");
                }
                reasons.push(reason);
                last_bucket[i] = Some(bucket);
            }
        }
        if let (Some(span), Some(from)) = (&within, &within_from) {
            // Strictly newer, as restic.
            if from.as_ref().map_or(true, |from| time > *from) {
                reasons.push(format!("within {span} of the newest"));
            }
        }
        for tags in &policy.tags {
            // `a,b` asks for both tags, as restic's --keep-tag does.
            let mut wanted = tags.split(',').filter(|t| !t.is_empty()).peekable();
            if wanted.peek().is_some() && wanted.all(|t| entry.snapshot.tags.iter().any(|h| h == t))
            {
                reasons.push(format!("tag {tags}"));
            }
        }
        let keep = !reasons.is_empty();
        out.push((entry, Verdict { keep, reasons }));
    }
    out
}

/// Counts one more kept snapshot against `count`: the reason, or `None` when the rule is unset
/// or used up.
fn take(count: Count, kept: &mut u32, what: &str) -> Option<String> {
    let reason = match count {
        Count::None => return None,
        Count::All => format!("{what} {}", *kept + 1),
        Count::Some(n) if *kept < n => format!("{what} {} of {n}", *kept + 1),
        Count::Some(_) => return None,
    };
    *kept += 1;
    Some(reason)
}

/// What snapshots are grouped by before a policy is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut by = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            match part {
                "host" => by.host = true,
                "paths" | "path" => by.paths = true,
                "tags" | "tag" => by.tags = true,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "cannot group by {part:?}: use host, paths, tags, a comma list of them, or \"\" for one group"
                    )))
                }
            }
        }
        Ok(by)
    }
}

/// The values a group shares; empty fields are not grouped by.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub host: Option<String>,
    pub paths: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(host) = &self.host {
            parts.push(format!("host {host}"));
        }
        if let Some(paths) = &self.paths {
            parts.push(format!("paths [{}]", paths.join(", ")));
        }
        if let Some(tags) = &self.tags {
            parts.push(format!("tags [{}]", tags.join(", ")));
        }
        if parts.is_empty() {
            write!(f, "all snapshots")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// Snapshots grouped by `by` (paths and tags compared as sorted sets), groups in key order.
pub fn group(snapshots: &[SnapshotEntry], by: GroupBy) -> BTreeMap<GroupKey, Vec<&SnapshotEntry>> {
    let sorted = |values: &[String]| {
        let mut v = values.to_vec();
        v.sort();
        v.dedup();
        v
    };
    let mut groups: BTreeMap<GroupKey, Vec<&SnapshotEntry>> = BTreeMap::new();
    for entry in snapshots {
        let s = &entry.snapshot;
        let key = GroupKey {
            host: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| sorted(&s.paths)),
            tags: by.tags.then(|| sorted(&s.tags)),
        };
        groups.entry(key).or_default().push(entry);
    }
    groups
}

#[cfg(test)]
mod tests;
