//! Objects written piecewise: a pack is sealed frame by frame into a temporary file instead of
//! a 16 MiB buffer, and only stored under its name (which is the hash of its bytes) once
//! complete.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Temporary files start with this prefix; listings skip every name starting with `.`.
pub(crate) const STAGE_PREFIX: &str = ".tmp-stage-";

/// An object under construction. Dropping it before it is stored removes its temporary file.
#[derive(Debug)]
pub struct StagedObject {
    /// `None` for a staged object that discards its bytes (a dry run).
    file: Option<(File, PathBuf)>,
    len: u64,
}

impl StagedObject {
    /// A new, empty temporary file in `dir`.
    pub fn in_dir(dir: &Path) -> io::Result<StagedObject> {
        let path = dir.join(format!("{STAGE_PREFIX}{:016x}", rand::random::<u64>()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(StagedObject {
            file: Some((file, path)),
            len: 0,
        })
    }

    /// A second staged object holding the same bytes, under a temporary name of its own
    /// beside this one (a hard link, so nothing is copied): a store that may have to be
    /// tried again hands the backend the duplicate and keeps this one for the next attempt.
    /// Nothing may be written to either once duplicated.
    pub fn duplicate(&self) -> io::Result<StagedObject> {
        let Some((_, path)) = &self.file else {
            return Ok(StagedObject {
                file: None,
                len: self.len,
            });
        };
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let copy = dir.join(format!("{STAGE_PREFIX}{:016x}", rand::random::<u64>()));
        std::fs::hard_link(path, &copy)?;
        match OpenOptions::new().read(true).write(true).open(&copy) {
            Ok(file) => Ok(StagedObject {
                file: Some((file, copy)),
                len: self.len,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&copy);
                Err(e)
            }
        }
    }

    /// A staged object that keeps nothing (for storages that drop writes).
    pub fn discarding() -> StagedObject {
        StagedObject { file: None, len: 0 }
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some((file, _)) = &mut self.file {
            file.write_all(data)?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The temporary file's path, for messages and for linking it into place.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(_, p)| p.as_path())
    }

    /// Makes the written bytes durable.
    pub fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some((file, _)) => file.sync_all(),
            None => Ok(()),
        }
    }

    /// Drops the written bytes from the page cache (once synced, they are clean). A backup
    /// writes gigabytes nobody reads back soon: kept cached, they would evict what the
    /// application on the machine needs, and the next pack would be written into newly
    /// allocated pages instead of the ones just freed. Only advice: errors are ignored.
    pub fn drop_cached(&self) {
        if let Some((file, _)) = &self.file {
            let _ = nix::fcntl::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(file),
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
        }
    }

    /// `length` bytes at `offset` of what was written (`None` for a discarding object).
    pub fn read_at(&self, offset: u64, length: usize) -> io::Result<Option<Vec<u8>>> {
        let Some((file, _)) = &self.file else {
            return Ok(None);
        };
        let mut out = vec![0u8; length];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut out, offset)?;
        Ok(Some(out))
    }

    /// Everything written, read back (for backends that upload from memory).
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        if let Some((file, _)) = &mut self.file {
            file.rewind()?;
            file.read_to_end(&mut out)?;
        }
        Ok(out)
    }
}

impl Drop for StagedObject {
    fn drop(&mut self) {
        if let Some((_, path)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_read_back_and_vanish_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut staged = StagedObject::in_dir(dir.path()).unwrap();
        staged.write_all(b"hello ").unwrap();
        staged.write_all(b"world").unwrap();
        assert_eq!(staged.len(), 11);
        assert_eq!(staged.read_all().unwrap(), b"hello world");
        let path = staged.path().unwrap().to_path_buf();
        assert!(path.exists());
        drop(staged);
        assert!(!path.exists(), "the temporary file is removed");
        let mut twice = StagedObject::in_dir(dir.path()).unwrap();
        twice.write_all(b"same bytes").unwrap();
        let mut copy = twice.duplicate().unwrap();
        assert_ne!(copy.path(), twice.path());
        assert_eq!(copy.len(), 10);
        assert_eq!(copy.read_all().unwrap(), b"same bytes");
        let copy_path = copy.path().unwrap().to_path_buf();
        drop(copy);
        assert!(!copy_path.exists(), "the duplicate's name is removed");
        assert_eq!(
            twice.read_all().unwrap(),
            b"same bytes",
            "the original stays"
        );
        let mut nothing = StagedObject::discarding();
        nothing.write_all(b"dropped").unwrap();
        assert_eq!(nothing.len(), 7);
        assert!(nothing.read_all().unwrap().is_empty());
    }
}
