//! One module per command; each turns its arguments into library options and prints results.

mod backup;
mod browse;
mod check;
mod forget;
mod init;
mod key;
mod prune;
mod repair;
mod restore;
mod snapshots;
mod stats;
mod unlock;

use anyhow::Result;
use lifeboat_core::index::Index;
use lifeboat_core::snapshot::{SnapshotEntry, SnapshotFilter, SnapshotSpec};
use lifeboat_core::Repository;

use crate::args::{Cli, Command, FilterArgs};

pub fn run(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => init::run(cli, a),
        Command::Backup(a) => backup::run(cli, a),
        Command::Snapshots(a) => snapshots::run(cli, a),
        Command::Ls(a) => browse::ls(cli, a),
        Command::Find(a) => browse::find(cli, a),
        Command::Dump(a) => browse::dump(cli, a),
        Command::Diff(a) => browse::diff(cli, a),
        Command::Restore(a) => restore::run(cli, a),
        Command::Forget(a) => forget::run(cli, a),
        Command::Prune(a) => prune::run(cli, a),
        Command::Check(a) => check::run(cli, a),
        Command::Stats(a) => stats::run(cli, a),
        Command::Unlock(a) => unlock::run(cli, a),
        Command::Key(k) => key::run(cli, k),
        Command::Repair(r) => repair::run(cli, r),
    }
}

pub fn filter(args: &FilterArgs) -> SnapshotFilter {
    SnapshotFilter {
        hosts: args.hosts.clone(),
        tags: args.tags.clone(),
        paths: args.paths.clone(),
    }
}

/// A repository with its index and snapshots loaded, for the commands that read.
pub struct Loaded {
    pub repo: Repository,
    pub index: Index,
    pub snapshots: Vec<SnapshotEntry>,
}

impl Loaded {
    pub fn open(cli: &Cli) -> Result<Loaded> {
        let repo = crate::open::open(cli)?;
        let index = repo.load_index()?;
        let snapshots = repo.snapshots()?;
        Ok(Loaded {
            repo,
            index,
            snapshots,
        })
    }

    pub fn resolve(&self, spec: &str, filter: &SnapshotFilter) -> Result<&SnapshotEntry> {
        let spec: SnapshotSpec = spec.parse()?;
        Ok(spec.resolve(&self.snapshots, filter)?)
    }
}

/// Splits `SNAPSHOT:PATH`; `@TIME` values contain colons, so the path starts at the first
/// `:/` or, failing that, at a colon after the snapshot part.
pub fn split_snapshot_path(arg: &str) -> (&str, Option<&str>) {
    if let Some(i) = arg.find(":/") {
        return (&arg[..i], Some(&arg[i + 1..]));
    }
    if !arg.starts_with('@') {
        if let Some(i) = arg.find(':') {
            return (&arg[..i], Some(&arg[i + 1..]));
        }
    }
    (arg, None)
}

#[cfg(test)]
mod tests {
    use super::split_snapshot_path;

    #[test]
    fn splits_snapshot_and_subpath() {
        assert_eq!(split_snapshot_path("latest"), ("latest", None));
        assert_eq!(split_snapshot_path("latest:/a/b"), ("latest", Some("/a/b")));
        assert_eq!(split_snapshot_path("abcd:a"), ("abcd", Some("a")));
        assert_eq!(
            split_snapshot_path("@2026-01-01T10:00:00Z"),
            ("@2026-01-01T10:00:00Z", None)
        );
        assert_eq!(
            split_snapshot_path("@2026-01-01T10:00:00Z:/etc"),
            ("@2026-01-01T10:00:00Z", Some("/etc"))
        );
    }
}
