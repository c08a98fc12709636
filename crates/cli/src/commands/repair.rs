use anyhow::Result;
use lifeboat_core::ops::repair::index::{repair_index, RepairIndexOptions, RepairIndexReport};
use lifeboat_core::ops::repair::snapshots::{
    repair_snapshots, RepairSnapshotsOptions, RepairSnapshotsReport, RepairedSnapshot,
};
use lifeboat_core::snapshot::SnapshotSpec;
use serde_json::{json, Value};

use crate::args::{Cli, RepairCommand, RepairIndexArgs, RepairSnapshotsArgs};

pub fn run(cli: &Cli, command: &RepairCommand) -> Result<u8> {
    match command {
        RepairCommand::Index(args) => index(cli, args),
        RepairCommand::Snapshots(args) => snapshots(cli, args),
    }
}

fn index(cli: &Cli, args: &RepairIndexArgs) -> Result<u8> {
    let repo = crate::open::open(cli)?;
    let options = RepairIndexOptions {
        dry_run: args.dry_run,
        read_data: args.read_data,
    };
    let report = repair_index(&repo, &options)?;
    if cli.json {
        println!("{}", index_json(&report));
    } else if !cli.quiet {
        print_index(&report);
    }
    Ok(crate::exit::OK)
}

fn index_json(r: &RepairIndexReport) -> Value {
    let skipped: Vec<Value> = r
        .skipped_packs
        .iter()
        .map(|p| {
            json!({
                "pack": p.name,
                "reason": p.reason,
                "blobs_indexed_before": p.blobs_indexed_before,
            })
        })
        .collect();
    let unreadable: Vec<Value> = r
        .unreadable_index_files
        .iter()
        .map(|(name, reason)| json!({ "index": name, "reason": reason }))
        .collect();
    json!({
        "message_type": "summary",
        "dry_run": r.dry_run,
        "packs_read": r.packs_read,
        "blobs_indexed": r.blobs_indexed,
        "index_files_written": r.index_files_written,
        "packs_found": r.packs_found,
        "packs_missing": r.packs_missing,
        "entries_dropped": r.entries_dropped,
        "old_index_files_removed": r.old_index_files_removed,
        "skipped_packs": skipped,
        "unreadable_index_files": unreadable,
        "damaged_blobs": r.damaged_blobs.iter().map(|b| json!({ "pack": b.pack, "blob": b.blob, "reason": b.reason })).collect::<Vec<_>>(),
    })
}

/// "did" or, in a dry run, "would do".
fn verb(dry_run: bool, done: &str, would: &str) -> String {
    if dry_run {
        format!("would {would}")
    } else {
        done.to_string()
    }
}

fn print_index(r: &RepairIndexReport) {
    for (name, reason) in &r.unreadable_index_files {
        println!("old index {name} cannot be read: {reason}");
    }
    for p in &r.skipped_packs {
        println!("skipped pack {}: {}", p.name, p.reason);
        if p.blobs_indexed_before > 0 {
            println!(
                "  the old index listed {} blob(s) in it; they are no longer indexed",
                p.blobs_indexed_before
            );
        }
    }
    for b in &r.damaged_blobs {
        println!("damaged blob {} in pack {}: {}", b.blob, b.pack, b.reason);
    }
    if !r.damaged_blobs.is_empty() {
        println!(
            "{} damaged blob(s) left out of the index: `lifeboat repair snapshots` rewrites \
             the snapshots that used them, then prune removes them",
            r.damaged_blobs.len()
        );
    }
    println!(
        "read {} pack(s): {} {} blob(s) in {} new index file(s)",
        r.packs_read,
        verb(r.dry_run, "indexed", "index"),
        r.blobs_indexed,
        r.index_files_written
    );
    if r.packs_found > 0 {
        println!("{} pack(s) were not in the index before", r.packs_found);
    }
    if r.packs_missing > 0 {
        println!(
            "{} {} index entries of {} pack(s) that no longer exist",
            verb(r.dry_run, "dropped", "drop"),
            r.entries_dropped,
            r.packs_missing
        );
    }
    println!(
        "{} {} old index file(s)",
        verb(r.dry_run, "removed", "remove"),
        r.old_index_files_removed
    );
    if !r.skipped_packs.is_empty() {
        println!(
            "{} damaged pack(s) left in place: `lifeboat repair snapshots` rewrites the snapshots \
             that used them",
            r.skipped_packs.len()
        );
    }
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
}

