//! Repository locations as users write them (`--repo`), parsed into what a backend needs.

use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryLocation {
    /// A directory (any string that names no remote scheme, or `local:PATH`).
    Local(PathBuf),
    /// `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`: path-style requests to that endpoint
    /// (Garage, MinIO, Ceph, ...).
    S3Endpoint {
        endpoint: String,
        bucket: String,
        prefix: String,
    },
    /// `s3://BUCKET[/PREFIX]`: AWS, or whatever `AWS_ENDPOINT_URL` names.
    S3 { bucket: String, prefix: String },
    /// `azure:CONTAINER[/PREFIX]`, the account from `AZURE_STORAGE_*` variables.
    Azure { container: String, prefix: String },
    /// `gs:BUCKET[/PREFIX]`, credentials from `GOOGLE_*` variables.
    Gcs { bucket: String, prefix: String },
    /// `rest:http(s)://HOST[:PORT][/PATH]`: a `lifeboat serve-repo` server; the user and
    /// password come from `LIFEBOAT_REST_USER` and `LIFEBOAT_REST_PASSWORD`.
    Rest { url: String },
}

#[derive(Debug, thiserror::Error)]
#[error("invalid repository location {spec:?}: {reason}")]
pub struct UrlError {
    pub spec: String,
    pub reason: String,
}

impl RepositoryLocation {
    pub fn parse(spec: &str) -> Result<Self, UrlError> {
        let fail = |reason: &str| UrlError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = bucket_and_prefix(rest).map_err(|r| fail(&r))?;
            return Ok(RepositoryLocation::S3 { bucket, prefix });
        }
        if let Some(rest) = spec.strip_prefix("s3:") {
            let (scheme, after) = if let Some(a) = rest.strip_prefix("https://") {
                ("https", a)
            } else if let Some(a) = rest.strip_prefix("http://") {
                ("http", a)
            } else {
                return Err(fail(
                    "use s3:https://HOST[:PORT]/BUCKET[/PREFIX] or s3://BUCKET[/PREFIX]",
                ));
            };
            let (host, path) = after.split_once('/').unwrap_or((after, ""));
            if host.is_empty() || host.contains('@') {
                return Err(fail(
                    "the endpoint needs a host (credentials go in AWS_* variables, not the URL)",
                ));
            }
            let (bucket, prefix) = bucket_and_prefix(path).map_err(|r| fail(&r))?;
            return Ok(RepositoryLocation::S3Endpoint {
                endpoint: format!("{scheme}://{host}"),
                bucket,
                prefix,
            });
        }
        if let Some(rest) = spec.strip_prefix("rest:") {
            let after = rest
                .strip_prefix("https://")
                .or_else(|| rest.strip_prefix("http://"))
                .ok_or_else(|| fail("use rest:http(s)://HOST[:PORT][/PATH]"))?;
            let host = after.split('/').next().unwrap_or("");
            if host.is_empty() || host.contains('@') {
                return Err(fail(
                    "the server needs a host (the user and password go in LIFEBOAT_REST_USER \
                     and LIFEBOAT_REST_PASSWORD, not the URL)",
                ));
            }
            return Ok(RepositoryLocation::Rest {
                url: rest.trim_end_matches('/').to_string(),
            });
        }
        if let Some(rest) = spec.strip_prefix("azure:") {
            let (container, prefix) = bucket_and_prefix(rest).map_err(|r| fail(&r))?;
            return Ok(RepositoryLocation::Azure { container, prefix });
        }
        if let Some(rest) = spec.strip_prefix("gs:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (bucket, prefix) = bucket_and_prefix(rest).map_err(|r| fail(&r))?;
            return Ok(RepositoryLocation::Gcs { bucket, prefix });
        }
        let path = spec.strip_prefix("local:").unwrap_or(spec);
        if path.is_empty() {
            return Err(fail("empty path"));
        }
        Ok(RepositoryLocation::Local(PathBuf::from(path)))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, RepositoryLocation::Local(_))
    }
}

/// `BUCKET[/PREFIX]` with the prefix's slashes trimmed; no empty, `.` or `..` segments, which
/// object stores treat inconsistently.
fn bucket_and_prefix(path: &str) -> Result<(String, String), String> {
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err("no bucket (or container) named".into());
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty()
        && prefix
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("the prefix has an empty, \".\" or \"..\" segment".into());
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl fmt::Display for RepositoryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_prefix = |f: &mut fmt::Formatter<'_>, head: String, prefix: &str| {
            if prefix.is_empty() {
                f.write_str(&head)
            } else {
                write!(f, "{head}/{prefix}")
            }
        };
        match self {
            RepositoryLocation::Local(path) => write!(f, "{}", path.display()),
            RepositoryLocation::S3Endpoint {
                endpoint,
                bucket,
                prefix,
            } => with_prefix(f, format!("s3:{endpoint}/{bucket}"), prefix),
            RepositoryLocation::S3 { bucket, prefix } => {
                with_prefix(f, format!("s3://{bucket}"), prefix)
            }
            RepositoryLocation::Azure { container, prefix } => {
                with_prefix(f, format!("azure:{container}"), prefix)
            }
            RepositoryLocation::Gcs { bucket, prefix } => {
                with_prefix(f, format!("gs:{bucket}"), prefix)
            }
            RepositoryLocation::Rest { url } => write!(f, "rest:{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> RepositoryLocation {
        RepositoryLocation::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[test]
    fn remote_forms_and_their_canonical_text() {
        assert_eq!(
            parse("s3:http://127.0.0.1:3900/backups/host-a/"),
            RepositoryLocation::S3Endpoint {
                endpoint: "http://127.0.0.1:3900".into(),
                bucket: "backups".into(),
                prefix: "host-a".into(),
            }
        );
        assert_eq!(
            parse("s3://bucket/a/b"),
            RepositoryLocation::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            parse("azure:c"),
            RepositoryLocation::Azure {
                container: "c".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse("gs://g/p"),
            RepositoryLocation::Gcs {
                bucket: "g".into(),
                prefix: "p".into()
            }
        );
        assert_eq!(
            parse("rest:https://backup.example.com:8000/"),
            RepositoryLocation::Rest {
                url: "https://backup.example.com:8000".into()
            }
        );
        for text in [
            "rest:http://127.0.0.1:8000",
            "s3:https://s3.example.com/b/p/q",
            "s3://b",
            "azure:c/p",
            "gs:g/p",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
    }

    #[test]
    fn paths_stay_local_and_bad_urls_are_refused() {
        assert_eq!(
            parse("/srv/backup"),
            RepositoryLocation::Local("/srv/backup".into())
        );
        assert_eq!(
            parse("local:s3:odd-dir"),
            RepositoryLocation::Local("s3:odd-dir".into())
        );
        for bad in [
            "s3:ftp://host/b",
            "s3:https://host",
            "s3:https:///b",
            "s3:https://user:secret@host/b",
            "s3://",
            "s3://b/../x",
            "azure:",
            "gs:b/p//q",
            "rest:ftp://host",
            "rest:http://",
            "rest:https://user:pw@host",
            "",
        ] {
            assert!(RepositoryLocation::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
