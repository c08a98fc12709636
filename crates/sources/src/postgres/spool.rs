//! The local WAL spool: where `pg wal-push` puts each file PostgreSQL archives, durably, so
//! that the server can go on at once, and from where a pusher process, which opens the
//! repository once (one key derivation, not one per segment), stores them in the repository.
//!
//! Layout of the spool directory:
//! - `system-id`: the cluster the spool belongs to (a spool never mixes two clusters);
//! - `ready/NAME`: files the server handed over, fsynced, not yet in the repository;
//! - `done/NAME`: the BLAKE3 of each file the pusher stored, so a file asked for again is
//!   told apart: same content succeeds, other content fails (PostgreSQL's archiving contract);
//! - `tmp/`: copies being written; `pusher.lock`: held by the running pusher;
//!   `pusher.log`: what background pushers said.
//!
//! Crash safety: a file is in `ready/` only once its content and its directory entry are on
//! disk. The pusher records `done/NAME` before it removes `ready/NAME`, so a crash between
//! the two leaves a file that is pushed again (a duplicate the repository deduplicates),
//! never one that is lost.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use super::wal::is_archive_file_name;
use crate::SourceError;

/// How long `done/` remembers a pushed file: PostgreSQL asks again only for files it was
/// archiving when it stopped, so a week is plenty; older records are removed by the pusher.
const DONE_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct Spool {
    dir: PathBuf,
    system_id: u64,
}

/// What [`Spool::push`] did with a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Spooled,
    /// The same content is already waiting in the spool.
    AlreadySpooled,
    /// The same content was already stored in the repository.
    AlreadyArchived,
}

/// A file waiting in the spool.
#[derive(Clone, Debug)]
pub struct ReadyFile {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub spooled_at: SystemTime,
}

/// A ready file opened for storing, hashed as it is read: recording it in `done/` then needs
/// no second read of its 16 MiB.
pub struct ReadyReader {
    file: File,
    hasher: blake3::Hasher,
    digest: Arc<OnceLock<String>>,
}

impl ReadyReader {
    /// Opens `file`; the returned cell holds its BLAKE3 once it has been read to the end.
    pub fn open(file: &ReadyFile) -> Result<(ReadyReader, Arc<OnceLock<String>>), SourceError> {
        let opened = File::open(&file.path).map_err(io_error(&file.path))?;
        let digest = Arc::new(OnceLock::new());
        let reader = ReadyReader {
            file: opened,
            hasher: blake3::Hasher::new(),
            digest: digest.clone(),
        };
        Ok((reader, digest))
    }
}

impl Read for ReadyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let _ = self.digest.set(self.hasher.finalize().to_hex().to_string());
        } else {
            self.hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Held while a pusher runs; released when dropped.
pub struct PusherLock {
    _lock: Flock<File>,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), SourceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// BLAKE3 of a file's content, in hex.
fn hash_file(path: &Path) -> Result<String, SourceError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut file, &mut hasher).map_err(io_error(path))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Copies `from` to `to` (a new file), fsyncs it, and returns the content's BLAKE3.
fn copy_durably(from: &Path, to: &Path) -> Result<String, SourceError> {
    let mut source = File::open(from).map_err(io_error(from))?;
    let mut target = File::create(to).map_err(io_error(to))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(from)(e)),
        };
        hasher.update(&buf[..n]);
        target.write_all(&buf[..n]).map_err(io_error(to))?;
    }
    target.sync_all().map_err(io_error(to))?;
    Ok(hasher.finalize().to_hex().to_string())
}

