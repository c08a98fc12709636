//! One module per command; each turns its arguments into library options and prints results.

mod backup;
mod browse;
mod check;
mod copy;
mod forget;
mod init;
mod key;
mod mysql;
mod named;
mod pg;
mod prune;
mod repair;
mod replicate;
mod restore;
mod serve_repo;
mod snapshots;
mod sqlite;
mod stats;
mod unlock;

use anyhow::{Context, Result};
use lifeboat_core::blob::BlobKind;
use lifeboat_core::index::Index;
use lifeboat_core::lock::{LockGuard, LockKind};
use lifeboat_core::ops::walk::Located;
use lifeboat_core::repository::UnreadableSnapshot;
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
        Command::Copy(a) => copy::run(cli, a),
        Command::Check(a) => check::run(cli, a),
        Command::Stats(a) => stats::run(cli, a),
        Command::Unlock(a) => unlock::run(cli, a),
        Command::Key(k) => key::run(cli, k),
        Command::Repair(r) => repair::run(cli, r),
        Command::Replicate(r) => replicate::run(cli, r),
        Command::ServeRepo(a) => serve_repo::run(cli, a),
        Command::Sqlite(c) => sqlite::run(cli, c),
        Command::Pg(c) => pg::run(cli, c),
        Command::Mysql(c) => mysql::run(cli, c),
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
    /// The readable snapshots (each unreadable one was reported when loading).
    pub snapshots: Vec<SnapshotEntry>,
    pub unreadable: Vec<UnreadableSnapshot>,
    /// Whether `index` holds every blob, not the trees alone.
    index_is_whole: bool,
    /// A shared lock, taken before the index is read: a prune then keeps every pack this
    /// index names until the command is done (docs/format.md, "Prune").
    _lock: Option<LockGuard>,
}

/// How much of the index a reading command needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IndexScope {
    /// Every blob: restore, stats.
    All,
    /// Tree blobs only: ls, find, diff.
    Trees,
    /// What dump and the database restores need: the trees, and the blobs of the files they
    /// write ([`Loaded::index_for`]). An index of at most [`WHOLE_INDEX_BYTES`] is loaded whole,
    /// in one pass; a larger one holds the trees, and the files' blobs take a second pass.
    TreesAndFiles,
}

/// The index [`Loaded::index_for`] gives: the loaded one, or one read for the purpose.
pub enum ReadIndex<'a> {
    Loaded(&'a Index),
    Read(Index),
}

impl std::ops::Deref for ReadIndex<'_> {
    type Target = Index;
    fn deref(&self) -> &Index {
        match self {
            ReadIndex::Loaded(index) => index,
            ReadIndex::Read(index) => index,
        }
    }
}

/// Below this stored size (about 200,000 blobs, 12 MiB in memory) a one-file read loads the
/// index whole: a second pass over the index files to pick the file's blobs costs more (a
/// third of a small `dump`) than holding the rest.
const WHOLE_INDEX_BYTES: u64 = 8 << 20;

impl Loaded {
    pub fn open(cli: &Cli, operation: &str) -> Result<Loaded> {
        Self::open_scoped(cli, operation, IndexScope::All)
    }

    pub fn open_scoped(cli: &Cli, operation: &str, scope: IndexScope) -> Result<Loaded> {
        let repo = crate::open::open(cli)?;
        let lock = if cli.no_lock {
            None
        } else {
            match repo.lock(LockKind::Shared, operation) {
                Ok(lock) => Some(lock),
                // A repository this user may only read (a read-only mount, another user's
                // files, a full disk) must still restore; nobody can prune it through this
                // user either.
                Err(e) if cannot_write(&e) => {
                    if !cli.quiet {
                        eprintln!(
                            "warning: reading without a lock ({e}); a prune run meanwhile by \
                             someone who can write the repository may delete what this reads"
                        );
                    }
                    None
                }
                // A damaged lock may be anyone's, a prune's too: writers stop on it, but a
                // read must not, on the day the repository is needed. The worst a prune can
                // do to it is make a read fail, never return wrong data.
                Err(e @ lifeboat_core::Error::Integrity { .. }) => {
                    eprintln!(
                        "warning: reading without a lock: {e}; a prune running meanwhile may \
                         make this {operation} fail"
                    );
                    None
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("taking a shared lock for {operation}"))
                }
            }
        };
        let index_is_whole = match scope {
            IndexScope::All => true,
            IndexScope::Trees => false,
            IndexScope::TreesAndFiles => repo.index_bytes()? <= WHOLE_INDEX_BYTES,
        };
        let recovered = if index_is_whole {
            repo.recover_index_where(|_| true)?
        } else {
            repo.recover_index_where(|e| e.kind == BlobKind::Tree)?
        };
        for damaged in &recovered.unreadable {
            eprintln!(
                "warning: index file {} cannot be read ({}); its packs were indexed from their \
                 own headers ({} read). `lifeboat repair index` replaces it",
                &damaged.name[..8.min(damaged.name.len())],
                damaged.error,
                recovered.packs_read
            );
        }
        let index = recovered.index;
        let listing = repo.snapshot_listing()?;
        report_unreadable(&listing.unreadable);
        Ok(Loaded {
            repo,
            index,
            snapshots: listing.readable,
            unreadable: listing.unreadable,
            index_is_whole,
            _lock: lock,
        })
    }

    pub fn resolve(&self, spec: &str, filter: &SnapshotFilter) -> Result<&SnapshotEntry> {
        let parsed: SnapshotSpec = spec.parse()?;
        match parsed.resolve(&self.snapshots, filter) {
            Ok(entry) => Ok(entry),
            Err(e) => match self.unreadable.iter().find(|u| u.id.starts_with(spec)) {
                Some(damaged) if spec.len() >= 4 => Err(anyhow::anyhow!(
                    "snapshot {spec} cannot be read: {}",
                    damaged.error
                )),
                _ => Err(e.into()),
            },
        }
    }

    /// The index that reading `located` needs: the loaded one when it is whole, else the
    /// trees and the blobs of the files under `located`, read in a second pass.
    pub fn index_for(&self, located: &Located) -> Result<ReadIndex<'_>> {
        if self.index_is_whole {
            return Ok(ReadIndex::Loaded(&self.index));
        }
        Ok(ReadIndex::Read(lifeboat_core::ops::dump::index_for(
            &self.repo,
            &self.index,
            located,
        )?))
    }

    /// What `path` names in the snapshot `entry`.
    pub fn locate(&self, entry: &SnapshotEntry, path: &str) -> Result<Located> {
        Ok(lifeboat_core::ops::walk::locate(
            &self.repo,
            &self.index,
            entry.snapshot.tree,
            path.as_bytes(),
            entry.short_id(),
        )?)
    }
}

