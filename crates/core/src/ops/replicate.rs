//! How far a copy of a repository (`copy --to`, run on a schedule) lags behind the primary:
//! for every backup source (host, kind of source, paths) the newest snapshot on each side, and
//! the time between the primary's newest and the newest one the copy holds.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::copy::same_backup;
use crate::snapshot::{is_archive_source, SnapshotEntry};

/// One snapshot, as the status names it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Newest {
    pub id: String,
    pub time: DateTime<FixedOffset>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceLag {
    pub host: String,
    pub source: String,
    pub paths: Vec<String>,
    /// Newest snapshot of this source in the primary (None: only the copy has any).
    pub primary: Option<Newest>,
    /// Newest snapshot of this source in the copy.
    pub copy: Option<Newest>,
    /// Snapshots of the primary the copy does not hold.
    pub not_copied: usize,
    /// From the newest snapshot the copy holds of the primary's to the primary's newest: 0
    /// when the copy is current, None when it holds none of the primary's snapshots.
    pub lag_seconds: Option<i64>,
}

impl SourceLag {
    pub fn is_current(&self) -> bool {
        self.not_copied == 0
    }
}

type SourceKey = (String, String, Vec<String>);

/// A continuous archive (WAL) stores each batch of files as a snapshot of its own: its
/// batches are one source, not one per list of files.
fn key(entry: &SnapshotEntry) -> SourceKey {
    let s = &entry.snapshot;
    let paths = if is_archive_source(&s.source) {
        Vec::new()
    } else {
        s.paths.clone()
    };
    (s.hostname.clone(), s.source.clone(), paths)
}

fn newest(entries: &[&SnapshotEntry]) -> Option<Newest> {
    entries
        .iter()
        .max_by_key(|e| e.snapshot.time)
        .map(|e| Newest {
            id: e.id.clone(),
            time: e.snapshot.time,
        })
}

/// The lag of `copy` behind `primary`, one line per source, sorted by host, source and paths.
pub fn lag(primary: &[SnapshotEntry], copy: &[SnapshotEntry]) -> Vec<SourceLag> {
    let mut sources: BTreeMap<SourceKey, (Vec<&SnapshotEntry>, Vec<&SnapshotEntry>)> =
        BTreeMap::new();
    for entry in primary {
        sources.entry(key(entry)).or_default().0.push(entry);
    }
    for entry in copy {
        sources.entry(key(entry)).or_default().1.push(entry);
    }
    sources
        .into_iter()
        .map(|((host, source, paths), (ours, theirs))| {
            let held: Vec<&SnapshotEntry> = ours
                .iter()
                .copied()
                .filter(|p| theirs.iter().any(|c| same_backup(&p.snapshot, &c.snapshot)))
                .collect();
            let primary_newest = newest(&ours);
            let lag_seconds = match (&primary_newest, newest(&held)) {
                (Some(p), Some(h)) => Some((p.time - h.time).num_seconds().max(0)),
                _ => None,
            };
            SourceLag {
                host,
                source,
                paths,
                primary: primary_newest,
                copy: newest(&theirs),
                not_copied: ours.len() - held.len(),
                lag_seconds,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    fn entry(id: &str, host: &str, hour: u32) -> SnapshotEntry {
        let time = DateTime::parse_from_rfc3339(&format!("2026-12-01T{hour:02}:00:00+00:00"))
            .expect("time");
        SnapshotEntry {
            id: id.to_string(),
            snapshot: Snapshot {
                hostname: host.into(),
                ..Snapshot::example(time)
            },
        }
    }

    #[test]
    fn lag_is_measured_from_the_newest_snapshot_the_copy_holds() {
        let primary = [
            entry("a1", "a", 1),
            entry("a2", "a", 2),
            entry("a5", "a", 5),
            entry("b1", "b", 1),
            entry("c3", "c", 3),
        ];
        // The copy holds a1 and a2 (its own ids), b1, and a snapshot of host d the primary
        // has forgotten; nothing of c.
        let copy = [
            entry("x1", "a", 1),
            entry("x2", "a", 2),
            entry("y1", "b", 1),
            entry("z9", "d", 9),
        ];
        let lines = lag(&primary, &copy);
        let hosts: Vec<&str> = lines.iter().map(|l| l.host.as_str()).collect();
        assert_eq!(hosts, ["a", "b", "c", "d"]);

        let a = &lines[0];
        assert_eq!(a.not_copied, 1);
        assert_eq!(a.lag_seconds, Some(3 * 3600), "a5 is three hours past a2");
        assert_eq!(a.primary.as_ref().map(|n| n.id.as_str()), Some("a5"));
        assert_eq!(a.copy.as_ref().map(|n| n.id.as_str()), Some("x2"));
        assert!(!a.is_current());

        assert_eq!(lines[1].lag_seconds, Some(0));
        assert!(lines[1].is_current());

        assert_eq!(lines[2].lag_seconds, None, "never copied");
        assert_eq!(lines[2].not_copied, 1);
        assert!(lines[2].copy.is_none());

        assert!(lines[3].primary.is_none());
        assert!(lines[3].is_current(), "nothing of the primary is missing");
    }

    #[test]
    fn the_batches_of_a_wal_archive_are_one_source() {
        let wal = |id: &str, hour: u32, file: &str| {
            let mut e = entry(id, "db", hour);
            e.snapshot.source = "postgres-wal".into();
            e.snapshot.paths = vec![format!("/{file}")];
            e
        };
        let primary = [
            wal("w1", 1, "000000010000000000000001"),
            wal("w2", 2, "000000010000000000000002"),
        ];
        let copy = [wal("c1", 1, "000000010000000000000001")];
        let lines = lag(&primary, &copy);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].paths.is_empty());
        assert_eq!(lines[0].not_copied, 1);
        assert_eq!(lines[0].lag_seconds, Some(3600));
    }
}
