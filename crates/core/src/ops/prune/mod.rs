//! Prune: deletes the data no snapshot uses, while backups keep running.
//!
//! A backup deduplicates against the index it read when it started, so a blob that no
//! snapshot uses now may be used by the snapshot a running backup is about to write. Prune
//! therefore works in two phases (docs/format.md, "Prune"):
//!
//! 1. **Condemn.** Copy the used blobs of mostly-unused packs into new packs, write index files
//!    without the packs to delete, record those packs (`condemned/`), remove the old index
//!    files, and record which runs held locks at that moment.
//! 2. **Delete.** Once none of those runs holds its lock any more, list the snapshots again;
//!    a condemned pack holding a blob that some snapshot now uses and no indexed pack holds
//!    is indexed again, the others are deleted. With no run alive, this follows at once;
//!    otherwise a later prune does it.
//!
//! Packs that no index lists (an interrupted backup's) are deleted only while no backup runs.

pub(crate) mod condemned;
mod merge;
mod plan;
mod repack;

use std::collections::HashSet;

use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::index::{Index, IndexFile, IndexPack};
use crate::lock::{self, LockKind, LockRecord};
use crate::pack::read_header;
use crate::repository::Repository;
use crate::storage::ObjectKind;

pub use condemned::Holders;
pub use plan::{PackFate, PackPlan, PrunePlan};

use condemned::Condemned;
use plan::{holds_indexed_copy, IndexFiles};
use repack::Repacker;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// A pack whose unused share of its size exceeds this (0.05 = 5%) is repacked.
    pub max_unused: f64,
    /// Plan and report, change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            dry_run: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    pub plan: PrunePlan,
    pub snapshots: usize,
    pub packs_written: usize,
    pub bytes_written: u64,
    pub index_files_written: usize,
    pub index_files_removed: usize,
    /// Packs taken out of the index by this run.
    pub packs_condemned: usize,
    pub packs_deleted: usize,
    pub bytes_deleted: u64,
    /// Condemned or unindexed packs indexed again because a snapshot uses their blobs.
    pub packs_reindexed: usize,
    /// Condemned packs still waiting for runs that may rely on them.
    pub packs_waiting: usize,
    /// Unindexed packs left alone because backups are running.
    pub unindexed_waiting: usize,
    /// The runs that deletion waits for.
    pub waiting_for: Vec<String>,
    /// Unindexed packs whose header could not be read, with the reason; left in place.
    pub unreadable: Vec<String>,
    /// Temporary files of writers killed mid-write, removed once a day old.
    pub temporaries_removed: u64,
}

/// No writer keeps a temporary file this long: a pack is staged for seconds to minutes.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Plans and (unless a dry run) carries out a prune; see the module documentation.
pub fn prune(repo: &Repository, options: &PruneOptions) -> Result<PruneReport> {
    if !options.dry_run {
        repo.ensure_can_delete("prune")?;
    }
    let _lock = (!options.dry_run)
        .then(|| repo.lock(LockKind::Maintenance, "prune"))
        .transpose()?;
    let mut report = PruneReport::default();
    let loaded = Loaded::read(repo)?;
    let sizes = plan::pack_sizes(repo)?;
    report.snapshots = loaded.snapshot_ids.len();
    report.plan = plan::plan(
        &loaded.files,
        &loaded.index,
        &loaded.used,
        &sizes,
        options.max_unused,
    )?;
    let recorded = loaded.recorded_packs();
    report
        .plan
        .unindexed
        .retain(|(name, _)| !recorded.contains(name.as_str()));
    if options.dry_run {
        return Ok(report);
    }
    if report.plan.has_work() {
        condemn(repo, &loaded, &mut report)?;
    }
    let merged = merge::merge_small_index_files(repo)?;
    report.index_files_written += merged.written;
    report.index_files_removed += merged.removed;
    let Loaded {
        snapshot_ids,
        mut used,
        ..
    } = loaded;
    let mut seen = snapshot_ids;
    finish_condemned(repo, &mut used, &mut seen, &mut report)?;
    delete_unindexed(repo, &mut used, &mut seen, &mut report)?;
    report.temporaries_removed = repo.storage().remove_stale_temporaries(STALE_TEMPORARY)?;
    Ok(report)
}

