//! Index files: sealed, zstd-compressed postcard lists of packs and their blobs.

use serde::{Deserialize, Serialize};

use crate::crypto::{open_object, seal_object, Salt};
use crate::error::{Error, Result};
use crate::pack::PackEntry;

const INDEX_AAD: &[u8] = b"lifeboat index v1";
const INDEX_VERSION: u32 = 1;
const MAX_INDEX_BYTES: usize = 1 << 30;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IndexFile {
    pub version: u32,
    pub packs: Vec<IndexPack>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexPack {
    pub name: String,
    pub salt: Salt,
    pub blobs: Vec<PackEntry>,
}

impl IndexFile {
    pub fn new() -> Self {
        IndexFile {
            version: INDEX_VERSION,
            packs: Vec::new(),
        }
    }

    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        let plain = postcard::to_allocvec(self).expect("index serializes");
        let compressed = zstd::bulk::compress(&plain, 3).expect("zstd of a buffer cannot fail");
        let mut body = (plain.len() as u64).to_le_bytes().to_vec();
        body.extend_from_slice(&compressed);
        seal_object(key, INDEX_AAD, &body)
    }

    pub fn open(key: &[u8; 32], data: &[u8], object: &str) -> Result<IndexFile> {
        let body = open_object(key, INDEX_AAD, data, object)?;
        if body.len() < 8 {
            return Err(Error::format(object, "truncated"));
        }
        let raw_len = u64::from_le_bytes(body[..8].try_into().expect("8 bytes")) as usize;
        if raw_len > MAX_INDEX_BYTES {
            return Err(Error::format(object, format!("declares {raw_len} bytes")));
        }
        let plain = crate::blob::decompress(&body[8..], raw_len)
            .map_err(|e| Error::format(object, format!("decompression: {e}")))?;
        let file: IndexFile = postcard::from_bytes(&plain).map_err(|e| Error::format(object, e))?;
        if file.version != INDEX_VERSION {
            return Err(Error::format(
                object,
                format!("unknown index version {}", file.version),
            ));
        }
        Ok(file)
    }
}
