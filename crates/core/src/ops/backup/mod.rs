//! Backup: walk the sources, store what changed, write trees bottom-up and the snapshot last.
//!
//! ```text
//! listers (list, stat, compare with the parent tree) ──listings ahead──▶ walker
//! walker ──files──▶ file workers (read, chunk, hash, dedup) ──blobs──▶ compressors (zstd, seal, pack)
//!    │                                                                      │
//!    └──entries in walk order──▶ tree finisher ──tree blobs──▶──────────────┘──packs──▶ uploader ──▶ index files
//! ```
//! Every queue is bounded, so memory stays flat however large the tree is, and each stage runs
//! on its own threads so that both cores stay busy. The snapshot is written only after every
//! pack and index file it depends on is durable.

mod claimed;
mod finisher;
mod known;
mod listing;
mod metadata;
pub(crate) mod resume;
mod saver;
mod source;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Local};
use crossbeam_channel::bounded;

use crate::blob::Compression;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::snapshot::{Snapshot, SnapshotEntry, SNAPSHOT_VERSION};
use crate::storage::DryRunStorage;

pub use resume::Resumed;

pub use finisher::Change as FileChange;
pub use saver::BlobSaver;
// For operations that store blobs the way backup does (repair snapshots).
pub(crate) use finisher::save_tree;
pub(crate) use known::KnownBlobs;
pub(crate) use saver::{BlobJob, SaveJob};
pub use source::normalize_path;

/// Runs `walk` with a blob saver and a channel to its compressor, whose packs an uploader
/// thread writes and lists in index files (confirming `lock` before each, when given), for
/// operations other than backup that store blobs: repair, copy. Returns once every pack and
/// index file is written, or with the first failure.
pub(crate) fn with_blob_saver<T>(
    repo: &Repository,
    lock: Option<&crate::lock::LockGuard>,
    walk: impl FnOnce(&BlobSaver, &crossbeam_channel::Sender<SaveJob>) -> Result<T>,
) -> Result<T> {
    let mut saver = BlobSaver::new(repo, KnownBlobs::load(repo)?, repo.config().compression);
    if let Some(lock) = lock {
        saver = saver.with_lock(lock);
    }
    let saver = &saver;
    let (job_tx, job_rx) = bounded(4);
    let (pack_tx, pack_rx) = bounded(1);
    let walked = std::thread::scope(|scope| {
        let uploader = scope.spawn(move || saver.run_uploader(pack_rx));
        let compressor = {
            let pack_tx = pack_tx.clone();
            scope.spawn(move || saver.run_compressor(job_rx, pack_tx))
        };
        let walked = walk(saver, &job_tx);
        drop(job_tx);
        let panicked = |_| saver.fail(Error::InvalidInput("a worker thread panicked".into()));
        compressor.join().unwrap_or_else(panicked);
        for pack in saver.take_open_packs() {
            let _ = pack_tx.send(pack);
        }
        drop(pack_tx);
        uploader.join().unwrap_or_else(panicked);
        walked
    });
    if let Some(e) = saver.take_failure() {
        return Err(e);
    }
    walked
}

/// Where the data comes from.
pub enum BackupSource {
    Paths(Vec<PathBuf>),
    /// A stream stored as one file named `filename` at the snapshot's root.
    Stdin {
        reader: Box<dyn Read + Send>,
        filename: String,
    },
    /// Streams from an application source (a dump command, a database), each stored as one
    /// file at the snapshot's root, recorded as source `label` ("command", "sqlite", ...) so
    /// that each kind keeps its own snapshot chain. All or nothing: if one stream cannot be
    /// read to its end, no snapshot is written. They are read by the file workers, as many at
    /// once as there are workers.
    Streams {
        streams: Vec<NamedStream>,
        label: String,
    },
}

/// One stream of [`BackupSource::Streams`] and the file name it is stored under.
pub struct NamedStream {
    pub filename: String,
    pub reader: Box<dyn Read + Send>,
}

