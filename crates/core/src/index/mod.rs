//! The index: where every blob lives. Index files list packs and their blobs; in memory they
//! become one map from blob id to a compact location.

mod file;
mod fingerprints;
mod prefix_table;

pub(crate) use file::INDEX_AAD;
pub use file::{IndexFile, IndexPack, BLOBS_PER_INDEX_FILE};
pub use fingerprints::IdFingerprints;
use prefix_table::{prefix, PrefixTable};

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::blob::{BlobId, BlobKind};
use crate::crypto::Salt;
use crate::pack::PackEntry;

/// Blob ids are keyed hashes, uniformly distributed: their first eight bytes are a fine hash.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

pub type IdMap<V> = HashMap<BlobId, V, BuildHasherDefault<IdHasher>>;

#[derive(Clone, Debug)]
pub struct PackInfo {
    pub name: String,
    pub salt: Salt,
}

/// A blob's location: 28 bytes next to its 32-byte key. `offset` and `length` are those of
/// the blob's frame; `frame_offset` and `frame_length` place the blob in the frame's plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub frame_offset: u32,
    pub frame_length: u32,
    pub kind: BlobKind,
    pub compressed: bool,
}

impl Location {
    pub fn entry(&self, id: BlobId) -> PackEntry {
        PackEntry {
            kind: self.kind,
            id,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
            compressed: self.compressed,
            frame_offset: self.frame_offset,
            frame_length: self.frame_length,
        }
    }

    /// The stored bytes this blob accounts for: its frame, or, in a frame it shares, the
    /// frame's stored size in proportion to its plaintext.
    pub fn stored_share(&self) -> u64 {
        self.entry(BlobId([0; 32])).stored_share()
    }

    /// Whether other blobs share this blob's frame (so reading it decompresses them too).
    pub fn is_shared_frame(&self) -> bool {
        !(self.frame_offset == 0 && self.frame_length == self.raw_length)
    }
}

/// Every indexed blob, in memory as one array sorted by id: 60 bytes per blob (32-byte id,
/// 28-byte location) plus a fixed 256 KiB prefix table, built without the doubling transient
/// of a growing hash table. A lookup is a binary search within one 16-bit prefix bucket.
#[derive(Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_numbers: HashMap<String, u32>,
    blobs: Vec<(BlobId, Location)>,
    /// Entries appended since the last sort; `finish` sorts them in.
    unsorted: bool,
    buckets: PrefixTable,
}

impl Index {
    pub fn add_pack(&mut self, name: &str, salt: Salt, entries: &[PackEntry]) {
        self.add_pack_where(name, salt, entries, |_| true);
    }

    /// Adds the entries `keep` accepts; a pack none of whose entries it accepts is not added.
    pub fn add_pack_where(
        &mut self,
        name: &str,
        salt: Salt,
        entries: &[PackEntry],
        keep: impl Fn(&PackEntry) -> bool,
    ) {
        if !entries.iter().any(&keep) {
            return;
        }
        let number = match self.pack_numbers.get(name) {
            Some(n) => *n,
            None => {
                let n = self.packs.len() as u32;
                self.packs.push(PackInfo {
                    name: name.to_string(),
                    salt,
                });
                self.pack_numbers.insert(name.to_string(), n);
                n
            }
        };
        self.blobs
            .extend(entries.iter().filter(|e| keep(e)).map(|e| {
                let location = Location {
                    pack: number,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                    frame_offset: e.frame_offset,
                    frame_length: e.frame_length,
                    kind: e.kind,
                    compressed: e.compressed,
                };
                (e.id, location)
            }));
        self.unsorted = true;
    }

    /// Sorts what was added; of a blob stored in several packs, the first pack added wins
    /// (packs are numbered in the order they were added). Lookups need this to have run.
    pub fn finish(&mut self) {
        if !self.unsorted {
            return;
        }
        // Ids are uniform: their first eight bytes, compared as one number, order almost
        // every pair without comparing the 32 bytes (a third of the time of a whole load).
        let lead = |id: &BlobId| u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"));
        self.blobs.sort_unstable_by(|a, b| {
            lead(&a.0)
                .cmp(&lead(&b.0))
                .then_with(|| a.0.cmp(&b.0))
                .then(a.1.pack.cmp(&b.1.pack))
        });
        self.blobs.dedup_by(|later, first| later.0 == first.0);
        self.blobs.shrink_to_fit();
        self.buckets = PrefixTable::build(self.blobs.iter().map(|(id, _)| prefix(id)));
        self.unsorted = false;
    }

    fn position(&self, id: &BlobId) -> Option<usize> {
        debug_assert!(!self.unsorted, "Index::finish must run before lookups");
        let range = self
            .buckets
            .range(prefix(id))
            .unwrap_or(0..self.blobs.len());
        let start = range.start;
        self.blobs[range]
            .binary_search_by(|(k, _)| k.cmp(id))
            .ok()
            .map(|at| start + at)
    }

    pub fn merge_file(&mut self, file: &IndexFile) {
        for pack in &file.packs {
            self.add_pack(&pack.name, pack.salt, &pack.blobs);
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<&Location> {
        self.position(id).map(|at| &self.blobs[at].1)
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.position(id).is_some()
    }

    pub fn pack(&self, number: u32) -> &PackInfo {
        &self.packs[number as usize]
    }

    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, &Location)> {
        self.blobs.iter().map(|(id, loc)| (id, loc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(first: u8, last: u8, offset: u32) -> PackEntry {
        let mut id = [0u8; 32];
        id[0] = first;
        id[31] = last;
        PackEntry::single(BlobKind::Data, BlobId(id), offset, 10, 10, false)
    }

    #[test]
    fn lookups_find_every_blob_and_the_first_pack_wins() {
        let mut index = Index::default();
        assert!(!index.contains(&entry(1, 1, 0).id), "empty index");
        let first: Vec<PackEntry> = (0..=255u8).map(|b| entry(b, b, b as u32)).collect();
        index.add_pack("p1", [0; 32], &first);
        // A duplicate of blob (7,7) in a later pack, and new blobs sharing prefixes.
        index.add_pack(
            "p2",
            [0; 32],
            &[entry(7, 7, 999), entry(7, 8, 5), entry(255, 0, 6)],
        );
        index.finish();
        assert_eq!(index.blob_count(), 258);
        for e in &first {
            let loc = index.get(&e.id).expect("indexed");
            assert_eq!((loc.pack, loc.offset), (0, e.offset), "first pack wins");
        }
        assert_eq!(index.get(&entry(7, 8, 0).id).map(|l| l.pack), Some(1));
        assert!(index.contains(&entry(255, 0, 0).id));
        assert!(!index.contains(&entry(7, 9, 0).id));
        assert!(!index.contains(&entry(0, 1, 0).id));
    }

    #[test]
    fn add_pack_where_keeps_what_it_accepts_and_skips_packs_with_nothing_kept() {
        let mut index = Index::default();
        let wanted = |e: &PackEntry| e.id.0[31] % 2 == 0;
        index.add_pack_where("none", [0; 32], &[entry(1, 1, 0), entry(2, 3, 0)], wanted);
        index.add_pack_where("some", [0; 32], &[entry(1, 2, 0), entry(2, 5, 0)], wanted);
        index.finish();
        assert_eq!(
            index.packs().len(),
            1,
            "a pack with no kept blob is not added"
        );
        assert_eq!(index.pack(0).name, "some");
        assert_eq!(index.blob_count(), 1);
        assert!(index.contains(&entry(1, 2, 0).id));
        assert!(!index.contains(&entry(2, 5, 0).id));
    }
}
