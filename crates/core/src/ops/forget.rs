//! Forgetting snapshots: by a retention policy applied to each group of snapshots, or by id.
//!
//! Only snapshot objects are deleted; the data they alone referenced stays until `prune`. So
//! forget can run beside backups (a backup whose parent snapshot is forgotten still finds the
//! parent's trees), and takes a maintenance lock, which only another forget or prune, or a
//! repair, conflicts with.

use chrono::TimeZone;

use crate::error::{Error, Result};
use crate::lock::{self, LockKind};
use crate::repository::Repository;
use crate::snapshot::retention::{self, GroupBy, GroupKey, RetentionPolicy, Verdict};
use crate::snapshot::{is_archive_source, SnapshotEntry, SnapshotFilter};
use crate::storage::ObjectKind;

#[derive(Clone, Debug, Default)]
pub struct ForgetOptions {
    pub policy: RetentionPolicy,
    pub group_by: GroupBy,
    pub filter: SnapshotFilter,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
}

/// One group's snapshots, newest first, with what the policy decided for each.
#[derive(Clone, Debug)]
pub struct ForgetGroup {
    pub key: GroupKey,
    pub snapshots: Vec<(SnapshotEntry, Verdict)>,
}

impl ForgetGroup {
    pub fn removed(&self) -> impl Iterator<Item = &SnapshotEntry> {
        self.snapshots
            .iter()
            .filter(|(_, v)| !v.keep)
            .map(|(e, _)| e)
    }
}

/// Applies the policy (periods counted in `zone`) to the snapshots the filter selects, group
/// by group, and deletes the snapshots no rule keeps unless this is a dry run.
pub fn forget_by_policy<Tz: TimeZone>(
    repo: &Repository,
    options: &ForgetOptions,
    zone: &Tz,
) -> Result<Vec<ForgetGroup>> {
    if options.policy.is_empty() {
        return Err(Error::InvalidInput(
            "no retention rule given (--keep-last, --keep-daily, ... or --keep-within, --keep-tag): \
             refusing to forget every snapshot"
                .into(),
        ));
    }
    let _lock = (!options.dry_run)
        .then(|| maintenance_lock(repo))
        .transpose()?;
    // A snapshot that cannot be read is kept: its time and source are unknown, so no rule can
    // be applied to it (`forget ID` removes it; the CLI says so).
    let all = repo.snapshot_listing()?.readable;
    let selected: Vec<SnapshotEntry> = all
        .into_iter()
        .filter(|e| options.filter.matches(e) && !is_archive_source(&e.snapshot.source))
        .collect();
    let now = chrono::Utc::now();
    let groups: Vec<ForgetGroup> = retention::group(&selected, options.group_by)
        .into_iter()
        .map(|(key, members)| ForgetGroup {
            key,
            snapshots: retention::apply(&options.policy, &members, zone, now)
                .into_iter()
                .map(|(entry, verdict)| (entry.clone(), verdict))
                .collect(),
        })
        .collect();
    if !options.dry_run {
        let removed: Vec<String> = groups
            .iter()
            .flat_map(|g| g.removed().map(|e| e.id.clone()))
            .collect();
        delete_snapshots(repo, "forget", &removed)?;
    }
    Ok(groups)
}

/// Deletes the named snapshots (full ids, as `SnapshotSpec::resolve` gives them).
pub fn forget_ids(repo: &Repository, ids: &[String], dry_run: bool) -> Result<()> {
    if dry_run {
        return Ok(());
    }
    let _lock = maintenance_lock(repo)?;
    delete_snapshots(repo, "forget", ids)
}

fn maintenance_lock(repo: &Repository) -> Result<lock::LockGuard> {
    repo.ensure_can_delete("forget")?;
    repo.lock(LockKind::Maintenance, "forget")
}

/// Records the removal (for the snapshot chain), then deletes.
pub(crate) fn delete_snapshots(repo: &Repository, operation: &str, ids: &[String]) -> Result<()> {
    repo.record_forgotten(operation, ids)?;
    for id in ids {
        // Another forget (on another host, without a shared lock directory) may get there
        // first.
        repo.storage().delete_if_present(ObjectKind::Snapshot, id)?;
    }
    Ok(())
}
