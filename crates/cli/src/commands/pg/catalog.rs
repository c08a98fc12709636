//! Where the WAL archive and the base backups live in a repository: snapshots of their own
//! source labels. Each pusher batch of WAL files is one `postgres-wal` snapshot, tagged with
//! the cluster's system identifier, holding the files at its root under their own names;
//! each base backup is one `postgres-base` snapshot holding `base.tar` and its info.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use lifeboat_core::index::Index;
use lifeboat_core::ops::dump::dump;
use lifeboat_core::snapshot::SnapshotEntry;
use lifeboat_core::Repository;
use lifeboat_sources::postgres::base_backup::{BaseBackupInfo, INFO_FILE, INFO_VERSION};

pub const BASE_LABEL: &str = "postgres-base";
pub const WAL_LABEL: &str = "postgres-wal";

/// The tag that names the cluster a WAL snapshot belongs to.
pub fn system_tag(system_id: u64) -> String {
    format!("pg-system={system_id}")
}

/// The archived WAL files of one cluster, each with the newest snapshot that holds it.
pub fn wal_catalog(
    snapshots: &[SnapshotEntry],
    system_id: u64,
) -> BTreeMap<String, &SnapshotEntry> {
    let tag = system_tag(system_id);
    let mut catalog: BTreeMap<String, &SnapshotEntry> = BTreeMap::new();
    let batches = snapshots
        .iter()
        .filter(|e| e.snapshot.source == WAL_LABEL && e.snapshot.tags.contains(&tag));
    for entry in batches {
        for path in &entry.snapshot.paths {
            let name = path.trim_start_matches('/').to_string();
            let newer = catalog
                .get(&name)
                .map_or(true, |held| held.snapshot.time < entry.snapshot.time);
            if newer {
                catalog.insert(name, entry);
            }
        }
    }
    catalog
}

/// Writes the file `name` at the root of snapshot `entry` to `out`.
pub fn write_file(
    repo: &Repository,
    index: &Index,
    entry: &SnapshotEntry,
    name: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let path = format!("/{name}");
    let located = lifeboat_core::ops::walk::locate(
        repo,
        index,
        entry.snapshot.tree,
        path.as_bytes(),
        entry.short_id(),
    )?;
    dump(repo, index, &located, out)
        .with_context(|| format!("reading {path} of snapshot {}", entry.short_id()))
}

/// The base backups among `snapshots` (of `hosts`, if any are named), each with its info.
pub fn base_backups<'a>(
    repo: &Repository,
    index: &Index,
    snapshots: &'a [SnapshotEntry],
    hosts: &[String],
) -> Result<Vec<(&'a SnapshotEntry, BaseBackupInfo)>> {
    let mut found = Vec::new();
    let bases = snapshots.iter().filter(|e| {
        e.snapshot.source == BASE_LABEL
            && (hosts.is_empty() || hosts.contains(&e.snapshot.hostname))
    });
    for entry in bases {
        let mut text = Vec::new();
        write_file(repo, index, entry, INFO_FILE, &mut text)?;
        let info: BaseBackupInfo = serde_json::from_slice(&text)
            .with_context(|| format!("{INFO_FILE} of snapshot {}", entry.short_id()))?;
        if info.version != INFO_VERSION {
            anyhow::bail!(
                "{INFO_FILE} of snapshot {} has version {}, which this lifeboat does not know",
                entry.short_id(),
                info.version
            );
        }
        found.push((entry, info));
    }
    Ok(found)
}
