//! A test double: a storage that misbehaves on purpose, at chosen rates, with a seeded random
//! generator. It wraps any other storage (a local directory, an S3 bucket) and, per call,
//! may
//!
//! - **fail**: an error a retry may cure (a server error, a dropped connection), or one it
//!   cannot (`permanent`); a write or delete fails before it reaches storage or after (the
//!   answer was lost: the object is stored, or gone);
//! - **time out**: wait [`Faults::delay`], then fail with a timeout, before or after the
//!   write or delete took effect;
//! - **truncate**: a read returns fewer bytes than stored; a write stores only a prefix of
//!   the object under its name and fails (a torn write by broken storage);
//! - **reorder**: a listing comes back shuffled; a write is held back for up to
//!   [`Faults::delay`] (writes issued together land in another order), and the objects it
//!   stores are left out of the next one or two listings of their kind through this wrapper
//!   (they become visible to listings later than to reads).
//!
//! Built only for tests (`cfg(test)`, or the `test-doubles` feature that the test crates'
//! dev-dependencies enable): the `lifeboat` program cannot be told to use it.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{
    Capabilities, ObjectInfo, ObjectKind, StagedObject, Storage, StorageError, StorageResult,
};

/// How often each fault happens: shares of the calls it applies to (0.05 = 5%).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Errors that a retry may cure (`is_retryable`).
    pub fail: f64,
    /// Errors that it cannot.
    pub permanent: f64,
    /// A wait of `delay`, then a timeout error (retryable).
    pub timeout: f64,
    /// Reads return a prefix; writes store a prefix and fail.
    pub truncate: f64,
    /// Listings shuffled; writes held back and seen late by listings.
    pub reorder: f64,
    /// How long a timeout waits, and the longest a reordered write is held back.
    pub delay: Duration,
}

impl Faults {
    /// No faults: the wrapper passes everything through.
    pub fn none() -> Faults {
        Faults::default()
    }
}

/// What was injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub calls: u64,
    pub failed: u64,
    pub permanent: u64,
    pub timed_out: u64,
    pub truncated: u64,
    pub reordered: u64,
}

impl FaultCounts {
    pub fn injected(&self) -> u64 {
        self.failed + self.permanent + self.timed_out + self.truncated + self.reordered
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Fail,
    Permanent,
    Timeout,
    Truncate,
    Reorder,
}

/// Which faults a call can suffer.
#[derive(Clone, Copy)]
enum Call {
    /// exists, create, stat, delete: fail or time out.
    Plain,
    List,
    Read,
    Write,
}

pub struct FaultInjectingStorage {
    inner: Arc<dyn Storage>,
    faults: Faults,
    enabled: AtomicBool,
    rng: Mutex<StdRng>,
    counts: Mutex<FaultCounts>,
    /// Objects written through this wrapper that listings of their kind still leave out,
    /// with how many more listings will.
    unlisted: Mutex<Vec<(ObjectKind, String, u32)>>,
}

impl fmt::Debug for FaultInjectingStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjectingStorage")
            .field("inner", &self.inner)
            .field("faults", &self.faults)
            .finish()
    }
}

impl FaultInjectingStorage {
    /// `inner` with `faults`, drawn from a generator seeded with `seed`. Calls from several
    /// threads draw in the order they come, so a multi-threaded operation meets the same
    /// faults at the same rates, but not always on the same objects.
    pub fn new(inner: Arc<dyn Storage>, faults: Faults, seed: u64) -> Self {
        FaultInjectingStorage {
            inner,
            faults,
            enabled: AtomicBool::new(true),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: Mutex::default(),
            unlisted: Mutex::default(),
        }
    }