/// The streams sorted by name (the order of a tree), each name a plain file name and used once.
fn checked_streams(mut streams: Vec<NamedStream>) -> Result<Vec<StdinSource>> {
    if streams.is_empty() {
        return Err(Error::InvalidInput("no stream to back up".into()));
    }
    streams.sort_by(|a, b| a.filename.cmp(&b.filename));
    for (i, stream) in streams.iter().enumerate() {
        if !crate::tree::is_safe_name(stream.filename.as_bytes()) {
            return Err(Error::InvalidInput(format!(
                "the stream's name {:?} must be a plain file name",
                stream.filename
            )));
        }
        if i > 0 && streams[i - 1].filename == stream.filename {
            return Err(Error::InvalidInput(format!(
                "two streams are named {:?}",
                stream.filename
            )));
        }
    }
    Ok(streams
        .into_iter()
        .map(|s| (s.filename, s.reader))
        .collect())
}

/// Whether `label` can name a stream source: short lowercase words, and not "files", which
/// names backups of paths.
fn valid_stream_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 32
        && label != "files"
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub struct BackupOptions {
    pub source: BackupSource,
    pub tags: Vec<String>,
    pub hostname: Option<String>,
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    pub time: Option<DateTime<FixedOffset>>,
    pub dry_run: bool,
    /// Read every file even when its metadata matches the parent snapshot.
    pub force: bool,
    pub compression: Option<Compression>,
    /// Threads that read and chunk files, and threads that compress and seal.
    pub readers: usize,
    pub compressors: usize,
    /// Threads that list directories and stat their entries ahead of the walk.
    pub listers: usize,
    /// Count the files and bytes to back up in a parallel scan, for a progress estimate. It
    /// costs a second `stat` of every entry, so front ends that show no progress turn it off.
    pub count_totals: bool,
}

impl BackupOptions {
    pub fn new(source: BackupSource) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        BackupOptions {
            source,
            tags: Vec::new(),
            hostname: None,
            excludes: Vec::new(),
            one_file_system: false,
            time: None,
            dry_run: false,
            force: false,
            compression: None,
            readers: cores.max(2),
            compressors: cores,
            listers: cores.max(2),
            count_totals: true,
        }
    }
}

/// Called for every file as it is committed to its tree, with what happened to it.
pub type FileCallback = Box<dyn Fn(&std::path::Path, FileChange) + Send + Sync>;

/// Live counters a front end can poll to draw progress, and an optional per-file callback.
#[derive(Default)]
pub struct BackupProgress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
    pub scan_finished: AtomicBool,
    pub on_file: Option<FileCallback>,
}

#[derive(Debug, Clone)]
pub struct SourceError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug)]
pub struct BackupResult {
    /// `None` in a dry run.
    pub snapshot_id: Option<String>,
    pub snapshot: Snapshot,
    pub parent: Option<String>,
    /// Source entries that could not be read (or vanished) and are not in the snapshot.
    pub errors: Vec<SourceError>,
    /// Files in the snapshot that changed while being read, twice (docs/cli.md, "Files that
    /// cannot be read, vanish or change while they are read"): stored as the second read
    /// found them.
    pub warnings: Vec<SourceError>,
    /// Packs of an interrupted backup that this one indexed and reused.
    pub resumed: Resumed,
}

/// The newest snapshot of the same host and the same paths: its unchanged files need no read.
pub fn find_parent<'a>(
    snapshots: &'a [SnapshotEntry],
    hostname: &str,
    paths: &[String],
) -> Option<&'a SnapshotEntry> {
    find_previous(snapshots, hostname, "files", paths)
}

/// The newest snapshot of the same host, source and paths: the link of the snapshot chain
/// (`crate::snapshot::chain`).
pub fn find_previous<'a>(
    snapshots: &'a [SnapshotEntry],
    hostname: &str,
    source: &str,
    paths: &[String],
) -> Option<&'a SnapshotEntry> {
    snapshots
        .iter()
        .filter(|e| {
            e.snapshot.hostname == hostname
                && e.snapshot.paths == paths
                && e.snapshot.source == source
        })
        .max_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)))
}

