//! `lifeboat pg wal-push` (archive_command) and `lifeboat pg wal-fetch` (restore_command).
//!
//! wal-push never opens the repository: it copies the file into the spool, fsyncs it, and
//! returns, so the server pays no key derivation per segment. If no pusher runs, it starts
//! one in the background (`wal-push --drain`); the pusher opens the repository once and
//! stores what the spool holds, batch after batch, until the spool has been empty for a
//! while (LIFEBOAT_PG_PUSHER_IDLE seconds, default 30).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lifeboat_core::lock::LockKind;
use lifeboat_core::ops::backup::{
    backup, BackupOptions, BackupProgress, BackupSource, NamedStream,
};
use lifeboat_sources::postgres::spool::{PusherLock, ReadyFile, ReadyReader, Spool};
use lifeboat_sources::postgres::wal::is_archive_file_name;

use super::catalog::{system_tag, wal_catalog, write_file, WAL_LABEL};
use crate::args::{Cli, PgWalFetchArgs, PgWalPushArgs};

/// Files stored per snapshot: 64 segments of 16 MiB, 1 GiB.
const BATCH: usize = 64;
/// How often an idle pusher looks at the spool: a segment waits for this at most before its
/// batch starts (a look is one directory read).
const POLL: Duration = Duration::from_millis(20);
/// Set for the pusher wal-push starts: it waits for more files before it leaves.
const BACKGROUND: &str = "LIFEBOAT_PG_PUSHER_BACKGROUND";
/// The pusher's log is started afresh when it has grown past this.
const LOG_LIMIT: u64 = 8 << 20;

pub fn push(cli: &Cli, args: &PgWalPushArgs) -> Result<u8> {
    let system_id = super::cluster_id(args.spool.pgdata.as_ref())?;
    let dir = super::spool_dir(&args.spool, system_id)?;
    let spool = Spool::open(&dir, system_id)?;
    if let Some(path) = &args.path {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} names no WAL file", path.display()))?;
        spool
            .push(path, name)
            .with_context(|| format!("archiving {}", path.display()))?;
    }
    if args.drain {
        let started_by_wal_push = std::env::var_os(BACKGROUND).is_some();
        return drain(cli, &spool, started_by_wal_push);
    }
    if let Some(free) = spool.try_lock_pusher()? {
        // Released before the pusher starts, which takes it itself. A pusher that is just
        // leaving looks at the spool again after releasing the lock, so a file spooled
        // meanwhile is pushed by one of the two.
        drop(free);
        start_pusher(&spool, args)?;
    }
    Ok(crate::exit::OK)
}

