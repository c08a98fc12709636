//! `lifeboat pg backup --logical`: pg_dump of each database and the globals, streamed; and
//! `pg restore --logical`, one of them into a new database.

use anyhow::{Context, Result};
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_sources::postgres::logical::{create_database, restore_dump};
use lifeboat_sources::postgres::{dump_file, list_databases, logical_streams};

use crate::args::{Cli, PgBackupArgs, PgRestoreArgs};
use crate::commands::{IndexScope, Loaded};

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

/// `pg restore --logical`: a stored `pg_dump -Fc` into a new database, through pg_restore.
pub fn restore(cli: &Cli, args: &PgRestoreArgs) -> Result<u8> {
    let Some(database) = args.database.as_deref() else {
        anyhow::bail!("--logical needs --database NAME: the dumped database to restore");
    };
    let into = args.into.as_deref().unwrap_or(database);
    let file = format!("/{}", dump_file(database));
    let loaded = Loaded::open_scoped(cli, "pg restore", IndexScope::TreesAndFiles)?;
    let filter = lifeboat_core::snapshot::SnapshotFilter {
        hosts: args.hosts.clone(),
        ..Default::default()
    };
    let entry = loaded.resolve(&args.snapshot, &filter)?;
    if entry.snapshot.source != LABEL {
        anyhow::bail!(
            "snapshot {} is a {} backup, not a logical PostgreSQL one",
            entry.short_id(),
            entry.snapshot.source
        );
    }
    if !entry.snapshot.paths.contains(&file) {
        anyhow::bail!(
            "snapshot {} holds no dump of {database:?} (it holds {})",
            entry.short_id(),
            entry.snapshot.paths.join(", ")
        );
    }
    let bin = args.pg_bin.as_deref();
    let created = create_database(bin, into)
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting createdb")?;
    if !created.status.success() {
        anyhow::bail!(
            "creating database {into:?} failed: {} (restore into a new database, or drop it first)",
            String::from_utf8_lossy(&created.stderr).trim()
        );
    }
    let size = super::super::feed_stored_file(&loaded, entry, &file, restore_dump(bin, into))?;
    if !cli.quiet {
        println!(
            "restored {file} of snapshot {} ({size} bytes) into the new database {into:?}",
            entry.short_id()
        );
    }
    Ok(crate::exit::OK)
}
