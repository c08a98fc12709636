use std::sync::Arc;

use anyhow::{Context, Result};
use lifeboat_core::ops::backup::{
    backup, BackupOptions, BackupProgress, BackupResult, BackupSource, FileChange, NamedStream,
};
use lifeboat_core::snapshot::select::parse_time;
use lifeboat_core::snapshot::SnapshotEntry;
use serde_json::json;

use crate::args::{BackupArgs, Cli};
use crate::output::bytes;
use crate::progress::{self, Reporter};

fn exclude_patterns(args: &BackupArgs) -> Result<Vec<String>> {
    let mut patterns = args.excludes.clone();
    for file in &args.exclude_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read exclude file {}", file.display()))?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(patterns)
}

/// What to back up, as the arguments say; a command is started only by [`start_source`],
/// once the repository is open.
enum SourceArgs<'a> {
    Paths,
    Stdin,
    Command(&'a str),
}

fn source_args(args: &BackupArgs) -> Result<SourceArgs<'_>> {
    let given = [args.stdin, args.command.is_some(), !args.sources.is_empty()];
    if given.iter().filter(|g| **g).count() > 1 {
        anyhow::bail!("--stdin, --command and --source exclude each other");
    }
    if !args.command_line.is_empty() && args.command.is_none() {
        anyhow::bail!("a command after `--` needs --command NAME (the file name to store it as)");
    }
    if let Some(name) = &args.command {
        if !args.paths.is_empty() {
            anyhow::bail!("--command takes no paths: the command follows `--`");
        }
        if !lifeboat_core::tree::is_safe_name(name.as_bytes()) {
            anyhow::bail!(
                "--command {name:?}: the name to store the output as must be a plain file name"
            );
        }
        if args.command_line.is_empty() {
            anyhow::bail!("--command {name} needs the command after `--`, e.g. `--command {name} -- pg_dumpall`");
        }
        return Ok(SourceArgs::Command(name));
    }
    if args.stdin {
        if !args.paths.is_empty() {
            anyhow::bail!("--stdin takes no paths");
        }
        return Ok(SourceArgs::Stdin);
    }
    if args.paths.is_empty() {
        anyhow::bail!("nothing to back up: give at least one path, --stdin, or --command");
    }
    Ok(SourceArgs::Paths)
}

fn start_source(args: &BackupArgs, which: SourceArgs) -> Result<BackupSource> {
    Ok(match which {
        SourceArgs::Paths => BackupSource::Paths(args.paths.clone()),
        SourceArgs::Stdin => BackupSource::Stdin {
            reader: Box::new(std::io::stdin()),
            filename: args.stdin_filename.clone(),
        },
        SourceArgs::Command(name) => {
            let mut command = std::process::Command::new(&args.command_line[0]);
            command.args(&args.command_line[1..]);
            BackupSource::Streams {
                streams: vec![NamedStream {
                    filename: name.to_string(),
                    reader: Box::new(lifeboat_sources::CommandStream::spawn(command)?),
                }],
                label: "command".to_string(),
            }
        }
    })
}

fn options(args: &BackupArgs, source: BackupSource) -> Result<BackupOptions> {
    let mut o = BackupOptions::new(source);
    o.tags = args.tags.clone();
    o.hostname = args.host.clone();
    o.excludes = exclude_patterns(args)?;
    o.one_file_system = args.one_file_system;
    o.time = args.time.as_deref().map(parse_time).transpose()?;
    o.dry_run = args.dry_run;
    o.force = args.force;
    o.compression = args
        .compression
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok(o)
}

pub fn run(cli: &Cli, args: &BackupArgs) -> Result<u8> {
    if !args.sources.is_empty() {
        if !args.paths.is_empty() {
            anyhow::bail!("--source takes no paths: the configuration file names them");
        }
        return super::named::run(cli, args);
    }
    let which = source_args(args)?;
    // Every argument is checked before the repository is opened, and the repository opened
    // before a command is started: a mistake never leaves a dump running for nothing.
    let options = options(args, BackupSource::Paths(Vec::new()))?;
    run_with_source(cli, options, || start_source(args, which))
}

