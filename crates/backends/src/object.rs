//! A repository under a prefix of an object store, with the layout of a local repository
//! (`config`, `keys/ID`, `data/XX/ID`, `index/ID`, ...), so a repository copied between a
//! directory and a bucket with any sync tool stays a repository.
//!
//! The store's client is asynchronous; the engine's threads call it through a runtime of our
//! own, each call blocking its thread, as many at once as the engine has threads.

use std::io;
use std::sync::Arc;

use futures::TryStreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use lifeboat_core::storage::{
    Capabilities, ObjectInfo, ObjectKind, Storage, StorageError, StorageResult,
};
use object_store::aws::{AmazonS3Builder, Checksum, S3ConditionalPut};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};

use crate::aws_profile::{read_profile, Profile, ProfileFiles};
use crate::read_ahead::{RangedStore, ReadAhead};
use crate::{BackendError, BackendOptions, RepositoryLocation, Retention};

pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    /// Key prefix with its trailing slash, or empty.
    prefix: String,
    location: String,
    runtime: tokio::runtime::Runtime,
    pack_storage_class: Option<String>,
    /// With a retention period: the client that writes with Object Lock headers.
    locked_store: Option<Arc<dyn ObjectStore>>,
    read_ahead: ReadAhead,
    /// Attempts of a `PUT` the client gives up on at once (see [`put_not_retried`]).
    retries: usize,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("location", &self.location)
            .finish()
    }
}

