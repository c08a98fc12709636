//! The snapshot chain: each snapshot names the snapshot of its host and source that was newest
//! when it was taken (`previous`), and every `forget` leaves a sealed record of what it removed.
//! A snapshot that a later one names, that is gone, and that no record accounts for was deleted
//! (or rewritten, which changes its id) by someone other than lifeboat: `check` says so.
//!
//! What the chain cannot see: the newest snapshots of a source vanishing together (nothing
//! names them yet), and a forger holding the repository key. docs/format.md, "Snapshot chain".

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::crypto::{open_object, seal_object};
use crate::error::{Error, Result};
use crate::snapshot::SnapshotEntry;

const FORGET_RECORD_AAD: &[u8] = b"lifeboat forget record v1";
const FORGET_RECORD_VERSION: u32 = 1;

/// What one run of `forget` (or `repair snapshots --forget`) removed, written before it
/// deletes anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForgetRecord {
    pub version: u32,
    pub time: DateTime<FixedOffset>,
    pub hostname: String,
    pub username: String,
    /// `forget` or `repair snapshots`.
    pub operation: String,
    pub snapshots: Vec<String>,
}

impl ForgetRecord {
    pub fn new(operation: &str, snapshots: Vec<String>) -> ForgetRecord {
        ForgetRecord {
            version: FORGET_RECORD_VERSION,
            time: chrono::Local::now().fixed_offset(),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            operation: operation.to_string(),
            snapshots,
        }
    }

    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        let plain = serde_json::to_vec(self).expect("forget record serializes");
        seal_object(key, FORGET_RECORD_AAD, &plain)
    }

    pub fn open(key: &[u8; 32], data: &[u8], object: &str) -> Result<ForgetRecord> {
        let plain = open_object(key, FORGET_RECORD_AAD, data, object)?;
        let record: ForgetRecord =
            serde_json::from_slice(&plain).map_err(|e| Error::format(object, e))?;
        if record.version != FORGET_RECORD_VERSION {
            return Err(Error::format(
                object,
                format!("unknown forget record version {}", record.version),
            ));
        }
        Ok(record)
    }
}

/// A snapshot that is gone without a record, and the snapshot that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub missing: String,
    pub named_by: String,
}

/// The snapshots `snapshots` name as `previous` that are neither `stored` (every name the
/// store lists, readable or not), nor removed by a forget (`forgotten`), nor replaced by a
/// repaired snapshot (whose `original` names them).
pub fn chain_breaks(
    snapshots: &[SnapshotEntry],
    stored: &HashSet<String>,
    forgotten: &HashSet<String>,
) -> Vec<ChainBreak> {
    let replaced: HashSet<&str> = snapshots
        .iter()
        .filter_map(|e| e.snapshot.original.as_deref())
        .collect();
    snapshots
        .iter()
        .filter_map(|e| {
            let previous = e.snapshot.previous.as_deref()?;
            let accounted = stored.contains(previous)
                || forgotten.contains(previous)
                || replaced.contains(previous);
            (!accounted).then(|| ChainBreak {
                missing: previous.to_string(),
                named_by: e.id.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    fn entry(id: &str, previous: Option<&str>, original: Option<&str>) -> SnapshotEntry {
        let time = DateTime::parse_from_rfc3339("2026-11-01T10:00:00+01:00").expect("time");
        SnapshotEntry {
            id: id.into(),
            snapshot: Snapshot {
                previous: previous.map(str::to_string),
                original: original.map(str::to_string),
                ..Snapshot::example(time)
            },
        }
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_missing_previous_is_a_break_unless_forgotten_or_replaced() {
        let snapshots = vec![
            entry("b", Some("a"), None),
            entry("d", Some("c"), None),
            entry("f", Some("e"), None),
            entry("e2", None, Some("e")),
            entry("h", Some("g"), None),
            entry("first", None, None),
        ];
        let stored = set(&["b", "d", "f", "e2", "h", "first", "g"]);
        // a: gone without a trace; c: forgotten; e: replaced by a repair; g: present.
        let breaks = chain_breaks(&snapshots, &stored, &set(&["c"]));
        assert_eq!(
            breaks,
            vec![ChainBreak {
                missing: "a".into(),
                named_by: "b".into()
            }]
        );
    }

    #[test]
    fn record_round_trip_and_wrong_key() {
        let record = ForgetRecord::new("forget", vec!["ab".repeat(32)]);
        let sealed = record.seal(&[7; 32]);
        assert_eq!(
            ForgetRecord::open(&[7; 32], &sealed, "forgotten x").expect("opens"),
            record
        );
        assert!(ForgetRecord::open(&[8; 32], &sealed, "forgotten x").is_err());
    }
}
