//! PostgreSQL point-in-time recovery against a real server started by the test: WAL archived
//! through `archive_command = 'lifeboat pg wal-push %p'`, base backups streamed from
//! pg_basebackup while pgbench writes, and restores to a time, to a WAL position and to the
//! end of the archive, each started as a server of its own and checked row by row.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::postgres::{as_user, bin, give_to, server_user, Postgres, ServerOptions};
use common::{binary, Run, PASSWORD};

/// A repository, a spool and a copy of the lifeboat binary that the server's user can use
/// (the build directory may be closed to it).
struct Archive {
    dir: tempfile::TempDir,
    user: Option<nix::unistd::User>,
}

impl Archive {
    fn new() -> Archive {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive {
            dir,
            user: server_user(),
        };
        for sub in ["bin", "home", "spool"] {
            std::fs::create_dir(archive.path(sub)).expect("mkdir");
        }
        std::fs::copy(binary(), archive.lifeboat()).expect("copy lifeboat");
        for path in [archive.dir.path().to_path_buf(), archive.path("bin")] {
            std::fs::set_permissions(&path, PermissionsExt::from_mode(0o755)).expect("chmod");
        }
        for path in [
            archive.dir.path().to_path_buf(),
            archive.path("home"),
            archive.path("spool"),
        ] {
            give_to(&path, &archive.user);
        }
        archive
            .lb(
                None,
                &["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"],
            )
            .ok();
        archive
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn lifeboat(&self) -> PathBuf {
        self.path("bin/lifeboat")
    }

    /// What the server and every lifeboat run get: the repository, its password, the spool.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.path("home").display().to_string()),
            (
                "LIFEBOAT_REPOSITORY".into(),
                self.path("repo").display().to_string(),
            ),
            ("LIFEBOAT_PASSWORD".into(), PASSWORD.into()),
            (
                "LIFEBOAT_PG_SPOOL".into(),
                self.path("spool").display().to_string(),
            ),
            ("LIFEBOAT_PG_PUSHER_IDLE".into(), "1".into()),
            (
                "LIFEBOAT_PG_BIN".into(),
                bin("psql").parent().expect("bin dir").display().to_string(),
            ),
        ]
    }

    fn server_options(&self) -> ServerOptions {
        ServerOptions {
            settings: vec![
                ("archive_mode".into(), "on".into()),
                (
                    "archive_command".into(),
                    format!("{} pg wal-push %p", self.lifeboat().display()),
                ),
            ],
            env: self.env(),
        }
    }

    /// Runs lifeboat as the server's user, pointed at `pg` if given.
    fn lb(&self, pg: Option<&Postgres>, args: &[&str]) -> Run {
        self.lb_as(&self.user, pg, args)
    }

    /// [`Archive::lb`] as `user` (None: as the test itself, root when the server's user is
    /// `postgres`).
    fn lb_as(&self, user: &Option<nix::unistd::User>, pg: Option<&Postgres>, args: &[&str]) -> Run {
        let mut command = Command::new(self.lifeboat());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env())
            .args(args)
            .current_dir(self.dir.path());
        if let Some(pg) = pg {
            command.envs(pg.libpq_env());
        }
        as_user(&mut command, user);
        Run::from_output(common::output_of_copied_binary(&mut command))
    }

    /// Forces the current segment out and waits until the pusher has stored everything the
    /// server archived.
    fn wait_archived(&self, pg: &Postgres) {
        let segment = pg.sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let archived = pg.sql(
                "postgres",
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            );
            let status = self.lb(None, &["pg", "status", "--json"]);
            let spooled = status.json()["spooled_files"].as_u64();
            if archived.as_str() >= segment.as_str() && spooled == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "WAL up to {segment} not archived within 60 s (archiver at {archived:?}, spool \
                 holds {spooled:?}); server log:\n{}",
                pg.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Restores into a new data directory and starts a server on it (no archiving).
    fn restore(&self, name: &str, target: &[&str]) -> (Postgres, serde_json::Value) {
        self.restore_by(&self.user, name, target)
    }

    /// [`Archive::restore`], run by `user` (the server still runs as its own user).
    fn restore_by(
        &self,
        user: &Option<nix::unistd::User>,
        name: &str,
        target: &[&str],
    ) -> (Postgres, serde_json::Value) {
        let data = self.path(name);
        let mut args = vec!["--json", "pg", "restore", "--no-archive", "--pgdata"];
        let data_arg = data.display().to_string();
        args.push(&data_arg);
        args.extend_from_slice(target);
        let summary = self.lb_as(user, None, &args).ok().json();
        assert!(data.join("recovery.signal").exists());
        let server = Postgres::start_on(&data, &ServerOptions::default());
        (server, summary)
    }
}

