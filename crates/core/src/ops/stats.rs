//! Repository statistics (`lifeboat stats`): what the chosen snapshots hold, and what that
//! costs in the repository.

use std::collections::{HashMap, HashSet};

use crate::blob::BlobId;
use crate::error::Result;
use crate::index::Index;
use crate::repository::Repository;
use crate::snapshot::SnapshotEntry;
use crate::tree::{NodeKind, Tree};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub snapshots: usize,
    /// Files and other non-directory entries, counted once per snapshot that holds them.
    pub files: u64,
    pub dirs: u64,
    /// What restoring every chosen snapshot would write: file sizes, per snapshot.
    pub restore_size: u64,
    /// Distinct blobs (data and trees) the snapshots reference.
    pub blobs: u64,
    /// Their plaintext size.
    pub raw_size: u64,
    /// Their share of the packs: a blob alone in its frame counts the frame's stored size;
    /// a blob in a shared frame, the frame's stored size in proportion to its plaintext.
    pub stored_size: u64,
    /// Packs holding at least one of the blobs.
    pub packs: u64,
    /// Blobs the trees name that the index does not list (a damaged repository: see check).
    pub unindexed_blobs: u64,
}

impl Stats {
    /// Restore size over distinct plaintext: how much deduplication saves.
    pub fn dedup_ratio(&self) -> Option<f64> {
        (self.raw_size > 0).then(|| self.restore_size as f64 / self.raw_size as f64)
    }

    /// Plaintext over stored bytes: how much compression saves.
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.stored_size > 0).then(|| self.raw_size as f64 / self.stored_size as f64)
    }
}

/// What one tree holds, all levels down.
#[derive(Clone, Copy, Default)]
struct Totals {
    files: u64,
    dirs: u64,
    size: u64,
}

/// Walks the snapshots' trees. Each distinct tree is read once: its blobs are counted once,
/// and its totals (files, directories, size) are remembered for the next snapshot that holds
/// it, so fifty snapshots of a slowly changing tree cost little more than one.
pub fn stats(repo: &Repository, index: &Index, snapshots: &[&SnapshotEntry]) -> Result<Stats> {
    let mut walk = Walk {
        repo,
        index,
        stats: Stats {
            snapshots: snapshots.len(),
            ..Stats::default()
        },
        blobs: HashSet::new(),
        packs: HashSet::new(),
        totals: HashMap::new(),
    };
    for snap in snapshots {
        let totals = walk.tree(&snap.snapshot.tree)?;
        walk.stats.files += totals.files;
        walk.stats.dirs += totals.dirs;
        walk.stats.restore_size += totals.size;
    }
    walk.stats.packs = walk.packs.len() as u64;
    Ok(walk.stats)
}

struct Walk<'a> {
    repo: &'a Repository,
    index: &'a Index,
    stats: Stats,
    blobs: HashSet<BlobId>,
    packs: HashSet<u32>,
    totals: HashMap<BlobId, Totals>,
}

impl Walk<'_> {
    /// Trees are named by the hash of their content, so they cannot contain themselves: the
    /// recursion ends, as deep as the directories go.
    fn tree(&mut self, id: &BlobId) -> Result<Totals> {
        if let Some(known) = self.totals.get(id) {
            return Ok(*known);
        }
        self.count_blob(id);
        let tree: Tree = self.repo.load_tree(self.index, id)?;
        let mut totals = Totals::default();
        for node in &tree.nodes {
            if node.kind == NodeKind::Dir {
                totals.dirs += 1;
                if let Some(sub) = node.subtree {
                    let below = self.tree(&sub)?;
                    totals.files += below.files;
                    totals.dirs += below.dirs;
                    totals.size += below.size;
                }
                continue;
            }
            totals.files += 1;
            if node.kind == NodeKind::File {
                totals.size += node.size;
            }
            for blob in &node.content {
                self.count_blob(blob);
            }
        }
        self.totals.insert(*id, totals);
        Ok(totals)
    }

    fn count_blob(&mut self, id: &BlobId) {
        if !self.blobs.insert(*id) {
            return;
        }
        let stats = &mut self.stats;
        stats.blobs += 1;
        let Some(loc) = self.index.get(id) else {
            stats.unindexed_blobs += 1;
            return;
        };
        stats.raw_size += u64::from(loc.raw_length);
        stats.stored_size += loc.stored_share();
        self.packs.insert(loc.pack);
    }
}
