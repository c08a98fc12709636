//! Picking up after an interrupted backup. A backup names its packs in an index file every 64
//! packs or 5 minutes; the packs it stored after its last index file are in storage but in
//! no index, so the next backup would upload their data again. A backup killed on its way
//! also leaves its lock behind, stale. When the next backup finds such a lock, and no other
//! run is live, it reads the headers of the packs no index file or prune record names and
//! indexes them before it starts: their blobs are then found like any other.
//!
//! Why only then: another live backup's packs are not yet indexed either (and it will index
//! them itself), and prune deletes unindexed packs only while no other run holds a lock; this
//! backup's lock is in storage before it looks, so a prune that starts later sees it and
//! leaves the packs alone, and one that started earlier holds a live lock, which makes this
//! backup leave them.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::index::{IndexFile, IndexPack, BLOBS_PER_INDEX_FILE};
use crate::lock::LockGuard;
use crate::ops::prune::condemned;
use crate::pack::read_header;
use crate::repository::Repository;
use crate::storage::ObjectKind;

/// The operations whose interrupted runs leave packs to pick up (the lock's `operation`).
pub(crate) const WRITERS: [&str; 2] = ["backup", "copy"];

/// What a backup (or copy) picked up from an interrupted one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    pub packs: usize,
    pub blobs: usize,
    /// Stale locks of interrupted backups removed once their packs were indexed.
    pub locks_removed: usize,
}

/// Indexes the packs of interrupted backups; see the module documentation.
pub fn adopt_interrupted(repo: &Repository, lock: &LockGuard) -> Result<Resumed> {
    let mut resumed = Resumed::default();
    let others = lock.others_at_start();
    let interrupted: Vec<&String> = others
        .iter()
        .filter(|(_, record)| record.is_stale() && WRITERS.contains(&record.operation.as_str()))
        .map(|(name, _)| name)
        .collect();
    if interrupted.is_empty() || others.iter().any(|(_, record)| !record.is_stale()) {
        return Ok(resumed);
    }
    // The packs of an index file that cannot be read count as not indexed: their headers
    // are read and indexed again, as `repair index` would.
    let (indexed, _unreadable): (HashSet<String>, _) =
        repo.read_readable_index_files(HashSet::new, |names, _, file| {
            names.extend(file.packs.iter().map(|p| p.name.clone()));
        })?;
    let condemned: HashSet<String> = condemned::list(repo)?
        .into_iter()
        .flat_map(|record| record.packs.into_iter().map(|p| p.name))
        .collect();
    let storage = repo.storage();
    let mut pending = IndexFile::new(repo.pack_version());
    let mut pending_blobs = 0;
    for info in storage.list(ObjectKind::Pack)? {
        if indexed.contains(&info.name) || condemned.contains(&info.name) {
            continue;
        }
        let (salt, blobs) = match read_header(storage.as_ref(), &repo.keys().seal, &info.name) {
            Ok(header) => header,
            // A pack cut short by the crash: prune deletes it.
            Err(Error::Integrity { .. } | Error::Format { .. }) => continue,
            Err(Error::Storage(e)) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        resumed.packs += 1;
        resumed.blobs += blobs.len();
        pending_blobs += blobs.len();
        pending.packs.push(IndexPack {
            name: info.name,
            salt,
            blobs,
        });
        if pending_blobs >= BLOBS_PER_INDEX_FILE {
            save(repo, lock, &mut pending)?;
            pending_blobs = 0;
        }
    }
    save(repo, lock, &mut pending)?;
    // Best effort: a stale lock excludes nothing, and a server may refuse to delete a lock
    // another user wrote (serve-repo --append-only).
    for name in interrupted {
        if let Ok(true) = storage.delete_if_present(ObjectKind::Lock, name) {
            resumed.locks_removed += 1;
        }
    }
    Ok(resumed)
}

fn save(repo: &Repository, lock: &LockGuard, pending: &mut IndexFile) -> Result<()> {
    if pending.packs.is_empty() {
        return Ok(());
    }
    lock.ensure_held()?;
    repo.save_index_file(pending)?;
    pending.packs.clear();
    Ok(())
}
