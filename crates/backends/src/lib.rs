//! Where a repository lives, named by a string: a local directory, or a prefix in an object
//! store (S3-compatible, Azure Blob, Google Cloud Storage) reached through the `object_store`
//! crate. Everything here implements the core [`Storage`] trait; the engine never knows which.
//!
//! Without the `remote` feature (on by default) the crate is only [`RepositoryLocation`] and
//! the options' types, for the fuzz target of the location parser.

#[cfg(feature = "remote")]
mod aws_profile;
mod location;
#[cfg(feature = "remote")]
mod object;
#[cfg(feature = "remote")]
mod read_ahead;
#[cfg(feature = "remote")]
mod rest;

#[cfg(feature = "remote")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "remote")]
use lifeboat_core::storage::{LocalStorage, RetryPolicy, RetryingStorage, Storage};

pub use location::{RepositoryLocation, UrlError};
#[cfg(feature = "remote")]
pub use object::ObjectStorage;
#[cfg(feature = "remote")]
pub use rest::RestStorage;

/// How to talk to a remote store; ignored by local directories.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// Requests in flight at once.
    pub connections: usize,
    /// Retries of a request that failed with a server error or a timeout, with backoff.
    pub retries: usize,
    /// The longest one request may take (a whole pack upload included).
    pub request_timeout: Duration,
    /// Storage class for data packs (`STANDARD_IA`, `GLACIER_IR`, ...); metadata objects keep
    /// the default class so they stay readable at once.
    pub pack_storage_class: Option<String>,
    /// Credentials and settings are read from the usual variables (`AWS_*`, `AZURE_*`,
    /// `GOOGLE_*`), overridden by the same names with this prefix (`LIFEBOAT_TO_AWS_...` for
    /// the second repository of `copy`), so two stores can have two sets of keys.
    pub env_prefix: String,
    /// S3 Object Lock: every object that is never deleted in normal use (all but locks and
    /// prune's records) is written with this retention.
    pub retention: Option<Retention>,
}

/// An Object Lock retention period, counted from when the store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
    pub mode: RetentionMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete.
    Governance,
    /// Nobody, the account's root included, deletes before the date.
    Compliance,
}

impl RetentionMode {
    pub fn as_header(self) -> &'static str {
        match self {
            RetentionMode::Governance => "GOVERNANCE",
            RetentionMode::Compliance => "COMPLIANCE",
        }
    }
}

impl std::str::FromStr for RetentionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "governance" => Ok(RetentionMode::Governance),
            "compliance" => Ok(RetentionMode::Compliance),
            _ => Err(format!(
                "unknown retention mode {s:?} (governance or compliance)"
            )),
        }
    }
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            connections: 8,
            retries: 5,
            request_timeout: Duration::from_secs(300),
            pack_storage_class: None,
            env_prefix: String::new(),
            retention: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot set up {location}: {message}")]
    Setup { location: String, message: String },
}

/// Opens the storage `location` names. Every backend retries its transient failures once,
/// where they happen: object stores in their client (`RetryConfig`), `rest:` in its requests,
/// and a local directory (which may be a network mount) through [`RetryingStorage`].
#[cfg(feature = "remote")]
pub fn open(
    location: &RepositoryLocation,
    options: &BackendOptions,
) -> Result<Arc<dyn Storage>, BackendError> {
    match location {
        RepositoryLocation::Local(path) => Ok(Arc::new(RetryingStorage::new(
            Arc::new(LocalStorage::new(path)),
            RetryPolicy::default(),
        ))),
        RepositoryLocation::Rest { url } => Ok(Arc::new(RestStorage::open(url, options)?)),
        remote => Ok(Arc::new(ObjectStorage::open(remote, options)?)),
    }
}
