//! The index: where every blob lives. Index files list packs and their blobs; in memory they
//! become one map from blob id to a compact location.

mod file;

pub use file::{IndexFile, IndexPack};

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

/// A blob's location: 24 bytes next to its 32-byte key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
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
        }
    }
}

#[derive(Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_numbers: HashMap<String, u32>,
    blobs: IdMap<Location>,
}

impl Index {
    pub fn add_pack(&mut self, name: &str, salt: Salt, entries: &[PackEntry]) {
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
        for e in entries {
            self.blobs.entry(e.id).or_insert(Location {
                pack: number,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
                kind: e.kind,
                compressed: e.compressed,
            });
        }
    }

    pub fn merge_file(&mut self, file: &IndexFile) {
        for pack in &file.packs {
            self.add_pack(&pack.name, pack.salt, &pack.blobs);
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<&Location> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
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
        self.blobs.iter()
    }
}
