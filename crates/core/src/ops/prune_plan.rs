//! What a prune would do: which blobs the snapshots still use, and for each pack whether it
//! is kept, deleted (nothing in it is used) or repacked (more of it is unused than the
//! tolerated share). Read-only; the prune that carries out a plan builds on it.

use std::collections::{BTreeMap, HashSet};

use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::repository::Repository;
use crate::snapshot::SnapshotEntry;
use crate::storage::ObjectKind;
use crate::tree::{NodeKind, Tree};

/// Every blob the snapshots reference: their trees, all levels down, and the files' blobs.
/// Each distinct tree is read once.
pub fn used_blobs(
    repo: &Repository,
    index: &Index,
    snapshots: &[SnapshotEntry],
) -> Result<HashSet<BlobId>> {
    let mut used = HashSet::new();
    for snap in snapshots {
        let mut stack = vec![snap.snapshot.tree];
        while let Some(id) = stack.pop() {
            if !used.insert(id) {
                continue;
            }
            let tree: Tree = repo.load_tree(index, &id)?;
            for node in &tree.nodes {
                if node.kind == NodeKind::Dir {
                    stack.extend(node.subtree);
                } else {
                    used.extend(node.content.iter().copied());
                }
            }
        }
    }
    Ok(used)
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
    pub used_blobs: u64,
    pub unused_blobs: u64,
    pub fate: PackFate,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrunePlan {
    pub packs: Vec<PackPlan>,
    /// Packs in storage that no index lists: from a backup still running, or interrupted.
    pub unindexed: Vec<(String, u64)>,
    /// Blobs used by snapshots that the index does not list (check reports them).
    pub missing_blobs: u64,
}

impl PrunePlan {
    fn sum(&self, fate: PackFate, what: impl Fn(&PackPlan) -> u64) -> u64 {
        self.packs.iter().filter(|p| p.fate == fate).map(what).sum()
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
        self.sum(PackFate::Keep, |p| p.size.saturating_sub(p.used))
    }
}

/// Plans a prune: a pack none of whose blobs is used is deleted; one whose unused share of its
/// size exceeds `max_unused` (0.05 for 5%) is repacked; the rest are kept.
pub fn plan(
    repo: &Repository,
    index: &Index,
    snapshots: &[SnapshotEntry],
    max_unused: f64,
) -> Result<PrunePlan> {
    let used = used_blobs(repo, index, snapshots)?;
    let mut per_pack: BTreeMap<u32, (u64, u64, u64)> = BTreeMap::new();
    for (id, loc) in index.iter() {
        let counts = per_pack.entry(loc.pack).or_default();
        if used.contains(id) {
            counts.0 += loc.stored_share();
            counts.1 += 1;
        } else {
            counts.2 += 1;
        }
    }
    let sizes: BTreeMap<String, u64> = repo
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|info| (info.name, info.size))
        .collect();
    let mut plan = PrunePlan {
        missing_blobs: used.iter().filter(|id| !index.contains(id)).count() as u64,
        ..PrunePlan::default()
    };
    let mut indexed = HashSet::new();
    for (number, (used_bytes, used_blobs, unused_blobs)) in per_pack {
        let name = &index.pack(number).name;
        indexed.insert(name.as_str());
        // The index keeps one location per blob: with a listed pack gone, a copy of its
        // blobs in another pack may look unused, and deleting that would lose them.
        let Some(&size) = sizes.get(name) else {
            return Err(Error::InvalidInput(format!(
                "pack {name} is in the index but missing from the repository: run `lifeboat check` \
                 and repair the index before pruning"
            )));
        };
        let unused_share = size.saturating_sub(used_bytes) as f64 / size.max(1) as f64;
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
            used_blobs,
            unused_blobs,
            fate,
        });
    }
    plan.unindexed = sizes
        .into_iter()
        .filter(|(name, _)| !indexed.contains(name.as_str()))
        .collect();
    Ok(plan)
}
