//! `lifeboat backup --command NAME -- CMD`: a dump command's output stored as one file, and a
//! failed dump never a snapshot.

mod common;

use common::Env;

#[test]
fn a_command_s_output_is_stored_as_one_file_with_its_own_chain() {
    let env = Env::new();
    let script =
        "i=0; while [ $i -lt 20000 ]; do echo \"INSERT INTO t VALUES ($i);\"; i=$((i+1)); done";
    let first = env
        .lb(&[
            "backup",
            "--command",
            "db.sql",
            "--json",
            "--",
            "sh",
            "-c",
            script,
        ])
        .ok()
        .json();
    let id = first["snapshot_id"]
        .as_str()
        .expect("a snapshot")
        .to_string();
    let dumped = env.lb(&["dump", "latest", "/db.sql"]).ok();
    let text = String::from_utf8(dumped.raw_stdout).expect("text");
    assert_eq!(text.lines().count(), 20000);
    assert!(text.ends_with("INSERT INTO t VALUES (19999);\n"));

    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    assert_eq!(listed[0]["source"], "command", "{listed}");
    assert_eq!(listed[0]["paths"][0], "/db.sql", "{listed}");

    // The next dump of the same name links to the first: the chain check can see a gap.
    let second = env
        .lb(&[
            "backup",
            "--command",
            "db.sql",
            "--json",
            "--",
            "sh",
            "-c",
            "echo changed",
        ])
        .ok()
        .json();
    let second_id = second["snapshot_id"].as_str().expect("a snapshot");
    let shown = env.lb(&["snapshots", "--json"]).ok().json();
    let newest = shown
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == second_id))
        .expect("second snapshot listed");
    assert_eq!(newest["previous"], id.as_str(), "{shown}");
    env.lb(&["check", "--read-data"]).ok();
}

#[test]
fn a_command_that_fails_or_is_killed_leaves_no_snapshot() {
    let env = Env::new();
    let failed = env.lb(&[
        "backup",
        "--command",
        "db.sql",
        "--",
        "sh",
        "-c",
        "echo 'CREATE TABLE t;'; echo 'pg_dump: error: connection to server failed' >&2; exit 3",
    ]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("exit status: 3"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("connection to server failed"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("no snapshot was written"),
        "{}",
        failed.stderr
    );
    assert_eq!(env.snapshot_count(), 0);

    let killed = env.lb(&[
        "backup",
        "--command",
        "db.sql",
        "--",
        "sh",
        "-c",
        "echo partial; kill -9 $$",
    ]);
    assert_eq!(killed.code, 1, "{}", killed.stderr);
    assert!(killed.stderr.contains("signal: 9"), "{}", killed.stderr);
    assert_eq!(env.snapshot_count(), 0);

    let missing = env.lb(&[
        "backup",
        "--command",
        "db.sql",
        "--",
        "/nonexistent/pg_dump",
    ]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("cannot start `/nonexistent/pg_dump`"),
        "{}",
        missing.stderr
    );
    assert_eq!(env.snapshot_count(), 0);
    // What the failed runs stored is unreferenced, and the repository is whole.
    env.lb(&["check"]).ok();
}

#[test]
fn command_arguments_are_checked_before_anything_runs() {
    let env = Env::new();
    let marker = env.path("ran");
    let touch = format!("touch {}", marker.display());
    let cases: [(&[&str], &str); 4] = [
        (
            &["backup", "--command", "x.sql"],
            "needs the command after `--`",
        ),
        (
            &["backup", "--", "sh", "-c", &touch],
            "needs --command NAME",
        ),
        (
            &[
                "backup",
                "--command",
                "x.sql",
                "--stdin",
                "--",
                "sh",
                "-c",
                &touch,
            ],
            "exclude each other",
        ),
        (
            &["backup", "--command", "../x.sql", "--", "sh", "-c", &touch],
            "plain file name",
        ),
    ];
    for (args, says) in cases {
        let r = env.lb(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    let r = env.lb(&[
        "backup",
        "--command",
        "x.sql",
        "--time",
        "not a time",
        "--",
        "sh",
        "-c",
        &touch,
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        !marker.exists(),
        "a bad argument must stop the backup before the command runs"
    );
    assert_eq!(env.snapshot_count(), 0);
}
