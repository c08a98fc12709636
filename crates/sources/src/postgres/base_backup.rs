//! Base backups: `pg_basebackup` writing one tar stream to its standard output, stored as
//! [`BASE_FILE`], and what lifeboat learns from that stream on the way through (the backup
//! label, the end of the backup manifest, the cluster's system identifier), stored beside it
//! as [`INFO_FILE`]. With [`WalMethod::Fetch`] (the default) the tar also holds the WAL from
//! the backup's start to its end, so the backup is restorable on its own; with
//! [`WalMethod::None`] that WAL comes from the archive, and the server waits, before it ends
//! the backup, until the last segment is archived (a second, in PostgreSQL 15).

use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::control::{system_identifier_of, CONTROL_FILE};
use super::program;
use super::wal::{segment_name, Lsn};
use crate::command::CommandStream;
use crate::SourceError;

/// The base backup's tar stream, in the snapshot.
pub const BASE_FILE: &str = "base.tar";
/// What [`BaseBackupInfo`] says, as JSON, in the snapshot. Its name sorts after
/// [`BASE_FILE`]: a backup with one reader reads the tar first, which the info waits for.
pub const INFO_FILE: &str = "pg_backup_info.json";
pub const INFO_VERSION: u32 = 1;

/// Where a base backup starts and ends in the WAL, and when it was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseBackupInfo {
    pub version: u32,
    /// The cluster's system identifier, as text (JSON readers lose precision on u64).
    pub system_identifier: String,
    pub pg_version: String,
    pub timeline: u32,
    pub start_lsn: Lsn,
    /// The first WAL segment the backup needs.
    pub start_wal_file: String,
    /// The backup is consistent once replay has passed this position.
    pub stop_lsn: Lsn,
    pub wal_segment_size: u64,
    /// When pg_basebackup was started (before the backup began).
    pub started_at: DateTime<Utc>,
    /// When pg_basebackup had finished (after the backup's end): a recovery target at or
    /// after this time can use this backup.
    pub finished_at: DateTime<Utc>,
    /// Whether the tar holds the WAL from the backup's start to its end (`pg_wal/`).
    #[serde(default)]
    pub wal_included: bool,
    /// The next transaction id when the backup had ended (`pg_current_snapshot()`'s xmax),
    /// if it could be asked: a target transaction at or past it began after the backup.
    #[serde(default)]
    pub next_xid: Option<u64>,
}

impl BaseBackupInfo {
    /// The WAL segment that holds the backup's end: every segment from
    /// [`Self::start_wal_file`] to this one must be restorable for the backup to be usable.
    pub fn stop_wal_file(&self) -> String {
        segment_file_name(self.timeline, self.stop_lsn, self.wal_segment_size)
    }

    /// The segments the tar itself holds: from the first to the last the backup needs when
    /// its WAL was fetched into it, else none.
    pub fn included_segments(&self) -> Vec<String> {
        if !self.wal_included {
            return Vec::new();
        }
        let size = self.wal_segment_size;
        (self.start_lsn.0 / size..=self.stop_lsn.0 / size)
            .map(|segno| segment_name(self.timeline, segno, size))
            .collect()
    }
}

/// The name of the segment holding `lsn` on `timeline`.
pub fn segment_file_name(timeline: u32, lsn: Lsn, segment_size: u64) -> String {
    segment_name(timeline, lsn.0 / segment_size, segment_size)
}

/// Where the WAL a base backup needs comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalMethod {
    /// In the tar: the server sends the backup's WAL at its end. The backup restores without
    /// the archive, and the server does not wait for the archiver. The WAL must still be in
    /// pg_wal at the end: a backup that outlasts its checkpoints on a busy server needs
    /// `wal_keep_size` (else pg_basebackup fails, and no snapshot is written).
    #[default]
    Fetch,
    /// From the archive only.
    None,
}

impl std::str::FromStr for WalMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fetch" => Ok(WalMethod::Fetch),
            "none" => Ok(WalMethod::None),
            _ => Err(format!(
                "{s:?}: the WAL method is fetch (in the backup) or none (from the archive)"
            )),
        }
    }
}

