//! The engine's error type. Each variant carries the object or path it concerns, so a message
//! printed at the edge tells the operator what happened and where.

use std::path::PathBuf;

use crate::storage::StorageError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no repository at {location}: {reason}")]
    NoRepository { location: String, reason: String },

    #[error("a repository already exists at {location}")]
    RepositoryExists { location: String },

    #[error("wrong password or no matching key for the repository at {location}{detail}")]
    WrongPassword { location: String, detail: String },

    #[error("repository is locked: {holder}")]
    Locked { holder: String },

    /// This process's own lock expired or vanished: what it was doing is no longer protected
    /// from a concurrent prune, so it stops before writing anything that would rely on it.
    #[error("lost the repository lock: {0}")]
    LockLost(String),

    #[error(transparent)]
    Storage(#[from] StorageError),

    /// Data that failed authentication, decompression or its id check.
    #[error("integrity error in {object}: {reason}")]
    Integrity { object: String, reason: String },

    /// Data that authenticated but does not parse, or that breaks a format rule.
    #[error("format error in {object}: {reason}")]
    Format { object: String, reason: String },

    #[error(
        "unsupported repository format version {found} (this lifeboat reads up to {supported})"
    )]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),

    #[error("snapshot id prefix {0} is ambiguous")]
    AmbiguousSnapshot(String),

    #[error("path {path} not found in snapshot {snapshot}")]
    PathNotFound { snapshot: String, path: String },

    #[error("blob {0} is not in the index")]
    BlobNotIndexed(String),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("refusing unsafe name {name:?} in {context}")]
    UnsafeName { name: String, context: String },

    #[error(
        "{operation} deletes objects, and {location} does not let this user delete (an \
         append-only server): run it with an admin user of the server, or on the server itself"
    )]
    DeleteRefused { operation: String, location: String },

    /// A streamed source (stdin, a dump command) that could not be read to its end.
    #[error("{name}: {message}; no snapshot was written")]
    StreamFailed { name: String, message: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn format(object: impl Into<String>, reason: impl ToString) -> Self {
        Error::Format {
            object: object.into(),
            reason: reason.to_string(),
        }
    }

    pub fn integrity(object: impl Into<String>, reason: impl ToString) -> Self {
        Error::Integrity {
            object: object.into(),
            reason: reason.to_string(),
        }
    }
}
