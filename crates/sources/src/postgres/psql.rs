//! One-line questions to the server through psql, with the libpq variables (`PGHOST`, ...).

use std::path::Path;
use std::process::Stdio;

use super::program;
use crate::SourceError;

/// Runs `sql` in the `postgres` database and returns its unaligned, tuples-only output.
/// Never prompts for a password (`-w`): a missing one is an error.
pub fn query(bin: Option<&Path>, sql: &str) -> Result<String, SourceError> {
    let mut psql = program(bin, "psql");
    // Run directly, not as a stream: lifeboat's variables are removed here.
    crate::command::without_lifeboat_variables(&mut psql);
    psql.args(["-X", "-At", "-w", "-d", "postgres", "-c", sql]);
    let out = psql
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SourceError::Spawn {
            program: "psql".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(SourceError::Failed {
            program: "psql".into(),
            message: format!(
                "{sql:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The next transaction id (`pg_current_snapshot()`'s xmax), if the server can be asked.
pub fn next_xid(bin: Option<&Path>) -> Option<u64> {
    query(bin, "SELECT pg_snapshot_xmax(pg_current_snapshot())")
        .ok()?
        .parse()
        .ok()
}

/// The segment the server is writing now, if it can be asked (not on a standby).
pub fn current_wal_file(bin: Option<&Path>) -> Option<String> {
    let name = query(bin, "SELECT pg_walfile_name(pg_current_wal_lsn())").ok()?;
    super::wal::segment_position(&name)
        .is_some()
        .then_some(name)
}
