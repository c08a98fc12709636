//! `lifeboat mysql backup|restore`.

use anyhow::Result;
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_sources::mysql::{
    dump_stream, restore_client, user_databases, valid_database_name, DUMP_FILE,
};

use super::{IndexScope, Loaded};
use crate::args::{Cli, MysqlBackupArgs, MysqlCommand, MysqlRestoreArgs};

/// The source label of MariaDB/MySQL backups.
const LABEL: &str = "mysql";

pub fn run(cli: &Cli, command: &MysqlCommand) -> Result<u8> {
    match command {
        MysqlCommand::Backup(a) => backup(cli, a),
        MysqlCommand::Restore(a) => restore(cli, a),
    }
}

fn check_defaults_file(file: Option<&std::path::Path>) -> Result<()> {
    if let Some(file) = file {
        if !file.is_file() {
            anyhow::bail!("--defaults-extra-file {}: no such file", file.display());
        }
    }
    Ok(())
}

pub(super) fn backup(cli: &Cli, args: &MysqlBackupArgs) -> Result<u8> {
    if let Some(bad) = args.databases.iter().find(|d| !valid_database_name(d)) {
        anyhow::bail!("--database {bad:?}: not a database name");
    }
    check_defaults_file(args.defaults_extra_file.as_deref())?;
    let mut options = BackupOptions::new(BackupSource::Paths(Vec::new()));
    options.tags = args.tags.clone();
    options.hostname = args.host.clone();
    super::backup::run_with_source(cli, options, || {
        let stream = dump_stream(
            args.mysql_bin.as_deref(),
            args.defaults_extra_file.as_deref(),
            &args.databases,
        );
        Ok(BackupSource::Streams {
            streams: vec![NamedStream {
                filename: DUMP_FILE.to_string(),
                reader: Box::new(stream),
            }],
            label: LABEL.to_string(),
        })
    })
}

fn restore(cli: &Cli, args: &MysqlRestoreArgs) -> Result<u8> {
    check_defaults_file(args.defaults_extra_file.as_deref())?;
    let loaded = Loaded::open_scoped(cli, "mysql restore", IndexScope::TreesAndFiles)?;
    let entry = loaded.resolve(&args.snapshot, &super::filter(&args.filter))?;
    if entry.snapshot.source != LABEL {
        anyhow::bail!(
            "snapshot {} is a {} backup, not a mysql one",
            entry.short_id(),
            entry.snapshot.source
        );
    }
    let bin = args.mysql_bin.as_deref();
    let defaults = args.defaults_extra_file.as_deref();
    let existing = user_databases(bin, defaults)?;
    if !existing.is_empty() && !args.force {
        anyhow::bail!(
            "the server already holds {} ({}): restore into an empty server, or give --force to \
             let the dump replace the tables it names",
            if existing.len() == 1 {
                "a database"
            } else {
                "databases"
            },
            existing.join(", ")
        );
    }
    let size = super::feed_stored_file(
        &loaded,
        entry,
        &format!("/{DUMP_FILE}"),
        restore_client(bin, defaults),
    )?;
    if !cli.quiet {
        println!(
            "restored /{DUMP_FILE} of snapshot {} ({size} bytes) into the server",
            entry.short_id()
        );
    }
    Ok(crate::exit::OK)
}
