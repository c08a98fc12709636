//! `lifeboat pg backup`: a base backup, streamed from pg_basebackup into one snapshot.

use anyhow::Result;
use lifeboat_core::ops::backup::{BackupOptions, BackupSource, NamedStream};
use lifeboat_sources::postgres::base_backup::{base_backup_command, start, BASE_FILE, INFO_FILE};
use lifeboat_sources::postgres::psql::next_xid;

use super::catalog::BASE_LABEL;
use crate::args::{Cli, PgBackupArgs};

pub fn backup(cli: &Cli, args: &PgBackupArgs) -> Result<u8> {
    let mut options = BackupOptions::new(BackupSource::Paths(Vec::new()));
    options.tags = args.tags.clone();
    options.hostname = args.host.clone();
    let bin = args.pg_bin.clone();
    crate::commands::backup::run_with_source(cli, options, || {
        let command = base_backup_command(bin.as_deref(), args.spread_checkpoint);
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
