//! PostgreSQL, logical: `pg_dump -Fc` of each database and `pg_dumpall --globals-only`, each a
//! stream of one snapshot.

use std::path::Path;

use super::program;
use crate::command::DeferredCommand;
use crate::SourceError;

/// The file the roles and tablespaces (`pg_dumpall --globals-only`) are stored as.
pub const GLOBALS_FILE: &str = "globals.sql";

/// The file a database's dump is stored as.
pub fn dump_file(database: &str) -> String {
    format!("{database}.dump")
}

/// The databases a logical backup of the whole server dumps: every one that accepts
/// connections, templates excepted.
pub fn list_databases(bin: Option<&Path>) -> Result<Vec<String>, SourceError> {
    let mut psql = program(bin, "psql");
    // Run directly, not as a stream: lifeboat's variables are removed here.
    crate::command::without_lifeboat_variables(&mut psql);
    psql.args([
        "-X",
        "-At",
        "-d",
        "postgres",
        "-c",
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
    ]);
    let out = psql.output().map_err(|source| SourceError::Spawn {
        program: "psql".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(SourceError::Failed {
            program: "psql".into(),
            message: format!(
                "listing the databases failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// The streams of a logical backup: the globals, then one custom-format dump per database,
/// each started when the backup reads it.
pub fn logical_streams(bin: Option<&Path>, databases: &[String]) -> Vec<(String, DeferredCommand)> {
    let mut globals = program(bin, "pg_dumpall");
    globals.arg("--globals-only");
    let mut streams = vec![(GLOBALS_FILE.to_string(), DeferredCommand::new(globals))];
    for database in databases {
        let mut dump = program(bin, "pg_dump");
        // By variable, not `-d`: a name with '=' in it would be read as connection settings.
        dump.arg("-Fc").env("PGDATABASE", database);
        streams.push((dump_file(database), DeferredCommand::new(dump)));
    }
    streams
}
