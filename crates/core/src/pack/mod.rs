//! Pack files: many sealed blobs in one object, with a sealed header at the end that lists
//! them, so the index can always be rebuilt from the packs alone.
//!
//! ```text
//! "LBPK" version 0 0 0 | frame ciphertexts ... | header ciphertext | header_len u32le | salt (32) | "LBPT"
//! ```
//!
//! A frame is one sealed (and usually compressed) run of blobs of one kind. Version 1 packs
//! hold one blob per frame; version 2 packs group small blobs into shared frames, so small files
//! are compressed together rather than one by one.

mod frame_cache;
mod reader;
mod writer;

pub use frame_cache::FrameCache;

pub use reader::{blob_in_frame, max_raw_length, open_frame, open_frame_into, read_header};
pub use writer::{FrameMember, PackContent, PackWriter, SealedPack};

use serde::{Deserialize, Serialize};

use crate::blob::{BlobId, BlobKind};
use crate::crypto::SALT_LEN;

pub const PACK_MAGIC: &[u8; 4] = b"LBPK";
pub const TRAILER_MAGIC: &[u8; 4] = b"LBPT";
/// Packs of format version 1 repositories: one blob per frame, no frame fields in the header.
pub const PACK_VERSION_1: u8 = 1;
/// Packs of format version 2 repositories: frames may hold several blobs.
pub const PACK_VERSION_2: u8 = 2;
pub const HEADER_LEN: usize = 8;

/// The plaintext size at which the backup closes a shared data frame (tree frames close
/// much earlier, see `ops/backup/saver.rs`).
pub const SHARED_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// A pack is closed at this many blobs even below its byte size, so that its header (about 50
/// bytes per blob) stays far below the 64 MiB readers accept.
pub const MAX_BLOBS_PER_PACK: usize = 100_000;
pub const TRAILER_LEN: usize = 4 + SALT_LEN + 4;

/// One blob's place in a pack, as the pack header and the index record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    /// Offset of the blob's frame in the pack.
    pub offset: u32,
    /// Stored (sealed) length of the frame.
    pub length: u32,
    /// The blob's plaintext length.
    pub raw_length: u32,
    /// Whether the frame is zstd-compressed.
    pub compressed: bool,
    /// Where the blob starts in the frame's plaintext.
    pub frame_offset: u32,
    /// Plaintext length of the whole frame (equal to `raw_length` for a frame of one blob).
    pub frame_length: u32,
}

impl PackEntry {
    /// The entry of a blob that fills its frame alone.
    pub fn single(
        kind: BlobKind,
        id: BlobId,
        offset: u32,
        length: u32,
        raw_length: u32,
        compressed: bool,
    ) -> PackEntry {
        PackEntry {
            kind,
            id,
            offset,
            length,
            raw_length,
            compressed,
            frame_offset: 0,
            frame_length: raw_length,
        }
    }

    pub fn is_single(&self) -> bool {
        self.frame_offset == 0 && self.frame_length == self.raw_length
    }

    /// The stored bytes this blob accounts for: its frame, or, in a frame it shares, the
    /// frame's stored size in proportion to its plaintext.
    pub fn stored_share(&self) -> u64 {
        if self.frame_length == 0 {
            return u64::from(self.length);
        }
        u64::from(self.length) * u64::from(self.raw_length) / u64::from(self.frame_length)
    }

    /// Whether the blob's bytes lie inside its frame's plaintext, as declared; readers refuse
    /// an entry that says otherwise.
    pub fn lies_within_frame(&self) -> bool {
        self.frame_offset as u64 + self.raw_length as u64 <= self.frame_length as u64
    }
}

/// The header entry of format version 1, where every frame is one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntryV1 {
    pub kind: BlobKind,
    pub id: BlobId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub compressed: bool,
}

impl From<PackEntryV1> for PackEntry {
    fn from(e: PackEntryV1) -> PackEntry {
        PackEntry::single(e.kind, e.id, e.offset, e.length, e.raw_length, e.compressed)
    }
}

impl TryFrom<&PackEntry> for PackEntryV1 {
    type Error = BlobId;

    /// Fails (naming the blob) for a blob that shares its frame: version 1 cannot say so.
    fn try_from(e: &PackEntry) -> Result<PackEntryV1, BlobId> {
        if !e.is_single() {
            return Err(e.id);
        }
        Ok(PackEntryV1 {
            kind: e.kind,
            id: e.id,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
            compressed: e.compressed,
        })
    }
}

/// Serializes header entries in the layout of pack (and index) format `version`.
pub(crate) fn encode_entries(version: u8, entries: &[PackEntry]) -> Vec<u8> {
    let encoded = if version == PACK_VERSION_1 {
        let v1: Vec<PackEntryV1> = entries
            .iter()
            .map(|e| PackEntryV1::try_from(e).expect("version 1 packs hold single-blob frames"))
            .collect();
        postcard::to_allocvec(&v1)
    } else {
        postcard::to_allocvec(entries)
    };
    encoded.expect("pack entries serialize")
}

/// Parses header entries of pack format `version` (1 or 2).
pub(crate) fn decode_entries(version: u8, bytes: &[u8]) -> postcard::Result<Vec<PackEntry>> {
    if version == PACK_VERSION_1 {
        let v1: Vec<PackEntryV1> = postcard::from_bytes(bytes)?;
        Ok(v1.into_iter().map(PackEntry::from).collect())
    } else {
        postcard::from_bytes(bytes)
    }
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
