//! Point-in-time recovery: which base backup serves a target, putting its tar into a new data
//! directory, which archived WAL files the recovery needs, and the settings that make
//! PostgreSQL replay them up to the target when it starts.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};

use super::base_backup::BaseBackupInfo;
use super::wal::{segment_number, segment_position, Lsn};
use crate::SourceError;

/// The directory, inside the new data directory, that holds the WAL files fetched for the
/// recovery; `recovery_end_command` removes it once recovery has ended.
pub const RESTORE_WAL_DIR: &str = "lifeboat_restore_wal";

#[derive(Clone, Debug, PartialEq)]
pub enum RecoveryTarget {
    /// Every archived change: replay to the end of the archive.
    Latest,
    Time(DateTime<FixedOffset>),
    Lsn(Lsn),
    Xid(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetAction {
    Promote,
    Pause,
    Shutdown,
}

impl TargetAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

impl std::str::FromStr for TargetAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "promote" => Ok(TargetAction::Promote),
            "pause" => Ok(TargetAction::Pause),
            "shutdown" => Ok(TargetAction::Shutdown),
            _ => Err(format!(
                "{s:?}: the target action is promote, pause or shutdown"
            )),
        }
    }
}

/// Whether a base backup can reach `target`: it must have ended before the target, since
/// recovery cannot stop inside the backup's own WAL range.
pub fn serves(info: &BaseBackupInfo, target: &RecoveryTarget) -> bool {
    match target {
        RecoveryTarget::Latest => true,
        RecoveryTarget::Time(t) => info.finished_at <= t.with_timezone(&Utc),
        RecoveryTarget::Lsn(lsn) => info.stop_lsn <= *lsn,
        RecoveryTarget::Xid(xid) => info.next_xid.is_some_and(|next| next <= *xid),
    }
}

/// The newest of `backups` that serves `target`.
pub fn choose<'a, T>(
    backups: &'a [(T, BaseBackupInfo)],
    target: &RecoveryTarget,
) -> Option<&'a (T, BaseBackupInfo)> {
    backups
        .iter()
        .filter(|(_, info)| serves(info, target))
        .max_by_key(|(_, info)| info.finished_at)
}

/// The archived files a recovery from `base` reads: every timeline history file, and the
/// segments from the backup's first one on, on its timeline and later ones.
pub fn wal_files_for<'a>(
    base: &BaseBackupInfo,
    archived: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let start = segment_position(&base.start_wal_file).map(|(_, p)| p);
    let mut wanted: Vec<String> = archived
        .into_iter()
        .filter(|name| {
            if name.ends_with(".history") {
                return true;
            }
            match (segment_position(name), start) {
                (Some((timeline, position)), Some(start)) => {
                    timeline >= base.timeline && position >= start
                }
                _ => false,
            }
        })
        .map(str::to_string)
        .collect();
    wanted.sort();
    wanted.dedup();
    wanted
}

/// The last segment reachable from the backup's first one without a gap (segments of any
/// timeline count, and those the backup holds itself), or None if the first one is missing.
pub fn last_continuous_segment(base: &BaseBackupInfo, files: &[String]) -> Option<String> {
    let size = base.wal_segment_size;
    let included = base.included_segments();
    let mut by_number: BTreeMap<u64, &String> = BTreeMap::new();
    for name in included.iter().chain(files) {
        if let Some((_, segno)) = segment_number(name, size) {
            // The highest timeline's copy of a segment is the one recovery follows.
            by_number.insert(segno, name);
        }
    }
    let (_, mut segno) = segment_number(&base.start_wal_file, size)?;
    let mut last = None;
    while let Some(name) = by_number.get(&segno) {
        last = Some((*name).clone());
        segno += 1;
    }
    last
}

/// How far the WAL of a base backup reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalReach {
    /// The last segment reachable without a gap ([`last_continuous_segment`]).
    pub last: Option<String>,
    /// Whether that includes the backup's own end: without it the backup never becomes
    /// consistent and cannot be restored at all.
    pub covers_backup: bool,
}

pub fn wal_reach(base: &BaseBackupInfo, files: &[String]) -> WalReach {
    let last = last_continuous_segment(base, files);
    let size = base.wal_segment_size;
    let number = |name: &str| segment_number(name, size).map(|(_, segno)| segno);
    let covers_backup = last
        .as_deref()
        .is_some_and(|l| number(l) >= number(&base.stop_wal_file()));
    WalReach {
        last,
        covers_backup,
    }
}

/// Makes `dir` a new, empty data directory (mode 0700): it may exist only if empty, so that
/// a restore never mixes its files with others.
pub fn prepare_data_dir(dir: &Path) -> Result<(), SourceError> {
    use std::os::unix::fs::PermissionsExt;
    let io_err = |source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SourceError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dir).map_err(io_err)?,
        Err(e) => return Err(io_err(e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err)
}