impl ObjectStorage {
    pub fn open(
        location: &RepositoryLocation,
        options: &BackendOptions,
    ) -> Result<Self, BackendError> {
        let setup = |e: object_store::Error| BackendError::Setup {
            location: location.to_string(),
            message: e.to_string(),
        };
        // Plain HTTP only where asked for: an `s3:http://` endpoint, or LIFEBOAT_ALLOW_HTTP
        // for an emulator whose address comes from its own variables.
        let allow_http = matches!(
            location,
            RepositoryLocation::S3Endpoint { endpoint, .. } if endpoint.starts_with("http://")
        ) || std::env::var("LIFEBOAT_ALLOW_HTTP")
            .is_ok_and(|v| v == "1" || v == "true");
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout(options.request_timeout)
            .with_connect_timeout(std::time::Duration::from_secs(10))
            .with_pool_max_idle_per_host(options.connections.max(1));
        let retry = RetryConfig {
            max_retries: options.retries,
            ..RetryConfig::default()
        };
        let env = options.env_prefix.as_str();
        let profile = match location {
            RepositoryLocation::S3Endpoint { .. } | RepositoryLocation::S3 { .. } => {
                Some(aws_profile(env).map_err(|message| BackendError::Setup {
                    location: location.to_string(),
                    message,
                })?)
            }
            _ => None,
        };
        // A client with a retention sends the Object Lock headers with every request, so
        // locked writes go through a store of their own; everything else through a plain one.
        let s3 = |retention: Option<Retention>, endpoint: Option<&String>, bucket: &String| {
            let mut builder =
                with_prefixed_env(AmazonS3Builder::from_env(), env, "AWS_", |b, k, v| {
                    b.with_config(k, v)
                });
            if let Some(profile) = &profile {
                builder = with_profile(builder, profile, env, endpoint.is_none());
            }
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            let client = match retention {
                // Object Lock wants the body's checksum with every locked PUT.
                Some(retention) => {
                    builder = builder.with_checksum_algorithm(Checksum::SHA256);
                    locking(&client, retention)
                }
                None => client.clone(),
            };
            builder
                .with_bucket_name(bucket)
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .with_client_options(client)
                .with_retry(retry.clone())
                .build()
                .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
        };
        let s3_target = match location {
            RepositoryLocation::S3Endpoint {
                endpoint, bucket, ..
            } => Some((Some(endpoint), bucket)),
            RepositoryLocation::S3 { bucket, .. } => Some((None, bucket)),
            _ => None,
        };
        let locked_store = match (options.retention, s3_target) {
            (None, _) => None,
            (Some(retention), Some((endpoint, bucket))) => {
                Some(s3(Some(retention), endpoint, bucket).map_err(setup)?)
            }
            (Some(_), None) => {
                return Err(BackendError::Setup {
                    location: location.to_string(),
                    message: "a retention period (Object Lock) needs an S3 store; Azure and \
                              GCS set immutability on the container or bucket itself"
                        .into(),
                })
            }
        };
        let (store, prefix) = match location {
            RepositoryLocation::S3Endpoint {
                endpoint,
                bucket,
                prefix,
            } => (s3(None, Some(endpoint), bucket).map_err(setup)?, prefix),
            RepositoryLocation::S3 { bucket, prefix } => {
                (s3(None, None, bucket).map_err(setup)?, prefix)
            }
            RepositoryLocation::Azure { container, prefix } => {
                let store = with_prefixed_env(
                    MicrosoftAzureBuilder::from_env(),
                    env,
                    "AZURE_",
                    |b, k, v| b.with_config(k, v),
                )
                .with_container_name(container)
                .with_client_options(client.clone())
                .with_retry(retry.clone())
                .build()
                .map_err(setup)?;
                (Arc::new(store) as Arc<dyn ObjectStore>, prefix)
            }
            RepositoryLocation::Gcs { bucket, prefix } => {
                let store = with_prefixed_env(
                    GoogleCloudStorageBuilder::from_env(),
                    env,
                    "GOOGLE_",
                    |b, k, v| b.with_config(k, v),
                )
                .with_bucket_name(bucket)
                .with_client_options(client.clone())
                .with_retry(retry.clone())
                .build()
                .map_err(setup)?;
                (Arc::new(store) as Arc<dyn ObjectStore>, prefix)
            }
            RepositoryLocation::Local(_) | RepositoryLocation::Rest { .. } => {
                return Err(BackendError::Setup {
                    location: location.to_string(),
                    message: "not an object store".into(),
                })
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.connections.clamp(1, 4))
            .thread_name("lifeboat-io")
            .enable_all()
            .build()
            .map_err(|e| BackendError::Setup {
                location: location.to_string(),
                message: format!("cannot start the I/O runtime: {e}"),
            })?;
        Ok(ObjectStorage {
            store,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            location: location.to_string(),
            runtime,
            pack_storage_class: options.pack_storage_class.clone(),
            locked_store,
            read_ahead: ReadAhead::default(),
            retries: options.retries,
        })
    }

    /// The store that writes `kind`: objects that are never deleted in normal use get the
    /// retention; locks and prune's condemned records, which are, do not.
    fn store_for(&self, kind: ObjectKind) -> &Arc<dyn ObjectStore> {
        match (&self.locked_store, kind) {
            (Some(_), ObjectKind::Lock | ObjectKind::Condemned) | (None, _) => &self.store,
            (Some(locked), _) => locked,
        }
    }

    fn namespace(kind: ObjectKind) -> &'static str {
        match kind {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys/",
            ObjectKind::Pack => "data/",
            ObjectKind::Index => "index/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Lock => "locks/",
            ObjectKind::Condemned => "condemned/",
            ObjectKind::Forgotten => "forgotten/",
        }
    }

    fn key(&self, kind: ObjectKind, name: &str) -> StorageResult<Path> {
        lifeboat_core::storage::validate_name(kind, name)?;
        let fan = if kind == ObjectKind::Pack {
            format!("{}/", &name[..name.len().min(2)])
        } else {
            String::new()
        };
        let key = format!("{}{}{fan}{name}", self.prefix, Self::namespace(kind));
        Path::parse(&key).map_err(|_| StorageError::InvalidName {
            kind,
            name: name.to_string(),
        })
    }

