//! Content-defined chunking: FastCDC (Xia et al., 2016) with normalized chunking, whose gear
//! table is derived from the repository's secret chunker seed, so chunk boundaries (and the
//! chunk sizes an observer of the storage can see) do not fingerprint known content.
//!
//! `Chunker::cut` is pure: given the bytes from the current position it returns the length of
//! the next chunk. `ChunkReader` applies it to a stream with a bounded buffer.

mod reader;

pub use reader::ChunkReader;

use serde::{Deserialize, Serialize};

/// Sizes in bytes. Defaults: 512 KiB / 1 MiB / 8 MiB (see docs/format.md for the choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.min_size >= 64
            && self.avg_size.is_power_of_two()
            && self.min_size < self.avg_size
            && self.avg_size < self.max_size
            && self.max_size <= 64 * 1024 * 1024;
        if ok {
            Ok(())
        } else {
            Err(format!("invalid chunker parameters {self:?}: need 64 <= min < avg (a power of two) < max <= 64 MiB"))
        }
    }
}

/// How far the search for the next cut has got: bytes of the chunk rolled over and the gear
/// hash there. A new search starts from `CutSearch::default()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CutSearch {
    scanned: usize,
    hash: u64,
}

#[derive(Clone)]
pub struct Chunker {
    gear: Box<[u64; 256]>,
    /// Stricter mask (more bits) before the average size, looser after: normalized chunking.
    mask_small: u64,
    mask_large: u64,
    params: ChunkerParams,
}

/// A mask of the `bits` highest bits: the gear hash's high bits depend on the most bytes.
fn high_bits(bits: u32) -> u64 {
    !0u64 << (64 - bits)
}

impl Chunker {
    pub fn new(seed: &[u8; 32], params: ChunkerParams) -> Self {
        let mut gear = Box::new([0u64; 256]);
        let mut stream = blake3::Hasher::new_derive_key("lifeboat v1 chunker gear table");
        stream.update(seed);
        let mut reader = stream.finalize_xof();
        let mut bytes = [0u8; 256 * 8];
        reader.fill(&mut bytes);
        for (slot, word) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            *slot = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        }
        let bits = params.avg_size.trailing_zeros();
        Chunker {
            gear,
            mask_small: high_bits(bits + 1),
            mask_large: high_bits(bits - 1),
            params,
        }
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// The length of the next chunk of `data`. When `data` is shorter than the maximum size
    /// the caller must pass everything up to the end of the stream.
    pub fn cut(&self, data: &[u8]) -> usize {
        self.find_cut(data, &mut CutSearch::default())
            .unwrap_or(data.len())
    }

    /// The next cut in `data` (the bytes from the chunk's start), going on from where
    /// `search` stopped in a shorter prefix of the same bytes; `None` when there is no cut
    /// in `data` short of the maximum size, with `search` then at its end. The gear hash
    /// depends only on the bytes it has rolled over, so resuming gives the cut one search
    /// over all of `data` gives, and a stream read in steps is scanned once, not again from
    /// the minimum size at every step (a third of a PostgreSQL base backup's chunks are
    /// longer than the reader's first window).
    pub fn find_cut(&self, data: &[u8], search: &mut CutSearch) -> Option<usize> {
        let min = self.params.min_size as usize;
        let max_size = self.params.max_size as usize;
        let end = data.len().min(max_size);
        debug_assert!(search.scanned <= end, "data shrank under a cut search");
        let mut from = search.scanned.max(min);
        let normal = self.params.avg_size as usize;
        for (until, mask) in [(normal, self.mask_small), (end, self.mask_large)] {
            let until = until.min(end);
            if from >= until {
                continue;
            }
            let (cut, hash) = first_match(&self.gear, &data[from..until], search.hash, mask);
            if let Some(at) = cut {
                return Some(from + at);
            }
            search.hash = hash;
            search.scanned = until;
            from = until;
        }
        (end == max_size).then_some(max_size)
    }

    /// All chunk lengths of an in-memory buffer.
    pub fn chunk_lengths(&self, mut data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let len = self.cut(data);
            out.push(len);
            data = &data[len..];
        }
        out
    }
}

/// Rolls the gear hash over `data` from `hash`: the length up to and including the first byte
/// after which `hash & mask == 0`, and the hash at the end when there is none.
///
/// Four bytes a step: `((h << 1) + g0) << 1) + g1 ...` is `(h << 4) + (g0 << 3) + ...` in
/// wrapping arithmetic, so only one shift and one add per step depend on the previous step and
/// the four hashes to test are computed side by side; byte by byte, the shift-add chain is the
/// whole cost. Same cuts as the plain loop (`cut_matches_the_byte_by_byte_loop`).
fn first_match(gear: &[u64; 256], data: &[u8], mut hash: u64, mask: u64) -> (Option<usize>, u64) {
    let mut steps = data.chunks_exact(4);
    for (step, bytes) in steps.by_ref().enumerate() {
        let [g0, g1, g2, g3] = [0, 1, 2, 3].map(|i| gear[bytes[i] as usize]);
        let t1 = g0;
        let t2 = (g0 << 1).wrapping_add(g1);
        let t3 = (t2 << 1).wrapping_add(g2);
        let t4 = (t3 << 1).wrapping_add(g3);
        let hashes = [
            (hash << 1).wrapping_add(t1),
            (hash << 2).wrapping_add(t2),
            (hash << 3).wrapping_add(t3),
            (hash << 4).wrapping_add(t4),
        ];
        if hashes.iter().any(|h| h & mask == 0) {
            let at = hashes.iter().position(|h| h & mask == 0).unwrap_or(3);
            return (Some(step * 4 + at + 1), hashes[at]);
        }
        hash = hashes[3];
    }
    let done = data.len() - steps.remainder().len();
    for (i, &byte) in steps.remainder().iter().enumerate() {
        hash = (hash << 1).wrapping_add(gear[byte as usize]);
        if hash & mask == 0 {
            return (Some(done + i + 1), hash);
        }
    }
    (None, hash)
}

#[cfg(test)]
mod tests;
