//! Named AWS profiles (`AWS_PROFILE`, `~/.aws/credentials`, `~/.aws/config`), which the
//! object-store client does not read itself. The usual precedence: a variable always wins over
//! a profile, and a profile's credentials file wins over its config file.

use std::path::{Path, PathBuf};

use ini::Ini;

/// What a profile sets; `None` where it says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Where the two files are: `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, else `~/.aws/`.
pub struct ProfileFiles {
    pub credentials: PathBuf,
    pub config: PathBuf,
}

impl ProfileFiles {
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<ProfileFiles> {
        let home = dirs_home()?;
        Some(ProfileFiles {
            credentials: var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".aws/credentials")),
            config: var("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".aws/config")),
        })
    }
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn load(path: &Path) -> Result<Option<Ini>, String> {
    match Ini::load_from_file(path) {
        Ok(ini) => Ok(Some(ini)),
        Err(ini::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The profile `name` (`required`: named by AWS_PROFILE, so it must exist; otherwise the
/// `default` profile, which may be absent).
pub fn read_profile(files: &ProfileFiles, name: &str, required: bool) -> Result<Profile, String> {
    let credentials = load(&files.credentials)?;
    let config = load(&files.config)?;
    // In the config file every profile but `default` is written `[profile NAME]`.
    let config_section = if name == "default" {
        name.to_string()
    } else {
        format!("profile {name}")
    };
    let from_credentials = credentials.as_ref().and_then(|i| i.section(Some(name)));
    let from_config = config
        .as_ref()
        .and_then(|i| i.section(Some(config_section.as_str())));
    if required && from_credentials.is_none() && from_config.is_none() {
        return Err(format!(
            "AWS profile {name:?} is in neither {} nor {}",
            files.credentials.display(),
            files.config.display()
        ));
    }
    // Profiles that get their keys some other way are not followed: refusing beats falling
    // back silently to other credentials (the instance's, another account's).
    for key in [
        "role_arn",
        "credential_process",
        "sso_session",
        "sso_start_url",
    ] {
        let used = [from_credentials, from_config]
            .into_iter()
            .flatten()
            .any(|section| section.contains_key(key));
        if used {
            return Err(format!(
                "AWS profile {name:?} uses {key}, which lifeboat does not follow: export the \
                 keys it gives (e.g. `aws configure export-credentials --profile {name} \
                 --format env`) instead"
            ));
        }
    }
    let get = |key: &str| {
        from_credentials
            .and_then(|s| s.get(key))
            .or_else(|| from_config.and_then(|s| s.get(key)))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Ok(Profile {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(credentials: &str, config: &str) -> (tempfile::TempDir, ProfileFiles) {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ProfileFiles {
            credentials: dir.path().join("credentials"),
            config: dir.path().join("config"),
        };
        std::fs::write(&files.credentials, credentials).expect("write");
        std::fs::write(&files.config, config).expect("write");
        (dir, files)
    }

    #[test]
    fn a_named_profile_takes_keys_from_credentials_and_settings_from_config() {
        let (_dir, files) = files(
            "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n\
             [backup]\naws_access_key_id = GK123\naws_secret_access_key = s3cr3t\n",
            "[default]\nregion = us-east-1\n\n[profile backup]\nregion = garage\n\
             endpoint_url = http://127.0.0.1:3900\naws_access_key_id = IGNORED\n",
        );
        let backup = read_profile(&files, "backup", true).expect("profile");
        assert_eq!(
            backup,
            Profile {
                access_key_id: Some("GK123".into()),
                secret_access_key: Some("s3cr3t".into()),
                session_token: None,
                region: Some("garage".into()),
                endpoint_url: Some("http://127.0.0.1:3900".into()),
            }
        );
        let default = read_profile(&files, "default", false).expect("profile");
        assert_eq!(default.access_key_id.as_deref(), Some("DEF"));
        assert_eq!(default.region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn profiles_that_assume_roles_are_refused_not_skipped() {
        let (_dir, files) = files("", "[profile admin]\nrole_arn = arn:aws:iam::1:role/x\n");
        let err = read_profile(&files, "admin", true).expect_err("refused");
        assert!(err.contains("role_arn"), "{err}");
    }

    #[test]
    fn a_missing_named_profile_is_an_error_and_a_missing_default_is_not() {
        let (_dir, files) = files("[a]\n", "");
        let err = read_profile(&files, "nope", true).expect_err("missing");
        assert!(err.contains("\"nope\""), "{err}");
        assert_eq!(
            read_profile(&files, "default", false).expect("fine"),
            Profile::default()
        );
        let none = ProfileFiles {
            credentials: files.credentials.with_file_name("absent-1"),
            config: files.config.with_file_name("absent-2"),
        };
        assert_eq!(
            read_profile(&none, "default", false).expect("fine"),
            Profile::default()
        );
    }
}
