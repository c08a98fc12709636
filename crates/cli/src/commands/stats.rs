use anyhow::Result;
use lifeboat_core::ops::stats::{stats, Stats};
use lifeboat_core::snapshot::SnapshotEntry;
use serde_json::json;

use super::Loaded;
use crate::args::{Cli, StatsArgs, StatsMode};
use crate::output::bytes;

pub fn run(cli: &Cli, args: &StatsArgs) -> Result<u8> {
    let loaded = Loaded::open(cli, "stats")?;
    let filter = super::filter(&args.filter);
    let mut chosen: Vec<&SnapshotEntry> = if args.snapshots.is_empty() {
        loaded
            .snapshots
            .iter()
            .filter(|e| filter.matches(e))
            .collect()
    } else {
        args.snapshots
            .iter()
            .map(|s| loaded.resolve(s, &filter))
            .collect::<Result<_>>()?
    };
    chosen.sort_by(|a, b| a.id.cmp(&b.id));
    chosen.dedup_by(|a, b| a.id == b.id);
    let figures = stats(&loaded.repo, &loaded.index, &chosen)?;
    if cli.json {
        println!("{}", stats_json(&figures));
        return Ok(crate::exit::OK);
    }
    print_stats(&figures, args.mode);
    Ok(crate::exit::OK)
}

fn stats_json(s: &Stats) -> serde_json::Value {
    json!({
        "snapshots": s.snapshots,
        "files": s.files,
        "dirs": s.dirs,
        "restore_size": s.restore_size,
        "blobs": s.blobs,
        "raw_size": s.raw_size,
        "stored_size": s.stored_size,
        "packs": s.packs,
        "unindexed_blobs": s.unindexed_blobs,
        "dedup_ratio": s.dedup_ratio(),
        "compression_ratio": s.compression_ratio(),
    })
}

fn ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

fn print_stats(s: &Stats, mode: Option<StatsMode>) {
    println!("{} snapshot(s)", s.snapshots);
    if mode != Some(StatsMode::RawData) {
        println!("  files:          {} (and {} directories)", s.files, s.dirs);
        println!("  restore size:   {}", bytes(s.restore_size));
    }
    if mode != Some(StatsMode::RestoreSize) {
        println!("  distinct blobs: {} in {} pack(s)", s.blobs, s.packs);
        println!(
            "  raw data:       {} (deduplication {})",
            bytes(s.raw_size),
            ratio(s.dedup_ratio())
        );
        println!(
            "  stored:         {} (compression {})",
            bytes(s.stored_size),
            ratio(s.compression_ratio())
        );
        if s.unindexed_blobs > 0 {
            println!(
                "  {} blob(s) are not in the index: run lifeboat check",
                s.unindexed_blobs
            );
        }
    }
}
