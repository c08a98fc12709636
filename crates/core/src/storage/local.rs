//! A repository in a local directory.
//!
//! Layout: `config`, `keys/ID`, `data/XX/ID` (packs, fanned out by the first two hex digits),
//! `index/ID`, `snapshots/ID`, `locks/ID`. Writes go to a hidden temporary file (in the
//! namespace directory, or `data/` for packs), are fsynced, and are then hard-linked to their
//! final name: the link fails if the name exists, so an object is never replaced and never seen
//! half-written.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{
    validate_name, Capabilities, ObjectInfo, ObjectKind, StagedObject, Storage, StorageError,
    StorageResult,
};

const NAMESPACES: [&str; 5] = ["keys", "data", "index", "snapshots", "locks"];

/// Packs kept open for ranged reads: a restore reads many blobs from each pack, and opening
/// the file for every blob cost as much as reading it.
const OPEN_PACKS: usize = 32;

/// Reads up to `length` bytes at `offset` with positioned reads (the handle is shared between
/// threads). The length may come from a damaged index, so the buffer grows with what arrives.
fn read_at_most(file: &File, offset: u64, length: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    // Grown step by step as bytes arrive: `length` alone (from an index) must not decide an
    // allocation.
    const STEP: u64 = 16 * 1024 * 1024;
    // What the buffer already holds (the previous read) is read over, not zeroed again: only
    // the space it grows by is (zeroing every read's buffer was 37 MB of memset in a 100 MiB
    // dump).
    let mut have = 0usize;
    while (have as u64) < length {
        let want = (length - have as u64).min(STEP) as usize;
        if buf.len() < have + want {
            // Exactly: a reused buffer grown by doubling would keep twice the largest blob.
            buf.reserve_exact(have + want - buf.len());
            buf.resize(have + want, 0);
        }
        let n = loop {
            match file.read_at(&mut buf[have..have + want], offset + have as u64) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        have += n;
        if n == 0 {
            break;
        }
    }
    buf.truncate(have);
    Ok(())
}

/// Pack name and open handle, most recently used last.
type OpenPacks = Vec<(String, Arc<File>)>;

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    /// Most recently used last. Packs are immutable, so a cached handle never reads stale data.
    open_packs: Arc<Mutex<OpenPacks>>,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage {
            root: root.into(),
            open_packs: Arc::default(),
        }
    }

    fn open_pack(&self, name: &str, path: &Path) -> StorageResult<Arc<File>> {
        if let Ok(mut cache) = self.open_packs.lock() {
            if let Some(at) = cache.iter().position(|(n, _)| n == name) {
                let entry = cache.remove(at);
                let file = entry.1.clone();
                cache.push(entry);
                return Ok(file);
            }
        }
        let file = Arc::new(
            File::open(path).map_err(|e| self.map_error(ObjectKind::Pack, name, path, e))?,
        );
        if let Ok(mut cache) = self.open_packs.lock() {
            if cache.len() >= OPEN_PACKS {
                cache.remove(0);
            }
            cache.push((name.to_string(), file.clone()));
        }
        Ok(file)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, kind: ObjectKind, name: &str) -> PathBuf {
        match kind {
            ObjectKind::Config => self.root.clone(),
            ObjectKind::Key => self.root.join("keys"),
            ObjectKind::Pack => self.root.join("data").join(&name[..name.len().min(2)]),
            ObjectKind::Index => self.root.join("index"),
            ObjectKind::Snapshot => self.root.join("snapshots"),
            ObjectKind::Lock => self.root.join("locks"),
            ObjectKind::Condemned => self.root.join("condemned"),
            ObjectKind::Forgotten => self.root.join("forgotten"),
        }
    }

    fn path_of(&self, kind: ObjectKind, name: &str) -> StorageResult<PathBuf> {
        validate_name(kind, name)?;
        Ok(self.dir_of(kind, name).join(name))
    }

    fn io_error(&self, path: &Path, source: io::Error) -> StorageError {
        let retryable = matches!(
            source.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        );
        StorageError::Io {
            location: path.display().to_string(),
            source,
            retryable,
        }
    }

    fn map_error(&self, kind: ObjectKind, name: &str, path: &Path, e: io::Error) -> StorageError {
        if e.kind() == io::ErrorKind::NotFound {
            StorageError::NotFound {
                location: self.location(),
                kind,
                name: name.to_string(),
            }
        } else {
            self.io_error(path, e)
        }
    }

    fn list_dir(&self, dir: &Path, out: &mut Vec<ObjectInfo>) -> StorageResult<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io_error(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.io_error(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            // An object deleted between the listing and this stat (a concurrent unlock,
            // prune or lock refresh) is simply no longer there: not an error.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io_error(&entry.path(), e)),
            };
            if meta.is_file() {
                out.push(ObjectInfo {
                    name: name.to_string(),
                    size: meta.len(),
                });
            }
        }
        Ok(())
    }
}

