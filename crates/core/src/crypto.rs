//! Secrets at rest: AES-256-GCM sealing of connection credentials, and API-key hashing.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, Generate, KeyInit},
};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// Seals and opens secrets with a key derived from the deployment's secret.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A sealed value could not be opened (wrong key or tampered data).
#[derive(Debug, thiserror::Error)]
#[error("stored secret could not be decrypted with the configured key")]
pub struct OpenError;

impl SecretBox {
    /// Derives the encryption key from `secret` (the deployment key).
    pub fn new(secret: &str) -> Self {
        let key = Sha256::new().chain_update(b"syncline/secret-box/v1\0").chain_update(secret.as_bytes()).finalize();
        let cipher = Aes256Gcm::new_from_slice(&key).expect("a SHA-256 digest is a valid AES-256 key");
        Self { cipher }
    }

    /// Encrypts `plaintext`; the random nonce is stored in front of the ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let ciphertext =
            self.cipher.encrypt(&nonce, plaintext).expect("AES-GCM encryption cannot fail for in-memory data");
        [nonce.as_slice(), &ciphertext].concat()
    }

    /// Decrypts what [`SecretBox::seal`] produced.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError)?;
        self.cipher.decrypt(&nonce, ciphertext).map_err(|_| OpenError)
    }
}

/// The stored form of an API key: its SHA-256 digest (keys are 256-bit random, so no salt is needed).
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new random API key value, shown to its owner once.
pub fn new_api_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("sk_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let sb = SecretBox::new("deployment-key");
        let sealed = sb.seal(b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "ciphertext must not contain the plaintext");
        assert_eq!(sb.open(&sealed).expect("opens"), b"hunter2");
        assert_ne!(sb.seal(b"hunter2"), sealed, "nonces are random");
    }

    #[test]
    fn rejects_other_keys_and_tampering() {
        let sealed = SecretBox::new("a").seal(b"secret");
        assert!(SecretBox::new("b").open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(SecretBox::new("a").open(&tampered).is_err());
        assert!(SecretBox::new("a").open(b"short").is_err());
    }

    #[test]
    fn api_keys_hash_deterministically() {
        let key = new_api_key();
        assert!(key.starts_with("sk_") && key.len() == 67);
        assert_eq!(hash_api_key(&key), hash_api_key(&key));
        assert_ne!(hash_api_key(&key), hash_api_key(&new_api_key()));
    }
}
