//! Fault injection (issue 8): backup, restore, check, copy, forget + prune and repair run over
//! a `FaultInjectingStorage` that fails, times out, truncates and reorders at 1%, 5% and 20%
//! of the calls, on a local directory and on a real S3 server (Garage). Every run either
//! succeeds with the right result (a restore gives back the source; check finds nothing) or
//! fails with an error that names what failed. Afterwards, on the storage without faults,
//! `check --read-data` finds no error, every snapshot restores to the tree it was taken of,
//! and the same operation without faults succeeds.
//!
//! The stacks are those of the program: a local directory is retried by `RetryingStorage`
//! (here with millisecond waits), so the faults sit between it and the directory; an object
//! store retries inside its client, so the faults sit above it and stand for what those
//! retries did not cure (no truncation there: a cut HTTP body is an error, and a `PUT` is
//! atomic). A third stack puts `RetryingStorage` over S3 as well, for programs that embed the
//! library that way.
//!
//! Run with `--nocapture` to see the table (docs/reliability.md, "Fault injection").

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{manifest, random_bytes, restored, Manifest};
use lifeboat_backends::{BackendOptions, RepositoryLocation};
use lifeboat_core::chunker::ChunkerParams;
use lifeboat_core::crypto::kdf::KdfParams;
use lifeboat_core::lock::LockKind;
use lifeboat_core::ops::backup::{backup, BackupOptions, BackupProgress, BackupSource};
use lifeboat_core::ops::check::{check, CheckOptions, DataSubset};
use lifeboat_core::ops::copy::copy;
use lifeboat_core::ops::forget::forget_ids;
use lifeboat_core::ops::prune::{prune, PruneOptions};
use lifeboat_core::ops::repair::index::{repair_index, RepairIndexOptions};
use lifeboat_core::ops::restore::{restore, RestoreOptions, RestoreProgress};
use lifeboat_core::ops::walk::locate;
use lifeboat_core::storage::{
    FaultInjectingStorage, Faults, LocalStorage, ObjectKind, RetryPolicy, RetryingStorage, Storage,
};
use lifeboat_core::{InitOptions, Repository};

const PASSWORD: &[u8] = b"fault injection";
const RATES: [f64; 3] = [0.01, 0.05, 0.20];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Backend {
    /// A directory, retried by `RetryingStorage` as `lifeboat_backends::open` does.
    Local,
    /// Garage, as the program opens it (retries inside the client, below the faults).
    S3,
    /// Garage with `RetryingStorage` above the faults.
    S3Retrying,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::S3 => "s3",
            Backend::S3Retrying => "s3 + RetryingStorage",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    /// Three quarters retryable errors, one quarter permanent ones.
    Fail,
    Timeout,
    Truncate,
    Reorder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Op {
    Backup,
    Restore,
    Check,
    Copy,
    ForgetPrune,
    Repair,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Backup => "backup",
            Op::Restore => "restore",
            Op::Check => "check --read-data",
            Op::Copy => "copy",
            Op::ForgetPrune => "forget + prune",
            Op::Repair => "repair index",
        }
    }
}

fn faults(kind: Kind, rate: f64) -> Faults {
    let delay = Duration::from_millis(2);
    match kind {
        Kind::Fail => Faults {
            fail: rate * 0.75,
            permanent: rate * 0.25,
            delay,
            ..Faults::none()
        },
        Kind::Timeout => Faults {
            timeout: rate,
            delay,
            ..Faults::none()
        },
        Kind::Truncate => Faults {
            truncate: rate,
            delay,
            ..Faults::none()
        },
        Kind::Reorder => Faults {
            reorder: rate,
            delay,
            ..Faults::none()
        },
    }
}

/// What the runs of one operation, fault kind and rate came to.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    runs: u32,
    /// Runs that met at least one fault.
    faulted: u32,
    succeeded: u32,
    /// Of those, runs that needed retries.
    retried: u32,
    failed_cleanly: u32,
    /// Runs after which the repository checked clean, restored and took the next operation.
    sound_after: u32,
    faults: u64,
    /// Locks the run could not remove (released when its process ends).
    locks_left: u32,
}

