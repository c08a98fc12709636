//! Runs the real `lifeboat` binary against temporary repositories. HOME and the XDG
//! directories point into the temp dir, so nothing touches the user's own default repository.
#![allow(dead_code)]

pub mod azurite;
pub mod garage;
pub mod mariadb;
pub mod moto;
pub mod postgres;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    /// A directory, or the URL of a repository in an object store.
    pub repo: PathBuf,
    /// Variables every command gets (an object store's credentials).
    pub vars: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            raw_stdout: out.stdout,
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The last JSON line of stdout.
    pub fn json(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{') || l.starts_with('['))
            .unwrap_or("null");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }
}

/// Runs a command whose program was just copied or linked. Another test's fork can still hold
/// the copy's write descriptor for an instant (until that child's exec closes it), and exec
/// then fails with "Text file busy": try again, for up to 10 s.
pub fn output_of_copied_binary(command: &mut Command) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match command.output() {
            Err(e)
                if e.raw_os_error() == Some(libc::ETXTBSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("run lifeboat"),
        }
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_lifeboat")
}

impl Env {
    /// A temp dir with an initialised repository (cheap KDF to keep tests fast).
    pub fn new() -> Env {
        let env = Env::empty();
        env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
            .ok();
        env
    }

    /// A temp dir without a repository.
    pub fn empty() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        Env {
            dir,
            repo,
            vars: Vec::new(),
        }
    }

    /// [`Env::new`] with the repository under a fresh prefix of the tests' Garage bucket.
    pub fn new_on_s3() -> Env {
        let env = Env::empty_on_s3();
        env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
            .ok();
        env
    }

    /// [`Env::empty`] with the repository URL in the tests' Garage bucket.
    pub fn empty_on_s3() -> Env {
        let server = garage::garage();
        let mut env = Env::empty();
        env.repo = PathBuf::from(server.fresh_repo());
        env.vars = server.vars();
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A command with --repo, the password and an isolated HOME.
    pub fn command(&self) -> Command {
        self.command_at(&self.repo)
    }

    /// [`Env::command`] for another repository (opened with the same password unless the
    /// caller sets LIFEBOAT_PASSWORD again).
    pub fn command_at(&self, repo: &Path) -> Command {
        self.command_of(Path::new(binary()), repo)
    }

    /// [`Env::command_at`] running `program` (a copy of the binary another user can run).
    pub fn command_of(&self, program: &Path, repo: &Path) -> Command {
        let mut cmd = Command::new(program);
        let home = self.home();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("LIFEBOAT_PASSWORD", PASSWORD)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .arg("--repo")
            .arg(repo)
            .stdin(Stdio::null());
        cmd
    }

    pub fn lb(&self, args: &[&str]) -> Run {
        let out = self.command().args(args).output().expect("run lifeboat");
        Run::from_output(out)
    }

    pub fn lb_os(&self, args: &[&std::ffi::OsStr]) -> Run {
        let out = self.command().args(args).output().expect("run lifeboat");
        Run::from_output(out)
    }

    /// How many snapshots the repository lists.
    pub fn snapshot_count(&self) -> usize {
        self.lb(&["snapshots", "--json"])
            .ok()
            .json()
            .as_array()
            .map_or(0, |a| a.len())
    }

    /// Backs up `path` and returns the new snapshot id.
    pub fn backup(&self, path: &Path, extra: &[&str]) -> String {
        let mut args = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        let mut cmd = self.command();
        cmd.args(&args).arg(path);
        let run = Run::from_output(cmd.output().expect("run lifeboat")).ok();
        run.json()["snapshot_id"]
            .as_str()
            .expect("snapshot_id")
            .to_string()
    }

    pub fn restore(&self, snapshot: &str, target: &Path, extra: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.args(["restore", snapshot, "--target"])
            .arg(target)
            .args(extra);
        Run::from_output(cmd.output().expect("run lifeboat"))
    }

    /// Lock objects in the repository (not a temporary file a writer is about to link into
    /// place).
    pub fn locks(&self) -> usize {
        std::fs::read_dir(self.repo.join("locks"))
            .map(|dir| {
                dir.filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count()
            })
            .unwrap_or(0)
    }

    /// Starts a backup that reads stdin, which holds its lock until stdin closes, and waits
    /// for its lock to appear.
    pub fn hold_a_backup_lock(&self) -> std::process::Child {
        let before = self.locks();
        let holder = self
            .command()
            .args(["backup", "--stdin", "--stdin-filename", "x"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.locks() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the backup took no lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        holder
    }

    /// Total bytes of all files under the repository.
    pub fn repo_size(&self) -> u64 {
        dir_size(&self.repo)
    }
}

pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Every file in the repository, recursively.
pub fn repo_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        if entry.file_type().expect("type").is_dir() {
            out.extend(repo_files(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Where a backed-up absolute path lands under a restore target.
pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").expect("absolute"))
}

/// Relative path -> (length, hash of the content).
pub type Manifest = std::collections::BTreeMap<PathBuf, (u64, u64)>;

/// Every regular file under `root`, by relative path, with its length and a content hash.
pub fn manifest(root: &Path) -> Manifest {
    use std::hash::{Hash, Hasher};
    fn walk(root: &Path, dir: &Path, out: &mut Manifest) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(root, &p, out);
            } else {
                let data = std::fs::read(&p).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                data.hash(&mut h);
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    (data.len() as u64, h.finish()),
                );
            }
        }
    }
    let mut out = Manifest::new();
    walk(root, root, &mut out);
    out
}

/// Opens the test repository through the library.
pub fn open_repo(env: &Env) -> lifeboat_core::Repository {
    let storage = std::sync::Arc::new(lifeboat_core::storage::LocalStorage::new(&env.repo));
    lifeboat_core::Repository::open(storage, PASSWORD.as_bytes()).unwrap()
}

/// Runs `command` with `input` on its standard input; panics with its stderr unless it succeeds
/// (restoring a dump through `pg_restore` or `mariadb`).
pub fn feed(command: &mut Command, input: &[u8]) {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("feed the command");
    let out = child.wait_with_output().expect("the command ends");
    assert!(
        out.status.success(),
        "{:?}: {}",
        command.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
}
