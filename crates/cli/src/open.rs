//! Finding the repository and its password: flags, environment, or the zero-config default
//! (a repository under the data directory opened by a generated key file).

use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use lifeboat_backends::{BackendOptions, RepositoryLocation, Retention, RetentionMode};
use lifeboat_core::crypto::kdf::{looks_generated, KdfParams};
use lifeboat_core::storage::{CachedStorage, Storage};
use lifeboat_core::{InitOptions, Repository};

use crate::args::{Cli, KdfArgs, ToRepositoryArgs};

pub struct Location {
    pub place: RepositoryLocation,
    /// Neither --repo nor LIFEBOAT_REPOSITORY: the embedded default.
    pub is_default: bool,
}

pub fn default_repository() -> Result<PathBuf> {
    let data =
        dirs::data_dir().context("cannot find your data directory (set HOME or use --repo)")?;
    Ok(data.join("lifeboat").join("repository"))
}

pub fn default_key_file() -> Result<PathBuf> {
    let config =
        dirs::config_dir().context("cannot find your config directory (set HOME or use --repo)")?;
    Ok(config.join("lifeboat").join("repository.key"))
}

/// What `--repo` names: a URL of an object store, or else a directory.
pub fn parse_location(spec: &Path) -> Result<RepositoryLocation> {
    match spec.to_str() {
        Some(text) => Ok(RepositoryLocation::parse(text)?),
        None => Ok(RepositoryLocation::Local(spec.to_path_buf())),
    }
}

pub fn location(cli: &Cli) -> Result<Location> {
    match &cli.repo {
        Some(p) => Ok(Location {
            place: parse_location(p)?,
            is_default: false,
        }),
        None => Ok(Location {
            place: RepositoryLocation::Local(default_repository()?),
            is_default: true,
        }),
    }
}

/// The object-store settings of the command line.
pub fn backend_options(cli: &Cli) -> BackendOptions {
    let mut options = BackendOptions::default();
    if let Some(n) = cli.connections {
        options.connections = n.max(1);
    }
    options.pack_storage_class = cli.pack_storage_class.clone();
    options.retention = cli.retention_days.map(|days| Retention {
        days,
        mode: cli.retention_mode,
    });
    options
}

/// The retention of a second repository: only from its own variables
/// (`LIFEBOAT_TO_RETENTION_DAYS`, `..._MODE`), never from --retention-days.
fn retention_from_env(prefix: &str) -> Result<Option<Retention>> {
    let Ok(days) = std::env::var(format!("{prefix}RETENTION_DAYS")) else {
        return Ok(None);
    };
    let days: u32 = days
        .trim()
        .parse()
        .ok()
        .filter(|d| (1..=36500).contains(d))
        .with_context(|| format!("{prefix}RETENTION_DAYS={days:?} is not 1 to 36500 days"))?;
    let mode = match std::env::var(format!("{prefix}RETENTION_MODE")) {
        Ok(mode) => mode.parse().map_err(anyhow::Error::msg)?,
        Err(_) => RetentionMode::Governance,
    };
    Ok(Some(Retention { days, mode }))
}

fn read_password_file(path: &Path) -> Result<Vec<u8>> {
    let mut data =
        fs::read(path).with_context(|| format!("cannot read password file {}", path.display()))?;
    while data.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        data.pop();
    }
    if data.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(data)
}

/// A password given explicitly: --password-file / LIFEBOAT_PASSWORD_FILE, then LIFEBOAT_PASSWORD.
fn explicit_password(cli: &Cli) -> Result<Option<Vec<u8>>> {
    if let Some(file) = &cli.password_file {
        return read_password_file(file).map(Some);
    }
    if let Some(file) = &cli.key_file {
        return read_password_file(file).map(Some);
    }
    if let Some(pw) = std::env::var_os("LIFEBOAT_PASSWORD") {
        if pw.is_empty() {
            bail!("LIFEBOAT_PASSWORD is set but empty; unset it or give a password");
        }
        return Ok(Some(
            std::os::unix::ffi::OsStrExt::as_bytes(pw.as_os_str()).to_vec(),
        ));
    }
    Ok(None)
}

fn prompt(message: &str) -> Result<Vec<u8>> {
    let pw =
        rpassword::prompt_password(message).context("cannot read password from the terminal")?;
    Ok(pw.into_bytes())
}

fn no_password() -> anyhow::Error {
    anyhow::anyhow!(
        "no password given: set LIFEBOAT_PASSWORD or LIFEBOAT_PASSWORD_FILE, or use --password-file"
    )
}