    fn error(&self, kind: ObjectKind, name: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                location: self.location.clone(),
                kind,
                name: name.to_string(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => StorageError::AlreadyExists {
                location: self.location.clone(),
                kind,
                name: name.to_string(),
            },
            other => StorageError::Io {
                location: self.where_is(kind, name),
                // The client has already retried what a retry could fix; a later attempt of
                // the whole operation still may succeed.
                retryable: !matches!(
                    other,
                    object_store::Error::NotSupported { .. }
                        | object_store::Error::NotImplemented { .. }
                        | object_store::Error::InvalidPath { .. }
                        | object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                ),
                source: io::Error::other(describe(&other)),
            },
        }
    }

    /// The repository and the object, for messages.
    fn where_is(&self, kind: ObjectKind, name: &str) -> String {
        if kind == ObjectKind::Config {
            format!("{} (config)", self.location)
        } else {
            format!("{} ({kind} {name})", self.location)
        }
    }

    fn put_options(&self, kind: ObjectKind) -> PutOptions {
        let mut attributes = Attributes::new();
        if kind == ObjectKind::Pack {
            if let Some(class) = &self.pack_storage_class {
                attributes.insert(Attribute::StorageClass, class.clone().into());
            }
        }
        PutOptions {
            mode: PutMode::Create,
            attributes,
            ..PutOptions::default()
        }
    }
}

impl RangedStore for ObjectStorage {
    /// `start..start + length` of an object, or less where the object ends first.
    fn fetch(
        &self,
        kind: ObjectKind,
        name: &str,
        start: u64,
        length: u64,
    ) -> StorageResult<bytes::Bytes> {
        let key = self.key(kind, name)?;
        let end = start.checked_add(length).ok_or_else(|| StorageError::Io {
            location: self.where_is(kind, name),
            source: io::Error::new(io::ErrorKind::InvalidInput, "range past 2^64"),
            retryable: false,
        })?;
        self.runtime
            .block_on(self.store.get_range(&key, start..end))
            .map_err(|e| self.error(kind, name, e))
    }

    fn short_read(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
        got: usize,
    ) -> StorageError {
        StorageError::Io {
            location: self.where_is(kind, name),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read: wanted {length} bytes at offset {offset}, got {got}"),
            ),
            retryable: false,
        }
    }

    fn read_ahead(&self) -> &ReadAhead {
        &self.read_ahead
    }
}