/// Decompressed frames a backup keeps. It reads the parent's trees, from tree frames of about
/// 128 KiB each: this holds a few dozen of them (or two 2 MiB shared frames).
const BACKUP_FRAME_CACHE_BYTES: usize = 4 * 1024 * 1024;

pub fn backup(
    repo: &Repository,
    mut options: BackupOptions,
    progress: &BackupProgress,
) -> Result<BackupResult> {
    let started = Instant::now();
    let dry_storage;
    let repo_dry;
    let repo = if options.dry_run {
        dry_storage = Arc::new(DryRunStorage::new(repo.storage().clone()));
        repo_dry = repo.with_storage(dry_storage);
        &repo_dry
    } else {
        repo
    };
    let lock = repo.lock(crate::lock::LockKind::Shared, "backup")?;
    // A dry run's lock is never written, so there is nothing to confirm.
    let held = (!options.dry_run).then_some(&lock);
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(crate::host::hostname);
    // Before the index is read, so that what an interrupted backup stored is found in it.
    let resumed = match held {
        Some(lock) => resume::adopt_interrupted(repo, lock)?,
        None => Resumed::default(),
    };
    // The parent's trees are read roughly in walk order, a few frames at a time: the default
    // cache, sized for a restore's workers, was a sixth of an unchanged backup's peak memory.
    let _frames = repo.limit_frame_cache(BACKUP_FRAME_CACHE_BYTES);
    let known = known::KnownBlobs::load(repo)?;
    let (source_label, paths, streams) =
        match std::mem::replace(&mut options.source, BackupSource::Paths(Vec::new())) {
            BackupSource::Paths(p) => (
                "files".to_string(),
                source::normalize_paths(&p)?,
                Vec::new(),
            ),
            BackupSource::Stdin { reader, filename } => {
                if !crate::tree::is_safe_name(filename.as_bytes()) {
                    return Err(Error::InvalidInput(format!(
                        "--stdin-filename {filename:?} must be a plain file name"
                    )));
                }
                ("stdin".to_string(), Vec::new(), vec![(filename, reader)])
            }
            BackupSource::Streams { streams, label } => {
                if !valid_stream_label(&label) {
                    return Err(Error::InvalidInput(format!(
                        "source label {label:?}: use lowercase letters, digits and '-'"
                    )));
                }
                (label, Vec::new(), checked_streams(streams)?)
            }
        };
    let path_labels: Vec<String> = if streams.is_empty() {
        paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    } else {
        streams.iter().map(|(name, _)| format!("/{name}")).collect()
    };
    // A continuous archive stores a batch of new files each time: it has no parent and no
    // chain to follow, and a busy one would read every snapshot for every batch. A damaged
    // snapshot cannot be a parent, and must not stop the backups after it (check reports it).
    let snapshots = if crate::snapshot::is_archive_source(&source_label) {
        Vec::new()
    } else {
        repo.snapshot_listing()?.readable
    };
    let previous = find_previous(&snapshots, &hostname, &source_label, &path_labels);
    let parent = previous.filter(|_| source_label == "files");
    let parent_tree = match parent {
        Some(p) if !options.force => Some(p.snapshot.tree),
        _ => None,
    };
    let excludes = crate::patterns::PathPatterns::new(&options.excludes)?;
    let compression = options.compression.unwrap_or(repo.config().compression);
    let mut saver = BlobSaver::new(repo, known, compression);
    if let Some(lock) = held {
        saver = saver.with_lock(lock);
    }

    let plan = source::WalkPlan {
        paths,
        excludes,
        parent_tree,
        one_file_system: options.one_file_system,
    };
    let streamed = !streams.is_empty();
    let walked = run_pipeline(repo, &saver, &options, plan, streams, progress)?;
    if let Some(e) = saver.take_failure() {
        return Err(e);
    }
    if let (true, Some(failure)) = (streamed, walked.errors.first()) {
        // A stream cut short (a dump command that failed) is no backup.
        let path = failure.path.to_string_lossy();
        return Err(Error::StreamFailed {
            name: path.trim_start_matches('/').to_string(),
            message: failure.message.clone(),
        });
    }

    let mut summary = walked.summary;
    summary.blobs_added = saver.stats.blobs_added.load(Ordering::Relaxed);
    summary.bytes_added = saver.stats.bytes_added.load(Ordering::Relaxed);
    summary.bytes_added_packed = saver.stats.bytes_added_packed.load(Ordering::Relaxed);
    summary.errors = walked.errors.len() as u64;
    summary.duration_seconds = started.elapsed().as_secs_f64();
    let snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        time: options.time.unwrap_or_else(|| Local::now().fixed_offset()),
        hostname,
        username: crate::host::username(),
        paths: path_labels,
        tags: options.tags.clone(),
        source: source_label,
        tree: walked.root,
        parent: parent.map(|p| p.id.clone()),
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        summary,
        original: None,
        previous: previous.map(|p| p.id.clone()),
    };
    let snapshot_id = match held {
        None => None,
        Some(lock) => {
            lock.ensure_held()?;
            Some(repo.save_snapshot(&snapshot)?)
        }
    };
    Ok(BackupResult {
        snapshot_id,
        parent: snapshot.parent.clone(),
        snapshot,
        errors: walked.errors,
        warnings: walked.warnings,
        resumed,
    })
}

