//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz, libFuzzer). Not an API: every
//! function here is a thin call into the real reader of one kind of object, plus the sealing
//! a target needs to put its input behind a fixed test key, so that the fuzzer reaches the
//! plaintext decoders and not only the authentication check in front of them.

use crate::blob::BlobKind;
use crate::crypto::{seal_object_with_salt, NonceDomain, Salt, UnitCipher, SALT_LEN};
use crate::error::Result;
use crate::index::IndexFile;
use crate::lock::LockRecord;
use crate::pack::{
    blob_aad, decode_entries, read_header, PackEntry, HEADER_AAD, HEADER_LEN, PACK_MAGIC,
    TRAILER_MAGIC,
};
use crate::snapshot::Snapshot;
use crate::storage::{Capabilities, ObjectInfo, ObjectKind, Storage, StorageError, StorageResult};

/// The fixed repository key of the fuzz targets (a master seal key, or a key-encryption key).
pub const KEY: [u8; 32] = *b"lifeboat fuzzing fixed test key!";
/// The fixed salt the targets seal with, so the same input always seals to the same bytes.
pub const SALT: Salt = [0x5a; SALT_LEN];
/// The name the pack under test has in [`OnePack`].
pub const PACK_NAME: &str = "fuzzpack";
const OBJECT: &str = "fuzz input";

/// A store holding one pack, for the reader of pack headers, which reads through [`Storage`]
/// (its size, its first bytes, its trailer, then its header) like every other reader does.
/// Reads past the end fail as a short read, as they do on a local disk.
#[derive(Debug)]
pub struct OnePack(pub Vec<u8>);

impl OnePack {
    fn refused(&self, what: &str) -> StorageError {
        StorageError::Io {
            location: OBJECT.into(),
            source: std::io::Error::other(format!("{what} is not supported here")),
            retryable: false,
        }
    }

    fn check(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        if kind == ObjectKind::Pack && name == PACK_NAME {
            Ok(())
        } else {
            Err(StorageError::NotFound {
                location: OBJECT.into(),
                kind,
                name: name.into(),
            })
        }
    }
}

impl Storage for OnePack {
    fn location(&self) -> String {
        OBJECT.into()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_write_once: true,
            delete: false,
        }
    }
    fn exists(&self) -> StorageResult<bool> {
        Ok(true)
    }
    fn create(&self) -> StorageResult<()> {
        Err(self.refused("create"))
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        if kind != ObjectKind::Pack {
            return Ok(Vec::new());
        }
        Ok(vec![ObjectInfo {
            name: PACK_NAME.into(),
            size: self.0.len() as u64,
        }])
    }
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        self.check(kind, name)?;
        Ok(self.0.clone())
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>> {
        self.check(kind, name)?;
        let size = self.0.len() as u64;
        let start = offset.min(size);
        let end = offset.saturating_add(length).min(size);
        if end - start < length {
            return Err(StorageError::Io {
                location: OBJECT.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("short read: wanted {length} bytes at offset {offset}"),
                ),
                retryable: false,
            });
        }
        Ok(self.0[start as usize..end as usize].to_vec())
    }
    fn write(&self, _kind: ObjectKind, _name: &str, _data: &[u8]) -> StorageResult<()> {
        Err(self.refused("write"))
    }
    fn delete(&self, _kind: ObjectKind, _name: &str) -> StorageResult<()> {
        Err(self.refused("delete"))
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        self.check(kind, name)?;
        Ok(ObjectInfo {
            name: PACK_NAME.into(),
            size: self.0.len() as u64,
        })
    }
}

// ---- packs

/// Reads the header of `pack` as a reader of a pack from storage does ([`read_header`]).
pub fn pack_header(pack: Vec<u8>) -> Result<(Salt, Vec<PackEntry>)> {
    read_header(&OnePack(pack), &KEY, PACK_NAME)
}

/// Decodes a pack header's plaintext of pack format `version` directly.
pub fn decode_pack_header(version: u8, plain: &[u8]) -> postcard::Result<Vec<PackEntry>> {
    decode_entries(version, plain)
}

/// A pack of format `version` with `body` as its frames and `header` (any bytes) as the
/// plaintext of its header, sealed under [`KEY`] and [`SALT`] as a pack writer seals one.
pub fn seal_pack(version: u8, body: &[u8], header: &[u8]) -> Vec<u8> {
    let cipher = UnitCipher::new(&KEY, &SALT);
    let mut pack = Vec::with_capacity(HEADER_LEN + body.len() + header.len() + 64);
    pack.extend_from_slice(PACK_MAGIC);
    pack.extend_from_slice(&[version, 0, 0, 0]);
    pack.extend_from_slice(body);
    let sealed = cipher.seal(NonceDomain::PackHeader, 0, HEADER_AAD, header);
    pack.extend_from_slice(&sealed);
    pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    pack.extend_from_slice(&SALT);
    pack.extend_from_slice(TRAILER_MAGIC);
    pack
}

