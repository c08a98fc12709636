//! `lifeboat serve-repo` and the `rest:` backend: a real server process on loopback. On an
//! append-only server a backup user adds and reads but deletes and overwrites nothing, and
//! says so; an admin user forgets and prunes.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::servers::{free_port, spawn_server, wait_for_port};
use common::{binary, manifest, restored, Env};

struct Server {
    port: u16,
    backup: (String, String),
    /// A second backup user (another host).
    other: (String, String),
    admin: (String, String),
    dir: PathBuf,
}

fn add_user(users: &Path, name: &str, role: &str) -> (String, String) {
    let out = Command::new(binary())
        .args([
            "--json",
            "serve-repo",
            "add-user",
            name,
            "--role",
            role,
            "--users",
        ])
        .arg(users)
        .output()
        .expect("add-user");
    assert!(out.status.success(), "{out:?}");
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    (
        name.to_string(),
        added["password"].as_str().expect("password").to_string(),
    )
}

/// Starts `serve-repo --append-only` on a free port, serving `env`'s directory `served`.
fn start(env: &Env, extra: &[&str]) -> Server {
    let users = env.path("users");
    let backup = add_user(&users, "web1", "backup");
    let other = add_user(&users, "web2", "backup");
    let admin = add_user(&users, "ops", "admin");
    let port = free_port();
    let dir = env.path("served");
    let mut command = Command::new(binary());
    command
        .args(["serve-repo", "--append-only", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--users")
        .arg(&users)
        .args(extra)
        .arg(&dir);
    spawn_server(command, &env.path("server.log"));
    wait_for_port(port, "serve-repo");
    Server {
        port,
        backup,
        other,
        admin,
        dir,
    }
}

fn client(env: &mut Env, server: &Server, scheme: &str, user: &(String, String)) {
    env.repo = PathBuf::from(format!("rest:{scheme}://127.0.0.1:{}", server.port));
    env.vars.retain(|(k, _)| !k.starts_with("LIFEBOAT_REST_"));
    env.vars.push(("LIFEBOAT_REST_USER".into(), user.0.clone()));
    env.vars
        .push(("LIFEBOAT_REST_PASSWORD".into(), user.1.clone()));
}

/// A plain-HTTP append-only server and a repository initialised through it by the backup
/// user, whom `env` speaks as.
fn serving_initialised() -> (Env, Server) {
    let mut env = Env::empty();
    let server = start(&env, &[]);
    client(&mut env, &server, "http", &server.backup);
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    (env, server)
}

fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha").unwrap();
    std::fs::write(src.join("sub/b.bin"), common::random_bytes(3_000_000, 7)).unwrap();
    src
}

/// One raw HTTP/1.1 request; the status code of the answer.
fn raw_request(port: u16, method: &str, path: &str, user: &(String, String), body: &[u8]) -> u16 {
    raw_request_full(port, method, path, user, "", body)
}

/// [`raw_request`] with more header lines (each ending in CRLF).
fn raw_request_full(
    port: u16,
    method: &str,
    path: &str,
    user: &(String, String),
    headers: &str,
    body: &[u8],
) -> u16 {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.0, user.1));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\
         {headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    // The body may be binary (object bytes): only the status line is text.
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let answer = String::from_utf8_lossy(&raw);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

fn first_object(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .unwrap_or_else(|| panic!("no object in {}", dir.display()))
}

#[test]
fn backup_user_adds_and_restores_but_cannot_delete_or_overwrite() {
    let (mut env, server) = serving_initialised();
    let src = source(&env);
    let first = env.backup(&src, &[]);
    std::fs::write(src.join("a.txt"), "alpha, changed").unwrap();
    let second = env.backup(&src, &[]);
    let target = env.path("restored");
    env.restore(&second, &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    env.lb(&["check", "--read-data"]).ok();
    assert_eq!(
        common::repo_files(&server.dir.join("locks")).len(),
        0,
        "backups remove their own locks"
    );

    // forget and prune refuse before touching anything, and say why.
    for args in [vec!["forget", first.as_str()], vec!["prune"]] {
        let run = env.lb(&args);
        assert_ne!(run.code, 0, "{args:?} succeeded");
        assert!(run.stderr.contains("append-only"), "{}", run.stderr);
        assert!(run.stderr.contains("admin user"), "{}", run.stderr);
    }
    // Around the client: the server itself refuses.
    let snapshot = first_object(&server.dir.join("snapshots"));
    let stored = std::fs::read(server.dir.join("snapshots").join(&snapshot)).unwrap();
    let path = format!("/snapshot/{snapshot}");
    assert_eq!(
        raw_request(server.port, "DELETE", &path, &server.backup, b""),
        403
    );
    assert_eq!(
        raw_request(server.port, "PUT", &path, &server.backup, b"forged"),
        409
    );
    assert_eq!(
        std::fs::read(server.dir.join("snapshots").join(&snapshot)).unwrap(),
        stored
    );
    let key = first_object(&server.dir.join("keys"));
    assert_eq!(
        raw_request(
            server.port,
            "DELETE",
            &format!("/key/{key}"),
            &server.backup,
            b""
        ),
        403
    );
    assert_eq!(
        raw_request(server.port, "PUT", "/config/config", &server.backup, b"{}"),
        409
    );
    // A lock may be deleted by the user who wrote it, not by another backup user.
    let lock_path = "/lock/0123456789abcdef0123456789abcdef";
    assert_eq!(
        raw_request(server.port, "PUT", lock_path, &server.backup, b"l"),
        201
    );
    assert_eq!(
        raw_request(server.port, "DELETE", lock_path, &server.other, b""),
        403
    );
    assert_eq!(
        raw_request(server.port, "DELETE", lock_path, &server.backup, b""),
        204
    );
    // A range that ends past the object is cut at its end (as HTTP has it), even at 2^64;
    // one that starts past it, or backwards, is the client's mistake, not a 5xx.
    for (range, expected) in [
        ("bytes=0-18446744073709551615", 206),
        ("bytes=0-99999999", 206),
        ("bytes=10-5", 416),
        ("bytes=99999999-100000000", 416),
    ] {
        let header = format!("Range: {range}\r\n");
        let status = raw_request_full(server.port, "GET", &path, &server.backup, &header, b"");
        assert_eq!(status, expected, "{range}");
    }
    // Names that climb out of their namespace, kinds that do not exist, and a second object
    // beside the config.
    assert_eq!(
        raw_request(
            server.port,
            "PUT",
            "/config/forgotten",
            &server.backup,
            b"x"
        ),
        400
    );
    for path in [
        "/pack/..%2Fconfig",
        "/pack/../config",
        "/nonsense/abc",
        "/keys/",
    ] {
        let status = raw_request(server.port, "GET", path, &server.backup, b"");
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let anonymous = (String::from("web1"), String::from("wrong"));
    assert_eq!(
        raw_request(server.port, "GET", "/snapshot/", &anonymous, b""),
        401
    );
    let log = std::fs::read_to_string(env.path("server.log")).unwrap();
    assert!(log.contains("refused: user web1"), "{log}");
    // Nothing was lost: both snapshots still restore.
    assert_eq!(
        env.lb(&["snapshots", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The admin forgets and prunes; what is left checks and restores.
    client(&mut env, &server, "http", &server.admin);
    env.lb(&["forget", &first]).ok();
    env.lb(&["prune"]).ok();
    env.lb(&["check", "--read-data"]).ok();
    let again = env.path("again");
    env.restore(&second, &again, &[]).ok();
    assert_eq!(manifest(&restored(&again, &src)), manifest(&src));
}

#[test]
fn wrong_credentials_and_a_missing_server_are_clear() {
    let (mut env, server) = serving_initialised();
    let wrong = (server.backup.0.clone(), "not-the-password".to_string());
    client(&mut env, &server, "http", &wrong);
    let run = env.lb(&["snapshots"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("wrong or missing user name and password"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);

    env.repo = PathBuf::from(format!("rest:http://127.0.0.1:{}", free_port()));
    let run = env.lb(&["snapshots"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("rest:http://127.0.0.1"),
        "{}",
        run.stderr
    );
}

#[test]
fn https_with_a_certificate_the_client_trusts() {
    let mut env = Env::empty();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("self-signed certificate");
    let cert = env.path("cert.pem");
    let key = env.path("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = start(
        &env,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    client(&mut env, &server, "https", &server.backup);
    // Without the certificate the client does not trust the server.
    let run = env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );

    env.vars
        .push(("LIFEBOAT_REST_CACERT".into(), cert.display().to_string()));
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let src = source(&env);
    let id = env.backup(&src, &[]);
    let target = env.path("restored");
    env.restore(&id, &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    // Plain HTTP to the TLS port gets nowhere.
    env.repo = PathBuf::from(format!("rest:http://127.0.0.1:{}", server.port));
    assert_ne!(env.lb(&["snapshots"]).code, 0);
    // A client that connects and never starts its handshake is cut off (after 10 s).
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = silent.read(&mut byte);
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server closed the connection: {read:?} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn check_verifies_what_the_server_holds_not_the_local_cache() {
    let (env, server) = serving_initialised();
    let src = source(&env);
    let first = env.backup(&src, &[]);
    std::fs::write(src.join("a.txt"), "changed").unwrap();
    let second = env.backup(&src, &[]);
    env.lb(&["snapshots"]).ok(); // both are in the client's cache now
    let stored = |id: &str| server.dir.join("snapshots").join(id);
    std::fs::copy(stored(&first), stored(&second)).unwrap();
    let run = env.lb(&["check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("rewritten"), "{}", run.stdout);
}
