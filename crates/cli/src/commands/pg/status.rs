//! `lifeboat pg status`: the spool (what is still only on this host), the archive in the
//! repository, the base backups, and the window they can restore. With `--local`, only what
//! this host knows (the spool and the server), without opening the repository: cheap enough
//! to poll.

use std::time::SystemTime;

use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use lifeboat_sources::postgres::psql::current_wal_file;
use lifeboat_sources::postgres::recovery::{wal_files_for, wal_reach};
use lifeboat_sources::postgres::spool::Spool;
use lifeboat_sources::postgres::wal::{segment_position, segments_between};
use serde_json::{json, Value};

use super::catalog::{base_backups, wal_catalog};
use crate::args::{Cli, PgStatusArgs};
use crate::commands::Loaded;

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What the spool on this host says.
struct SpoolState {
    dir: String,
    system_id: u64,
    spooled: usize,
    spooled_bytes: u64,
    oldest_wait: Option<f64>,
    pusher_running: bool,
    last_pushed: Option<String>,
}

fn spool_state(args: &PgStatusArgs) -> Result<SpoolState> {
    let spool = match &args.spool.spool {
        Some(dir) if args.spool.pgdata.is_none() => Spool::open_existing(dir)?,
        _ => {
            let system_id = super::cluster_id(args.spool.pgdata.as_ref())?;
            Spool::open(&super::spool_dir(&args.spool, system_id)?, system_id)?
        }
    };
    let ready = spool.ready()?;
    Ok(SpoolState {
        dir: spool.dir().display().to_string(),
        system_id: spool.system_id(),
        spooled: ready.len(),
        spooled_bytes: ready.iter().map(|f| f.size).sum(),
        oldest_wait: ready
            .iter()
            .map(|f| f.spooled_at)
            .min()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs_f64()),
        pusher_running: spool.try_lock_pusher()?.is_none(),
        last_pushed: spool.last_archived()?.map(|(name, _)| name),
    })
}

/// One base backup and how far its WAL reaches without a gap.
struct BaseState {
    snapshot: String,
    short_id: String,
    finished_at: DateTime<Utc>,
    start_wal_file: String,
    stop_wal_file: String,
    continuous_to: Option<String>,
    restorable: bool,
}

/// What the repository holds for the cluster.
struct ArchiveState {
    files: usize,
    newest_segment: Option<String>,
    newest_batch: Option<DateTime<Utc>>,
    segment_size: u64,
    bases: Vec<BaseState>,
}

fn archive_state(cli: &Cli, system_id: u64) -> Result<ArchiveState> {
    let loaded = Loaded::open(cli, "pg status")?;
    let catalog = wal_catalog(&loaded.snapshots, system_id);
    let names: Vec<&str> = catalog.keys().map(String::as_str).collect();
    let bases: Vec<_> = base_backups(&loaded.repo, &loaded.index, &loaded.snapshots, &[])?
        .into_iter()
        .filter(|(_, info)| info.system_identifier == system_id.to_string())
        .collect();
    let segment_size = bases
        .first()
        .map_or(16 << 20, |(_, info)| info.wal_segment_size);
    let bases = bases
        .into_iter()
        .map(|(entry, info)| {
            let files = wal_files_for(&info, names.iter().copied());
            let reach = wal_reach(&info, &files);
            BaseState {
                snapshot: entry.id.clone(),
                short_id: entry.short_id().to_string(),
                finished_at: info.finished_at,
                start_wal_file: info.start_wal_file.clone(),
                stop_wal_file: info.stop_wal_file(),
                continuous_to: reach.last,
                restorable: reach.covers_backup,
            }
        })
        .collect();
    Ok(ArchiveState {
        files: catalog.len(),
        newest_segment: names
            .iter()
            .filter(|n| segment_position(n).is_some())
            .max()
            .map(|n| n.to_string()),
        newest_batch: catalog
            .values()
            .map(|e| e.snapshot.time.with_timezone(&Utc))
            .max(),
        segment_size,
        bases,
    })
}

/// Finished segments not yet stored: the server writes one segment at a time, so a server
/// whose archive is current is one segment ahead of it.
fn lag(server: Option<&str>, stored: Option<&str>, segment_size: u64) -> Option<i64> {
    segments_between(stored?, server?, segment_size).map(|n| (n - 1).max(0))
}

