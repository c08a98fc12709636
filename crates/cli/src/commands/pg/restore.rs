//! `lifeboat pg restore`: the newest base backup that serves the target, unpacked into a new
//! data directory, with the WAL it needs fetched beside it and the recovery settings
//! written; starting PostgreSQL on the directory then replays up to the target.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use lifeboat_core::index::Index;
use lifeboat_core::snapshot::SnapshotEntry;
use lifeboat_core::Repository;
use lifeboat_sources::postgres::base_backup::{BaseBackupInfo, BASE_FILE};
use lifeboat_sources::postgres::recovery::{
    choose, prepare_data_dir, shell_quote, unpack_base, valid_timeline, wal_files_for, wal_reach,
    write_recovery_settings, RecoverySettings, RecoveryTarget, TargetAction, RESTORE_WAL_DIR,
};

use super::catalog::{base_backups, wal_catalog, write_file};
use crate::args::{Cli, PgRestoreArgs};
use crate::commands::Loaded;

/// A time as PostgreSQL prints it (`2026-12-01 10:00:00.123+01`), or as lifeboat reads
/// times elsewhere (RFC 3339, or local time without an offset).
fn parse_target_time(text: &str) -> Result<DateTime<FixedOffset>> {
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Ok(t);
        }
    }
    Ok(lifeboat_core::snapshot::select::parse_time(text)?)
}

fn target(args: &PgRestoreArgs) -> Result<RecoveryTarget> {
    Ok(if let Some(t) = &args.target_time {
        RecoveryTarget::Time(parse_target_time(t)?)
    } else if let Some(lsn) = &args.target_lsn {
        RecoveryTarget::Lsn(lsn.parse().map_err(anyhow::Error::msg)?)
    } else if let Some(xid) = args.target_xid {
        RecoveryTarget::Xid(xid)
    } else {
        RecoveryTarget::Latest
    })
}

fn describe(target: &RecoveryTarget) -> String {
    match target {
        RecoveryTarget::Latest => "the end of the archive".into(),
        RecoveryTarget::Time(t) => format!("time {t}"),
        RecoveryTarget::Lsn(l) => format!("WAL position {l}"),
        RecoveryTarget::Xid(x) => format!("transaction {x}"),
    }
}

pub fn run(cli: &Cli, args: &PgRestoreArgs) -> Result<u8> {
    let Some(pgdata) = args.pgdata.as_deref() else {
        anyhow::bail!("--pgdata DIR is needed: the data directory to restore into");
    };
    if args.target_time.is_none()
        && args.target_lsn.is_none()
        && args.target_xid.is_none()
        && !args.latest
    {
        anyhow::bail!(
            "say how far to recover: --latest, --target-time T, --target-lsn L or --target-xid X"
        );
    }
    let target = target(args)?;
    let action: TargetAction = args.target_action.parse().map_err(anyhow::Error::msg)?;
    if let Some(timeline) = args.target_timeline.as_deref() {
        if !valid_timeline(timeline) {
            anyhow::bail!(
                "--target-timeline {timeline:?}: give latest, current or a timeline number"
            );
        }
    }
    let loaded = Loaded::open(cli, "pg restore")?;
    let bases = base_backups(&loaded.repo, &loaded.index, &loaded.snapshots, &args.hosts)?;
    if bases.is_empty() {
        anyhow::bail!("the repository holds no base backup (`lifeboat pg backup` takes one)");
    }
    let Some((entry, info)) = choose(&bases, &target) else {
        let oldest = bases.iter().map(|(_, i)| i.finished_at).min();
        anyhow::bail!(
            "no base backup ended before {}: the oldest ended at {}{}",
            describe(&target),
            oldest.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
            if matches!(target, RecoveryTarget::Xid(_)) {
                " (a transaction target needs a backup that recorded its next transaction id)"
            } else {
                ""
            }
        );
    };
    let system_id: u64 = info
        .system_identifier
        .parse()
        .with_context(|| format!("system identifier of snapshot {}", entry.short_id()))?;
    let catalog = wal_catalog(&loaded.snapshots, system_id);
    let files = wal_files_for(info, catalog.keys().map(String::as_str));
    let last = check_wal_covers_backup(info, &files)?;

    prepare_data_dir(pgdata)?;
    unpack(&loaded.repo, &loaded.index, entry, pgdata)?;
    let wal_dir = pgdata.join(RESTORE_WAL_DIR);
    std::fs::create_dir(&wal_dir).with_context(|| format!("creating {}", wal_dir.display()))?;
    for name in &files {
        let held = catalog[name];
        let path = wal_dir.join(name);
        let mut out =
            File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        write_file(&loaded.repo, &loaded.index, held, name, &mut out)?;
        out.sync_all()?;
    }
    own_like_data_dir(pgdata, &wal_dir)?;

    let exe = std::env::current_exe().context("finding the lifeboat executable")?;
    let restore_command = format!(
        "{} pg wal-fetch --from {} %f \"%p\"",
        shell_quote(&exe.to_string_lossy()),
        RESTORE_WAL_DIR
    );
    let note = format!(
        "lifeboat pg restore {}: base backup {}, recovery to {}",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S"),
        entry.short_id(),
        describe(&target)
    );
    let settings = RecoverySettings {
        restore_command: &restore_command,
        target: &target,
        action,
        timeline: args.target_timeline.as_deref(),
        keep_archiving: !args.no_archive,
        note: &note,
    };
    write_recovery_settings(pgdata, &settings)?;
    report(cli, pgdata, entry, info, &files, &last, &target);
    Ok(crate::exit::OK)
}