type Key = (Backend, Op, Kind, u32);

fn tallies() -> &'static Mutex<BTreeMap<Key, Tally>> {
    static TALLIES: OnceLock<Mutex<BTreeMap<Key, Tally>>> = OnceLock::new();
    TALLIES.get_or_init(Mutex::default)
}

fn errors_seen() -> &'static Mutex<BTreeSet<String>> {
    static SEEN: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    SEEN.get_or_init(Mutex::default)
}

fn permille(rate: f64) -> u32 {
    (rate * 1000.0).round() as u32
}

/// The storage one operation runs over: the faults, and the retries where the program has
/// them.
struct Stack {
    storage: Arc<dyn Storage>,
    faulty: Arc<FaultInjectingStorage>,
    retrying: Option<Arc<RetryingStorage>>,
}

impl Stack {
    fn new(base: &Arc<dyn Storage>, backend: Backend, kind: Kind, rate: f64, seed: u64) -> Stack {
        let faulty = Arc::new(FaultInjectingStorage::new(
            base.clone(),
            faults(kind, rate),
            seed,
        ));
        let retrying = match backend {
            Backend::S3 => None,
            Backend::Local | Backend::S3Retrying => Some(Arc::new(RetryingStorage::new(
                faulty.clone(),
                // The program's policy (RetryPolicy::default), with millisecond waits.
                RetryPolicy {
                    first_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(8),
                    ..RetryPolicy::default()
                },
            ))),
        };
        let storage: Arc<dyn Storage> = match &retrying {
            Some(r) => r.clone(),
            None => faulty.clone(),
        };
        Stack {
            storage,
            faulty,
            retrying,
        }
    }

    fn retries(&self) -> u64 {
        self.retrying.as_ref().map_or(0, |r| r.retries())
    }
}

/// The tests' S3 server, with its keys in this process's environment (the client reads them
/// from there).
fn s3_repository() -> String {
    static READY: OnceLock<()> = OnceLock::new();
    let server = common::garage::garage();
    READY.get_or_init(|| {
        for (name, value) in server.vars() {
            std::env::set_var(name, value);
        }
    });
    server.fresh_repo()
}

/// A repository and what its snapshots hold.
struct Repo {
    base: Arc<dyn Storage>,
    /// Snapshot id -> the manifest of the tree it was taken of.
    expected: HashMap<String, Manifest>,
}

impl Repo {
    fn create(backend: Backend, dir: &Path, name: &str) -> Repo {
        let base: Arc<dyn Storage> = match backend {
            Backend::Local => Arc::new(LocalStorage::new(dir.join(name))),
            Backend::S3 | Backend::S3Retrying => lifeboat_backends::open(
                &RepositoryLocation::parse(&s3_repository()).unwrap(),
                &BackendOptions::default(),
            )
            .unwrap(),
        };
        let options = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
                ..KdfParams::default()
            },
            // Small chunks and packs: many objects, so that even 1% of the calls is a few.
            chunker: ChunkerParams {
                min_size: 16 * 1024,
                avg_size: 32 * 1024,
                max_size: 128 * 1024,
            },
            pack_size: 96 * 1024,
            ..InitOptions::default()
        };
        Repository::init(base.clone(), PASSWORD, options).unwrap();
        Repo {
            base,
            expected: HashMap::new(),
        }
    }

    fn open(&self) -> Repository {
        Repository::open(self.base.clone(), PASSWORD).unwrap()
    }
}

/// The source tree, version `version`: small text files and a larger random file, each
/// version changing some of them.
fn write_source(src: &Path, seed: u64, version: u64) {
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    for i in 0..24u64 {
        let text = format!("file {i} of seed {seed}, version {}\n", version * (i % 3));
        std::fs::write(
            src.join("docs").join(format!("{i}.txt")),
            text.repeat(10 + i as usize * 7),
        )
        .unwrap();
    }
    let mut big = random_bytes(400_000, seed);
    big.extend(random_bytes(80_000, seed + 1000 * version));
    std::fs::write(src.join("docs/deep/big.bin"), big).unwrap();
    std::fs::write(
        src.join("version.txt"),
        random_bytes(5_000 + version as usize, seed ^ version),
    )
    .unwrap();
}

