//! A real Garage S3 server for the tests: one single-node cluster per test binary, on free
//! loopback ports, in a temporary directory, killed when the test process exits. Each test
//! takes its own prefix of one bucket.
//!
//! The `garage` binary comes from `LIFEBOAT_GARAGE`, else `PATH`, else the place `.ci/run`
//! installs it (`~/.cache/lifeboat-tools/garage/bin/garage`). Without it the tests fail, loudly.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Garage {
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    pub binary: PathBuf,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LIFEBOAT_GARAGE") {
        return PathBuf::from(path);
    }
    if let Ok(found) = Command::new("sh")
        .args(["-c", "command -v garage"])
        .output()
    {
        let text = String::from_utf8_lossy(&found.stdout).trim().to_string();
        if found.status.success() && !text.is_empty() {
            return PathBuf::from(text);
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cached = home.join(".cache/lifeboat-tools/garage/bin/garage");
    assert!(
        cached.exists(),
        "these tests need Garage: `cargo install garage --locked --root ~/.cache/lifeboat-tools/garage` \
         (what .ci/run does) or set LIFEBOAT_GARAGE"
    );
    cached
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The server of this test binary, started on first use.
pub fn garage() -> &'static Garage {
    static GARAGE: OnceLock<Garage> = OnceLock::new();
    GARAGE.get_or_init(start)
}

impl Garage {
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run garage")
    }

    /// Runs a garage command until it succeeds (the cluster takes a moment to settle).
    fn cli_ok(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.cli(args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?} keeps failing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A repository URL under a fresh prefix of the test bucket.
    pub fn fresh_repo(&self) -> String {
        format!(
            "s3:{}/{}/t-{:016x}",
            self.endpoint,
            self.bucket,
            rand::random::<u64>()
        )
    }

    /// The variables a client needs: keys and region.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ("AWS_REGION".into(), "garage".into()),
        ]
    }
}

fn write_config(dir: &Path, s3_port: u16, rpc_port: u16, admin_port: u16) -> PathBuf {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let config = dir.join("garage.toml");
    let text = format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
        meta = dir.join("meta").display(),
        data = dir.join("data").display(),
    );
    std::fs::write(&config, text).expect("write garage.toml");
    config
}

/// Spawns the server from a thread that lives as long as the process: the child is killed
/// (PR_SET_PDEATHSIG) when its parent thread ends, i.e. when the test process does.
fn spawn_server(binary: &Path, config: &Path, log: &Path) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (binary, config, log) = (
        binary.to_path_buf(),
        config.to_path_buf(),
        log.to_path_buf(),
    );
    std::thread::spawn(move || {
        let log = std::fs::File::create(&log).expect("garage log");
        let mut command = Command::new(&binary);
        command
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        // SAFETY: prctl only changes a property of the new process before exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start garage server");
        let _ = tx.send(());
        let _ = child.wait();
        // Keep this thread (the child's parent) alive until the process ends.
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("garage spawned");
}

fn start() -> Garage {
    let binary = binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let s3_port = free_port();
    let config = write_config(dir.path(), s3_port, free_port(), free_port());
    spawn_server(&binary, &config, &dir.path().join("server.log"));
    let mut garage = Garage {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        bucket: "lifeboat-tests".into(),
        key_id: String::new(),
        secret: String::new(),
        binary,
        config,
        _dir: dir,
    };
    let node = garage.cli_ok(&["node", "id", "-q"]);
    let node = node
        .trim()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    garage.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
    garage.cli_ok(&["layout", "apply", "--version", "1"]);
    let key = garage.cli_ok(&["key", "create", "lifeboat-tests"]);
    let field = |label: &str| {
        key.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} in garage key create output:\n{key}"))
    };
    garage.key_id = field("Key ID:");
    garage.secret = field("Secret key:");
    garage.cli_ok(&["bucket", "create", &garage.bucket]);
    garage.cli_ok(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        &garage.bucket,
        "--key",
        "lifeboat-tests",
    ]);
    garage
}
