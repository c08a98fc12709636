use std::sync::Arc;

use anyhow::Result;
use lifeboat_core::ops::restore::{restore, RestoreOptions, RestoreProgress};
use serde_json::json;

use super::{split_snapshot_path, Loaded};
use crate::args::{Cli, RestoreArgs};
use crate::output::bytes;
use crate::progress::{Reporter, RestoreCounters};

pub fn run(cli: &Cli, args: &RestoreArgs) -> Result<u8> {
    let (spec, subpath) = split_snapshot_path(&args.snapshot);
    let mut options = RestoreOptions::new(&args.target);
    options.include = args.includes.clone();
    options.exclude = args.excludes.clone();
    options.overwrite = args.overwrite.parse().map_err(anyhow::Error::msg)?;
    options.verify = args.verify;
    let loaded = Loaded::open(cli, "restore")?;
    let entry = loaded.resolve(spec, &super::filter(&args.filter))?;
    let located = loaded.locate(entry, subpath.unwrap_or("/"))?;
    if !cli.quiet && !cli.json {
        println!(
            "restoring snapshot {} of {} to {}",
            entry.short_id(),
            entry.snapshot.time,
            args.target.display()
        );
    }
    let whole = subpath.is_none() && options.include.is_empty() && options.exclude.is_empty();
    let counters = Arc::new(RestoreCounters {
        progress: RestoreProgress::default(),
        total_files: if whole {
            entry.snapshot.summary.total_files
        } else {
            0
        },
        total_bytes: if whole {
            entry.snapshot.summary.total_bytes
        } else {
            0
        },
    });
    let summary = {
        let mode = crate::progress::mode(false, cli.quiet || cli.json);
        let _reporter = Reporter::start(mode, counters.clone());
        restore(
            &loaded.repo,
            &loaded.index,
            &located,
            &options,
            &counters.progress,
        )?
    };
    if cli.json {
        let mut v = json!(summary);
        v["message_type"] = json!("summary");
        v["snapshot_id"] = json!(entry.id);
        println!("{v}");
    } else {
        for e in &summary.errors {
            eprintln!("error: {}: {}", e.path, e.message);
        }
        if cli.verbose {
            for w in &summary.warnings {
                eprintln!("warning: {}: {}", w.path, w.message);
            }
        } else if !summary.warnings.is_empty() && !cli.quiet {
            eprintln!("warning: metadata of {} entries could not be fully set (use --verbose to list them)", summary.warnings.len());
        }
        if !cli.quiet {
            println!(
                "restored {} files and {} directories ({}), skipped {}{}",
                summary.files_restored,
                summary.dirs,
                bytes(summary.bytes_written),
                summary.files_skipped,
                if args.verify {
                    format!(", verified {}", summary.files_verified)
                } else {
                    String::new()
                }
            );
        }
    }
    if summary.errors.is_empty() {
        Ok(crate::exit::OK)
    } else {
        eprintln!(
            "lifeboat: {} entries could not be restored",
            summary.errors.len()
        );
        Ok(crate::exit::FATAL)
    }
}