/// What phase 1 reads: snapshots first (a backup writes its index files before its snapshot,
/// so every listed snapshot's blobs are in an index file listed after), then the index.
struct Loaded {
    records: Vec<Condemned>,
    snapshot_ids: HashSet<String>,
    files: IndexFiles,
    /// The index files' blobs, then those of packs condemned earlier (still readable).
    index: Index,
    used: HashSet<BlobId>,
}

impl Loaded {
    fn read(repo: &Repository) -> Result<Loaded> {
        let records = condemned::list(repo)?;
        let snapshots = every_snapshot(repo)?;
        let files = IndexFiles::load(repo)?;
        let index = files.index_with(&record_packs(&records));
        let used = plan::used_blobs(repo, &index, &snapshots)?;
        Ok(Loaded {
            records,
            snapshot_ids: snapshots.into_iter().map(|s| s.id).collect(),
            files,
            index,
            used,
        })
    }

    fn recorded_packs(&self) -> HashSet<&str> {
        record_packs(&self.records)
            .into_iter()
            .map(|p| p.name.as_str())
            .collect()
    }
}

/// The names of the packs that pending prune records hold out of the index.
pub fn condemned_packs(repo: &Repository) -> Result<HashSet<String>> {
    Ok(condemned::list(repo)?
        .into_iter()
        .flat_map(|r| r.packs.into_iter().map(|p| p.name))
        .collect())
}

fn record_packs(records: &[Condemned]) -> Vec<&IndexPack> {
    records.iter().flat_map(|r| r.packs.iter()).collect()
}

/// Phase 1. Each step is durable before the next: new packs, index files naming them and
/// leaving out the condemned packs, the record of those packs, removal of the old index
/// files, and last the runs that may have read them.
fn condemn(repo: &Repository, loaded: &Loaded, report: &mut PruneReport) -> Result<()> {
    let plan = &report.plan;
    let mut repacker = Repacker::new(repo);
    for pack in loaded.files.packs() {
        if plan.fate_of(&pack.name) == Some(PackFate::Repack) {
            repacker.copy(pack, |e| {
                loaded.used.contains(&e.id) && holds_indexed_copy(&loaded.index, &pack.name, &e.id)
            })?;
        }
    }
    let (new_files, bytes_written) = repacker.finish()?;
    report.bytes_written = bytes_written;
    report.packs_written = new_files.iter().map(|f| f.packs.len()).sum();

    let condemned: HashSet<&str> = plan
        .packs
        .iter()
        .filter(|p| p.fate != PackFate::Keep)
        .map(|p| p.name.as_str())
        .collect();
    for file in &new_files {
        repo.save_index_file(file)?;
        report.index_files_written += 1;
    }
    let mut replaced = Vec::new();
    for (name, file) in &loaded.files.files {
        if !file
            .packs
            .iter()
            .any(|p| condemned.contains(p.name.as_str()))
        {
            continue;
        }
        let kept = IndexFile {
            version: file.version,
            packs: file
                .packs
                .iter()
                .filter(|p| !condemned.contains(p.name.as_str()))
                .cloned()
                .collect(),
        };
        if !kept.packs.is_empty() {
            repo.save_index_file(&kept)?;
            report.index_files_written += 1;
        }
        replaced.push(name);
    }

    let packs: Vec<IndexPack> = loaded
        .files
        .packs()
        .filter(|p| condemned.contains(p.name.as_str()))
        .cloned()
        .collect();
    report.packs_condemned = packs.len();
    let record = condemned::write_packs(repo, packs)?;
    for name in replaced {
        repo.storage().delete_if_present(ObjectKind::Index, name)?;
        report.index_files_removed += 1;
    }
    // Every run that read the old index files took its lock before it listed them, so it is
    // among the locks alive now.
    let live = live_locks(repo)?;
    condemned::write_holders(repo, &record, &Holders::of(&live))
}

