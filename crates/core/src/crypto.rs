//! Secrets at rest: AES-256-GCM sealing of connection credentials, and API-key hashing.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, Generate, KeyInit},
};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// A keyring that seals with the current key and opens with the current or any previous one,
/// so the encryption key can be rotated while values sealed under earlier keys still open.
///
/// Each key derives from a secret as SHA-256(`"syncline/secret-box/v1\0"` || secret). A sealed
/// value does not name its key: [`SecretBox::open`] tries them in turn, and AES-GCM's tag rejects
/// every key but the right one.
#[derive(Clone)]
pub struct SecretBox {
    /// The current key first (the only one that seals), then the previous ones.
    ciphers: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A sealed value could not be opened (sealed under a key not in the ring, or tampered data).
#[derive(Debug, thiserror::Error)]
#[error("stored secret could not be decrypted with any configured encryption key")]
pub struct OpenError;

impl SecretBox {
    /// A ring that seals with the key derived from `current` and also opens what was sealed
    /// under the keys derived from `previous`.
    pub fn new(current: &str, previous: &[String]) -> Self {
        let ciphers = std::iter::once(current).chain(previous.iter().map(String::as_str)).map(cipher).collect();
        Self { ciphers }
    }

    /// Encrypts `plaintext` with the current key; the random nonce is stored in front of the ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let ciphertext =
            self.ciphers[0].encrypt(&nonce, plaintext).expect("AES-GCM encryption cannot fail for in-memory data");
        [nonce.as_slice(), &ciphertext].concat()
    }

    /// Decrypts what [`SecretBox::seal`] produced under any key of the ring.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError)?;
        self.ciphers.iter().find_map(|cipher| cipher.decrypt(&nonce, ciphertext).ok()).ok_or(OpenError)
    }
}

/// The cipher of the key derived from `secret`.
fn cipher(secret: &str) -> Aes256Gcm {
    let key = Sha256::new().chain_update(b"syncline/secret-box/v1\0").chain_update(secret.as_bytes()).finalize();
    Aes256Gcm::new_from_slice(&key).expect("a SHA-256 digest is a valid AES-256 key")
}

/// The stored form of an API key: its SHA-256 digest (keys are 256-bit random, so no salt is needed).
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new random API key value, shown to its owner once.
pub fn new_api_key() -> String {
    random_key("sk")
}

/// A new random write key of an event source, shown once; stored like an API key.
pub fn new_write_key() -> String {
    random_key("wk")
}

/// 256 random bits in hex after `prefix`.
fn random_key(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &str, previous: &[&str]) -> SecretBox {
        SecretBox::new(current, &previous.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn seals_and_opens() {
        let sb = ring("deployment-key", &[]);
        let sealed = sb.seal(b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "ciphertext must not contain the plaintext");
        assert_eq!(sb.open(&sealed).expect("opens"), b"hunter2");
        assert_ne!(sb.seal(b"hunter2"), sealed, "nonces are random");
    }

    #[test]
    fn rejects_other_keys_and_tampering() {
        let sealed = ring("a", &[]).seal(b"secret");
        assert!(ring("b", &[]).open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(ring("a", &[]).open(&tampered).is_err());
        assert!(ring("a", &["b"]).open(&tampered).is_err());
        assert!(ring("a", &[]).open(b"short").is_err());
    }

    #[test]
    fn previous_keys_open_but_never_seal() {
        let old = ring("old", &[]).seal(b"secret");
        let rotated = ring("new", &["older", "old"]);
        assert_eq!(rotated.open(&old).expect("a previous key opens it"), b"secret");
        assert!(ring("new", &["older"]).open(&old).is_err(), "a ring without the old key cannot open it");

        let resealed = rotated.seal(b"secret");
        assert_eq!(ring("new", &[]).open(&resealed).expect("sealed with the current key"), b"secret");
        assert!(ring("old", &["older"]).open(&resealed).is_err(), "previous keys never seal");
    }

    #[test]
    fn api_keys_hash_deterministically() {
        let key = new_api_key();
        assert!(key.starts_with("sk_") && key.len() == 67);
        assert_eq!(hash_api_key(&key), hash_api_key(&key));
        assert_ne!(hash_api_key(&key), hash_api_key(&new_api_key()));
    }
}
