//! Verifying a repository (`lifeboat check`).
//!
//! Structure, always: every index file opens; every pack the index names exists and its
//! header lists each blob where the index says it is; every snapshot opens, and every tree
//! and file blob its trees reach is indexed and every tree reads. Data, on request: every blob
//! of the chosen packs is read, authenticated, decompressed and checked against its id.
//! Nothing stops at the first problem: each finding names what it concerns (pack, blob,
//! index file, snapshot and path), and damaged data blobs are traced back to the snapshot
//! paths that use them.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::index::{Index, IndexFile, Location};
use crate::pack::read_header;
use crate::repository::Repository;
use crate::snapshot::chain::{chain_breaks, ForgetRecord};
use crate::snapshot::written::WrittenLog;
use crate::snapshot::SnapshotEntry;
use crate::storage::ObjectKind;
use crate::tree::{NodeKind, Tree};

/// Which packs `--read-data` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataSubset {
    All,
    /// About this share of the packs (0 < p <= 100), chosen at random each run.
    Percent(f64),
    /// Part `n` of `of` (1-based): the packs whose name, as a number, is `n - 1` modulo `of`;
    /// running parts 1 to `of` in turn reads every pack once.
    Part {
        n: u32,
        of: u32,
    },
}

impl std::str::FromStr for DataSubset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "{s:?} is not a subset: use a percentage (5%) or a part (2/7: the second of seven)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(DataSubset::Percent(p));
        }
        let (n, of) = s.split_once('/').ok_or_else(bad)?;
        let (n, of): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            of.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || n > of {
            return Err(bad());
        }
        Ok(DataSubset::Part { n, of })
    }
}

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read the data of these packs; `None`: structure only.
    pub read_data: Option<DataSubset>,
    /// The newest snapshots this client wrote, remembered outside the repository: each one
    /// gone without a forget record is reported (a rollback the chain cannot see).
    pub written_here: Option<WrittenLog>,
}

/// Something wrong, and everything it is known to concern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `false` for what is not damage, such as a pack the index does not list yet.
    pub error: bool,
    /// What is damaged or missing: `pack <name>`, `blob <id>`, `index <name>`, `snapshot <id>`.
    pub object: String,
    pub message: String,
    /// Snapshot ids and the paths in them that the damage costs (for blobs and trees).
    pub affects: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub index_files: usize,
    pub packs: usize,
    pub blobs: usize,
    pub snapshots: usize,
    pub trees: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
}

impl CheckReport {
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.error).count()
    }

    fn note(&mut self, object: String, message: impl Into<String>) {
        self.findings.push(Finding {
            error: false,
            object,
            message: message.into(),
            affects: Vec::new(),
        });
    }

    fn error(&mut self, object: String, message: impl Into<String>) {
        self.findings.push(Finding {
            error: true,
            object,
            message: message.into(),
            affects: Vec::new(),
        });
    }
}

pub fn check(repo: &Repository, options: &CheckOptions) -> Result<CheckReport> {
    // A maintenance lock: forget, prune and repair must not delete what is being checked;
    // backups may run, and what they add after the snapshots are listed is not looked at.
    let _lock = repo.lock(crate::lock::LockKind::Maintenance, "check")?;
    check_unlocked(repo, options)
}

/// [`check`] without taking the maintenance lock, for a caller that holds it already or that
/// cannot write a lock at all (a read-only repository): a prune that runs meanwhile may then
/// make the packs it deletes look missing.
pub fn check_unlocked(repo: &Repository, options: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // Snapshots before the index: a backup writes its index files before its snapshot, so
    // every snapshot listed here has its blobs in an index file listed below.
    let (snapshots, stored) = load_snapshots(repo, &mut report)?;
    report.snapshots = snapshots.len();
    check_chain(repo, &snapshots, &stored, options, &mut report)?;
    let index = load_index(repo, &mut report)?;
    let by_pack = blobs_by_pack(&index);
    report.packs = by_pack.len();
    report.blobs = index.blob_count();
    let damaged_packs = check_packs(repo, &index, &by_pack, &mut report)?;
    // Blobs found damaged or missing, with the finding to attach their users to.
    let mut bad_blobs: HashMap<BlobId, usize> = HashMap::new();
    for (pack, at) in &damaged_packs {
        for (id, _) in &by_pack[pack] {
            bad_blobs.insert(*id, *at);
        }
    }
    let present: HashSet<String> = by_pack
        .keys()
        .filter(|p| !damaged_packs.contains_key(*p))
        .cloned()
        .collect();
    if let Some(subset) = options.read_data {
        read_data(
            repo,
            &index,
            &by_pack,
            &present,
            subset,
            &mut report,
            &mut bad_blobs,
        );
    }
    walk_snapshots(repo, &index, &snapshots, &mut bad_blobs, &mut report);
    Ok(report)
}