impl Storage for ObjectStorage {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Not every server honours `If-None-Match: *` (Garage 2.5 ignores it), and
            // nothing tells which do.
            atomic_write_once: false,
            delete: true,
        }
    }

    fn exists(&self) -> StorageResult<bool> {
        match self.stat(ObjectKind::Config, "config") {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Object stores have no directories to make; this checks that the bucket answers.
    fn create(&self) -> StorageResult<()> {
        let prefix =
            Path::parse(self.prefix.trim_end_matches('/')).map_err(|e| StorageError::Io {
                location: self.location.clone(),
                source: io::Error::other(e),
                retryable: false,
            })?;
        self.runtime
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map(|_| ())
            .map_err(|e| self.error(ObjectKind::Config, "config", e))
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ObjectInfo>> {
        if kind == ObjectKind::Config {
            return match self.stat(kind, "config") {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = format!("{}{}", self.prefix, Self::namespace(kind));
        let dir = Path::parse(dir.trim_end_matches('/')).map_err(|e| StorageError::Io {
            location: self.location.clone(),
            source: io::Error::other(e),
            retryable: false,
        })?;
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&dir)).try_collect())
            .map_err(|e| self.error(kind, "(listing)", e))?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                // Anything that is no name of ours (a sync tool's leftovers) is not listed.
                lifeboat_core::storage::validate_name(kind, &name).ok()?;
                Some(ObjectInfo {
                    name,
                    size: meta.size,
                })
            })
            .collect())
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let key = self.key(kind, name)?;
        self.runtime
            .block_on(async {
                let got = self.store.get(&key).await?;
                got.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| self.error(kind, name, e))
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

    /// Pack data is read in windows (a restore asks for a pack's frames one by one, in
    /// order: one request per window instead of one per frame).
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

    /// Trees: exactly the range (an unchanged backup reads one frame of them, not a window).
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

    /// The write itself asks for `If-None-Match: *`, which makes it atomic where the server
    /// honours it; the look first refuses a name already taken everywhere else, and spares
    /// the upload of a pack that is already there (packs are named by their bytes' hash).
    ///
    /// The client retries a `PUT` after a server error or a connection that closed before
    /// the request went out, but not after a timeout or a connection lost mid-way (a create
    /// is not idempotent to it): those are tried again here. Either way a later attempt may
    /// find the object an earlier one stored, whole (a `PUT` is atomic): names are hashes of
    /// the bytes or random, so its size tells that it is ours, and `config` is read back.
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        let key = self.key(kind, name)?;
        let taken = || StorageError::AlreadyExists {
            location: self.location.clone(),
            kind,
            name: name.to_string(),
        };
        let mut failed = 0;
        loop {
            match self.stat(kind, name) {
                Ok(info) if failed > 0 && self.holds(kind, name, &info, data) => return Ok(()),
                Ok(_) => return Err(taken()),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
            let put = self.runtime.block_on(self.store_for(kind).put_opts(
                &key,
                payload,
                self.put_options(kind),
            ));
            match put {
                Ok(_) => return Ok(()),
                // Free a moment ago: taken by a resent request of ours, or by another writer.
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => {
                    return match self.stat(kind, name) {
                        Ok(info) if self.holds(kind, name, &info, data) => Ok(()),
                        _ => Err(taken()),
                    }
                }
                Err(e) if failed < self.retries && put_not_retried(&e) => {
                    failed += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100 << failed.min(6)));
                }
                Err(e) => return Err(self.error(kind, name, e)),
            }
        }
    }

    /// Object stores answer a delete of a missing key with success; a look first keeps the
    /// trait's promise that deleting what is not there says so.
    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        let key = self.key(kind, name)?;
        self.stat(kind, name)?;
        self.runtime
            .block_on(self.store.delete(&key))
            .map_err(|e| self.error(kind, name, e))
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> StorageResult<ObjectInfo> {
        let key = self.key(kind, name)?;
        let meta = self
            .runtime
            .block_on(self.store.head(&key))
            .map_err(|e| self.error(kind, name, e))?;
        Ok(ObjectInfo {
            name: name.to_string(),
            size: meta.size,
        })
    }
}

impl ObjectStorage {
    /// Whether the object `info` describes is `data`, written by an earlier attempt.
    fn holds(&self, kind: ObjectKind, name: &str, info: &ObjectInfo, data: &[u8]) -> bool {
        info.size == data.len() as u64
            && (kind != ObjectKind::Config || self.read(kind, name).is_ok_and(|d| d == data))
    }
}

/// Whether a failed `PUT` ended in a way the client does not retry for a create: a timeout, or
/// a connection lost once the request was under way. The request may or may not have
/// been stored.
fn put_not_retried(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Timeout | HttpErrorKind::Interrupted | HttpErrorKind::Unknown
            );
        }
        source = error.source();
    }
    false
}

