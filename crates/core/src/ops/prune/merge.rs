//! Merging small index files. Every backup writes at least one index file, and a WAL archive
//! stores a batch every few seconds: thousands of small files, each read (and decrypted) by
//! every backup when it starts. Prune merges them into files of up to
//! [`BLOBS_PER_INDEX_FILE`] blobs.
//!
//! Order, for readers running meanwhile: the merged files are written first, then the small
//! ones removed. A reader that lists the index between the two sees each pack twice (the
//! index keeps the first location, the same pack either way); one that lists before the
//! removal and reads after it finds a file gone and lists again
//! ([`Repository::read_index_files`]).

use std::collections::HashSet;

use crate::error::Result;
use crate::index::{IndexFile, IndexPack, BLOBS_PER_INDEX_FILE};
use crate::repository::Repository;
use crate::storage::ObjectKind;

use super::plan::IndexFiles;

/// A file with fewer blobs than this is small.
const SMALL_FILE_BLOBS: usize = 10_000;
/// Small files are merged once there are this many.
const MERGE_AT: usize = 32;

/// What a merge did: files written and files removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    pub written: usize,
    pub removed: usize,
}

pub fn merge_small_index_files(repo: &Repository) -> Result<Merged> {
    let files = IndexFiles::load(repo)?;
    let version = repo.pack_version() as u32;
    let small: Vec<&(String, IndexFile)> = files
        .files
        .iter()
        .filter(|(_, f)| f.version == version && blob_count(&f.packs) < SMALL_FILE_BLOBS)
        .collect();
    if small.len() < MERGE_AT {
        return Ok(Merged::default());
    }
    let mut seen = HashSet::new();
    let packs: Vec<&IndexPack> = small
        .iter()
        .flat_map(|(_, f)| f.packs.iter())
        .filter(|p| seen.insert(p.name.as_str()))
        .collect();
    let mut merged = Merged::default();
    let mut pending = IndexFile {
        version,
        packs: Vec::new(),
    };
    for pack in packs {
        if !pending.packs.is_empty()
            && blob_count(&pending.packs) + pack.blobs.len() > BLOBS_PER_INDEX_FILE
        {
            repo.save_index_file(&pending)?;
            merged.written += 1;
            pending.packs.clear();
        }
        pending.packs.push(pack.clone());
    }
    if !pending.packs.is_empty() {
        repo.save_index_file(&pending)?;
        merged.written += 1;
    }
    for (name, _) in small {
        repo.storage().delete_if_present(ObjectKind::Index, name)?;
        merged.removed += 1;
    }
    Ok(merged)
}

fn blob_count(packs: &[IndexPack]) -> usize {
    packs.iter().map(|p| p.blobs.len()).sum()
}
