//! ed25519 keys and signatures. Verification always uses `verify_strict`
//! (rejects small-order keys, small-order or non-canonical `R`, and
//! non-canonical `s`), so every node accepts exactly the same signatures.
//!
//! Many signatures are checked with `verify_many`, which spreads strict
//! per-signature checks over the cores. It deliberately does not use the
//! ed25519 batch equation: with random coefficients that equation can accept
//! a crafted signature whose points carry a small torsion component, which
//! `verify_strict` rejects, and a rule that holds only with probability is a
//! chain split waiting to happen. Making the batch exact needs a torsion check
//! per point, which costs about what the batch saves (see BENCHMARKS.md).
//!
//! Fuzz builds only (`--cfg fuzzing`, which `cargo fuzz` sets and nothing
//! else does): signing and verifying use [`fuzz_stand_in_signature`], a
//! cheap deterministic stand-in, so a fuzzer can reach the code behind a
//! signature check, as rust-bitcoin's `secp256k1_fuzz` does. The node's
//! binary refuses to compile with that cfg, and in every other build the
//! stand-in is just 64 bytes that do not verify (`tests/fuzz_cfg.rs`).

// Fuzz builds leave the ed25519 verification path unused.
#![cfg_attr(fuzzing, allow(dead_code, unused_imports))]

use crate::hash::Hash256;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// A raw 32-byte ed25519 public key as carried in transactions. It is only
/// decompressed when a signature is checked, so any bytes can be decoded.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// A raw 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

/// An ed25519 secret key. The inner key zeroizes itself on drop.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

/// A signature that does not verify under the strict rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct SignatureError;

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Strict verification of `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        #[cfg(fuzzing)]
        return match *signature == fuzz_stand_in_signature(self, message) {
            true => Ok(()),
            false => Err(SignatureError),
        };
        #[cfg(not(fuzzing))]
        self.verify_ed25519(message, signature)
    }

    #[cfg(not(fuzzing))]
    fn verify_ed25519(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = decompressed(self).ok_or(SignatureError)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature)
            .map_err(|_| SignatureError)
    }
}

/// Most distinct keys kept decompressed.
const DECOMPRESSED_KEYS_CAPACITY: usize = 8_192;

/// Decompressed public keys of recent signers, shared by the whole process.
/// Decompressing the key is one of the two point decompressions in every
/// strict verification, and a busy sender signs many transactions (the
/// mempool and then blocks check each of them). The cache changes no
/// verdict: it holds exactly what `VerifyingKey::from_bytes` returns, and
/// keys that fail to decompress are not kept.
fn decompressed(key: &PublicKey) -> Option<VerifyingKey> {
    static KEYS: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| Mutex::new(HashMap::new()));
    let lock = || crate::sync::lock(keys);
    if let Some(known) = lock().get(&key.0) {
        return Some(*known);
    }
    let fresh = VerifyingKey::from_bytes(&key.0).ok()?;
    let mut keys = lock();
    if keys.len() >= DECOMPRESSED_KEYS_CAPACITY {
        // Crude but bounded; a full cache only costs decompressions.
        keys.clear();
    }
    keys.insert(key.0, fresh);
    Some(fresh)
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PublicKey({})", hex::encode(self.0))
    }
}

impl Default for Signature {
    fn default() -> Self {
        Signature([0; 64])
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Signature({})", hex::encode(self.0))
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(bytes))
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> SecretKey {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The secret of a deterministic key: SHA-256 of `seed`.
    pub fn from_seed(seed: &str) -> SecretKey {
        SecretKey::from_bytes(&Hash256::digest(seed.as_bytes()).0)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        #[cfg(fuzzing)]
        return fuzz_stand_in_signature(&self.public_key(), message);
        #[cfg(not(fuzzing))]
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "SecretKey({})",
            self.public_key()
                .0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }
}

/// The signature that fuzz builds (`cfg(fuzzing)`) make and accept in
/// place of ed25519: SHA-256 of a tag, the key and the message, then 32
/// zero bytes. In any other build it is refused like any bad signature.
pub fn fuzz_stand_in_signature(key: &PublicKey, message: &[u8]) -> Signature {
    let digest = Hash256::digest_parts(&[b"gossip-ledger fuzz stand-in", &key.0, message]);
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&digest.0);
    Signature(bytes)
}

/// Checks every `(public key, message, signature)` strictly, in parallel over
/// the available cores. On failure returns the index of the first bad item.
pub fn verify_many<M: AsRef<[u8]> + Sync>(
    items: &[(PublicKey, M, Signature)],
) -> Result<(), usize> {
    // Below a few dozen signatures a thread costs more than it saves.
    let threads = if items.len() < 64 {
        1
    } else {
        available_threads()
    };
    if threads == 1 {
        return verify_range(items, 0);
    }
    let chunk = items.len().div_ceil(threads);
    let results: Vec<Result<(), usize>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(index, part)| scope.spawn(move || verify_range(part, index * chunk)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(Err(0)))
            .collect()
    });
    match results.into_iter().filter_map(Result::err).min() {
        Some(first_bad) => Err(first_bad),
        None => Ok(()),
    }
}

/// The number of cores, asked once: on Linux the standard library reads
/// cgroup files to answer, which cost about 3% of a sync's signature
/// checking when it was asked for every block.
fn available_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn verify_range<M: AsRef<[u8]>>(
    items: &[(PublicKey, M, Signature)],
    offset: usize,
) -> Result<(), usize> {
    for (index, (key, message, signature)) in items.iter().enumerate() {
        key.verify(message.as_ref(), signature)
            .map_err(|_| offset + index)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_strictly() {
        let key = SecretKey::from_seed("test");
        let signature = key.sign(b"hello");
        assert!(key.public_key().verify(b"hello", &signature).is_ok());
        assert!(key.public_key().verify(b"hellp", &signature).is_err());
        // The identity point is a small-order key: strict verification refuses
        // it even with a signature that satisfies the loose equation.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        assert!(PublicKey(identity)
            .verify(b"any", &Signature(forged))
            .is_err());
    }

    #[test]
    fn verify_many_finds_the_first_bad_item() {
        let key = SecretKey::from_seed("many");
        let mut items: Vec<(PublicKey, Vec<u8>, Signature)> = (0..200u32)
            .map(|i| {
                let message = i.to_le_bytes().to_vec();
                (key.public_key(), message.clone(), key.sign(&message))
            })
            .collect();
        assert_eq!(verify_many(&items), Ok(()));
        items[150].1 = b"tampered".to_vec();
        items[170].1 = b"tampered".to_vec();
        assert_eq!(verify_many(&items), Err(150));
    }
}
