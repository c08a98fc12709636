//! Key files: several passwords can open one repository. Each key file seals the same master
//! keys under a key derived from its own password, so changing a password rewrites one small
//! file and never re-encrypts data.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::kdf::KdfParams;
use super::{open_object, seal_object};
use crate::error::{Error, Result};

pub(crate) const KEY_AAD: &[u8] = b"lifeboat key v1";

/// The repository secrets. Never stored unsealed.
#[derive(Clone, Serialize, Deserialize)]
pub struct MasterKeys {
    /// The repository id these keys belong to; checked against the config at open.
    pub repository_id: String,
    /// Root of every sealing key (HKDF input).
    #[serde(with = "hex_key")]
    pub seal: [u8; 32],
    /// Key of the keyed BLAKE3 that names blobs.
    #[serde(with = "hex_key")]
    pub blob_id: [u8; 32],
    /// Seed of the chunker's gear table.
    #[serde(with = "hex_key")]
    pub chunker: [u8; 32],
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("repository_id", &self.repository_id)
            .finish_non_exhaustive()
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

impl MasterKeys {
    pub fn generate(repository_id: &str) -> Self {
        MasterKeys {
            repository_id: repository_id.to_string(),
            seal: random_key(),
            blob_id: random_key(),
            chunker: random_key(),
        }
    }
}

mod hex_key {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("key must be 32 bytes"))
    }
}

/// What a key file holds (stored as JSON; only `sealed_master` is secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
    pub kdf: KdfParams,
    pub salt: String,
    pub sealed_master: String,
}

impl KeyFile {
    pub fn create(master: &MasterKeys, password: &[u8], kdf: KdfParams) -> Result<KeyFile> {
        // Without stretching only a random secret is safe: never for a typed password.
        if kdf.algorithm == super::kdf::GENERATED_KEY && !super::kdf::looks_generated(password) {
            return Err(Error::InvalidInput(
                "a key slot without password stretching needs a generated key (64 hex digits)"
                    .into(),
            ));
        }
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        let derived = kdf.derive(password, &salt, "new key")?;
        let plaintext = serde_json::to_vec(master).map_err(|e| Error::format("master keys", e))?;
        let sealed = seal_object(&derived, KEY_AAD, &plaintext);
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(KeyFile {
            version: 1,
            created: Utc::now(),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            kdf,
            salt: b64.encode(salt),
            sealed_master: b64.encode(sealed),
        })
    }

    pub fn parse(data: &[u8], object: &str) -> Result<KeyFile> {
        let key: KeyFile = serde_json::from_slice(data).map_err(|e| Error::format(object, e))?;
        if key.version != 1 {
            return Err(Error::format(
                object,
                format!("unknown key file version {}", key.version),
            ));
        }
        key.kdf.validate(object)?;
        Ok(key)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key file serializes")
    }

    /// Returns the master keys if the password is right, `None` if it is not.
    pub fn open(&self, password: &[u8], object: &str) -> Result<Option<MasterKeys>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64
            .decode(&self.salt)
            .map_err(|e| Error::format(object, e))?;
        let sealed = b64
            .decode(&self.sealed_master)
            .map_err(|e| Error::format(object, e))?;
        if self.kdf.algorithm == super::kdf::GENERATED_KEY && !super::kdf::looks_generated(password)
        {
            return Ok(None);
        }
        let derived = self.kdf.derive(password, &salt, object)?;
        match open_object(&derived, KEY_AAD, &sealed, object) {
            Ok(plain) => {
                let master =
                    serde_json::from_slice(&plain).map_err(|e| Error::format(object, e))?;
                Ok(Some(master))
            }
            Err(Error::Integrity { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..KdfParams::default()
        }
    }

    #[test]
    fn right_password_opens_wrong_does_not() {
        let master = MasterKeys::generate("repo1");
        let key = KeyFile::create(&master, b"pw", cheap()).unwrap();
        let parsed = KeyFile::parse(&key.to_bytes(), "k").unwrap();
        let opened = parsed.open(b"pw", "k").unwrap().unwrap();
        assert_eq!(opened.seal, master.seal);
        assert_eq!(opened.repository_id, "repo1");
        assert!(parsed.open(b"wrong", "k").unwrap().is_none());
    }

    #[test]
    fn hostile_kdf_parameters_are_refused() {
        let master = MasterKeys::generate("r");
        let mut key = KeyFile::create(&master, b"pw", cheap()).unwrap();
        key.kdf.memory_kib = u32::MAX;
        assert!(KeyFile::parse(&key.to_bytes(), "k").is_err());
        // Within each bound but stalling every open: 1 GiB for 64 passes.
        key.kdf.memory_kib = 1024 * 1024;
        key.kdf.iterations = 64;
        let err = KeyFile::parse(&key.to_bytes(), "k").expect_err("too costly");
        assert!(err.to_string().contains("passes"), "{err}");
        key.kdf.iterations = 16;
        assert!(KeyFile::parse(&key.to_bytes(), "k").is_ok(), "at the limit");
        key.kdf.memory_kib = 1024 * 1024 + 1;
        key.kdf.iterations = 1;
        assert!(KeyFile::parse(&key.to_bytes(), "k").is_err(), "over 1 GiB");
    }

    #[test]
    fn generated_key_slots_open_only_with_a_generated_key() {
        let master = MasterKeys::generate("r");
        let generated = hex::encode([7u8; 32]);
        let other = hex::encode([8u8; 32]);
        assert!(
            KeyFile::create(&master, b"short password", KdfParams::generated_key()).is_err(),
            "a typed password never gets an unstretched slot"
        );
        let key =
            KeyFile::create(&master, generated.as_bytes(), KdfParams::generated_key()).unwrap();
        let parsed = KeyFile::parse(&key.to_bytes(), "k").unwrap();
        assert_eq!(parsed.kdf.algorithm, "generated-key");
        let opened = parsed.open(generated.as_bytes(), "k").unwrap().unwrap();
        assert_eq!(opened.seal, master.seal);
        assert!(parsed.open(other.as_bytes(), "k").unwrap().is_none());
        assert!(parsed.open(b"pw", "k").unwrap().is_none());
    }
}
