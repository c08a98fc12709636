//! Sealing: AES-256-GCM under keys that are never used twice with the same nonce.
//!
//! Every sealed unit (a pack, or a standalone object such as an index or snapshot file) gets a
//! fresh random 256-bit salt; its AES key is HKDF-SHA256(master seal key, salt). Within a pack
//! the 96-bit nonce is `domain (4 bytes) || counter (8 bytes)` where the counter is the blob's
//! byte offset in the pack, which is strictly increasing, and the header uses its own domain.
//! A (key, nonce) pair therefore repeats only if two random 256-bit salts collide.

pub mod kdf;
pub mod keys;

use hkdf::Hkdf;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::Sha256;

use crate::error::{Error, Result};

pub const SALT_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
const HKDF_INFO: &[u8] = b"lifeboat v1 sealing key";
const OBJECT_FORMAT: u8 = 1;

/// Which part of a sealed unit a ciphertext is; keeps nonce spaces apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum NonceDomain {
    Blob = 0,
    PackHeader = 1,
    Object = 2,
}

pub type Salt = [u8; SALT_LEN];

pub fn random_salt() -> Salt {
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}

/// The AES key of one sealed unit. AES-256-GCM as specified (ciphertext || 16-byte tag);
/// ring's implementation, about three times the throughput of the pure-Rust one here.
pub struct UnitCipher {
    key: LessSafeKey,
}

impl UnitCipher {
    pub fn new(master: &[u8; 32], salt: &Salt) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), master);
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        hk.expand(HKDF_INFO, &mut okm)
            .expect("HKDF output length is valid");
        let key = UnboundKey::new(&AES_256_GCM, &okm).expect("a 32-byte key is valid for AES-256");
        UnitCipher {
            key: LessSafeKey::new(key),
        }
    }

    fn nonce_bytes(domain: NonceDomain, counter: u64) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&(domain as u32).to_be_bytes());
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        nonce
    }

    fn nonce(domain: NonceDomain, counter: u64) -> Nonce {
        Nonce::assume_unique_for_key(Self::nonce_bytes(domain, counter))
    }

    /// Appends the sealed form of `plaintext` (ciphertext || tag) to `out`, encrypting in
    /// place there: no intermediate buffer.
    pub fn seal_append(
        &self,
        domain: NonceDomain,
        counter: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Self::nonce(domain, counter),
                Aad::from(aad),
                &mut out[start..],
            )
            .expect("AES-GCM accepts any in-memory message below 64 GiB");
        out.extend_from_slice(tag.as_ref());
    }

    pub fn seal(&self, domain: NonceDomain, counter: u64, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        self.seal_append(domain, counter, aad, plaintext, &mut out);
        out
    }

    pub fn open(
        &self,
        domain: NonceDomain,
        counter: u64,
        aad: &[u8],
        ciphertext: &[u8],
        object: &str,
    ) -> Result<Vec<u8>> {
        let mut buf = ciphertext.to_vec();
        self.open_in_place(domain, counter, aad, &mut buf, object)?;
        Ok(buf)
    }

    /// Authenticates and decrypts `buf` where it lies, leaving the plaintext in it.
    pub fn open_in_place(
        &self,
        domain: NonceDomain,
        counter: u64,
        aad: &[u8],
        buf: &mut Vec<u8>,
        object: &str,
    ) -> Result<()> {
        let len = self
            .key
            .open_in_place(Self::nonce(domain, counter), Aad::from(aad), buf)
            .map_err(|_| {
                Error::integrity(
                    object,
                    "authentication failed (data was altered or belongs to another repository)",
                )
            })?
            .len();
        buf.truncate(len);
        Ok(())
    }
}

/// Seals a standalone object: `format (1) || salt (32) || AES-GCM(ciphertext || tag)`.
pub fn seal_object(master: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_object_with_salt(master, aad, &random_salt(), plaintext)
}

