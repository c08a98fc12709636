//! The blob ids a backup has taken on to store: the dedup set for blobs not yet in the index.
//!
//! A hash set of a million 32-byte ids costs about 70 MiB and briefly twice that while it grows;
//! this keeps one sorted array (32 bytes per id, grown in place) plus a small hash set of the
//! newest ids, merged into the array whenever it fills.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use crate::blob::BlobId;
use crate::index::IdHasher;

/// Ids held in the hash set before they are merged into the sorted array: large enough that
/// merges are rare, small enough (about 2.5 MiB) not to matter.
const RECENT_MAX: usize = 1 << 16;

#[derive(Default)]
pub struct ClaimedSet {
    sorted: Vec<BlobId>,
    recent: HashSet<BlobId, BuildHasherDefault<IdHasher>>,
}

impl ClaimedSet {
    /// Adds `id`; true if it was not there before.
    pub fn insert(&mut self, id: BlobId) -> bool {
        if self.sorted.binary_search(&id).is_ok() || !self.recent.insert(id) {
            return false;
        }
        if self.recent.len() >= RECENT_MAX {
            self.merge_recent();
        }
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Merges the recent ids into the sorted array from the back, in place: no second copy of
    /// the array is ever made.
    fn merge_recent(&mut self) {
        let mut run: Vec<BlobId> = self.recent.drain().collect();
        run.sort_unstable();
        let old = self.sorted.len();
        self.sorted.resize(old + run.len(), BlobId([0; 32]));
        let (mut i, mut j) = (old, run.len());
        for k in (0..old + run.len()).rev() {
            if j == 0 {
                break; // the rest of the old ids are already in place
            }
            if i > 0 && self.sorted[i - 1] > run[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = run[j - 1];
                j -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> BlobId {
        BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn every_id_is_claimed_once_across_merges() {
        let mut set = ClaimedSet::default();
        let n = RECENT_MAX as u64 * 3 + 17;
        for i in 0..n {
            assert!(set.insert(id(i)), "{i} is new");
        }
        assert_eq!(set.len(), n as usize);
        assert!(set.sorted.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        for i in (0..n).step_by(97) {
            assert!(!set.insert(id(i)), "{i} was claimed already");
        }
        assert!(set.insert(id(n)));
        assert_eq!(set.len(), n as usize + 1);
    }
}