    /// Turns injection on or off (off: a plain pass-through, late listings included).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
        if !on {
            self.unlisted.lock().expect("unlisted").clear();
        }
    }

    pub fn counts(&self) -> FaultCounts {
        *self.counts.lock().expect("counts")
    }

    fn draw(&self, call: Call) -> Fault {
        let mut counts = self.counts.lock().expect("counts");
        counts.calls += 1;
        if !self.enabled.load(Ordering::SeqCst) {
            return Fault::None;
        }
        let f = &self.faults;
        let candidates: &[(Fault, f64)] = match call {
            Call::Plain => &[
                (Fault::Fail, f.fail),
                (Fault::Permanent, f.permanent),
                (Fault::Timeout, f.timeout),
            ],
            Call::List => &[
                (Fault::Fail, f.fail),
                (Fault::Permanent, f.permanent),
                (Fault::Timeout, f.timeout),
                (Fault::Reorder, f.reorder),
            ],
            Call::Read => &[
                (Fault::Fail, f.fail),
                (Fault::Permanent, f.permanent),
                (Fault::Timeout, f.timeout),
                (Fault::Truncate, f.truncate),
            ],
            Call::Write => &[
                (Fault::Fail, f.fail),
                (Fault::Permanent, f.permanent),
                (Fault::Timeout, f.timeout),
                (Fault::Truncate, f.truncate),
                (Fault::Reorder, f.reorder),
            ],
        };
        let mut roll: f64 = self.rng.lock().expect("rng").gen();
        let mut fault = Fault::None;
        for (candidate, rate) in candidates {
            if roll < *rate {
                fault = *candidate;
                break;
            }
            roll -= rate;
        }
        match fault {
            Fault::None => {}
            Fault::Fail => counts.failed += 1,
            Fault::Permanent => counts.permanent += 1,
            Fault::Timeout => counts.timed_out += 1,
            Fault::Truncate => counts.truncated += 1,
            Fault::Reorder => counts.reordered += 1,
        }
        fault
    }

    fn coin(&self) -> bool {
        self.rng.lock().expect("rng").gen()
    }

    /// A share of `len` in `0..len`, for a truncation.
    fn cut(&self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        self.rng.lock().expect("rng").gen_range(0..len)
    }

    fn error(&self, kind: ObjectKind, name: &str, what: &str, fault: Fault) -> StorageError {
        let (io_kind, text, retryable) = match fault {
            Fault::Permanent => (
                io::ErrorKind::Other,
                "injected fault: permanent failure",
                false,
            ),
            Fault::Timeout => (io::ErrorKind::TimedOut, "injected fault: timed out", true),
            Fault::Truncate => (
                io::ErrorKind::ConnectionReset,
                "injected fault: torn write, connection reset",
                true,
            ),
            _ => (
                io::ErrorKind::ConnectionReset,
                "injected fault: transient failure",
                true,
            ),
        };
        StorageError::Io {
            location: format!("{} ({kind} {name})", self.inner.location()),
            source: io::Error::new(io_kind, format!("{text} ({what})")),
            retryable,
        }
    }

    /// The error of `fault` for a call that changes nothing, after the timeout's wait.
    fn fail_before(&self, kind: ObjectKind, name: &str, what: &str, fault: Fault) -> StorageError {
        if fault == Fault::Timeout {
            std::thread::sleep(self.faults.delay);
        }
        self.error(kind, name, what, fault)
    }

    /// A call that fails or times out; for one that changes storage, half of the time after
    /// the change was made (the answer was lost).
    fn failing<T>(
        &self,
        kind: ObjectKind,
        name: &str,
        what: &str,
        fault: Fault,
        changes: bool,
        call: impl FnOnce() -> StorageResult<T>,
    ) -> StorageResult<T> {
        if changes && self.coin() {
            let _ = call();
        }
        Err(self.fail_before(kind, name, what, fault))
    }

    /// A plain call (no truncation, no reordering).
    fn plain<T>(
        &self,
        kind: ObjectKind,
        name: &str,
        what: &str,
        changes: bool,
        call: impl FnOnce() -> StorageResult<T>,
    ) -> StorageResult<T> {
        match self.draw(Call::Plain) {
            Fault::None => call(),
            fault => self.failing(kind, name, what, fault, changes, call),
        }
    }

    fn read_with(
        &self,
        kind: ObjectKind,
        name: &str,
        what: &str,
        buf: &mut Vec<u8>,
        call: impl FnOnce(&mut Vec<u8>) -> StorageResult<()>,
    ) -> StorageResult<()> {
        match self.draw(Call::Read) {
            Fault::None => call(buf),
            Fault::Truncate => {
                call(buf)?;
                let keep = self.cut(buf.len());
                buf.truncate(keep);
                Ok(())
            }
            fault => Err(self.fail_before(kind, name, what, fault)),
        }
    }

    /// Stores `data` (or the staged object) through `store`, with this call's fault.
    fn write_with(
        &self,
        kind: ObjectKind,
        name: &str,
        what: &str,
        prefix: impl FnOnce(usize) -> Option<Vec<u8>>,
        len: usize,
        store: impl FnOnce() -> StorageResult<()>,
    ) -> StorageResult<()> {
        match self.draw(Call::Write) {
            Fault::None => store(),
            Fault::Truncate => {
                let keep = self.cut(len);
                if let Some(bytes) = prefix(keep) {
                    let _ = self.inner.write(kind, name, &bytes);
                }
                Err(self.error(kind, name, what, Fault::Truncate))
            }
            Fault::Reorder => {
                let wait = self
                    .faults
                    .delay
                    .mul_f64(self.rng.lock().expect("rng").gen());
                std::thread::sleep(wait);
                store()?;
                let listings = self.rng.lock().expect("rng").gen_range(1..=2);
                self.unlisted
                    .lock()
                    .expect("unlisted")
                    .push((kind, name.to_string(), listings));
                Ok(())
            }
            fault => self.failing(kind, name, what, fault, true, store),
        }
    }
}