fn message(e: &lifeboat_core::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// An error that says what failed: a storage error (injected, or what retries left of one),
/// or the object whose bytes came back unusable.
fn is_clear(text: &str) -> bool {
    [
        "injected",
        "storage error",
        "config",
        "lock ",
        "pack ",
        "index ",
        "snapshot ",
        "key ",
        "condemned ",
        "forget record ",
    ]
    .iter()
    .any(|word| text.contains(word))
}

fn backup_of(repo: &Repository, src: &Path) -> lifeboat_core::Result<Option<String>> {
    let mut options = BackupOptions::new(BackupSource::Paths(vec![src.to_path_buf()]));
    options.count_totals = false;
    let result = backup(repo, options, &BackupProgress::default())?;
    assert!(
        result.errors.is_empty(),
        "source errors: {:?}",
        result.errors
    );
    Ok(result.snapshot_id)
}

/// Restores snapshot `id` into `target` as `lifeboat restore` does (shared lock, index,
/// snapshot, then the tree); errors of single files are the run's error.
fn restore_into(repo: &Repository, id: &str, target: &Path) -> Result<(), String> {
    let text = |e: lifeboat_core::Error| message(&e);
    let _lock = repo.lock(LockKind::Shared, "restore").map_err(text)?;
    let index = repo.load_index().map_err(text)?;
    let snapshots = repo.snapshots().map_err(text)?;
    let entry = snapshots
        .iter()
        .find(|e| e.id == id)
        .ok_or_else(|| format!("snapshot {id} not listed"))?;
    let located =
        locate(repo, &index, entry.snapshot.tree, b"/", entry.short_id()).map_err(text)?;
    let summary = restore(
        repo,
        &index,
        &located,
        &RestoreOptions::new(target),
        &RestoreProgress::default(),
    )
    .map_err(text)?;
    if !summary.errors.is_empty() {
        let errors: Vec<String> = summary
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        return Err(errors.join("; "));
    }
    Ok(())
}

/// Check (with every pack's data read) of the storage as it is, over `repo`.
fn check_all(repo: &Repository) -> lifeboat_core::Result<lifeboat_core::ops::check::CheckReport> {
    check(
        repo,
        &CheckOptions {
            read_data: Some(DataSubset::All),
            written_here: None,
        },
    )
}

/// One life of a repository: every operation in turn, each under faults, each followed by
/// the checks on the storage without faults.
struct Life {
    backend: Backend,
    kind: Kind,
    rate: f64,
    seed: u64,
    dir: tempfile::TempDir,
    src: PathBuf,
    main: Repo,
    /// The copy destination.
    offsite: Repo,
    /// Manifests of every version of the source backed up so far.
    versions: Vec<Manifest>,
    step: u64,
}

impl Life {
    fn new(backend: Backend, kind: Kind, rate: f64, seed: u64) -> Life {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        write_source(&src, seed, 0);
        let main = Repo::create(backend, dir.path(), "main");
        let offsite = Repo::create(backend, dir.path(), "offsite");
        let versions = vec![manifest(&src)];
        Life {
            backend,
            kind,
            rate,
            seed,
            dir,
            src,
            main,
            offsite,
            versions,
            step: 0,
        }
    }

    fn stack(&mut self, base: &Arc<dyn Storage>) -> Stack {
        self.step += 1;
        Stack::new(
            base,
            self.backend,
            self.kind,
            self.rate,
            self.seed * 1000 + self.step,
        )
    }

    fn scratch(&mut self, name: &str) -> PathBuf {
        self.step += 1;
        self.dir.path().join(format!("{name}-{}", self.step))
    }

    fn context(&self, op: Op) -> String {
        format!(
            "{} {} under {:?} at {}% (seed {})",
            self.backend.label(),
            op.label(),
            self.kind,
            self.rate * 100.0,
            self.seed
        )
    }

    /// Runs `op` under faults and everything after it; records the outcome.
    fn run(&mut self, op: Op) {
        let context = self.context(op);
        let (outcome, stacks) = match op {
            Op::Backup => self.faulty_backup(),
            Op::Restore => self.faulty_restore(),
            Op::Check => self.faulty_check(),
            Op::Copy => self.faulty_copy(),
            Op::ForgetPrune => self.faulty_forget_prune(),
            Op::Repair => self.faulty_repair(),
        };
        let faults: u64 = stacks.iter().map(|s| s.faulty.counts().injected()).sum();
        let retries: u64 = stacks.iter().map(Stack::retries).sum();
        drop(stacks);
        if let Err(text) = &outcome {
            assert!(is_clear(text), "{context}: unclear error: {text}");
            let first = text.lines().next().unwrap_or_default();
            errors_seen()
                .lock()
                .unwrap()
                .insert(format!("{}: {first}", op.label()));
        }
        // The process that ran the operation has ended: a lock it could not remove is stale
        // (its pid is gone), so nothing waits for it. Here the process goes on, so such a
        // lock is removed as `unlock` would.
        let mut locks_left = 0;
        for repo in [&self.main, &self.offsite] {
            let names: Vec<String> = repo
                .base
                .list(ObjectKind::Lock)
                .unwrap()
                .into_iter()
                .map(|i| i.name)
                .collect();
            for name in names {
                locks_left += 1;
                repo.base.delete(ObjectKind::Lock, &name).unwrap();
            }
        }
        // A repair that failed leaves the damage it was to repair (made by this test): the
        // repair without faults comes first there.
        if op == Op::Repair && outcome.is_err() {
            self.next_without_faults(op, &context);
            self.assert_sound(op, &context);
        } else {
            self.assert_sound(op, &context);
            self.next_without_faults(op, &context);
        }
        let mut all = tallies().lock().unwrap();
        let tally = all
            .entry((self.backend, op, self.kind, permille(self.rate)))
            .or_default();
        tally.runs += 1;
        tally.faults += faults;
        tally.faulted += u32::from(faults > 0);
        tally.locks_left += locks_left;
        match outcome {
            Ok(()) => {
                tally.succeeded += 1;
                tally.retried += u32::from(retries > 0);
            }
            Err(_) => tally.failed_cleanly += 1,
        }
        tally.sound_after += 1;
    }

    fn faulty_backup(&mut self) -> (Result<(), String>, Vec<Stack>) {
        self.step += 1;
        write_source(&self.src, self.seed, self.step);
        self.versions.push(manifest(&self.src));
        let base = self.main.base.clone();
        let stack = self.stack(&base);
        let outcome = Repository::open(stack.storage.clone(), PASSWORD)
            .and_then(|repo| backup_of(&repo, &self.src))
            .map_err(|e| message(&e));
        if let Ok(Some(id)) = &outcome {
            let version = self.versions.last().unwrap().clone();
            self.main.expected.insert(id.clone(), version);
        }
        (outcome.map(|_| ()), vec![stack])
    }

    fn latest(&self) -> String {
        let snapshots = self.main.open().snapshots().unwrap();
        snapshots.last().expect("a snapshot").id.clone()
    }

    fn faulty_restore(&mut self) -> (Result<(), String>, Vec<Stack>) {
        let id = self.latest();
        let target = self.scratch("restore");
        let base = self.main.base.clone();
        let stack = self.stack(&base);
        let outcome = Repository::open(stack.storage.clone(), PASSWORD)
            .map_err(|e| message(&e))
            .and_then(|repo| restore_into(&repo, &id, &target));
        if outcome.is_ok() {
            let got = manifest(&restored(&target, &self.src));
            let want = self.main.expected.get(&id);
            assert!(
                want.map_or(self.versions.contains(&got), |want| *want == got),
                "{}: restored something else than was backed up",
                self.context(Op::Restore)
            );
        }
        (outcome, vec![stack])
    }

    fn faulty_check(&mut self) -> (Result<(), String>, Vec<Stack>) {
        let base = self.main.base.clone();
        let stack = self.stack(&base);
        let context = self.context(Op::Check);
        let outcome = Repository::open(stack.storage.clone(), PASSWORD)
            .and_then(|repo| check_all(&repo))
            .map_err(|e| message(&e))
            .and_then(|report| {
                let errors: Vec<String> = report
                    .findings
                    .iter()
                    .filter(|f| f.error)
                    .map(|f| format!("{} {}", f.object, f.message))
                    .collect();
                if errors.is_empty() {
                    return Ok(());
                }
                // Findings are fine only as what they are: the storage failing to answer.
                for error in &errors {
                    assert!(
                        error.contains("storage error") || error.contains("injected"),
                        "{context}: check reports damage that is not there: {errors:#?}"
                    );
                }
                Err(errors.join("; "))
            });
        (outcome, vec![stack])
    }

    fn faulty_copy(&mut self) -> (Result<(), String>, Vec<Stack>) {
        let (main, offsite) = (self.main.base.clone(), self.offsite.base.clone());
        let from_stack = self.stack(&main);
        let to_stack = self.stack(&offsite);
        let outcome = (|| {
            let from = Repository::open(from_stack.storage.clone(), PASSWORD)?;
            let to = Repository::open(to_stack.storage.clone(), PASSWORD)?;
            let all = from.snapshots()?;
            copy(&from, &to, &all, &all)
        })()
        .map_err(|e| message(&e));
        if let Ok(report) = &outcome {
            for (source, copied) in &report.copied {
                if let Some(version) = self.main.expected.get(source) {
                    self.offsite
                        .expected
                        .insert(copied.clone(), version.clone());
                }
            }
        }
        (outcome.map(|_| ()), vec![from_stack, to_stack])
    }

    fn faulty_forget_prune(&mut self) -> (Result<(), String>, Vec<Stack>) {
        let base = self.main.base.clone();
        let stack = self.stack(&base);
        let outcome = (|| {
            let repo = Repository::open(stack.storage.clone(), PASSWORD)?;
            let snapshots = repo.snapshots()?;
            if snapshots.len() > 1 {
                forget_ids(&repo, &[snapshots[0].id.clone()], false)?;
            }
            prune(&repo, &PruneOptions::default()).map(|_| ())
        })()
        .map_err(|e| message(&e));
        (outcome, vec![stack])
    }

    /// Repairs an index that lost a file (removed here, without faults).
    fn faulty_repair(&mut self) -> (Result<(), String>, Vec<Stack>) {
        let mut files = self.main.base.list(ObjectKind::Index).unwrap();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(file) = files.first() {
            self.main
                .base
                .delete(ObjectKind::Index, &file.name)
                .unwrap();
        }
        let base = self.main.base.clone();
        let stack = self.stack(&base);
        let outcome = Repository::open(stack.storage.clone(), PASSWORD)
            .and_then(|repo| repair_index(&repo, &RepairIndexOptions::default()))
            .map(|_| ())
            .map_err(|e| message(&e));
        (outcome, vec![stack])
    }

    /// The same operation again, without faults: it succeeds.
    fn next_without_faults(&mut self, op: Op, context: &str) {
        let repo = self.main.open();
        let next = format!("{context}: the next {} without faults", op.label());
        match op {
            Op::Backup => {
                let id = backup_of(&repo, &self.src)
                    .expect(&next)
                    .expect("a snapshot");
                let version = self.versions.last().unwrap().clone();
                self.main.expected.insert(id, version);
            }
            // The checks afterwards restore every snapshot and check the repository.
            Op::Restore | Op::Check => {}
            Op::Copy => {
                let to = self.offsite.open();
                let all = repo.snapshots().expect(&next);
                let report = copy(&repo, &to, &all, &all).expect(&next);
                for (source, copied) in &report.copied {
                    if let Some(version) = self.main.expected.get(source) {
                        self.offsite
                            .expected
                            .insert(copied.clone(), version.clone());
                    }
                }
            }
            Op::ForgetPrune => {
                prune(&repo, &PruneOptions::default()).expect(&next);
            }
            Op::Repair => {
                repair_index(&repo, &RepairIndexOptions::default()).expect(&next);
            }
        }
    }

    /// On the storage without faults: check with every pack read finds no error, and every
    /// snapshot restores to the tree it was taken of.
    fn assert_sound(&mut self, op: Op, context: &str) {
        // Only a copy writes to (or reads) the second repository.
        let which: &[u8] = if op == Op::Copy { &[0, 1] } else { &[0] };
        for &which in which {
            let repo = if which == 0 {
                self.main.open()
            } else {
                self.offsite.open()
            };
            let expected = if which == 0 {
                self.main.expected.clone()
            } else {
                self.offsite.expected.clone()
            };
            let report = check_all(&repo).unwrap_or_else(|e| panic!("{context}: check: {e}"));
            assert_eq!(
                report.errors(),
                0,
                "{context}: check afterwards: {:#?}",
                report.findings
            );
            for entry in repo.snapshots().unwrap() {
                let target = self.scratch("sound");
                restore_into(&repo, &entry.id, &target)
                    .unwrap_or_else(|e| panic!("{context}: restoring {}: {e}", entry.id));
                let got = manifest(&restored(&target, &self.src));
                match expected.get(&entry.id) {
                    Some(want) => assert!(
                        *want == got,
                        "{context}: snapshot {} restores other content",
                        entry.id
                    ),
                    // Written by a run that failed after storing it: one of the versions.
                    None => assert!(
                        self.versions.contains(&got),
                        "{context}: snapshot {} restores a tree never backed up",
                        entry.id
                    ),
                }
                std::fs::remove_dir_all(&target).unwrap();
            }
        }
    }
}

/// Every operation once, in the order of a repository's life.
fn live(backend: Backend, kind: Kind, rate: f64, seed: u64) {
    let mut life = Life::new(backend, kind, rate, seed);
    for op in [
        Op::Backup,
        Op::Backup,
        Op::Restore,
        Op::Check,
        Op::Copy,
        Op::ForgetPrune,
        Op::Repair,
    ] {
        life.run(op);
    }
}

fn print_table(backends: &[Backend], kinds: &[Kind]) {
    let all = tallies().lock().unwrap();
    let mut out = String::from(
        "| backend | operation | fault | rate | runs | met faults | faults | succeeded (after retries) | failed cleanly | sound after | locks left |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((backend, op, kind, rate), t) in all.iter() {
        if !backends.contains(backend) || !kinds.contains(kind) {
            continue;
        }
        out.push_str(&format!(
            "| {} | {} | {:?} | {}% | {} | {} | {} | {} ({}) | {} | {}/{} | {} |\n",
            backend.label(),
            op.label(),
            kind,
            *rate as f64 / 10.0,
            t.runs,
            t.faulted,
            t.faults,
            t.succeeded,
            t.retried,
            t.failed_cleanly,
            t.sound_after,
            t.runs,
            t.locks_left
        ));
    }
    eprintln!("{out}");
    for error in errors_seen().lock().unwrap().iter() {
        eprintln!("error seen: {error}");
    }
}

/// `LIFEBOAT_FAULT_SEEDS=20-39` (or `7,8,9`) runs other seeds than the fixed ones, for a
/// longer search.
fn seeds_or(fixed: &[u64]) -> Vec<u64> {
    let Ok(text) = std::env::var("LIFEBOAT_FAULT_SEEDS") else {
        return fixed.to_vec();
    };
    let mut seeds = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                seeds.extend(a.trim().parse::<u64>().unwrap()..=b.trim().parse().unwrap())
            }
            None => seeds.push(part.trim().parse().unwrap()),
        }
    }
    seeds
}

