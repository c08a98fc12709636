//! Index files: sealed, zstd-compressed postcard lists of packs and their blobs.
//!
//! The layout follows the pack format: version 1 index files carry version 1 header entries
//! (one blob per frame), version 2 files the entries with frame fields.

use serde::{Deserialize, Serialize};

use crate::crypto::{open_object_owned, seal_object, Salt};
use crate::error::{Error, Result};
use crate::pack::{PackEntry, PackEntryV1, PACK_VERSION_1, PACK_VERSION_2};

pub(crate) const INDEX_AAD: &[u8] = b"lifeboat index v1";
const MAX_INDEX_BYTES: usize = 1 << 30;
/// Writers close an index file at this many blobs (about 5 MB of index file): frames of small
/// files put thousands of entries in a pack, and writing an index file briefly holds it in
/// memory twice.
pub const BLOBS_PER_INDEX_FILE: usize = 100_000;

#[derive(Clone, Debug, Default)]
pub struct IndexFile {
    /// 1 or 2, the same as the pack format of the repository.
    pub version: u32,
    pub packs: Vec<IndexPack>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexPack {
    pub name: String,
    pub salt: Salt,
    pub blobs: Vec<PackEntry>,
}

/// The serialized form; `version` comes first in both layouts, so it can be read before the
/// rest is decoded.
#[derive(Serialize, Deserialize)]
struct Encoded<P> {
    version: u32,
    packs: Vec<P>,
}

#[derive(Serialize, Deserialize)]
struct IndexPackV1 {
    name: String,
    salt: Salt,
    blobs: Vec<PackEntryV1>,
}

/// Counts what passes through to `inner`.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl IndexFile {
    /// An empty index file of format `version` (the repository's pack format).
    pub fn new(version: u8) -> Self {
        IndexFile {
            version: version as u32,
            packs: Vec::new(),
        }
    }

    /// Serializes into `out` as it goes: a large index file is never held whole in plaintext.
    /// Returns the plaintext length.
    fn encode_to<W: std::io::Write>(&self, out: W) -> std::io::Result<u64> {
        let mut out = CountingWriter {
            inner: out,
            count: 0,
        };
        let encoded = if self.version == PACK_VERSION_1 as u32 {
            let packs = self
                .packs
                .iter()
                .map(|p| IndexPackV1 {
                    name: p.name.clone(),
                    salt: p.salt,
                    blobs: p
                        .blobs
                        .iter()
                        .map(|e| {
                            PackEntryV1::try_from(e)
                                .expect("version 1 packs hold single-blob frames")
                        })
                        .collect(),
                })
                .collect();
            postcard::to_io(
                &Encoded::<IndexPackV1> {
                    version: self.version,
                    packs,
                },
                &mut out,
            )
        } else {
            postcard::to_io(
                &Encoded::<&IndexPack> {
                    version: self.version,
                    packs: self.packs.iter().collect(),
                },
                &mut out,
            )
        };
        encoded.map_err(|e| match e {
            postcard::Error::SerializeBufferFull => {
                std::io::Error::new(std::io::ErrorKind::WriteZero, "index serialization")
            }
            other => std::io::Error::other(other),
        })?;
        Ok(out.count)
    }

    pub(crate) fn decode(plain: &[u8], object: &str) -> Result<IndexFile> {
        let (version, _) =
            postcard::take_from_bytes::<u32>(plain).map_err(|e| Error::format(object, e))?;
        let packs = match version {
            v if v == PACK_VERSION_1 as u32 => {
                let file: Encoded<IndexPackV1> =
                    postcard::from_bytes(plain).map_err(|e| Error::format(object, e))?;
                file.packs
                    .into_iter()
                    .map(|p| IndexPack {
                        name: p.name,
                        salt: p.salt,
                        blobs: p.blobs.into_iter().map(PackEntry::from).collect(),
                    })
                    .collect()
            }
            v if v == PACK_VERSION_2 as u32 => {
                let file: Encoded<IndexPack> =
                    postcard::from_bytes(plain).map_err(|e| Error::format(object, e))?;
                file.packs
            }
            other => {
                return Err(Error::format(
                    object,
                    format!("unknown index version {other}"),
                ))
            }
        };
        for pack in &packs {
            for e in &pack.blobs {
                if !e.lies_within_frame() {
                    return Err(Error::format(
                        object,
                        format!("blob {} lies outside its frame in pack {}", e.id, pack.name),
                    ));
                }
            }
        }
        Ok(IndexFile { version, packs })
    }

    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        self.seal_as(key, INDEX_AAD)
    }

    /// Seals in the index file layout as another kind of object (`aad` names the kind), for
    /// records that list packs the way index files do.
    pub fn seal_as(&self, key: &[u8; 32], aad: &[u8]) -> Vec<u8> {
        // The body is `plaintext length || zstd(plaintext)`; the length is patched in once the
        // plaintext has streamed through the encoder. Writing into memory cannot fail.
        // Told the plaintext's size (a counting pass first), zstd sizes its window and buffers
        // to it: most index files are small (an unchanged backup adds a tree or two), and a
        // context ready for any size was 3.5 MiB, the largest part of such a backup's heap.
        let raw_len = self
            .encode_to(std::io::sink())
            .expect("an index serializes");
        let mut encoder =
            zstd::stream::write::Encoder::new(vec![0u8; 8], 3).expect("a zstd encoder at level 3");
        encoder
            .set_pledged_src_size(Some(raw_len))
            .expect("a pledged size before any input");
        let written = self
            .encode_to(&mut encoder)
            .expect("an index serializes into memory");
        debug_assert_eq!(written, raw_len, "postcard encodes the same index alike");
        let mut body = encoder.finish().expect("zstd into memory");
        body[..8].copy_from_slice(&raw_len.to_le_bytes());
        seal_object(key, aad, &body)
    }

    /// Opens a sealed index file, taking its bytes: they are decrypted in place and dropped
    /// before the entries are decoded, so at most two forms of a large file are held at once.
    pub fn open(key: &[u8; 32], data: Vec<u8>, object: &str) -> Result<IndexFile> {
        Self::open_as(key, INDEX_AAD, data, object)
    }

    /// Opens what [`IndexFile::seal_as`] sealed with the same `aad`.
    pub fn open_as(key: &[u8; 32], aad: &[u8], data: Vec<u8>, object: &str) -> Result<IndexFile> {
        let body = open_object_owned(key, aad, data, object)?;
        if body.len() < 8 {
            return Err(Error::format(object, "truncated"));
        }
        let raw_len = u64::from_le_bytes(body[..8].try_into().expect("8 bytes")) as usize;
        if raw_len > MAX_INDEX_BYTES {
            return Err(Error::format(object, format!("declares {raw_len} bytes")));
        }
        let plain = crate::blob::decompress(&body[8..], raw_len)
            .map_err(|e| Error::format(object, format!("decompression: {e}")))?;
        drop(body);
        Self::decode(&plain, object)
    }
}