impl Storage for FaultInjectingStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn exists(&self) -> StorageResult<bool> {
        self.plain(ObjectKind::Config, "config", "exists", false, || {
            self.inner.exists()
        })
    }

    fn create(&self) -> StorageResult<()> {
        self.plain(ObjectKind::Config, "config", "create", false, || {
            self.inner.create()
        })
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        let fault = self.draw(Call::List);
        let mut listed = match fault {
            Fault::None | Fault::Reorder => self.inner.list(kind)?,
            fault => return Err(self.fail_before(kind, "(listing)", "list", fault)),
        };
        {
            let mut unlisted = self.unlisted.lock().expect("unlisted");
            listed.retain(|info| {
                !unlisted
                    .iter()
                    .any(|(k, name, _)| *k == kind && *name == info.name)
            });
            for entry in unlisted.iter_mut().filter(|(k, _, _)| *k == kind) {
                entry.2 -= 1;
            }
            unlisted.retain(|(_, _, left)| *left > 0);
        }
        if fault == Fault::Reorder {
            listed.shuffle(&mut *self.rng.lock().expect("rng"));
        }
        Ok(listed)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_with(kind, name, "read", &mut buf, |buf| {
            *buf = self.inner.read(kind, name)?;
            Ok(())
        })?;
        Ok(buf)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_with(kind, name, "read_range", &mut buf, |buf| {
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
        self.read_with(kind, name, "read_range", buf, |buf| {
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
        self.read_with(kind, name, "read_range", buf, |buf| {
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
        self.write_with(
            kind,
            name,
            "write",
            |keep| Some(data[..keep].to_vec()),
            data.len(),
            || self.inner.write(kind, name, data),
        )
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
        let len = staged.len() as usize;
        // Needed by both closures (the prefix reads it, the store consumes it); only one runs.
        let staged = std::cell::RefCell::new(Some(staged));
        self.write_with(
            kind,
            name,
            "write",
            |keep| {
                let guard = staged.borrow();
                let staged = guard.as_ref()?;
                staged.read_at(0, keep).ok().flatten()
            },
            len,
            || match staged.borrow_mut().take() {
                Some(staged) => self.inner.write_staged(kind, name, staged),
                None => Ok(()),
            },
        )
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        self.plain(kind, name, "delete", true, || self.inner.delete(kind, name))
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        self.plain(kind, name, "stat", false, || self.inner.stat(kind, name))
    }

    fn remove_stale_temporaries(&self, older_than: Duration) -> StorageResult<u64> {
        self.inner.remove_stale_temporaries(older_than)
    }
}
