//! Snapshot records: the last object a backup writes, naming the root tree and what was saved.

pub mod chain;
pub mod retention;
pub mod select;
pub mod written;

pub use select::{SnapshotFilter, SnapshotSpec};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::blob::BlobId;
use crate::crypto::{open_object, seal_object};
use crate::error::{Error, Result};

pub(crate) const SNAPSHOT_AAD: &[u8] = b"lifeboat snapshot v1";
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    pub total_files: u64,
    pub total_bytes: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub bytes_added_packed: u64,
    pub blobs_added: u64,
    pub errors: u64,
    pub duration_seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub time: DateTime<FixedOffset>,
    pub hostname: String,
    pub username: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// "files", "stdin", or an application source ("command", "sqlite", "postgres", "mysql").
    pub source: String,
    pub tree: BlobId,
    pub parent: Option<String>,
    pub program_version: String,
    pub summary: Summary,
    /// The snapshot this one was rewritten from (`repair snapshots`). Added without a version
    /// change: absent in older records, and written only when set, so older readers (which
    /// ignore unknown fields) read repaired snapshots too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// The newest snapshot of the same host, source and paths when this one was taken: the
    /// link `check` follows to find snapshots removed outside of `forget` ([`chain`]). Added
    /// without a version change, like `original`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

impl Snapshot {
    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        let plain = serde_json::to_vec(self).expect("snapshot serializes");
        seal_object(key, SNAPSHOT_AAD, &plain)
    }

    pub fn open(key: &[u8; 32], data: &[u8], object: &str) -> Result<Snapshot> {
        let plain = open_object(key, SNAPSHOT_AAD, data, object)?;
        Self::from_json(&plain, object)
    }

    /// Decodes the plaintext of a snapshot object.
    pub(crate) fn from_json(plain: &[u8], object: &str) -> Result<Snapshot> {
        let snap: Snapshot = serde_json::from_slice(plain).map_err(|e| Error::format(object, e))?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(Error::format(
                object,
                format!("unknown snapshot version {}", snap.version),
            ));
        }
        Ok(snap)
    }
}

/// The source labels of continuous archives (PostgreSQL's WAL, one snapshot per batch of
/// segments): a retention policy never forgets them, since a gap in the WAL makes every
/// later point in time unrestorable; they expire with the archive's own rules.
pub const ARCHIVE_SOURCES: &[&str] = &["postgres-wal"];

pub fn is_archive_source(source: &str) -> bool {
    ARCHIVE_SOURCES.contains(&source)
}

/// A snapshot with its id (the BLAKE3 of its stored bytes).
#[derive(Clone, Debug)]
pub struct SnapshotEntry {
    pub id: String,
    pub snapshot: Snapshot,
}

impl SnapshotEntry {
    pub fn short_id(&self) -> &str {
        &self.id[..8.min(self.id.len())]
    }
}

#[cfg(test)]
impl Snapshot {
    /// A snapshot of `/srv` by host `h` at `time`, for tests to adjust field by field.
    pub(crate) fn example(time: DateTime<FixedOffset>) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            time,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/srv".into()],
            tags: vec![],
            source: "files".into(),
            tree: BlobId([0; 32]),
            parent: None,
            program_version: "test".into(),
            summary: Summary::default(),
            original: None,
            previous: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(original: Option<String>) -> Snapshot {
        let time = DateTime::parse_from_rfc3339("2026-11-01T10:00:00+01:00").expect("time");
        Snapshot {
            original,
            ..Snapshot::example(time)
        }
    }

    #[test]
    fn original_is_optional_and_written_only_when_set() {
        let plain = serde_json::to_value(snapshot(None)).expect("serializes");
        assert!(plain.get("original").is_none(), "{plain}");
        // A record written before the field existed reads as one without it.
        let old: Snapshot = serde_json::from_value(plain).expect("reads");
        assert_eq!(old, snapshot(None));

        let repaired = snapshot(Some("ab".repeat(32)));
        let value = serde_json::to_value(&repaired).expect("serializes");
        assert_eq!(value["original"], "ab".repeat(32));
        let back: Snapshot = serde_json::from_value(value).expect("reads back");
        assert_eq!(back, repaired);
    }
}
