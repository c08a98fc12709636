//! Password-based key derivation: Argon2id with its parameters stored in each key file.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Argon2id cost. The defaults (64 MiB, 12 passes, 2 lanes) take about 0.4-0.5 s on the
/// project's 2-core machines (measured with `lifeboat snapshots` on a fresh repository).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            algorithm: "argon2id".into(),
            memory_kib: 64 * 1024,
            iterations: 12,
            parallelism: 2,
        }
    }
}

impl KdfParams {
    /// Refuses parameters that would make an opened key file cheap to attack or absurd to
    /// compute (a hostile key file must not make us allocate terabytes).
    pub fn validate(&self, object: &str) -> Result<()> {
        if self.algorithm != "argon2id" {
            return Err(Error::format(
                object,
                format!("unknown KDF {:?}", self.algorithm),
            ));
        }
        if !(8..=4 * 1024 * 1024).contains(&self.memory_kib)
            || !(1..=64).contains(&self.iterations)
            || !(1..=16).contains(&self.parallelism)
        {
            return Err(Error::format(
                object,
                format!("KDF parameters out of range: {self:?}"),
            ));
        }
        Ok(())
    }

    pub fn derive(&self, password: &[u8], salt: &[u8], object: &str) -> Result<[u8; 32]> {
        self.validate(object)?;
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| Error::format(object, format!("KDF parameters: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(password, salt, &mut out)
            .map_err(|e| Error::format(object, format!("KDF: {e}")))?;
        Ok(out)
    }
}