/// The `pg_basebackup` command of a base backup: tar to standard output, its WAL in it or
/// not, a fast checkpoint unless `spread` (then the server spreads the checkpoint's writes
/// over `checkpoint_completion_target`, and the backup starts minutes later).
///
/// The manifest is kept (its WAL range gives the stop position) without its per-file CRC32C:
/// every byte of the tar is hashed (BLAKE3) and sealed (AES-GCM) on its way into the
/// repository and checked again when read, and the server's CRC pass cost a quarter of
/// pg_basebackup's time (1.5 GB: 1.42 against 1.04 s, medians of 3).
pub fn base_backup_command(
    bin: Option<&Path>,
    wal: WalMethod,
    spread: bool,
) -> std::process::Command {
    let mut command = program(bin, "pg_basebackup");
    command.args([
        "--pgdata=-",
        "--format=tar",
        "--no-password",
        "--label=lifeboat",
        "--manifest-checksums=NONE",
    ]);
    command.arg(match wal {
        WalMethod::Fetch => "--wal-method=fetch",
        WalMethod::None => "--wal-method=none",
    });
    command.arg(if spread {
        "--checkpoint=spread"
    } else {
        "--checkpoint=fast"
    });
    command
}

type InfoSlot = Arc<(Mutex<Option<Result<BaseBackupInfo, String>>>, Condvar)>;

/// Starts `pg_basebackup` and returns its tar stream and the info stream to store beside it.
/// `next_xid` is asked once the tar has ended.
pub fn start(
    command: std::process::Command,
    next_xid: Box<dyn FnOnce() -> Option<u64> + Send>,
) -> Result<(BaseStream, InfoStream), SourceError> {
    let started_at = Utc::now();
    let stream = CommandStream::spawn(command)?;
    let slot: InfoSlot = Arc::new((Mutex::new(None), Condvar::new()));
    Ok((
        BaseStream {
            stream,
            watcher: TarWatcher::default(),
            slot: slot.clone(),
            started_at,
            ended: false,
        },
        InfoStream {
            slot,
            next_xid: Some(next_xid),
            text: None,
            at: 0,
        },
    ))
}

/// The tar stream, watched as it passes.
pub struct BaseStream {
    stream: CommandStream,
    watcher: TarWatcher,
    slot: InfoSlot,
    started_at: DateTime<Utc>,
    ended: bool,
}

impl BaseStream {
    fn settle(&mut self, outcome: Result<BaseBackupInfo, String>) {
        self.ended = true;
        let (lock, ready) = &*self.slot;
        if let Ok(mut slot) = lock.lock() {
            *slot = Some(outcome);
        }
        ready.notify_all();
    }
}

impl Read for BaseStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        let n = match self.stream.read(buf) {
            Ok(n) => n,
            Err(e) => {
                self.settle(Err(format!("pg_basebackup failed: {e}")));
                return Err(e);
            }
        };
        if n > 0 {
            self.watcher.feed(&buf[..n]);
            return Ok(n);
        }
        let info = self.watcher.finish(self.started_at);
        let failed = info.as_ref().err().cloned();
        self.settle(info);
        match failed {
            Some(message) => Err(io::Error::new(io::ErrorKind::InvalidData, message)),
            None => Ok(0),
        }
    }
}

impl Drop for BaseStream {
    fn drop(&mut self) {
        if !self.ended {
            self.settle(Err("the base backup stopped before its end".into()));
        }
    }
}

/// [`BaseBackupInfo`] as JSON, available once the tar stream has ended well.
pub struct InfoStream {
    slot: InfoSlot,
    next_xid: Option<Box<dyn FnOnce() -> Option<u64> + Send>>,
    text: Option<Vec<u8>>,
    at: usize,
}