/// `client` sending Object Lock headers: the mode, the date `retention` ends (from now, in
/// the `...Z` form every server parses) and the checksum algorithm, which S3 (and moto)
/// demand with a locked write.
fn locking(client: &ClientOptions, retention: Retention) -> ClientOptions {
    let until = chrono::Utc::now() + chrono::Duration::days(i64::from(retention.days));
    let mut headers = HeaderMap::new();
    let mut add = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    add(
        "x-amz-object-lock-mode",
        retention.mode.as_header().to_string(),
    );
    add(
        "x-amz-object-lock-retain-until-date",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    add("x-amz-sdk-checksum-algorithm", "SHA256".to_string());
    client.clone().with_default_headers(headers)
}

/// A variable for the store: `{prefix}{name}` if set, else `{name}`.
fn store_var(prefix: &str, name: &str) -> Option<String> {
    let prefixed = (!prefix.is_empty())
        .then(|| std::env::var(format!("{prefix}{name}")).ok())
        .flatten();
    prefixed.or_else(|| std::env::var(name).ok())
}

/// The profile `AWS_PROFILE` names (which must exist), or the `default` one if any.
fn aws_profile(prefix: &str) -> Result<Profile, String> {
    let var = |name: &str| store_var(prefix, name);
    let Some(files) = ProfileFiles::from_env(var) else {
        return Ok(Profile::default());
    };
    match var("AWS_PROFILE") {
        Some(name) => read_profile(&files, &name, true),
        None => read_profile(&files, "default", false),
    }
}

/// `builder` with what the profile sets and no variable does (variables win, as in AWS's own
/// tools); its endpoint only for `s3://` locations, which name none themselves.
fn with_profile(
    mut builder: AmazonS3Builder,
    profile: &Profile,
    prefix: &str,
    use_endpoint: bool,
) -> AmazonS3Builder {
    // A profile named for this store alone (`LIFEBOAT_TO_AWS_PROFILE`) is not overridden by
    // the first store's variables, only by this store's own.
    let own_profile = !prefix.is_empty() && std::env::var(format!("{prefix}AWS_PROFILE")).is_ok();
    let unset = |name: &str| {
        if own_profile {
            std::env::var(format!("{prefix}{name}")).is_err()
        } else {
            store_var(prefix, name).is_none()
        }
    };
    if unset("AWS_ACCESS_KEY_ID") {
        if let (Some(id), Some(secret)) = (&profile.access_key_id, &profile.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = &profile.session_token {
                builder = builder.with_token(token);
            }
        }
    }
    if unset("AWS_REGION") && unset("AWS_DEFAULT_REGION") {
        if let Some(region) = &profile.region {
            builder = builder.with_region(region);
        }
    }
    if use_endpoint && unset("AWS_ENDPOINT_URL") && unset("AWS_ENDPOINT") {
        if let Some(endpoint) = &profile.endpoint_url {
            builder = builder.with_endpoint(endpoint);
        }
    }
    builder
}

/// `builder` (made from the usual variables) with the variables `{prefix}{family}...` on
/// top (`LIFEBOAT_TO_AWS_REGION` sets `aws_region`), through `with_config`; the names the
/// client does not know are left out.
fn with_prefixed_env<B, K: std::str::FromStr>(
    builder: B,
    prefix: &str,
    family: &str,
    with_config: fn(B, K, String) -> B,
) -> B {
    prefixed_vars(prefix, family)
        .into_iter()
        .fold(builder, |builder, (key, value)| match key.parse::<K>() {
            Ok(key) => with_config(builder, key, value),
            Err(_) => builder,
        })
}

/// The variables `{prefix}{family}...`, named as the client knows them (lowercase, without
/// the prefix): `LIFEBOAT_TO_AWS_REGION` gives `aws_region`. None without a prefix.
fn prefixed_vars(prefix: &str, family: &str) -> Vec<(String, String)> {
    if prefix.is_empty() {
        return Vec::new();
    }
    std::env::vars()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(prefix)?;
            rest.starts_with(family)
                .then(|| (rest.to_ascii_lowercase(), value))
        })
        .collect()
}

/// The client's error in a line: the server's error code and message where it sent one
/// (S3's XML body), else the client's own text, which repeats its chain of causes; cut there.
fn describe(e: &object_store::Error) -> String {
    let text = e.to_string();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let after = text.split_once(open.as_str())?.1;
        Some(after.split_once(close.as_str())?.0.to_string())
    };
    if let (Some(code), Some(message)) = (tag("Code"), tag("Message")) {
        return format!("{code}: {message}");
    }
    let head: String = text.chars().take(40).collect();
    match text.get(1..).and_then(|rest| rest.find(&head)) {
        Some(at) if head.len() >= 20 => text[..at + 1].trim_end_matches([':', ' ']).to_string(),
        _ => text,
    }
}