/// Streams the file `path` of snapshot `entry` into the standard input of `tool` (a restore
/// tool: mariadb, pg_restore); returns the bytes it was given. The tool's failure is the
/// error when it stopped reading; a repository that cannot be read kills the tool.
pub fn feed_stored_file(
    loaded: &Loaded,
    entry: &SnapshotEntry,
    path: &str,
    tool: std::process::Command,
) -> Result<u64> {
    // A tool that exits early must be an error message, not a SIGPIPE that ends lifeboat
    // without one.
    // SAFETY: only changes a signal disposition; nothing here relies on SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let located = loaded.locate(entry, path)?;
    let index = loaded.index_for(&located)?;
    let mut sink = lifeboat_sources::CommandSink::spawn(tool)?;
    let mut counted = CountingWriter {
        inner: &mut sink,
        bytes: 0,
    };
    let written = lifeboat_core::ops::dump::dump(&loaded.repo, &index, &located, &mut counted);
    let bytes = counted.bytes;
    match written {
        Ok(()) => {
            sink.finish()?;
            Ok(bytes)
        }
        Err(lifeboat_core::Error::Io { path, source }) if path.as_os_str() == "<output>" => {
            Err(sink.stopped_reading(source).into())
        }
        Err(e) => {
            drop(sink);
            Err(anyhow::Error::new(e).context(format!(
                "reading {path} of snapshot {}; the restore was stopped part way, so start \
                 again from an empty target",
                entry.short_id()
            )))
        }
    }
}

struct CountingWriter<'a, W: std::io::Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The snapshots `names` (ids, prefixes, `latest`, `@TIME`) pick among those `filter` keeps,
/// each once, in the order named.
pub fn resolve_named<'a>(
    all: &'a [SnapshotEntry],
    names: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<&'a SnapshotEntry>> {
    let mut chosen: Vec<&SnapshotEntry> = Vec::new();
    for name in names {
        let spec: SnapshotSpec = name.parse()?;
        let entry = spec
            .resolve(all, filter)
            .with_context(|| format!("snapshot {name}"))?;
        if !chosen.iter().any(|e| e.id == entry.id) {
            chosen.push(entry);
        }
    }
    Ok(chosen)
}

/// Says on stderr, even with `--quiet`, which snapshots cannot be read and what to do: the
/// command goes on with the others (one damaged object must not stop backups or restores).
pub fn report_unreadable(unreadable: &[UnreadableSnapshot]) {
    for damaged in unreadable {
        eprintln!(
            "warning: snapshot {} cannot be read and is left out: {}; `lifeboat check` shows the \
             damage, `lifeboat forget {}` removes the snapshot",
            &damaged.id[..8.min(damaged.id.len())],
            damaged.error,
            damaged.id
        );
    }
}

/// Whether taking a lock failed because this user cannot write to the repository: no
/// permission, a read-only file system, or no space left (a full disk must not keep the
/// backups on it from being restored).
pub fn cannot_write(error: &lifeboat_core::Error) -> bool {
    let lifeboat_core::Error::Storage(lifeboat_core::storage::StorageError::Io { source, .. }) =
        error
    else {
        return false;
    };
    cannot_write_io(source)
}

/// [`cannot_write`] for the error of the file system itself.
pub fn cannot_write_io(source: &std::io::Error) -> bool {
    source.kind() == std::io::ErrorKind::PermissionDenied
        || matches!(
            source.raw_os_error(),
            Some(libc::EROFS | libc::ENOSPC | libc::EDQUOT)
        )
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