impl InfoStream {
    fn wait(&mut self) -> io::Result<Vec<u8>> {
        let (lock, ready) = &*self.slot;
        let mut slot = lock
            .lock()
            .map_err(|_| io::Error::other("base backup state poisoned"))?;
        while slot.is_none() {
            slot = ready
                .wait(slot)
                .map_err(|_| io::Error::other("base backup state poisoned"))?;
        }
        let mut info = match slot.as_ref() {
            Some(Ok(info)) => info.clone(),
            Some(Err(message)) => return Err(io::Error::other(message.clone())),
            None => unreachable!("waited until set"),
        };
        drop(slot);
        if let Some(ask) = self.next_xid.take() {
            info.next_xid = ask();
        }
        serde_json::to_vec_pretty(&info).map_err(io::Error::other)
    }
}

impl Read for InfoStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.text.is_none() {
            self.text = Some(self.wait()?);
        }
        let text = self.text.as_deref().unwrap_or_default();
        let n = buf.len().min(text.len() - self.at);
        buf[..n].copy_from_slice(&text[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

const BLOCK: usize = 512;
/// At most this much of the backup label is kept (it is a few hundred bytes).
const LABEL_LIMIT: usize = 64 * 1024;
/// The end of the manifest, where the WAL ranges are: a manifest is one line per file and
/// may be megabytes, so only its tail is kept.
const MANIFEST_TAIL: usize = 16 * 1024;

#[derive(Default)]
enum State {
    #[default]
    Header,
    Content {
        name: String,
        long_name: bool,
        left: u64,
        padding: u64,
    },
    Padding(u64),
    Ended,
}

/// Follows a tar stream block by block and keeps the few members lifeboat needs.
#[derive(Default)]
pub struct TarWatcher {
    state: State,
    header: Vec<u8>,
    pending_name: Option<String>,
    long_name: Vec<u8>,
    label: Vec<u8>,
    manifest_tail: Vec<u8>,
    pg_version: Vec<u8>,
    control: Vec<u8>,
    /// A WAL segment was among the members (`pg_wal/...`).
    saw_wal: bool,
    broken: Option<String>,
}

fn octal_or_binary(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        // GNU base-256 for sizes beyond the octal field.
        let mut value = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl TarWatcher {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.broken.is_none() {
            match &mut self.state {
                State::Ended => return,
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == BLOCK {
                        let header = std::mem::take(&mut self.header);
                        self.header_block(&header);
                    }
                }
                State::Content { .. } => {
                    let State::Content {
                        name,
                        long_name,
                        left,
                        padding,
                    } = std::mem::take(&mut self.state)
                    else {
                        unreachable!()
                    };
                    let take = (left.min(data.len() as u64)) as usize;
                    self.keep(&name, long_name, &data[..take]);
                    data = &data[take..];
                    let left = left - take as u64;
                    self.state = if left > 0 {
                        State::Content {
                            name,
                            long_name,
                            left,
                            padding,
                        }
                    } else {
                        if long_name {
                            let raw = std::mem::take(&mut self.long_name);
                            self.pending_name = Some(c_string(&raw));
                        }
                        State::Padding(padding)
                    };
                }
                State::Padding(left) => {
                    let take = (*left).min(data.len() as u64);
                    *left -= take;
                    data = &data[take as usize..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
            }
            if let State::Padding(0) = self.state {
                self.state = State::Header;
            }
        }
    }

    fn header_block(&mut self, header: &[u8]) {
        if header.iter().all(|&b| b == 0) {
            self.state = State::Ended;
            return;
        }
        let Some(size) = octal_or_binary(&header[124..136]) else {
            self.broken = Some("a tar header with an unreadable size".into());
            return;
        };
        let kind = header[156];
        let mut name = c_string(&header[..100]);
        if &header[257..262] == b"ustar" {
            let prefix = c_string(&header[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(long) = self.pending_name.take() {
            name = long;
        }
        let name = name.trim_start_matches("./").to_string();
        if let Some(file) = name.strip_prefix("pg_wal/") {
            self.saw_wal |= super::wal::segment_position(file).is_some();
        }
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let long_name = kind == b'L';
        // Only regular files (and long names) carry content; others have size 0 anyway.
        self.state = if size == 0 {
            State::Header
        } else {
            State::Content {
                name,
                long_name,
                left: size,
                padding,
            }
        };
    }

    fn keep(&mut self, name: &str, long_name: bool, data: &[u8]) {
        let append = |into: &mut Vec<u8>, limit: usize| {
            let room = limit.saturating_sub(into.len());
            into.extend_from_slice(&data[..room.min(data.len())]);
        };
        if long_name {
            append(&mut self.long_name, 4096);
            return;
        }
        match name {
            "backup_label" => append(&mut self.label, LABEL_LIMIT),
            "PG_VERSION" => append(&mut self.pg_version, 64),
            CONTROL_FILE => append(&mut self.control, 8),
            "backup_manifest" => {
                self.manifest_tail.extend_from_slice(data);
                if self.manifest_tail.len() > 2 * MANIFEST_TAIL {
                    let cut = self.manifest_tail.len() - MANIFEST_TAIL;
                    self.manifest_tail.drain(..cut);
                }
            }
            _ => {}
        }
    }

    /// What the stream said, once it has ended.
    pub fn finish(&self, started_at: DateTime<Utc>) -> Result<BaseBackupInfo, String> {
        if let Some(broken) = &self.broken {
            return Err(format!(
                "pg_basebackup's output is not a tar stream: {broken}"
            ));
        }
        if !matches!(self.state, State::Ended | State::Header) || !self.header.is_empty() {
            return Err("pg_basebackup's tar stream ends in the middle of a file".into());
        }
        let label = String::from_utf8_lossy(&self.label);
        let field = |key: &str| {
            label
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .ok_or_else(|| format!("the base backup has no backup_label with {key}"))
        };
        // START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
        let start = field("START WAL LOCATION:")?;
        let (lsn, file) = start
            .split_once(" (file ")
            .ok_or_else(|| format!("backup_label: unreadable start {start:?}"))?;
        let start_lsn: Lsn = lsn.parse()?;
        let start_wal_file = file.trim_end_matches(')').to_string();
        let timeline: u32 = field("START TIMELINE:")?
            .parse()
            .map_err(|_| "backup_label: unreadable timeline".to_string())?;
        let stop_lsn = last_end_lsn(&self.manifest_tail)
            .ok_or("the base backup has no backup_manifest with its WAL range (was it taken with --no-manifest?)")?;
        let control: [u8; 8] = self
            .control
            .as_slice()
            .try_into()
            .map_err(|_| format!("the base backup holds no {CONTROL_FILE}"))?;
        Ok(BaseBackupInfo {
            version: INFO_VERSION,
            system_identifier: system_identifier_of(&control).to_string(),
            pg_version: String::from_utf8_lossy(&self.pg_version).trim().to_string(),
            timeline,
            wal_segment_size: segment_size_of(start_lsn, &start_wal_file).ok_or_else(|| {
                format!("backup_label: {start_wal_file} does not hold {start_lsn}")
            })?,
            start_lsn,
            start_wal_file,
            stop_lsn,
            started_at,
            finished_at: Utc::now(),
            wal_included: self.saw_wal,
            next_xid: None,
        })
    }
}

/// The last `"End-LSN": "X/Y"` in the manifest's tail.
fn last_end_lsn(tail: &[u8]) -> Option<Lsn> {
    let text = String::from_utf8_lossy(tail);
    let key = "\"End-LSN\": \"";
    let at = text.rfind(key)? + key.len();
    let end = text[at..].find('"')? + at;
    text[at..end].parse().ok()
}

/// The WAL segment size for which `file` holds `lsn` (1 MiB to 1 GiB; the default 16 MiB
/// first when several would).
fn segment_size_of(lsn: Lsn, file: &str) -> Option<u64> {
    let (timeline, _) = super::wal::segment_position(file)?;
    let sizes = std::iter::once(16u64 << 20).chain((20..=30).map(|bits| 1u64 << bits));
    sizes
        .into_iter()
        .find(|&size| segment_file_name(timeline, lsn, size) == file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, content) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o600);
            builder
                .append_data(&mut header, name, content.as_slice())
                .expect("append");
        }
        builder.into_inner().expect("inner")
    }

    fn base_tar(long_path: bool) -> Vec<u8> {
        let deep = if long_path {
            format!("base/{}/16384", "x".repeat(150))
        } else {
            "base/1/16384".into()
        };
        let mut control = 7312345678901234567u64.to_ne_bytes().to_vec();
        control.resize(8192, 0);
        let mut manifest = b"{ \"Files\": [\n".to_vec();
        for i in 0..2000 {
            manifest.extend(format!("{{ \"Path\": \"base/1/{i}\", \"Size\": 8192 }},\n").bytes());
        }
        manifest.extend(
            b"],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000138\" }\n],\n\"Manifest-Checksum\": \"ab\"}\n",
        );
        tar_of(&[
            ("PG_VERSION", b"15\n".to_vec()),
            ("pg_wal/archive_status/x", Vec::new()),
            (&deep, vec![7u8; 10_000]),
            (
                "backup_label",
                b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n"
                    .to_vec(),
            ),
            ("global/pg_control", control),
            ("backup_manifest", manifest),
        ])
    }

    fn watch(bytes: &[u8], piece: usize) -> Result<BaseBackupInfo, String> {
        let mut watcher = TarWatcher::default();
        for chunk in bytes.chunks(piece) {
            watcher.feed(chunk);
        }
        watcher.finish(Utc::now())
    }

    #[test]
    fn reads_the_label_manifest_and_control_file_from_any_split() {
        for long_path in [false, true] {
            let tar = base_tar(long_path);
            for piece in [1, 511, 512, 4096, tar.len()] {
                let info = watch(&tar, piece).expect("info");
                assert_eq!(info.system_identifier, "7312345678901234567");
                assert_eq!(info.pg_version, "15");
                assert_eq!(info.timeline, 1);
                assert_eq!(info.start_lsn.to_string(), "0/2000028");
                assert_eq!(info.stop_lsn.to_string(), "0/2000138");
                assert_eq!(info.start_wal_file, "000000010000000000000002");
                assert_eq!(info.wal_segment_size, 16 << 20);
                assert_eq!(info.stop_wal_file(), "000000010000000000000002");
                assert!(!info.wal_included);
            }
        }
    }

    #[test]
    fn the_included_segments_run_from_start_to_stop() {
        let mut info = watch(&base_tar(false), 512).expect("info");
        assert!(info.included_segments().is_empty());
        info.wal_included = true;
        info.stop_lsn = "0/4000010".parse().expect("lsn");
        assert_eq!(
            info.included_segments(),
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000004"
            ]
        );
    }

    #[test]
    fn notices_the_wal_in_the_tar() {
        let mut with_wal = base_tar(false);
        let end = with_wal.len() - 1024;
        with_wal.truncate(end);
        with_wal.extend(tar_of(&[(
            "pg_wal/000000010000000000000002",
            vec![0u8; 4096],
        )]));
        let info = watch(&with_wal, 4096).expect("info");
        assert!(info.wal_included);
    }

    #[test]
    fn a_truncated_or_foreign_stream_is_an_error() {
        let tar = base_tar(false);
        let err = watch(&tar[..tar.len() - 3000], 4096).expect_err("truncated");
        assert!(err.contains("middle"), "{err}");
        let err = watch(&tar_of(&[("hello.txt", b"hi".to_vec())]), 512).expect_err("no label");
        assert!(err.contains("backup_label"), "{err}");
    }

    #[test]
    fn segment_names_follow_the_segment_size() {
        let lsn: Lsn = "1/FF000028".parse().expect("lsn");
        assert_eq!(
            segment_file_name(2, lsn, 16 << 20),
            "0000000200000001000000FF"
        );
        assert_eq!(
            segment_file_name(2, lsn, 1 << 30),
            "000000020000000100000003"
        );
    }
}
