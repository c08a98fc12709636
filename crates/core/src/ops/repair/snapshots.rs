//! `repair snapshots`: snapshots rewritten without what the repository lost.
//!
//! A file is lost when one of its data blobs is not in the index, or is indexed in a pack that
//! is no longer in storage; it is left out of its directory. A directory whose tree cannot be
//! read is kept, empty. A snapshot with anything left out is saved again as a new snapshot
//! (new trees, then the snapshot, which records the original's id); intact snapshots are not
//! touched, and the originals stay unless asked to forget them.

use std::collections::{HashMap, HashSet};

use crossbeam_channel::Sender;

use crate::blob::{BlobId, BlobKind};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ops::backup::{save_tree, with_blob_saver, BlobSaver, SaveJob};
use crate::ops::walk::join;
use crate::repository::Repository;
use crate::snapshot::{Snapshot, SnapshotEntry, SnapshotFilter, SnapshotSpec};
use crate::storage::ObjectKind;
use crate::tree::{Node, NodeKind};

#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsOptions {
    /// The snapshots to repair; none: every snapshot the filter matches.
    pub snapshots: Vec<SnapshotSpec>,
    pub filter: SnapshotFilter,
    /// Delete each original once its repaired snapshot is saved.
    pub forget: bool,
    /// Find and report what is lost, write and delete nothing.
    pub dry_run: bool,
}