fn load_index(repo: &Repository, report: &mut CheckReport) -> Result<Index> {
    let storage = repo.storage();
    let mut index = Index::default();
    for info in storage.list(ObjectKind::Index)? {
        let object = format!("index {}", info.name);
        let opened = storage
            .read(ObjectKind::Index, &info.name)
            .map_err(Error::from)
            .and_then(|data| {
                content_matches_name(&data, &object, &info.name)?;
                IndexFile::open(&repo.keys().seal, data, &object)
            });
        match opened {
            Ok(file) => {
                index.merge_file(&file);
                report.index_files += 1;
            }
            // The storage failed to hand the file over (after the backend's retries): every
            // blob it lists would be reported missing, damage that is not there. No report
            // is better than a wrong one; a damaged file (below) is damage, and reported.
            Err(Error::Storage(e)) => return Err(Error::Storage(e)),
            Err(e) => report.error(object, format!("cannot be read: {e}")),
        }
    }
    index.finish();
    Ok(index)
}

/// The index's blobs grouped by pack name.
fn blobs_by_pack(index: &Index) -> BTreeMap<String, Vec<(BlobId, Location)>> {
    let mut by_pack: BTreeMap<String, Vec<(BlobId, Location)>> = BTreeMap::new();
    for (id, loc) in index.iter() {
        by_pack
            .entry(index.pack(loc.pack).name.clone())
            .or_default()
            .push((*id, *loc));
    }
    by_pack
}

/// Every indexed pack exists and its header agrees with the index; packs in storage that the
/// index does not list are noted. Returns the indexed packs that are missing or whose header
/// is damaged, each with its finding.
fn check_packs(
    repo: &Repository,
    index: &Index,
    by_pack: &BTreeMap<String, Vec<(BlobId, Location)>>,
    report: &mut CheckReport,
) -> Result<HashMap<String, usize>> {
    let storage = repo.storage();
    let stored: HashSet<String> = storage
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|info| info.name)
        .collect();
    let mut damaged = HashMap::new();
    for (pack, blobs) in by_pack {
        let object = format!("pack {pack}");
        if !stored.contains(pack) {
            damaged.insert(pack.clone(), report.findings.len());
            report.error(
                object,
                format!("is missing: the index lists {} blob(s) in it", blobs.len()),
            );
            continue;
        }
        let entries = match read_header(storage.as_ref(), &repo.keys().seal, pack) {
            Ok((_, entries)) => entries,
            Err(e) => {
                damaged.insert(pack.clone(), report.findings.len());
                report.error(object, format!("header cannot be read: {e}"));
                continue;
            }
        };
        let header: HashMap<BlobId, _> = entries.into_iter().map(|e| (e.id, e)).collect();
        let disagree = blobs
            .iter()
            .filter(|(id, loc)| header.get(id) != Some(&loc.entry(*id)))
            .count();
        if disagree > 0 {
            damaged.insert(pack.clone(), report.findings.len());
            report.error(
                object,
                format!("header disagrees with the index about {disagree} blob(s)"),
            );
        }
    }
    let indexed: HashSet<&str> = index.packs().iter().map(|p| p.name.as_str()).collect();
    let condemned = crate::ops::prune::condemned_packs(repo)?;
    for pack in stored.iter().filter(|p| !indexed.contains(p.as_str())) {
        let message = if condemned.contains(pack) {
            "is waiting to be deleted by prune once the backups that were running when it \
             was taken out of the index have ended"
        } else {
            "is not in the index (from a backup still running or interrupted; prune removes \
             it once no backup runs)"
        };
        report.findings.push(Finding {
            error: false,
            object: format!("pack {pack}"),
            message: message.into(),
            affects: Vec::new(),
        });
    }
    Ok(damaged)
}

