//! Blobs: the unit of deduplication. A data blob is a chunk of a file; a tree blob is a
//! serialized directory listing. A blob's id is the keyed BLAKE3 of its plaintext.

mod compression;

pub use compression::{
    compress, compress_with, decompress, decompress_into, looks_random, probably_compressible,
    Compression,
};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn compute(key: &[u8; 32], data: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(key, data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short())
    }
}

impl FromStr for BlobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|e| format!("bad id {s:?}: {e}"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("bad id {s:?}: must be 64 hex digits"))?;
        Ok(BlobId(arr))
    }
}

/// The keys that name blobs. Data and tree ids come from different keys, so the bytes of a
/// file can never share an id with a directory listing (a two-byte file holding exactly the
/// serialized empty tree would otherwise stand in for every empty directory).
#[derive(Clone)]
pub struct IdKeys {
    data: [u8; 32],
    tree: [u8; 32],
}

impl IdKeys {
    pub fn new(blob_id_key: &[u8; 32]) -> IdKeys {
        IdKeys {
            data: *blob_id_key,
            tree: blake3::derive_key("lifeboat v1 tree id", blob_id_key),
        }
    }

    pub fn id(&self, kind: BlobKind, plaintext: &[u8]) -> BlobId {
        match kind {
            BlobKind::Data => BlobId::compute(&self.data, plaintext),
            BlobKind::Tree => BlobId::compute(&self.tree, plaintext),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobKind {
    Data,
    Tree,
}

impl BlobKind {
    pub fn as_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }
}
