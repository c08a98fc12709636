//! What a prune would do: which blobs the snapshots still use, and for each pack whether it
//! is kept, deleted (nothing in it is used) or repacked (more of it is unused than the
//! tolerated share). Read-only.

use std::collections::{BTreeMap, HashSet};

use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::index::{Index, IndexFile, IndexPack};
use crate::repository::Repository;
use crate::snapshot::SnapshotEntry;
use crate::storage::{ObjectKind, StorageError};
use crate::tree::{NodeKind, Tree};

/// Every blob the snapshots reference: their trees, all levels down, and the files' blobs.
/// Each distinct tree is read once.
pub fn used_blobs(
    repo: &Repository,
    index: &Index,
    snapshots: &[SnapshotEntry],
) -> Result<HashSet<BlobId>> {
    let mut used = HashSet::new();
    add_used_blobs(repo, index, snapshots, &mut used)?;
    Ok(used)
}

/// Adds the blobs of `snapshots` to `used`; trees already in it are not read again, so adding
/// the snapshots written since an earlier pass costs only their new trees.
pub fn add_used_blobs(
    repo: &Repository,
    index: &Index,
    snapshots: &[SnapshotEntry],
    used: &mut HashSet<BlobId>,
) -> Result<()> {
    for snap in snapshots {
        let mut stack = vec![snap.snapshot.tree];
        while let Some(id) = stack.pop() {
            if !used.insert(id) {
                continue;
            }
            let tree: Tree = repo.load_tree(index, &id).map_err(|e| match e {
                // The storage failing to answer (for now) is no damage to repair: said as
                // it is, for the prune to be run again. A short read stays damage.
                Error::Storage(e @ StorageError::Io { .. }) if e.is_retryable() => {
                    Error::Storage(e)
                }
                e => Error::InvalidInput(format!(
                    "snapshot {} cannot be read ({e}); run `lifeboat check`, then `lifeboat \
                     repair index` or `repair snapshots`, before pruning",
                    snap.id
                )),
            })?;
            for node in &tree.nodes {
                if node.kind == NodeKind::Dir {
                    stack.extend(node.subtree);
                } else {
                    used.extend(node.content.iter().copied());
                }
            }
        }
    }
    Ok(())
}

/// The index files as read, with their names: a prune rewrites those that list a pack it
/// takes out of the index.
#[derive(Default)]
pub struct IndexFiles {
    pub files: Vec<(String, IndexFile)>,
}

impl IndexFiles {
    pub fn load(repo: &Repository) -> Result<IndexFiles> {
        repo.read_index_files(IndexFiles::default, |all, name, file| {
            all.files.push((name.to_string(), file))
        })
    }

    /// Every listed pack, once (a pack listed by two files counts where it is first listed).
    pub fn packs(&self) -> impl Iterator<Item = &IndexPack> {
        let mut seen = HashSet::new();
        self.files
            .iter()
            .flat_map(|(_, file)| file.packs.iter())
            .filter(move |pack| seen.insert(pack.name.as_str()))
    }

    pub fn pack_names(&self) -> HashSet<&str> {
        self.packs().map(|p| p.name.as_str()).collect()
    }

