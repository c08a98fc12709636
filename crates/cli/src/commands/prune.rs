use anyhow::Result;
use lifeboat_core::ops::prune::{prune, PackFate, PruneOptions, PruneReport};
use lifeboat_core::Repository;
use serde_json::{json, Value};

use crate::args::{Cli, PruneArgs, PruneOptionArgs};
use crate::output::bytes;

pub fn run(cli: &Cli, args: &PruneArgs) -> Result<u8> {
    let repo = crate::open::open(cli)?;
    prune_and_print(cli, &repo, args.dry_run, &args.options)
}

/// Runs a prune (or plans one) and prints the report; shared with `forget --prune`.
pub fn prune_and_print(
    cli: &Cli,
    repo: &Repository,
    dry_run: bool,
    args: &PruneOptionArgs,
) -> Result<u8> {
    let options = PruneOptions {
        max_unused: args.max_unused,
        dry_run,
    };
    let report = prune(repo, &options)?;
    if cli.json {
        println!("{}", report_json(&report, dry_run));
    } else if !cli.quiet {
        print_report(&report, dry_run);
    }
    Ok(crate::exit::OK)
}

fn report_json(r: &PruneReport, dry_run: bool) -> Value {
    let plan = &r.plan;
    json!({
        "message_type": "prune",
        "dry_run": dry_run,
        "snapshots": r.snapshots,
        "packs_kept": plan.count(PackFate::Keep),
        "packs_to_delete": plan.count(PackFate::Delete),
        "packs_to_repack": plan.count(PackFate::Repack),
        "bytes_to_free": plan.reclaimed(),
        "bytes_to_copy": plan.rewritten(),
        "unused_bytes_kept": plan.unused_kept(),
        "unindexed_packs": plan.unindexed.len(),
        "missing_blobs": plan.missing_blobs,
        "packs_written": r.packs_written,
        "bytes_written": r.bytes_written,
        "index_files_written": r.index_files_written,
        "index_files_removed": r.index_files_removed,
        "packs_condemned": r.packs_condemned,
        "packs_deleted": r.packs_deleted,
        "bytes_deleted": r.bytes_deleted,
        "packs_reindexed": r.packs_reindexed,
        "packs_waiting": r.packs_waiting,
        "unindexed_waiting": r.unindexed_waiting,
        "waiting_for": r.waiting_for,
        "unreadable": r.unreadable,
        "temporaries_removed": r.temporaries_removed,
    })
}

fn print_report(r: &PruneReport, dry_run: bool) {
    let plan = &r.plan;
    let size_of = |fate| -> u64 {
        plan.packs
            .iter()
            .filter(|p| p.fate == fate)
            .map(|p| p.size)
            .sum()
    };
    println!(
        "{} snapshots; packs: {} kept ({}, of it {} unused), {} unused ({}), {} to repack ({}, {} of it still used)",
        r.snapshots,
        plan.count(PackFate::Keep),
        bytes(size_of(PackFate::Keep)),
        bytes(plan.unused_kept()),
        plan.count(PackFate::Delete),
        bytes(size_of(PackFate::Delete)),
        plan.count(PackFate::Repack),
        bytes(size_of(PackFate::Repack)),
        bytes(plan.rewritten()),
    );
    if !plan.unindexed.is_empty() {
        let size: u64 = plan.unindexed.iter().map(|(_, s)| s).sum();
        println!(
            "{} pack(s) ({}) are in no index: from an interrupted or running backup",
            plan.unindexed.len(),
            bytes(size)
        );
    }
    if plan.missing_blobs > 0 {
        println!(
            "warning: {} blob(s) that snapshots use are in no index; run `lifeboat check`",
            plan.missing_blobs
        );
    }
    if dry_run {
        println!(
            "dry run: would free about {} and copy {}; nothing was changed",
            bytes(plan.reclaimed()),
            bytes(plan.rewritten())
        );
        return;
    }
    if r.packs_written > 0 {
        println!(
            "repacked into {} new pack(s) ({})",
            r.packs_written,
            bytes(r.bytes_written)
        );
    }
    if r.packs_reindexed > 0 {
        println!(
            "{} pack(s) indexed again: snapshots written meanwhile use them",
            r.packs_reindexed
        );
    }
    println!(
        "deleted {} pack(s), freed {}",
        r.packs_deleted,
        bytes(r.bytes_deleted)
    );
    if r.packs_waiting > 0 || r.unindexed_waiting > 0 {
        println!(
            "{} pack(s) will be deleted by a later prune, once these runs have ended:",
            r.packs_waiting + r.unindexed_waiting
        );
        let mut waiting = r.waiting_for.clone();
        waiting.sort();
        waiting.dedup();
        for holder in waiting {
            println!("  {holder}");
        }
    }
    if r.temporaries_removed > 0 {
        println!(
            "removed {} temporary file(s) of writers killed mid-write",
            r.temporaries_removed
        );
    }
    for note in &r.unreadable {
        println!("warning: left in place, unreadable: {note}");
    }
}