fn sweep(backend: Backend, kind: Kind, seeds: &[u64]) {
    let started = Instant::now();
    let seeds = seeds_or(seeds);
    for rate in RATES {
        for seed in &seeds {
            live(backend, kind, rate, *seed);
        }
    }
    eprintln!(
        "{} {kind:?}: {} lives in {:.1} s",
        backend.label(),
        RATES.len() * seeds.len(),
        started.elapsed().as_secs_f64()
    );
    print_table(&[backend], &[kind]);
}

const LOCAL_SEEDS: [u64; 3] = [1, 2, 3];
const S3_SEEDS: [u64; 1] = [11];

#[test]
fn local_failures() {
    sweep(Backend::Local, Kind::Fail, &LOCAL_SEEDS);
}

#[test]
fn local_timeouts() {
    sweep(Backend::Local, Kind::Timeout, &LOCAL_SEEDS);
}

#[test]
fn local_truncation() {
    sweep(Backend::Local, Kind::Truncate, &LOCAL_SEEDS);
}

#[test]
fn local_reordering() {
    sweep(Backend::Local, Kind::Reorder, &LOCAL_SEEDS);
}

#[test]
fn s3_failures() {
    sweep(Backend::S3, Kind::Fail, &S3_SEEDS);
    sweep(Backend::S3Retrying, Kind::Fail, &S3_SEEDS);
}

