//! Writing one file's content, holes left where whole blocks are zero (so sparse files stay
//! sparse), so that no half-written file ever has the file's name: in a directory this
//! restore created, as an unnamed file (`O_TMPFILE`) linked under its name once complete;
//! elsewhere through a temporary name in the same directory, renamed into place at the end
//! (replacing what is there).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::blob::BlobId;
use crate::index::Index;
use crate::ops::content::{frame_units, UnitReader};
use crate::repository::Repository;
use crate::tree::Node;

const BLOCK: u64 = 4096;

pub fn temp_path(final_path: &Path) -> PathBuf {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    dir.join(format!(".lifeboat-tmp-{:016x}", rand::random::<u64>()))
}

/// Where a written file is: under a temporary name still to be renamed into place, or
/// already under its own name.
pub enum Written {
    Temp(PathBuf),
    InPlace,
}

/// An unnamed file in `dir`, which exists for nobody until [`link_into_place`] names it.
fn open_unnamed(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

/// Gives an unnamed file its name; fails if the name exists. Through `/proc/self/fd`, the
/// way open(2) documents for callers without `CAP_DAC_READ_SEARCH`.
fn link_into_place(file: &File, path: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let invalid = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(invalid)?;
    let to = CString::new(path.as_os_str().as_bytes()).map_err(invalid)?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let done = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether unnamed files can be created and linked in `dir` (the filesystem supports
/// `O_TMPFILE`, `/proc` is mounted): tried once per restore, with a probe name.
pub fn unnamed_files_work(dir: &Path) -> bool {
    let probe = temp_path(&dir.join("probe"));
    let linked = open_unnamed(dir).and_then(|file| link_into_place(&file, &probe));
    let _ = std::fs::remove_file(&probe);
    linked.is_ok()
}

/// Writes `data` at `offset`, skipping 4 KiB blocks (aligned to the file) that are all zero.
/// Runs of non-zero blocks go out in one write. Returns the end of the last byte written.
fn write_sparse(file: &File, offset: u64, data: &[u8]) -> std::io::Result<u64> {
    let mut pos = 0usize;
    let mut run_start: Option<usize> = None;
    let mut written_end = 0u64;
    while pos < data.len() {
        let file_pos = offset + pos as u64;
        let block_end = ((file_pos / BLOCK) + 1) * BLOCK;
        let len = ((block_end - file_pos) as usize).min(data.len() - pos);
        let zero = data[pos..pos + len].iter().all(|b| *b == 0);
        match (zero, run_start) {
            (false, None) => run_start = Some(pos),
            (true, Some(start)) => {
                file.write_all_at(&data[start..pos], offset + start as u64)?;
                written_end = offset + pos as u64;
                run_start = None;
            }
            _ => {}
        }
        pos += len;
    }
    if let Some(start) = run_start {
        file.write_all_at(&data[start..], offset + start as u64)?;
        written_end = offset + data.len() as u64;
    }
    Ok(written_end)
}

/// Restores the content of `node` for `final_path`: unnamed and then linked there when
/// `unnamed` (the caller knows the name is free and unnamed files work), otherwise into a new
/// temporary file. On error nothing is left behind and the message names the blob.
/// The file's metadata is set through the open descriptor before it is closed; problems with
/// it come back as the warning in the second value.
pub fn write_content(
    repo: &Repository,
    index: &Index,
    node: &Node,
    final_path: &Path,
    as_root: bool,
    unnamed: bool,
) -> Result<(Written, Option<String>), String> {
    let temp = temp_path(final_path);
    let mut named_temp = false;
    let result = (|| -> Result<(Written, Option<String>), String> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let file = if unnamed {
            open_unnamed(dir)
                .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?
        } else {
            named_temp = true;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(|e| format!("cannot create {}: {e}", temp.display()))?
        };
        let mut offset = 0u64;
        let mut written_end = 0u64;
        // Buffers for this file only: kept across files, four workers would each hold their
        // largest frame for the whole restore.
        let (mut reader, mut frame) = (UnitReader::default(), Vec::new());
        for unit in frame_units(index, &node.content) {
            let first = unit.start;
            let blobs = reader
                .read(repo, index, &node.content, unit, &mut frame)
                .map_err(|e| format!("blob {}: {e}", node.content[first]))?;
            for blob in blobs {
                let data = &frame[blob];
                let end = write_sparse(&file, offset, data).map_err(|e| format!("write: {e}"))?;
                written_end = written_end.max(end);
                offset += data.len() as u64;
            }
        }
        if written_end < offset {
            // The file ends in a hole: give it its length.
            file.set_len(offset).map_err(|e| format!("write: {e}"))?;
        }
        let warning = super::metadata::apply_to_file(&file, node, as_root).err();
        if !unnamed {
            return Ok((Written::Temp(temp.clone()), warning));
        }
        match link_into_place(&file, final_path) {
            Ok(()) => Ok((Written::InPlace, warning)),
            // The name was taken after all (a snapshot naming a file twice): the later one
            // replaces it, as a rename would.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                named_temp = true;
                link_into_place(&file, &temp).map_err(|e| format!("link into place: {e}"))?;
                Ok((Written::Temp(temp.clone()), warning))
            }
            Err(e) => Err(format!("link into place: {e}")),
        }
    })();
    if result.is_err() && named_temp {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Whether the file at `path` holds exactly the blobs `ids` (same chunking, same ids).
pub fn content_matches(
    repo: &Repository,
    index: &Index,
    path: &Path,
    ids: &[BlobId],
) -> Result<bool, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for id in ids {
        let len = index
            .get(id)
            .map(|l| l.raw_length as usize)
            .ok_or_else(|| format!("blob {id} not indexed"))?;
        // Read at most `len` bytes, growing the buffer only as bytes arrive: the length comes
        // from the index and must not decide an allocation on its own.
        let mut buf = Vec::new();
        match (&mut file).take(len as u64).read_to_end(&mut buf) {
            Ok(n) if n == len => {}
            _ => return Ok(false),
        }
        if repo.blob_id(&buf) != *id {
            return Ok(false);
        }
    }
    let mut rest = [0u8; 1];
    Ok(matches!(file.read(&mut rest), Ok(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_unnamed_file_has_no_name_until_linked_and_never_replaces_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            unnamed_files_work(dir.path()),
            "ext4 and tmpfs have O_TMPFILE"
        );
        let listing = || std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(listing(), 0, "the probe leaves nothing behind");

        let mut file = open_unnamed(dir.path()).expect("unnamed");
        file.write_all(b"complete").expect("write");
        assert_eq!(listing(), 0, "invisible while being written");
        let path = dir.path().join("f");
        link_into_place(&file, &path).expect("link");
        assert_eq!(std::fs::read(&path).expect("read"), b"complete");

        let second = open_unnamed(dir.path()).expect("unnamed");
        let taken = link_into_place(&second, &path).expect_err("name taken");
        assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).expect("read"), b"complete");
        drop(second);
        assert_eq!(listing(), 1, "a file never linked disappears on close");
    }
}
