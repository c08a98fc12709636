//! Retries of a backend's transient failures, for backends that have no retries of their own
//! (a local directory, which may be an NFS or SMB mount that times out).
//!
//! Object stores and `rest:` servers retry each request themselves, below this layer
//! (object_store's `RetryConfig`, `RestStorage::send`); wrapping them as well would multiply
//! the attempts and the time a dead server takes to give up, so `lifeboat_backends::open`
//! wraps only local directories. See docs/storage.md, "Retries and timeouts".
//!
//! What is retried, and why it is safe:
//! - Only errors the backend calls retryable ([`StorageError::is_retryable`]), at most
//!   `attempts` times in all, with exponential backoff.
//! - Reads, listings and stats change nothing. A ranged read that returns fewer bytes than
//!   asked is retried like a failure. A whole object is read again at once when it came back
//!   short: one whose name is the BLAKE3 of its bytes (packs, index files, snapshots, keys,
//!   forget and prune records) when its bytes do not hash to its name, any other (config,
//!   locks) when its size is not the stored size. Bytes that never pass are handed over as
//!   read, so that damage that stays is still reported by whoever reads it (`check`).
//! - Writes are write-once: an attempt that failed may still have stored the object, so a
//!   later attempt that finds the name taken reads the object back. The same bytes: the write
//!   is done. Other bytes under a name that holds one content only (the hash of ours, a random
//!   lock name, prune's holders name for its record): the remains of our failed attempt (a torn
//!   write), deleted and written again. Other bytes under `config`, the one name another
//!   writer may share: theirs, reported as taken.
//! - A staged object (a pack) is handed to each attempt as a duplicate (a hard link), so it
//!   survives an attempt that failed.
//! - A delete that fails and then finds the object gone was done by the failed attempt.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{
    Capabilities, ObjectInfo, ObjectKind, StagedObject, Storage, StorageError, StorageResult,
};

/// How often, and how patiently, a failed call is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retries).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for each one after, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts over about 1.4 s (0.2, 0.4, 0.8 s), the waits jittered down by up to
    /// half: long enough for a file server's hiccup, short enough that a dead mount is
    /// reported at once.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failed`-th failed attempt (1-based).
    fn delay(&self, failed: u32) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(1u32 << (failed.saturating_sub(1)).min(16));
        let delay = doubled.min(self.max_delay);
        // Jitter, so that the threads of one backup do not all come back at the same instant.
        delay.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// Re-reads of a whole content-addressed object whose bytes do not hash to its name, before
/// the bytes are handed over as they are. Immediate (no backoff): the objects are small
/// (index files, snapshots, keys, records) and a re-read costs one request.
const REREADS: u32 = 8;

/// Bytes hashed per step when an object is compared with what was written.
const COMPARE_STEP: u64 = 16 * 1024 * 1024;

pub struct RetryingStorage {
    inner: Arc<dyn Storage>,
    policy: RetryPolicy,
    retries: AtomicU64,
}

impl fmt::Debug for RetryingStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingStorage")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

/// What a write that found its name taken after a failed attempt found there.
enum Found {
    /// The bytes this write stores: an earlier attempt stored them.
    Ours,
    /// Other bytes, which can only be what is left of an earlier attempt of ours. Every name
    /// but `config` belongs to one content: the BLAKE3 of the bytes (a whole object under it
    /// holds nothing else), 128 random bits (a lock), or a name derived from such a name by
    /// the one run that may write it (prune's `-holders` objects, under its maintenance lock).
    Remains,
    /// Other bytes under a name others may write too (`config`).
    Theirs,
}

