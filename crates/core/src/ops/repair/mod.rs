//! Repairing a damaged repository (`lifeboat repair`).
//!
//! - [`index::repair_index`] rebuilds the index from the packs' own headers: it finds packs no
//!   index file lists and forgets index entries of packs that are gone.
//! - [`snapshots::repair_snapshots`] rewrites snapshots that refer to data the repository no
//!   longer has, leaving out exactly what is lost.
//!
//! Both take an exclusive lock: they replace what backups, forget, prune and check rely on.

pub mod index;
pub mod snapshots;

use std::sync::Arc;

use crate::error::Result;
use crate::lock::{LockGuard, LockKind};
use crate::repository::Repository;
use crate::storage::DryRunStorage;

/// The repository to work on: `repo` itself, or, for a dry run, a handle whose writes and
/// deletes go nowhere, so that a dry run goes through the very same steps. A dry run takes no
/// lock (it changes nothing); otherwise the exclusive lock is held until the guard drops.
fn prepare(
    repo: &Repository,
    dry_run: bool,
    operation: &str,
) -> Result<(Option<Repository>, Option<LockGuard>)> {
    if dry_run {
        let storage = Arc::new(DryRunStorage::new(repo.storage().clone()));
        return Ok((Some(repo.with_storage(storage)), None));
    }
    Ok((None, Some(repo.lock(LockKind::Exclusive, operation)?)))
}