/// The snapshots that open, sorted by time, and the names of all that are stored.
fn load_snapshots(
    repo: &Repository,
    report: &mut CheckReport,
) -> Result<(Vec<SnapshotEntry>, HashSet<String>)> {
    let storage = repo.storage();
    let mut out = Vec::new();
    let mut stored = HashSet::new();
    for info in storage.list(ObjectKind::Snapshot)? {
        stored.insert(info.name.clone());
        let object = format!("snapshot {}", info.name);
        let data = match storage.read(ObjectKind::Snapshot, &info.name) {
            Err(e) if e.is_not_found() => continue, // forgotten since it was listed
            other => other,
        };
        let opened = data.map_err(Error::from).and_then(|data| {
            content_matches_name(&data, &object, &info.name)?;
            crate::snapshot::Snapshot::open(&repo.keys().seal, &data, &object)
        });
        match opened {
            Ok(snapshot) => out.push(SnapshotEntry {
                id: info.name,
                snapshot,
            }),
            Err(e) => report.error(object, format!("cannot be read: {e}")),
        }
    }
    out.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
    Ok((out, stored))
}

/// Names of snapshots, index files and forget records are the BLAKE3 of their bytes: a
/// different hash means the object was replaced under its name.
fn content_matches_name(data: &[u8], object: &str, name: &str) -> Result<()> {
    let hash = blake3::hash(data).to_hex();
    if hash.as_str() == name {
        return Ok(());
    }
    Err(Error::format(
        object,
        format!("its content hashes to {hash}, not to its name: it was rewritten in storage"),
    ))
}

/// Reports every snapshot that a later one names as its previous, that is gone, and that no
/// forget accounts for (`snapshot::chain`).
fn check_chain(
    repo: &Repository,
    snapshots: &[SnapshotEntry],
    stored: &HashSet<String>,
    options: &CheckOptions,
    report: &mut CheckReport,
) -> Result<()> {
    let storage = repo.storage();
    let mut forgotten = HashSet::new();
    for info in storage.list(ObjectKind::Forgotten)? {
        let object = format!("forget record {}", info.name);
        let opened = storage
            .read(ObjectKind::Forgotten, &info.name)
            .map_err(Error::from)
            .and_then(|data| {
                content_matches_name(&data, &object, &info.name)?;
                ForgetRecord::open(&repo.keys().seal, &data, &object)
            });
        match opened {
            Ok(record) => {
                // A forget that stopped between its record and its deletes: not damage, but
                // the record no longer vouches for what it names if that goes later.
                let still: Vec<&String> = record
                    .snapshots
                    .iter()
                    .filter(|id| stored.contains(*id))
                    .collect();
                if !still.is_empty() {
                    report.note(
                        object.clone(),
                        format!(
                            "names snapshots that are still stored (a {} that did not finish): {}",
                            record.operation,
                            still
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                forgotten.extend(record.snapshots);
            }
            Err(e) => report.error(object, format!("cannot be read: {e}")),
        }
    }
    let breaks = chain_breaks(snapshots, stored, &forgotten);
    for gap in &breaks {
        let named_by = snapshots.iter().find(|e| e.id == gap.named_by);
        let source = named_by
            .map(|e| {
                format!(
                    " (host {}, paths {}, taken {})",
                    e.snapshot.hostname,
                    e.snapshot.paths.join(" "),
                    e.snapshot.time.to_rfc3339()
                )
            })
            .unwrap_or_default();
        report.error(
            format!("snapshot {}", gap.missing),
            format!(
                "is missing: snapshot {}{source} names it as the snapshot before it, and no \
                 forget removed it: it was deleted or rewritten outside of lifeboat (or \
                 forgotten by lifeboat 0.2.0 or older, which kept no record: the two cannot \
                 be told apart)",
                gap.named_by
            ),
        );
    }
    if let Some(written) = &options.written_here {
        for gone in written.missing(stored, &forgotten, snapshots) {
            if breaks.iter().any(|b| b.missing == gone.id) {
                continue; // reported above, with the snapshot that names it
            }
            report.error(
                format!("snapshot {}", gone.id),
                format!(
                    "is missing: this client wrote it ({} of {}, taken {}), and no forget \
                     removed it: the storage deleted it, or handed back an older copy of the \
                     repository",
                    gone.source,
                    gone.paths.join(" "),
                    gone.time.to_rfc3339()
                ),
            );
        }
    }
    Ok(())
}

/// Which packs of `packs` (sorted names) the subset takes.
pub fn choose_packs<'p>(packs: &[&'p str], subset: DataSubset) -> Vec<&'p str> {
    match subset {
        DataSubset::All => packs.to_vec(),
        DataSubset::Part { n, of } if of > 0 => packs
            .iter()
            .filter(|p| {
                let number = p
                    .get(..8)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                number % of == n.wrapping_sub(1) % of
            })
            .copied()
            .collect(),
        DataSubset::Part { .. } => Vec::new(),
        DataSubset::Percent(p) => {
            use rand::seq::SliceRandom;
            let want = ((packs.len() as f64) * p / 100.0).ceil() as usize;
            let mut chosen = packs.to_vec();
            chosen.shuffle(&mut rand::thread_rng());
            chosen.truncate(want);
            chosen.sort_unstable();
            chosen
        }
    }
}

