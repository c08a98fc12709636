//! `lifeboat backup --source NAME`: the sources the configuration file names, each run as
//! the command that takes the same settings as arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use lifeboat_sources::config::{Config, SourceDefinition, SourceKind};

use crate::args::{BackupArgs, Cli, MysqlBackupArgs, PgBackupArgs, SqliteBackupArgs};

/// --config, LIFEBOAT_CONFIG, or lifeboat/lifeboat.toml under the config directory.
pub fn config_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(path) = &cli.config {
        return Ok(path.clone());
    }
    let dir = dirs::config_dir()
        .context("cannot find your config directory (set HOME, or give --config FILE)")?;
    Ok(dir.join("lifeboat").join("lifeboat.toml"))
}

pub fn run(cli: &Cli, args: &BackupArgs) -> Result<u8> {
    let path = config_path(cli)?;
    let config = Config::load(&path)?;
    // Every name is checked before anything runs.
    let mut chosen = Vec::new();
    for name in &args.sources {
        let source = config.source(name).with_context(|| {
            let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
            format!(
                "{} names no source {name:?} (it has: {})",
                path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
        chosen.push(source);
    }
    let mut worst = crate::exit::OK;
    let mut failed = Vec::new();
    for source in chosen {
        if !cli.quiet && !cli.json && args.sources.len() > 1 {
            println!("source {}:", source.name);
        }
        let _env = ScopedEnv::set(&source.env);
        match run_source(cli, args, source) {
            Ok(code) => worst = worst.max(code),
            Err(e) => {
                eprintln!("error: source {}: {e:#}", source.name);
                failed.push(source.name.as_str());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{} source(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(worst)
}

/// The source's tags after the command line's, its host unless the command line gives one.
fn tags_and_host(args: &BackupArgs, source: &SourceDefinition) -> (Vec<String>, Option<String>) {
    let mut tags = source.tags.clone();
    tags.extend(args.tags.iter().cloned());
    (tags, args.host.clone().or_else(|| source.host.clone()))
}

fn run_source(cli: &Cli, args: &BackupArgs, source: &SourceDefinition) -> Result<u8> {
    let (tags, host) = tags_and_host(args, source);
    match &source.kind {
        SourceKind::Files {
            paths,
            exclude,
            one_file_system,
        } => {
            let mut files = args.clone();
            files.sources.clear();
            files.paths = paths.clone();
            files.excludes.extend(exclude.iter().cloned());
            files.one_file_system |= *one_file_system;
            files.tags = tags;
            files.host = host;
            super::backup::run(cli, &files)
        }
        SourceKind::Command { name, command } => {
            let mut run = args.clone();
            run.sources.clear();
            run.command = Some(name.clone());
            run.command_line = command.iter().map(OsString::from).collect();
            run.tags = tags;
            run.host = host;
            super::backup::run(cli, &run)
        }
        SourceKind::Sqlite { database, name } => super::sqlite::backup(
            cli,
            &SqliteBackupArgs {
                database: database.clone(),
                name: name.clone(),
                tags,
                host,
                temp_dir: None,
            },
        ),
        SourceKind::Postgres {
            logical,
            databases,
            pg_bin,
            spread_checkpoint,
            wal_method,
        } => super::pg::backup(
            cli,
            &PgBackupArgs {
                logical: *logical,
                databases: databases.clone(),
                spread_checkpoint: *spread_checkpoint,
                wal_method: wal_method.clone().unwrap_or_else(|| "fetch".into()),
                pg_bin: pg_bin.clone(),
                tags,
                host,
            },
        ),
        SourceKind::Mysql {
            databases,
            defaults_extra_file,
            mysql_bin,
        } => super::mysql::backup(
            cli,
            &MysqlBackupArgs {
                databases: databases.clone(),
                defaults_extra_file: defaults_extra_file.clone(),
                mysql_bin: mysql_bin.clone(),
                tags,
                host,
            },
        ),
    }
}

/// The source's variables, set for its run and put back afterwards. Sources run one after
/// the other, and each backup's threads have ended before the next source's variables are
/// set.
struct ScopedEnv {
    previous: Vec<(String, Option<OsString>)>,
}

impl ScopedEnv {
    fn set(vars: &std::collections::BTreeMap<String, String>) -> ScopedEnv {
        let previous = vars
            .iter()
            .map(|(key, value)| {
                let old = std::env::var_os(key);
                std::env::set_var(key, value);
                (key.clone(), old)
            })
            .collect();
        ScopedEnv { previous }
    }
}

impl Drop for ScopedEnv {
    fn drop(&mut self) {
        for (key, old) in &self.previous {
            match old {
                Some(value) => std::env::set_var(key, value),
                None => std::env::remove_var(key),
            }
        }
    }
}
