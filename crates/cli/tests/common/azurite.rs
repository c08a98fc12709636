//! Azurite, Microsoft's Azure Storage emulator (npm package `azurite`), for a round trip
//! through the Azure backend. It is an emulator, not Azure: the tests that use it say so.
//!
//! Looked for in `LIFEBOAT_AZURITE_DIR`, else `~/.cache/lifeboat-tools/azurite` (where
//! `.ci/run` installs it with `@azure/storage-blob`, which creates the container).

use std::path::PathBuf;
use std::process::Command;

use super::servers::{free_port, spawn_server, wait_for_port};

/// The emulator's fixed development account key (public, documented by Microsoft).
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub url: String,
    pub container: String,
    _dir: tempfile::TempDir,
}

fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIFEBOAT_AZURITE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = home.join(".cache/lifeboat-tools/azurite");
    assert!(
        dir.join("node_modules/.bin/azurite-blob").exists(),
        "this test needs Azurite: `npm install --prefix ~/.cache/lifeboat-tools/azurite azurite@3 @azure/storage-blob@12` \
         (what .ci/run does) or set LIFEBOAT_AZURITE_DIR"
    );
    dir
}

impl Azurite {
    /// A blob service of its own with one container.
    pub fn start() -> Azurite {
        let tools = tools_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut command = Command::new(tools.join("node_modules/.bin/azurite-blob"));
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .args(["--silent", "--skipApiVersionCheck"]);
        spawn_server(command, &dir.path().join("azurite.log"));
        wait_for_port(port, "azurite");
        let azurite = Azurite {
            url: format!("http://127.0.0.1:{port}"),
            container: "lifeboat-tests".into(),
            _dir: dir,
        };
        let script = r#"
const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");
const [url, container, key] = process.argv.slice(1);
new BlobServiceClient(url, new StorageSharedKeyCredential("devstoreaccount1", key))
  .getContainerClient(container).createIfNotExists()
  .then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });
"#;
        let made = Command::new("node")
            .env("NODE_PATH", tools.join("node_modules"))
            .arg("-e")
            .arg(script)
            .arg(format!("{}/devstoreaccount1", azurite.url))
            .arg(&azurite.container)
            .arg(ACCOUNT_KEY)
            .output()
            .expect("run node");
        assert!(
            made.status.success(),
            "creating the container: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        azurite
    }

    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            ("AZURITE_BLOB_STORAGE_URL".into(), self.url.clone()),
        ]
    }
}