/// Every segment from the backup's start to its end must be archived, or the backup cannot
/// become consistent. Returns the last segment replay can reach without a gap.
fn check_wal_covers_backup(info: &BaseBackupInfo, files: &[String]) -> Result<String> {
    let hint = "it may still be in the WAL spool of the database host (`lifeboat pg status` there)";
    let reach = wal_reach(info, files);
    let Some(last) = reach.last else {
        anyhow::bail!(
            "the base backup needs WAL from {} on, which is not in the repository; {hint}",
            info.start_wal_file
        );
    };
    if !reach.covers_backup {
        anyhow::bail!(
            "the base backup needs WAL up to {}, but the archive stops at {last}; {hint}",
            info.stop_wal_file()
        );
    }
    Ok(last)
}

/// The base tar goes from the repository through a pipe into the unpacker.
fn unpack(repo: &Repository, index: &Index, entry: &SnapshotEntry, dir: &Path) -> Result<()> {
    let (read_end, write_end) = nix::unistd::pipe().context("creating a pipe")?;
    let mut reader = File::from(read_end);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            let mut out = io::BufWriter::new(File::from(write_end));
            write_file(repo, index, entry, BASE_FILE, &mut out)?;
            out.flush()?;
            Ok(())
        });
        let unpacked = unpack_base(&mut reader, dir);
        // Read what is left (the tar's padding, or everything after an error), so the
        // writer ends instead of blocking on a full pipe.
        let _ = io::copy(&mut reader, &mut io::sink());
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the thread reading the base backup panicked"))?;
        written.with_context(|| format!("reading the base backup {}", entry.short_id()))?;
        unpacked.with_context(|| format!("unpacking the base backup into {}", dir.display()))?;
        Ok(())
    })
}

/// Run as root, the fetched WAL belongs to the data directory's owner, who removes it at
/// the end of recovery.
fn own_like_data_dir(data_dir: &Path, wal_dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let meta = std::fs::metadata(data_dir)?;
    let (uid, gid) = (Some(meta.uid()), Some(meta.gid()));
    std::os::unix::fs::chown(wal_dir, uid, gid)?;
    for entry in std::fs::read_dir(wal_dir)? {
        std::os::unix::fs::chown(entry?.path(), uid, gid)?;
    }
    Ok(())
}

fn report(
    cli: &Cli,
    pgdata: &Path,
    entry: &SnapshotEntry,
    info: &BaseBackupInfo,
    files: &[String],
    last: &str,
    target: &RecoveryTarget,
) {
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "pgdata": pgdata.display().to_string(),
                "base_backup": entry.id,
                "base_backup_finished_at": info.finished_at.to_rfc3339(),
                "start_wal_file": info.start_wal_file,
                "last_wal_file": last,
                "wal_files": files.len(),
                "target": describe(target),
            })
        );
        return;
    }
    if cli.quiet {
        return;
    }
    println!(
        "restored base backup {} (taken {}) into {}",
        entry.short_id(),
        info.finished_at
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S"),
        pgdata.display()
    );
    println!(
        "fetched {} WAL file(s), {} to {} without a gap; recovery will replay to {}",
        files.len(),
        info.start_wal_file,
        last,
        describe(target)
    );
    println!(
        "next: start PostgreSQL on it (pg_ctl -D {} start); it replays the WAL, then the \
         server log says \"archive recovery complete\"",
        pgdata.display()
    );
}