/// A path left out of a repaired snapshot, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostPath {
    pub path: String,
    pub reason: String,
    /// The size of a file left out; `None` for a directory kept empty (what it held is not
    /// known).
    pub size: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct RepairedSnapshot {
    pub original: SnapshotEntry,
    /// The new snapshot's id; `None` in a dry run.
    pub new_id: Option<String>,
    /// Files left out, and directories kept empty, in walk order.
    pub lost: Vec<LostPath>,
    /// Whether the original was deleted (`forget`).
    pub forgotten: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsReport {
    pub dry_run: bool,
    /// Snapshots looked at.
    pub checked: usize,
    /// Those with something lost, rewritten (or, in a dry run, to be rewritten).
    pub repaired: Vec<RepairedSnapshot>,
    /// Chosen snapshots not repaired again because an earlier repair kept them as the
    /// original of a repaired snapshot (that would only add a copy of it); with `forget`, they
    /// are deleted now.
    pub already_repaired: Vec<AlreadyRepaired>,
    /// Packs the index lists that are missing from storage: until `repair index` drops them,
    /// backups take their blobs for stored and do not store them again.
    pub indexed_packs_missing: usize,
    /// Snapshot objects that cannot be read at all (nothing in them can be saved); with
    /// `forget` and no snapshots named, they are deleted.
    pub unreadable: Vec<UnreadableRemoved>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableRemoved {
    pub id: String,
    pub error: String,
    pub forgotten: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlreadyRepaired {
    pub original: String,
    pub repaired: String,
    pub forgotten: bool,
}

/// Repairs the chosen snapshots; see the module documentation.
pub fn repair_snapshots(
    repo: &Repository,
    options: &RepairSnapshotsOptions,
) -> Result<RepairSnapshotsReport> {
    if options.forget && !options.dry_run {
        repo.ensure_can_delete("repair snapshots --forget")?;
    }
    let (dry, _lock) = super::prepare(repo, options.dry_run, "repair snapshots")?;
    let repo = dry.as_ref().unwrap_or(repo);
    let listing = repo.snapshot_listing()?;
    let all = listing.readable;
    let mut report = RepairSnapshotsReport {
        dry_run: options.dry_run,
        ..RepairSnapshotsReport::default()
    };
    // An unreadable snapshot object has no tree to repair: all there is to do is to remove
    // it, which a repair of everything does with --forget (recorded, like every forget).
    let remove_unreadable = options.forget && options.snapshots.is_empty();
    for damaged in listing.unreadable {
        if remove_unreadable && !options.dry_run {
            forget(repo, &damaged.id)?;
        }
        report.unreadable.push(UnreadableRemoved {
            id: damaged.id,
            error: damaged.error.to_string(),
            forgotten: remove_unreadable,
        });
    }
    let chosen = without_repaired(choose(&all, options)?, &all, &mut report);
    report.checked = chosen.len();
    if options.forget {
        for done in &mut report.already_repaired {
            forget(repo, &done.original)?;
            done.forgotten = true;
        }
    }
    let index = repo.load_index()?;
    let missing = missing_packs(repo, &index)?;
    report.indexed_packs_missing = missing.iter().filter(|m| **m).count();
    // Trees first, through the backup's saver; the snapshots only once the packs and index
    // files holding their trees are written.
    let rewritten = with_blob_saver(repo, None, |saver, jobs| {
        let mut repairer = Repairer {
            repo,
            index: &index,
            missing: &missing,
            saver,
            jobs,
            clean: HashSet::new(),
        };
        let mut out = Vec::new();
        for entry in chosen.iter() {
            let mut lost = Vec::new();
            let tree = repairer.repair_tree(entry.snapshot.tree, b"/", &mut lost)?;
            if !lost.is_empty() {
                out.push((entry, tree, lost));
            }
        }
        Ok(out)
    })?;
    for (entry, tree, lost) in rewritten {
        report
            .repaired
            .push(save_repaired(repo, entry, tree, lost, options)?);
    }
    Ok(report)
}

/// The snapshots named (each once), or all the filter matches; oldest first.
fn choose(all: &[SnapshotEntry], options: &RepairSnapshotsOptions) -> Result<Vec<SnapshotEntry>> {
    if options.snapshots.is_empty() {
        return Ok(all
            .iter()
            .filter(|e| options.filter.matches(e))
            .cloned()
            .collect());
    }
    let mut ids = HashSet::new();
    for spec in &options.snapshots {
        ids.insert(spec.resolve(all, &options.filter)?.id.as_str());
    }
    Ok(all
        .iter()
        .filter(|e| ids.contains(e.id.as_str()))
        .cloned()
        .collect())
}

/// `chosen` without the snapshots that are the original of another snapshot (noted in the
/// report).
fn without_repaired(
    chosen: Vec<SnapshotEntry>,
    all: &[SnapshotEntry],
    report: &mut RepairSnapshotsReport,
) -> Vec<SnapshotEntry> {
    let repaired: HashMap<&str, &str> = all
        .iter()
        .filter_map(|e| Some((e.snapshot.original.as_deref()?, e.id.as_str())))
        .collect();
    chosen
        .into_iter()
        .filter(|e| match repaired.get(e.id.as_str()) {
            Some(copy) => {
                report.already_repaired.push(AlreadyRepaired {
                    original: e.id.clone(),
                    repaired: copy.to_string(),
                    forgotten: false,
                });
                false
            }
            None => true,
        })
        .collect()
}

/// For each pack the index names (by number), whether it is gone from storage.
fn missing_packs(repo: &Repository, index: &Index) -> Result<Vec<bool>> {
    let stored: HashSet<String> = repo
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|info| info.name)
        .collect();
    Ok(index
        .packs()
        .iter()
        .map(|p| !stored.contains(&p.name))
        .collect())
}

fn save_repaired(
    repo: &Repository,
    original: &SnapshotEntry,
    tree: BlobId,
    lost: Vec<LostPath>,
    options: &RepairSnapshotsOptions,
) -> Result<RepairedSnapshot> {
    let mut snapshot = Snapshot {
        tree,
        original: Some(original.id.clone()),
        ..original.snapshot.clone()
    };
    // What `snapshots` shows as its size and file count: without the files left out.
    let summary = &mut snapshot.summary;
    for size in lost.iter().filter_map(|l| l.size) {
        summary.total_files = summary.total_files.saturating_sub(1);
        summary.total_bytes = summary.total_bytes.saturating_sub(size);
    }
    let id = repo.save_snapshot(&snapshot)?;
    if options.forget {
        forget(repo, &original.id)?;
    }
    Ok(RepairedSnapshot {
        original: original.clone(),
        new_id: (!options.dry_run).then_some(id),
        lost,
        forgotten: options.forget,
    })
}

fn forget(repo: &Repository, id: &str) -> Result<()> {
    crate::ops::forget::delete_snapshots(repo, "repair snapshots", &[id.to_string()])
}

struct Repairer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    missing: &'a [bool],
    saver: &'a BlobSaver<'a>,
    jobs: &'a Sender<SaveJob>,
    /// Trees known to have nothing lost under them.
    clean: HashSet<BlobId>,
}

impl Repairer<'_> {
    /// The id of the tree `id` (at `dir`) with what is lost left out, `id` itself when nothing
    /// is; what is left out is added to `lost`. A damaged tree is walked again for every
    /// snapshot that holds it, so that each snapshot's list is complete; intact ones once.
    fn repair_tree(&mut self, id: BlobId, dir: &[u8], lost: &mut Vec<LostPath>) -> Result<BlobId> {
        if self.clean.contains(&id) {
            return Ok(id);
        }
        let tree = match self.repo.load_tree(self.index, &id) {
            Ok(tree) => tree,
            Err(e) => {
                lost.push(LostPath {
                    path: String::from_utf8_lossy(dir).into_owned(),
                    reason: format!("tree {id} cannot be read ({e}): kept as an empty directory"),
                    size: None,
                });
                return self.save(Vec::new());
            }
        };
        let before = lost.len();
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let path = join(dir, &node.name);
            if node.kind == NodeKind::Dir {
                if let Some(sub) = node.subtree {
                    node.subtree = Some(self.repair_tree(sub, &path, lost)?);
                }
            } else if let Some(reason) = self.lost_content(&node) {
                lost.push(LostPath {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    reason,
                    size: Some(node.size),
                });
                continue;
            }
            nodes.push(node);
        }
        if lost.len() == before {
            self.clean.insert(id);
            return Ok(id);
        }
        self.save(nodes)
    }

    /// Why a file's content is lost, if it is: its first blob that is not indexed, or whose
    /// pack is gone.
    fn lost_content(&self, node: &Node) -> Option<String> {
        node.content.iter().find_map(|id| match self.index.get(id) {
            None => Some(format!("blob {id} is not in the index")),
            Some(loc) if self.missing[loc.pack as usize] => Some(format!(
                "blob {id} is in pack {}, which is missing",
                self.index.pack(loc.pack).name
            )),
            Some(_) => None,
        })
    }

    fn save(&self, nodes: Vec<Node>) -> Result<BlobId> {
        let id = save_tree(self.repo, self.saver, self.jobs, nodes)?;
        // The saver skips a tree the index already lists: that copy must be readable.
        if let Some(loc) = self.index.get(&id) {
            if loc.kind == BlobKind::Tree && self.missing[loc.pack as usize] {
                return Err(Error::InvalidInput(format!(
                    "tree {id} is indexed in pack {}, which is missing, so repaired snapshots \
                     cannot use it: run `lifeboat repair index` first",
                    self.index.pack(loc.pack).name
                )));
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::crypto::kdf::KdfParams;
    use crate::ops::backup::{backup, BackupOptions, BackupProgress, BackupSource};
    use crate::ops::walk::{locate, Located};
    use crate::repository::InitOptions;
    use crate::storage::LocalStorage;

    fn backed_up(dir: &Path) -> (Repository, std::path::PathBuf) {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("keep")).expect("mkdir");
        std::fs::create_dir_all(src.join("data")).expect("mkdir");
        std::fs::write(src.join("keep/empty"), b"").expect("write");
        std::fs::write(src.join("data/a.txt"), b"alpha ".repeat(500)).expect("write");
        let options = InitOptions {
            kdf: KdfParams::generated_key(),
            ..InitOptions::default()
        };
        let storage = Arc::new(LocalStorage::new(dir.join("repo")));
        let repo = Repository::init(storage, &[b'a'; 64], options).expect("init");
        let mut backup_options = BackupOptions::new(BackupSource::Paths(vec![src.clone()]));
        backup_options.count_totals = false;
        backup(&repo, backup_options, &BackupProgress::default()).expect("backup");
        (repo, src)
    }

    fn node(repo: &Repository, tree: BlobId, path: &Path) -> Node {
        let index = repo.load_index().expect("index");
        let path = path.to_str().expect("utf-8").as_bytes();
        match locate(repo, &index, tree, path, "s").expect("located") {
            Located::Node { node, .. } => *node,
            Located::Root(_) => panic!("the root"),
        }
    }

    /// Deletes every pack holding data blobs: trees survive, file contents do not.
    fn delete_data_packs(repo: &Repository) {
        let index = repo.load_index().expect("index");
        let data: HashSet<u32> = index
            .iter()
            .filter(|(_, l)| l.kind == BlobKind::Data)
            .map(|(_, l)| l.pack)
            .collect();
        for pack in data {
            let name = &index.pack(pack).name;
            repo.storage()
                .delete(ObjectKind::Pack, name)
                .expect("delete");
        }
    }

    #[test]
    fn a_lost_file_is_left_out_and_everything_intact_kept_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, src) = backed_up(dir.path());
        let original = repo.snapshots().expect("list").remove(0);
        delete_data_packs(&repo);

        let dry = RepairSnapshotsOptions {
            dry_run: true,
            ..RepairSnapshotsOptions::default()
        };
        let planned = repair_snapshots(&repo, &dry).expect("dry run");
        assert_eq!(planned.repaired.len(), 1);
        assert_eq!(planned.repaired[0].new_id, None);
        assert_eq!(
            repo.snapshots().expect("list").len(),
            1,
            "a dry run writes nothing"
        );

        let report = repair_snapshots(&repo, &RepairSnapshotsOptions::default()).expect("repair");
        assert_eq!(report.checked, 1);
        assert_eq!(report.indexed_packs_missing, 1);
        let repaired = &report.repaired[0];
        let lost_file = src.join("data/a.txt").display().to_string();
        assert_eq!(repaired.lost.len(), 1, "{:?}", repaired.lost);
        assert_eq!(repaired.lost[0].path, lost_file);
        assert!(repaired.lost[0].reason.contains("which is missing"));
        assert_eq!(repaired.lost, planned.repaired[0].lost);

        let all = repo.snapshots().expect("list");
        assert_eq!(all.len(), 2, "the original is kept");
        let new_id = repaired.new_id.as_deref().expect("saved");
        let new = all.iter().find(|e| e.id == new_id).expect("listed");
        assert_eq!(new.snapshot.original.as_deref(), Some(original.id.as_str()));
        assert_eq!(new.snapshot.time, original.snapshot.time);
        assert_eq!(new.snapshot.paths, original.snapshot.paths);
        let (was, now) = (&original.snapshot.summary, &new.snapshot.summary);
        assert_eq!(now.total_files, was.total_files - 1);
        assert_eq!(
            now.total_bytes,
            was.total_bytes - 3000,
            "a.txt's 3000 bytes"
        );
        assert_eq!(repaired.lost[0].size, Some(3000));
        let (old_tree, new_tree) = (original.snapshot.tree, new.snapshot.tree);
        assert_ne!(new_tree, old_tree);
        let data = node(&repo, new_tree, &src.join("data"));
        let index = repo.load_index().expect("index");
        let listing = repo
            .load_tree(&index, &data.subtree.expect("a directory"))
            .expect("the new tree reads");
        assert!(listing.nodes.is_empty(), "the lost file is left out");
        assert_eq!(
            node(&repo, new_tree, &src.join("keep")),
            node(&repo, old_tree, &src.join("keep")),
            "an intact directory keeps its tree"
        );

        let again = repair_snapshots(&repo, &RepairSnapshotsOptions::default()).expect("again");
        assert!(again.repaired.is_empty(), "the repaired snapshot is intact");
        let done = AlreadyRepaired {
            original: original.id.clone(),
            repaired: new_id.to_string(),
            forgotten: false,
        };
        assert_eq!(again.already_repaired, vec![done.clone()]);
        assert_eq!(again.checked, 1);
        assert_eq!(repo.snapshots().expect("list").len(), 2);

        // Asked to forget afterwards, the original goes without another copy being made.
        let forget = RepairSnapshotsOptions {
            forget: true,
            ..RepairSnapshotsOptions::default()
        };
        let last = repair_snapshots(&repo, &forget).expect("forget");
        assert_eq!(
            last.already_repaired,
            vec![AlreadyRepaired {
                forgotten: true,
                ..done
            }]
        );
        let left: Vec<String> = repo
            .snapshots()
            .expect("list")
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, vec![new_id.to_string()]);
    }

    #[test]
    fn an_unreadable_tree_becomes_an_empty_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, _) = backed_up(dir.path());
        let original = repo.snapshots().expect("list").remove(0);
        let index = repo.load_index().expect("index");
        let tree_pack = index.get(&original.snapshot.tree).expect("indexed").pack;
        repo.storage()
            .delete(ObjectKind::Pack, &index.pack(tree_pack).name)
            .expect("delete");

        let options = RepairSnapshotsOptions {
            forget: true,
            ..RepairSnapshotsOptions::default()
        };
        let report = repair_snapshots(&repo, &options).expect("repair");
        let lost = &report.repaired[0].lost;
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].path, "/");
        assert_eq!(lost[0].size, None);
        assert!(lost[0].reason.contains("empty directory"), "{lost:?}");
        let all = repo.snapshots().expect("list");
        assert_eq!(all.len(), 1, "the original is forgotten");
        let root = repo
            .load_tree(&repo.load_index().expect("index"), &all[0].snapshot.tree)
            .expect("the new root reads");
        assert!(root.nodes.is_empty());
    }
}
