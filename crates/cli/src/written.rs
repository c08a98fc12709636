//! Where this client remembers the newest snapshots it wrote of each source
//! (`lifeboat_core::snapshot::written`): `$XDG_STATE_HOME/lifeboat/<repository id>/
//! written-snapshots.json` (`~/.local/state/...`), or `LIFEBOAT_STATE_DIR/<repository id>/...`.
//! Backups add to it; `check` reports a remembered snapshot that storage lost. Failing to
//! read or write it is a warning, never a failed backup or check.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lifeboat_core::ops::check::CheckReport;
use lifeboat_core::snapshot::written::{WrittenLog, WrittenSnapshot};
use lifeboat_core::snapshot::{is_archive_source, SnapshotEntry};
use lifeboat_core::Repository;

use crate::args::Cli;

const FILE: &str = "written-snapshots.json";

fn log_path(repo: &Repository) -> Result<PathBuf> {
    let id = &repo.config().id;
    // The id comes from the repository: a hostile one must not name a path outside the dir.
    anyhow::ensure!(
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "the repository id {id:?} cannot name a directory"
    );
    let root = match std::env::var_os("LIFEBOAT_STATE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .context("cannot find your state directory (set HOME or LIFEBOAT_STATE_DIR)")?
            .join("lifeboat"),
    };
    Ok(root.join(id).join(FILE))
}

/// Adds a snapshot this run wrote. Continuous archives (WAL batches) have no chain and are
/// not remembered.
pub fn remember(cli: &Cli, repo: &Repository, entry: &SnapshotEntry) {
    if is_archive_source(&entry.snapshot.source) {
        return;
    }
    let saved = log_path(repo).and_then(|path| {
        let mut log = WrittenLog::load(&path, &repo.config().id)
            .ok()
            .flatten()
            .unwrap_or_else(|| WrittenLog::new(&repo.config().id));
        log.record(WrittenSnapshot::of(entry));
        log.save(&path)
            .with_context(|| format!("recording snapshot {}", entry.id))
    });
    if let Err(e) = saved {
        if !cli.quiet {
            eprintln!(
                "warning: {e:#}; check cannot tell if storage loses this snapshot together \
                 with the ones after it"
            );
        }
    }
}

/// What `check` compares storage with; `None` when nothing was recorded or it is unreadable.
pub fn load(cli: &Cli, repo: &Repository) -> Option<WrittenLog> {
    let loaded = log_path(repo).and_then(|path| {
        WrittenLog::load(&path, &repo.config().id)
            .with_context(|| format!("reading {}", path.display()))
    });
    match loaded {
        Ok(log) => log,
        Err(e) => {
            if !cli.quiet {
                eprintln!(
                    "warning: {e:#}; the snapshots this client wrote are not compared with \
                     storage (the next backup writes the record again)"
                );
            }
            None
        }
    }
}

/// When `check` found remembered snapshots missing: says how to accept a rollback the
/// operator made on purpose (an older copy of the repository put back).
pub fn explain_missing(repo: &Repository, log: &WrittenLog, report: &CheckReport) {
    let missing = log.recent.iter().any(|w| {
        let object = format!("snapshot {}", w.id);
        report
            .findings
            .iter()
            .any(|f| f.error && f.object == object)
    });
    if let (true, Ok(path)) = (missing, log_path(repo)) {
        eprintln!(
            "If you put back an older copy of the repository yourself, remove {} to accept \
             it as it is now.",
            path.display()
        );
    }
}