fn password_for_open(cli: &Cli, loc: &Location) -> Result<Vec<u8>> {
    if let Some(pw) = explicit_password(cli)? {
        return Ok(pw);
    }
    if loc.is_default {
        let key_file = default_key_file()?;
        if key_file.exists() {
            return read_password_file(&key_file);
        }
        bail!(
            "the default repository at {} exists but its key file {} is missing; restore the key file or give the password with LIFEBOAT_PASSWORD",
            loc.place,
            key_file.display()
        );
    }
    if std::io::stdin().is_terminal() {
        return prompt(&format!("password for {}: ", loc.place));
    }
    Err(no_password())
}

pub fn storage(cli: &Cli, loc: &Location) -> Result<Arc<dyn Storage>> {
    Ok(lifeboat_backends::open(&loc.place, &backend_options(cli))?)
}

/// A repository in an object store is read through a local cache of its index files,
/// snapshots and trees, one directory per repository id (docs/storage.md).
fn with_cache(
    cli: &Cli,
    place: &RepositoryLocation,
    storage: Arc<dyn Storage>,
    repository_id: &str,
) -> Result<Arc<dyn Storage>> {
    // The id comes from the repository: a hostile one must not name a path outside the cache.
    let plain_id = !repository_id.is_empty()
        && repository_id.len() <= 64
        && repository_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if place.is_local() || cli.no_cache || !plain_id {
        return Ok(storage);
    }
    let root = match &cli.cache_dir {
        Some(dir) => dir.clone(),
        None => dirs::cache_dir()
            .context(
                "cannot find your cache directory (set HOME, or use --cache-dir or --no-cache)",
            )?
            .join("lifeboat"),
    };
    Ok(Arc::new(CachedStorage::new(
        storage,
        root.join(repository_id),
    )))
}

pub fn open(cli: &Cli) -> Result<Repository> {
    open_cached(cli, true)
}

/// [`open`] reading everything from the repository itself: what `check` verifies is what
/// storage holds, not the copy the cache holds.
pub fn open_uncached(cli: &Cli) -> Result<Repository> {
    open_cached(cli, false)
}

fn open_cached(cli: &Cli, cached: bool) -> Result<Repository> {
    let loc = location(cli)?;
    let storage = storage(cli, &loc)?;
    // Say "no repository" before asking for a password that cannot help.
    let config = Repository::read_config(storage.as_ref())?;
    let storage = if cached {
        with_cache(cli, &loc.place, storage, &config.id)?
    } else {
        storage
    };
    let password = password_for_open(cli, &loc)?;
    Ok(Repository::open(storage, &password)?)
}

/// How to open a second repository (`copy --to`, `init --from-repo`): its own password file or
/// key file, or a password in the environment variable `env`.
pub struct OtherRepository<'a> {
    pub path: &'a Path,
    pub password_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    pub env: &'static str,
    /// The option that names it, for messages (`--to`).
    pub flag: &'static str,
}

/// Opens the repository of `--to` (`copy`, `replicate`).
pub fn open_to(cli: &Cli, to: &ToRepositoryArgs) -> Result<Repository> {
    open_other(
        cli,
        &OtherRepository {
            path: &to.to,
            password_file: to.to_password_file.as_deref(),
            key_file: to.to_key_file.as_deref(),
            env: "LIFEBOAT_TO_PASSWORD",
            flag: "--to",
        },
    )
}

pub fn open_other(cli: &Cli, other: &OtherRepository) -> Result<Repository> {
    let place = parse_location(other.path)?;
    let mut options = backend_options(cli);
    // LIFEBOAT_TO_PASSWORD -> LIFEBOAT_TO_ (LIFEBOAT_TO_AWS_ACCESS_KEY_ID, ...).
    options.env_prefix = other.env.trim_end_matches("PASSWORD").to_string();
    options.retention = retention_from_env(&options.env_prefix)?;
    let storage = lifeboat_backends::open(&place, &options)?;
    let config = Repository::read_config(storage.as_ref())
        .with_context(|| format!("{} {}", other.flag, other.path.display()))?;
    let storage = with_cache(cli, &place, storage, &config.id)?;
    let password = match (other.password_file, other.key_file) {
        (Some(file), _) | (None, Some(file)) => read_password_file(file)?,
        (None, None) => match std::env::var_os(other.env) {
            Some(pw) if !pw.is_empty() => {
                std::os::unix::ffi::OsStrExt::as_bytes(pw.as_os_str()).to_vec()
            }
            _ if std::io::stdin().is_terminal() => {
                prompt(&format!("password for {}: ", other.path.display()))?
            }
            _ => bail!(
                "no password for the repository of {}: set {} or use {}-password-file or {}-key-file",
                other.flag,
                other.env,
                other.flag,
                other.flag
            ),
        },
    };
    Repository::open(storage, &password)
        .with_context(|| format!("{} {}", other.flag, other.path.display()))
}

