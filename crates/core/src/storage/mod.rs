//! The storage interface: a plain store of typed, named, write-once objects.
//!
//! Backends know nothing of encryption, packs or snapshots; everything they hold is already
//! sealed. Errors say whether a retry could help, so wrappers and alerts can tell a transient
//! failure from a permanent one.

mod cache;
mod dry_run;
#[cfg(any(test, feature = "test-doubles"))]
mod fault_injecting;
mod local;
mod retrying;
mod staged;

use std::fmt;

pub use cache::CachedStorage;
pub use dry_run::DryRunStorage;
#[cfg(any(test, feature = "test-doubles"))]
pub use fault_injecting::{FaultCounts, FaultInjectingStorage, Faults};
pub use local::LocalStorage;
pub use retrying::{RetryPolicy, RetryingStorage};
pub use staged::StagedObject;

/// The kinds of object a repository holds; each lives in its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    /// Packs a prune has taken out of the index and will delete once no backup that could
    /// still rely on them is running (docs/format.md, "Prune").
    Condemned,
    /// Records of snapshots that `forget` removed, so `check` can tell a removal it made
    /// from one made behind its back (docs/format.md, "Snapshot chain").
    Forgotten,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Lock => "lock",
            ObjectKind::Condemned => "condemned",
            ObjectKind::Forgotten => "forgotten",
        }
    }
}

impl std::str::FromStr for ObjectKind {
    type Err = String;

    /// The inverse of [`ObjectKind::as_str`] (the REST protocol names kinds this way).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [ObjectKind; 8] = [
            ObjectKind::Config,
            ObjectKind::Key,
            ObjectKind::Pack,
            ObjectKind::Index,
            ObjectKind::Snapshot,
            ObjectKind::Lock,
            ObjectKind::Condemned,
            ObjectKind::Forgotten,
        ];
        ALL.into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("no object kind {s:?}"))
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

/// What a backend can promise; callers adapt instead of assuming.
#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// `write` never replaces an existing object and never exposes a partial one.
    pub atomic_write_once: bool,
    /// `delete` is allowed (false for append-only stores).
    pub delete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{kind} object {name} not found in {location}")]
    NotFound {
        location: String,
        kind: ObjectKind,
        name: String,
    },

    #[error("{kind} object {name} already exists in {location}")]
    AlreadyExists {
        location: String,
        kind: ObjectKind,
        name: String,
    },

    #[error("invalid {kind} object name {name:?}")]
    InvalidName { kind: ObjectKind, name: String },

    #[error("storage error at {location}: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
        retryable: bool,
    },
}

impl StorageError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Io {
                retryable: true,
                ..
            }
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

pub type StorageResult<T> = std::result::Result<T, StorageError>;

pub trait Storage: Send + Sync + fmt::Debug {
    /// Where the objects live, for messages.
    fn location(&self) -> String;
    fn capabilities(&self) -> Capabilities;
    /// Whether a repository (its config object) exists here.
    fn exists(&self) -> StorageResult<bool>;
    /// Prepares an empty store (directories, bucket prefix).
    fn create(&self) -> StorageResult<()>;
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>>;
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>>;
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>>;
    /// [`Storage::read_range`] into a buffer the caller reuses (its contents are replaced).
    fn read_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        *buf = self.read_range(kind, name, offset, length)?;
        Ok(())
    }
    /// [`Storage::read_range_into`] of a range that holds metadata (tree blobs), which a
    /// caching wrapper keeps; everything else reads it like any other range.
    fn read_metadata_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.read_range_into(kind, name, offset, length, buf)
    }
    /// Offers a metadata range of an object being written (a tree frame of a new pack), so a
    /// caching wrapper keeps it without reading it back: the next backup reads its parent's
    /// trees. `bytes` gives the sealed bytes, and only a cache calls it.
    fn remember_metadata_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        bytes: &mut dyn FnMut() -> Option<Vec<u8>>,
    ) {
        let _ = (kind, name, offset, bytes);
    }
    /// Stores an object atomically; fails with `AlreadyExists` if the name is taken.
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()>;
    /// A temporary object to write piecewise and then store with [`Storage::write_staged`].
    /// The default stages in the system's temporary directory.
    fn stage(&self, kind: ObjectKind) -> StorageResult<StagedObject> {
        let dir = std::env::temp_dir();
        StagedObject::in_dir(&dir).map_err(|source| StorageError::Io {
            location: format!("{} (staging a {kind} object)", dir.display()),
            source,
            retryable: false,
        })
    }
    /// Stores a staged object under `name`, with the guarantees of [`Storage::write`].
    fn write_staged(
        &self,
        kind: ObjectKind,
        name: &str,
        mut staged: StagedObject,
    ) -> StorageResult<()> {
        let data = staged.read_all().map_err(|source| StorageError::Io {
            location: format!("{:?}", staged.path()),
            source,
            retryable: false,
        })?;
        self.write(kind, name, &data)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()>;
    /// Deletes an object that another process may have deleted first: either way it is gone.
    /// Returns whether this call removed it.
    fn delete_if_present(&self, kind: ObjectKind, name: &str) -> StorageResult<bool> {
        match self.delete(kind, name) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo>;
    /// Removes temporary files that writers killed mid-write left behind, once older than
    /// `older_than` (no live writer keeps one that long); returns how many. Stores that keep
    /// no temporaries of their own have nothing to do.
    fn remove_stale_temporaries(&self, older_than: std::time::Duration) -> StorageResult<u64> {
        let _ = older_than;
        Ok(0)
    }
}

/// Names are generated by lifeboat (hex ids); anything else is refused so that a name can
/// never climb out of its namespace.
pub fn validate_name(kind: ObjectKind, name: &str) -> StorageResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        // The one config object lives at the root: no other name may be stored beside it.
        && (kind != ObjectKind::Config || name == "config");
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName {
            kind,
            name: name.to_string(),
        })
    }
}
