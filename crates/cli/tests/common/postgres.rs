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
    pub data: PathBuf,
    pid: u32,
    _dir: tempfile::TempDir,
}

/// Server settings (`-c NAME=VALUE`) and environment variables for [`Postgres::start_with`].
#[derive(Default)]
pub struct ServerOptions {
    pub settings: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
}

/// The user the server runs as: `postgres` when we are root, else ourselves.
pub fn server_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres")
        .expect("user lookup")
        .expect("a `postgres` user (the postgresql-15 package creates it)");
    Some(user)
}

pub fn as_user(command: &mut Command, user: &Option<nix::unistd::User>) {
    if let Some(u) = user {
        command.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
}

pub fn give_to(path: &Path, user: &Option<nix::unistd::User>) {
    if let Some(u) = user {
        nix::unistd::chown(path, Some(u.uid), Some(u.gid)).expect("chown");
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(&ServerOptions::default())
    }

    /// A new cluster (initdb), started with `options`.
    pub fn start_with(options: &ServerOptions) -> Postgres {
        let dir = server_dir();
        let user = server_user();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        give_to(&data, &user);
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
        Postgres::run(dir, data, options)
    }

    /// A server on an existing data directory (a restored one), started with `options`.
    pub fn start_on(data: &Path, options: &ServerOptions) -> Postgres {
        Postgres::run(server_dir(), data.to_path_buf(), options)
    }

    fn run(dir: tempfile::TempDir, data: PathBuf, options: &ServerOptions) -> Postgres {
        let user = server_user();
        let socket_dir = dir.path().join("socket");
        std::fs::create_dir(&socket_dir).expect("mkdir");
        give_to(&socket_dir, &user);
        let port = free_port();
        let mut server = Command::new(bin("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        for (name, value) in &options.settings {
            server.arg("-c").arg(format!("{name}={value}"));
        }
        server.envs(options.env.iter().map(|(k, v)| (k, v)));
        as_user(&mut server, &user);
        let log = dir.path().join("postgres.log");
        let pid = spawn_server(server, &log);
        let pg = Postgres {
            port,
            socket_dir,
            data,
            pid,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
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
                "PostgreSQL did not start within 60 s on port {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The variables that point libpq programs (pg_basebackup, psql) at this server.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), self.socket_dir.display().to_string()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
        ]
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

/// A directory for a server's socket and log, which its user can enter.
fn server_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    dir
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
