//! Writing one file's content: through a temporary name in the same directory, holes left
//! where whole blocks are zero (so sparse files stay sparse), renamed into place at the end.

use std::fs::{File, OpenOptions};
use std::io::Read;
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

/// Restores the content of `node` into a new temporary file; returns its path. On error the
/// temporary file is removed and the message names the blob.
/// The file's metadata is set through the open descriptor before it is closed; problems with
/// it come back as the warning in the second value.
pub fn write_content(
    repo: &Repository,
    index: &Index,
    node: &Node,
    final_path: &Path,
    as_root: bool,
) -> Result<(PathBuf, Option<String>), String> {
    let temp = temp_path(final_path);
    let result = (|| -> Result<Option<String>, String> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
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
        Ok(super::metadata::apply_to_file(&file, node, as_root).err())
    })();
    match result {
        Ok(warning) => Ok((temp, warning)),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
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
