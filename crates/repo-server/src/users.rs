//! Who may talk to the server: a file of `NAME:ROLE:SHA256-OF-PASSWORD` lines.
//!
//! Passwords are generated (192 random bits), never chosen, so a fast hash is enough: there is
//! nothing to guess in a leaked users file. Only the hash is stored; the password is shown
//! once, when the user is added.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Read and add objects; on an append-only server, delete nothing but locks.
    Backup,
    /// Everything, also on an append-only server (forget, prune, key changes).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Backup => "backup",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "backup" => Ok(Role::Backup),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?} (backup or admin)")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write users file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("users file {path}, line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("users file {path} has no users (add one with `lifeboat serve-repo add-user`)")]
    Empty { path: PathBuf },
    #[error("user {name:?} is already in {path}")]
    Exists { name: String, path: PathBuf },
    #[error("invalid user name {0:?}: use letters, digits, '.', '_' and '-'")]
    BadName(String),
}

struct User {
    role: Role,
    password_hash: [u8; 32],
}

pub struct Users {
    users: HashMap<String, User>,
}

fn hash(password: &[u8]) -> [u8; 32] {
    Sha256::digest(password).into()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let users = Users::parse(&text, path)?;
        if users.users.is_empty() {
            return Err(UsersError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(users)
    }

    fn parse(text: &str, path: &Path) -> Result<Users, UsersError> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| UsersError::Malformed {
                path: path.to_path_buf(),
                line: n + 1,
                reason,
            };
            let mut fields = line.split(':');
            let (Some(name), Some(role), Some(digest), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected NAME:ROLE:SHA256".into()));
            };
            if !valid_name(name) {
                return Err(bad(format!("invalid user name {name:?}")));
            }
            let role: Role = role.parse().map_err(bad)?;
            let password_hash: [u8; 32] = hex::decode(digest)
                .ok()
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| bad("the hash is not 64 hex digits".into()))?;
            if users
                .insert(
                    name.to_string(),
                    User {
                        role,
                        password_hash,
                    },
                )
                .is_some()
            {
                return Err(bad(format!("user {name:?} appears twice")));
            }
        }
        Ok(Users { users })
    }

    /// The role of `name` if `password` is theirs.
    pub fn verify(&self, name: &str, password: &[u8]) -> Option<Role> {
        let user = self.users.get(name)?;
        // Compare digests, not passwords: the time it takes says nothing about the password.
        (hash(password) == user.password_hash).then_some(user.role)
    }
}

/// Adds a user with a generated password to `path` (created 0600 if missing) and returns
/// the password, which is stored nowhere else.
pub fn add_user(path: &Path, name: &str, role: Role) -> Result<String, UsersError> {
    if !valid_name(name) {
        return Err(UsersError::BadName(name.to_string()));
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Users::parse(&text, path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Users {
            users: HashMap::new(),
        },
        Err(source) => {
            return Err(UsersError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if existing.users.contains_key(name) {
        return Err(UsersError::Exists {
            name: name.to_string(),
            path: path.to_path_buf(),
        });
    }
    let mut secret = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut secret);
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let line = format!("{name}:{role}:{}\n", hex::encode(hash(password.as_bytes())));
    let write_err = |source| UsersError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(write_err)?
    };
    file.write_all(line.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_users_verify_with_their_password_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        let backup = add_user(&path, "host-a", Role::Backup).expect("add");
        let admin = add_user(&path, "ops", Role::Admin).expect("add");
        assert!(matches!(
            add_user(&path, "ops", Role::Backup),
            Err(UsersError::Exists { .. })
        ));
        assert!(add_user(&path, "a:b", Role::Backup).is_err());
        let users = Users::load(&path).expect("load");
        assert_eq!(
            users.verify("host-a", backup.as_bytes()),
            Some(Role::Backup)
        );
        assert_eq!(users.verify("ops", admin.as_bytes()), Some(Role::Admin));
        assert_eq!(users.verify("host-a", admin.as_bytes()), None);
        assert_eq!(users.verify("nobody", admin.as_bytes()), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn malformed_lines_are_named() {
        let path = Path::new("users");
        for (text, reason) in [
            ("a:backup", "expected"),
            ("a:root:00", "unknown role"),
            ("a:backup:xyz", "64 hex"),
            ("a b:backup:00", "invalid user name"),
        ] {
            let err = Users::parse(text, path).err().expect("refused").to_string();
            assert!(err.contains("line 1") && err.contains(reason), "{err}");
        }
        let twice = format!("a:backup:{0}\na:admin:{0}\n", "0".repeat(64));
        let err = Users::parse(&twice, path)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("line 2") && err.contains("twice"), "{err}");
    }
}
