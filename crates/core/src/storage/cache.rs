//! A local cache of what a remote repository's commands read again and again: its config,
//! index files, snapshots and tree frames. An unchanged backup into an object store then reads them from
//! disk instead of sending a request for each.
//!
//! Everything cached is the repository's sealed bytes (nothing decrypted lands on disk), each
//! file followed by the BLAKE3 of its bytes and checked before use: a damaged or truncated
//! cache file costs a download, never a wrong answer. Files are written under a temporary name
//! and renamed, so processes sharing the cache never see half a file. The cache only ever
//! helps: any failure to read or write it falls through to the repository, and the directory
//! may be deleted at any time.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Capabilities, ObjectInfo, ObjectKind, StagedObject, Storage, StorageResult};

const HASH_LEN: usize = 32;

#[derive(Debug)]
pub struct CachedStorage {
    inner: Arc<dyn Storage>,
    dir: PathBuf,
}

impl CachedStorage {
    /// Caches `inner` in `dir` (one directory per repository: the caller names it by the
    /// repository id).
    pub fn new(inner: Arc<dyn Storage>, dir: impl Into<PathBuf>) -> Self {
        CachedStorage {
            inner,
            dir: dir.into(),
        }
    }

    fn cached_kind(kind: ObjectKind) -> Option<&'static str> {
        match kind {
            // Written once at init; read by every command (twice while opening).
            ObjectKind::Config => Some("config"),
            ObjectKind::Index => Some("index"),
            ObjectKind::Snapshot => Some("snapshots"),
            ObjectKind::Forgotten => Some("forgotten"),
            _ => None,
        }
    }

    fn object_path(&self, kind: ObjectKind, name: &str) -> Option<PathBuf> {
        super::validate_name(kind, name).ok()?;
        Some(self.dir.join(Self::cached_kind(kind)?).join(name))
    }

    fn range_path(&self, pack: &str, offset: u64, length: u64) -> Option<PathBuf> {
        super::validate_name(ObjectKind::Pack, pack).ok()?;
        Some(
            self.dir
                .join("trees")
                .join(format!("{pack}-{offset}-{length}")),
        )
    }

    /// The cached bytes at `path`, if the file is there and whole.
    fn load(path: &Path) -> Option<Vec<u8>> {
        let mut data = fs::read(path).ok()?;
        let body_len = data.len().checked_sub(HASH_LEN)?;
        let whole = blake3::hash(&data[..body_len]).as_bytes() == &data[body_len..];
        if !whole {
            let _ = fs::remove_file(path);
            return None;
        }
        data.truncate(body_len);
        Some(data)
    }

    fn store(path: &Path, data: &[u8]) {
        let Some(dir) = path.parent() else { return };
        // Private: sealed bytes only, but nobody else's business either.
        let made = {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
        };
        if made.is_err() {
            return;
        }
        let temp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
        let written = fs::File::create(&temp).and_then(|mut file| {
            file.write_all(data)?;
            file.write_all(blake3::hash(data).as_bytes())
        });
        if written.and_then(|()| fs::rename(&temp, path)).is_err() {
            let _ = fs::remove_file(&temp);
        }
    }

    /// Drops cached files whose object the repository no longer lists (`keep` holds the
    /// names listed; for tree frames, the pack names).
    fn forget_unlisted(&self, sub: &str, keep: &HashSet<&str>, object_of: fn(&str) -> &str) {
        let Ok(entries) = fs::read_dir(self.dir.join(sub)) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if !keep.contains(object_of(&file)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The pack name a cached tree frame belongs to (`PACK-OFFSET-LENGTH`).
fn pack_of(file: &str) -> &str {
    file.split('-').next().unwrap_or(file)
}

impl Storage for CachedStorage {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn exists(&self) -> StorageResult<bool> {
        self.inner.exists()
    }
    fn remove_stale_temporaries(&self, older_than: std::time::Duration) -> StorageResult<u64> {
        self.inner.remove_stale_temporaries(older_than)
    }
    fn create(&self) -> StorageResult<()> {
        self.inner.create()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        let listed = self.inner.list(kind)?;
        let names: HashSet<&str> = listed.iter().map(|i| i.name.as_str()).collect();
        match kind {
            ObjectKind::Index | ObjectKind::Snapshot | ObjectKind::Forgotten => {
                if let Some(sub) = Self::cached_kind(kind) {
                    self.forget_unlisted(sub, &names, |file| file);
                }
            }
            ObjectKind::Pack => self.forget_unlisted("trees", &names, pack_of),
            _ => {}
        }
        Ok(listed)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let Some(path) = self.object_path(kind, name) else {
            return self.inner.read(kind, name);
        };
        if let Some(data) = Self::load(&path) {
            return Ok(data);
        }
        let data = self.inner.read(kind, name)?;
        Self::store(&path, &data);
        Ok(data)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>> {
        self.inner.read_range(kind, name, offset, length)
    }
    fn read_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.inner.read_range_into(kind, name, offset, length, buf)
    }
    fn read_metadata_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        let path = match kind {
            ObjectKind::Pack => self.range_path(name, offset, length),
            _ => None,
        };
        let Some(path) = path else {
            return self.inner.read_range_into(kind, name, offset, length, buf);
        };
        if let Some(data) = Self::load(&path).filter(|d| d.len() as u64 == length) {
            *buf = data;
            return Ok(());
        }
        self.inner
            .read_range_into(kind, name, offset, length, buf)?;
        Self::store(&path, buf);
        Ok(())
    }
    fn remember_metadata_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        bytes: &mut dyn FnMut() -> Option<Vec<u8>>,
    ) {
        if kind != ObjectKind::Pack {
            return;
        }
        let Some(data) = bytes() else {
            return;
        };
        if let Some(path) = self.range_path(name, offset, data.len() as u64) {
            Self::store(&path, &data);
        }
    }
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        self.inner.write(kind, name, data)?;
        if let Some(path) = self.object_path(kind, name) {
            Self::store(&path, data);
        }
        Ok(())
    }
    fn stage(&self, kind: ObjectKind) -> StorageResult<StagedObject> {
        self.inner.stage(kind)
    }
    fn write_staged(
        &self,
        kind: ObjectKind,
        name: &str,
        staged: StagedObject,
    ) -> StorageResult<()> {
        self.inner.write_staged(kind, name, staged)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        if let Some(path) = self.object_path(kind, name) {
            let _ = fs::remove_file(path);
        }
        self.inner.delete(kind, name)
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        self.inner.stat(kind, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    fn setup() -> (tempfile::TempDir, Arc<dyn Storage>, CachedStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path().join("repo")));
        inner.create().expect("create");
        // A repository to the local backend: it recreates a missing directory only then.
        inner
            .write(ObjectKind::Config, "config", b"{}")
            .expect("config");
        let cached = CachedStorage::new(inner.clone(), dir.path().join("cache"));
        (dir, inner, cached)
    }

    #[test]
    fn reads_come_from_the_cache_once_stored_and_damage_is_refetched() {
        let (dir, inner, cached) = setup();
        cached
            .write(ObjectKind::Index, "aa", b"index bytes")
            .expect("write");
        // Gone from the repository behind the cache's back: still served from the cache.
        std::fs::remove_file(dir.path().join("repo/index/aa")).expect("remove");
        assert_eq!(
            cached.read(ObjectKind::Index, "aa").expect("read"),
            b"index bytes"
        );

        inner
            .write(ObjectKind::Snapshot, "bb", b"snapshot")
            .expect("write");
        assert_eq!(
            cached.read(ObjectKind::Snapshot, "bb").expect("read"),
            b"snapshot"
        );
        let file = dir.path().join("cache/snapshots/bb");
        assert!(file.exists(), "stored on first read");
        // A flipped byte in the cache: detected, dropped, read again from the repository.
        let mut bytes = std::fs::read(&file).expect("read cache");
        bytes[0] ^= 1;
        std::fs::write(&file, &bytes).expect("damage");
        assert_eq!(
            cached.read(ObjectKind::Snapshot, "bb").expect("read"),
            b"snapshot"
        );
        assert_eq!(
            CachedStorage::load(&file).as_deref(),
            Some(&b"snapshot"[..])
        );
        // Truncated to less than a hash: same.
        std::fs::write(&file, b"x").expect("truncate");
        assert_eq!(
            cached.read(ObjectKind::Snapshot, "bb").expect("read"),
            b"snapshot"
        );
    }

    #[test]
    fn tree_frames_offered_while_writing_are_read_from_the_cache() {
        let (_dir, inner, cached) = setup();
        let mut bytes = || Some(b"2345".to_vec());
        cached.remember_metadata_range(ObjectKind::Pack, "beef", 2, &mut bytes);
        // Not even in the store: the cache answers alone.
        let mut buf = Vec::new();
        cached
            .read_metadata_range_into(ObjectKind::Pack, "beef", 2, 4, &mut buf)
            .expect("from the cache");
        assert_eq!(buf, b"2345");
        assert!(inner.stat(ObjectKind::Pack, "beef").is_err());
        // Other kinds are not kept.
        let mut asked = false;
        let mut never = || {
            asked = true;
            None
        };
        cached.remember_metadata_range(ObjectKind::Index, "aa", 0, &mut never);
        assert!(!asked);
    }

    #[test]
    fn tree_ranges_are_cached_and_listing_drops_what_is_gone() {
        let (dir, inner, cached) = setup();
        inner
            .write(ObjectKind::Pack, "cafe", b"0123456789")
            .expect("write");
        let mut buf = Vec::new();
        cached
            .read_metadata_range_into(ObjectKind::Pack, "cafe", 2, 4, &mut buf)
            .expect("range");
        assert_eq!(buf, b"2345");
        let frame = dir.path().join("cache/trees/cafe-2-4");
        assert!(frame.exists());
        // Data ranges are not cached.
        cached
            .read_range_into(ObjectKind::Pack, "cafe", 0, 2, &mut buf)
            .expect("range");
        assert!(!dir.path().join("cache/trees/cafe-0-2").exists());

        inner.delete(ObjectKind::Pack, "cafe").expect("delete");
        cached.list(ObjectKind::Pack).expect("list");
        assert!(
            !frame.exists(),
            "a pack no longer listed loses its cached frames"
        );

        cached.write(ObjectKind::Index, "dd", b"i").expect("write");
        inner.delete(ObjectKind::Index, "dd").expect("delete");
        cached.list(ObjectKind::Index).expect("list");
        assert!(!dir.path().join("cache/index/dd").exists());
    }
}
