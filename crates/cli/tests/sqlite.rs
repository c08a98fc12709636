//! `lifeboat sqlite backup|restore` against a database that a writer keeps committing to.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use common::Env;
use rusqlite::Connection;

/// Orders and their ledger lines, written in the same transactions: a copy that is not one
/// transaction's state would show an order without its line, or the reverse.
fn create(db: &std::path::Path, seed_rows: i64) -> Connection {
    let conn = Connection::open(db).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE orders(id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
         CREATE TABLE ledger(id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL);",
    )
    .expect("schema");
    let tx = conn.unchecked_transaction().expect("tx");
    for i in 0..seed_rows {
        tx.execute(
            "INSERT INTO orders(id, payload) VALUES (?1, randomblob(4096))",
            [i],
        )
        .expect("order");
        tx.execute("INSERT INTO ledger(id, order_id) VALUES (?1, ?1)", [i])
            .expect("ledger");
    }
    tx.commit().expect("commit");
    conn
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

#[test]
fn a_database_written_during_the_backup_restores_to_one_commit_s_state() {
    let env = Env::new();
    let db = env.path("app.db");
    let seed = 4000;
    let conn = create(&db, seed);
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicI64::new(seed));
    let writer = {
        let (stop, committed) = (stop.clone(), committed.clone());
        std::thread::spawn(move || {
            let mut next = seed;
            while !stop.load(Ordering::SeqCst) {
                let tx = conn.unchecked_transaction().expect("tx");
                tx.execute(
                    "INSERT INTO orders(id, payload) VALUES (?1, randomblob(4096))",
                    [next],
                )
                .expect("order");
                tx.execute("INSERT INTO ledger(id, order_id) VALUES (?1, ?1)", [next])
                    .expect("ledger");
                tx.commit().expect("commit");
                next += 1;
                committed.store(next, Ordering::SeqCst);
            }
        })
    };
    while committed.load(Ordering::SeqCst) < seed + 50 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before = committed.load(Ordering::SeqCst);
    let backed_up = env
        .lb(&["sqlite", "backup", db.to_str().expect("utf-8"), "--json"])
        .ok()
        .json();
    let after = committed.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    assert!(backed_up["snapshot_id"].is_string(), "{backed_up}");
    assert!(
        after > before,
        "the writer kept committing during the backup"
    );

    let restored = env.path("restored.db");
    env.lb(&[
        "sqlite",
        "restore",
        "latest",
        "--to",
        restored.to_str().expect("utf-8"),
    ])
    .ok();
    let back = Connection::open(&restored).expect("open restored");
    let verdict: String = back
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(verdict, "ok");
    let (orders, ledger) = (count(&back, "orders"), count(&back, "ledger"));
    assert_eq!(orders, ledger, "an order without its ledger line");
    let highest: i64 = back
        .query_row("SELECT max(id) FROM orders", [], |r| r.get(0))
        .expect("max");
    assert_eq!(
        highest + 1,
        orders,
        "the commits are a prefix, without gaps"
    );
    assert!(
        (before..=after).contains(&orders),
        "{orders} rows: the copy must hold every commit made before the backup ({before}) and none after it ended ({after})"
    );

    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    assert_eq!(listed[0]["source"], "sqlite", "{listed}");
    assert_eq!(listed[0]["paths"][0], "/app.db", "{listed}");
}

#[test]
fn restores_never_replace_a_file_and_bad_sources_leave_no_snapshot() {
    let env = Env::new();
    let db = env.path("small.db");
    drop(create(&db, 10));
    let db_arg = db.to_str().expect("utf-8");
    env.lb(&["sqlite", "backup", db_arg, "--name", "shop.db"])
        .ok();

    // An existing file is refused, and left as it was.
    let existing = env.path("existing.db");
    std::fs::write(&existing, b"keep me").expect("write");
    let r = env.lb(&[
        "sqlite",
        "restore",
        "latest",
        "--to",
        existing.to_str().expect("utf-8"),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read(&existing).expect("read"), b"keep me");
    // With --overwrite it is replaced by the checked database.
    env.lb(&[
        "sqlite",
        "restore",
        "latest",
        "--to",
        existing.to_str().expect("utf-8"),
        "--overwrite",
    ])
    .ok();
    let back = Connection::open(&existing).expect("open");
    assert_eq!(count(&back, "orders"), 10);

    // Not a database, or no file at all: an error, and still one snapshot.
    let text = env.path("notes.txt");
    std::fs::write(
        &text,
        "these are notes, not a database, and long enough to tell",
    )
    .expect("write");
    let missing = env.path("missing.db");
    for (path, says) in [
        (text.as_path(), "not a SQLite database"),
        (missing.as_path(), "missing.db"),
    ] {
        let r = env.lb(&["sqlite", "backup", path.to_str().expect("utf-8")]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    assert_eq!(listed.as_array().map(|a| a.len()), Some(1), "{listed}");

    // A snapshot of files is no database to restore.
    let dir = env.path("files");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("a"), b"a").expect("write");
    let files = env.backup(&dir, &[]);
    let r = env.lb(&[
        "sqlite",
        "restore",
        &files,
        "--to",
        env.path("x.db").to_str().expect("utf-8"),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not a sqlite one"), "{}", r.stderr);
}
