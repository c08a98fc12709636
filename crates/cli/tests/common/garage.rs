//! A real Garage S3 server for the tests: one single-node cluster per test binary, on free
//! loopback ports, in a temporary directory, killed when the test process exits. Each test
//! takes its own prefix of one bucket.
//!
//! The `garage` binary comes from `LIFEBOAT_GARAGE`, else `PATH`, else the place `.ci/run`
//! installs it (`~/.cache/lifeboat-tools/garage/bin/garage`). Without it the tests fail, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::servers::{free_port, spawn_server};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Garage {
    pub endpoint: String,
    /// Garage's admin API (its `/metrics` count the S3 requests served).
    pub admin: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    /// A second bucket with a key of its own, which the first key cannot reach: the
    /// other side of a copy between two stores with different credentials.
    pub offsite_bucket: String,
    pub offsite_key_id: String,
    pub offsite_secret: String,
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

/// Runs a garage command until it succeeds (a cluster takes a moment to settle).
fn run_ok(binary: &Path, config: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(binary)
            .arg("-c")
            .arg(config)
            .args(args)
            .output()
            .expect("run garage");
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

    fn cli_ok(&self, args: &[&str]) -> String {
        run_ok(&self.binary, &self.config, args)
    }

    /// S3 requests served so far, by API endpoint (`GetObject`, `PutObject`, ...), from the
    /// node's Prometheus metrics.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.admin).expect("admin API");
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.admin
        )
        .expect("request metrics");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read metrics");
        let mut counts = std::collections::BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("api_s3_request_counter{"))
        {
            let endpoint = line
                .split("api_endpoint=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(endpoint), Some(value)) = (endpoint, value) {
                *counts.entry(endpoint.to_string()).or_insert(0) += value as u64;
            }
        }
        assert!(!counts.is_empty(), "no request counters in:\n{text}");
        counts
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

/// One server's ports and places.
struct NodeConfig {
    s3_port: u16,
    rpc_port: u16,
    admin_port: u16,
    replication: usize,
    /// Shared by the nodes of a cluster.
    rpc_secret: String,
}

fn write_config(dir: &Path, node: &NodeConfig) -> PathBuf {
    let NodeConfig {
        s3_port,
        rpc_port,
        admin_port,
        replication,
        rpc_secret: secret,
    } = node;
    std::fs::create_dir_all(dir).expect("node dir");
    let config = dir.join("garage.toml");
    let text = format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = {replication}
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

fn new_node(replication: usize, rpc_secret: &str) -> NodeConfig {
    NodeConfig {
        s3_port: free_port(),
        rpc_port: free_port(),
        admin_port: free_port(),
        replication,
        rpc_secret: rpc_secret.to_string(),
    }
}

/// Starts the servers of a cluster of `nodes` (one zone each, every object on
/// `replication` of them), with a key and a bucket; the first node's S3 endpoint serves the
/// clients. Returns the cluster and the servers' process ids.
fn start_cluster(nodes: usize, replication: usize) -> (Garage, Vec<u32>) {
    let binary = binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let rpc_secret = hex::encode(rand::random::<[u8; 32]>());
    let mut configs = Vec::new();
    let mut pids = Vec::new();
    let (mut s3_port, mut admin_port) = (0, 0);
    for n in 0..nodes {
        let node_dir = dir.path().join(format!("node{n}"));
        let node = new_node(replication, &rpc_secret);
        if n == 0 {
            (s3_port, admin_port) = (node.s3_port, node.admin_port);
        }
        let config = write_config(&node_dir, &node);
        let mut command = Command::new(&binary);
        command
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn");
        pids.push(spawn_server(command, &node_dir.join("server.log")));
        configs.push(config);
    }
    let mut garage = Garage {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        admin: format!("127.0.0.1:{admin_port}"),
        bucket: "lifeboat-tests".into(),
        key_id: String::new(),
        secret: String::new(),
        offsite_bucket: "lifeboat-offsite".into(),
        offsite_key_id: String::new(),
        offsite_secret: String::new(),
        binary,
        config: configs[0].clone(),
        _dir: dir,
    };
    let node_ids: Vec<String> = configs
        .iter()
        .map(|config| {
            run_ok(&garage.binary, config, &["node", "id", "-q"])
                .trim()
                .to_string()
        })
        .collect();
    for address in &node_ids[1..] {
        garage.cli_ok(&["node", "connect", address]);
    }
    for (zone, address) in node_ids.iter().enumerate() {
        let id = address.split('@').next().unwrap_or_default();
        garage.cli_ok(&[
            "layout",
            "assign",
            "-z",
            &format!("dc{zone}"),
            "-c",
            "1G",
            id,
        ]);
    }
    garage.cli_ok(&["layout", "apply", "--version", "1"]);
    (garage.key_id, garage.secret) = bucket_with_key(&garage, &garage.bucket, "lifeboat-tests");
    (garage.offsite_key_id, garage.offsite_secret) =
        bucket_with_key(&garage, &garage.offsite_bucket, "lifeboat-offsite");
    (garage, pids)
}

/// Creates `bucket` and a key `key_name` that may read and write it; returns the key's id
/// and secret.
fn bucket_with_key(garage: &Garage, bucket: &str, key_name: &str) -> (String, String) {
    let key = garage.cli_ok(&["key", "create", key_name]);
    let field = |label: &str| {
        key.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} in garage key create output:\n{key}"))
    };
    let credentials = (field("Key ID:"), field("Secret key:"));
    garage.cli_ok(&["bucket", "create", bucket]);
    garage.cli_ok(&[
        "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key_name,
    ]);
    credentials
}

fn start() -> Garage {
    start_cluster(1, 1).0
}

/// A cluster of its own for one test: three nodes, every object on all three.
pub struct Cluster {
    pub garage: Garage,
    pids: Vec<u32>,
}

impl Cluster {
    /// A single node of its own, for a test that counts the requests it sends.
    pub fn start_one() -> Cluster {
        let (garage, pids) = start_cluster(1, 1);
        Cluster { garage, pids }
    }

    pub fn start_three() -> Cluster {
        let (garage, pids) = start_cluster(3, 3);
        Cluster { garage, pids }
    }

    /// Kills node `n` (not 0, whose endpoint the clients use) at once, as a crash would.
    pub fn kill_node(&self, n: usize) {
        assert!(n > 0, "node 0 serves the clients");
        // SAFETY: sending a signal to a process id this test started.
        unsafe {
            libc::kill(self.pids[n] as libc::pid_t, libc::SIGKILL);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid in &self.pids {
            // SAFETY: as in kill_node; a process already gone makes this a no-op.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}
