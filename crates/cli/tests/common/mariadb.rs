//! A throw-away MariaDB server: `mariadb-install-db` into a temporary directory and
//! `mariadbd` on a free loopback port (and a socket in that directory), stopped when dropped
//! and killed with the test process; run as the `mysql` user when the tests run as root.
//! root@localhost has no password; tests add users of their own.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::servers::{free_port, spawn_server};

pub struct MariaDb {
    pub port: u16,
    pub socket: PathBuf,
    pid: u32,
    _dir: tempfile::TempDir,
}

fn program(name: &str) -> Command {
    let found = ["/usr/bin", "/usr/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is missing: install mariadb-server (.ci/run does)"));
    Command::new(found)
}

fn server_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    Some(
        nix::unistd::User::from_name("mysql")
            .expect("user lookup")
            .expect("a `mysql` user (the mariadb-server package creates it)"),
    )
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let user = server_user();
        let data = dir.path().join("data");
        let run = dir.path().join("run");
        // A temporary directory of its own: servers sharing /tmp collided on the names of
        // their temporary tables (`#sql-temptable-<pid>-...`) when pids were reused, and
        // mariadb-install-db failed ("Could not remove temporary table").
        let tmp = dir.path().join("tmp");
        for d in [&data, &run, &tmp] {
            std::fs::create_dir(d).expect("mkdir");
            if let Some(u) = &user {
                nix::unistd::chown(d.as_path(), Some(u.uid), Some(u.gid)).expect("chown");
            }
        }
        let user_arg = format!(
            "--user={}",
            user.as_ref().map_or_else(
                || nix::unistd::User::from_uid(nix::unistd::geteuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_default(),
                |u| u.name.clone()
            )
        );
        let out = program("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(&user_arg)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let socket = run.join("mariadb.sock");
        let mut server = program("mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", run.join("mariadb.pid").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--innodb-flush-log-at-trx-commit=0",
            ]);
        if let Some(u) = &user {
            server.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        let pid = spawn_server(server, &dir.path().join("mariadb.log"));
        let db = MariaDb {
            port,
            socket,
            pid,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while db.try_sql("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "MariaDB did not start within 60 s on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        db
    }

    /// The client options that reach this server as root over its socket.
    pub fn root_connection(&self) -> Vec<String> {
        vec![
            "--no-defaults".into(),
            format!("--socket={}", self.socket.display()),
            "--user=root".into(),
        ]
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = program("mariadb")
            .args(self.root_connection())
            .args(["--batch", "--skip-column-names", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs SQL as root; returns the rows, tab-separated.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("mariadb failed on {sql:?}: {e}"))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
