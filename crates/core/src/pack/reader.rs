//! Reading blobs and headers back, authenticating everything.

use crate::blob::{decompress_into, BlobKind, IdKeys};
use crate::crypto::{NonceDomain, Salt, UnitCipher, SALT_LEN};
use crate::error::{Error, Result};
use crate::storage::{ObjectKind, Storage};

use super::{
    blob_aad, decode_entries, PackEntry, HEADER_AAD, PACK_MAGIC, PACK_VERSION_1, PACK_VERSION_2,
    TRAILER_LEN, TRAILER_MAGIC,
};

/// Largest header we accept: a hostile pack must not make us allocate without bound.
const MAX_HEADER: u64 = 64 * 1024 * 1024;

/// Data blobs are chunks (at most 64 MiB by the chunker's limits), and frames of grouped small
/// blobs are far smaller; trees are directory listings, allowed to be much larger but not
/// without bound. A frame of either kind is held to the same limit.
pub fn max_raw_length(kind: BlobKind) -> usize {
    match kind {
        BlobKind::Data => 64 * 1024 * 1024,
        BlobKind::Tree => 1024 * 1024 * 1024,
    }
}

fn blob_object(entry: &PackEntry, pack: &str) -> String {
    format!("blob {} in pack {pack}", entry.id)
}

/// Decrypts and decompresses the frame `entry` lies in, read from its pack as `sealed`. The
/// frame may hold other blobs too; [`blob_in_frame`] takes this one out.
pub fn open_frame(
    seal_key: &[u8; 32],
    pack: &str,
    salt: &Salt,
    entry: &PackEntry,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let mut sealed = sealed.to_vec();
    let mut frame = Vec::new();
    open_frame_into(seal_key, pack, salt, entry, &mut sealed, &mut frame)?;
    Ok(frame)
}

/// [`open_frame`] with buffers the caller reuses: `sealed` is decrypted in place (and left
/// holding the compressed frame), the frame lands in `frame`.
pub fn open_frame_into(
    seal_key: &[u8; 32],
    pack: &str,
    salt: &Salt,
    entry: &PackEntry,
    sealed: &mut Vec<u8>,
    frame: &mut Vec<u8>,
) -> Result<()> {
    let object = blob_object(entry, pack);
    let limit = max_raw_length(entry.kind);
    if entry.frame_length as usize > limit {
        return Err(Error::integrity(
            &object,
            format!(
                "claims a frame of {} bytes, more than a frame may hold ({limit})",
                entry.frame_length
            ),
        ));
    }
    let cipher = UnitCipher::new(seal_key, salt);
    cipher.open_in_place(
        NonceDomain::Blob,
        entry.offset as u64,
        &blob_aad(entry.kind),
        sealed,
        &object,
    )?;
    if entry.compressed {
        decompress_into(sealed, entry.frame_length as usize, frame)
            .map_err(|e| Error::integrity(&object, format!("decompression failed: {e}")))?;
    } else {
        std::mem::swap(sealed, frame);
    }
    if frame.len() != entry.frame_length as usize {
        return Err(Error::integrity(&object, "length differs from the index"));
    }
    Ok(())
}

/// The blob `entry` names, out of its opened frame, checked against its id.
pub fn blob_in_frame<'f>(
    ids: &IdKeys,
    pack: &str,
    entry: &PackEntry,
    frame: &'f [u8],
) -> Result<&'f [u8]> {
    let start = entry.frame_offset as usize;
    let plain = start
        .checked_add(entry.raw_length as usize)
        .and_then(|end| frame.get(start..end))
        .ok_or_else(|| Error::integrity(blob_object(entry, pack), "lies outside its frame"))?;
    if ids.id(entry.kind, plain) != entry.id {
        return Err(Error::integrity(
            blob_object(entry, pack),
            "content does not match its id",
        ));
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
    let head = storage.read_range(ObjectKind::Pack, pack, 0, super::HEADER_LEN as u64)?;
    if head.get(..4) != Some(PACK_MAGIC.as_slice()) {
        return Err(Error::integrity(&object, "bad magic"));
    }
    let version = head[4];
    if !(PACK_VERSION_1..=PACK_VERSION_2).contains(&version) {
        return Err(Error::format(
            &object,
            format!("unknown pack version {version}"),
        ));
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
    let entries = decode_entries(version, &plain)
        .map_err(|e| Error::format(&object, format!("header: {e}")))?;
    let header_start = body_end - header_len;
    for e in &entries {
        if e.offset as u64 + e.length as u64 > header_start {
            return Err(Error::format(
                &object,
                format!("blob {} lies outside the pack body", e.id),
            ));
        }
        if !e.lies_within_frame() {
            return Err(Error::format(
                &object,
                format!("blob {} lies outside its frame", e.id),
            ));
        }
    }
    Ok((salt, entries))
}