/// Phase 2, for every record whose runs are all over (this run's, and earlier prunes').
fn finish_condemned(
    repo: &Repository,
    used: &mut HashSet<BlobId>,
    seen: &mut HashSet<String>,
    report: &mut PruneReport,
) -> Result<()> {
    condemned::remove_orphans(repo)?;
    let records = condemned::list(repo)?;
    if records.is_empty() {
        return Ok(());
    }
    let live = live_locks(repo)?;
    let mut ready = Vec::new();
    for record in &records {
        let holders = match &record.holders {
            Some(holders) => holders.clone(),
            None => {
                let holders = Holders::of(&live);
                condemned::write_holders(repo, &record.name, &holders)?;
                holders
            }
        };
        let running = holders.still_running(&live);
        if running.is_empty() {
            ready.push(record);
        } else {
            report.packs_waiting += record.packs.len();
            report.waiting_for.extend(running);
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    // The snapshots are listed only now, after the locks: whatever those runs wrote is in.
    let current = Current::read(repo, &record_packs(&records), used, seen)?;
    let mut keep: HashSet<&str> = HashSet::new();
    let mut rescue = IndexFile::new(repo.pack_version());
    for pack in ready.iter().flat_map(|r| r.packs.iter()) {
        if current.indexed.contains(&pack.name) {
            // Indexed again meanwhile (`repair index`): no longer this record's to delete.
            keep.insert(&pack.name);
        } else if current.needs(used, &pack.blobs) && keep.insert(&pack.name) {
            rescue.packs.push(pack.clone());
        }
    }
    save_rescued(repo, rescue, report)?;
    for record in ready {
        for pack in &record.packs {
            if !keep.contains(pack.name.as_str()) {
                delete_pack(repo, &pack.name, report)?;
            }
        }
        condemned::remove(repo, &record.name)?;
    }
    Ok(())
}

/// Packs no index or record lists: an interrupted backup's, or a running one's. Deleted only
/// when no backup runs: packs are listed before the locks and the index after them, so a
/// backup that finished in between has its index files read, and one still running is seen.
fn delete_unindexed(
    repo: &Repository,
    used: &mut HashSet<BlobId>,
    seen: &mut HashSet<String>,
    report: &mut PruneReport,
) -> Result<()> {
    let packs = plan::pack_sizes(repo)?;
    let live = live_locks(repo)?;
    let records = condemned::list(repo)?;
    let current = Current::read_index(repo, &record_packs(&records))?;
    let recorded: HashSet<&str> = record_packs(&records)
        .into_iter()
        .map(|p| p.name.as_str())
        .collect();
    let unindexed: Vec<(&String, &u64)> = packs
        .iter()
        .filter(|(name, _)| !current.indexed.contains(*name) && !recorded.contains(name.as_str()))
        .collect();
    if unindexed.is_empty() {
        return Ok(());
    }
    if !live.is_empty() {
        report.unindexed_waiting = unindexed.len();
        report
            .waiting_for
            .extend(live.iter().map(LockRecord::describe));
        return Ok(());
    }
    let current = current.with_snapshots(repo, used, seen)?;
    let mut rescue = IndexFile::new(repo.pack_version());
    for (name, _) in unindexed {
        let (salt, blobs) = match read_header(repo.storage().as_ref(), &repo.keys().seal, name) {
            Ok(header) => header,
            Err(e) => {
                report.unreadable.push(format!("pack {name}: {e}"));
                continue;
            }
        };
        if current.needs(used, &blobs) {
            rescue.packs.push(IndexPack {
                name: name.clone(),
                salt,
                blobs,
            });
        } else {
            delete_pack(repo, name, report)?;
        }
    }
    save_rescued(repo, rescue, report)
}

/// The index as it is now (index files, then condemned packs), for phase 2's decisions.
struct Current {
    index: Index,
    indexed: HashSet<String>,
}

impl Current {
    fn read_index(repo: &Repository, condemned: &[&IndexPack]) -> Result<Current> {
        let files = IndexFiles::load(repo)?;
        let indexed = files.pack_names().into_iter().map(String::from).collect();
        Ok(Current {
            index: files.index_with(condemned),
            indexed,
        })
    }

    /// The index, and `used` extended by the snapshots written since `seen`.
    fn read(
        repo: &Repository,
        condemned: &[&IndexPack],
        used: &mut HashSet<BlobId>,
        seen: &mut HashSet<String>,
    ) -> Result<Current> {
        let snapshots = every_snapshot(repo)?;
        let current = Self::read_index(repo, condemned)?;
        current.add_snapshots(repo, snapshots, used, seen)?;
        Ok(current)
    }

    fn with_snapshots(
        self,
        repo: &Repository,
        used: &mut HashSet<BlobId>,
        seen: &mut HashSet<String>,
    ) -> Result<Current> {
        let snapshots = every_snapshot(repo)?;
        self.add_snapshots(repo, snapshots, used, seen)?;
        Ok(self)
    }

    fn add_snapshots(
        &self,
        repo: &Repository,
        snapshots: Vec<crate::snapshot::SnapshotEntry>,
        used: &mut HashSet<BlobId>,
        seen: &mut HashSet<String>,
    ) -> Result<()> {
        let new: Vec<_> = snapshots
            .into_iter()
            .filter(|s| seen.insert(s.id.clone()))
            .collect();
        plan::add_used_blobs(repo, &self.index, &new, used)
    }

    /// Whether a pack holding `blobs` must stay: some snapshot uses one of them and no
    /// indexed pack holds it.
    fn needs(&self, used: &HashSet<BlobId>, blobs: &[crate::pack::PackEntry]) -> bool {
        blobs
            .iter()
            .any(|e| used.contains(&e.id) && !self.is_indexed(&e.id))
    }

    fn is_indexed(&self, id: &BlobId) -> bool {
        self.index
            .get(id)
            .is_some_and(|loc| self.indexed.contains(&self.index.pack(loc.pack).name))
    }
}

fn save_rescued(repo: &Repository, rescue: IndexFile, report: &mut PruneReport) -> Result<()> {
    if rescue.packs.is_empty() {
        return Ok(());
    }
    report.packs_reindexed += rescue.packs.len();
    repo.save_index_file(&rescue)?;
    report.index_files_written += 1;
    Ok(())
}

fn live_locks(repo: &Repository) -> Result<Vec<LockRecord>> {
    lock::live_holders(repo.storage().as_ref(), &repo.keys().seal)
}

fn delete_pack(repo: &Repository, name: &str, report: &mut PruneReport) -> Result<()> {
    let size = match repo.storage().stat(ObjectKind::Pack, name) {
        Ok(info) => info.size,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if repo.storage().delete_if_present(ObjectKind::Pack, name)? {
        report.packs_deleted += 1;
        report.bytes_deleted += size;
    }
    Ok(())
}

/// Prune deletes what no snapshot uses: with a snapshot it cannot read, it cannot know what
/// that is, so it stops before deleting anything.
fn every_snapshot(repo: &Repository) -> Result<Vec<crate::snapshot::SnapshotEntry>> {
    let listing = repo.snapshot_listing()?;
    if let Some(damaged) = listing.unreadable.first() {
        return Err(Error::InvalidInput(format!(
            "prune must read every snapshot, and snapshot {} cannot be read ({}); nothing was \
             deleted. If it is lost for good, remove it with `lifeboat forget {}`, then prune",
            damaged.id, damaged.error, damaged.id
        )));
    }
    Ok(listing.readable)
}