/// Waits until `pg` has left recovery (promoted at its target or at the end of the WAL).
fn wait_promoted(pg: &Postgres) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.sql("postgres", "SELECT pg_is_in_recovery()") != "f" {
        assert!(
            Instant::now() < deadline,
            "the restored server did not finish recovery within 60 s:\n{}",
            pg.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn phases(pg: &Postgres) -> String {
    pg.sql(
        "postgres",
        "SELECT count(*) FILTER (WHERE phase = 'base') || '|' || \
                count(*) FILTER (WHERE phase = 't1') || '|' || \
                count(*) FILTER (WHERE phase = 't2') FROM marks",
    )
}

fn insert(pg: &Postgres, phase: &str) {
    pg.sql(
        "postgres",
        &format!("INSERT INTO marks SELECT g, '{phase}' FROM generate_series(1, 100) g"),
    );
}

fn pgbench(pg: &Postgres, args: &[&str]) -> Command {
    let mut command = Command::new(bin("pgbench"));
    command.args(pg.connection()).args(args).arg("postgres");
    command
}

/// pgbench's invariant: every change to an account balance is one history row.
const PGBENCH_STATE: &str = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || '|' || \
     (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)";

#[test]
fn archived_wal_restores_to_a_time_a_position_and_the_end() {
    let archive = Archive::new();
    let pg = Postgres::start_with(&archive.server_options());
    pg.sql("postgres", "CREATE TABLE marks(id int, phase text)");
    insert(&pg, "base");
    let init = pgbench(&pg, &["-i", "-s", "2", "-q"])
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    // The first base backup is taken while pgbench writes.
    let mut writer = pgbench(&pg, &["-n", "-c", "2", "-T", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start pgbench");
    std::thread::sleep(Duration::from_millis(500));
    let first = archive
        .lb(Some(&pg), &["--json", "pg", "backup"])
        .ok()
        .json();
    assert!(writer.wait().expect("pgbench").success());
    let first_id = first["snapshot_id"]
        .as_str()
        .expect("snapshot id")
        .to_string();
    let bench_state = pg.sql("postgres", PGBENCH_STATE);

    insert(&pg, "t1");
    let t1_lsn = pg.sql("postgres", "SELECT pg_current_wal_lsn()");
    std::thread::sleep(Duration::from_millis(1100));
    let target_time = pg.sql("postgres", "SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    insert(&pg, "t2");
    // A second base backup, after the targets: a restore to them must not choose it.
    let second = archive
        .lb(Some(&pg), &["--json", "pg", "backup"])
        .ok()
        .json();
    let second_id = second["snapshot_id"]
        .as_str()
        .expect("snapshot id")
        .to_string();
    archive.wait_archived(&pg);

    let status = archive
        .lb(Some(&pg), &["pg", "status", "--json"])
        .ok()
        .json();
    assert_eq!(status["lag_segments"], 0, "{status}");
    assert!(status["server_segment"].is_string(), "{status}");
    let local = archive
        .lb(Some(&pg), &["pg", "status", "--local", "--json"])
        .ok()
        .json();
    assert_eq!(local["lag_segments"], 0, "{local}");
    assert_eq!(
        local["last_pushed"], status["newest_archived_segment"],
        "{local}"
    );
    assert!(local.get("base_backups").is_none(), "{local}");
    let backups = status["base_backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 2, "{status}");
    assert!(backups.iter().all(|b| b["restorable"] == true), "{status}");
    assert_eq!(status["spooled_files"], 0);

    // To the time between T1 and T2: exactly the T1 state.
    let (at_time, summary) = archive.restore("at-time", &["--target-time", &target_time]);
    assert_eq!(summary["base_backup"], first_id.as_str(), "{summary}");
    wait_promoted(&at_time);
    assert_eq!(phases(&at_time), "100|100|0");
    assert_eq!(at_time.sql("postgres", PGBENCH_STATE), bench_state);
    drop(at_time);

    // To the WAL position after T1, paused there: read-only, still in recovery. Restored by
    // root (when the tests run as root): the files must still belong to the server's user.
    let (at_lsn, summary) = archive.restore_by(
        &None,
        "at-lsn",
        &["--target-lsn", &t1_lsn, "--target-action", "pause"],
    );
    assert_eq!(summary["base_backup"], first_id.as_str(), "{summary}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_lsn.sql("postgres", "SELECT pg_get_wal_replay_pause_state()") != "paused" {
        assert!(Instant::now() < deadline, "not paused:\n{}", at_lsn.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(phases(&at_lsn), "100|100|0");
    assert_eq!(at_lsn.sql("postgres", "SELECT pg_is_in_recovery()"), "t");
    drop(at_lsn);

    // The end of the archive: every committed row, from the newest base backup.
    let (latest, summary) = archive.restore("latest", &["--latest"]);
    assert_eq!(summary["base_backup"], second_id.as_str(), "{summary}");
    wait_promoted(&latest);
    assert_eq!(phases(&latest), "100|100|100");
    assert_eq!(latest.sql("postgres", PGBENCH_STATE), bench_state);
    let (balances, history) = bench_state.split_once('|').expect("state");
    assert_eq!(
        Some(balances),
        history.split_once('/').map(|(_, sum)| sum),
        "pgbench's invariant"
    );
    drop(latest);

    // Once the first base backup is forgotten, the WAL before the second one's start is
    // expired; the end of the archive still restores, the time only the first served no more.
    archive.lb(None, &["forget", &first_id]).ok();
    let dry = archive
        .lb(None, &["--json", "pg", "expire", "--dry-run"])
        .ok()
        .json();
    let expired = dry["expired"].as_array().expect("expired").len();
    assert!(expired >= 1, "{dry}");
    archive.lb(None, &["pg", "expire"]).ok();
    archive.lb(None, &["prune"]).ok();
    let status = archive.lb(None, &["pg", "status", "--json"]).ok().json();
    assert_eq!(status["base_backups"][0]["restorable"], true, "{status}");
    let (again, _) = archive.restore("after-expire", &["--latest"]);
    wait_promoted(&again);
    assert_eq!(phases(&again), "100|100|100");
    let data = archive.path("too-early").display().to_string();
    let refused = archive.lb(
        None,
        &[
            "pg",
            "restore",
            "--pgdata",
            &data,
            "--target-time",
            &target_time,
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("no base backup ended before"),
        "{}",
        refused.stderr
    );
}

#[test]
fn wal_push_and_fetch_keep_postgres_archiving_contract() {
    let archive = Archive::new();
    let pg = Postgres::start_with(&archive.server_options());
    pg.sql("postgres", "CREATE TABLE marks(id int, phase text)");
    insert(&pg, "base");
    let segment = pg.sql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    archive.wait_archived(&pg);

    // Fetched from the repository, byte for byte what the server wrote.
    let again = archive.path("again");
    std::fs::create_dir(&again).expect("mkdir");
    give_to(&again, &archive.user);
    let fetched = again.join(&segment);
    let data = pg.data.display().to_string();
    archive
        .lb(
            None,
            &[
                "pg",
                "wal-fetch",
                "--pgdata",
                &data,
                &segment,
                &fetched.display().to_string(),
            ],
        )
        .ok();
    let bytes = std::fs::read(&fetched).expect("fetched segment");
    assert_eq!(bytes.len(), 16 << 20);

    // The same file again succeeds; other content under the same name fails, with a small
    // exit code (128 or more would make the server's archiver exit).
    let push = |path: &Path| {
        archive.lb(
            None,
            &[
                "pg",
                "wal-push",
                "--pgdata",
                &data,
                &path.display().to_string(),
            ],
        )
    };
    push(&fetched).ok();
    let mut changed = bytes.clone();
    changed[1000] ^= 1;
    std::fs::write(&fetched, &changed).expect("write");
    let refused = push(&fetched);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("different content"),
        "{}",
        refused.stderr
    );

    // A file never archived: a quick, ordinary failure; a name outside the archive: refused.
    let started = Instant::now();
    let missing = archive.lb(
        None,
        &[
            "pg",
            "wal-fetch",
            "--pgdata",
            &data,
            "00000009.history",
            "/tmp/never",
        ],
    );
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("not in the archive"),
        "{}",
        missing.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let hostile = archive.lb(
        None,
        &[
            "pg",
            "wal-fetch",
            "--pgdata",
            &data,
            "../../etc/passwd",
            "/tmp/never",
        ],
    );
    assert_eq!(hostile.code, 1);
    assert!(
        hostile.stderr.contains("not the name"),
        "{}",
        hostile.stderr
    );

    // The spool belongs to this cluster: another cluster's wal-push is refused.
    let other = Postgres::start();
    let other_data = other.data.display().to_string();
    let foreign = archive.lb(
        None,
        &[
            "pg",
            "wal-push",
            "--pgdata",
            &other_data,
            &fetched.display().to_string(),
        ],
    );
    assert_eq!(foreign.code, 1, "{}", foreign.stderr);
    assert!(
        foreign.stderr.contains("belongs to the cluster"),
        "{}",
        foreign.stderr
    );

    // `--drain FILE` exits 0 only once FILE is in the repository, also while another pusher
    // holds the spool (here a stand-in that holds its lock and stores nothing).
    let lock = archive.path("spool").join("pusher.lock");
    assert!(
        lock.exists(),
        "{} (the spool's pusher lock)",
        lock.display()
    );
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["-c", "echo held; sleep 3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("flock says it holds the lock");
    let later = again.join("0000000A000000000000000B");
    std::fs::write(&later, &bytes).expect("write");
    give_to(&again, &archive.user);
    let drained = archive.lb(
        None,
        &[
            "pg",
            "wal-push",
            "--pgdata",
            &data,
            "--drain",
            &later.display().to_string(),
        ],
    );
    let released = holder.try_wait().expect("flock").is_some();
    holder.wait().expect("flock");
    let drained = drained.ok();
    assert!(
        released,
        "--drain returned while another pusher held the spool"
    );
    assert!(drained.stdout.contains("waiting"), "{}", drained.stdout);
    let status = archive.lb(None, &["pg", "status", "--json"]).ok().json();
    assert_eq!(status["spooled_files"], 0, "{status}");
    let refetched = again.join("refetched");
    archive
        .lb(
            None,
            &[
                "pg",
                "wal-fetch",
                "--pgdata",
                &data,
                "0000000A000000000000000B",
                &refetched.display().to_string(),
            ],
        )
        .ok();
    assert_eq!(std::fs::read(&refetched).expect("refetched"), bytes);
}

#[test]
fn a_promoted_restore_archives_its_timeline_and_the_next_recovery_follows_it() {
    let archive = Archive::new();
    let pg = Postgres::start_with(&archive.server_options());
    pg.sql("postgres", "CREATE TABLE marks(id int, phase text)");
    insert(&pg, "base");
    archive.lb(Some(&pg), &["pg", "backup"]).ok();
    insert(&pg, "t1");
    std::thread::sleep(Duration::from_millis(1100));
    let target_time = pg.sql("postgres", "SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    insert(&pg, "lost");
    archive.wait_archived(&pg);

    // A real recovery keeps archiving: its new timeline's history and WAL enter the archive.
    let data = archive.path("promoted");
    let data_arg = data.display().to_string();
    archive
        .lb(
            None,
            &[
                "pg",
                "restore",
                "--target-time",
                &target_time,
                "--pgdata",
                &data_arg,
            ],
        )
        .ok();
    let promoted = Postgres::start_on(&data, &archive.server_options());
    wait_promoted(&promoted);
    assert_eq!(phases(&promoted), "100|100|0");
    insert(&promoted, "t2");
    archive.wait_archived(&promoted);
    let status = archive.lb(None, &["pg", "status", "--json"]).ok().json();
    assert!(
        status["newest_archived_segment"]
            .as_str()
            .is_some_and(|s| s.starts_with("00000002")),
        "{status}"
    );

    // A retention policy leaves the WAL archive alone.
    let archived = status["archived_files"].as_u64();
    archive
        .lb(None, &["forget", "--keep-last", "1", "--group-by", ""])
        .ok();
    let after = archive.lb(None, &["pg", "status", "--json"]).ok().json();
    assert_eq!(after["archived_files"].as_u64(), archived, "{after}");

    // The next recovery follows the newest timeline (PostgreSQL's default), through the
    // history file the promoted server archived.
    let (follow, _) = archive.restore("follow", &["--latest"]);
    wait_promoted(&follow);
    assert_eq!(phases(&follow), "100|100|100");
    drop(follow);

    // A base backup of the promoted server carries its recovery target in
    // postgresql.auto.conf; a restore of it must not stop there.
    let second = archive
        .lb(Some(&promoted), &["--json", "pg", "backup"])
        .ok()
        .json();
    insert(&promoted, "late");
    archive.wait_archived(&promoted);
    let (again, summary) = archive.restore("again", &["--latest"]);
    assert_eq!(summary["base_backup"], second["snapshot_id"], "{summary}");
    wait_promoted(&again);
    assert_eq!(
        again.sql(
            "postgres",
            "SELECT count(*) FROM marks WHERE phase = 'late'"
        ),
        "100"
    );
    assert_eq!(again.sql("postgres", "SELECT count(*) FROM marks"), "400");
}
