//! The client of `lifeboat serve-repo` (`rest:http(s)://HOST[:PORT][/PATH]`); the protocol is
//! in the server's `routes` module and docs/storage.md.
//!
//! Credentials come from `LIFEBOAT_REST_USER` and `LIFEBOAT_REST_PASSWORD` (for the second
//! repository of `copy`: `LIFEBOAT_TO_REST_USER`, ...), a certificate to trust besides the
//! system's from `LIFEBOAT_REST_CACERT`. What the user may do is asked once, when opening, so
//! that `forget` on an append-only server can refuse before it writes anything.

use std::io;
use std::time::Duration;

use lifeboat_core::storage::{
    Capabilities, ObjectInfo, ObjectKind, Storage, StorageError, StorageResult,
};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::read_ahead::{RangedStore, ReadAhead};
use crate::{BackendError, BackendOptions};

pub struct RestStorage {
    url: String,
    client: Client,
    credentials: Option<(String, String)>,
    retries: usize,
    can_delete: bool,
    read_ahead: ReadAhead,
}

impl std::fmt::Debug for RestStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestStorage")
            .field("url", &self.url)
            .finish()
    }
}

#[derive(Deserialize)]
struct ServerInfo {
    can_delete: bool,
}

#[derive(Deserialize)]
struct Listed {
    name: String,
    size: u64,
}

/// `{prefix}REST_{name}`, or `LIFEBOAT_REST_{name}` when unset or without a prefix.
fn variable(prefix: &str, name: &str) -> Option<String> {
    let prefixed = (!prefix.is_empty())
        .then(|| std::env::var(format!("{prefix}REST_{name}")).ok())
        .flatten();
    prefixed.or_else(|| std::env::var(format!("LIFEBOAT_REST_{name}")).ok())
}

