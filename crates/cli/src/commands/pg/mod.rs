//! `lifeboat pg backup|wal-push|wal-fetch|restore|status`.

mod base;
mod catalog;
mod expire;
mod logical;
mod restore;
mod status;
mod wal;

use std::path::PathBuf;

use anyhow::{Context, Result};
use lifeboat_sources::postgres::control::system_identifier;

use crate::args::{Cli, PgCommand, PgSpoolArgs};

pub fn run(cli: &Cli, command: &PgCommand) -> Result<u8> {
    match command {
        PgCommand::Backup(a) => backup(cli, a),
        PgCommand::WalPush(a) => wal::push(cli, a),
        PgCommand::WalFetch(a) => wal::fetch(cli, a),
        PgCommand::Restore(a) if a.logical => logical::restore(cli, a),
        PgCommand::Restore(a) => restore::run(cli, a),
        PgCommand::Status(a) => status::run(cli, a),
        PgCommand::Expire(a) => expire::run(cli, a),
    }
}

/// A base backup, or with --logical, dumps.
pub fn backup(cli: &Cli, args: &crate::args::PgBackupArgs) -> Result<u8> {
    if args.logical {
        logical::backup(cli, args)
    } else {
        base::backup(cli, args)
    }
}

/// The data directory: --pgdata or PGDATA, else the current directory (where the server
/// runs archive_command and restore_command).
fn data_dir(given: Option<&PathBuf>) -> PathBuf {
    given.cloned().unwrap_or_else(|| PathBuf::from("."))
}

/// The cluster's system identifier, from its control file; without --pgdata or PGDATA, from
/// the current directory (the server runs archive_command there), else from the server
/// itself through psql (PG* variables), for commands run by hand elsewhere.
fn cluster_id(given: Option<&PathBuf>) -> Result<u64> {
    let dir = data_dir(given);
    let read = system_identifier(&dir);
    if read.is_err() && given.is_none() {
        let asked = lifeboat_sources::postgres::psql::query(
            None,
            "SELECT system_identifier FROM pg_control_system()",
        );
        if let Some(id) = asked.ok().and_then(|text| text.parse().ok()) {
            return Ok(id);
        }
    }
    read.with_context(|| {
        format!(
            "reading the cluster's system identifier in {} (give the data directory with \
             --pgdata or PGDATA, or set PGHOST/PGPORT so that psql can ask the server)",
            if given.is_none() {
                "the current directory".to_string()
            } else {
                dir.display().to_string()
            }
        )
    })
}

/// --spool, or lifeboat/pg-spool/SYSTEM-ID under the cache directory.
fn spool_dir(args: &PgSpoolArgs, system_id: u64) -> Result<PathBuf> {
    if let Some(dir) = &args.spool {
        return Ok(dir.clone());
    }
    let cache = dirs::cache_dir()
        .context("cannot find a cache directory for the WAL spool: set HOME or give --spool")?;
    Ok(cache
        .join("lifeboat")
        .join("pg-spool")
        .join(system_id.to_string()))
}
