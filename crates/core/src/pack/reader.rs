//! Reading blobs and headers back, authenticating everything.

use crate::blob::{decompress, BlobKind, IdKeys};
use crate::crypto::{NonceDomain, Salt, UnitCipher, SALT_LEN};
use crate::error::{Error, Result};
use crate::storage::{ObjectKind, Storage};

use super::{blob_aad, PackEntry, HEADER_AAD, PACK_MAGIC, TRAILER_LEN, TRAILER_MAGIC};

/// Largest header we accept: a hostile pack must not make us allocate without bound.
const MAX_HEADER: u64 = 64 * 1024 * 1024;

/// Data blobs are chunks (at most 64 MiB by the chunker's limits); trees are directory
/// listings, allowed to be much larger but not without bound.
pub fn max_raw_length(kind: BlobKind) -> usize {
    match kind {
        BlobKind::Data => 64 * 1024 * 1024,
        BlobKind::Tree => 1024 * 1024 * 1024,
    }
}

/// Decrypts, decompresses and id-checks one blob read from its pack.
pub fn open_blob(
    seal_key: &[u8; 32],
    ids: &IdKeys,
    pack: &str,
    salt: &Salt,
    entry: &PackEntry,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let object = format!("blob {} in pack {pack}", entry.id);
    let limit = max_raw_length(entry.kind);
    if entry.raw_length as usize > limit {
        return Err(Error::integrity(
            &object,
            format!(
                "claims {} bytes, more than a blob may hold ({limit})",
                entry.raw_length
            ),
        ));
    }
    let cipher = UnitCipher::new(seal_key, salt);
    let payload = cipher.open(
        NonceDomain::Blob,
        entry.offset as u64,
        &blob_aad(entry.kind),
        sealed,
        &object,
    )?;
    let plain = if entry.compressed {
        decompress(&payload, entry.raw_length as usize)
            .map_err(|e| Error::integrity(&object, format!("decompression failed: {e}")))?
    } else {
        payload
    };
    if plain.len() != entry.raw_length as usize {
        return Err(Error::integrity(&object, "length differs from the index"));
    }
    if ids.id(entry.kind, &plain) != entry.id {
        return Err(Error::integrity(&object, "content does not match its id"));
    }
    Ok(plain)
}

/// Reads and authenticates a pack's trailing header: its salt and blob list.
pub fn read_header(
    storage: &dyn Storage,
    seal_key: &[u8; 32],
    pack: &str,
) -> Result<(Salt, Vec<PackEntry>)> {
    let object = format!("pack {pack}");
    let size = storage.stat(ObjectKind::Pack, pack)?.size;
    if size < (super::HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(Error::integrity(
            &object,
            format!("too short ({size} bytes)"),
        ));
    }
    let head = storage.read_range(ObjectKind::Pack, pack, 0, 4)?;
    if head != PACK_MAGIC {
        return Err(Error::integrity(&object, "bad magic"));
    }
    let trailer = storage.read_range(
        ObjectKind::Pack,
        pack,
        size - TRAILER_LEN as u64,
        TRAILER_LEN as u64,
    )?;
    if &trailer[TRAILER_LEN - 4..] != TRAILER_MAGIC {
        return Err(Error::integrity(&object, "bad trailer magic"));
    }
    let header_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as u64;
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&trailer[4..4 + SALT_LEN]);
    let body_end = size - TRAILER_LEN as u64;
    if header_len > MAX_HEADER || header_len > body_end - super::HEADER_LEN as u64 {
        return Err(Error::integrity(
            &object,
            format!("implausible header length {header_len}"),
        ));
    }
    let sealed = storage.read_range(ObjectKind::Pack, pack, body_end - header_len, header_len)?;
    let cipher = UnitCipher::new(seal_key, &salt);
    let plain = cipher.open(NonceDomain::PackHeader, 0, HEADER_AAD, &sealed, &object)?;
    let entries: Vec<PackEntry> =
        postcard::from_bytes(&plain).map_err(|e| Error::format(&object, format!("header: {e}")))?;
    let header_start = body_end - header_len;
    for e in &entries {
        if e.offset as u64 + e.length as u64 > header_start {
            return Err(Error::format(
                &object,
                format!("blob {} lies outside the pack body", e.id),
            ));
        }
    }
    Ok((salt, entries))
}
