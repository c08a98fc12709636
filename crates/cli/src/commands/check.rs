use anyhow::Result;
use lifeboat_core::lock::LockKind;
use lifeboat_core::ops::check::{check_unlocked, CheckOptions, CheckReport, DataSubset, Finding};
use serde_json::{json, Value};

use crate::args::{CheckArgs, Cli};

pub fn run(cli: &Cli, args: &CheckArgs) -> Result<u8> {
    let repo = crate::open::open_uncached(cli)?;
    let read_data = match (args.read_data, args.read_data_subset) {
        (_, Some(subset)) => Some(subset),
        (true, None) => Some(DataSubset::All),
        (false, None) => None,
    };
    // A maintenance lock: forget, prune and repair must not delete what is being checked.
    // Like the other reading commands, check runs without one where this user cannot write
    // a lock (a read-only mount, another user's files, a full disk), and with --no-lock.
    let _lock = if cli.no_lock {
        None
    } else {
        match repo.lock(LockKind::Maintenance, "check") {
            Ok(lock) => Some(lock),
            Err(e) if super::cannot_write(&e) => {
                if !cli.quiet {
                    eprintln!(
                        "warning: checking without a lock ({e}); a prune run meanwhile by \
                         someone who can write the repository may make packs look missing"
                    );
                }
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let written_here = crate::written::load(cli, &repo);
    let options = CheckOptions {
        read_data,
        written_here: written_here.clone(),
    };
    let report = check_unlocked(&repo, &options)?;
    if cli.json {
        println!("{}", report_json(&report));
    } else {
        print_report(&report, cli.quiet);
        if let Some(log) = &written_here {
            crate::written::explain_missing(&repo, log, &report);
        }
    }
    if report.errors() > 0 {
        if !cli.json {
            eprintln!(
                "error: the repository has {} error(s); see above",
                report.errors()
            );
        }
        return Ok(crate::exit::FATAL);
    }
    Ok(crate::exit::OK)
}

fn finding_json(f: &Finding) -> Value {
    let affects: Vec<Value> = f
        .affects
        .iter()
        .map(|(snapshot, path)| json!({ "snapshot": snapshot, "path": path }))
        .collect();
    json!({
        "error": f.error,
        "object": f.object,
        "message": f.message,
        "affects": affects,
    })
}

fn report_json(r: &CheckReport) -> Value {
    json!({
        "message_type": "summary",
        "errors": r.errors(),
        "index_files": r.index_files,
        "packs": r.packs,
        "blobs": r.blobs,
        "snapshots": r.snapshots,
        "trees": r.trees,
        "packs_read": r.packs_read,
        "bytes_read": r.bytes_read,
        "findings": r.findings.iter().map(finding_json).collect::<Vec<_>>(),
    })
}

/// Paths listed per finding before the rest is summed up.
const PATHS_SHOWN: usize = 20;

fn print_report(r: &CheckReport, quiet: bool) {
    for f in &r.findings {
        if quiet && !f.error {
            continue;
        }
        let level = if f.error { "error" } else { "note" };
        println!("{level}: {} {}", f.object, f.message);
        for (snapshot, path) in f.affects.iter().take(PATHS_SHOWN) {
            println!("  snapshot {} {path}", &snapshot[..8.min(snapshot.len())]);
        }
        if f.affects.len() > PATHS_SHOWN {
            println!(
                "  ... and {} more (--json lists all)",
                f.affects.len() - PATHS_SHOWN
            );
        }
    }
    if quiet {
        return;
    }
    println!(
        "checked {} index file(s), {} pack(s), {} blob(s), {} snapshot(s), {} tree(s)",
        r.index_files, r.packs, r.blobs, r.snapshots, r.trees
    );
    if r.packs_read > 0 {
        println!(
            "read {} pack(s), {} of data",
            r.packs_read,
            crate::output::bytes(r.bytes_read)
        );
    }
    if r.errors() == 0 {
        println!("no errors found");
    }
}