impl LocalStorage {
    /// Creates `dir` if missing: pack fan-out directories are made on demand, and so is a
    /// namespace directory that a copy of the repository dropped for being empty (git,
    /// object-store syncs). Each new directory's entry is made durable before anything names
    /// it. A repository that is gone (unmounted, deleted) is never recreated: that write fails.
    fn ensure_dir(&self, dir: &Path) -> StorageResult<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let config = self.root.join("config");
        if !config.is_file() {
            return Err(self.io_error(
                &self.root,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the repository is gone (no config object); not recreating it",
                ),
            ));
        }
        let mut missing = Vec::new();
        let mut at = dir;
        while !at.is_dir() && at != self.root {
            missing.push(at);
            at = at.parent().unwrap_or(&self.root);
        }
        for new in missing.into_iter().rev() {
            match fs::create_dir(new) {
                Ok(()) => {}
                // Another writer made it first.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.io_error(new, e)),
            }
            let parent = new.parent().unwrap_or(&self.root);
            sync_dir(parent).map_err(|e| self.io_error(parent, e))?;
        }
        Ok(())
    }

    fn staged_error(&self, staged: &StagedObject, e: io::Error) -> StorageError {
        match staged.path() {
            Some(path) => self.io_error(path, e),
            None => self.io_error(&self.root, e),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_write_once: true,
            delete: true,
        }
    }

    fn exists(&self) -> StorageResult<bool> {
        let path = self.root.join("config");
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io_error(&path, e)),
        }
    }

    /// Temporaries live in the namespace directories (and `data/` for packs), never deeper.
    fn remove_stale_temporaries(&self, older_than: std::time::Duration) -> StorageResult<u64> {
        let mut removed = 0;
        let namespaces = [
            "keys",
            "data",
            "index",
            "snapshots",
            "locks",
            "condemned",
            "forgotten",
        ];
        for dir in namespaces.iter().map(|ns| self.root.join(ns)) {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io_error(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io_error(&dir, e))?;
                if !entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(super::staged::STAGE_PREFIX)
                {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > older_than);
                // Gone meanwhile (its writer finished or gave up): nothing to do.
                if stale && fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn create(&self) -> StorageResult<()> {
        for ns in NAMESPACES {
            let dir = self.root.join(ns);
            fs::create_dir_all(&dir).map_err(|e| self.io_error(&dir, e))?;
        }
        sync_dir(&self.root).map_err(|e| self.io_error(&self.root, e))
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        match kind {
            ObjectKind::Config => {
                if let Ok(info) = self.stat(kind, "config") {
                    out.push(info);
                }
            }
            ObjectKind::Pack => {
                let data = self.root.join("data");
                let fans = match fs::read_dir(&data) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(self.io_error(&data, e)),
                };
                for fan in fans {
                    let fan = fan.map_err(|e| self.io_error(&data, e))?;
                    if fan.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        self.list_dir(&fan.path(), &mut out)?;
                    }
                }
            }
            _ => self.list_dir(&self.dir_of(kind, ""), &mut out)?,
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let path = self.path_of(kind, name)?;
        fs::read(&path).map_err(|e| self.map_error(kind, name, &path, e))
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(kind, name, offset, length, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        let path = self.path_of(kind, name)?;
        let file = if kind == ObjectKind::Pack {
            self.open_pack(name, &path)?
        } else {
            Arc::new(File::open(&path).map_err(|e| self.map_error(kind, name, &path, e))?)
        };
        read_at_most(&file, offset, length, buf).map_err(|e| self.io_error(&path, e))?;
        if (buf.len() as u64) < length {
            return Err(self.io_error(
                &path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "short read: wanted {length} bytes at offset {offset}, got {}",
                        buf.len()
                    ),
                ),
            ));
        }
        Ok(())
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        validate_name(kind, name)?;
        let mut staged = self.stage(kind)?;
        staged
            .write_all(data)
            .map_err(|e| self.staged_error(&staged, e))?;
        self.write_staged(kind, name, staged)
    }

    /// Stages in the repository itself (`data/` for packs, the namespace directory otherwise),
    /// so that storing is a hard link on the same file system.
    fn stage(&self, kind: ObjectKind) -> StorageResult<StagedObject> {
        let dir = match kind {
            ObjectKind::Pack => self.root.join("data"),
            _ => self.dir_of(kind, ""),
        };
        self.ensure_dir(&dir)?;
        StagedObject::in_dir(&dir).map_err(|e| self.io_error(&dir, e))
    }

    fn write_staged(
        &self,
        kind: ObjectKind,
        name: &str,
        staged: StagedObject,
    ) -> StorageResult<()> {
        let path = self.path_of(kind, name)?;
        let dir = self.dir_of(kind, name);
        self.ensure_dir(&dir)?;
        staged.sync().map_err(|e| self.staged_error(&staged, e))?;
        if kind == ObjectKind::Pack {
            staged.drop_cached();
        }
        let Some(temp) = staged.path() else {
            return Err(self.staged_error(
                &staged,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a discarding object cannot be stored",
                ),
            ));
        };
        // The link fails if the name exists: an object is never replaced. Dropping `staged`
        // removes the temporary name either way.
        match fs::hard_link(temp, &path) {
            Ok(()) => sync_dir(&dir).map_err(|e| self.io_error(&dir, e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists {
                    location: self.location(),
                    kind,
                    name: name.to_string(),
                })
            }
            Err(e) => Err(self.io_error(&path, e)),
        }
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        let path = self.path_of(kind, name)?;
        if kind == ObjectKind::Pack {
            // A deleted pack must not stay readable through a cached handle.
            if let Ok(mut cache) = self.open_packs.lock() {
                cache.retain(|(n, _)| n != name);
            }
        }
        fs::remove_file(&path).map_err(|e| self.map_error(kind, name, &path, e))
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        let path = self.path_of(kind, name)?;
        let meta = fs::metadata(&path).map_err(|e| self.map_error(kind, name, &path, e))?;
        Ok(ObjectInfo {
            name: name.to_string(),
            size: meta.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_reads_into_a_reused_buffer_hold_exactly_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = Vec::new();
        read_at_most(&file, 100, 5000, &mut buf).unwrap();
        assert_eq!(buf, bytes[100..5100]);
        // Shorter than what the buffer held: nothing of the previous read is left over.
        read_at_most(&file, 7, 30, &mut buf).unwrap();
        assert_eq!(buf, bytes[7..37]);
        // Longer than what it held, and past the end of the file: what is there.
        read_at_most(&file, 9000, 4000, &mut buf).unwrap();
        assert_eq!(buf, bytes[9000..]);
        read_at_most(&file, 20_000, 10, &mut buf).unwrap();
        assert!(buf.is_empty(), "nothing at an offset past the end");
    }

    #[test]
    fn writes_recreate_a_missing_namespace_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::new(dir.path());
        store.create().unwrap();
        std::fs::remove_dir(dir.path().join("locks")).unwrap();
        std::fs::remove_dir_all(dir.path().join("data")).unwrap();
        // Without a config object nothing is recreated: the repository may be unmounted.
        assert!(store.write(ObjectKind::Lock, "abc", b"held").is_err());
        assert!(!dir.path().join("locks").exists());
        store.write(ObjectKind::Config, "config", b"{}").unwrap();
        store.write(ObjectKind::Lock, "abc", b"held").unwrap();
        assert_eq!(store.read(ObjectKind::Lock, "abc").unwrap(), b"held");
        store.write(ObjectKind::Pack, "abcdef", b"pack").unwrap();
        assert_eq!(store.read(ObjectKind::Pack, "abcdef").unwrap(), b"pack");
    }

    #[test]
    fn listing_skips_objects_deleted_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalStorage::new(dir.path()));
        store.create().unwrap();
        store.write(ObjectKind::Config, "config", b"{}").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let names: Vec<String> = (0..64).map(|i| format!("{round:x}{i:04x}")).collect();
                    for name in &names {
                        store.write(ObjectKind::Lock, name, b"held").unwrap();
                    }
                    for name in &names {
                        store.delete(ObjectKind::Lock, name).unwrap();
                    }
                    round += 1;
                }
            })
        };
        // Before the fix about one listing in two hundred failed with "No such file" here.
        let outcome = (0..3000).try_for_each(|_| store.list(ObjectKind::Lock).map(drop));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        outcome.unwrap();
    }

    #[test]
    fn a_vanished_repository_is_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let store = LocalStorage::new(&root);
        store.create().unwrap();
        store.write(ObjectKind::Config, "config", b"{}").unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let err = store.write(ObjectKind::Index, "abc", b"x").unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
        assert!(!root.exists());
    }

    #[test]
    fn write_once_refuses_overwrite_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::new(dir.path());
        store.create().unwrap();
        store.write(ObjectKind::Config, "config", b"{}").unwrap();
        store.write(ObjectKind::Pack, "abcdef", b"hello").unwrap();
        let err = store
            .write(ObjectKind::Pack, "abcdef", b"other")
            .unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists { .. }));
        assert_eq!(store.read(ObjectKind::Pack, "abcdef").unwrap(), b"hello");
        assert_eq!(
            store.read_range(ObjectKind::Pack, "abcdef", 1, 3).unwrap(),
            b"ell"
        );
        assert!(store.read_range(ObjectKind::Pack, "abcdef", 3, 5).is_err());
        let listed = store.list(ObjectKind::Pack).unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                name: "abcdef".into(),
                size: 5
            }]
        );
        store.delete(ObjectKind::Pack, "abcdef").unwrap();
        assert!(store
            .read(ObjectKind::Pack, "abcdef")
            .unwrap_err()
            .is_not_found());
        assert!(
            store
                .read_range(ObjectKind::Pack, "abcdef", 1, 3)
                .unwrap_err()
                .is_not_found(),
            "a deleted pack is not readable through the cached handle"
        );
    }

    #[test]
    fn names_cannot_escape_their_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::new(dir.path());
        store.create().unwrap();
        for bad in ["../config", "a/b", ".hidden", ""] {
            assert!(matches!(
                store.write(ObjectKind::Index, bad, b"x"),
                Err(StorageError::InvalidName { .. })
            ));
        }
    }
}