impl Spool {
    /// Opens the spool at `dir` for the cluster `system_id`, creating it (mode 0700) when new.
    pub fn open(dir: &Path, system_id: u64) -> Result<Spool, SourceError> {
        for sub in ["ready", "done", "tmp"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        restrict(dir)?;
        let id_file = dir.join("system-id");
        match fs::read_to_string(&id_file) {
            Ok(text) => {
                let found = parse_system_id(&id_file, &text)?;
                if found != system_id {
                    return Err(SourceError::ForeignSpool {
                        dir: dir.to_path_buf(),
                        expected: system_id,
                        found,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let tmp = dir.join("tmp").join("system-id");
                fs::write(&tmp, format!("{system_id}\n")).map_err(io_error(&tmp))?;
                fs::rename(&tmp, &id_file).map_err(io_error(&id_file))?;
                sync_dir(dir)?;
            }
            Err(e) => return Err(io_error(&id_file)(e)),
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            system_id,
        })
    }

    /// Opens a spool some `wal-push` made, for its cluster.
    pub fn open_existing(dir: &Path) -> Result<Spool, SourceError> {
        let id_file = dir.join("system-id");
        let text = fs::read_to_string(&id_file).map_err(io_error(&id_file))?;
        let system_id = parse_system_id(&id_file, &text)?;
        Spool::open(dir, system_id)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn system_id(&self) -> u64 {
        self.system_id
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("pusher.log")
    }

    /// Puts `source` into the spool as `name`. Returns once the copy is on disk; an error
    /// when a file of that name with other content was spooled or archived before.
    pub fn push(&self, source: &Path, name: &str) -> Result<Pushed, SourceError> {
        if !is_archive_file_name(name) {
            return Err(SourceError::NotAnArchiveFile(name.to_string()));
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{name}.{}", std::process::id()));
        let hash = copy_durably(source, &tmp);
        let outcome = hash.and_then(|hash| self.place(&tmp, name, &hash));
        if !matches!(outcome, Ok(Pushed::Spooled)) {
            let _ = fs::remove_file(&tmp);
        }
        outcome
    }

    fn place(&self, tmp: &Path, name: &str, hash: &str) -> Result<Pushed, SourceError> {
        if let Some(archived) = self.archived_hash(name)? {
            return if archived == hash {
                Ok(Pushed::AlreadyArchived)
            } else {
                Err(SourceError::WalConflict { name: name.into() })
            };
        }
        let ready = self.dir.join("ready").join(name);
        if ready.exists() {
            return if hash_file(&ready)? == hash {
                Ok(Pushed::AlreadySpooled)
            } else {
                Err(SourceError::WalConflict { name: name.into() })
            };
        }
        fs::rename(tmp, &ready).map_err(io_error(&ready))?;
        sync_dir(&self.dir.join("ready"))?;
        Ok(Pushed::Spooled)
    }

    /// The BLAKE3 recorded for `name` once it was stored in the repository.
    fn archived_hash(&self, name: &str) -> Result<Option<String>, SourceError> {
        let path = self.dir.join("done").join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// The files waiting to be pushed, by name (so, in WAL order within a timeline).
    pub fn ready(&self) -> Result<Vec<ReadyFile>, SourceError> {
        let dir = self.dir.join("ready");
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !is_archive_file_name(&name) {
                continue;
            }
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Pushed and removed by a pusher meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path)(e)),
            };
            files.push(ReadyFile {
                name,
                path,
                size: meta.len(),
                spooled_at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// Records that `file` is stored in the repository and takes it out of `ready/`.
    pub fn mark_archived(&self, file: &ReadyFile) -> Result<(), SourceError> {
        self.mark_archived_as(file, &hash_file(&file.path)?)
    }

    /// [`Spool::mark_archived`] with the content's BLAKE3 already known (from a
    /// [`ReadyReader`] that read the whole file).
    pub fn mark_archived_as(&self, file: &ReadyFile, hash: &str) -> Result<(), SourceError> {
        let tmp = self.dir.join("tmp").join(format!("{}.done", file.name));
        let done = self.dir.join("done").join(&file.name);
        let mut out = File::create(&tmp).map_err(io_error(&tmp))?;
        out.write_all(format!("{hash}\n").as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(io_error(&tmp))?;
        fs::rename(&tmp, &done).map_err(io_error(&done))?;
        sync_dir(&self.dir.join("done"))?;
        fs::remove_file(&file.path).map_err(io_error(&file.path))?;
        sync_dir(&self.dir.join("ready"))
    }

    /// Whether `file` was stored before with the same content (a pusher stopped between
    /// recording it and removing it from `ready/`).
    pub fn already_archived(&self, file: &ReadyFile) -> Result<bool, SourceError> {
        match self.archived_hash(&file.name)? {
            Some(archived) => Ok(archived == hash_file(&file.path)?),
            None => Ok(false),
        }
    }

    /// The newest segment (by name) stored in the repository, and when.
    pub fn last_archived(&self) -> Result<Option<(String, SystemTime)>, SourceError> {
        let dir = self.dir.join("done");
        let mut newest: Option<(String, SystemTime)> = None;
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if super::wal::segment_position(&name).is_none() {
                continue;
            }
            let when = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            if newest.as_ref().map_or(true, |(n, _)| name > *n) {
                newest = Some((name, when));
            }
        }
        Ok(newest)
    }

    /// Forgets `done/` records older than a week, keeping the newest segment's.
    pub fn expire_done(&self) -> Result<(), SourceError> {
        let newest = self.last_archived()?.map(|(n, _)| n);
        let dir = self.dir.join("done");
        let now = SystemTime::now();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > DONE_KEPT);
            let is_newest = newest.as_deref() == entry.file_name().to_str();
            if old && !is_newest {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Removes the copies in `tmp/` that no running process will finish: a wal-push killed
    /// mid-copy leaves `NAME.PID` behind, a pusher killed while recording leaves `NAME.done`.
    /// The caller holds the pusher lock (so no `.done` file is being written); a `NAME.PID`
    /// whose process still lives is left alone. Returns how many were removed.
    pub fn remove_abandoned_copies(&self, _held: &PusherLock) -> Result<usize, SourceError> {
        let dir = self.dir.join("tmp");
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((_, suffix)) = name.rsplit_once('.') else {
                continue;
            };
            let abandoned = match suffix {
                "done" => true,
                pid => pid.parse::<i32>().is_ok_and(|pid| !process_alive(pid)),
            };
            if abandoned && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The pusher lock if no pusher holds it.
    pub fn try_lock_pusher(&self) -> Result<Option<PusherLock>, SourceError> {
        let path = self.dir.join("pusher.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(PusherLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(io_error(&path)(io::Error::from(errno))),
        }
    }
}

/// Whether process `pid` exists (pid 0 and below name groups, not one process).
fn process_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

fn parse_system_id(path: &Path, text: &str) -> Result<u64, SourceError> {
    text.trim().parse().map_err(|_| SourceError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, "not a system identifier"),
    })
}

/// The spool holds copies of the database's changes: only its owner may read it.
fn restrict(dir: &Path) -> Result<(), SourceError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &Path, name: &str, fill: u8) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, vec![fill; 4096]).expect("write segment");
        path
    }

    #[test]
    fn same_content_again_succeeds_other_content_fails() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(&tmp.path().join("spool"), 7).expect("spool");
        let name = "000000010000000000000003";
        let a = segment(tmp.path(), "a", 1);
        let b = segment(tmp.path(), "b", 2);
        assert_eq!(spool.push(&a, name).expect("push"), Pushed::Spooled);
        assert_eq!(spool.push(&a, name).expect("again"), Pushed::AlreadySpooled);
        assert!(matches!(
            spool.push(&b, name),
            Err(SourceError::WalConflict { .. })
        ));

        let ready = spool.ready().expect("ready");
        assert_eq!(ready.len(), 1);
        // Read to its end, the reader knows the hash the spool records.
        let (mut reader, digest) = ReadyReader::open(&ready[0]).expect("open");
        std::io::copy(&mut reader, &mut std::io::sink()).expect("read");
        assert_eq!(digest.get(), Some(&hash_file(&a).expect("hash")));
        spool
            .mark_archived_as(&ready[0], digest.get().expect("digest"))
            .expect("mark");
        assert!(spool.ready().expect("ready").is_empty());
        assert_eq!(
            spool.push(&a, name).expect("after"),
            Pushed::AlreadyArchived
        );
        assert!(matches!(
            spool.push(&b, name),
            Err(SourceError::WalConflict { .. })
        ));
        assert_eq!(
            spool.last_archived().expect("last").map(|(n, _)| n),
            Some(name.to_string())
        );
        // Nothing is left behind in tmp/.
        assert_eq!(
            fs::read_dir(spool.dir().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn refuses_names_outside_the_archive_and_other_clusters() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("spool");
        let spool = Spool::open(&dir, 7).expect("spool");
        let a = segment(tmp.path(), "a", 1);
        assert!(matches!(
            spool.push(&a, "../../etc/passwd"),
            Err(SourceError::NotAnArchiveFile(_))
        ));
        assert!(matches!(
            Spool::open(&dir, 8),
            Err(SourceError::ForeignSpool {
                expected: 8,
                found: 7,
                ..
            })
        ));
        assert_eq!(Spool::open_existing(&dir).expect("existing").system_id(), 7);
    }

    #[test]
    fn the_pusher_removes_copies_no_running_process_will_finish() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(tmp.path(), 7).expect("spool");
        let seg = "000000010000000000000001";
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        let at = |name: String| spool.dir().join("tmp").join(name);
        let killed_copy = at(format!("{seg}.{dead}"));
        let live_copy = at(format!("{seg}.{}", std::process::id()));
        let killed_record = at(format!("{seg}.done"));
        for path in [&killed_copy, &live_copy, &killed_record] {
            fs::write(path, b"partial").expect("write");
        }
        let lock = spool.try_lock_pusher().expect("lock").expect("free");
        assert_eq!(spool.remove_abandoned_copies(&lock).expect("clean"), 2);
        assert!(!killed_copy.exists() && !killed_record.exists());
        assert!(live_copy.exists(), "a copy still being written stays");
    }

    #[test]
    fn one_pusher_at_a_time() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(tmp.path(), 7).expect("spool");
        let held = spool.try_lock_pusher().expect("lock").expect("free");
        assert!(spool.try_lock_pusher().expect("lock").is_none());
        drop(held);
        assert!(spool.try_lock_pusher().expect("lock").is_some());
    }
}
