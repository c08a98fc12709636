//! Building one pack in memory.

use crate::blob::{BlobId, BlobKind};
use crate::crypto::{random_salt, NonceDomain, Salt, UnitCipher};

use super::{
    blob_aad, encode_entries, pack_name, PackEntry, HEADER_AAD, PACK_MAGIC, PACK_VERSION_1,
    TRAILER_MAGIC,
};

pub struct PackWriter {
    cipher: UnitCipher,
    salt: Salt,
    version: u8,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// One blob of a frame: its id, where it starts in the frame's plaintext, and its length.
#[derive(Clone, Copy, Debug)]
pub struct FrameMember {
    pub id: BlobId,
    pub frame_offset: u32,
    pub raw_length: u32,
}

/// A finished pack, ready to be written under `name`.
pub struct SealedPack {
    pub name: String,
    pub salt: Salt,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    pub fn new(seal_key: &[u8; 32], version: u8) -> Self {
        Self::with_capacity(seal_key, version, 1 << 20)
    }

    /// A writer whose buffer never reallocates below `capacity` bytes: growing a 16 MiB pack by
    /// doubling copies it several times while the packer lock is held.
    pub fn with_capacity(seal_key: &[u8; 32], version: u8, capacity: usize) -> Self {
        Self::with_buffer(seal_key, version, Vec::with_capacity(capacity))
    }

    /// A writer that fills `buf` (cleared first): a finished pack's buffer, handed back after
    /// its upload, so 16 MiB buffers are reused instead of allocated and faulted in per pack.
    /// `version` is the pack format (1 or 2) the repository's format version calls for.
    pub fn with_buffer(seal_key: &[u8; 32], version: u8, mut buf: Vec<u8>) -> Self {
        let salt = random_salt();
        buf.clear();
        buf.extend_from_slice(PACK_MAGIC);
        buf.extend_from_slice(&[version, 0, 0, 0]);
        PackWriter {
            cipher: UnitCipher::new(seal_key, &salt),
            salt,
            version,
            buf,
            entries: Vec::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether frames may hold more than one blob (pack format 2 and later).
    pub fn groups_blobs(&self) -> bool {
        self.version > PACK_VERSION_1
    }

    /// Seals one blob as a frame of its own (`payload` already compressed when `compressed`).
    pub fn add(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        raw_length: usize,
        compressed: bool,
        payload: &[u8],
    ) {
        let member = FrameMember {
            id,
            frame_offset: 0,
            raw_length: raw_length as u32,
        };
        self.add_frame(kind, &[member], raw_length, compressed, payload);
    }

    /// Seals `payload`, the (compressed when `compressed`) plaintext of `frame_length` bytes
    /// holding `members`, at the end of the pack. The nonce counter is the frame's offset, which
    /// only grows, so no two frames share a nonce.
    pub fn add_frame(
        &mut self,
        kind: BlobKind,
        members: &[FrameMember],
        frame_length: usize,
        compressed: bool,
        payload: &[u8],
    ) {
        assert!(
            members.len() == 1 || self.groups_blobs(),
            "a version 1 pack holds one blob per frame"
        );
        let offset = self.buf.len();
        self.cipher.seal_append(
            NonceDomain::Blob,
            offset as u64,
            &blob_aad(kind),
            payload,
            &mut self.buf,
        );
        let length = (self.buf.len() - offset) as u32;
        self.entries.extend(members.iter().map(|m| PackEntry {
            kind,
            id: m.id,
            offset: offset as u32,
            length,
            raw_length: m.raw_length,
            compressed,
            frame_offset: m.frame_offset,
            frame_length: frame_length as u32,
        }));
    }

    pub fn finish(mut self) -> SealedPack {
        let header = encode_entries(self.version, &self.entries);
        let sealed = self
            .cipher
            .seal(NonceDomain::PackHeader, 0, HEADER_AAD, &header);
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&self.salt);
        self.buf.extend_from_slice(TRAILER_MAGIC);
        SealedPack {
            name: pack_name(&self.buf),
            salt: self.salt,
            bytes: self.buf,
            entries: self.entries,
        }
    }
}