pub fn run(cli: &Cli, args: &PgStatusArgs) -> Result<u8> {
    let spool = spool_state(args)?;
    let archive = if args.local {
        None
    } else {
        Some(archive_state(cli, spool.system_id)?)
    };
    let server_segment = current_wal_file(args.pg_bin.as_deref());
    // Without the repository, the newest segment this host's pushers stored stands in.
    let (stored, segment_size) = match &archive {
        Some(a) => (a.newest_segment.clone(), a.segment_size),
        None => (spool.last_pushed.clone(), 16 << 20),
    };
    let lag = lag(server_segment.as_deref(), stored.as_deref(), segment_size);
    if cli.json {
        println!(
            "{}",
            status_json(&spool, archive.as_ref(), server_segment.as_deref(), lag)
        );
    } else {
        print_status(&spool, archive.as_ref(), server_segment.as_deref(), lag);
    }
    Ok(crate::exit::OK)
}

fn status_json(
    spool: &SpoolState,
    archive: Option<&ArchiveState>,
    server_segment: Option<&str>,
    lag: Option<i64>,
) -> Value {
    let mut out = json!({
        "system_identifier": spool.system_id.to_string(),
        "spool": spool.dir,
        "spooled_files": spool.spooled,
        "spooled_bytes": spool.spooled_bytes,
        "oldest_spooled_seconds": spool.oldest_wait,
        "pusher_running": spool.pusher_running,
        "last_pushed": spool.last_pushed,
        "server_segment": server_segment,
        "lag_segments": lag,
    });
    if let Some(a) = archive {
        let backups: Vec<Value> = a
            .bases
            .iter()
            .map(|b| {
                json!({
                    "snapshot": b.snapshot,
                    "finished_at": b.finished_at.to_rfc3339(),
                    "start_wal_file": b.start_wal_file,
                    "stop_wal_file": b.stop_wal_file,
                    "wal_continuous_to": b.continuous_to,
                    "restorable": b.restorable,
                })
            })
            .collect();
        let window_start = a
            .bases
            .iter()
            .filter(|b| b.restorable)
            .map(|b| b.finished_at)
            .min();
        out["archived_files"] = json!(a.files);
        out["newest_archived_segment"] = json!(a.newest_segment);
        out["newest_archive_batch_at"] = json!(a.newest_batch.map(|t| t.to_rfc3339()));
        out["base_backups"] = json!(backups);
        out["restorable_from"] = json!(window_start.map(|t| t.to_rfc3339()));
        out["restorable_to"] = json!(a.newest_batch.map(|t| t.to_rfc3339()));
    }
    out
}

fn print_status(
    spool: &SpoolState,
    archive: Option<&ArchiveState>,
    server_segment: Option<&str>,
    lag: Option<i64>,
) {
    println!("cluster {}", spool.system_id);
    println!("spool {}", spool.dir);
    match spool.oldest_wait {
        Some(wait) => println!(
            "  {} file(s) only in the spool, the oldest for {wait:.0} s{}",
            spool.spooled,
            if spool.pusher_running {
                " (pusher running)"
            } else {
                " (no pusher running: the next wal-push starts one, or run `pg wal-push --drain`)"
            }
        ),
        None => println!("  empty: everything archived is in the repository"),
    }
    if let Some(name) = &spool.last_pushed {
        println!("  last pushed from here: {name}");
    }
    match (server_segment, lag) {
        (Some(server), Some(lag)) => {
            println!("server writes {server}: {lag} finished segment(s) not yet in the repository")
        }
        (Some(server), None) => println!("server writes {server}"),
        _ => println!("server: not asked (psql could not reach it; PG* variables say where)"),
    }
    let Some(archive) = archive else {
        return;
    };
    println!(
        "archive: {} file(s) in the repository, newest segment {}",
        archive.files,
        archive.newest_segment.as_deref().unwrap_or("-")
    );
    println!("base backups: {}", archive.bases.len());
    for b in &archive.bases {
        println!(
            "  {}  {}  WAL {}..{}{}",
            b.short_id,
            local(b.finished_at),
            b.start_wal_file,
            b.continuous_to.as_deref().unwrap_or("(missing)"),
            if b.restorable {
                ""
            } else {
                "  NOT RESTORABLE: its WAL is incomplete"
            }
        );
    }
    let window_start = archive
        .bases
        .iter()
        .filter(|b| b.restorable)
        .map(|b| b.finished_at)
        .min();
    match (window_start, archive.newest_batch) {
        (Some(from), Some(to)) => println!(
            "restorable: from {} to about {} (the newest archived WAL)",
            local(from),
            local(to)
        ),
        _ => println!("restorable: nothing yet (a base backup and its WAL are needed)"),
    }
}
