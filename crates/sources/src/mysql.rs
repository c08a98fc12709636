//! MariaDB and MySQL, logical: one `mariadb-dump` (or `mysqldump`) in a single transaction,
//! streamed. Connection settings are the tools' own (`~/.my.cnf`, `MYSQL_HOST`, ...) or an
//! option file given with `--defaults-extra-file`: passwords never go on a command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::DeferredCommand;

/// The file the dump is stored as.
pub const DUMP_FILE: &str = "mysql.sql";

/// `mariadb-dump` where there is one (in `bin`, else on PATH), else `mysqldump`.
fn dump_program(bin: Option<&Path>) -> PathBuf {
    let dirs: Vec<PathBuf> = match bin {
        Some(dir) => vec![dir.to_path_buf()],
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    };
    for name in ["mariadb-dump", "mysqldump"] {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
    }
    PathBuf::from("mariadb-dump")
}

/// Whether `name` can be given to the dump tool as a database name (not read as an option).
pub fn valid_database_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('-') && !name.contains('\0')
}

/// The dump of `databases` (all of them when empty): InnoDB tables as of one moment
/// (`--single-transaction`), with routines, events and triggers, started when first read.
pub fn dump_stream(
    bin: Option<&Path>,
    defaults_extra_file: Option<&Path>,
    databases: &[String],
) -> DeferredCommand {
    let mut dump = Command::new(dump_program(bin));
    if let Some(file) = defaults_extra_file {
        // It must come first.
        let mut arg = std::ffi::OsString::from("--defaults-extra-file=");
        arg.push(file);
        dump.arg(arg);
    }
    dump.args([
        "--single-transaction",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
    ]);
    if databases.is_empty() {
        dump.arg("--all-databases");
    } else {
        dump.arg("--databases").args(databases);
    }
    DeferredCommand::new(dump)
}