pub fn kdf_params(args: &KdfArgs) -> KdfParams {
    let mut kdf = KdfParams::default();
    if let Some(m) = args.kdf_memory_kib {
        kdf.memory_kib = m;
    }
    if let Some(i) = args.kdf_iterations {
        kdf.iterations = i;
    }
    kdf
}

/// Writes a fresh random key file (0600) and returns its secret. A directory made for it is
/// private (0700); a directory that already existed keeps its permissions.
fn create_key_file(path: &Path) -> Result<Vec<u8>> {
    let dir = path.parent().context("key file path has no directory")?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok();
    }
    let password = hex::encode(rand::random::<[u8; 32]>());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(password.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok(password.into_bytes())
}

/// Creates a repository. For the default location without a given password, the password is
/// a generated key file, announced once on stderr.
pub fn init(cli: &Cli, options: InitOptions) -> Result<Repository> {
    let loc = location(cli)?;
    let storage = storage(cli, &loc)?;
    // Refuse before writing anything, so no key file is made for a repository it cannot open.
    if storage.exists()? {
        return Err(lifeboat_core::Error::RepositoryExists {
            location: storage.location(),
        }
        .into());
    }
    let key_file = match &cli.key_file {
        Some(path) if cli.password_file.is_none() => Some(path.clone()),
        Some(_) => None,
        None if loc.is_default && explicit_password(cli)?.is_none() => Some(default_key_file()?),
        None => None,
    };
    if let Some(key_file) = key_file {
        return init_with_key_file(storage, &loc, &key_file, options);
    }
    let password = match explicit_password(cli)? {
        Some(pw) => pw,
        None if std::io::stdin().is_terminal() => {
            let first = prompt(&format!("new password for {}: ", loc.place))?;
            let second = prompt("enter the password again: ")?;
            if first != second {
                bail!("the passwords do not match");
            }
            first
        }
        None => return Err(no_password()),
    };
    Ok(Repository::init(storage, &password, options)?)
}

/// Creates a repository opened by a key file, generating the file when it does not exist.
/// A generated key (256 random bits) needs no password stretching, so its slot uses the
/// `generated-key` KDF and opening the repository costs no Argon2id.
fn init_with_key_file(
    storage: Arc<dyn Storage>,
    loc: &Location,
    key_file: &Path,
    mut options: InitOptions,
) -> Result<Repository> {
    let created = !key_file.exists();
    let secret = if created {
        create_key_file(key_file)?
    } else {
        read_password_file(key_file)?
    };
    // Only a key this call generated is known to be random: a file the user brought (a
    // hashed passphrase looks just as hex) keeps Argon2id.
    if created && looks_generated(&secret) {
        options.kdf = KdfParams::generated_key();
    }
    let repo = Repository::init(storage, &secret, options).inspect_err(|_| {
        if created {
            let _ = fs::remove_file(key_file);
        }
    })?;
    eprintln!(
        "Created a new repository at {}.\nIts key is the file {}.\nKeep a copy of that key file somewhere safe, away from this machine:\nwithout it these backups cannot be read by anyone.",
        loc.place,
        key_file.display()
    );
    Ok(repo)
}

/// Opens the repository, creating the default one on first use (a newcomer's first command is
/// `lifeboat backup DIR`).
pub fn open_or_create_default(cli: &Cli) -> Result<Repository> {
    let loc = location(cli)?;
    if loc.is_default && !storage(cli, &loc)?.exists()? {
        return init(cli, InitOptions::default());
    }
    open(cli)
}

pub fn new_password(file: &Option<PathBuf>) -> Result<Vec<u8>> {
    if let Some(f) = file {
        return read_password_file(f);
    }
    if let Some(pw) = std::env::var_os("LIFEBOAT_NEW_PASSWORD") {
        return Ok(std::os::unix::ffi::OsStrExt::as_bytes(pw.as_os_str()).to_vec());
    }
    if std::io::stdin().is_terminal() {
        let first = prompt("new password: ")?;
        let second = prompt("enter the new password again: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        return Ok(first);
    }
    bail!("no new password given: use --new-password-file or LIFEBOAT_NEW_PASSWORD")
}
