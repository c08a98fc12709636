//! `lifeboat pg backup --logical`.

use anyhow::Result;
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_sources::postgres::{dump_file, list_databases, logical_streams};

use crate::args::{Cli, PgBackupArgs, PgCommand};

/// The source label of PostgreSQL logical backups.
const LABEL: &str = "postgres";

pub fn run(cli: &Cli, command: &PgCommand) -> Result<u8> {
    match command {
        PgCommand::Backup(a) => backup(cli, a),
    }
}

fn backup(cli: &Cli, args: &PgBackupArgs) -> Result<u8> {
    if !args.logical {
        anyhow::bail!(
            "only logical backups (--logical: pg_dump per database) exist so far; base backups \
             with WAL archiving are being built"
        );
    }
    for name in &args.databases {
        if !lifeboat_core::tree::is_safe_name(dump_file(name).as_bytes()) {
            anyhow::bail!("database {name:?}: its name cannot be a file name in a snapshot");
        }
    }
    let mut options = BackupOptions::new(BackupSource::Paths(Vec::new()));
    options.tags = args.tags.clone();
    options.hostname = args.host.clone();
    let bin = args.pg_bin.as_deref();
    super::backup::run_with_source(cli, options, || {
        let databases = if args.databases.is_empty() {
            list_databases(bin)?
        } else {
            args.databases.clone()
        };
        if let Some(bad) = databases
            .iter()
            .find(|d| !lifeboat_core::tree::is_safe_name(dump_file(d).as_bytes()))
        {
            anyhow::bail!("database {bad:?}: its name cannot be a file name in a snapshot; name the others with --database");
        }
        let streams = logical_streams(bin, &databases)
            .into_iter()
            .map(|(filename, reader)| NamedStream {
                filename,
                reader: Box::new(reader),
            })
            .collect();
        Ok(BackupSource::Streams {
            streams,
            label: LABEL.to_string(),
        })
    })
}
