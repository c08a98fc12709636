//! Repository locks. Backups take shared locks and never wait for each other; `forget`,
//! `prune` and `check` take maintenance locks, which exclude each other but not backups;
//! operations that rewrite what backups rely on (repair) take exclusive ones. A lock names its host, process and
//! time; a lock whose process is gone on this host, or that was not refreshed within
//! `STALE_AFTER`, is stale: reported and ignored, never silently blocking a job.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{open_object, seal_object};
use crate::error::{Error, Result};
use crate::storage::{ObjectKind, Storage};

pub(crate) const LOCK_AAD: &[u8] = b"lifeboat lock v1";
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A holder stops relying on its lock this long before others may call it stale, so a write
/// it starts just before the check still lands well inside the lock's life.
const SAFETY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What a lock excludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Backups: conflict only with exclusive locks.
    Shared,
    /// Forget, prune, check: conflict with each other and with exclusive locks, not with
    /// backups.
    Maintenance,
    /// Conflicts with every other lock.
    Exclusive,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockRecord {
    pub time: DateTime<Utc>,
    pub exclusive: bool,
    /// Added after the first release: a record without it is a shared or exclusive lock.
    #[serde(default)]
    pub maintenance: bool,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
    pub operation: String,
    /// Random and the same across refreshes: what a prune records to know, later, whether the
    /// same run still holds its lock. Added without a version change (absent in older locks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

impl LockRecord {
    /// Opens and decodes a sealed lock object.
    pub(crate) fn open(key: &[u8; 32], data: &[u8], object: &str) -> Result<LockRecord> {
        let plain = open_object(key, LOCK_AAD, data, object)?;
        Self::from_json(&plain, object)
    }

    /// Decodes the plaintext of a lock object.
    pub(crate) fn from_json(plain: &[u8], object: &str) -> Result<LockRecord> {
        serde_json::from_slice(plain).map_err(|e| Error::format(object, e))
    }

    pub fn is_stale(&self) -> bool {
        let age = Utc::now().signed_duration_since(self.time);
        if age.to_std().map(|a| a > STALE_AFTER).unwrap_or(false) {
            return true;
        }
        self.holder_died_here()
    }

    /// Whether the holder ran on this host and its process is gone: certainly stale (a
    /// killed run), unlike a lock that is merely old, whose host may only have a slow clock.
    fn holder_died_here(&self) -> bool {
        self.hostname == crate::host::hostname() && !crate::host::process_alive(self.pid)
    }

    /// Who holds the lock, stable while the same run refreshes it.
    pub fn holder_id(&self) -> String {
        self.holder
            .clone()
            .unwrap_or_else(|| format!("{}:{}:{}", self.hostname, self.pid, self.operation))
    }

    pub fn kind(&self) -> LockKind {
        if self.exclusive {
            LockKind::Exclusive
        } else if self.maintenance {
            LockKind::Maintenance
        } else {
            LockKind::Shared
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock for {} held by {}@{} (pid {}) since {}",
            match self.kind() {
                LockKind::Exclusive => "exclusive",
                LockKind::Maintenance => "maintenance",
                LockKind::Shared => "shared",
            },
            self.operation,
            self.username,
            self.hostname,
            self.pid,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// Reads every lock; unreadable ones are reported as errors so that a damaged lock is seen.
pub fn list_locks(storage: &dyn Storage, key: &[u8; 32]) -> Result<Vec<(String, LockRecord)>> {
    locks_except(storage, key, None)
}

/// [`list_locks`] without reading the lock named `own` (the caller's: one request less).
fn locks_except(
    storage: &dyn Storage,
    key: &[u8; 32],
    own: Option<&str>,
) -> Result<Vec<(String, LockRecord)>> {
    let mut out = Vec::new();
    for info in storage.list(ObjectKind::Lock)? {
        if Some(info.name.as_str()) == own {
            continue;
        }
        let data = match storage.read(ObjectKind::Lock, &info.name) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => continue, // released while we listed
            Err(e) => return Err(e.into()),
        };
        let object = format!("lock {}", info.name);
        // A damaged lock must not block every job without saying how to get rid of it.
        let record = LockRecord::open(key, &data, &object).map_err(|e| {
            Error::integrity(
                &object,
                format!(
                    "unreadable ({e}); `lifeboat unlock --remove-all` removes it once no \
                     other lifeboat uses the repository"
                ),
            )
        })?;
        out.push((info.name, record));
    }
    Ok(out)
}

/// A held lock; released (deleted) on drop. A background thread refreshes it.
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    /// The other locks in storage once this one was: what the run may assume about who else
    /// was there when it started (listed after its own lock was durable).
    others: Vec<(String, LockRecord)>,
    name: Arc<std::sync::Mutex<String>>,
    /// When the lock object was last written (wall clock, which keeps counting while the
    /// machine sleeps).
    refreshed: Arc<std::sync::Mutex<SystemTime>>,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<thread::JoinHandle<()>>,
}

fn write_lock(storage: &dyn Storage, key: &[u8; 32], record: &LockRecord) -> Result<String> {
    let plain = serde_json::to_vec(record).expect("lock serializes");
    let name = hex::encode(rand::random::<[u8; 16]>());
    storage.write(ObjectKind::Lock, &name, &seal_object(key, LOCK_AAD, &plain))?;
    Ok(name)
}

fn conflicts(mine: LockKind, theirs: LockKind) -> bool {
    use LockKind::*;
    matches!(
        (mine, theirs),
        (Exclusive, _) | (_, Exclusive) | (Maintenance, Maintenance)
    )
}

pub fn acquire(
    storage: Arc<dyn Storage>,
    key: [u8; 32],
    kind: LockKind,
    operation: &str,
) -> Result<LockGuard> {
    let check = |own: Option<&str>| -> Result<Vec<(String, LockRecord)>> {
        let others = locks_except(storage.as_ref(), &key, own)?;
        for (_, record) in &others {
            if record.is_stale() {
                continue;
            }
            if conflicts(kind, record.kind()) {
                return Err(Error::Locked {
                    holder: record.describe(),
                });
            }
        }
        Ok(others)
    };
    check(None)?;
    let record = LockRecord {
        time: Utc::now(),
        exclusive: kind == LockKind::Exclusive,
        maintenance: kind == LockKind::Maintenance,
        hostname: crate::host::hostname(),
        username: crate::host::username(),
        pid: std::process::id(),
        operation: operation.to_string(),
        holder: Some(hex::encode(rand::random::<[u8; 16]>())),
    };
    let name = write_lock(storage.as_ref(), &key, &record)?;
    // Two processes may have passed the first check at once; looking again after our lock is
    // visible means at least one of them sees the other.
    let others = match check(Some(&name)) {
        Ok(others) => others,
        Err(e) => {
            let _ = storage.delete(ObjectKind::Lock, &name);
            return Err(e);
        }
    };
    remove_locks_of_dead_processes(storage.as_ref(), &others);
    let name = Arc::new(std::sync::Mutex::new(name));
    let refreshed = Arc::new(std::sync::Mutex::new(SystemTime::now()));
    let (stop, stopped) = mpsc::channel::<()>();
    let refresher = {
        let storage = storage.clone();
        let name = name.clone();
        let refreshed = refreshed.clone();
        thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
                let fresh = LockRecord {
                    time: Utc::now(),
                    ..record.clone()
                };
                if let Ok(new_name) = write_lock(storage.as_ref(), &key, &fresh) {
                    if let Ok(mut current) = name.lock() {
                        let _ = storage.delete(ObjectKind::Lock, &current);
                        *current = new_name;
                    }
                    if let Ok(mut at) = refreshed.lock() {
                        *at = SystemTime::now();
                    }
                }
            }
        })
    };
    Ok(LockGuard {
        storage,
        others,
        name,
        refreshed,
        stop: Some(stop),
        refresher: Some(refresher),
    })
}