/// [`seal_object`] with a given salt. Only the fuzz targets call it directly (their inputs must
/// seal the same way every time); everything that stores an object draws a fresh salt.
pub(crate) fn seal_object_with_salt(
    master: &[u8; 32],
    aad: &[u8],
    salt: &Salt,
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = UnitCipher::new(master, salt);
    let mut out = Vec::with_capacity(1 + SALT_LEN + plaintext.len() + TAG_LEN);
    out.push(OBJECT_FORMAT);
    out.extend_from_slice(salt);
    cipher.seal_append(NonceDomain::Object, 0, aad, plaintext, &mut out);
    out
}

fn check_sealed(data: &[u8], object: &str) -> Result<()> {
    if data.len() < 1 + SALT_LEN + TAG_LEN {
        return Err(Error::integrity(
            object,
            format!("too short to be sealed ({} bytes)", data.len()),
        ));
    }
    if data[0] != OBJECT_FORMAT {
        return Err(Error::format(
            object,
            format!("unknown sealing format {}", data[0]),
        ));
    }
    Ok(())
}

pub fn open_object(master: &[u8; 32], aad: &[u8], data: &[u8], object: &str) -> Result<Vec<u8>> {
    check_sealed(data, object)?;
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&data[1..1 + SALT_LEN]);
    UnitCipher::new(master, &salt).open(NonceDomain::Object, 0, aad, &data[1 + SALT_LEN..], object)
}

/// [`open_object`] in the sealed buffer itself: the plaintext replaces the ciphertext, so a
/// large object (an index file of millions of blobs) is not held twice.
pub fn open_object_owned(
    master: &[u8; 32],
    aad: &[u8],
    mut data: Vec<u8>,
    object: &str,
) -> Result<Vec<u8>> {
    check_sealed(&data, object)?;
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&data[1..1 + SALT_LEN]);
    data.drain(..1 + SALT_LEN);
    UnitCipher::new(master, &salt).open_in_place(NonceDomain::Object, 0, aad, &mut data, object)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_round_trip_and_tamper_detection() {
        let key = [7u8; 32];
        let sealed = seal_object(&key, b"snapshot", b"secret text");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            open_object(&key, b"snapshot", &sealed, "x").unwrap(),
            b"secret text"
        );
        assert!(
            open_object(&key, b"index", &sealed, "x").is_err(),
            "aad binds the kind"
        );
        assert!(open_object(&[8u8; 32], b"snapshot", &sealed, "x").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                open_object(&key, b"snapshot", &bad, "x").is_err(),
                "flip at {i}"
            );
        }
        assert_ne!(
            seal_object(&key, b"a", b"same"),
            seal_object(&key, b"a", b"same")
        );
    }

    #[test]
    fn nonces_of_domains_differ() {
        assert_ne!(
            UnitCipher::nonce_bytes(NonceDomain::Blob, 5),
            UnitCipher::nonce_bytes(NonceDomain::PackHeader, 5)
        );
    }

    /// Repositories written with the pure-Rust aes-gcm crate stay readable and vice versa:
    /// both are AES-256-GCM with the same nonce, additional data and tag layout.
    #[test]
    fn sealing_matches_the_reference_aes_gcm() {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let master = [3u8; 32];
        let salt = [9u8; SALT_LEN];
        let cipher = UnitCipher::new(&master, &salt);
        let sealed = cipher.seal(NonceDomain::Blob, 4096, b"aad", b"some plaintext");
        let hk = Hkdf::<Sha256>::new(Some(&salt), &master);
        let mut okm = [0u8; 32];
        hk.expand(HKDF_INFO, &mut okm).unwrap();
        let reference =
            aes_gcm::Aes256Gcm::new(aes_gcm::Key::<aes_gcm::Aes256Gcm>::from_slice(&okm));
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&4096u64.to_be_bytes());
        let expected = reference
            .encrypt(
                aes_gcm::Nonce::from_slice(&nonce),
                Payload {
                    msg: b"some plaintext",
                    aad: b"aad",
                },
            )
            .unwrap();
        assert_eq!(sealed, expected);
        let opened = cipher
            .open(NonceDomain::Blob, 4096, b"aad", &expected, "t")
            .unwrap();
        assert_eq!(opened, b"some plaintext");
    }
}