/// `frame` (any bytes) sealed as the frame of `kind` at `offset` of a pack under [`KEY`] and
/// [`SALT`], for [`crate::pack::open_frame`].
pub fn seal_frame(kind: BlobKind, offset: u32, frame: &[u8]) -> Vec<u8> {
    UnitCipher::new(&KEY, &SALT).seal(NonceDomain::Blob, offset as u64, &blob_aad(kind), frame)
}

// ---- index files

/// Opens a sealed index file as the index loader does ([`IndexFile::open`]).
pub fn open_index(sealed: Vec<u8>) -> Result<IndexFile> {
    IndexFile::open(&KEY, sealed, OBJECT)
}

/// `body` (the plaintext of an index object: length and zstd frame) sealed as an index file.
pub fn seal_index(body: &[u8]) -> Vec<u8> {
    seal_object_with_salt(&KEY, crate::index::INDEX_AAD, &SALT, body)
}

/// Decodes an index file's decompressed plaintext directly.
pub fn decode_index(plain: &[u8]) -> Result<IndexFile> {
    IndexFile::decode(plain, OBJECT)
}

// ---- snapshots

pub fn open_snapshot(sealed: &[u8]) -> Result<Snapshot> {
    Snapshot::open(&KEY, sealed, OBJECT)
}

pub fn seal_snapshot(plain: &[u8]) -> Vec<u8> {
    seal_object_with_salt(&KEY, crate::snapshot::SNAPSHOT_AAD, &SALT, plain)
}

pub fn decode_snapshot(plain: &[u8]) -> Result<Snapshot> {
    Snapshot::from_json(plain, OBJECT)
}

// ---- locks

pub fn open_lock(sealed: &[u8]) -> Result<LockRecord> {
    LockRecord::open(&KEY, sealed, OBJECT)
}

pub fn seal_lock(plain: &[u8]) -> Vec<u8> {
    seal_object_with_salt(&KEY, crate::lock::LOCK_AAD, &SALT, plain)
}

pub fn decode_lock(plain: &[u8]) -> Result<LockRecord> {
    LockRecord::from_json(plain, OBJECT)
}

// ---- key files

/// `plain` (the master keys' JSON, or any bytes) sealed as a key file's `sealed_master` under
/// the key-encryption key `kek`.
pub fn seal_key_slot(kek: &[u8; 32], plain: &[u8]) -> Vec<u8> {
    seal_object_with_salt(kek, crate::crypto::keys::KEY_AAD, &SALT, plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobId;
    use crate::index::IndexPack;
    use crate::pack::{encode_entries, PACK_VERSION_2};

    /// The fuzz targets seal their inputs with these helpers: what they seal must get past
    /// authentication to the decoders, or the fuzzer would only ever see "authentication
    /// failed".
    #[test]
    fn sealed_inputs_reach_the_decoders() {
        let entry = PackEntry::single(BlobKind::Data, BlobId([1; 32]), 8, 40, 24, false);
        let header = encode_entries(PACK_VERSION_2, &[entry]);
        let pack = seal_pack(PACK_VERSION_2, &[0u8; 60], &header);
        let (salt, entries) = pack_header(pack).expect("sealed pack header");
        assert_eq!((salt, entries), (SALT, vec![entry]));
        assert_eq!(decode_pack_header(2, &header).unwrap(), vec![entry]);
        let frame = seal_frame(BlobKind::Data, 8, b"frame");
        let single = PackEntry::single(BlobKind::Data, BlobId([0; 32]), 8, 21, 5, false);
        assert_eq!(
            crate::pack::open_frame(&KEY, PACK_NAME, &SALT, &single, &frame).unwrap(),
            b"frame"
        );

        let mut file = IndexFile::new(PACK_VERSION_2);
        file.packs.push(IndexPack {
            name: "p".into(),
            salt: SALT,
            blobs: vec![entry],
        });
        let opened = open_index(file.seal(&KEY)).expect("index");
        assert_eq!(opened.packs[0].blobs, vec![entry]);

        let lock = br#"{"time":"2026-12-02T10:00:00Z","exclusive":false,"hostname":"h",
            "username":"u","pid":1,"operation":"backup"}"#;
        assert_eq!(open_lock(&seal_lock(lock)).unwrap().operation, "backup");
        assert_eq!(decode_lock(lock).unwrap().pid, 1);
        assert!(open_snapshot(&seal_snapshot(b"{}")).is_err());
        assert!(matches!(
            decode_snapshot(b"{}"),
            Err(crate::Error::Format { .. })
        ));
    }
}
