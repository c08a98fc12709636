//! moto's server mode (PyPI package `moto[server]`), an emulator of AWS S3 that implements
//! Object Lock, which Garage does not. It is an emulator, not AWS: the tests that use it say
//! so. Its boto3 creates the bucket with Object Lock and looks at object versions.
//!
//! Looked for in `LIFEBOAT_MOTO_VENV`, else `~/.cache/lifeboat-tools/moto-venv` (a Python
//! virtual environment where `.ci/run` installs it).

use std::path::PathBuf;
use std::process::Command;

use super::servers::{free_port, spawn_server, wait_for_port};

pub struct Moto {
    pub endpoint: String,
    venv: PathBuf,
    _dir: tempfile::TempDir,
}

fn venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIFEBOAT_MOTO_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = home.join(".cache/lifeboat-tools/moto-venv");
    assert!(
        dir.join("bin/moto_server").exists(),
        "this test needs moto: `python3 -m venv ~/.cache/lifeboat-tools/moto-venv && \
         ~/.cache/lifeboat-tools/moto-venv/bin/pip install 'moto[server]'` (what .ci/run does) \
         or set LIFEBOAT_MOTO_VENV"
    );
    dir
}

/// Python that talks to the server with boto3: `endpoint` is bound, and `s3` is a client.
const PRELUDE: &str = r#"
import sys, json, boto3
endpoint = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
"#;

impl Moto {
    pub fn start() -> Moto {
        let venv = venv();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut command = Command::new(venv.join("bin/moto_server"));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        spawn_server(command, &dir.path().join("moto.log"));
        wait_for_port(port, "moto_server");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            venv,
            _dir: dir,
        }
    }

    /// Runs `script` after [`PRELUDE`] with `args` in `sys.argv[2:]`; its stdout as JSON.
    pub fn python(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let out = Command::new(self.venv.join("bin/python3"))
            .arg("-c")
            .arg(format!("{PRELUDE}\n{script}"))
            .arg(&self.endpoint)
            .args(args)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// A bucket, with Object Lock enabled if `locked`.
    pub fn bucket(&self, name: &str, locked: bool) {
        self.python(
            "s3.create_bucket(Bucket=sys.argv[2], ObjectLockEnabledForBucket=sys.argv[3] == '1')",
            &[name, if locked { "1" } else { "0" }],
        );
    }

    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }
}
