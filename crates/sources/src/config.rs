//! Sources named in the configuration file, so that `lifeboat backup --source NAME` (and the
//! daemon, later) run the same definitions the commands take as arguments:
//!
//! ```toml
//! [sources.app]
//! kind = "files"
//! paths = ["/srv/app"]
//! exclude = ["*.log"]
//! tags = ["app"]
//!
//! [sources.shop]
//! kind = "postgres"            # a base backup; `logical = true` for pg_dump
//! env = { PGHOST = "/run/postgresql", PGUSER = "backup" }
//! ```
//!
//! Every source takes `tags`, `host` and `env` (variables for its tools, never passwords:
//! those go in the tools' own files, PGPASSFILE or an option file). Unknown settings are
//! errors, so a typo never silently changes what is backed up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// What a source backs up, by kind.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceKind {
    Files {
        paths: Vec<PathBuf>,
        #[serde(default)]
        exclude: Vec<String>,
        #[serde(default)]
        one_file_system: bool,
    },
    /// A command's standard output stored as `/NAME`.
    Command { name: String, command: Vec<String> },
    Sqlite {
        database: PathBuf,
        name: Option<String>,
    },
    Postgres {
        #[serde(default)]
        logical: bool,
        #[serde(default)]
        databases: Vec<String>,
        pg_bin: Option<PathBuf>,
        #[serde(default)]
        spread_checkpoint: bool,
        /// `fetch` (the default: the backup's WAL in it) or `none` (from the archive).
        wal_method: Option<String>,
    },
    Mysql {
        #[serde(default)]
        databases: Vec<String>,
        defaults_extra_file: Option<PathBuf>,
        mysql_bin: Option<PathBuf>,
    },
}

/// One named source of the configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceDefinition {
    pub name: String,
    pub kind: SourceKind,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub sources: BTreeMap<String, SourceDefinition>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let mut top: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let sources = match top.remove("sources") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err("`sources` must be a table: [sources.NAME]".into()),
        };
        if let Some(unknown) = top.keys().next() {
            return Err(format!(
                "unknown setting `{unknown}` (the file holds [sources.NAME] tables)"
            ));
        }
        let mut config = Config::default();
        for (name, value) in sources {
            let toml::Value::Table(table) = value else {
                return Err(format!("sources.{name} must be a table"));
            };
            let source = parse_source(&name, table).map_err(|e| format!("sources.{name}: {e}"))?;
            config.sources.insert(name, source);
        }
        Ok(config)
    }

    pub fn source(&self, name: &str) -> Option<&SourceDefinition> {
        self.sources.get(name)
    }
}

/// Whether `name` can name a source: letters, digits, `-` and `_`.
fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn take<T: for<'de> Deserialize<'de>>(
    table: &mut toml::Table,
    key: &str,
) -> Result<Option<T>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(value) => value
            .try_into()
            .map(Some)
            .map_err(|e: toml::de::Error| format!("`{key}`: {}", e.message())),
    }
}

fn parse_source(name: &str, mut table: toml::Table) -> Result<SourceDefinition, String> {
    if !valid_source_name(name) {
        return Err("a source's name is letters, digits, `-` and `_`".into());
    }
    let tags = take(&mut table, "tags")?.unwrap_or_default();
    let host = take(&mut table, "host")?;
    let env: BTreeMap<String, String> = take(&mut table, "env")?.unwrap_or_default();
    for key in env.keys() {
        check_variable(key)?;
    }
    if !table.contains_key("kind") {
        return Err("no `kind`: one of files, command, sqlite, postgres, mysql".into());
    }
    let kind: SourceKind = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    check_kind(&kind)?;
    Ok(SourceDefinition {
        name: name.to_string(),
        kind,
        tags,
        host,
        env,
    })
}

/// Variables for the source's tools: never a password (it would sit in a file that is not
/// the tool's own, and reach every process the tool starts), never lifeboat's own.
fn check_variable(key: &str) -> Result<(), String> {
    let upper = key.to_ascii_uppercase();
    if upper.contains("PASSWORD") || upper.contains("PWD") || upper.contains("SECRET") {
        return Err(format!(
            "env {key}: passwords do not belong in the configuration file; use the tool's own \
             (PGPASSFILE, an option file for MariaDB)"
        ));
    }
    if upper.starts_with("LIFEBOAT_") {
        return Err(format!(
            "env {key}: lifeboat's own settings are not a source's"
        ));
    }
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(format!("env {key:?} is not a variable name"));
    }
    Ok(())
}

fn check_kind(kind: &SourceKind) -> Result<(), String> {
    match kind {
        SourceKind::Files { paths, .. } if paths.is_empty() => {
            Err("`paths` names nothing to back up".into())
        }
        SourceKind::Command { command, .. } if command.is_empty() => {
            Err("`command` is empty: give the program and its arguments as a list".into())
        }
        SourceKind::Postgres {
            logical: false,
            databases,
            ..
        } if !databases.is_empty() => {
            Err("`databases` is for logical backups (`logical = true`); a base backup holds the whole cluster".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[sources.app]
kind = "files"
paths = ["/srv/app"]
exclude = ["*.log"]
tags = ["app"]

[sources.shop]
kind = "postgres"
env = { PGHOST = "/run/postgresql", PGUSER = "backup" }

[sources.shop-logical]
kind = "postgres"
logical = true
databases = ["shop"]

[sources.mongo]
kind = "command"
name = "mongo.archive"
command = ["mongodump", "--archive"]
host = "db1"
"#;

    #[test]
    fn reads_every_kind_with_its_common_settings() {
        let config = Config::parse(EXAMPLE).expect("parses");
        assert_eq!(config.sources.len(), 4);
        let app = config.source("app").expect("app");
        assert_eq!(app.tags, ["app"]);
        assert!(matches!(&app.kind, SourceKind::Files { exclude, .. } if exclude == &["*.log"]));
        let shop = config.source("shop").expect("shop");
        assert_eq!(shop.env["PGUSER"], "backup");
        assert!(matches!(
            shop.kind,
            SourceKind::Postgres { logical: false, .. }
        ));
        let mongo = config.source("mongo").expect("mongo");
        assert_eq!(mongo.host.as_deref(), Some("db1"));
    }

    #[test]
    fn mistakes_are_errors_that_name_the_source() {
        for (text, expected) in [
            (
                "[sources.a]\nkind = \"files\"\npath = [\"/x\"]\n",
                "sources.a",
            ),
            ("[sources.a]\nkind = \"tape\"\n", "tape"),
            ("[sources.a]\npaths = [\"/x\"]\n", "no `kind`"),
            (
                "[sources.a]\nkind = \"files\"\npaths = []\n",
                "names nothing",
            ),
            (
                "[sources.a]\nkind = \"mysql\"\nenv = { MYSQL_PWD = \"x\" }\n",
                "passwords",
            ),
            (
                "[sources.a]\nkind = \"mysql\"\nenv = { LIFEBOAT_PASSWORD = \"x\" }\n",
                "passwords",
            ),
            ("[sources.\"a b\"]\nkind = \"mysql\"\n", "name"),
            ("[source.a]\nkind = \"mysql\"\n", "unknown setting `source`"),
            (
                "[sources.a]\nkind = \"postgres\"\ndatabases = [\"x\"]\n",
                "logical",
            ),
            ("[sources.a\nkind = 1", "expected"),
        ] {
            let err = Config::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