impl LockGuard {
    /// The other locks in storage when this one was taken (listed after it was durable).
    pub fn others_at_start(&self) -> &[(String, LockRecord)] {
        &self.others
    }

    /// Fails unless the lock is certainly still in force: refreshed recently enough that no
    /// other process can have called it stale, and still in storage (`unlock --remove-all`
    /// may have removed it). A backup asks before each index file and before its snapshot, so
    /// a run that was suspended or cut off from storage for half an hour never writes
    /// something that relies on blobs a prune may have deleted meanwhile.
    pub fn ensure_held(&self) -> Result<()> {
        let refreshed = *self
            .refreshed
            .lock()
            .map_err(|_| Error::LockLost("the lock refresher panicked".into()))?;
        let age = SystemTime::now()
            .duration_since(refreshed)
            .unwrap_or(Duration::ZERO);
        if age > STALE_AFTER.saturating_sub(SAFETY_MARGIN) {
            return Err(Error::LockLost(format!(
                "it was last refreshed {} s ago; others treat a lock as stale after {} s",
                age.as_secs(),
                STALE_AFTER.as_secs()
            )));
        }
        let name = self
            .name
            .lock()
            .map_err(|_| Error::LockLost("the lock refresher panicked".into()))?
            .clone();
        match self.storage.stat(ObjectKind::Lock, &name) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(Error::LockLost(format!(
                "lock {name} was removed from the repository (by `unlock --remove-all`?)"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Pretends the last refresh happened `ago` in the past (tests of [`ensure_held`]).
    #[cfg(test)]
    fn backdate(&self, ago: Duration) {
        if let Ok(mut at) = self.refreshed.lock() {
            *at = SystemTime::now() - ago;
        }
    }
}

/// The holders of live (not stale) locks other than maintenance ones: the backups and other
/// runs that may rely on what the index listed when they started.
pub fn live_holders(storage: &dyn Storage, key: &[u8; 32]) -> Result<Vec<LockRecord>> {
    Ok(list_locks(storage, key)?
        .into_iter()
        .map(|(_, record)| record)
        .filter(|r| !r.is_stale() && r.kind() != LockKind::Maintenance)
        .collect())
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.refresher.take() {
            let _ = handle.join();
        }
        if let Ok(name) = self.name.lock() {
            let _ = self.storage.delete(ObjectKind::Lock, &name);
        }
    }
}

/// Deletes the locks left by runs of this host that were killed (kill -9, a crash, a power
/// cut), so they do not pile up until someone runs `unlock`. Best effort: an append-only
/// repository refuses deletes, and such locks are ignored as stale anyway. The locks of
/// killed backups and copies stay: they tell the next backup to index the packs those runs
/// stored (`ops::backup::resume`), which removes them then.
fn remove_locks_of_dead_processes(storage: &dyn Storage, locks: &[(String, LockRecord)]) {
    for (name, record) in locks {
        let left_packs = crate::ops::backup::resume::WRITERS.contains(&record.operation.as_str());
        if record.holder_died_here() && !left_packs {
            let _ = storage.delete_if_present(ObjectKind::Lock, name);
        }
    }
}

/// Removes stale locks (or all, when `all`); returns what was removed.
///
/// With `all`, damaged locks are removed too (reported as `None`), since nothing can tell
/// whether they are stale.
pub fn remove_locks(
    storage: &dyn Storage,
    key: &[u8; 32],
    all: bool,
) -> Result<Vec<Option<LockRecord>>> {
    let mut removed = Vec::new();
    // A lock released meanwhile is gone either way.
    let delete = |name: &str| {
        storage
            .delete_if_present(ObjectKind::Lock, name)
            .map(|_| ())
    };
    if !all {
        for (name, record) in list_locks(storage, key)? {
            if record.is_stale() {
                delete(&name)?;
                removed.push(Some(record));
            }
        }
        return Ok(removed);
    }
    for info in storage.list(ObjectKind::Lock)? {
        let record = storage
            .read(ObjectKind::Lock, &info.name)
            .ok()
            .and_then(|data| LockRecord::open(key, &data, "lock").ok());
        delete(&info.name)?;
        removed.push(record);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    #[test]
    fn maintenance_locks_exclude_each_other_but_not_backups() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()));
        storage.create().expect("create");
        let key = [7u8; 32];
        let take = |kind| acquire(storage.clone(), key, kind, "test");

        let backup = take(LockKind::Shared).expect("a backup");
        let forget = take(LockKind::Maintenance).expect("forget runs beside a backup");
        let second_backup = take(LockKind::Shared).expect("a backup runs beside forget");
        let err = take(LockKind::Maintenance)
            .err()
            .expect("two maintenance locks conflict");
        assert!(
            err.to_string().contains("maintenance lock for test"),
            "{err}"
        );
        assert!(take(LockKind::Exclusive).is_err(), "repair waits for all");
        drop((backup, forget, second_backup));
        let repair = take(LockKind::Exclusive).expect("nothing held");
        assert!(take(LockKind::Shared).is_err(), "a backup waits for repair");
        drop(repair);
    }

    #[test]
    fn taking_a_lock_removes_the_locks_killed_runs_left_on_this_host() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()));
        storage.create().expect("create");
        let key = [7u8; 32];
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead_pid = child.id();
        child.wait().expect("wait");
        let record = |hostname: String, pid: u32, exclusive: bool| LockRecord {
            time: Utc::now(),
            exclusive,
            maintenance: false,
            hostname,
            username: "u".into(),
            pid,
            operation: "prune".into(),
            holder: None,
        };
        let here = crate::host::hostname();
        let killed = write_lock(
            storage.as_ref(),
            &key,
            &record(here.clone(), dead_pid, true),
        )
        .expect("lock");
        let killed_backup = write_lock(
            storage.as_ref(),
            &key,
            &LockRecord {
                operation: "backup".into(),
                ..record(here.clone(), dead_pid, false)
            },
        )
        .expect("lock");
        let pid_zero = write_lock(storage.as_ref(), &key, &record(here, 0, true)).expect("lock");
        let elsewhere = write_lock(
            storage.as_ref(),
            &key,
            &record("another-host".into(), dead_pid, false),
        )
        .expect("lock");

        let guard = acquire(storage.clone(), key, LockKind::Shared, "backup")
            .expect("the killed run's exclusive lock is stale");
        let left: Vec<String> = storage
            .list(ObjectKind::Lock)
            .expect("list")
            .into_iter()
            .map(|info| info.name)
            .collect();
        assert!(!left.contains(&killed), "the killed run's lock is removed");
        assert!(!left.contains(&pid_zero), "pid 0 names no live process");
        assert!(left.contains(&elsewhere), "another host's lock is its own");
        assert!(
            left.contains(&killed_backup),
            "a killed backup's lock stays until the next backup indexes its packs"
        );
        assert_eq!(left.len(), 3, "{left:?}");
        drop(guard);
    }

    #[test]
    fn a_lock_is_held_while_fresh_and_present_and_lost_otherwise() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()));
        storage.create().expect("create");
        let key = [7u8; 32];
        let guard = acquire(storage.clone(), key, LockKind::Shared, "backup").expect("lock");
        guard.ensure_held().expect("a fresh lock is held");
        let live = live_holders(storage.as_ref(), &key).expect("holders");
        assert_eq!(live.len(), 1);
        assert!(live[0].holder.is_some(), "new locks carry a holder id");

        guard.backdate(STALE_AFTER - SAFETY_MARGIN + Duration::from_secs(1));
        let err = guard.ensure_held().expect_err("too old to rely on");
        assert!(err.to_string().contains("last refreshed"), "{err}");

        guard.backdate(Duration::ZERO);
        remove_locks(storage.as_ref(), &key, true).expect("unlock --remove-all");
        let err = guard.ensure_held().expect_err("removed");
        assert!(err.to_string().contains("was removed"), "{err}");
    }

    #[test]
    fn a_record_from_before_maintenance_locks_reads_as_shared_or_exclusive() {
        let old = r#"{"time":"2026-11-01T00:00:00Z","exclusive":false,"hostname":"h","username":"u","pid":1,"operation":"backup"}"#;
        let record: LockRecord = serde_json::from_str(old).expect("old record");
        assert_eq!(record.kind(), LockKind::Shared);
    }
}
