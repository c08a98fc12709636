//! Condemned records: the packs a prune took out of the index, kept until no run that could
//! still rely on them is alive.
//!
//! A record is two write-once objects in the `condemned` namespace. `<name>` lists the packs
//! with their blobs, in the layout of an index file (so the packs stay readable and can be
//! indexed again); it is written before the old index files go. `<name>-holders` names the
//! locks that were alive once the old index files were gone: every run that may have read
//! those files. A record whose holders object is missing (a prune killed in between) gets one
//! written by the next prune from the locks alive then, a superset of the runs that matter.

use serde::{Deserialize, Serialize};

use crate::crypto::{open_object, seal_object};
use crate::error::{Error, Result};
use crate::index::{IndexFile, IndexPack};
use crate::lock::LockRecord;
use crate::repository::Repository;
use crate::storage::ObjectKind;

const PACKS_AAD: &[u8] = b"lifeboat condemned v1";
const HOLDERS_AAD: &[u8] = b"lifeboat condemned holders v1";
const HOLDERS_SUFFIX: &str = "-holders";

/// One pending record.
pub struct Condemned {
    pub name: String,
    pub packs: Vec<IndexPack>,
    /// `None` until the holders object is written.
    pub holders: Option<Holders>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Holders {
    pub version: u32,
    /// [`LockRecord::holder_id`] of each lock.
    pub ids: Vec<String>,
    /// What each lock was, for messages.
    pub described: Vec<String>,
}

impl Holders {
    pub fn of(locks: &[LockRecord]) -> Holders {
        Holders {
            version: 1,
            ids: locks.iter().map(LockRecord::holder_id).collect(),
            described: locks.iter().map(LockRecord::describe).collect(),
        }
    }

    /// The descriptions of the holders that still hold a lock in `live`.
    pub fn still_running(&self, live: &[LockRecord]) -> Vec<String> {
        live.iter()
            .filter(|lock| self.ids.contains(&lock.holder_id()))
            .map(LockRecord::describe)
            .collect()
    }
}

/// Writes the record of `packs` and returns its name.
pub fn write_packs(repo: &Repository, packs: Vec<IndexPack>) -> Result<String> {
    let file = IndexFile {
        version: repo.pack_version() as u32,
        packs,
    };
    let bytes = file.seal_as(&repo.keys().seal, PACKS_AAD);
    let name = blake3::hash(&bytes).to_hex().to_string();
    repo.storage().write(ObjectKind::Condemned, &name, &bytes)?;
    Ok(name)
}

pub fn write_holders(repo: &Repository, record: &str, holders: &Holders) -> Result<()> {
    let plain = serde_json::to_vec(holders).expect("holders serialize");
    let bytes = seal_object(&repo.keys().seal, HOLDERS_AAD, &plain);
    let name = format!("{record}{HOLDERS_SUFFIX}");
    match repo.storage().write(ObjectKind::Condemned, &name, &bytes) {
        // A prune killed after writing it: the first one stands.
        Err(crate::storage::StorageError::AlreadyExists { .. }) => Ok(()),
        other => Ok(other?),
    }
}

/// Every pending record, oldest listing order.
pub fn list(repo: &Repository) -> Result<Vec<Condemned>> {
    let storage = repo.storage();
    let names: Vec<String> = storage
        .list(ObjectKind::Condemned)?
        .into_iter()
        .map(|info| info.name)
        .collect();
    let mut out = Vec::new();
    for name in names.iter().filter(|n| !n.ends_with(HOLDERS_SUFFIX)) {
        let object = format!("condemned {name}");
        let data = storage.read(ObjectKind::Condemned, name)?;
        let file = IndexFile::open_as(&repo.keys().seal, PACKS_AAD, data, &object)?;
        let holders_name = format!("{name}{HOLDERS_SUFFIX}");
        let holders = if names.contains(&holders_name) {
            let data = storage.read(ObjectKind::Condemned, &holders_name)?;
            let plain = open_object(&repo.keys().seal, HOLDERS_AAD, &data, &object)?;
            Some(serde_json::from_slice(&plain).map_err(|e| Error::format(&object, e))?)
        } else {
            None
        };
        out.push(Condemned {
            name: name.clone(),
            packs: file.packs,
            holders,
        });
    }
    Ok(out)
}

/// Removes holders objects whose record is gone (a prune killed between the two deletions
/// of [`remove`]).
pub fn remove_orphans(repo: &Repository) -> Result<()> {
    let names: Vec<String> = repo
        .storage()
        .list(ObjectKind::Condemned)?
        .into_iter()
        .map(|info| info.name)
        .collect();
    for name in &names {
        if let Some(record) = name.strip_suffix(HOLDERS_SUFFIX) {
            if !names.iter().any(|n| n == record) {
                delete(repo, name)?;
            }
        }
    }
    Ok(())
}

/// Removes a finished record, holders object first: a prune killed in between leaves a record
/// without holders, which the next prune only waits for once more.
pub fn remove(repo: &Repository, record: &str) -> Result<()> {
    delete(repo, &format!("{record}{HOLDERS_SUFFIX}"))?;
    delete(repo, record)
}

fn delete(repo: &Repository, name: &str) -> Result<()> {
    repo.storage()
        .delete_if_present(ObjectKind::Condemned, name)?;
    Ok(())
}
