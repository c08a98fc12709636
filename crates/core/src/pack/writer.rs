//! Building one pack, in memory or frame by frame into a staged (temporary) object.

use crate::blob::{BlobId, BlobKind};
use crate::crypto::{random_salt, NonceDomain, Salt, UnitCipher};
use crate::index::IndexPack;
use crate::storage::{ObjectKind, StagedObject, Storage, StorageError, StorageResult};

use super::{
    blob_aad, encode_entries, PackEntry, HEADER_AAD, PACK_MAGIC, PACK_VERSION_1, TRAILER_MAGIC,
};

pub struct PackWriter {
    cipher: UnitCipher,
    salt: Salt,
    version: u8,
    sink: Sink,
    /// Bytes written so far: the offset of the next frame.
    len: usize,
    entries: Vec<PackEntry>,
}

/// Where a pack's bytes go.
enum Sink {
    Memory(Vec<u8>),
    /// Sealed frame by frame into `scratch`, then written out: a backup holds one frame per
    /// open pack in memory, not the whole pack.
    Staged {
        staged: StagedObject,
        hasher: Box<blake3::Hasher>,
        scratch: Vec<u8>,
    },
}

/// One blob of a frame: its id, where it starts in the frame's plaintext, and its length.
#[derive(Clone, Copy, Debug)]
pub struct FrameMember {
    pub id: BlobId,
    pub frame_offset: u32,
    pub raw_length: u32,
}

/// A finished pack's bytes: in memory, or in a staged object for `Storage::write_staged`.
pub enum PackContent {
    Bytes(Vec<u8>),
    Staged(StagedObject),
}

/// A finished pack, ready to be stored under `name` (the BLAKE3 of its bytes).
pub struct SealedPack {
    pub name: String,
    pub salt: Salt,
    pub content: PackContent,
    pub entries: Vec<PackEntry>,
}

impl SealedPack {
    /// Writes the pack under its name and returns what an index file lists of it. A pack
    /// already stored under that name holds the same bytes (the name is their hash).
    pub fn store(self, storage: &dyn Storage) -> StorageResult<IndexPack> {
        self.offer_tree_frames(storage);
        let stored = match self.content {
            PackContent::Bytes(bytes) => storage.write(ObjectKind::Pack, &self.name, &bytes),
            PackContent::Staged(staged) => {
                storage.write_staged(ObjectKind::Pack, &self.name, staged)
            }
        };
        match stored {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => Ok(IndexPack {
                name: self.name,
                salt: self.salt,
                blobs: self.entries,
            }),
            Err(e) => Err(e),
        }
    }

    /// Hands the sealed tree frames of a pack built in memory to the storage's cache, if it
    /// has one: the next backup walks these trees as its parent's.
    fn offer_tree_frames(&self, storage: &dyn Storage) {
        let mut offered = std::collections::HashSet::new();
        for entry in self.entries.iter().filter(|e| e.kind == BlobKind::Tree) {
            let (offset, length) = (entry.offset as u64, entry.length as usize);
            if !offered.insert(offset) {
                continue; // another blob of the same shared frame
            }
            let mut bytes = || match &self.content {
                PackContent::Bytes(bytes) => bytes
                    .get(offset as usize..offset as usize + length)
                    .map(<[u8]>::to_vec),
                PackContent::Staged(staged) => staged.read_at(offset, length).ok().flatten(),
            };
            storage.remember_metadata_range(ObjectKind::Pack, &self.name, offset, &mut bytes);
        }
    }

    /// The bytes of a pack built in memory.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.content {
            PackContent::Bytes(bytes) => Some(bytes),
            PackContent::Staged(_) => None,
        }
    }
}

impl PackWriter {
    /// A pack built in memory. `version` is the pack format (1 or 2) the repository's format
    /// version calls for.
    pub fn new(seal_key: &[u8; 32], version: u8) -> Self {
        Self::with_sink(seal_key, version, Sink::Memory(Vec::with_capacity(1 << 20)))
    }

    /// A pack written into `staged` as it fills.
    pub fn staged(seal_key: &[u8; 32], version: u8, staged: StagedObject) -> std::io::Result<Self> {
        let mut writer = Self::with_sink(
            seal_key,
            version,
            Sink::Staged {
                staged,
                hasher: Box::default(),
                scratch: Vec::new(),
            },
        );
        writer.write_out()?;
        Ok(writer)
    }

    fn with_sink(seal_key: &[u8; 32], version: u8, mut sink: Sink) -> Self {
        let salt = random_salt();
        let head = sink.buffer();
        head.extend_from_slice(PACK_MAGIC);
        head.extend_from_slice(&[version, 0, 0, 0]);
        // A staged sink counts its bytes when they are written out.
        let len = match &sink {
            Sink::Memory(buf) => buf.len(),
            Sink::Staged { .. } => 0,
        };
        PackWriter {
            cipher: UnitCipher::new(seal_key, &salt),
            salt,
            version,
            sink,
            len,
            entries: Vec::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn blob_count(&self) -> usize {
        self.entries.len()
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
    ) -> std::io::Result<()> {
        let member = FrameMember {
            id,
            frame_offset: 0,
            raw_length: raw_length as u32,
        };
        self.add_frame(kind, &[member], raw_length, compressed, payload)
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
    ) -> std::io::Result<()> {
        assert!(
            members.len() == 1 || self.groups_blobs(),
            "a version 1 pack holds one blob per frame"
        );
        let offset = self.len;
        self.cipher.seal_append(
            NonceDomain::Blob,
            offset as u64,
            &blob_aad(kind),
            payload,
            self.sink.buffer(),
        );
        self.write_out()?;
        let length = (self.len - offset) as u32;
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
        Ok(())
    }

    /// Accounts for what was just put in the sink's buffer; a staged sink hashes and writes it.
    fn write_out(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Memory(buf) => self.len = buf.len(),
            Sink::Staged {
                staged,
                hasher,
                scratch,
            } => {
                hasher.update(scratch);
                staged.write_all(scratch)?;
                self.len += scratch.len();
                scratch.clear();
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<SealedPack> {
        let header = encode_entries(self.version, &self.entries);
        let sealed = self
            .cipher
            .seal(NonceDomain::PackHeader, 0, HEADER_AAD, &header);
        let tail = self.sink.buffer();
        tail.extend_from_slice(&sealed);
        tail.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        tail.extend_from_slice(&self.salt);
        tail.extend_from_slice(TRAILER_MAGIC);
        self.write_out()?;
        let (name, content) = match self.sink {
            Sink::Memory(bytes) => (super::pack_name(&bytes), PackContent::Bytes(bytes)),
            Sink::Staged { staged, hasher, .. } => (
                hasher.finalize().to_hex().to_string(),
                PackContent::Staged(staged),
            ),
        };
        Ok(SealedPack {
            name,
            salt: self.salt,
            content,
            entries: self.entries,
        })
    }
}

impl Sink {
    /// Where the next bytes are put: the pack itself, or the scratch buffer of a staged sink.
    fn buffer(&mut self) -> &mut Vec<u8> {
        match self {
            Sink::Memory(buf) => buf,
            Sink::Staged { scratch, .. } => scratch,
        }
    }
}
