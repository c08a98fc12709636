use anyhow::Result;

use crate::args::{Cli, SnapshotsArgs};
use crate::output::snapshot_json;

pub fn run(cli: &Cli, args: &SnapshotsArgs) -> Result<u8> {
    let repo = crate::open::open(cli)?;
    let filter = super::filter(&args.filter);
    let listing = repo.snapshot_listing()?;
    super::report_unreadable(&listing.unreadable);
    // Listed, but the exit status says the repository is damaged.
    let status = if listing.unreadable.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::FATAL
    };
    let all = listing.readable;
    let selected: Vec<_> = all.iter().filter(|e| filter.matches(e)).collect();
    if cli.json {
        let list: Vec<_> = selected.iter().map(|e| snapshot_json(e)).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(status);
    }
    // A busy database archives a batch of WAL every few seconds: counted, not listed.
    let (archive, selected): (Vec<_>, Vec<_>) = selected
        .into_iter()
        .partition(|e| !args.all && lifeboat_core::snapshot::is_archive_source(&e.snapshot.source));
    println!(
        "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  Paths",
        "ID", "Time", "Host", "Tags", "Size"
    );
    println!("{}", "-".repeat(90));
    for e in &selected {
        let s = &e.snapshot;
        println!(
            "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  {}",
            e.short_id(),
            s.time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            s.tags.join(","),
            crate::output::bytes(s.summary.total_bytes),
            s.paths.join(" ")
        );
    }
    println!("{} snapshot(s)", selected.len());
    if let Some(newest) = archive.iter().map(|e| e.snapshot.time).max() {
        let files: usize = archive.iter().map(|e| e.snapshot.paths.len()).sum();
        println!(
            "and {} WAL archive snapshot(s) holding {files} file(s), the newest from {} \
             (`lifeboat pg status`; `--all` lists them)",
            archive.len(),
            newest
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(status)
}