#[test]
fn s3_timeouts() {
    sweep(Backend::S3, Kind::Timeout, &S3_SEEDS);
    sweep(Backend::S3Retrying, Kind::Timeout, &S3_SEEDS);
}

/// Only with `RetryingStorage`: an object store does not tear writes or cut bodies short
/// without saying so (that is an error, which the failure runs cover).
#[test]
fn s3_truncation() {
    sweep(Backend::S3Retrying, Kind::Truncate, &S3_SEEDS);
}

#[test]
fn s3_reordering() {
    sweep(Backend::S3, Kind::Reorder, &S3_SEEDS);
    sweep(Backend::S3Retrying, Kind::Reorder, &S3_SEEDS);
}

/// A storage that fails to hand over objects of one kind (timeouts, retries spent).
#[derive(Debug)]
struct Unreadable(Arc<dyn Storage>, ObjectKind);

impl Unreadable {
    fn fails(&self, kind: ObjectKind, name: &str) -> lifeboat_core::storage::StorageResult<()> {
        if kind != self.1 {
            return Ok(());
        }
        Err(lifeboat_core::storage::StorageError::Io {
            location: format!("{} ({kind} {name})", self.0.location()),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            retryable: true,
        })
    }
}

impl Storage for Unreadable {
    fn location(&self) -> String {
        self.0.location()
    }
    fn capabilities(&self) -> lifeboat_core::storage::Capabilities {
        self.0.capabilities()
    }
    fn exists(&self) -> lifeboat_core::storage::StorageResult<bool> {
        self.0.exists()
    }
    fn create(&self) -> lifeboat_core::storage::StorageResult<()> {
        self.0.create()
    }
    fn list(
        &self,
        kind: ObjectKind,
    ) -> lifeboat_core::storage::StorageResult<Vec<lifeboat_core::storage::ObjectInfo>> {
        self.0.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> lifeboat_core::storage::StorageResult<Vec<u8>> {
        self.fails(kind, name)?;
        self.0.read(kind, name)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> lifeboat_core::storage::StorageResult<Vec<u8>> {
        self.fails(kind, name)?;
        self.0.read_range(kind, name, offset, length)
    }
    fn write(
        &self,
        kind: ObjectKind,
        name: &str,
        data: &[u8],
    ) -> lifeboat_core::storage::StorageResult<()> {
        self.0.write(kind, name, data)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> lifeboat_core::storage::StorageResult<()> {
        self.0.delete(kind, name)
    }
    fn stat(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> lifeboat_core::storage::StorageResult<lifeboat_core::storage::ObjectInfo> {
        self.0.stat(kind, name)
    }
}

/// Found by the runs above (check at 20% failures): an index file the storage failed to hand
/// over made check report every blob it lists as "used by a snapshot but not in the index",
/// damage that is not there. Check now stops with the storage's error instead.
#[test]
fn check_stops_when_the_storage_fails_to_hand_over_an_index_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_source(&src, 5, 0);
    let repo = Repo::create(Backend::Local, dir.path(), "main");
    backup_of(&repo.open(), &src).unwrap();
    let failing = repo
        .open()
        .with_storage(Arc::new(Unreadable(repo.base.clone(), ObjectKind::Index)));
    let err = check_all(&failing).expect_err("check cannot vouch for anything without the index");
    let text = message(&err);
    assert!(
        text.contains("index ") && text.contains("timed out"),
        "{text}"
    );
    // The storage answering again, everything is there.
    assert_eq!(check_all(&repo.open()).unwrap().errors(), 0);
}

/// Found by the runs above (forget + prune under failures): a tree the storage failed to hand
/// over stopped prune with "snapshot ... cannot be read; run `lifeboat check`, then `lifeboat
/// repair index` or `repair snapshots`", advice for damage that is not there. The storage's
/// error now comes as it is.
#[test]
fn prune_says_the_storage_failed_rather_than_advise_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_source(&src, 6, 0);
    let repo = Repo::create(Backend::Local, dir.path(), "main");
    backup_of(&repo.open(), &src).unwrap();
    let failing = repo
        .open()
        .with_storage(Arc::new(Unreadable(repo.base.clone(), ObjectKind::Pack)));
    let err = prune(&failing, &PruneOptions::default()).expect_err("no trees, no prune");
    let text = message(&err);
    assert!(
        text.contains("(pack ") && text.contains("timed out"),
        "{text}"
    );
    assert!(!text.contains("repair"), "{text}");
    prune(&repo.open(), &PruneOptions::default()).unwrap();
    assert_eq!(check_all(&repo.open()).unwrap().errors(), 0);
}

/// A proxy in front of the S3 server that holds back the answer to the first `PUT` it
/// forwards for `stall` (the server has stored the object by then), so that the client's
/// request times out. Returns the endpoint and a flag set once that happened.
fn stalling_proxy(server: &str, stall: Duration) -> (String, Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let upstream = server.trim_start_matches("http://").to_string();
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else {
                return;
            };
            // Set when this connection carries the PUT whose answer is held back.
            let hold = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (hold_in, flag_in) = (hold.clone(), flag.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if buf[..n].starts_with(b"PUT ") && !flag_in.swap(true, Ordering::SeqCst) {
                        hold_in.store(true, Ordering::SeqCst);
                    }
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if hold.swap(false, Ordering::SeqCst) {
                        std::thread::sleep(stall);
                        // The client gave up on this connection meanwhile.
                        break;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (endpoint, stalled)
}

/// Found while deciding where retries belong: the S3 client does not retry a create (`PUT`
/// with `If-None-Match: *`) that timed out, since the object may have been stored, so a
/// backup failed on one slow answer. `ObjectStorage::write` now tries again, and an object
/// found whole under the name (stored by the attempt whose answer was lost) counts as done.
#[test]
fn s3_a_put_whose_answer_times_out_is_done() {
    let server = common::garage::garage();
    s3_repository(); // the keys, in this process's environment
    let (endpoint, stalled) = stalling_proxy(&server.endpoint, Duration::from_secs(3));
    let url = format!(
        "s3:{endpoint}/{}/t-{:016x}",
        server.bucket,
        rand::random::<u64>()
    );
    let options = BackendOptions {
        request_timeout: Duration::from_secs(1),
        ..BackendOptions::default()
    };
    let storage =
        lifeboat_backends::open(&RepositoryLocation::parse(&url).unwrap(), &options).unwrap();
    let data = b"a sealed key file".to_vec();
    let name = hex::encode(rand::random::<[u8; 32]>());
    storage
        .write(ObjectKind::Key, &name, &data)
        .expect("the timed-out PUT had stored the object");
    assert!(
        stalled.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy held an answer back"
    );
    assert_eq!(storage.read(ObjectKind::Key, &name).unwrap(), data);
    // Taken before any attempt: still somebody else's.
    assert!(matches!(
        storage.write(ObjectKind::Key, &name, &data),
        Err(lifeboat_core::storage::StorageError::AlreadyExists { .. })
    ));
}
