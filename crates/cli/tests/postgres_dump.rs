//! A PostgreSQL database dumped through `backup --command` (a real server, started by the
//! test), restored with `pg_restore`; a dump that fails leaves no snapshot.

mod common;

use std::process::Command;

use common::postgres::{bin, Postgres};
use common::Env;

#[test]
fn pg_dump_through_a_command_source_restores_with_pg_restore() {
    let pg = Postgres::start();
    pg.sql("postgres", "CREATE DATABASE shop");
    pg.sql(
        "shop",
        "CREATE TABLE orders(id int PRIMARY KEY, item text NOT NULL);
         INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 5000) g;",
    );
    let env = Env::new();
    let pg_dump = bin("pg_dump").display().to_string();
    let mut args: Vec<String> = ["backup", "--command", "shop.dump", "--", &pg_dump, "-Fc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(pg.connection());
    args.push("shop".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.lb(&args).ok();
    // Written after the dump: not in it.
    pg.sql(
        "shop",
        "INSERT INTO orders SELECT g, 'late' FROM generate_series(5001, 6000) g",
    );

    pg_restore_into(&pg, &env, "/shop.dump", "restored");
    assert_eq!(
        pg.sql("restored", "SELECT count(*), sum(id) FROM orders"),
        "5000|12502500"
    );

    // A database that does not exist: pg_dump fails, and so does the backup.
    let mut args: Vec<String> = ["backup", "--command", "nope.dump", "--", &pg_dump, "-Fc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(pg.connection());
    args.push("nope".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let failed = env.lb(&args);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("\"nope\" does not exist"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("no snapshot was written"),
        "{}",
        failed.stderr
    );
    assert_eq!(env.snapshot_count(), 1);
}

/// Restores a stored dump into a new, empty database (the file must be a pg_dump -Fc dump).
fn pg_restore_into(pg: &Postgres, env: &Env, file: &str, database: &str) {
    pg.sql("postgres", &format!("CREATE DATABASE {database}"));
    let dump = env.lb(&["dump", "latest", file]).ok().raw_stdout;
    assert!(dump.starts_with(b"PGDMP"), "{file}: a custom-format dump");
    common::feed(
        Command::new(bin("pg_restore"))
            .args(pg.connection())
            .args(["-d", database, "--no-owner"]),
        &dump,
    );
}

#[test]
fn pg_backup_logical_stores_every_database_and_the_globals_in_one_snapshot() {
    let pg = Postgres::start();
    pg.sql("postgres", "CREATE ROLE reporting LOGIN");
    for (db, rows) in [("shop", 3000), ("crm", 700)] {
        pg.sql("postgres", &format!("CREATE DATABASE {db}"));
        pg.sql(
            db,
            &format!(
                "CREATE TABLE t(id int PRIMARY KEY, v text);
                 INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;"
            ),
        );
    }
    let env = Env::new();
    let pg_bin = bin("pg_dump")
        .parent()
        .expect("bin dir")
        .display()
        .to_string();
    let logical = |extra: &[&str]| {
        let mut cmd = env.command();
        cmd.args(["pg", "backup", "--logical", "--json", "--pg-bin", &pg_bin])
            .args(extra)
            .env("PGHOST", &pg.socket_dir)
            .env("PGPORT", pg.port.to_string())
            .env("PGUSER", "postgres");
        common::Run::from_output(cmd.output().expect("run lifeboat"))
    };
    logical(&[]).ok();
    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    assert_eq!(listed[0]["source"], "postgres", "{listed}");
    let paths: Vec<&str> = listed[0]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/crm.dump", "/globals.sql", "/postgres.dump", "/shop.dump"],
        "every database that accepts connections, and the globals"
    );
    let globals = env.lb(&["dump", "latest", "/globals.sql"]).ok().stdout;
    assert!(globals.contains("CREATE ROLE reporting"), "{globals}");
    pg_restore_into(&pg, &env, "/shop.dump", "shop_restored");
    assert_eq!(pg.sql("shop_restored", "SELECT count(*) FROM t"), "3000");

    // `pg restore --logical` creates the database and feeds pg_restore; never into one that
    // exists.
    let restore = |into: &str| {
        let mut cmd = env.command();
        cmd.args([
            "pg",
            "restore",
            "--logical",
            "--database",
            "crm",
            "--into",
            into,
        ])
        .args(["--pg-bin", &pg_bin])
        .env("PGHOST", &pg.socket_dir)
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", "postgres");
        common::Run::from_output(cmd.output().expect("run lifeboat"))
    };
    restore("crm restored").ok();
    assert_eq!(pg.sql("crm restored", "SELECT count(*) FROM t"), "700");
    let refused = restore("shop");
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("already exists"),
        "{}",
        refused.stderr
    );
    assert_eq!(pg.sql("shop", "SELECT count(*) FROM t"), "3000");

    // A named database that does not exist fails the whole backup: no partial snapshot.
    let failed = logical(&["--database", "shop", "--database", "nope"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.stderr.contains("nope.dump"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("no snapshot was written"),
        "{}",
        failed.stderr
    );
    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    assert_eq!(listed.as_array().map(|a| a.len()), Some(1), "{listed}");
}
