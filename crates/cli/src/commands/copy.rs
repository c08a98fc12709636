use anyhow::Result;
use lifeboat_core::ops::copy::copy;
use lifeboat_core::snapshot::SnapshotEntry;
use serde_json::json;

use crate::args::{Cli, CopyArgs};
use crate::output::bytes;

pub fn run(cli: &Cli, args: &CopyArgs) -> Result<u8> {
    let from = crate::open::open(cli)?;
    let to = crate::open::open_to(cli, &args.to)?;
    if from.config().id == to.config().id {
        anyhow::bail!("--to names the repository being copied from");
    }
    // A damaged snapshot is left behind (and said); the others are still copied, which is
    // what a second copy is for.
    let listing = from.snapshot_listing()?;
    super::report_unreadable(&listing.unreadable);
    let status = if listing.unreadable.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::FATAL
    };
    let all = listing.readable;
    let filter = super::filter(&args.filter);
    let chosen: Vec<SnapshotEntry> = if args.snapshots.is_empty() {
        all.iter().filter(|e| filter.matches(e)).cloned().collect()
    } else {
        super::resolve_named(&all, &args.snapshots, &filter)?
            .into_iter()
            .cloned()
            .collect()
    };
    let report = copy(&from, &to, &all, &chosen)?;
    if cli.json {
        let copied: Vec<_> = report
            .copied
            .iter()
            .map(|(source, copy)| json!({ "source": source, "copy": copy }))
            .collect();
        println!(
            "{}",
            json!({
                "message_type": "copy",
                "copied": copied,
                "skipped": report.skipped,
                "blobs_stored": report.blobs_stored,
                "bytes_stored": report.bytes_stored,
                "same_chunking": report.same_ids,
                "resumed_packs": report.resumed.packs,
            })
        );
    } else if !cli.quiet {
        if report.resumed.packs > 0 {
            println!(
                "resuming an interrupted copy: {} pack(s) it stored ({} blobs) are reused",
                report.resumed.packs, report.resumed.blobs
            );
        }
        for (source, copy) in &report.copied {
            println!("copied snapshot {} as {}", &source[..8], &copy[..8]);
        }
        println!(
            "{} snapshot(s) copied, {} already there; {} blob(s) stored ({})",
            report.copied.len(),
            report.skipped.len(),
            report.blobs_stored,
            bytes(report.bytes_stored)
        );
        if !report.same_ids && !report.copied.is_empty() {
            println!(
                "note: the repositories chunk differently, so every blob was read to name it; \
                 `init --copy-chunker-params --from-repo` makes a destination that avoids this"
            );
        }
    }
    Ok(status)
}
