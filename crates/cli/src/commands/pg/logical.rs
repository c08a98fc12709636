//! `lifeboat pg backup --logical`: pg_dump of each database and the globals, streamed.

use anyhow::Result;
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_sources::postgres::{dump_file, list_databases, logical_streams};

use crate::args::{Cli, PgBackupArgs};

/// The source label of PostgreSQL logical backups.
const LABEL: &str = "postgres";

pub fn backup(cli: &Cli, args: &PgBackupArgs) -> Result<u8> {
    for name in &args.databases {
        if !lifeboat_core::tree::is_safe_name(dump_file(name).as_bytes()) {
            anyhow::bail!("database {name:?}: its name cannot be a file name in a snapshot");
        }
    }
    let mut options = BackupOptions::new(BackupSource::Paths(Vec::new()));
    options.tags = args.tags.clone();
    options.hostname = args.host.clone();
    let bin = args.pg_bin.as_deref();
    crate::commands::backup::run_with_source(cli, options, || {
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
