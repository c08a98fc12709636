//! Where each 16-bit id prefix starts in an array sorted by blob id. Ids are keyed hashes,
//! uniformly random, so a lookup binary-searches only the handful of entries of its prefix.

use std::ops::Range;

use crate::blob::BlobId;

const PREFIX_BUCKETS: usize = 1 << 16;

/// The first 16 bits of a blob id.
pub fn prefix(id: &BlobId) -> usize {
    u16::from_be_bytes([id.0[0], id.0[1]]) as usize
}

/// `starts[p]..starts[p + 1]` is the range of entries whose prefix is `p` (a fixed 256 KiB).
#[derive(Default)]
pub struct PrefixTable {
    starts: Vec<u32>,
}

impl PrefixTable {
    /// From the prefixes of a sorted array, in its order.
    pub fn build(prefixes: impl Iterator<Item = usize>) -> Self {
        let mut starts = vec![0u32; PREFIX_BUCKETS + 1];
        for p in prefixes {
            starts[p + 1] += 1;
        }
        for p in 0..PREFIX_BUCKETS {
            starts[p + 1] += starts[p];
        }
        PrefixTable { starts }
    }

    /// The entries with this prefix; None before the table is built.
    pub fn range(&self, prefix: usize) -> Option<Range<usize>> {
        match self.starts.get(prefix..prefix + 2) {
            Some(&[start, end]) => Some(start as usize..end as usize),
            _ => None,
        }
    }
}
