//! Pack files: many sealed blobs in one object, with a sealed header at the end that lists
//! them, so the index can always be rebuilt from the packs alone.
//!
//! ```text
//! "LBPK" version(1) 0 0 0 | blob ciphertexts ... | header ciphertext | header_len u32le | salt (32) | "LBPT"
//! ```

mod reader;
mod writer;

pub use reader::{max_raw_length, open_blob, read_header};
pub use writer::{PackWriter, SealedPack};

use serde::{Deserialize, Serialize};

use crate::blob::{BlobId, BlobKind};
use crate::crypto::SALT_LEN;

pub const PACK_MAGIC: &[u8; 4] = b"LBPK";
pub const TRAILER_MAGIC: &[u8; 4] = b"LBPT";
pub const PACK_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
pub const TRAILER_LEN: usize = 4 + SALT_LEN + 4;

/// One blob's place in a pack, as the pack header and the index record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    pub offset: u32,
    /// Stored (sealed) length.
    pub length: u32,
    /// Plaintext length after decompression.
    pub raw_length: u32,
    pub compressed: bool,
}

/// Additional data bound into each blob's tag: the blob's kind, so a tree can never be
/// passed off as data or the other way round.
pub(crate) fn blob_aad(kind: BlobKind) -> [u8; 4] {
    [b'L', b'B', b'b', kind.as_byte()]
}

pub(crate) const HEADER_AAD: &[u8] = b"LBph";

/// Pack names are the BLAKE3 of their bytes, so `check` can verify a pack without the key.
pub fn pack_name(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[cfg(test)]
mod tests;
