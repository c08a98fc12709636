//! SQLite databases: a consistent copy taken through SQLite's online backup API while writers
//! go on, and a restore that puts a checked file in place atomically.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::SourceError;

/// How long the copy waits, in all, for writers that hold the database locked (a database
/// in rollback-journal mode while it is written; in WAL mode readers never wait).
const LOCKED_WAIT: Duration = Duration::from_secs(60);

/// A copy of a database as of one transaction, read as a stream. The copy lives in a private
/// temporary directory (mode 0700), removed when the stream is dropped.
pub struct SqliteCopy {
    file: File,
    _dir: tempfile::TempDir,
}

impl Read for SqliteCopy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> SourceError {
    SourceError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn io_error(path: &Path, source: io::Error) -> SourceError {
    SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens an existing database read-write where allowed (without creating it): a read-only
/// connection to a WAL database leaves `-wal` and `-shm` files behind, which a read-write one
/// removes when it is the last to close, as every SQLite user does. Only reads are made.
fn open_existing(db: &Path) -> Result<Connection, SourceError> {
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(db, flags | OpenFlags::SQLITE_OPEN_READ_WRITE)
        .or_else(|_| Connection::open_with_flags(db, flags | OpenFlags::SQLITE_OPEN_READ_ONLY))
        .map_err(|e| sqlite_error(db, e))
}

/// Copies the database at `db` into a temporary directory under `temp_dir` (the system's
/// when `None`). All pages are copied in one step, that is in one read transaction: the copy
/// holds exactly the commits made before it began, and a writer cannot make it start over
/// (which the API does when a copy made in several steps sees the source change).
pub fn copy_database(db: &Path, temp_dir: Option<&Path>) -> Result<SqliteCopy, SourceError> {
    let meta = std::fs::metadata(db).map_err(|e| io_error(db, e))?;
    if !meta.is_file() {
        return Err(SourceError::NotADatabase {
            path: db.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let source = open_existing(db)?;
    // Reading the schema is the check that this is a database at all.
    source
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| SourceError::NotADatabase {
            path: db.to_path_buf(),
            reason: e.to_string(),
        })?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("lifeboat-sqlite-");
    let dir = match temp_dir {
        Some(t) => builder.tempdir_in(t).map_err(|e| io_error(t, e))?,
        None => builder
            .tempdir()
            .map_err(|e| io_error(&std::env::temp_dir(), e))?,
    };
    let copy_path = dir.path().join("copy.sqlite");
    {
        let mut copy = Connection::open(&copy_path).map_err(|e| sqlite_error(&copy_path, e))?;
        let backup = Backup::new(&source, &mut copy).map_err(|e| sqlite_error(db, e))?;
        let started = Instant::now();
        loop {
            match backup.step(-1).map_err(|e| sqlite_error(db, e))? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if started.elapsed() < LOCKED_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    return Err(SourceError::Locked {
                        path: db.to_path_buf(),
                        waited: LOCKED_WAIT,
                    })
                }
            }
        }
    }
    let file = File::open(&copy_path).map_err(|e| io_error(&copy_path, e))?;
    Ok(SqliteCopy { file, _dir: dir })
}

/// A database being restored: written to a temporary file beside its destination, then
/// checked and renamed into place by [`SqliteRestore::finish`]. Dropped unfinished, the
/// temporary file is removed and the destination is untouched.
pub struct SqliteRestore {
    temp: tempfile::NamedTempFile,
    to: PathBuf,
    overwrite: bool,
}

/// The files SQLite keeps beside a database while it is in use or was not closed cleanly. A
/// database put in place beside them would be read through their stale pages.
fn companions(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-journal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

fn refuse_companions(db: &Path) -> Result<(), SourceError> {
    match companions(db).into_iter().find(|c| c.exists()) {
        Some(companion) => Err(SourceError::InUse {
            path: db.to_path_buf(),
            companion,
        }),
        None => Ok(()),
    }
}

impl SqliteRestore {
    /// Prepares to restore into `to`. Without `overwrite` an existing `to` is refused; with
    /// it, a `to` that has a journal or WAL file beside it (in use, or not closed cleanly) is
    /// refused too.
    pub fn create(to: &Path, overwrite: bool) -> Result<SqliteRestore, SourceError> {
        let exists = to.symlink_metadata().is_ok();
        if exists && !overwrite {
            return Err(SourceError::Exists(to.to_path_buf()));
        }
        refuse_companions(to)?;
        let dir = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".lifeboat-restore-")
            .tempfile_in(&dir)
            .map_err(|e| io_error(&dir, e))?;
        Ok(SqliteRestore {
            temp,
            to: to.to_path_buf(),
            overwrite,
        })
    }

    /// Where the database's bytes go.
    pub fn writer(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Makes the file durable, checks it (`PRAGMA integrity_check` must say "ok") and renames
    /// it into place. Returns the destination's size.
    pub fn finish(self) -> Result<u64, SourceError> {
        let temp_path = self.temp.path().to_path_buf();
        self.temp
            .as_file()
            .sync_all()
            .map_err(|e| io_error(&temp_path, e))?;
        let checked = integrity_check(&temp_path);
        // Only the check opened these (the temporary name is ours alone).
        for companion in companions(&temp_path) {
            let _ = std::fs::remove_file(companion);
        }
        if let Some(verdict) = checked? {
            return Err(SourceError::NotADatabase {
                path: self.to.clone(),
                reason: format!("the restored copy fails its integrity check: {verdict}"),
            });
        }
        let size = self
            .temp
            .as_file()
            .metadata()
            .map_err(|e| io_error(&temp_path, e))?
            .len();
        // Again, just before: the database's users may have started while it was written.
        refuse_companions(&self.to)?;
        let persisted = if self.overwrite {
            self.temp.persist(&self.to)
        } else {
            // Refuses, rather than replaces, a file that appeared meanwhile.
            self.temp.persist_noclobber(&self.to)
        };
        persisted.map_err(|e| io_error(&self.to, e.error))?;
        if let Some(dir) = self.to.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
                io_error(
                    dir,
                    io::Error::other(format!(
                        "the database is in place, but syncing its directory failed ({e}): \
                         sync the filesystem before relying on it"
                    )),
                )
            })?;
        }
        Ok(size)
    }
}

