//! Snapshot records: the last object a backup writes, naming the root tree and what was saved.

pub mod retention;
pub mod select;

pub use select::{SnapshotFilter, SnapshotSpec};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::blob::BlobId;
use crate::crypto::{open_object, seal_object};
use crate::error::{Error, Result};

const SNAPSHOT_AAD: &[u8] = b"lifeboat snapshot v1";
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
    /// "files" or "stdin" (later: database sources).
    pub source: String,
    pub tree: BlobId,
    pub parent: Option<String>,
    pub program_version: String,
    pub summary: Summary,
}

impl Snapshot {
    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        let plain = serde_json::to_vec(self).expect("snapshot serializes");
        seal_object(key, SNAPSHOT_AAD, &plain)
    }

    pub fn open(key: &[u8; 32], data: &[u8], object: &str) -> Result<Snapshot> {
        let plain = open_object(key, SNAPSHOT_AAD, data, object)?;
        let snap: Snapshot =
            serde_json::from_slice(&plain).map_err(|e| Error::format(object, e))?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(Error::format(
                object,
                format!("unknown snapshot version {}", snap.version),
            ));
        }
        Ok(snap)
    }
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
