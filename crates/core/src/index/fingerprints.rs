//! Blob ids kept as 64-bit fingerprints: 8 bytes per blob instead of the index's 60.
//!
//! A fingerprint set answers "is this blob stored?" with a false yes for about one id in
//! 2^64 / n. That is fine for confirming that an unchanged file's blobs are still in the
//! repository (a false yes there costs what trusting the parent snapshot costs), and for a
//! definite "no" about a new blob; it is never enough to skip storing new data.

use super::prefix_table::{prefix, PrefixTable};
use crate::blob::BlobId;

#[derive(Default)]
pub struct IdFingerprints {
    /// Sorted, without duplicates.
    prints: Vec<u64>,
    /// A fingerprint's top 16 bits are its id's prefix.
    buckets: PrefixTable,
}

impl IdFingerprints {
    pub fn of(id: &BlobId) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&id.0[..8]);
        u64::from_be_bytes(first)
    }

    pub fn new(mut prints: Vec<u64>) -> Self {
        prints.sort_unstable();
        prints.dedup();
        prints.shrink_to_fit();
        let buckets = PrefixTable::build(prints.iter().map(|p| (p >> 48) as usize));
        IdFingerprints { prints, buckets }
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        let Some(range) = self.buckets.range(prefix(id)) else {
            return false;
        };
        self.prints[range].binary_search(&Self::of(id)).is_ok()
    }

    pub fn len(&self) -> usize {
        self.prints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prints.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: [u8; 8], last: u8) -> BlobId {
        let mut id = [last; 32];
        id[..8].copy_from_slice(&first);
        BlobId(id)
    }

    #[test]
    fn finds_exactly_the_fingerprints_it_was_given() {
        let stored = [
            id([0; 8], 1),
            id([0, 0, 0, 0, 0, 0, 0, 1], 2),
            id([0xff; 8], 3),
            id([0x12, 0x34, 9, 9, 9, 9, 9, 9], 4),
            id([0x12, 0x34, 1, 1, 1, 1, 1, 1], 5),
        ];
        let set = IdFingerprints::new(stored.iter().map(IdFingerprints::of).collect());
        assert_eq!(set.len(), 5);
        for s in &stored {
            assert!(set.contains(s));
        }
        assert!(
            !set.contains(&id([0x12, 0x34, 5, 5, 5, 5, 5, 5], 0)),
            "same bucket"
        );
        assert!(
            !set.contains(&id([0x12, 0x35, 9, 9, 9, 9, 9, 9], 4)),
            "next bucket"
        );
        assert!(!set.contains(&id([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], 3)));
        // Only the first eight bytes count: the false yes the type documents.
        assert!(set.contains(&id([0xff; 8], 9)));
        assert!(!IdFingerprints::default().contains(&stored[0]));
    }
}
