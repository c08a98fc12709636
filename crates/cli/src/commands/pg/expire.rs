//! `lifeboat pg expire`: forgets the archived WAL that no base backup in the repository
//! needs (all of it before the oldest base backup's first segment). Base backups themselves
//! go with `forget`'s policies; `prune` then frees the space.

use std::collections::BTreeMap;

use anyhow::Result;
use lifeboat_core::ops::forget::forget_ids;
use lifeboat_sources::postgres::base_backup::BaseBackupInfo;
use lifeboat_sources::postgres::expire::unneeded_batches;
use lifeboat_sources::postgres::wal::segment_position;
use serde_json::json;

use super::catalog::{base_backups, system_tag, WAL_LABEL};
use crate::args::{Cli, PgExpireArgs};
use crate::commands::Loaded;

/// Per cluster, the first segment of its oldest base backup.
fn oldest_starts(
    bases: &[(&lifeboat_core::snapshot::SnapshotEntry, BaseBackupInfo)],
) -> BTreeMap<String, String> {
    let mut oldest: BTreeMap<String, String> = BTreeMap::new();
    for (_, info) in bases {
        let start = &info.start_wal_file;
        let earlier = oldest.get(&info.system_identifier).map_or(true, |held| {
            segment_position(start).map(|(_, p)| p) < segment_position(held).map(|(_, p)| p)
        });
        if earlier {
            oldest.insert(info.system_identifier.clone(), start.clone());
        }
    }
    oldest
}

pub fn run(cli: &Cli, args: &PgExpireArgs) -> Result<u8> {
    let loaded = Loaded::open(cli, "pg expire")?;
    let bases = base_backups(&loaded.repo, &loaded.index, &loaded.snapshots, &[])?;
    let mut expired: Vec<String> = Vec::new();
    let mut report = Vec::new();
    for (system_id, start) in oldest_starts(&bases) {
        let Ok(id) = system_id.parse::<u64>() else {
            eprintln!("warning: a base backup names the cluster {system_id:?}; its WAL is kept");
            continue;
        };
        let tag = system_tag(id);
        let batches: Vec<(String, Vec<String>)> = loaded
            .snapshots
            .iter()
            .filter(|e| e.snapshot.source == WAL_LABEL && e.snapshot.tags.contains(&tag))
            .map(|e| {
                let files = e
                    .snapshot
                    .paths
                    .iter()
                    .map(|p| p.trim_start_matches('/').to_string())
                    .collect();
                (e.id.clone(), files)
            })
            .collect();
        let gone: Vec<String> = unneeded_batches(&batches, &start)
            .into_iter()
            .cloned()
            .collect();
        report.push((system_id, start, batches.len(), gone.len()));
        expired.extend(gone);
    }
    forget_ids(&loaded.repo, &expired, args.dry_run)?;
    if cli.json {
        let clusters: Vec<_> = report
            .iter()
            .map(|(id, start, batches, gone)| {
                json!({"system_identifier": id, "oldest_base_backup_starts_at": start,
                       "wal_snapshots": batches, "expired": gone})
            })
            .collect();
        println!(
            "{}",
            json!({"dry_run": args.dry_run, "clusters": clusters, "expired": expired})
        );
    } else if !cli.quiet {
        for (id, start, batches, gone) in &report {
            println!(
                "cluster {id}: {gone} of {batches} WAL archive snapshot(s) lie wholly before {start}, \
                 the oldest base backup's first segment{}",
                if args.dry_run { " (dry run: kept)" } else { ": forgotten" }
            );
        }
        if report.is_empty() {
            println!("no base backup in the repository: every archived WAL file is kept");
        } else if !args.dry_run && !expired.is_empty() {
            println!("run `lifeboat prune` to free their space");
        }
    }
    Ok(crate::exit::OK)
}
