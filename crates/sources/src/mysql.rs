//! MariaDB and MySQL, logical: one `mariadb-dump` (or `mysqldump`) in a single transaction,
//! streamed. Connection settings are the tools' own (`~/.my.cnf`, `MYSQL_HOST`, ...) or an
//! option file given with `--defaults-extra-file`: passwords never go on a command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::DeferredCommand;
use crate::SourceError;

/// The file the dump is stored as.
pub const DUMP_FILE: &str = "mysql.sql";

/// The first of `names` found (in `bin`, else on PATH), else the first name as it is.
fn find_program(bin: Option<&Path>, names: &[&str]) -> PathBuf {
    let dirs: Vec<PathBuf> = match bin {
        Some(dir) => vec![dir.to_path_buf()],
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    };
    for name in names {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
    }
    PathBuf::from(names[0])
}

/// `mariadb-dump` where there is one, else `mysqldump`.
fn dump_program(bin: Option<&Path>) -> PathBuf {
    find_program(bin, &["mariadb-dump", "mysqldump"])
}

/// The client, `mariadb` or `mysql`, with the option file first if one is given.
fn client(bin: Option<&Path>, defaults_extra_file: Option<&Path>) -> Command {
    let mut client = Command::new(find_program(bin, &["mariadb", "mysql"]));
    with_defaults_file(&mut client, defaults_extra_file);
    client
}

fn with_defaults_file(command: &mut Command, defaults_extra_file: Option<&Path>) {
    if let Some(file) = defaults_extra_file {
        // It must come first.
        let mut arg = std::ffi::OsString::from("--defaults-extra-file=");
        arg.push(file);
        command.arg(arg);
    }
}

/// The databases on the server besides its own (`mysql`, `sys` and the schemas).
pub fn user_databases(
    bin: Option<&Path>,
    defaults_extra_file: Option<&Path>,
) -> Result<Vec<String>, SourceError> {
    let mut list = client(bin, defaults_extra_file);
    crate::command::without_lifeboat_variables(&mut list);
    list.args([
        "--batch",
        "--skip-column-names",
        "-e",
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN \
         ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
    ]);
    let program = list.get_program().to_string_lossy().into_owned();
    let out = list
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| SourceError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(SourceError::Failed {
            program,
            message: format!(
                "listing the databases failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The client reading a dump on its standard input, stopping at the first error.
pub fn restore_client(bin: Option<&Path>, defaults_extra_file: Option<&Path>) -> Command {
    client(bin, defaults_extra_file)
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
    with_defaults_file(&mut dump, defaults_extra_file);
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
