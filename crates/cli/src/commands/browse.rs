//! Reading snapshots without restoring: ls, find, dump, diff.

use std::io::Write;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use lifeboat_core::ops::diff::diff as diff_trees;
use lifeboat_core::ops::dump::dump as dump_path;
use lifeboat_core::ops::find::{find as find_files, FindPattern};
use lifeboat_core::ops::ls::ls as list;
use lifeboat_core::snapshot::SnapshotFilter;
use serde_json::json;

use super::{IndexScope, Loaded};
use crate::args::{Cli, DiffArgs, DumpArgs, FindArgs, LsArgs};
use crate::output::{node_json, node_long};

pub fn ls(cli: &Cli, args: &LsArgs) -> Result<u8> {
    let loaded = Loaded::open_scoped(cli, "ls", IndexScope::Trees)?;
    let entry = loaded.resolve(&args.snapshot, &super::filter(&args.filter))?;
    let path = args.path.as_deref().unwrap_or("/");
    let located = loaded.locate(entry, path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if cli.json {
        writeln!(
            out,
            "{}",
            json!({"message_type": "snapshot", "id": entry.id, "short_id": entry.short_id(), "time": entry.snapshot.time.to_rfc3339()})
        )?;
    }
    list(
        &loaded.repo,
        &loaded.index,
        &located,
        true,
        &mut |path, node| {
            let line = if cli.json {
                node_json(path, node).to_string()
            } else if args.long {
                node_long(path, node)
            } else {
                String::from_utf8_lossy(path).into_owned()
            };
            writeln!(out, "{line}").map_err(|e| lifeboat_core::Error::io("<stdout>", e))
        },
    )?;
    Ok(crate::exit::OK)
}

pub fn find(cli: &Cli, args: &FindArgs) -> Result<u8> {
    let loaded = Loaded::open_scoped(cli, "find", IndexScope::Trees)?;
    let pattern = FindPattern::new(&args.pattern)?;
    let filter = super::filter(&args.filter);
    let chosen: Vec<_> = if args.snapshots.is_empty() {
        loaded
            .snapshots
            .iter()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect()
    } else {
        let mut v = Vec::new();
        for s in &args.snapshots {
            v.push(loaded.resolve(s, &filter)?.clone());
        }
        v
    };
    let matches = find_files(&loaded.repo, &loaded.index, &chosen, &pattern)?;
    if cli.json {
        for m in &matches {
            let mut v = node_json(&m.path, &m.node);
            v["snapshot_id"] = json!(m.snapshot.id);
            v["short_id"] = json!(m.snapshot.short_id());
            v["snapshot_time"] = json!(m.snapshot.snapshot.time.to_rfc3339());
            v["host"] = json!(m.snapshot.snapshot.hostname);
            println!("{v}");
        }
        return Ok(crate::exit::OK);
    }
    let mut current = None;
    for m in &matches {
        if current != Some(&m.snapshot.id) {
            current = Some(&m.snapshot.id);
            println!(
                "snapshot {} of {} on {}:",
                m.snapshot.short_id(),
                m.snapshot
                    .snapshot
                    .time
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S"),
                m.snapshot.snapshot.hostname
            );
        }
        println!("  {}", node_long(&m.path, &m.node));
    }
    if !cli.quiet {
        eprintln!(
            "{} match(es) in {} snapshot(s) searched",
            matches.len(),
            chosen.len()
        );
    }
    Ok(crate::exit::OK)
}

pub fn dump(cli: &Cli, args: &DumpArgs) -> Result<u8> {
    let loaded = Loaded::open_scoped(cli, "dump", IndexScope::TreesAndFiles)?;
    let entry = loaded.resolve(&args.snapshot, &super::filter(&args.filter))?;
    let located = loaded.locate(entry, &args.path)?;
    let index = loaded.index_for(&located)?;
    let stdout = std::io::stdout();
    let stdout = stdout.lock();
    if located.subtree().is_none() {
        // A file goes out a frame (about a MiB) at a time: straight to the descriptor, as a
        // buffer in between would only copy each frame once more.
        let mut out = std::fs::File::from(
            stdout
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating stdout")?,
        );
        dump_path(&loaded.repo, &index, &located, &mut out)?;
        return Ok(crate::exit::OK);
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    dump_path(&loaded.repo, &index, &located, &mut out)?;
    out.flush().context("writing to stdout")?;
    Ok(crate::exit::OK)
}

pub fn diff(cli: &Cli, args: &DiffArgs) -> Result<u8> {
    let loaded = Loaded::open_scoped(cli, "diff", IndexScope::Trees)?;
    let none = SnapshotFilter::default();
    let a = loaded.resolve(&args.first, &none)?;
    let b = loaded.resolve(&args.second, &none)?;
    let mut counts = std::collections::BTreeMap::<char, u64>::new();
    diff_trees(
        &loaded.repo,
        &loaded.index,
        a.snapshot.tree,
        b.snapshot.tree,
        &mut |d| {
            *counts.entry(d.change.symbol()).or_default() += 1;
            let path = String::from_utf8_lossy(&d.path);
            if cli.json {
                println!(
                    "{}",
                    json!({"message_type": "change", "change": d.change.symbol().to_string(), "path": path, "type": d.kind.as_str()})
                );
            } else {
                println!(
                    "{}    {}{}",
                    d.change.symbol(),
                    path,
                    if d.kind == lifeboat_core::tree::NodeKind::Dir {
                        "/"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        },
    )?;
    let get = |c: char| counts.get(&c).copied().unwrap_or(0);
    if cli.json {
        println!(
            "{}",
            json!({"message_type": "summary", "first": a.id, "second": b.id, "added": get('+'), "removed": get('-'),
                   "modified": get('M'), "metadata": get('U'), "type_changed": get('T')})
        );
    } else if !cli.quiet {
        println!(
            "\n{} added, {} removed, {} modified, {} metadata only, {} type changed",
            get('+'),
            get('-'),
            get('M'),
            get('U'),
            get('T')
        );
    }
    Ok(crate::exit::OK)
}
