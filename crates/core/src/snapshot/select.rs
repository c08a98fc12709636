//! Choosing snapshots: filters (host, tag, path) and the ways a user names one.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};

use super::SnapshotEntry;
use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub hosts: Vec<String>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, entry: &SnapshotEntry) -> bool {
        let s = &entry.snapshot;
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.paths.iter().all(|p| s.paths.contains(p))
    }
}

/// How a user names a snapshot on the command line.
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotSpec {
    Latest,
    /// The newest snapshot at or before this time.
    AtTime(DateTime<FixedOffset>),
    /// A full id or a unique prefix of one.
    Id(String),
}

impl FromStr for SnapshotSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" {
            return Ok(SnapshotSpec::Latest);
        }
        if let Some(time) = s.strip_prefix('@') {
            return parse_time(time).map(SnapshotSpec::AtTime);
        }
        if s.len() >= 4 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(SnapshotSpec::Id(s.to_ascii_lowercase()));
        }
        Err(Error::InvalidInput(format!(
            "{s:?} is not a snapshot: use an id (at least 4 hex digits), latest, or @TIME"
        )))
    }
}

/// Accepts RFC 3339 and the shorter local forms `YYYY-MM-DD[ HH:MM[:SS]]`.
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let local = |naive: NaiveDateTime| {
        chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.fixed_offset())
    };
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            if let Some(t) = local(naive) {
                return Ok(t);
            }
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = date.and_hms_opt(23, 59, 59).and_then(local) {
            return Ok(t);
        }
    }
    Err(Error::InvalidInput(format!(
        "cannot read time {s:?}: use RFC 3339 (2026-01-31T12:00:00Z) or YYYY-MM-DD[ HH:MM[:SS]]"
    )))
}

impl SnapshotSpec {
    /// Picks one snapshot out of `all` (any order), honouring the filter for latest and @TIME.
    pub fn resolve<'a>(
        &self,
        all: &'a [SnapshotEntry],
        filter: &SnapshotFilter,
    ) -> Result<&'a SnapshotEntry> {
        match self {
            SnapshotSpec::Latest => all
                .iter()
                .filter(|e| filter.matches(e))
                .max_by_key(|e| e.snapshot.time)
                .ok_or_else(|| Error::SnapshotNotFound("latest".into())),
            SnapshotSpec::AtTime(t) => all
                .iter()
                .filter(|e| filter.matches(e) && e.snapshot.time <= *t)
                .max_by_key(|e| e.snapshot.time)
                .ok_or_else(|| Error::SnapshotNotFound(format!("at or before {t}"))),
            SnapshotSpec::Id(prefix) => {
                let mut found = all.iter().filter(|e| e.id.starts_with(prefix.as_str()));
                let first = found
                    .next()
                    .ok_or_else(|| Error::SnapshotNotFound(prefix.clone()))?;
                if found.next().is_some() {
                    return Err(Error::AmbiguousSnapshot(prefix.clone()));
                }
                Ok(first)
            }
        }
    }
}