type Walked = finisher::Finished;

type StdinSource = (String, Box<dyn Read + Send>);

fn run_pipeline(
    repo: &Repository,
    saver: &BlobSaver,
    options: &BackupOptions,
    plan: source::WalkPlan,
    streams: Vec<StdinSource>,
    progress: &BackupProgress,
) -> Result<Walked> {
    let (file_tx, file_rx) = bounded::<source::FileJob>(options.readers * 4);
    let (blob_tx, blob_rx) = bounded(options.compressors * 2);
    // One finished pack waits while the uploader writes another: more only holds memory.
    let (pack_tx, pack_rx) = bounded(1);
    let (event_tx, event_rx) = bounded(16);
    let scan_stop = AtomicBool::new(false);
    let listed_ahead = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<Walked> {
        let uploader = scope.spawn(|| saver.run_uploader(pack_rx));
        let compressors: Vec<_> = (0..options.compressors.max(1))
            .map(|_| {
                let (rx, tx) = (blob_rx.clone(), pack_tx.clone());
                scope.spawn(move || saver.run_compressor(rx, tx))
            })
            .collect();
        drop(blob_rx);
        let readers: Vec<_> = (0..options.readers.max(1))
            .map(|_| {
                let (rx, tx) = (file_rx.clone(), blob_tx.clone());
                scope.spawn(move || source::run_file_worker(repo, saver, rx, tx, progress))
            })
            .collect();
        drop(file_rx);
        let finisher = {
            let blob_tx = blob_tx.clone();
            scope.spawn(move || finisher::run(repo, saver, event_rx, blob_tx, progress))
        };
        if streams.is_empty() && options.count_totals {
            let (paths, excludes, one_fs) = (
                plan.paths.clone(),
                plan.excludes.clone(),
                plan.one_file_system,
            );
            let stop = &scan_stop;
            scope.spawn(move || source::scan_totals(&paths, &excludes, one_fs, progress, stop));
        } else {
            progress.scan_finished.store(true, Ordering::Relaxed);
        }
        // Measured on an unchanged ~/.rustup: one lister is slower than the walker listing
        // alone (a hand-off per directory), two take a sixth off, more change nothing.
        let (list_tx, list_rx) = crossbeam_channel::unbounded();
        let listed_ahead = &listed_ahead;
        for _ in 0..options.listers.max(1) {
            let lister = listing::Lister {
                repo,
                saver,
                plan: &plan,
                force: options.force,
                listed_ahead,
            };
            let jobs = list_rx.clone();
            scope.spawn(move || lister.run(jobs));
        }
        drop(list_rx);
        let walker = source::Walker::new(
            repo,
            saver,
            blob_tx,
            progress,
            &plan,
            options.force,
            file_tx,
            list_tx,
            listed_ahead,
            event_tx,
        );
        let walk_result = if streams.is_empty() {
            walker.walk()
        } else {
            walker.walk_streams(streams)
        };
        // The walker has dropped its senders; the stages drain and stop in order.
        let finished = finisher
            .join()
            .map_err(|_| Error::InvalidInput("tree finisher panicked".into()));
        // A stage that panicked may have dropped blobs it had claimed: never write a snapshot then.
        let panicked = |_| {
            saver.fail(Error::InvalidInput(
                "a backup worker thread panicked".into(),
            ))
        };
        for r in readers {
            r.join().unwrap_or_else(panicked);
        }
        for c in compressors {
            c.join().unwrap_or_else(panicked);
        }
        for pack in saver.take_open_packs() {
            let _ = pack_tx.send(pack);
        }
        drop(pack_tx);
        uploader.join().unwrap_or_else(panicked);
        scan_stop.store(true, Ordering::Relaxed);
        walk_result?;
        let mut walked = finished??;
        walked.errors.sort_by(|a, b| a.path.cmp(&b.path));
        walked.warnings.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(walked)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;

    use super::*;
    use crate::crypto::kdf::KdfParams;
    use crate::ops::dump::{dump, index_for};
    use crate::ops::walk::locate;
    use crate::repository::InitOptions;
    use crate::storage::LocalStorage;

    fn repo(dir: &std::path::Path) -> Repository {
        let options = InitOptions {
            kdf: KdfParams::generated_key(),
            ..InitOptions::default()
        };
        let storage = Arc::new(LocalStorage::new(dir.join("repo")));
        Repository::init(storage, &[b'a'; 64], options).expect("init")
    }

    fn stream(name: &str, data: Vec<u8>) -> NamedStream {
        NamedStream {
            filename: name.to_string(),
            reader: Box::new(Cursor::new(data)),
        }
    }

    fn streams(list: Vec<NamedStream>) -> BackupOptions {
        BackupOptions::new(BackupSource::Streams {
            streams: list,
            label: "postgres".into(),
        })
    }

    /// Fails after handing out some bytes, as a dump command that dies midway.
    struct FailsMidway(usize);

    impl Read for FailsMidway {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("the dump died"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn several_streams_are_one_snapshot_and_one_failing_stream_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repo(dir.path());
        let progress = BackupProgress::default();
        let done = backup(
            &repo,
            streams(vec![
                stream("shop.dump", b"the shop database ".repeat(5000)),
                stream("globals.sql", b"CREATE ROLE app;".to_vec()),
            ]),
            &progress,
        )
        .expect("backup");
        assert_eq!(done.snapshot.paths, ["/globals.sql", "/shop.dump"]);
        assert_eq!(done.snapshot.source, "postgres");
        let trees = repo.load_tree_index().expect("trees");
        for (path, want) in [
            ("/shop.dump", b"the shop database ".repeat(5000)),
            ("/globals.sql", b"CREATE ROLE app;".to_vec()),
        ] {
            let located =
                locate(&repo, &trees, done.snapshot.tree, path.as_bytes(), "s").expect("located");
            let index = index_for(&repo, &trees, &located).expect("index");
            let mut out = Vec::new();
            dump(&repo, &index, &located, &mut out).expect("dump");
            assert_eq!(out, want, "{path}");
        }

        let failed = backup(
            &repo,
            streams(vec![
                stream("globals.sql", b"CREATE ROLE app;".to_vec()),
                NamedStream {
                    filename: "shop.dump".into(),
                    reader: Box::new(FailsMidway(3 << 20)),
                },
            ]),
            &progress,
        )
        .expect_err("a failed stream fails the backup");
        let text = failed.to_string();
        assert!(text.contains("shop.dump"), "{text}");
        assert!(text.contains("the dump died"), "{text}");
        assert!(text.contains("no snapshot was written"), "{text}");
        assert_eq!(repo.snapshots().expect("list").len(), 1);

        for (bad, says) in [
            (
                vec![stream("a", vec![1]), stream("a", vec![2])],
                "two streams",
            ),
            (vec![stream("../a", vec![1])], "plain file name"),
            (Vec::new(), "no stream"),
        ] {
            let err = backup(&repo, streams(bad), &progress).expect_err("refused");
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
