//! `lifeboat pg backup`: a base backup, streamed from pg_basebackup into one snapshot.

use anyhow::Result;
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_sources::postgres::base_backup::{
    base_backup_command, start, WalMethod, BASE_FILE, INFO_FILE,
};
use lifeboat_sources::postgres::psql::{next_xid, query};

use super::catalog::BASE_LABEL;
use crate::args::{Cli, PgBackupArgs};

pub fn backup(cli: &Cli, args: &PgBackupArgs) -> Result<u8> {
    let wal: WalMethod = args.wal_method.parse().map_err(anyhow::Error::msg)?;
    let mut options = BackupOptions::new(BackupSource::Paths(Vec::new()));
    options.tags = args.tags.clone();
    options.hostname = args.host.clone();
    let bin = args.pg_bin.clone();
    crate::commands::backup::run_with_source(cli, options, || {
        check_archiving(cli, bin.as_deref())?;
        let command = base_backup_command(bin.as_deref(), wal, args.spread_checkpoint);
        let (base, info) = start(command, Box::new(move || next_xid(bin.as_deref())))?;
        Ok(BackupSource::Streams {
            streams: vec![
                NamedStream {
                    filename: BASE_FILE.to_string(),
                    reader: Box::new(base),
                },
                NamedStream {
                    filename: INFO_FILE.to_string(),
                    reader: Box::new(info),
                },
            ],
            label: BASE_LABEL.to_string(),
        })
    })
}

/// A base backup without archived WAL cannot be restored, and pg_basebackup only warns about
/// that: refuse it. A server that cannot be asked (a replication-only user) gets a warning.
fn check_archiving(cli: &Cli, bin: Option<&std::path::Path>) -> Result<()> {
    let asked = query(
        bin,
        "SELECT current_setting('archive_mode') || '|' || current_setting('archive_command')",
    );
    let settings = match asked {
        Ok(settings) => settings,
        Err(e) => {
            if !cli.quiet {
                eprintln!(
                    "warning: could not ask the server whether it archives its WAL ({e}); the \
                     backup is restorable only if it does"
                );
            }
            return Ok(());
        }
    };
    let (mode, command) = settings.split_once('|').unwrap_or((settings.as_str(), ""));
    if mode == "off" {
        anyhow::bail!(
            "the server does not archive its WAL (archive_mode = off): a base backup without \
             it cannot be restored. Set archive_mode = on and archive_command = 'lifeboat pg \
             wal-push %p', restart, then back up (docs/recovery.md)"
        );
    }
    if !command.contains("wal-push") && !cli.quiet {
        eprintln!(
            "warning: archive_command is {command:?}, not lifeboat's `pg wal-push`: `pg restore` \
             finds only the WAL lifeboat archived"
        );
    }
    Ok(())
}