    /// The in-memory index of these files, then of `more` (packs out of the index that are
    /// still readable): a blob's location is the first one added, so these files win.
    pub fn index_with(&self, more: &[&IndexPack]) -> Index {
        let mut index = Index::default();
        for (_, file) in &self.files {
            index.merge_file(file);
        }
        for pack in more {
            index.add_pack(&pack.name, pack.salt, &pack.blobs);
        }
        index.finish();
        index
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackFate {
    Keep,
    /// Nothing in it is used.
    Delete,
    /// Its used blobs are to be copied into new packs, then it is deleted.
    Repack,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PackPlan {
    pub name: String,
    pub size: u64,
    /// Stored bytes of the blobs in it that snapshots use.
    pub used: u64,
    /// Stored bytes of the blobs in it that no snapshot uses (the pack's header and the
    /// rounding of shared frames are neither).
    pub unused: u64,
    pub used_blobs: u64,
    pub unused_blobs: u64,
    pub fate: PackFate,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrunePlan {
    pub packs: Vec<PackPlan>,
    /// Packs in storage that no index lists: from a backup still running, or interrupted.
    pub unindexed: Vec<(String, u64)>,
    /// Blobs used by snapshots that no index or pending prune record lists (check reports
    /// them).
    pub missing_blobs: u64,
}

impl PrunePlan {
    fn sum(&self, fate: PackFate, what: impl Fn(&PackPlan) -> u64) -> u64 {
        self.packs.iter().filter(|p| p.fate == fate).map(what).sum()
    }

    pub fn count(&self, fate: PackFate) -> usize {
        self.packs.iter().filter(|p| p.fate == fate).count()
    }

    /// Bytes freed by deleting and repacking.
    pub fn reclaimed(&self) -> u64 {
        self.sum(PackFate::Delete, |p| p.size)
            + self.sum(PackFate::Repack, |p| p.size.saturating_sub(p.used))
    }

    /// Bytes repacking copies.
    pub fn rewritten(&self) -> u64 {
        self.sum(PackFate::Repack, |p| p.used)
    }

    /// Unused bytes left in kept packs.
    pub fn unused_kept(&self) -> u64 {
        self.sum(PackFate::Keep, |p| p.unused)
    }

    /// Whether carrying it out changes anything.
    pub fn has_work(&self) -> bool {
        self.packs.iter().any(|p| p.fate != PackFate::Keep)
    }

    pub fn fate_of(&self, pack: &str) -> Option<PackFate> {
        self.packs.iter().find(|p| p.name == pack).map(|p| p.fate)
    }
}

/// Whether `pack` holds the copy of `id` that the index resolves to. A blob stored twice (two
/// backups racing) counts as used in one pack only; the other copy is garbage.
pub fn holds_indexed_copy(index: &Index, pack: &str, id: &BlobId) -> bool {
    index
        .get(id)
        .is_some_and(|loc| index.pack(loc.pack).name == pack)
}

/// Plans a prune: a pack none of whose blobs is used is deleted; one whose unused share of its
/// size exceeds `max_unused` (0.05 for 5%) is repacked; the rest are kept. `index` is
/// `files.index_with(...)`; `sizes` the packs in storage.
pub fn plan(
    files: &IndexFiles,
    index: &Index,
    used: &HashSet<BlobId>,
    sizes: &BTreeMap<String, u64>,
    max_unused: f64,
) -> Result<PrunePlan> {
    let mut plan = PrunePlan {
        missing_blobs: used.iter().filter(|id| !index.contains(id)).count() as u64,
        ..PrunePlan::default()
    };
    for pack in files.packs() {
        let name = &pack.name;
        // The index keeps one location per blob: with a listed pack gone, a copy of its
        // blobs in another pack may look unused, and deleting that would lose them.
        let Some(&size) = sizes.get(name) else {
            return Err(Error::InvalidInput(format!(
                "pack {name} is in the index but missing from the repository: run `lifeboat check` \
                 and repair the index before pruning"
            )));
        };
        let (mut used_bytes, mut used_blobs, mut unused_bytes, mut unused_blobs) = (0, 0, 0, 0);
        for entry in &pack.blobs {
            if used.contains(&entry.id) && holds_indexed_copy(index, name, &entry.id) {
                used_bytes += entry.stored_share();
                used_blobs += 1;
            } else {
                unused_bytes += entry.stored_share();
                unused_blobs += 1;
            }
        }
        let unused_share = unused_bytes as f64 / size.max(1) as f64;
        let fate = if used_blobs == 0 {
            PackFate::Delete
        } else if unused_blobs > 0 && unused_share > max_unused {
            PackFate::Repack
        } else {
            PackFate::Keep
        };
        plan.packs.push(PackPlan {
            name: name.clone(),
            size,
            used: used_bytes,
            unused: unused_bytes,
            used_blobs,
            unused_blobs,
            fate,
        });
    }
    let indexed = files.pack_names();
    plan.unindexed = sizes
        .iter()
        .filter(|(name, _)| !indexed.contains(name.as_str()))
        .map(|(name, size)| (name.clone(), *size))
        .collect();
    Ok(plan)
}

/// The packs in storage with their sizes.
pub fn pack_sizes(repo: &Repository) -> Result<BTreeMap<String, u64>> {
    Ok(repo
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|info| (info.name, info.size))
        .collect())
}
