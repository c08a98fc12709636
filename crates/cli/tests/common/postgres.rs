//! A throw-away PostgreSQL 15 cluster: `initdb` into a temporary directory and `postgres` on a
//! free loopback port (and a socket in that directory), stopped when dropped and killed with
//! the test process. Run as the `postgres` user when the tests run as root (PostgreSQL
//! refuses to run as root).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::servers::{free_port, spawn_server};

/// The PostgreSQL programs: `LIFEBOAT_PG_BIN`, or Debian's PostgreSQL 15 (installed by .ci/run).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("LIFEBOAT_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: install postgresql-15 (.ci/run does) or set LIFEBOAT_PG_BIN",
        path.display()
    );
    path
}

pub struct Postgres {
    pub port: u16,
    pub socket_dir: PathBuf,
    pid: u32,
    _dir: tempfile::TempDir,
}

/// The user the server runs as: `postgres` when we are root, else ourselves.
fn server_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres")
        .expect("user lookup")
        .expect("a `postgres` user (the postgresql-15 package creates it)");
    Some(user)
}

fn as_user(command: &mut Command, user: &Option<nix::unistd::User>) {
    if let Some(u) = user {
        command.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
}

fn give_to(path: &Path, user: &Option<nix::unistd::User>) {
    if let Some(u) = user {
        nix::unistd::chown(path, Some(u.uid), Some(u.gid)).expect("chown");
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("tempdir");
        let user = server_user();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        for d in [&data, &socket_dir] {
            std::fs::create_dir(d).expect("mkdir");
            give_to(d, &user);
        }
        let mut initdb = Command::new(bin("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        as_user(&mut initdb, &user);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut server = Command::new(bin("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        as_user(&mut server, &user);
        let pid = spawn_server(server, &dir.path().join("postgres.log"));
        let pg = Postgres {
            port,
            socket_dir,
            pid,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin("pg_isready"))
                .args(pg.connection())
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                return pg;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 30 s on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The connection options every client program takes.
    pub fn connection(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.socket_dir.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// Runs SQL in `database`; returns psql's unaligned, tuples-only output.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(bin("psql"))
            .args(self.connection())
            .args(["-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown; the directory goes once the server is gone.
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
