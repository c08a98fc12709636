//! PostgreSQL: logical dumps ([`logical`]), and base backups with continuous WAL archiving for
//! point-in-time recovery ([`base_backup`], [`spool`], [`recovery`]). Connection settings are
//! PostgreSQL's own (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSFILE`, ...), passed on to its
//! programs, never put on their command lines.

pub mod base_backup;
pub mod control;
pub mod expire;
pub mod logical;
pub mod psql;
pub mod recovery;
pub mod spool;
pub mod wal;

pub use logical::{dump_file, list_databases, logical_streams, GLOBALS_FILE};

use std::path::{Path, PathBuf};
use std::process::Command;

/// `name` from `bin`, or found on PATH.
pub(crate) fn program(bin: Option<&Path>, name: &str) -> Command {
    let path = match bin {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    };
    Command::new(path)
}
