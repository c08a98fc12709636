//! What lifeboat reads of a data directory's control file.

use std::io::Read;
use std::path::Path;

use crate::SourceError;

/// The control file, relative to the data directory.
pub const CONTROL_FILE: &str = "global/pg_control";

/// The cluster's system identifier: the first field of the control file, written in the
/// server's byte order (this machine's, since the server runs here). Every WAL file and base
/// backup of one cluster shares it, so the archive keeps clusters apart by it.
pub fn system_identifier(data_dir: &Path) -> Result<u64, SourceError> {
    let path = data_dir.join(CONTROL_FILE);
    let mut head = [0u8; 8];
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|source| SourceError::Io { path, source })?;
    Ok(system_identifier_of(&head))
}

/// The system identifier at the start of a control file's bytes.
pub fn system_identifier_of(head: &[u8; 8]) -> u64 {
    u64::from_ne_bytes(*head)
}