/// Unpacks a base backup's tar into `dir`. The tar crate refuses members that would land
/// outside `dir`. Run as root, the files keep the owner the tar names (the server's user),
/// and `dir` takes the owner of `PG_VERSION`, since PostgreSQL refuses a data directory its
/// user does not own.
pub fn unpack_base(tar: impl Read, dir: &Path) -> Result<(), SourceError> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    let as_root = nix::unistd::geteuid().is_root();
    archive.set_preserve_ownerships(as_root);
    archive.unpack(dir).map_err(|source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if as_root {
        use std::os::unix::fs::MetadataExt;
        let version = dir.join("PG_VERSION");
        let meta = fs::metadata(&version).map_err(|source| SourceError::Io {
            path: version.clone(),
            source,
        })?;
        std::os::unix::fs::chown(dir, Some(meta.uid()), Some(meta.gid())).map_err(|source| {
            SourceError::Io {
                path: dir.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// `text` as one word for `sh`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `text` as a string value in postgresql.conf.
fn conf_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', r"\\").replace('\'', "''"))
}

/// What the restored server is told about its recovery.
pub struct RecoverySettings<'a> {
    /// A shell command with `%f` and `%p`.
    pub restore_command: &'a str,
    pub target: &'a RecoveryTarget,
    pub action: TargetAction,
    /// `recovery_target_timeline`: `latest` (PostgreSQL's default), `current` or a number.
    pub timeline: Option<&'a str>,
    /// Keep the server's archiving as the backup had it (a real recovery: the new timeline's
    /// history file must be archived for the next one); off for a drill, whose changes must
    /// not enter the archive.
    pub keep_archiving: bool,
    /// A comment line saying who wrote the settings.
    pub note: &'a str,
}

/// Whether `text` can be a `recovery_target_timeline`.
pub fn valid_timeline(text: &str) -> bool {
    text == "latest" || text == "current" || text.parse::<u32>().is_ok_and(|t| t > 0)
}

/// Every recovery target setting: the others empty, then the chosen one with its value. The
/// backed-up server may have carried a target of an earlier recovery in its
/// postgresql.auto.conf, which would stop this one there; the last value of a setting in the
/// file wins, so writing each of them overrides any such line. They are applied in file
/// order, and PostgreSQL refuses any target setting, even an empty one, written after a set
/// one ("multiple recovery targets specified"): the chosen target comes last.
fn target_lines(target: &RecoveryTarget) -> String {
    let chosen = match target {
        RecoveryTarget::Latest => None,
        RecoveryTarget::Time(t) => Some((
            "recovery_target_time",
            t.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string(),
        )),
        RecoveryTarget::Lsn(lsn) => Some(("recovery_target_lsn", lsn.to_string())),
        RecoveryTarget::Xid(xid) => Some(("recovery_target_xid", xid.to_string())),
    };
    let mut lines = String::new();
    for name in [
        "recovery_target",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_lsn",
        "recovery_target_xid",
    ] {
        if chosen.as_ref().map(|(n, _)| *n) != Some(name) {
            lines.push_str(&format!("{name} = ''\n"));
        }
    }
    if let Some((name, value)) = chosen {
        lines.push_str(&format!("{name} = {}\n", conf_quote(&value)));
    }
    lines
}

/// Appends the recovery settings to `postgresql.auto.conf` (where they override
/// postgresql.conf) and creates `recovery.signal`.
pub fn write_recovery_settings(dir: &Path, settings: &RecoverySettings) -> Result<(), SourceError> {
    let mut text = format!(
        "\n# {}\nrestore_command = {}\nrecovery_end_command = {}\n",
        settings.note,
        conf_quote(settings.restore_command),
        conf_quote(&format!("rm -rf {}", shell_quote(RESTORE_WAL_DIR))),
    );
    text.push_str(&target_lines(settings.target));
    text.push_str(&format!(
        "recovery_target_action = {}\n",
        conf_quote(settings.action.as_str())
    ));
    if let Some(timeline) = settings.timeline {
        text.push_str(&format!(
            "recovery_target_timeline = {}\n",
            conf_quote(timeline)
        ));
    }
    if !settings.keep_archiving {
        text.push_str("archive_mode = 'off'\n");
    }
    let conf = dir.join("postgresql.auto.conf");
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&conf)
        .map_err(io_err(&conf))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&conf))?;
    let signal = dir.join("recovery.signal");
    fs::write(&signal, b"").map_err(io_err(&signal))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(finished: &str, stop: &str, next_xid: Option<u64>) -> BaseBackupInfo {
        BaseBackupInfo {
            version: 1,
            system_identifier: "1".into(),
            pg_version: "15".into(),
            timeline: 1,
            start_lsn: "0/2000028".parse().expect("lsn"),
            start_wal_file: "000000010000000000000002".into(),
            stop_lsn: stop.parse().expect("lsn"),
            wal_segment_size: 16 << 20,
            started_at: finished.parse().expect("time"),
            finished_at: finished.parse().expect("time"),
            wal_included: false,
            next_xid,
        }
    }

    #[test]
    fn chooses_the_newest_backup_that_ended_before_the_target() {
        let backups = vec![
            ("a", info("2026-12-01T10:00:00Z", "0/3000000", Some(700))),
            ("b", info("2026-12-01T12:00:00Z", "0/5000000", Some(900))),
            ("c", info("2026-12-01T11:00:00Z", "0/4000000", None)),
        ];
        let pick = |t: RecoveryTarget| choose(&backups, &t).map(|(n, _)| *n);
        assert_eq!(pick(RecoveryTarget::Latest), Some("b"));
        let time = |s: &str| RecoveryTarget::Time(DateTime::parse_from_rfc3339(s).expect("t"));
        assert_eq!(pick(time("2026-12-01T11:30:00Z")), Some("c"));
        assert_eq!(pick(time("2026-12-01T13:30:00+02:00")), Some("c"));
        assert_eq!(pick(time("2026-12-01T09:59:59Z")), None);
        let lsn = |s: &str| RecoveryTarget::Lsn(s.parse().expect("lsn"));
        assert_eq!(pick(lsn("0/4000000")), Some("c"));
        assert_eq!(pick(lsn("0/2FFFFFF")), None);
        // c never learned its next transaction id, so only a and b can serve an xid.
        assert_eq!(pick(RecoveryTarget::Xid(800)), Some("a"));
        assert_eq!(pick(RecoveryTarget::Xid(900)), Some("b"));
        assert_eq!(pick(RecoveryTarget::Xid(10)), None);
    }

    #[test]
    fn wal_files_start_at_the_backup_and_stop_at_the_first_gap() {
        let base = info("2026-12-01T10:00:00Z", "0/2000100", None);
        let archived = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
            "00000002.history",
            "000000020000000000000004",
            "000000020000000000000006",
            "000000010000000000000002.00000028.backup",
        ];
        let files = wal_files_for(&base, archived);
        assert_eq!(
            files,
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "00000002.history",
                "000000020000000000000004",
                "000000020000000000000006",
            ]
        );
        assert_eq!(
            last_continuous_segment(&base, &files).as_deref(),
            Some("000000020000000000000004")
        );
        assert_eq!(last_continuous_segment(&base, &files[2..]), None);
        assert!(wal_reach(&base, &files).covers_backup);
        assert!(!wal_reach(&base, &files[2..]).covers_backup);
        // A backup holding its own WAL needs the archive only from its end on.
        let mut holding = base.clone();
        holding.wal_included = true;
        assert_eq!(
            last_continuous_segment(&holding, &files[2..]).as_deref(),
            Some("000000010000000000000002")
        );
    }

    #[test]
    fn settings_are_quoted_for_the_shell_and_the_config_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let command = format!(
            "{} pg wal-fetch %f \"%p\"",
            shell_quote("/opt/it's here/lifeboat")
        );
        let target = RecoveryTarget::Time(
            DateTime::parse_from_rfc3339("2026-12-01T10:00:00.25+01:00").expect("t"),
        );
        let settings = RecoverySettings {
            restore_command: &command,
            target: &target,
            action: TargetAction::Pause,
            timeline: Some("current"),
            keep_archiving: false,
            note: "by test",
        };
        write_recovery_settings(tmp.path(), &settings).expect("write");
        let conf = fs::read_to_string(tmp.path().join("postgresql.auto.conf")).expect("conf");
        assert!(
            // The shell's backslash is doubled: the config file reads `\\` as one.
            conf.contains(
                r#"restore_command = '''/opt/it''\\''''s here/lifeboat'' pg wal-fetch %f "%p"'"#
            ),
            "{conf}"
        );
        assert!(
            conf.contains("recovery_target_time = '2026-12-01 10:00:00.250000+01:00'"),
            "{conf}"
        );
        assert!(conf.contains("recovery_target_action = 'pause'"), "{conf}");
        // Targets an earlier recovery left in the file are overridden with empty values.
        assert!(conf.contains("recovery_target_lsn = ''"), "{conf}");
        assert!(conf.contains("recovery_target_xid = ''"), "{conf}");
        assert!(conf.contains("recovery_target_name = ''"), "{conf}");
        let chosen = conf.find("recovery_target_time = '2026").expect("target");
        assert!(conf
            .find("recovery_target_xid = ''")
            .is_some_and(|i| i < chosen));
        assert!(
            conf.contains("recovery_target_timeline = 'current'"),
            "{conf}"
        );
        assert!(conf.contains("archive_mode = 'off'"), "{conf}");
        assert!(valid_timeline("latest") && valid_timeline("2"));
        assert!(!valid_timeline("0") && !valid_timeline("'; drop"));
        assert!(tmp.path().join("recovery.signal").exists());
    }

    #[test]
    fn a_data_directory_must_be_new_or_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pgdata");
        prepare_data_dir(&dir).expect("new");
        prepare_data_dir(&dir).expect("empty");
        fs::write(dir.join("PG_VERSION"), "15").expect("write");
        assert!(matches!(
            prepare_data_dir(&dir),
            Err(SourceError::NotEmpty(_))
        ));
    }
}
