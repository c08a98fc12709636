//! `lifeboat sqlite backup|restore`.

use anyhow::{Context, Result};
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_core::ops::dump::dump as dump_path;
use lifeboat_sources::sqlite::{copy_database, SqliteRestore};

use super::{IndexScope, Loaded};
use crate::args::{Cli, SqliteBackupArgs, SqliteCommand, SqliteRestoreArgs};

/// The source label of `sqlite backup` snapshots.
const LABEL: &str = "sqlite";

pub fn run(cli: &Cli, command: &SqliteCommand) -> Result<u8> {
    match command {
        SqliteCommand::Backup(a) => backup(cli, a),
        SqliteCommand::Restore(a) => restore(cli, a),
    }
}

pub(super) fn backup(cli: &Cli, args: &SqliteBackupArgs) -> Result<u8> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .database
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} names no file", args.database.display()))?,
    };
    if !lifeboat_core::tree::is_safe_name(name.as_bytes()) {
        anyhow::bail!("--name {name:?} must be a plain file name");
    }
    let mut options = BackupOptions::new(BackupSource::Paths(Vec::new()));
    options.tags = args.tags.clone();
    options.hostname = args.host.clone();
    super::backup::run_with_source(cli, options, || {
        let copy = copy_database(&args.database, args.temp_dir.as_deref())?;
        Ok(BackupSource::Streams {
            streams: vec![NamedStream {
                filename: name,
                reader: Box::new(copy),
            }],
            label: LABEL.to_string(),
        })
    })
}

fn restore(cli: &Cli, args: &SqliteRestoreArgs) -> Result<u8> {
    let loaded = Loaded::open_scoped(cli, "sqlite restore", IndexScope::TreesAndFiles)?;
    let entry = loaded.resolve(&args.snapshot, &super::filter(&args.filter))?;
    if entry.snapshot.source != LABEL {
        anyhow::bail!(
            "snapshot {} is a {} backup, not a sqlite one",
            entry.short_id(),
            entry.snapshot.source
        );
    }
    let path = match &args.name {
        Some(name) => format!("/{name}"),
        None => match entry.snapshot.paths.as_slice() {
            [only] => only.clone(),
            _ => anyhow::bail!(
                "snapshot {} holds several files: give --name",
                entry.short_id()
            ),
        },
    };
    let located = loaded.locate(entry, &path)?;
    let index = loaded.index_for(&located)?;
    let mut target = SqliteRestore::create(&args.to, args.overwrite)?;
    dump_path(&loaded.repo, &index, &located, target.writer())
        .with_context(|| format!("restoring {path} of snapshot {}", entry.short_id()))?;
    let size = target.finish()?;
    if !cli.quiet {
        println!(
            "restored {path} of snapshot {} to {} ({size} bytes, integrity check ok)",
            entry.short_id(),
            args.to.display()
        );
    }
    Ok(crate::exit::OK)
}
