//! Secrets stay where they belong: the repository password never reaches the arguments or the
//! environment of the database tools lifeboat starts (real pg_dump, pg_dumpall, psql and
//! mariadb-dump against real servers, each behind a wrapper script that records what it was
//! given before it execs the real program), nor lifeboat's own output; a database password
//! reaches its tool only through the option file it was given.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::mariadb::MariaDb;
use common::postgres::{bin, Postgres};
use common::{Env, PASSWORD};

/// A directory of wrappers: each `name` appends its arguments and environment to `log`, then
/// execs `real(name)`.
fn recording_wrappers(dir: &Path, log: &Path, programs: &[(&str, PathBuf)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, real) in programs {
        let script = format!(
            "#!/bin/sh\n{{ printf 'ARGV %s' '{name}'; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; \
             printf '\\n'; env; echo ---; }} >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        );
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// What the wrappers recorded; fails unless every program in `expected` ran.
#[track_caller]
fn recorded(log: &Path, expected: &[&str]) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for name in expected {
        assert!(
            text.contains(&format!("ARGV {name}")),
            "{name} never ran through its wrapper:\n{text}"
        );
    }
    text
}

#[track_caller]
fn assert_secret_absent(text: &str, secret: &str, what: &str) {
    assert!(
        !text.contains(secret),
        "{what} holds the secret {secret:?}:\n{text}"
    );
}

#[test]
fn pg_tools_see_neither_the_repository_password_nor_lifeboat_s_variables() {
    let pg = Postgres::start();
    pg.sql("postgres", "CREATE DATABASE shop");
    pg.sql("shop", "CREATE TABLE t(id int); INSERT INTO t VALUES (1)");
    let env = Env::new();
    let log = env.path("pg-tools.log");
    let wrappers = env.path("pg-bin");
    let programs: Vec<(&str, PathBuf)> = ["pg_dump", "pg_dumpall", "psql"]
        .iter()
        .map(|name| (*name, bin(name)))
        .collect();
    recording_wrappers(&wrappers, &log, &programs);
    let mut cmd = env.command();
    cmd.args(["pg", "backup", "--logical", "--pg-bin"])
        .arg(&wrappers)
        .envs(pg.libpq_env())
        .env(
            "LIFEBOAT_KEY_FILE_FOR_THE_TEST",
            "set to see it is not passed on",
        );
    let run = common::Run::from_output(cmd.output().expect("run lifeboat")).ok();
    let seen = recorded(&log, &["pg_dump", "pg_dumpall", "psql"]);
    assert_secret_absent(&seen, PASSWORD, "the pg tools' arguments or environment");
    assert_secret_absent(&seen, "LIFEBOAT_", "the pg tools' environment");
    assert!(
        seen.contains("PGHOST="),
        "the libpq settings do reach them:\n{seen}"
    );
    assert_secret_absent(&run.stdout, PASSWORD, "lifeboat's output");
    assert_secret_absent(&run.stderr, PASSWORD, "lifeboat's errors");
}

#[test]
fn mariadb_dump_gets_its_password_from_the_option_file_only() {
    const DB_PASSWORD: &str = "db-secret-in-the-option-file";
    let db = MariaDb::start();
    db.sql(&format!(
        "CREATE USER 'backup'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';
         GRANT ALL ON *.* TO 'backup'@'localhost';
         CREATE DATABASE shop; CREATE TABLE shop.t(id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1);"
    ));
    let env = Env::new();
    let options = env.path("backup.cnf");
    std::fs::write(
        &options,
        format!(
            "[client]\nuser=backup\npassword={DB_PASSWORD}\nsocket={}\n",
            db.socket.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&options, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = env.path("mysql-tools.log");
    let wrappers = env.path("mysql-bin");
    let real = ["/usr/bin/mariadb-dump", "/usr/bin/mysqldump"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("mariadb-dump (the mariadb-client package, which .ci/run installs)");
    recording_wrappers(&wrappers, &log, &[("mariadb-dump", real)]);
    let run = env
        .lb(&[
            "mysql",
            "backup",
            "--database",
            "shop",
            "--mysql-bin",
            wrappers.to_str().unwrap(),
            "--defaults-extra-file",
            options.to_str().unwrap(),
        ])
        .ok();
    let seen = recorded(&log, &["mariadb-dump"]);
    assert_secret_absent(
        &seen,
        DB_PASSWORD,
        "mariadb-dump's arguments or environment",
    );
    assert_secret_absent(&seen, PASSWORD, "mariadb-dump's arguments or environment");
    assert_secret_absent(&seen, "LIFEBOAT_", "mariadb-dump's environment");
    assert!(
        seen.contains(&format!("--defaults-extra-file={}", options.display())),
        "the option file is how the password reaches it:\n{seen}"
    );
    for out in [&run.stdout, &run.stderr] {
        assert_secret_absent(out, DB_PASSWORD, "lifeboat's output");
        assert_secret_absent(out, PASSWORD, "lifeboat's output");
    }
}

#[test]
fn a_wrong_password_is_never_echoed() {
    let env = Env::new();
    let attempt = "wrong-password-that-must-not-be-printed";
    for args in [&["snapshots"][..], &["check"], &["backup", "/nonexistent"]] {
        let out = env
            .command()
            .env("LIFEBOAT_PASSWORD", attempt)
            .args(args)
            .output()
            .expect("run lifeboat");
        let run = common::Run::from_output(out);
        assert_eq!(run.code, 11, "{args:?}: {}", run.stderr);
        assert_secret_absent(&run.stdout, attempt, "stdout");
        assert_secret_absent(&run.stderr, attempt, "stderr");
    }
}
