//! `lifeboat mysql backup`.

use anyhow::Result;
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_sources::mysql::{dump_stream, valid_database_name, DUMP_FILE};

use crate::args::{Cli, MysqlBackupArgs, MysqlCommand};

/// The source label of MariaDB/MySQL backups.
const LABEL: &str = "mysql";

pub fn run(cli: &Cli, command: &MysqlCommand) -> Result<u8> {
    match command {
        MysqlCommand::Backup(a) => backup(cli, a),
    }
}

fn backup(cli: &Cli, args: &MysqlBackupArgs) -> Result<u8> {
    if let Some(bad) = args.databases.iter().find(|d| !valid_database_name(d)) {
        anyhow::bail!("--database {bad:?}: not a database name");
    }
    if let Some(file) = &args.defaults_extra_file {
        if !file.is_file() {
            anyhow::bail!("--defaults-extra-file {}: no such file", file.display());
        }
    }
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
