use anyhow::Result;
use lifeboat_core::ops::replicate::{lag, Newest, SourceLag};
use serde_json::json;

use crate::args::{Cli, ReplicateCommand};

pub fn run(cli: &Cli, command: &ReplicateCommand) -> Result<u8> {
    match command {
        ReplicateCommand::Status(args) => status(cli, &args.to),
    }
}

fn status(cli: &Cli, to: &crate::args::ToRepositoryArgs) -> Result<u8> {
    let primary = crate::open::open(cli)?;
    let copy = crate::open::open_to(cli, to)?;
    if primary.config().id == copy.config().id {
        anyhow::bail!("--to names this repository itself");
    }
    let (here, there) = (primary.snapshot_listing()?, copy.snapshot_listing()?);
    super::report_unreadable(&here.unreadable);
    super::report_unreadable(&there.unreadable);
    let lines = lag(&here.readable, &there.readable);
    let current = lines.iter().all(SourceLag::is_current);
    if cli.json {
        println!(
            "{}",
            json!({
                "message_type": "replicate_status",
                "primary": primary.storage().location(),
                "copy": copy.storage().location(),
                "current": current,
                "sources": lines,
            })
        );
        return Ok(crate::exit::OK);
    }
    println!(
        "{:<16} {:<24} {:<22} {:<22} {:>10} {:>8}",
        "Host", "Paths", "Newest here", "Newest in copy", "Lag", "Missing"
    );
    for line in &lines {
        println!(
            "{:<16} {:<24} {:<22} {:<22} {:>10} {:>8}",
            line.host,
            line.paths.join(","),
            newest(&line.primary),
            newest(&line.copy),
            lag_text(line),
            line.not_copied
        );
    }
    if current {
        println!("the copy holds every snapshot of this repository");
    } else {
        let missing: usize = lines.iter().map(|l| l.not_copied).sum();
        println!("the copy lacks {missing} snapshot(s): run `lifeboat copy --to ...`");
    }
    Ok(crate::exit::OK)
}

fn newest(n: &Option<Newest>) -> String {
    match n {
        Some(n) => format!(
            "{} {}",
            &n.id[..8.min(n.id.len())],
            n.time.format("%Y-%m-%d %H:%M")
        ),
        None => "-".into(),
    }
}

fn lag_text(line: &SourceLag) -> String {
    match line.lag_seconds {
        None if line.primary.is_some() => "never".into(),
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 2 * 86400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}