/// Opens (or creates, on the defaults) the repository, then starts the source and backs it
/// up with `options`; prints the summary. Application sources (`sqlite backup`) come here too.
pub fn run_with_source(
    cli: &Cli,
    mut options: BackupOptions,
    start: impl FnOnce() -> Result<BackupSource>,
) -> Result<u8> {
    let repo = crate::open::open_or_create_default(cli)?;
    options.source = start()?;
    let mut counters = BackupProgress::default();
    let mut mode = progress::mode(cli.json, cli.quiet);
    // Totals only feed the progress estimate: without progress they are a second stat per file.
    options.count_totals = !matches!(mode, progress::Mode::Silent);
    if cli.verbose && !cli.json {
        // One line per file replaces the bar.
        mode = progress::Mode::Silent;
        counters.on_file = Some(Box::new(|path, change| {
            let what = match change {
                FileChange::New => "new",
                FileChange::Changed => "modified",
                FileChange::Unmodified => "unchanged",
                FileChange::Other => "other",
            };
            println!("{what:<9} {}", path.display());
        }));
    }
    let counters = Arc::new(counters);
    let result = {
        let _reporter = Reporter::start(mode, counters.clone());
        backup(&repo, options, &counters)?
    };
    if let Some(id) = &result.snapshot_id {
        let entry = SnapshotEntry {
            id: id.clone(),
            snapshot: result.snapshot.clone(),
        };
        crate::written::remember(cli, &repo, &entry);
    }
    report(cli, &result);
    Ok(if result.errors.is_empty() && result.warnings.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::PARTIAL
    })
}

fn report(cli: &Cli, r: &BackupResult) {
    let s = &r.snapshot.summary;
    if cli.json {
        for e in &r.errors {
            println!(
                "{}",
                json!({"message_type": "error", "path": e.path.display().to_string(), "error": e.message})
            );
        }
        for w in &r.warnings {
            println!(
                "{}",
                json!({"message_type": "warning", "path": w.path.display().to_string(), "warning": w.message})
            );
        }
        println!(
            "{}",
            json!({
                "message_type": "summary",
                "snapshot_id": r.snapshot_id,
                "parent": r.parent,
                "dry_run": r.snapshot_id.is_none(),
                "files_new": s.files_new,
                "files_changed": s.files_changed,
                "files_unmodified": s.files_unmodified,
                "dirs": s.dirs,
                "total_files_processed": s.total_files,
                "total_bytes_processed": s.total_bytes,
                "bytes_read": s.bytes_read,
                "bytes_added": s.bytes_added,
                "bytes_added_packed": s.bytes_added_packed,
                "blobs_added": s.blobs_added,
                "errors": s.errors,
                "warnings": r.warnings.len(),
                "duration_seconds": s.duration_seconds,
                "resumed_packs": r.resumed.packs,
                "resumed_blobs": r.resumed.blobs,
            })
        );
        return;
    }
    for e in &r.errors {
        eprintln!("error: {}: {}", e.path.display(), e.message);
    }
    for w in &r.warnings {
        eprintln!("warning: {}: {}", w.path.display(), w.message);
    }
    if cli.quiet {
        return;
    }
    if r.resumed.packs > 0 {
        println!(
            "resuming an interrupted backup: {} pack(s) it stored ({} blobs) are reused",
            r.resumed.packs, r.resumed.blobs
        );
    }
    if let Some(parent) = &r.parent {
        println!("using parent snapshot {}", &parent[..8.min(parent.len())]);
    }
    println!(
        "Files: {:>8} new, {:>8} changed, {:>8} unmodified",
        s.files_new, s.files_changed, s.files_unmodified
    );
    println!("Dirs:  {:>8}", s.dirs);
    println!(
        "Added to the repository: {} ({} stored)",
        bytes(s.bytes_added),
        bytes(s.bytes_added_packed)
    );
    println!(
        "processed {} files, {} in {:.2}s",
        s.total_files,
        bytes(s.total_bytes),
        s.duration_seconds
    );
    match &r.snapshot_id {
        Some(id) => println!("snapshot {} saved", &id[..8]),
        None => println!("dry run: nothing was written"),
    }
    if !r.errors.is_empty() {
        eprintln!(
            "warning: {} source file(s) could not be read; the snapshot holds everything else",
            r.errors.len()
        );
    }
    if !r.warnings.is_empty() {
        eprintln!(
            "warning: {} file(s) kept changing while they were read; the snapshot holds what \
             the last read found",
            r.warnings.len()
        );
    }
}
