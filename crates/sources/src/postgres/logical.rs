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
    let listed = super::psql::query(
        bin,
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
    )?;
    Ok(listed
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

/// `createdb` of a new database `name` (it fails if the database exists).
pub fn create_database(bin: Option<&Path>, name: &str) -> std::process::Command {
    let mut createdb = program(bin, "createdb");
    createdb.args(["--maintenance-db=postgres", "--"]).arg(name);
    createdb
}

/// `pg_restore` of a custom-format dump read on its standard input into `database`.
pub fn restore_dump(bin: Option<&Path>, database: &str) -> std::process::Command {
    let mut restore = program(bin, "pg_restore");
    restore.arg("--dbname").arg(conninfo_dbname(database));
    restore
}

/// A connection string naming `database`, so that a name with `=` in it is not read as
/// connection settings.
fn conninfo_dbname(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_quoted_as_connection_strings() {
        assert_eq!(conninfo_dbname("shop"), "dbname='shop'");
        assert_eq!(
            conninfo_dbname(r"o'brien host=evil \x"),
            r"dbname='o\'brien host=evil \\x'"
        );
    }
}