/// What one write attempt stores: bytes, or a staged object.
#[derive(Clone, Copy)]
enum Content<'a> {
    Bytes(&'a [u8]),
    Staged(&'a StagedObject),
}

impl Content<'_> {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(data) => data.len() as u64,
            Content::Staged(staged) => staged.len(),
        }
    }

    fn hash(&self) -> io::Result<blake3::Hash> {
        match self {
            Content::Bytes(data) => Ok(blake3::hash(data)),
            Content::Staged(staged) => {
                let mut hasher = blake3::Hasher::new();
                let mut at = 0;
                while at < staged.len() {
                    let step = COMPARE_STEP.min(staged.len() - at);
                    match staged.read_at(at, step as usize)? {
                        Some(bytes) => hasher.update(&bytes),
                        None => return Ok(hasher.finalize()),
                    };
                    at += step;
                }
                Ok(hasher.finalize())
            }
        }
    }
}

/// Whether `name` is, by the rules of `kind`, the BLAKE3 of the object's bytes (hex).
fn named_by_content(kind: ObjectKind, name: &str) -> bool {
    matches!(
        kind,
        ObjectKind::Key
            | ObjectKind::Pack
            | ObjectKind::Index
            | ObjectKind::Snapshot
            | ObjectKind::Condemned
            | ObjectKind::Forgotten
    ) && name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl RetryingStorage {
    pub fn new(inner: Arc<dyn Storage>, policy: RetryPolicy) -> Self {
        RetryingStorage {
            inner,
            policy,
            retries: AtomicU64::new(0),
        }
    }

    /// Calls tried again so far (re-reads of damaged-looking objects included).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// After the `failed`-th failure: whether to try again (having waited), or give up.
    fn again(&self, failed: u32) -> bool {
        if failed >= self.policy.attempts {
            return false;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.policy.delay(failed));
        true
    }

    /// `error` as the caller gets it once retries are spent: said so when there were any.
    fn gave_up(&self, error: StorageError, failed: u32) -> StorageError {
        match error {
            StorageError::Io {
                location,
                source,
                retryable,
            } if failed > 1 => StorageError::Io {
                location,
                source: io::Error::new(source.kind(), format!("{source} (tried {failed} times)")),
                retryable,
            },
            other => other,
        }
    }

    fn retry<T>(&self, mut call: impl FnMut() -> StorageResult<T>) -> StorageResult<T> {
        let mut failed = 0;
        loop {
            match call() {
                Err(e) if e.is_retryable() => {
                    failed += 1;
                    if !self.again(failed) {
                        return Err(self.gave_up(e, failed));
                    }
                }
                other => return other,
            }
        }
    }

    /// A ranged read into `buf`, tried again when it fails or comes back short.
    fn ranged(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
        read: impl Fn(&mut Vec<u8>) -> StorageResult<()>,
    ) -> StorageResult<()> {
        self.retry(|| {
            read(buf)?;
            if buf.len() as u64 == length {
                return Ok(());
            }
            Err(StorageError::Io {
                location: format!("{} ({kind} {name})", self.inner.location()),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "short read: wanted {length} bytes at offset {offset}, got {}",
                        buf.len()
                    ),
                ),
                // Within the object (the backend did not say the range runs past its end),
                // so the next read may bring everything.
                retryable: true,
            })
        })
    }

    /// What is stored under `name` (taken, after an attempt of ours failed), against what we
    /// write. Errors are the read's, to be retried like the write's.
    fn found(&self, kind: ObjectKind, name: &str, ours: Content) -> StorageResult<Found> {
        let info = self.inner.stat(kind, name)?;
        let io_error = |e: io::Error| StorageError::Io {
            location: format!("{} ({kind} {name}, being written)", self.inner.location()),
            source: e,
            retryable: false,
        };
        let our_hash = ours.hash().map_err(io_error)?;
        let same = info.size == ours.len() && {
            let mut hasher = blake3::Hasher::new();
            let mut at = 0;
            let mut buf = Vec::new();
            while at < info.size {
                let step = COMPARE_STEP.min(info.size - at);
                self.inner.read_range_into(kind, name, at, step, &mut buf)?;
                if buf.len() as u64 != step {
                    // Read short: what is there cannot be told yet.
                    return Err(StorageError::Io {
                        location: format!("{} ({kind} {name})", self.inner.location()),
                        source: io::Error::new(io::ErrorKind::UnexpectedEof, "short read"),
                        retryable: true,
                    });
                }
                hasher.update(&buf);
                at += step;
            }
            hasher.finalize() == our_hash
        };
        Ok(if same {
            Found::Ours
        } else if kind == ObjectKind::Config
            || (named_by_content(kind, name) && our_hash.to_hex().as_str() != name)
        {
            Found::Theirs
        } else {
            Found::Remains
        })
    }

    /// [`Self::found`], tried again like any read.
    fn found_patiently(&self, kind: ObjectKind, name: &str, ours: Content) -> StorageResult<Found> {
        self.retry(|| self.found(kind, name, ours))
    }

    /// Deletes what a failed attempt of ours left under `name`; returns the error the write
    /// goes on with (retryable once the remains are gone).
    fn remove_remains(&self, kind: ObjectKind, name: &str) -> StorageError {
        let location = format!("{} ({kind} {name})", self.inner.location());
        if !self.inner.capabilities().delete {
            return StorageError::Io {
                location,
                source: io::Error::other(
                    "a failed write left the object incomplete, and this storage does not \
                     let it be deleted to write it again",
                ),
                retryable: false,
            };
        }
        let removed = self.retry(|| match self.inner.delete(kind, name) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        });
        match removed {
            Ok(()) => StorageError::Io {
                location,
                source: io::Error::other(
                    "a failed write left the object incomplete; removed to be written again",
                ),
                retryable: true,
            },
            Err(e) => e,
        }
    }

    /// One write, tried again as the module documentation says; `attempt` stores the object
    /// once. A write that fails for good leaves nothing of its attempts behind where it can
    /// tell: an object stored whole by an attempt whose answer was lost makes it a success,
    /// and the remains of a torn one are removed.
    fn write_with(
        &self,
        kind: ObjectKind,
        name: &str,
        ours: Content,
        mut attempt: impl FnMut() -> StorageResult<()>,
    ) -> StorageResult<()> {
        let mut failed = 0;
        loop {
            let error = match attempt() {
                Ok(()) => return Ok(()),
                // Taken before any attempt of ours: someone else's (a pack stored twice holds
                // the same bytes; the caller knows what that means).
                Err(taken @ StorageError::AlreadyExists { .. }) if failed == 0 => {
                    return Err(taken)
                }
                Err(taken @ StorageError::AlreadyExists { .. }) => {
                    match self.found_patiently(kind, name, ours) {
                        Ok(Found::Ours) => return Ok(()),
                        Ok(Found::Theirs) => return Err(taken),
                        Ok(Found::Remains) => self.remove_remains(kind, name),
                        // Gone meanwhile: written again.
                        Err(e) if e.is_not_found() => StorageError::Io {
                            location: format!("{} ({kind} {name})", self.inner.location()),
                            source: io::Error::other("taken, then gone"),
                            retryable: true,
                        },
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            failed += 1;
            if error.is_retryable() && self.again(failed) {
                continue;
            }
            match self.found_patiently(kind, name, ours) {
                Ok(Found::Ours) => return Ok(()),
                Ok(Found::Remains) => {
                    self.remove_remains(kind, name);
                }
                _ => {}
            }
            return Err(self.gave_up(error, failed));
        }
    }
}

impl Storage for RetryingStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn exists(&self) -> StorageResult<bool> {
        self.retry(|| self.inner.exists())
    }

    fn create(&self) -> StorageResult<()> {
        self.retry(|| self.inner.create())
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        self.retry(|| self.inner.list(kind))
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let by_content = named_by_content(kind, name);
        let mut rereads = 0;
        loop {
            let data = self.retry(|| self.inner.read(kind, name))?;
            let whole = if by_content {
                blake3::hash(&data).to_hex().as_str() == name
            } else {
                // Config, locks, prune's holders: no hash to check, but objects are never
                // rewritten, so the stored size tells a short read.
                self.retry(|| self.inner.stat(kind, name))?.size == data.len() as u64
            };
            if whole || rereads >= REREADS {
                return Ok(data);
            }
            rereads += 1;
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.ranged(kind, name, offset, length, &mut buf, |buf| {
            *buf = self.inner.read_range(kind, name, offset, length)?;
            Ok(())
        })?;
        Ok(buf)
    }

    fn read_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.ranged(kind, name, offset, length, buf, |buf| {
            self.inner.read_range_into(kind, name, offset, length, buf)
        })
    }

    fn read_metadata_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.ranged(kind, name, offset, length, buf, |buf| {
            self.inner
                .read_metadata_range_into(kind, name, offset, length, buf)
        })
    }

    fn remember_metadata_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        bytes: &mut dyn FnMut() -> Option<Vec<u8>>,
    ) {
        self.inner
            .remember_metadata_range(kind, name, offset, bytes)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        self.write_with(kind, name, Content::Bytes(data), || {
            self.inner.write(kind, name, data)
        })
    }

    fn stage(&self, kind: ObjectKind) -> StorageResult<StagedObject> {
        self.retry(|| self.inner.stage(kind))
    }

    fn write_staged(
        &self,
        kind: ObjectKind,
        name: &str,
        staged: StagedObject,
    ) -> StorageResult<()> {
        // Each attempt consumes a duplicate; `staged` stays for the next one and for
        // comparing. Where no duplicate can be made (no hard links), one attempt only.
        let mut first = match staged.duplicate() {
            Ok(copy) => Some(copy),
            Err(_) => return self.inner.write_staged(kind, name, staged),
        };
        self.write_with(kind, name, Content::Staged(&staged), || {
            let copy = match first.take() {
                Some(copy) => copy,
                None => staged.duplicate().map_err(|e| StorageError::Io {
                    location: format!("{:?}", staged.path()),
                    source: e,
                    retryable: false,
                })?,
            };
            self.inner.write_staged(kind, name, copy)
        })
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        let mut failed = 0;
        self.retry(|| match self.inner.delete(kind, name) {
            // An attempt that failed may have deleted it.
            Err(e) if e.is_not_found() && failed > 0 => Ok(()),
            Err(e) => {
                failed += 1;
                Err(e)
            }
            ok => ok,
        })
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        self.retry(|| self.inner.stat(kind, name))
    }

    fn remove_stale_temporaries(&self, older_than: Duration) -> StorageResult<u64> {
        self.retry(|| self.inner.remove_stale_temporaries(older_than))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::storage::{FaultInjectingStorage, Faults, LocalStorage};

    /// What the next call of the scripted storage does.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Pass,
        /// Fails (retryable) without reaching storage.
        FailBefore,
        /// Reaches storage, then fails (retryable): the answer was lost.
        FailAfter,
        /// Stores half of a write, or returns half of a read, and fails (retryable).
        Torn,
        /// Returns half of what a read read, as if that were all.
        Short,
        Permanent,
    }

    /// A storage that follows a script, call by call, then passes everything through.
    #[derive(Debug)]
    struct Scripted {
        inner: LocalStorage,
        script: Mutex<VecDeque<Step>>,
        calls: Mutex<u32>,
    }

    impl Scripted {
        fn new(root: &std::path::Path, script: &[Step]) -> Arc<Scripted> {
            let inner = LocalStorage::new(root);
            inner.create().unwrap();
            // Several scripts may run over one directory.
            let _ = inner.write(ObjectKind::Config, "config", b"{}");
            Arc::new(Scripted {
                inner,
                script: Mutex::new(script.iter().copied().collect()),
                calls: Mutex::new(0),
            })
        }

        fn next(&self) -> Step {
            *self.calls.lock().unwrap() += 1;
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Pass)
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }

        fn error(retryable: bool) -> StorageError {
            StorageError::Io {
                location: "scripted".into(),
                source: io::Error::other("scripted failure"),
                retryable,
            }
        }
    }

    impl Storage for Scripted {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        fn exists(&self) -> StorageResult<bool> {
            self.inner.exists()
        }
        fn create(&self) -> StorageResult<()> {
            self.inner.create()
        }
        fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
            match self.next() {
                Step::Pass => self.inner.list(kind),
                Step::Permanent => Err(Self::error(false)),
                _ => Err(Self::error(true)),
            }
        }
        fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
            match self.next() {
                Step::Pass => self.inner.read(kind, name),
                Step::Short | Step::Torn => {
                    let mut data = self.inner.read(kind, name)?;
                    data.truncate(data.len() / 2);
                    Ok(data)
                }
                Step::Permanent => Err(Self::error(false)),
                _ => Err(Self::error(true)),
            }
        }
        fn read_range(
            &self,
            kind: ObjectKind,
            name: &str,
            offset: u64,
            length: u64,
        ) -> StorageResult<Vec<u8>> {
            match self.next() {
                Step::Pass => self.inner.read_range(kind, name, offset, length),
                Step::Short | Step::Torn => {
                    let mut data = self.inner.read_range(kind, name, offset, length)?;
                    data.truncate(data.len() / 2);
                    Ok(data)
                }
                Step::Permanent => Err(Self::error(false)),
                _ => Err(Self::error(true)),
            }
        }
        /// Not scripted: what a write compares with what it finds.
        fn read_range_into(
            &self,
            kind: ObjectKind,
            name: &str,
            offset: u64,
            length: u64,
            buf: &mut Vec<u8>,
        ) -> StorageResult<()> {
            self.inner.read_range_into(kind, name, offset, length, buf)
        }
        fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
            match self.next() {
                Step::Pass | Step::Short => self.inner.write(kind, name, data),
                Step::FailBefore => Err(Self::error(true)),
                Step::FailAfter => {
                    self.inner.write(kind, name, data)?;
                    Err(Self::error(true))
                }
                Step::Torn => {
                    self.inner.write(kind, name, &data[..data.len() / 2])?;
                    Err(Self::error(true))
                }
                Step::Permanent => Err(Self::error(false)),
            }
        }
        fn stage(&self, kind: ObjectKind) -> StorageResult<StagedObject> {
            self.inner.stage(kind)
        }
        fn write_staged(
            &self,
            kind: ObjectKind,
            name: &str,
            staged: StagedObject,
        ) -> StorageResult<()> {
            match self.next() {
                Step::Pass | Step::Short => self.inner.write_staged(kind, name, staged),
                Step::FailBefore => Err(Self::error(true)),
                Step::FailAfter => {
                    self.inner.write_staged(kind, name, staged)?;
                    Err(Self::error(true))
                }
                Step::Torn => {
                    let half = staged
                        .read_at(0, staged.len() as usize / 2)
                        .unwrap()
                        .unwrap();
                    self.inner.write(kind, name, &half)?;
                    Err(Self::error(true))
                }
                Step::Permanent => Err(Self::error(false)),
            }
        }
        fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
            match self.next() {
                Step::Pass | Step::Short => self.inner.delete(kind, name),
                Step::FailAfter | Step::Torn => {
                    self.inner.delete(kind, name)?;
                    Err(Self::error(true))
                }
                Step::Permanent => Err(Self::error(false)),
                Step::FailBefore => Err(Self::error(true)),
            }
        }
        fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
            self.inner.stat(kind, name)
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn hashed(data: &[u8]) -> String {
        blake3::hash(data).to_hex().to_string()
    }

    #[test]
    fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let scripted = Scripted::new(
            dir.path(),
            &[Step::FailBefore, Step::FailBefore, Step::FailBefore],
        );
        let store = RetryingStorage::new(scripted.clone(), quick());
        let data = b"index bytes".to_vec();
        store
            .write(ObjectKind::Index, &hashed(&data), &data)
            .unwrap();
        assert_eq!(scripted.calls(), 4);
        assert_eq!(store.retries(), 3);

        // Four failures in a row: the fourth is the caller's, saying how often it was tried.
        let scripted = Scripted::new(dir.path(), &[Step::FailBefore; 4]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        let err = store.list(ObjectKind::Index).unwrap_err();
        assert!(err.to_string().contains("tried 4 times"), "{err}");
        assert!(err.is_retryable());

        let scripted = Scripted::new(dir.path(), &[Step::Permanent]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        assert!(store.list(ObjectKind::Index).is_err());
        assert_eq!(
            scripted.calls(),
            1,
            "a permanent failure is not tried again"
        );
    }

    #[test]
    fn a_write_whose_answer_was_lost_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let scripted = Scripted::new(dir.path(), &[Step::FailAfter]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        let data = b"snapshot".to_vec();
        let name = hashed(&data);
        store.write(ObjectKind::Snapshot, &name, &data).unwrap();
        assert_eq!(
            scripted.inner.read(ObjectKind::Snapshot, &name).unwrap(),
            data
        );
        // Taken on the first attempt: someone else's, said as it is.
        let err = store.write(ObjectKind::Snapshot, &name, &data).unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
        // The config's name is not ours alone: other bytes there after a failed attempt are
        // another writer's, never deleted.
        let scripted = Scripted::new(dir.path(), &[Step::FailBefore]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        let err = store
            .write(ObjectKind::Config, "config", b"{\"other\": 1}")
            .unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            scripted.inner.read(ObjectKind::Config, "config").unwrap(),
            b"{}"
        );
    }

    #[test]
    fn a_torn_write_is_removed_and_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let scripted = Scripted::new(dir.path(), &[Step::Torn, Step::Torn]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let name = hashed(&data);
        store.write(ObjectKind::Pack, &name, &data).unwrap();
        assert_eq!(scripted.inner.read(ObjectKind::Pack, &name).unwrap(), data);

        // A lock's random name is the writer's own.
        let scripted = Scripted::new(dir.path(), &[Step::Torn]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        store
            .write(ObjectKind::Lock, "0123abcd", b"sealed lock")
            .unwrap();
        assert_eq!(
            scripted.inner.read(ObjectKind::Lock, "0123abcd").unwrap(),
            b"sealed lock"
        );

        // So is the holders name of prune's record (found by the fault runs: a torn holders
        // object was taken for another writer's, and prune then stopped on it every time).
        let holders = format!("{name}-holders");
        let scripted = Scripted::new(dir.path(), &[Step::Torn]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        store
            .write(ObjectKind::Condemned, &holders, b"sealed holders")
            .unwrap();
        assert_eq!(
            scripted
                .inner
                .read(ObjectKind::Condemned, &holders)
                .unwrap(),
            b"sealed holders"
        );
    }

    #[test]
    fn a_write_that_fails_for_good_leaves_no_remains() {
        let dir = tempfile::tempdir().unwrap();
        // Deletes of the remains are scripted too: each takes two steps.
        let scripted = Scripted::new(dir.path(), &[Step::Torn; 10]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        let data = b"a snapshot that never lands".to_vec();
        let name = hashed(&data);
        let err = store.write(ObjectKind::Snapshot, &name, &data).unwrap_err();
        // Never "already exists", which a pack's writer would take for success.
        assert!(!matches!(err, StorageError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("tried 4 times"), "{err}");
        assert!(scripted
            .inner
            .stat(ObjectKind::Snapshot, &name)
            .unwrap_err()
            .is_not_found());

        // A last attempt whose answer was lost, though it stored everything: done.
        let scripted = Scripted::new(
            dir.path(),
            &[
                Step::FailBefore,
                Step::FailBefore,
                Step::FailBefore,
                Step::FailAfter,
            ],
        );
        let store = RetryingStorage::new(scripted.clone(), quick());
        store.write(ObjectKind::Snapshot, &name, &data).unwrap();
        assert_eq!(
            scripted.inner.read(ObjectKind::Snapshot, &name).unwrap(),
            data
        );
    }

    #[test]
    fn staged_writes_survive_failed_attempts_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let scripted = Scripted::new(dir.path(), &[Step::FailBefore, Step::Torn, Step::FailAfter]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_be_bytes()).collect();
        let name = hashed(&data);
        let mut staged = store.stage(ObjectKind::Pack).unwrap();
        staged.write_all(&data).unwrap();
        store.write_staged(ObjectKind::Pack, &name, staged).unwrap();
        assert_eq!(scripted.inner.read(ObjectKind::Pack, &name).unwrap(), data);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    }

    #[test]
    fn short_reads_are_read_again_and_lasting_damage_is_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let scripted = Scripted::new(dir.path(), &[Step::Short, Step::Short]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        let data = b"an index file's sealed bytes".to_vec();
        let name = hashed(&data);
        scripted
            .inner
            .write(ObjectKind::Index, &name, &data)
            .unwrap();
        assert_eq!(store.read(ObjectKind::Index, &name).unwrap(), data);
        assert_eq!(
            store.read_range(ObjectKind::Index, &name, 3, 10).unwrap(),
            &data[3..13]
        );

        let scripted = Scripted::new(dir.path(), &[Step::Short, Step::Short]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        assert_eq!(
            store.read_range(ObjectKind::Index, &name, 3, 10).unwrap(),
            &data[3..13]
        );

        // Bytes that never hash to the name (rewritten in storage) reach the caller, whose
        // checks report them.
        let tampered = b"something else".to_vec();
        scripted
            .inner
            .write(ObjectKind::Snapshot, &name, &tampered)
            .unwrap();
        assert_eq!(store.read(ObjectKind::Snapshot, &name).unwrap(), tampered);
        // A lock's bytes have no hash to check: its size tells.
        scripted
            .inner
            .write(ObjectKind::Lock, "feed", b"lock")
            .unwrap();
        let scripted = Scripted::new(dir.path(), &[Step::Short, Step::Short]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        assert_eq!(store.read(ObjectKind::Lock, "feed").unwrap(), b"lock");
        assert_eq!(scripted.calls(), 3);
    }

    #[test]
    fn a_delete_whose_answer_was_lost_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let scripted = Scripted::new(dir.path(), &[Step::FailAfter]);
        let store = RetryingStorage::new(scripted.clone(), quick());
        scripted
            .inner
            .write(ObjectKind::Lock, "abcd", b"lock")
            .unwrap();
        assert!(store.delete_if_present(ObjectKind::Lock, "abcd").unwrap());
        assert!(store
            .delete(ObjectKind::Lock, "abcd")
            .unwrap_err()
            .is_not_found());
    }

    /// Random faults at a high rate, many attempts: every write lands whole, every read reads
    /// what was written.
    #[test]
    fn random_faults_are_ridden_out() {
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalStorage::new(dir.path()));
        local.create().unwrap();
        local.write(ObjectKind::Config, "config", b"{}").unwrap();
        let faults = Faults {
            fail: 0.15,
            timeout: 0.05,
            truncate: 0.15,
            reorder: 0.1,
            delay: Duration::from_millis(1),
            ..Faults::none()
        };
        let faulty = Arc::new(FaultInjectingStorage::new(local.clone(), faults, 7));
        let store = RetryingStorage::new(
            faulty.clone(),
            RetryPolicy {
                attempts: 12,
                ..quick()
            },
        );
        let mut names = Vec::new();
        for i in 0..60u32 {
            let data: Vec<u8> = (0..(i * 97 + 1)).map(|b| (b * i) as u8).collect();
            let name = hashed(&data);
            if i % 2 == 0 {
                store.write(ObjectKind::Index, &name, &data).unwrap();
            } else {
                let mut staged = store.stage(ObjectKind::Pack).unwrap();
                staged.write_all(&data).unwrap();
                store.write_staged(ObjectKind::Pack, &name, staged).unwrap();
            }
            names.push((i, name, data));
        }
        for (i, name, data) in &names {
            let kind = if i % 2 == 0 {
                ObjectKind::Index
            } else {
                ObjectKind::Pack
            };
            assert_eq!(&local.read(kind, name).unwrap(), data, "stored whole");
            assert_eq!(&store.read(kind, name).unwrap(), data, "read whole");
        }
        let counts = faulty.counts();
        assert!(counts.failed > 10 && counts.truncated > 10, "{counts:?}");
    }
}