fn read_data(
    repo: &Repository,
    index: &Index,
    by_pack: &BTreeMap<String, Vec<(BlobId, Location)>>,
    present: &HashSet<String>,
    subset: DataSubset,
    report: &mut CheckReport,
    bad_blobs: &mut HashMap<BlobId, usize>,
) {
    let names: Vec<&str> = by_pack
        .keys()
        .filter(|p| present.contains(*p))
        .map(String::as_str)
        .collect();
    let chosen = choose_packs(&names, subset);
    // Authenticating and decompressing is CPU work: the packs are shared out over the cores
    // (a pack to one worker, so its shared frames are opened once), and the findings put
    // back in pack order.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (mut results, panicked): (Vec<(usize, PackData)>, bool) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let (mut scratch, mut blob) = (Vec::new(), Vec::new());
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(pack) = chosen.get(at) else { break };
                        let data =
                            read_pack_data(repo, index, &by_pack[*pack], &mut scratch, &mut blob);
                        done.push((at, data));
                    }
                    done
                })
            })
            .collect();
        let mut results = Vec::new();
        let mut panicked = false;
        for handle in handles {
            match handle.join() {
                Ok(done) => results.extend(done),
                Err(_) => panicked = true,
            }
        }
        (results, panicked)
    });
    if panicked {
        // The packs that worker held are unread: never let that pass for "no errors".
        report.error(
            "check".to_string(),
            "a reader thread failed, so not every chosen pack was read; run check again",
        );
    }
    results.sort_by_key(|(at, _)| *at);
    for (at, data) in results {
        report.packs_read += 1;
        report.bytes_read += data.bytes_read;
        for (id, error) in data.damaged {
            bad_blobs.insert(id, report.findings.len());
            // A storage that failed to answer is not damage found.
            let what = match error {
                Error::Storage(_) => "could not be read",
                _ => "is damaged",
            };
            report.error(
                format!("blob {}", id.to_hex()),
                format!("in pack {} {what}: {error}", chosen[at]),
            );
        }
    }
}

/// What reading one pack's blobs found.
#[derive(Default)]
struct PackData {
    bytes_read: u64,
    damaged: Vec<(BlobId, Error)>,
}

