use anyhow::{bail, Result};
use chrono::{FixedOffset, Local, TimeZone, Utc};
use lifeboat_core::ops::forget::{forget_by_policy, forget_ids, ForgetGroup, ForgetOptions};
use lifeboat_core::snapshot::retention::RetentionPolicy;
use lifeboat_core::snapshot::SnapshotEntry;
use lifeboat_core::Repository;
use serde_json::{json, Value};

use crate::args::{Cli, ForgetArgs};
use crate::output::snapshot_json;

/// The zone `--tz` names.
enum Zone {
    Local,
    Utc,
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

fn parse_zone(s: &str) -> Result<Zone> {
    if s.eq_ignore_ascii_case("local") {
        return Ok(Zone::Local);
    }
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(Zone::Utc);
    }
    if let Ok(offset) = s.parse::<FixedOffset>() {
        return Ok(Zone::Fixed(offset));
    }
    s.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
        anyhow::anyhow!(
            "--tz {s:?}: not a time zone; use local, UTC, an offset like +02:00 or a name like Europe/Berlin"
        )
    })
}

fn policy(args: &ForgetArgs) -> RetentionPolicy {
    RetentionPolicy {
        last: args.keep_last.unwrap_or_default(),
        hourly: args.keep_hourly.unwrap_or_default(),
        daily: args.keep_daily.unwrap_or_default(),
        weekly: args.keep_weekly.unwrap_or_default(),
        monthly: args.keep_monthly.unwrap_or_default(),
        yearly: args.keep_yearly.unwrap_or_default(),
        within: args.keep_within,
        tags: args.keep_tag.clone(),
    }
}

pub fn run(cli: &Cli, args: &ForgetArgs) -> Result<u8> {
    let policy = policy(args);
    let zone = parse_zone(&args.tz)?;
    if !args.snapshots.is_empty() {
        if !policy.is_empty() {
            bail!("give either snapshots to forget or a retention policy, not both");
        }
        let repo = crate::open::open(cli)?;
        by_id(cli, &repo, args)?;
        return then_prune(cli, &repo, args);
    }
    let repo = crate::open::open(cli)?;
    // No rule can be applied to a snapshot whose time is unknown: it is kept, and said.
    super::report_unreadable(&repo.snapshot_listing()?.unreadable);
    let options = ForgetOptions {
        policy,
        group_by: args.group_by,
        filter: super::filter(&args.filter),
        dry_run: args.dry_run,
    };
    let groups = match &zone {
        Zone::Local => forget_by_policy(&repo, &options, &Local),
        Zone::Utc => forget_by_policy(&repo, &options, &Utc),
        Zone::Fixed(offset) => forget_by_policy(&repo, &options, offset),
        Zone::Named(tz) => forget_by_policy(&repo, &options, tz),
    }?;
    if cli.json {
        let list: Vec<Value> = groups.iter().map(group_json).collect();
        println!("{}", Value::Array(list));
    } else if !cli.quiet {
        print_groups(&groups, &zone, args.dry_run, args.prune);
    }
    then_prune(cli, &repo, args)
}

/// `--prune`: a prune (planned only, with --dry-run) once the snapshots are gone.
fn then_prune(cli: &Cli, repo: &Repository, args: &ForgetArgs) -> Result<u8> {
    if !args.prune {
        return Ok(crate::exit::OK);
    }
    super::prune::prune_and_print(cli, repo, args.dry_run, &args.prune_options)
}

fn by_id(cli: &Cli, repo: &Repository, args: &ForgetArgs) -> Result<()> {
    let listing = repo.snapshot_listing()?;
    // A snapshot that cannot be read can still be named, to remove it.
    let (damaged, named): (Vec<String>, Vec<String>) = args
        .snapshots
        .iter()
        .cloned()
        .partition(|spec| listing.unreadable_named(spec).is_some());
    let damaged_ids: Vec<String> = damaged
        .iter()
        .filter_map(|spec| listing.unreadable_named(spec).map(|u| u.id.clone()))
        .collect();
    let filter = super::filter(&args.filter);
    let chosen = super::resolve_named(&listing.readable, &named, &filter)?;
    let mut ids: Vec<String> = chosen.iter().map(|e| e.id.clone()).collect();
    ids.extend(damaged_ids.iter().cloned());
    forget_ids(repo, &ids, args.dry_run)?;
    if cli.json {
        let list: Vec<Value> = chosen.iter().map(|e| snapshot_json(e)).collect();
        println!("{}", json!({ "remove": list, "dry_run": args.dry_run }));
    } else if !cli.quiet {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for e in &chosen {
            println!("{verb} snapshot {}", e.short_id());
        }
        for id in &damaged_ids {
            println!("{verb} unreadable snapshot {}", &id[..8.min(id.len())]);
        }
    }
    Ok(())
}

fn group_json(group: &ForgetGroup) -> Value {
    let pick = |keep: bool| -> Vec<Value> {
        group
            .snapshots
            .iter()
            .filter(|(_, v)| v.keep == keep)
            .map(|(e, _)| snapshot_json(e))
            .collect()
    };
    let reasons: Vec<Value> = group
        .snapshots
        .iter()
        .map(|(e, v)| json!({ "id": e.id, "keep": v.keep, "matches": v.reasons }))
        .collect();
    json!({
        "host": group.key.host,
        "paths": group.key.paths,
        "tags": group.key.tags,
        "keep": pick(true),
        "remove": pick(false),
        "reasons": reasons,
    })
}

fn local_time(e: &SnapshotEntry, zone: &Zone) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S";
    let t = &e.snapshot.time;
    match zone {
        Zone::Local => t.with_timezone(&Local).format(FORMAT).to_string(),
        Zone::Utc => t.with_timezone(&Utc).format(FORMAT).to_string(),
        Zone::Fixed(o) => o
            .from_utc_datetime(&t.naive_utc())
            .format(FORMAT)
            .to_string(),
        Zone::Named(tz) => t.with_timezone(tz).format(FORMAT).to_string(),
    }
}

fn print_groups(groups: &[ForgetGroup], zone: &Zone, dry_run: bool, prune: bool) {
    let mut removed = 0;
    for group in groups {
        let keep = group.snapshots.iter().filter(|(_, v)| v.keep).count();
        let remove = group.snapshots.len() - keep;
        removed += remove;
        println!("snapshots of {}: keep {keep}, remove {remove}", group.key);
        println!("{:<8}  {:<19}  {:<6}  Reasons", "ID", "Time", "Action");
        for (e, v) in &group.snapshots {
            println!(
                "{:<8}  {:<19}  {:<6}  {}",
                e.short_id(),
                local_time(e, zone),
                if v.keep { "keep" } else { "remove" },
                v.reasons.join(", ")
            );
        }
        println!();
    }
    if dry_run {
        println!("dry run: would remove {removed} snapshot(s); nothing was changed");
    } else if prune {
        println!("removed {removed} snapshot(s)");
    } else {
        println!("removed {removed} snapshot(s); run prune to free their data");
    }
}
