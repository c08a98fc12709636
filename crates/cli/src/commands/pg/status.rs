//! `lifeboat pg status`: the spool (what is still only on this host), the archive in the
//! repository, the base backups, and the window they can restore.

use std::time::SystemTime;

use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use lifeboat_sources::postgres::psql::current_wal_file;
use lifeboat_sources::postgres::recovery::last_continuous_segment;
use lifeboat_sources::postgres::spool::Spool;
use lifeboat_sources::postgres::wal::segments_between;
use serde_json::json;

use super::catalog::{base_backups, wal_catalog};
use crate::args::{Cli, PgStatusArgs};
use crate::commands::Loaded;

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub fn run(cli: &Cli, args: &PgStatusArgs) -> Result<u8> {
    let spool = match &args.spool.spool {
        Some(dir) if args.spool.pgdata.is_none() => Spool::open_existing(dir)?,
        _ => {
            let system_id = super::cluster_id(args.spool.pgdata.as_ref())?;
            Spool::open(&super::spool_dir(&args.spool, system_id)?, system_id)?
        }
    };
    let system_id = spool.system_id();
    let ready = spool.ready()?;
    let last_pushed = spool.last_archived()?;
    let pusher_running = spool.try_lock_pusher()?.is_none();
    let oldest_wait = ready
        .iter()
        .map(|f| f.spooled_at)
        .min()
        .and_then(|t| SystemTime::now().duration_since(t).ok());

    let loaded = Loaded::open(cli, "pg status")?;
    let catalog = wal_catalog(&loaded.snapshots, system_id);
    let newest_segment = catalog
        .keys()
        .filter(|n| lifeboat_sources::postgres::wal::segment_position(n).is_some())
        .max();
    let newest_batch = catalog.values().map(|e| e.snapshot.time).max();
    let bases: Vec<_> = base_backups(&loaded.repo, &loaded.index, &loaded.snapshots, &[])?
        .into_iter()
        .filter(|(_, info)| info.system_identifier == system_id.to_string())
        .collect();
    let names: Vec<String> = catalog.keys().cloned().collect();
    let usable: Vec<_> = bases
        .iter()
        .map(|(entry, info)| {
            let files = lifeboat_sources::postgres::recovery::wal_files_for(
                info,
                names.iter().map(String::as_str),
            );
            let last = last_continuous_segment(info, &files);
            let complete = last.as_deref().is_some_and(|l| {
                lifeboat_sources::postgres::wal::segment_position(l)
                    >= lifeboat_sources::postgres::wal::segment_position(&info.stop_wal_file())
            });
            (entry, info, last, complete)
        })
        .collect();
    // Finished segments the repository lacks: the server writes one segment at a time, so
    // a server whose archive is current is one segment ahead of it.
    let server_segment = current_wal_file(args.pg_bin.as_deref());
    let segment_size = bases
        .iter()
        .map(|(_, i)| i.wal_segment_size)
        .next()
        .unwrap_or(16 << 20);
    let lag = match (&server_segment, newest_segment) {
        (Some(server), Some(newest)) => {
            segments_between(newest, server, segment_size).map(|n| (n - 1).max(0))
        }
        _ => None,
    };
    let window_start = usable.iter().filter(|u| u.3).map(|u| u.1.finished_at).min();

    if cli.json {
        let backups: Vec<_> = usable
            .iter()
            .map(|(entry, info, last, complete)| {
                json!({
                    "snapshot": entry.id,
                    "finished_at": info.finished_at.to_rfc3339(),
                    "start_wal_file": info.start_wal_file,
                    "stop_wal_file": info.stop_wal_file(),
                    "wal_continuous_to": last,
                    "restorable": complete,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "system_identifier": system_id.to_string(),
                "spool": spool.dir().display().to_string(),
                "spooled_files": ready.len(),
                "spooled_bytes": ready.iter().map(|f| f.size).sum::<u64>(),
                "oldest_spooled_seconds": oldest_wait.map(|d| d.as_secs_f64()),
                "pusher_running": pusher_running,
                "last_pushed": last_pushed.as_ref().map(|(n, _)| n),
                "archived_files": catalog.len(),
                "newest_archived_segment": newest_segment,
                "server_segment": server_segment,
                "lag_segments": lag,
                "newest_archive_batch_at": newest_batch.map(|t| t.to_rfc3339()),
                "base_backups": backups,
                "restorable_from": window_start.map(|t| t.to_rfc3339()),
                "restorable_to": newest_batch.map(|t| t.to_rfc3339()),
            })
        );
        return Ok(crate::exit::OK);
    }
    println!("cluster {system_id}");
    println!("spool {}", spool.dir().display());
    match oldest_wait {
        Some(wait) => println!(
            "  {} file(s) only in the spool, the oldest for {:.0} s{}",
            ready.len(),
            wait.as_secs_f64(),
            if pusher_running {
                " (pusher running)"
            } else {
                " (no pusher running: the next wal-push starts one, or run `pg wal-push --drain`)"
            }
        ),
        None => println!("  empty: everything archived is in the repository"),
    }
    if let Some((name, _)) = &last_pushed {
        println!("  last pushed from here: {name}");
    }
    println!(
        "archive: {} file(s) in the repository, newest segment {}",
        catalog.len(),
        newest_segment.map_or("-", String::as_str)
    );
    match (&server_segment, lag) {
        (Some(server), Some(lag)) => {
            println!("server writes {server}: {lag} finished segment(s) not yet in the repository")
        }
        (Some(server), None) => println!("server writes {server}"),
        _ => println!("server: not asked (psql could not reach it; PG* variables say where)"),
    }
    println!("base backups: {}", usable.len());
    for (entry, info, last, complete) in &usable {
        println!(
            "  {}  {}  WAL {}..{}{}",
            entry.short_id(),
            local(info.finished_at),
            info.start_wal_file,
            last.as_deref().unwrap_or("(missing)"),
            if *complete {
                ""
            } else {
                "  NOT RESTORABLE: its WAL is incomplete"
            }
        );
    }
    match (window_start, newest_batch) {
        (Some(from), Some(to)) => println!(
            "restorable: from {} to about {} (the newest archived WAL)",
            local(from),
            local(to.with_timezone(&Utc))
        ),
        _ => println!("restorable: nothing yet (a base backup and its WAL are needed)"),
    }
    Ok(crate::exit::OK)
}