/// `None` when `PRAGMA integrity_check` says "ok", else what it says.
fn integrity_check(path: &Path) -> Result<Option<String>, SourceError> {
    let check = open_existing(path)?;
    let verdict: String = check
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| sqlite_error(path, e))?;
    Ok((verdict != "ok").then_some(verdict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn database_with_rows(path: &Path, rows: i64) {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT);",
        )
        .expect("schema");
        for i in 0..rows {
            conn.execute("INSERT INTO t(i, v) VALUES (?1, 'row')", [i])
                .expect("insert");
        }
    }

    fn rows(path: &Path) -> i64 {
        Connection::open(path)
            .expect("open")
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn a_copy_restores_into_a_checked_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        database_with_rows(&db, 100);
        let mut copy = copy_database(&db, Some(dir.path())).expect("copy");
        let mut bytes = Vec::new();
        copy.read_to_end(&mut bytes).expect("read");
        drop(copy);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("lifeboat-sqlite-")
            })
            .collect();
        assert!(leftovers.is_empty(), "the temporary copy is removed");

        for companion in companions(&db) {
            assert!(!companion.exists(), "the copy left {}", companion.display());
        }

        let to = dir.path().join("restored.db");
        let mut restore = SqliteRestore::create(&to, false).expect("create");
        restore.writer().write_all(&bytes).expect("write");
        assert_eq!(restore.finish().expect("finish"), bytes.len() as u64);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["app.db", "restored.db"],
            "nothing else is left behind"
        );
        assert_eq!(rows(&to), 100);

        let refused = SqliteRestore::create(&to, false).err().expect("exists");
        assert!(refused.to_string().contains("already exists"), "{refused}");
    }

    #[test]
    fn a_damaged_copy_is_never_put_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let to = dir.path().join("restored.db");
        let mut restore = SqliteRestore::create(&to, false).expect("create");
        restore
            .writer()
            .write_all(b"this is no database at all")
            .expect("write");
        assert!(restore.finish().is_err());
        assert!(!to.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert!(left.is_empty(), "the temporary file is gone");
    }

    #[test]
    fn a_file_that_is_no_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let notes = dir.path().join("notes.txt");
        std::fs::write(
            &notes,
            "plain text, long enough to not be an empty database file at all",
        )
        .expect("write");
        let err = copy_database(&notes, None).err().expect("refused");
        assert!(err.to_string().contains("not a SQLite database"), "{err}");
        let err = copy_database(&dir.path().join("missing.db"), None)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("missing.db"), "{err}");
    }

    #[test]
    fn a_database_in_use_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("live.db");
        let conn = Connection::open(&db).expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(i);")
            .expect("schema");
        let err = SqliteRestore::create(&db, true).err().expect("refused");
        assert!(err.to_string().contains("-wal"), "{err}");
    }
}
