//! Key derivation for key slots: Argon2id for passwords, with its parameters stored in each
//! key file; HKDF-SHA256 without stretching for secrets lifeboat generated itself (256 random
//! bits, which no amount of stretching makes harder to guess).

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

/// The KDF of a slot opened by a generated key: a 256-bit random secret, written as 64 hex
/// digits. Stretching cannot make 2^256 guesses harder, so it costs nothing per command.
pub const GENERATED_KEY: &str = "generated-key";

/// Whether `secret` has the form of a generated key (64 hex digits, i.e. 256 bits).
pub fn looks_generated(secret: &[u8]) -> bool {
    secret.len() == 64 && secret.iter().all(u8::is_ascii_hexdigit)
}

/// The most Argon2id work a key file may ask for, in KiB of memory times passes: 16 GiB
/// passes, about 21 times the default (around 10 s here). Storage can add key files; one
/// asking for 1 GiB and 64 passes would stall every open for a minute.
const MAX_COST_KIB_PASSES: u64 = 16 * 1024 * 1024;

impl KdfParams {
    /// Argon2id work, in KiB of memory times passes (0 for a generated-key slot): what
    /// opening the slot costs, so the cheapest slots can be tried first.
    pub fn cost(&self) -> u64 {
        if self.algorithm == GENERATED_KEY {
            return 0;
        }
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }

    /// For slots opened by a generated key (see [`GENERATED_KEY`]).
    pub fn generated_key() -> Self {
        KdfParams {
            algorithm: GENERATED_KEY.into(),
            memory_kib: 0,
            iterations: 0,
            parallelism: 0,
        }
    }

    /// Refuses parameters that would make an opened key file cheap to attack or absurd to
    /// compute (a hostile key file must not make us allocate terabytes).
    pub fn validate(&self, object: &str) -> Result<()> {
        if self.algorithm == GENERATED_KEY {
            return Ok(());
        }
        if self.algorithm != "argon2id" {
            return Err(Error::format(
                object,
                format!("unknown KDF {:?}", self.algorithm),
            ));
        }
        if !(8..=1024 * 1024).contains(&self.memory_kib)
            || !(1..=64).contains(&self.iterations)
            || !(1..=16).contains(&self.parallelism)
        {
            return Err(Error::format(
                object,
                format!("KDF parameters out of range: {self:?}"),
            ));
        }
        if self.cost() > MAX_COST_KIB_PASSES {
            return Err(Error::format(
                object,
                format!(
                    "KDF asks for {} MiB x {} passes, more than the {} GiB passes lifeboat \
                     spends on one key file",
                    self.memory_kib / 1024,
                    self.iterations,
                    MAX_COST_KIB_PASSES / (1024 * 1024)
                ),
            ));
        }
        Ok(())
    }

    pub fn derive(&self, password: &[u8], salt: &[u8], object: &str) -> Result<[u8; 32]> {
        self.validate(object)?;
        if self.algorithm == GENERATED_KEY {
            let mut out = [0u8; 32];
            hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), password)
                .expand(b"lifeboat v1 generated key slot", &mut out)
                .map_err(|e| Error::format(object, format!("KDF: {e}")))?;
            return Ok(out);
        }
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
