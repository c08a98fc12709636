//! What this client wrote: the newest snapshots of each of its sources, remembered outside the
//! repository, so that `check` can tell when the storage deleted the newest snapshots of a
//! source together, or handed back an older copy of the whole repository (a rollback). The
//! chain (`snapshot::chain`) cannot see that: nothing in the repository names those snapshots
//! yet. Borg keeps the same kind of client-side state (its manifest timestamp) for the same
//! reason.
//!
//! The record is a small JSON file (not secret: snapshot ids, times, paths). It only ever
//! adds evidence: a lost or unreadable file turns the detection off, never raises an alarm.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::SnapshotEntry;

const WRITTEN_LOG_VERSION: u32 = 1;

/// A snapshot this client wrote, as it remembers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenSnapshot {
    pub id: String,
    pub time: DateTime<FixedOffset>,
    pub source: String,
    pub paths: Vec<String>,
}

impl WrittenSnapshot {
    pub fn of(entry: &SnapshotEntry) -> WrittenSnapshot {
        WrittenSnapshot {
            id: entry.id.clone(),
            time: entry.snapshot.time,
            source: entry.snapshot.source.clone(),
            paths: entry.snapshot.paths.clone(),
        }
    }

    fn same_source(&self, other: &WrittenSnapshot) -> bool {
        self.source == other.source && self.paths == other.paths
    }
}

/// How many of its newest snapshots per source the log keeps: the newest alone would not do,
/// since once `forget` removed it (leaving a record), the ones before it would again be
/// invisible if storage deleted them together.
const KEPT_PER_SOURCE: usize = 16;

/// The newest snapshots this client wrote of each source (label and paths) of a repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WrittenLog {
    pub version: u32,
    pub repository_id: String,
    pub recent: Vec<WrittenSnapshot>,
}

impl WrittenLog {
    pub fn new(repository_id: &str) -> WrittenLog {
        WrittenLog {
            version: WRITTEN_LOG_VERSION,
            repository_id: repository_id.to_string(),
            recent: Vec::new(),
        }
    }

    /// Reads the log at `path`; `None` when there is none yet. A log of another repository
    /// or version is an error, so that it is never compared with the wrong repository.
    pub fn load(path: &Path, repository_id: &str) -> Result<Option<WrittenLog>> {
        let data = match std::fs::read(path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let object = path.display().to_string();
        let log: WrittenLog =
            serde_json::from_slice(&data).map_err(|e| Error::format(&object, e))?;
        if log.version != WRITTEN_LOG_VERSION {
            return Err(Error::format(
                &object,
                format!("unknown version {}", log.version),
            ));
        }
        if log.repository_id != repository_id {
            return Err(Error::format(
                &object,
                format!(
                    "it is the record of repository {}, not {repository_id}",
                    log.repository_id
                ),
            ));
        }
        Ok(Some(log))
    }

    /// Remembers `written`, keeping the [`KEPT_PER_SOURCE`] newest of its source.
    pub fn record(&mut self, written: WrittenSnapshot) {
        if self.recent.iter().any(|w| w.id == written.id) {
            return;
        }
        self.recent.push(written.clone());
        // Newest first within each source, so that the oldest beyond the limit go.
        self.recent.sort_by_key(|w| std::cmp::Reverse(w.time));
        let mut seen = 0;
        self.recent.retain(|w| {
            if !w.same_source(&written) {
                return true;
            }
            seen += 1;
            seen <= KEPT_PER_SOURCE
        });
    }

    /// Writes the log to a temporary file beside it, then renames it over the old one, so a
    /// reader sees one or the other. Not fsynced: a log that a power cut set back only knows
    /// fewer snapshots (less to compare, never a false alarm), and the backup pays no sync.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
        let data = serde_json::to_vec_pretty(self).expect("written log serializes");
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&data))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(path, e));
        }
        Ok(())
    }

    /// The remembered snapshots that are gone from storage (`stored`: every name it lists)
    /// with nothing to account for it: no forget record names them, and no repaired
    /// snapshot replaced them.
    pub fn missing<'a>(
        &'a self,
        stored: &HashSet<String>,
        forgotten: &HashSet<String>,
        snapshots: &[SnapshotEntry],
    ) -> Vec<&'a WrittenSnapshot> {
        let replaced: HashSet<&str> = snapshots
            .iter()
            .filter_map(|e| e.snapshot.original.as_deref())
            .collect();
        self.recent
            .iter()
            .filter(|w| {
                !stored.contains(&w.id)
                    && !forgotten.contains(&w.id)
                    && !replaced.contains(w.id.as_str())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    fn entry(id: &str, hour: u32, paths: &[&str], original: Option<&str>) -> SnapshotEntry {
        let time = DateTime::parse_from_rfc3339(&format!("2026-11-01T{hour:02}:00:00+01:00"))
            .expect("time");
        SnapshotEntry {
            id: id.into(),
            snapshot: Snapshot {
                paths: paths.iter().map(|p| p.to_string()).collect(),
                original: original.map(str::to_string),
                ..Snapshot::example(time)
            },
        }
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_newest_of_each_source_are_kept_and_checked() {
        let mut log = WrittenLog::new("repo");
        for hour in 0..20 {
            log.record(WrittenSnapshot::of(&entry(
                &format!("a{hour}"),
                hour,
                &["/a"],
                None,
            )));
        }
        log.record(WrittenSnapshot::of(&entry("b1", 10, &["/b"], None)));
        log.record(WrittenSnapshot::of(&entry("b1", 10, &["/b"], None)));
        let mut ids: Vec<&str> = log.recent.iter().map(|w| w.id.as_str()).collect();
        ids.sort();
        let mut expected: Vec<String> = (4..20).map(|h| format!("a{h}")).collect();
        expected.push("b1".into());
        expected.sort();
        assert_eq!(ids, expected, "the 16 newest of /a, b1 once");

        // a19 forgotten, a18 gone without a trace, b1 forgotten: a18 is reported.
        let stored: Vec<String> = (4..18).map(|h| format!("a{h}")).collect();
        let stored: HashSet<String> = stored.into_iter().collect();
        let missing = log.missing(&stored, &set(&["a19", "b1"]), &[]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].id, "a18");
        // A repaired snapshot that replaced a18 accounts for it.
        let repaired = [entry("a18r", 18, &["/a"], Some("a18"))];
        assert!(log
            .missing(&stored, &set(&["a19", "b1"]), &repaired)
            .is_empty());
    }

    #[test]
    fn the_log_round_trips_and_refuses_another_repository() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state").join("written.json");
        assert_eq!(WrittenLog::load(&path, "repo").expect("none yet"), None);
        let mut log = WrittenLog::new("repo");
        log.record(WrittenSnapshot::of(&entry("a1", 10, &["/a"], None)));
        log.save(&path).expect("save");
        assert_eq!(WrittenLog::load(&path, "repo").expect("load"), Some(log));
        let err = WrittenLog::load(&path, "other").expect_err("another repository");
        assert!(err.to_string().contains("not other"), "{err}");
        std::fs::write(&path, b"{garbage").expect("write");
        assert!(WrittenLog::load(&path, "repo").is_err());
    }
}