/// Starts `lifeboat ... pg wal-push --drain` detached from the server: its own session, its
/// output to the spool's log. The same arguments as this run, without the WAL file (which
/// the server may recycle as soon as this run returns).
fn start_pusher(spool: &Spool, args: &PgWalPushArgs) -> Result<()> {
    let exe = std::env::current_exe().context("finding the lifeboat executable")?;
    let mut argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let Some(path) = &args.path {
        if let Some(at) = argv.iter().rposition(|a| a == path.as_os_str()) {
            argv.remove(at);
        }
    }
    argv.push("--drain".into());
    let log_path = spool.log_path();
    if std::fs::metadata(&log_path).is_ok_and(|m| m.len() > LOG_LIMIT) {
        let _ = std::fs::remove_file(&log_path);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .args(argv)
        .env("LIFEBOAT_PG_SPOOL", spool.dir())
        .env(BACKGROUND, "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    command
        .spawn()
        .context("starting the background WAL pusher")?;
    Ok(())
}

/// How long a pusher waits for more files before it leaves.
fn idle_limit() -> Duration {
    std::env::var("LIFEBOAT_PG_PUSHER_IDLE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(30), Duration::from_secs_f64)
}

/// Stores the spool's files in the repository until it has been empty for the idle limit
/// (when wal-push started this pusher in the background) or at once (`--drain` by hand).
fn drain(cli: &Cli, spool: &Spool, started_by_wal_push: bool) -> Result<u8> {
    let idle = if started_by_wal_push {
        idle_limit()
    } else {
        Duration::ZERO
    };
    let mut lock = match spool.try_lock_pusher()? {
        Some(lock) => lock,
        // The running pusher stores what this one was started for.
        None if started_by_wal_push => return Ok(crate::exit::OK),
        None => match wait_for_the_running_pusher(cli, spool)? {
            Some(lock) => lock,
            None => return Ok(crate::exit::OK),
        },
    };
    let repo = crate::open::open(cli)?;
    let abandoned = spool.remove_abandoned_copies(&lock)?;
    if abandoned > 0 && !cli.quiet {
        println!("removed {abandoned} partial copies killed wal-push runs left in the spool");
    }
    spool.expire_done()?;
    let mut last_work = Instant::now();
    loop {
        let ready = spool.ready()?;
        if !ready.is_empty() {
            let batch = &ready[..ready.len().min(BATCH)];
            store_batch(cli, &repo, spool, batch)?;
            last_work = Instant::now();
            continue;
        }
        if last_work.elapsed() < idle {
            std::thread::sleep(POLL);
            continue;
        }
        match leave(spool, lock)? {
            Some(again) => {
                lock = again;
                last_work = Instant::now();
            }
            None => return Ok(crate::exit::OK),
        }
    }
}

/// `--drain` by hand promises that the spool's files are in the repository when it exits 0.
/// While another pusher holds the spool, waits until that one has stored every file waiting
/// now (`None`), or has left (its lock, then, so this run stores what remains itself).
fn wait_for_the_running_pusher(cli: &Cli, spool: &Spool) -> Result<Option<PusherLock>> {
    let waiting: BTreeSet<String> = spool.ready()?.into_iter().map(|f| f.name).collect();
    if !cli.quiet {
        println!(
            "another pusher is storing this spool's files; waiting until it has stored the {} \
             waiting now",
            waiting.len()
        );
    }
    loop {
        if let Some(lock) = spool.try_lock_pusher()? {
            return Ok(Some(lock));
        }
        if !spool.ready()?.iter().any(|f| waiting.contains(&f.name)) {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Releases the lock, then looks once more: a file spooled while this pusher held the lock
/// but after its last look would otherwise wait for the next wal-push.
fn leave(spool: &Spool, lock: PusherLock) -> Result<Option<PusherLock>> {
    drop(lock);
    if spool.ready()?.is_empty() {
        return Ok(None);
    }
    Ok(spool.try_lock_pusher()?)
}

fn store_batch(
    cli: &Cli,
    repo: &lifeboat_core::Repository,
    spool: &Spool,
    batch: &[ReadyFile],
) -> Result<()> {
    let mut fresh = Vec::new();
    for file in batch {
        if spool.already_archived(file)? {
            spool.mark_archived(file)?;
        } else {
            fresh.push(file);
        }
    }
    if fresh.is_empty() {
        return Ok(());
    }
    let mut streams = Vec::new();
    let mut digests = Vec::new();
    for file in &fresh {
        let (reader, digest) = ReadyReader::open(file)?;
        streams.push(NamedStream {
            filename: file.name.clone(),
            reader: Box::new(reader),
        });
        digests.push(digest);
    }
    let mut options = BackupOptions::new(BackupSource::Streams {
        streams,
        label: WAL_LABEL.to_string(),
    });
    options.tags = vec![system_tag(spool.system_id())];
    let result = backup(repo, options, &BackupProgress::default())
        .with_context(|| format!("storing {} WAL file(s) in the repository", fresh.len()))?;
    for (file, digest) in fresh.iter().zip(&digests) {
        match digest.get() {
            Some(hash) => spool.mark_archived_as(file, hash)?,
            None => spool.mark_archived(file)?,
        }
    }
    if !cli.quiet {
        println!(
            "{} stored {}..{} ({} file(s)) in snapshot {}",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
            fresh[0].name,
            fresh[fresh.len() - 1].name,
            fresh.len(),
            result.snapshot_id.as_deref().map_or("-", |id| &id[..8])
        );
    }
    Ok(())
}

pub fn fetch(cli: &Cli, args: &PgWalFetchArgs) -> Result<u8> {
    if !is_archive_file_name(&args.name) {
        anyhow::bail!("{:?} is not the name of an archived WAL file", args.name);
    }
    match &args.from {
        Some(dir) => fetch_from_dir(&dir.join(&args.name), &args.destination),
        None => fetch_from_repository(cli, args),
    }
}

/// Not there is an ordinary answer (the server asks for files past the end of the archive,
/// and for history files that never existed): a short message and exit 1, quickly.
fn not_archived(name: &str) -> Result<u8> {
    eprintln!("lifeboat: {name} is not in the archive");
    Ok(crate::exit::FATAL)
}

fn fetch_from_dir(source: &Path, destination: &Path) -> Result<u8> {
    if !source.exists() {
        let name = source.file_name().map_or_else(
            || source.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        return not_archived(&name);
    }
    std::fs::copy(source, destination)
        .with_context(|| format!("copying {} to {}", source.display(), destination.display()))?;
    Ok(crate::exit::OK)
}

fn fetch_from_repository(cli: &Cli, args: &PgWalFetchArgs) -> Result<u8> {
    let system_id = super::cluster_id(args.pgdata.as_ref())?;
    let repo = crate::open::open(cli)?;
    let _lock = repo.lock(LockKind::Shared, "pg wal-fetch").ok();
    let listing = repo.snapshot_listing()?;
    crate::commands::report_unreadable(&listing.unreadable);
    let snapshots = listing.readable;
    let catalog = wal_catalog(&snapshots, system_id);
    let Some(entry) = catalog.get(&args.name) else {
        return not_archived(&args.name);
    };
    let index = repo.load_index()?;
    // Written beside the destination and renamed: the server never sees a partial file.
    let partial = args.destination.with_extension("lifeboat-partial");
    let mut out =
        File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    write_file(&repo, &index, entry, &args.name, &mut out)?;
    out.flush()?;
    drop(out);
    std::fs::rename(&partial, &args.destination)
        .with_context(|| format!("renaming into {}", args.destination.display()))?;
    Ok(crate::exit::OK)
}