fn snapshots(cli: &Cli, args: &RepairSnapshotsArgs) -> Result<u8> {
    let repo = crate::open::open(cli)?;
    let options = RepairSnapshotsOptions {
        snapshots: args
            .snapshots
            .iter()
            .map(|s| s.parse::<SnapshotSpec>())
            .collect::<Result<_, _>>()?,
        filter: super::filter(&args.filter),
        forget: args.forget,
        dry_run: args.dry_run,
    };
    let report = repair_snapshots(&repo, &options)?;
    if cli.json {
        println!("{}", snapshots_json(&report));
    } else if !cli.quiet {
        print_snapshots(&report);
    }
    Ok(crate::exit::OK)
}

fn repaired_json(r: &RepairedSnapshot) -> Value {
    let lost: Vec<Value> = r
        .lost
        .iter()
        .map(|l| json!({ "path": l.path, "reason": l.reason, "size": l.size }))
        .collect();
    json!({
        "original": r.original.id,
        "new": r.new_id,
        "forgotten": r.forgotten,
        "lost": lost,
    })
}

fn snapshots_json(r: &RepairSnapshotsReport) -> Value {
    let already: Vec<Value> = r
        .already_repaired
        .iter()
        .map(
            |a| json!({ "original": a.original, "repaired": a.repaired, "forgotten": a.forgotten }),
        )
        .collect();
    json!({
        "message_type": "summary",
        "dry_run": r.dry_run,
        "checked": r.checked,
        "intact": r.checked - r.repaired.len(),
        "repaired": r.repaired.iter().map(repaired_json).collect::<Vec<_>>(),
        "already_repaired": already,
        "indexed_packs_missing": r.indexed_packs_missing,
        "unreadable": r.unreadable.iter().map(|u| json!({ "id": u.id, "error": u.error, "forgotten": u.forgotten })).collect::<Vec<_>>(),
    })
}

fn short(id: &str) -> &str {
    &id[..8.min(id.len())]
}

fn print_snapshots(r: &RepairSnapshotsReport) {
    for u in &r.unreadable {
        let what = match (u.forgotten, r.dry_run) {
            (true, false) => "removed it",
            (true, true) => "would remove it",
            (false, _) => "kept (`repair snapshots --forget` removes it)",
        };
        println!(
            "snapshot {} cannot be read ({}): {what}",
            short(&u.id),
            u.error
        );
    }
    for a in &r.already_repaired {
        let forgotten = match (a.forgotten, r.dry_run) {
            (true, false) => "; removed it",
            (true, true) => "; would remove it",
            (false, _) => "",
        };
        println!(
            "snapshot {} was repaired before, as {}{forgotten}",
            short(&a.original),
            short(&a.repaired)
        );
    }
    for s in &r.repaired {
        println!(
            "snapshot {} of {}: {} path(s) left out",
            s.original.short_id(),
            s.original.snapshot.time.format("%Y-%m-%d %H:%M:%S"),
            s.lost.len()
        );
        for lost in &s.lost {
            println!("  {}: {}", lost.path, lost.reason);
        }
        let saved = match &s.new_id {
            Some(id) => format!("saved as snapshot {}", short(id)),
            None => "would be saved as a new snapshot".to_string(),
        };
        let original = match (s.forgotten, r.dry_run) {
            (true, false) => "the original was removed",
            (true, true) => "the original would be removed",
            (false, _) => "the original is kept (--forget removes it)",
        };
        println!("  {saved}; {original}");
    }
    println!(
        "checked {} snapshot(s): {} {}, {} intact",
        r.checked,
        r.repaired.len(),
        if r.dry_run { "to repair" } else { "repaired" },
        r.checked - r.repaired.len()
    );
    if r.indexed_packs_missing > 0 {
        println!(
            "note: the index lists {} pack(s) that are missing; run `lifeboat repair index`, or \
             backups will not store their data again",
            r.indexed_packs_missing
        );
    }
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
}
