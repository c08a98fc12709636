//! Application sources: streams a backup stores as one file each, from a dump command or a
//! database's own tools. Each is a `Read` whose end is checked, so that a dump that failed is
//! an error of the backup and never a snapshot.

pub mod command;
pub mod config;
pub mod mysql;
pub mod postgres;
pub mod read_ahead;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use command::{CommandSink, CommandStream, DeferredCommand};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{program}`: {message}")]
    Failed { program: String, message: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[cfg(feature = "sqlite")]
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "{}: still locked by a writer after {} s; try again when it is quieter",
        path.display(),
        waited.as_secs()
    )]
    Locked {
        path: PathBuf,
        waited: std::time::Duration,
    },

    #[error("{} is not a SQLite database: {reason}", path.display())]
    NotADatabase { path: PathBuf, reason: String },

    #[error("{} already exists: restore into a new path, or give --overwrite", .0.display())]
    Exists(PathBuf),

    #[error(
        "{} has {} beside it: the database is in use or was not closed cleanly; stop its \
         users (or restore into a new path) first",
        path.display(),
        companion.display()
    )]
    InUse { path: PathBuf, companion: PathBuf },

    #[error(
        "{name} is already archived with different content; refusing to replace it (is another \
         cluster archiving into the same spool, or did the server's history fork?)"
    )]
    WalConflict { name: String },

    #[error("{0:?} is not the name of a file PostgreSQL archives")]
    NotAnArchiveFile(String),

    #[error(
        "the spool {} belongs to the cluster with system identifier {found}, not to this one \
         ({expected}); give each cluster a spool of its own (--spool)",
        dir.display()
    )]
    ForeignSpool {
        dir: PathBuf,
        expected: u64,
        found: u64,
    },

    #[error("{0}")]
    BaseBackup(String),

    #[error("{} is not empty: restore a data directory into a new or empty one", .0.display())]
    NotEmpty(PathBuf),
}
