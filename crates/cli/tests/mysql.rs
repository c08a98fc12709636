//! `lifeboat mysql backup` against a real MariaDB server (started by the test) while a writer
//! keeps committing; the dump restores to one transaction's state.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::mariadb::MariaDb;
use common::Env;

const PASSWORD: &str = "pw-only-in-the-option-file";

#[test]
fn a_dump_taken_under_writes_restores_to_one_transaction_s_state() {
    let db = MariaDb::start();
    db.sql(&format!(
        "CREATE USER 'backup'@'localhost' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL ON *.* TO 'backup'@'localhost';
         CREATE DATABASE shop;
         CREATE TABLE shop.catalog(id INT PRIMARY KEY, name VARCHAR(64)) ENGINE=InnoDB;
         CREATE TABLE shop.orders(id INT PRIMARY KEY, payload VARCHAR(255)) ENGINE=InnoDB;
         CREATE TABLE shop.ledger(id INT PRIMARY KEY, order_id INT) ENGINE=InnoDB;"
    ));
    db.sql(
        "USE shop;
         INSERT INTO shop.catalog SELECT seq, CONCAT('item ', seq) FROM seq_1_to_2000;
         INSERT INTO shop.orders SELECT seq, REPEAT('x', 200) FROM seq_1_to_3000;
         INSERT INTO shop.ledger SELECT seq, seq FROM seq_1_to_3000;",
    );
    let catalog_sum = db.sql("CHECKSUM TABLE shop.catalog");

    // A writer: orders and their ledger lines, in the same transactions.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = Command::new("mariadb")
        .args(db.root_connection())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("writer");
    let mut to_writer = writer.stdin.take().expect("stdin");
    let feeding = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut next = 3001;
            while !stop.load(Ordering::SeqCst) {
                let tx = format!(
                    "START TRANSACTION; INSERT INTO shop.orders VALUES ({next}, REPEAT('y', 200)); \
                     INSERT INTO shop.ledger VALUES ({next}, {next}); COMMIT;\n"
                );
                if to_writer.write_all(tx.as_bytes()).is_err() {
                    break;
                }
                next += 1;
            }
        })
    };

    let env = Env::new();
    let options = env.path("backup.cnf");
    std::fs::write(
        &options,
        format!(
            "[client]\nuser=backup\npassword={PASSWORD}\nsocket={}\n",
            db.socket.display()
        ),
    )
    .expect("option file");
    std::fs::set_permissions(&options, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before: u64 = db
        .sql("SELECT count(*) FROM shop.orders")
        .parse()
        .expect("count");
    let run = env
        .lb(&[
            "mysql",
            "backup",
            "--database",
            "shop",
            "--defaults-extra-file",
            options.to_str().expect("utf-8"),
        ])
        .ok();
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    stop.store(true, Ordering::SeqCst);
    feeding.join().expect("feeder");
    let _ = writer.wait();
    let after: u64 = db
        .sql("SELECT count(*) FROM shop.orders")
        .parse()
        .expect("count");
    assert!(
        after > before,
        "the writer kept committing ({before} -> {after})"
    );

    // Restore into an empty server: refused while the database is still there, then the
    // dump recreates the database it names.
    let admin = env.path("admin.cnf");
    std::fs::write(
        &admin,
        format!("[client]\nuser=root\nsocket={}\n", db.socket.display()),
    )
    .expect("option file");
    let admin = admin.to_str().expect("utf-8");
    let refused = env.lb(&["mysql", "restore", "--defaults-extra-file", admin]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("already holds a database (shop)"),
        "{}",
        refused.stderr
    );
    db.sql("DROP DATABASE shop");
    env.lb(&["mysql", "restore", "latest", "--defaults-extra-file", admin])
        .ok();
    let orders: u64 = db
        .sql("SELECT count(*) FROM shop.orders")
        .parse()
        .expect("count");
    let ledger: u64 = db
        .sql("SELECT count(*) FROM shop.ledger")
        .parse()
        .expect("count");
    let highest: u64 = db
        .sql("SELECT max(id) FROM shop.orders")
        .parse()
        .expect("max");
    assert_eq!(orders, ledger, "an order without its ledger line");
    assert_eq!(highest, orders, "the commits are a prefix, without gaps");
    assert!(
        (before..=after).contains(&orders),
        "{before} <= {orders} <= {after}"
    );
    assert_eq!(db.sql("CHECKSUM TABLE shop.catalog"), catalog_sum);
    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    assert_eq!(listed[0]["source"], "mysql", "{listed}");
}

#[test]
fn a_failed_dump_or_a_bad_argument_leaves_no_snapshot() {
    let db = MariaDb::start();
    let env = Env::new();
    let options = env.path("root.cnf");
    std::fs::write(
        &options,
        format!("[client]\nuser=root\nsocket={}\n", db.socket.display()),
    )
    .expect("option file");
    let options = options.to_str().expect("utf-8");
    let failed = env.lb(&[
        "mysql",
        "backup",
        "--database",
        "nope",
        "--defaults-extra-file",
        options,
    ]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.stderr.contains("nope"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("no snapshot was written"),
        "{}",
        failed.stderr
    );
    for (args, says) in [
        (
            vec!["mysql", "backup", "--database=-x"],
            "not a database name",
        ),
        (
            vec![
                "mysql",
                "backup",
                "--defaults-extra-file",
                "/nonexistent.cnf",
            ],
            "no such file",
        ),
    ] {
        let r = env.lb(&args);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    assert_eq!(env.snapshot_count(), 0);
}