fn read_pack_data(
    repo: &Repository,
    index: &Index,
    blobs: &[(BlobId, Location)],
    scratch: &mut Vec<u8>,
    blob: &mut Vec<u8>,
) -> PackData {
    let mut data = PackData::default();
    // In pack order, so shared frames are opened once and reads move forward.
    let mut ordered: Vec<&(BlobId, Location)> = blobs.iter().collect();
    ordered.sort_by_key(|(_, loc)| (loc.offset, loc.frame_offset));
    let mut frames = HashSet::new();
    for (id, loc) in ordered {
        if frames.insert(loc.offset) {
            data.bytes_read += u64::from(loc.length);
        }
        if let Err(e) = repo.read_blob_into(index, id, scratch, blob) {
            data.damaged.push((*id, e));
        }
    }
    data
}

/// Walks every snapshot's trees, each distinct tree once: trees must be indexed and readable,
/// file blobs indexed. Then, if anything is damaged or missing, names every snapshot and path
/// that uses it.
fn walk_snapshots(
    repo: &Repository,
    index: &Index,
    snapshots: &[SnapshotEntry],
    bad_blobs: &mut HashMap<BlobId, usize>,
    report: &mut CheckReport,
) {
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for snap in snapshots {
        let mut stack = vec![snap.snapshot.tree];
        while let Some(tree_id) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree: Tree = match repo.load_tree(index, &tree_id) {
                Ok(tree) => tree,
                Err(e) => {
                    bad_blobs.insert(tree_id, report.findings.len());
                    report.error(
                        format!("tree {}", tree_id.to_hex()),
                        format!("cannot be read: {e}"),
                    );
                    continue;
                }
            };
            report.trees += 1;
            for node in &tree.nodes {
                stack.extend(node.subtree.filter(|_| node.kind == NodeKind::Dir));
                for id in &node.content {
                    if !index.contains(id) && !bad_blobs.contains_key(id) {
                        bad_blobs.insert(*id, report.findings.len());
                        report.error(
                            format!("blob {}", id.to_hex()),
                            "is used by a snapshot but not in the index",
                        );
                    }
                }
            }
        }
    }
    if bad_blobs.is_empty() {
        return;
    }
    let mut tracer = Tracer {
        repo,
        index,
        bad_blobs,
        clean: HashSet::new(),
        report,
    };
    for snap in snapshots {
        tracer.trace(snap, &snap.snapshot.tree, b"/");
    }
}

/// Names the users of damaged blobs: descends only into trees not yet known to be clean, so
/// the cost grows with the damage, not with the number of snapshots times the tree.
struct Tracer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    bad_blobs: &'a HashMap<BlobId, usize>,
    clean: HashSet<BlobId>,
    report: &'a mut CheckReport,
}

impl Tracer<'_> {
    /// Whether anything under `tree_id` (itself included) is damaged. Trees are named by the
    /// hash of their content, so they cannot contain themselves: the recursion ends.
    fn trace(&mut self, snap: &SnapshotEntry, tree_id: &BlobId, dir: &[u8]) -> bool {
        if self.clean.contains(tree_id) {
            return false;
        }
        if let Some(&at) = self.bad_blobs.get(tree_id) {
            affect(self.report, at, snap, dir);
            return true;
        }
        let Ok(tree) = self.repo.load_tree(self.index, tree_id) else {
            return true; // reported by the walk
        };
        let mut damaged = false;
        for node in &tree.nodes {
            let path = crate::ops::walk::join(dir, &node.name);
            if node.kind == NodeKind::Dir {
                if let Some(sub) = node.subtree {
                    damaged |= self.trace(snap, &sub, &path);
                }
                continue;
            }
            for id in &node.content {
                if let Some(&at) = self.bad_blobs.get(id) {
                    affect(self.report, at, snap, &path);
                    damaged = true;
                }
            }
        }
        if !damaged {
            self.clean.insert(*tree_id);
        }
        damaged
    }
}

/// Adds (snapshot, path) to a finding's list; a file that uses a blob twice in a row is
/// listed once.
fn affect(report: &mut CheckReport, at: usize, snap: &SnapshotEntry, path: &[u8]) {
    let entry = (snap.id.clone(), String::from_utf8_lossy(path).into_owned());
    let affects = &mut report.findings[at].affects;
    if affects.last() != Some(&entry) {
        affects.push(entry);
    }
}