impl RestStorage {
    /// Connects and asks the server what this user may do.
    pub fn open(url: &str, options: &BackendOptions) -> Result<RestStorage, BackendError> {
        let setup = |message: String| BackendError::Setup {
            location: format!("rest:{url}"),
            message,
        };
        let mut builder = Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(options.connections.max(1))
            // Credentials go to the server named, not to wherever it points.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = variable(&options.env_prefix, "CACERT") {
            let pem = std::fs::read(&path)
                .map_err(|e| setup(format!("cannot read LIFEBOAT_REST_CACERT {path}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| setup(format!("LIFEBOAT_REST_CACERT {path}: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| setup(e.to_string()))?;
        let user = variable(&options.env_prefix, "USER");
        let password = variable(&options.env_prefix, "PASSWORD");
        let credentials = match (user, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(setup(
                    "set both LIFEBOAT_REST_USER and LIFEBOAT_REST_PASSWORD, or neither".into(),
                ))
            }
        };
        let mut storage = RestStorage {
            url: url.to_string(),
            client,
            credentials,
            retries: options.retries,
            can_delete: false,
            read_ahead: ReadAhead::default(),
        };
        let response = storage
            .send(|c| c.get(format!("{url}/")))
            .map_err(|e| setup(e.to_string()))?;
        let info: ServerInfo = match response.status() {
            StatusCode::OK => {
                response
                    .bytes()
                    .map_err(|e| setup(describe(&e)))
                    .and_then(|body| {
                        serde_json::from_slice(&body)
                            .map_err(|e| setup(format!("not a lifeboat repository server: {e}")))
                    })?
            }
            status => return Err(setup(storage.refusal(status, response))),
        };
        storage.can_delete = info.can_delete;
        Ok(storage)
    }

    fn object_url(&self, kind: ObjectKind, name: &str) -> String {
        format!("{}/{}/{}", self.url, kind.as_str(), name)
    }

    fn io_error(&self, what: String, kind: io::ErrorKind, retryable: bool) -> StorageError {
        StorageError::Io {
            location: format!("rest:{}", self.url),
            source: io::Error::new(kind, what),
            retryable,
        }
    }

    /// Sends the request `build` makes, again (with backoff) after a connection failure, a
    /// timeout or a server error, up to the configured number of retries.
    fn send(&self, build: impl Fn(&Client) -> RequestBuilder) -> StorageResult<Response> {
        self.send_counting(build).map(|(response, _)| response)
    }

    /// [`RestStorage::send`], also saying how many attempts failed before the answer.
    fn send_counting(
        &self,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> StorageResult<(Response, usize)> {
        let mut attempt = 0;
        loop {
            let mut request = build(&self.client);
            if let Some((user, password)) = &self.credentials {
                request = request.basic_auth(user, Some(password));
            }
            let retry = match request.send() {
                Ok(response) if !response.status().is_server_error() => {
                    return Ok((response, attempt))
                }
                Ok(response) => {
                    let status = response.status();
                    self.io_error(self.refusal(status, response), io::ErrorKind::Other, true)
                }
                Err(e) => {
                    let kind = if e.is_timeout() {
                        io::ErrorKind::TimedOut
                    } else {
                        io::ErrorKind::ConnectionRefused
                    };
                    self.io_error(describe(&e), kind, true)
                }
            };
            if attempt >= self.retries {
                return Err(retry);
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(100 << attempt.min(6)));
        }
    }

    /// The server's reason for an unexpected answer, in a line.
    fn refusal(&self, status: StatusCode, response: Response) -> String {
        let body = response.text().unwrap_or_default();
        let body = body.trim();
        match status {
            StatusCode::UNAUTHORIZED => format!(
                "{body} (LIFEBOAT_REST_USER and LIFEBOAT_REST_PASSWORD name a user of the server)"
            ),
            _ if body.is_empty() => format!("the server answered {status}"),
            _ => format!("{body} ({status})"),
        }
    }

    /// Maps the answer about object `kind`/`name` to an error unless it is `expected`.
    fn expect(
        &self,
        response: Response,
        expected: StatusCode,
        kind: ObjectKind,
        name: &str,
    ) -> StorageResult<Response> {
        let status = response.status();
        if status == expected {
            return Ok(response);
        }
        let location = format!("rest:{}", self.url);
        Err(match status {
            StatusCode::NOT_FOUND => StorageError::NotFound {
                location,
                kind,
                name: name.to_string(),
            },
            StatusCode::CONFLICT => StorageError::AlreadyExists {
                location,
                kind,
                name: name.to_string(),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.io_error(
                self.refusal(status, response),
                io::ErrorKind::PermissionDenied,
                false,
            ),
            _ => self.io_error(
                format!("{kind} {name}: {}", self.refusal(status, response)),
                io::ErrorKind::Other,
                false,
            ),
        })
    }

    fn body(&self, response: Response, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        response.bytes().map(|b| b.to_vec()).map_err(|e| {
            self.io_error(
                format!("reading {kind} {name}: {}", describe(&e)),
                io::ErrorKind::UnexpectedEof,
                true,
            )
        })
    }
}

/// reqwest's error with its causes, which its own text leaves out.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

impl RangedStore for RestStorage {
    /// `start..start + length` of an object, or less where it ends first (the server cuts
    /// a range at the object's end, as HTTP has it).
    fn fetch(
        &self,
        kind: ObjectKind,
        name: &str,
        start: u64,
        length: u64,
    ) -> StorageResult<bytes::Bytes> {
        lifeboat_core::storage::validate_name(kind, name)?;
        if length == 0 {
            return Ok(bytes::Bytes::new());
        }
        let last = start.checked_add(length - 1).ok_or_else(|| {
            self.io_error(
                format!("{kind} {name}: range {start}+{length} is out of bounds"),
                io::ErrorKind::InvalidInput,
                false,
            )
        })?;
        let range = format!("bytes={start}-{last}");
        let response = self.send(|c| {
            c.get(self.object_url(kind, name))
                .header(reqwest::header::RANGE, &range)
        })?;
        let response = self.expect(response, StatusCode::PARTIAL_CONTENT, kind, name)?;
        response.bytes().map_err(|e| {
            self.io_error(
                format!("reading {kind} {name}: {}", describe(&e)),
                io::ErrorKind::UnexpectedEof,
                true,
            )
        })
    }

    fn short_read(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        got: usize,
    ) -> StorageError {
        self.io_error(
            format!("{kind} {name}: asked for {length} bytes at {offset}, got {got}"),
            io::ErrorKind::UnexpectedEof,
            false,
        )
    }

    fn read_ahead(&self) -> &ReadAhead {
        &self.read_ahead
    }
}

impl Storage for RestStorage {
    fn location(&self) -> String {
        format!("rest:{}", self.url)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The server stores through its local backend: link, fsync, never replace.
            atomic_write_once: true,
            delete: self.can_delete,
        }
    }

    fn exists(&self) -> StorageResult<bool> {
        match self.stat(ObjectKind::Config, "config") {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn create(&self) -> StorageResult<()> {
        let response = self.send(|c| c.post(format!("{}/", self.url)))?;
        self.expect(
            response,
            StatusCode::NO_CONTENT,
            ObjectKind::Config,
            "config",
        )?;
        Ok(())
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        let response = self.send(|c| c.get(format!("{}/{}/", self.url, kind.as_str())))?;
        let response = self.expect(response, StatusCode::OK, kind, "")?;
        let body = self.body(response, kind, "(list)")?;
        let listed: Vec<Listed> = serde_json::from_slice(&body).map_err(|e| {
            self.io_error(
                format!("list of {kind} objects: {e}"),
                io::ErrorKind::InvalidData,
                false,
            )
        })?;
        Ok(listed
            .into_iter()
            .map(|l| ObjectInfo {
                name: l.name,
                size: l.size,
            })
            .collect())
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        lifeboat_core::storage::validate_name(kind, name)?;
        let response = self.send(|c| c.get(self.object_url(kind, name)))?;
        let response = self.expect(response, StatusCode::OK, kind, name)?;
        self.body(response, kind, name)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> StorageResult<Vec<u8>> {
        self.read_exact_range(kind, name, offset, length)
    }

    /// Pack data in windows, as for object stores (`read_ahead`).
    fn read_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        self.read_windowed_range_into(kind, name, offset, length, buf)
    }

    /// Trees: exactly the range.
    fn read_metadata_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> StorageResult<()> {
        *buf = self.read_exact_range(kind, name, offset, length)?;
        Ok(())
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        lifeboat_core::storage::validate_name(kind, name)?;
        let body = bytes::Bytes::copy_from_slice(data);
        let (response, failed_attempts) =
            self.send_counting(|c| c.put(self.object_url(kind, name)).body(body.clone()))?;
        match self.expect(response, StatusCode::CREATED, kind, name) {
            // An attempt that failed on its way back may have stored the object: then the
            // retry finds it, whole (the server never exposes a partial one). Names are
            // hashes of the bytes or random, so its size tells; `config` is read back.
            Err(e @ StorageError::AlreadyExists { .. }) if failed_attempts > 0 => {
                let ours = if kind == ObjectKind::Config {
                    self.read(kind, name).is_ok_and(|stored| stored == data)
                } else {
                    self.stat(kind, name)
                        .is_ok_and(|info| info.size == data.len() as u64)
                };
                if ours {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            other => other.map(|_| ()),
        }
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        lifeboat_core::storage::validate_name(kind, name)?;
        let response = self.send(|c| c.delete(self.object_url(kind, name)))?;
        self.expect(response, StatusCode::NO_CONTENT, kind, name)?;
        Ok(())
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        lifeboat_core::storage::validate_name(kind, name)?;
        let response = self.send(|c| c.head(self.object_url(kind, name)))?;
        let response = self.expect(response, StatusCode::OK, kind, name)?;
        let size = response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                self.io_error(
                    format!("{kind} {name}: no size in the answer"),
                    io::ErrorKind::InvalidData,
                    false,
                )
            })?;
        Ok(ObjectInfo {
            name: name.to_string(),
            size,
        })
    }
}
