//! Key files: the JSON, its KDF parameters (the reader refuses absurd ones), and opening the
//! sealed master keys with a password, down to the master keys' JSON.
//!
//! Opening runs the key file's own Argon2 parameters, and the reader accepts up to 4 GiB and
//! 64 passes (docs/format.md, "Keys"): a valid key file may legitimately cost seconds. The
//! target therefore opens only key files whose parameters are cheap (at most 64 KiB and 2
//! passes); dearer ones, once the reader has accepted them within its documented limits,
//! are parsed but not opened. Nothing else is bounded here.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use lifeboat_core::crypto::kdf::{KdfParams, GENERATED_KEY};
use lifeboat_core::crypto::keys::KeyFile;
use lifeboat_core::fuzzing::{self, SALT};

const PASSWORD: &[u8] = b"fuzz password";
/// A generated key: 64 hex digits.
const GENERATED: &[u8] = b"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Whether opening costs little enough to do for every input.
fn cheap(kdf: &KdfParams) -> bool {
    kdf.algorithm == GENERATED_KEY || (kdf.memory_kib <= 64 && kdf.iterations <= 2)
}

fn documented_limits(kdf: &KdfParams) -> bool {
    kdf.algorithm == GENERATED_KEY
        || ((8..=4 * 1024 * 1024).contains(&kdf.memory_kib)
            && (1..=64).contains(&kdf.iterations)
            && (1..=16).contains(&kdf.parallelism))
}

fn parse_and_open(bytes: &[u8]) {
    let Ok(key) = KeyFile::parse(bytes, "fuzz input") else {
        return;
    };
    assert!(
        documented_limits(&key.kdf),
        "accepted KDF parameters outside the documented limits: {:?}",
        key.kdf
    );
    if !cheap(&key.kdf) {
        return;
    }
    let _ = key.open(PASSWORD, "fuzz input");
    let _ = key.open(GENERATED, "fuzz input");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // The input is the key file.
        parse_and_open(rest);
        return;
    }
    // The input is the sealed master keys' plaintext, in a key file that opens with the
    // password (Argon2id at its cheapest) or with the generated key.
    let (kdf, secret) = if mode & 2 == 0 {
        let kdf = KdfParams {
            algorithm: "argon2id".into(),
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        };
        (kdf, PASSWORD)
    } else {
        (KdfParams::generated_key(), GENERATED)
    };
    let kek = kdf.derive(secret, &SALT, "fuzz").expect("cheap KDF");
    let b64 = base64::engine::general_purpose::STANDARD;
    let file = KeyFile {
        version: 1,
        created: chrono::DateTime::from_timestamp(0, 0).expect("epoch"),
        hostname: "fuzz".into(),
        username: "fuzz".into(),
        kdf,
        salt: b64.encode(SALT),
        sealed_master: b64.encode(fuzzing::seal_key_slot(&kek, rest)),
    };
    parse_and_open(&file.to_bytes());
});
