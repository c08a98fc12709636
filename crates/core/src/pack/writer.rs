//! Building one pack in memory.

use crate::blob::{BlobId, BlobKind};
use crate::crypto::{random_salt, NonceDomain, Salt, UnitCipher};

use super::{blob_aad, pack_name, PackEntry, HEADER_AAD, PACK_MAGIC, PACK_VERSION, TRAILER_MAGIC};

pub struct PackWriter {
    cipher: UnitCipher,
    salt: Salt,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to be written under `name`.
pub struct SealedPack {
    pub name: String,
    pub salt: Salt,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    pub fn new(seal_key: &[u8; 32]) -> Self {
        Self::with_capacity(seal_key, 1 << 20)
    }

    /// A writer whose buffer never reallocates below `capacity` bytes: growing a 16 MiB pack by
    /// doubling copies it several times while the packer lock is held.
    pub fn with_capacity(seal_key: &[u8; 32], capacity: usize) -> Self {
        Self::with_buffer(seal_key, Vec::with_capacity(capacity))
    }

    /// A writer that fills `buf` (cleared first): a finished pack's buffer, handed back after
    /// its upload, so 16 MiB buffers are reused instead of allocated and faulted in per pack.
    pub fn with_buffer(seal_key: &[u8; 32], mut buf: Vec<u8>) -> Self {
        let salt = random_salt();
        buf.clear();
        buf.extend_from_slice(PACK_MAGIC);
        buf.extend_from_slice(&[PACK_VERSION, 0, 0, 0]);
        PackWriter {
            cipher: UnitCipher::new(seal_key, &salt),
            salt,
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

    /// Seals `payload` (already compressed when `compressed`) at the end of the pack. The nonce
    /// counter is the blob's offset, which only grows, so no two blobs share a nonce.
    pub fn add(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        raw_length: usize,
        compressed: bool,
        payload: &[u8],
    ) {
        let offset = self.buf.len();
        self.cipher.seal_append(
            NonceDomain::Blob,
            offset as u64,
            &blob_aad(kind),
            payload,
            &mut self.buf,
        );
        self.entries.push(PackEntry {
            kind,
            id,
            offset: offset as u32,
            length: (self.buf.len() - offset) as u32,
            raw_length: raw_length as u32,
            compressed,
        });
    }

    pub fn finish(mut self) -> SealedPack {
        let header = postcard::to_allocvec(&self.entries).expect("pack header serializes");
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
