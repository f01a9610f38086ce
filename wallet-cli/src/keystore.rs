//! The keystore: a directory (mode 0700) holding one JSON file per key
//! (mode 0600), `<name>.json`. Each file keeps the key's name, address and
//! public key in the clear, so listing keys and resolving names to addresses
//! need no password, and the 32-byte secret only encrypted: a key derived
//! from the password with argon2id (parameters and salt stored alongside)
//! seals it with XChaCha20-Poly1305. The public key and format version are
//! bound in as associated data, so a file whose clear fields were edited or
//! mixed with another file's ciphertext fails to open instead of signing as
//! someone else. Passwords, derived keys and plaintext secrets are held in
//! `Zeroizing` buffers so they are wiped when dropped. Opening a key never
//! writes anything, so a wrong password leaves the keystore exactly as it was.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use ledger::{Address, PublicKey, SecretKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The keystore file format version.
pub const KEYSTORE_VERSION: u32 = 1;
/// Longest key name. Addresses are always longer, so a name can never be
/// mistaken for an address (see `who`).
pub const MAX_NAME_LEN: usize = 32;
/// A keystore file larger than this is not ours; refuse it before reading.
const MAX_FILE_BYTES: u64 = 64 * 1024;
const SALT_BYTES: usize = 16;
const NONCE_BYTES: usize = 24;
const SECRET_BYTES: usize = 32;
/// Ciphertext = secret + 16-byte Poly1305 tag.
const CIPHERTEXT_BYTES: usize = SECRET_BYTES + 16;
const KDF_NAME: &str = "argon2id";
const CIPHER_NAME: &str = "xchacha20-poly1305";
const AAD_DOMAIN: &[u8] = b"gossip-ledger/keystore/v1\0";

/// Argon2id cost parameters, stored in each file so they can be raised later
/// without breaking old files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about a tenth of
    /// a second here, and costly to brute-force.
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// Bounds for parameters read from a file: a hostile file must not make
    /// us allocate gigabytes or spin for minutes.
    fn check(&self) -> Result<(), KeystoreError> {
        let ok = (8..=1024 * 1024).contains(&self.m_cost_kib)
            && (1..=64).contains(&self.t_cost)
            && (1..=16).contains(&self.p_cost);
        if ok {
            Ok(())
        } else {
            Err(KeystoreError::Corrupt(
                "argon2id parameters out of range".into(),
            ))
        }
    }
}

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    #[error("invalid key name {0:?}: use 1 to 32 letters, digits, '-', '_' or '.', not starting with '.' or '-'")]
    BadName(String),
    #[error("a key named {name:?} already exists in {dir}")]
    AlreadyExists { name: String, dir: String },
    #[error("no key named {name:?} in {dir}")]
    NotFound { name: String, dir: String },
    #[error("wrong password for key {0:?}")]
    WrongPassword(String),
    #[error("keystore file {path} is damaged: {reason}")]
    CorruptFile { path: String, reason: String },
    #[error("{0}")]
    Corrupt(String),
    #[error("keystore I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// What a keystore file shows without a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub address: Address,
    pub public_key: PublicKey,
    pub path: PathBuf,
}

/// The on-disk JSON of one key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    name: String,
    /// For people reading the file; the public key is what counts.
    address: String,
    public_key: String,
    kdf: KdfSection,
    cipher: CipherSection,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfSection {
    name: String,
    /// Argon2 version number (19 = 0x13).
    version: u32,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherSection {
    name: String,
    nonce: String,
    ciphertext: String,
}

/// A keystore directory. Nothing is created until a key is stored.
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
    params: KdfParams,
}

/// `$XDG_DATA_HOME/gossip-ledger/keystore`, or
/// `~/.local/share/gossip-ledger/keystore` when that is unset.
pub fn default_dir() -> Option<PathBuf> {
    let data_dir = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".local").join("share"))
        })?;
    Some(data_dir.join("gossip-ledger").join("keystore"))
}

/// Checks a key name (see `KeystoreError::BadName`).
pub fn validate_name(name: &str) -> Result<(), KeystoreError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(allowed)
        && !name.starts_with('.')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::BadName(name.to_string()))
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Keystore {
    pub fn new(dir: impl Into<PathBuf>) -> Keystore {
        Keystore {
            dir: dir.into(),
            params: KdfParams::DEFAULT,
        }
    }

    /// Uses other argon2id costs for keys stored from now on (tests use
    /// cheap ones; files always record theirs).
    pub fn with_kdf_params(mut self, params: KdfParams) -> Keystore {
        self.params = params;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of key `name`.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Encrypts `secret` under `password` into a new file `<name>.json`.
    /// Refuses to replace an existing key.
    pub fn store(
        &self,
        name: &str,
        secret: &SecretKey,
        password: &[u8],
        prefix: &str,
    ) -> Result<KeyInfo, KeystoreError> {
        validate_name(name)?;
        self.ensure_dir()?;
        let path = self.path_of(name);
        if path.exists() {
            return Err(KeystoreError::AlreadyExists {
                name: name.to_string(),
                dir: self.dir.display().to_string(),
            });
        }
        let public_key = secret.public_key();
        let address = Address::from_public_key(&public_key);

        let mut salt = [0u8; SALT_BYTES];
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let key = derive_key(password, &salt, self.params)?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
        let plaintext = Zeroizing::new(secret.to_bytes());
        let aad = associated_data(&public_key);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_slice(),
                    aad: &aad,
                },
            )
            .map_err(|_| KeystoreError::Kdf("encryption failed".into()))?;

        let file = KeyFile {
            version: KEYSTORE_VERSION,
            name: name.to_string(),
            address: address.to_bech32(prefix),
            public_key: hex::encode(public_key.0),
            kdf: KdfSection {
                name: KDF_NAME.into(),
                version: 0x13,
                m_cost_kib: self.params.m_cost_kib,
                t_cost: self.params.t_cost,
                p_cost: self.params.p_cost,
                salt: hex::encode(salt),
            },
            cipher: CipherSection {
                name: CIPHER_NAME.into(),
                nonce: hex::encode(nonce),
                ciphertext: hex::encode(ciphertext),
            },
        };
        let mut text = serde_json::to_string_pretty(&file)
            .map_err(|error| KeystoreError::Corrupt(error.to_string()))?;
        text.push('\n');
        self.write_new(&path, text.as_bytes())?;
        Ok(KeyInfo {
            name: name.to_string(),
            address,
            public_key,
            path,
        })
    }

    /// The clear part of key `name`; no password needed.
    pub fn info(&self, name: &str) -> Result<KeyInfo, KeystoreError> {
        validate_name(name)?;
        let path = self.path_of(name);
        let file = self.read_file(name, &path)?;
        self.info_from(&file, &path)
    }

    /// Decrypts key `name`. A wrong password is `WrongPassword`; nothing on
    /// disk changes either way.
    pub fn unlock(&self, name: &str, password: &[u8]) -> Result<SecretKey, KeystoreError> {
        validate_name(name)?;
        let path = self.path_of(name);
        let file = self.read_file(name, &path)?;
        let info = self.info_from(&file, &path)?;
        let corrupt = |reason: &str| KeystoreError::CorruptFile {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        if file.kdf.name != KDF_NAME || file.kdf.version != 0x13 {
            return Err(corrupt("unsupported key derivation"));
        }
        if file.cipher.name != CIPHER_NAME {
            return Err(corrupt("unsupported cipher"));
        }
        let params = KdfParams {
            m_cost_kib: file.kdf.m_cost_kib,
            t_cost: file.kdf.t_cost,
            p_cost: file.kdf.p_cost,
        };
        params.check()?;
        let salt = hex::decode(&file.kdf.salt).map_err(|_| corrupt("salt is not hex"))?;
        if !(SALT_BYTES..=64).contains(&salt.len()) {
            return Err(corrupt("salt has the wrong length"));
        }
        let nonce = hex::decode(&file.cipher.nonce).map_err(|_| corrupt("nonce is not hex"))?;
        if nonce.len() != NONCE_BYTES {
            return Err(corrupt("nonce has the wrong length"));
        }
        let ciphertext =
            hex::decode(&file.cipher.ciphertext).map_err(|_| corrupt("ciphertext is not hex"))?;
        if ciphertext.len() != CIPHERTEXT_BYTES {
            return Err(corrupt("ciphertext has the wrong length"));
        }
        let key = derive_key(password, &salt, params)?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
        let aad = associated_data(&info.public_key);
        // The AEAD tag cannot tell a wrong password from a tampered file;
        // the wrong password is by far the likelier cause.
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeystoreError::WrongPassword(name.to_string()))?,
        );
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        if plaintext.len() != SECRET_BYTES {
            return Err(corrupt("decrypted secret has the wrong length"));
        }
        bytes.copy_from_slice(&plaintext);
        let secret = SecretKey::from_bytes(&bytes);
        if secret.public_key() != info.public_key {
            return Err(corrupt("secret does not match the public key"));
        }
        Ok(secret)
    }

    /// Every key, sorted by name. A missing directory is an empty keystore;
    /// any unreadable key file makes the whole listing fail (see `scan` for
    /// the forgiving form).
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeystoreError> {
        self.scan()?.into_iter().collect()
    }

    /// Every key file, sorted by file name, each read on its own so one
    /// damaged file does not hide the others.
    pub fn scan(&self) -> Result<Vec<Result<KeyInfo, KeystoreError>>, KeystoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(&self.dir)(error)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error(&self.dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|name| name.strip_suffix(".json"))
            else {
                continue;
            };
            if validate_name(name).is_err() {
                continue; // temp files and strangers
            }
            keys.push((name.to_string(), self.info(name)));
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keys.into_iter().map(|(_, key)| key).collect())
    }

    /// The key whose address is `address`, if any; damaged files are
    /// passed over.
    pub fn find_by_address(&self, address: &Address) -> Result<Option<KeyInfo>, KeystoreError> {
        Ok(self
            .scan()?
            .into_iter()
            .filter_map(Result::ok)
            .find(|key| &key.address == address))
    }

    fn info_from(&self, file: &KeyFile, path: &Path) -> Result<KeyInfo, KeystoreError> {
        let corrupt = |reason: &str| KeystoreError::CorruptFile {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        if file.version != KEYSTORE_VERSION {
            return Err(corrupt(&format!("unsupported version {}", file.version)));
        }
        let mut public_key = [0u8; 32];
        hex::decode_to_slice(&file.public_key, &mut public_key)
            .map_err(|_| corrupt("public_key is not 64 hex characters"))?;
        let public_key = PublicKey(public_key);
        Ok(KeyInfo {
            name: file.name.clone(),
            address: Address::from_public_key(&public_key),
            public_key,
            path: path.to_path_buf(),
        })
    }

    fn read_file(&self, name: &str, path: &Path) -> Result<KeyFile, KeystoreError> {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound {
                    name: name.to_string(),
                    dir: self.dir.display().to_string(),
                })
            }
            Err(error) => return Err(io_error(path)(error)),
        };
        let length = file.metadata().map_err(io_error(path))?.len();
        if length > MAX_FILE_BYTES {
            return Err(KeystoreError::CorruptFile {
                path: path.display().to_string(),
                reason: format!("{length} bytes is too large for a key file"),
            });
        }
        let mut text = String::new();
        file.take(MAX_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(io_error(path))?;
        let parsed: KeyFile =
            serde_json::from_str(&text).map_err(|error| KeystoreError::CorruptFile {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?;
        if parsed.name != name {
            return Err(KeystoreError::CorruptFile {
                path: path.display().to_string(),
                reason: format!("it names key {:?}", parsed.name),
            });
        }
        Ok(parsed)
    }

    fn ensure_dir(&self) -> Result<(), KeystoreError> {
        if !self.dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(io_error(&self.dir))?;
        }
        // The leaf must be private even when the user pointed us at an
        // existing directory.
        let metadata = fs::metadata(&self.dir).map_err(io_error(&self.dir))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(io_error(&self.dir))?;
        }
        Ok(())
    }

    /// Writes a new file atomically: a 0600 temp file, synced, then
    /// hard-linked into place (which fails rather than replace a key that
    /// appeared meanwhile), then the temp name removed.
    fn write_new(&self, path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
        let temp = self.dir.join(format!(
            ".{}.{}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io_error(&temp))?;
            file.write_all(bytes).map_err(io_error(&temp))?;
            file.sync_all().map_err(io_error(&temp))?;
            match fs::hard_link(&temp, path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(KeystoreError::AlreadyExists {
                        name: path
                            .file_stem()
                            .map(|stem| stem.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        dir: self.dir.display().to_string(),
                    })
                }
                Err(error) => Err(io_error(path)(error)),
            }
        })();
        let _ = fs::remove_file(&temp);
        result?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn associated_data(public_key: &PublicKey) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 4 + 32);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(&KEYSTORE_VERSION.to_le_bytes());
    aad.extend_from_slice(public_key.as_bytes());
    aad
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|error| KeystoreError::Kdf(error.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, key.as_mut_slice())
        .map_err(|error| KeystoreError::Kdf(error.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// Cheap parameters: the tests are about the format, not the cost.
    const TEST_PARAMS: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn keystore(dir: &Path) -> Keystore {
        Keystore::new(dir.join("keys")).with_kdf_params(TEST_PARAMS)
    }

    #[test]
    fn stores_and_unlocks_across_instances() {
        let temp = tempfile::tempdir().unwrap();
        let secret = SecretKey::generate();
        let stored = keystore(temp.path())
            .store("alice", &secret, b"hunter2", "dev")
            .unwrap();
        // A fresh instance (as in a later run) opens the same file.
        let reopened = Keystore::new(temp.path().join("keys"));
        let info = reopened.info("alice").unwrap();
        assert_eq!(info, stored);
        assert_eq!(info.address, Address::from_public_key(&secret.public_key()));
        let unlocked = reopened.unlock("alice", b"hunter2").unwrap();
        assert_eq!(unlocked.to_bytes(), secret.to_bytes());
        assert_eq!(reopened.list().unwrap(), vec![stored]);
    }

    #[test]
    fn files_and_directory_are_private() {
        let temp = tempfile::tempdir().unwrap();
        let store = keystore(temp.path());
        let info = store
            .store("bob", &SecretKey::generate(), b"pw", "dev")
            .unwrap();
        let dir_mode = fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
        let file_mode = fs::metadata(&info.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(file_mode, 0o600);
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("bob.json")]);
    }

    #[test]
    fn the_file_holds_the_secret_in_no_encoding() {
        let temp = tempfile::tempdir().unwrap();
        let secret = SecretKey::generate();
        let bytes = secret.to_bytes();
        let info = keystore(temp.path())
            .store("carol", &secret, b"pw", "dev")
            .unwrap();
        let file = fs::read(&info.path).unwrap();
        let text = String::from_utf8(file.clone()).unwrap().to_lowercase();

        assert!(!file.windows(32).any(|window| window == bytes), "raw bytes");
        assert!(!text.contains(&hex::encode(bytes)), "hex");
        // Base64 of the secret as it would appear at any alignment inside a
        // longer base64 string: encode with 0, 1 and 2 leading bytes and keep
        // the characters that depend on the secret only.
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ];
        let original = String::from_utf8(file).unwrap();
        for engine in engines {
            for shift in 0..3usize {
                let mut input = vec![0u8; shift];
                input.extend_from_slice(&bytes);
                let encoded = engine.encode(&input);
                let start = (shift * 4).div_ceil(3);
                let core = &encoded[start..start + 40];
                assert!(!original.contains(core), "base64 shift {shift}");
            }
        }
        // Nor the bytes in reverse order, as a little-endian dump would show.
        let mut reversed = bytes;
        reversed.reverse();
        assert!(!text.contains(&hex::encode(reversed)));
    }

    #[test]
    fn wrong_password_fails_and_changes_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let store = keystore(temp.path());
        let info = store
            .store("dave", &SecretKey::generate(), b"right", "dev")
            .unwrap();
        let before = fs::read(&info.path).unwrap();
        let modified = fs::metadata(&info.path).unwrap().modified().unwrap();
        let error = store.unlock("dave", b"wrong").unwrap_err();
        assert!(
            matches!(error, KeystoreError::WrongPassword(_)),
            "{error:?}"
        );
        assert_eq!(fs::read(&info.path).unwrap(), before);
        assert_eq!(
            fs::metadata(&info.path).unwrap().modified().unwrap(),
            modified
        );
        assert!(store.unlock("dave", b"right").is_ok());
    }

    #[test]
    fn tampering_is_detected() {
        let temp = tempfile::tempdir().unwrap();
        let store = keystore(temp.path());
        let info = store
            .store("erin", &SecretKey::generate(), b"pw", "dev")
            .unwrap();
        let other = SecretKey::generate();
        // Swap in another public key: the associated data no longer matches.
        let text = fs::read_to_string(&info.path).unwrap();
        let swapped = text.replace(
            &hex::encode(info.public_key.0),
            &hex::encode(other.public_key().0),
        );
        fs::write(&info.path, swapped).unwrap();
        assert!(store.unlock("erin", b"pw").is_err());
    }

    #[test]
    fn refuses_duplicates_bad_names_and_hostile_files() {
        let temp = tempfile::tempdir().unwrap();
        let store = keystore(temp.path());
        store
            .store("frank", &SecretKey::generate(), b"pw", "dev")
            .unwrap();
        assert!(matches!(
            store.store("frank", &SecretKey::generate(), b"pw", "dev"),
            Err(KeystoreError::AlreadyExists { .. })
        ));
        for bad in ["", ".hidden", "-x", "a/b", "dev:1", "a b", &"x".repeat(33)] {
            assert!(
                matches!(validate_name(bad), Err(KeystoreError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            store.info("nobody"),
            Err(KeystoreError::NotFound { .. })
        ));
        fs::write(store.path_of("junk"), "{not json").unwrap();
        assert!(matches!(
            store.info("junk"),
            Err(KeystoreError::CorruptFile { .. })
        ));
        // A damaged file fails the strict listing but not the scan.
        assert!(store.list().is_err());
        let scanned = store.scan().unwrap();
        assert_eq!(scanned.len(), 2);
        assert!(scanned[0].as_ref().is_ok_and(|key| key.name == "frank"));
        assert!(scanned[1].is_err());
        // Absurd argon2 costs are refused before any work is done.
        let text = fs::read_to_string(store.path_of("frank")).unwrap();
        let greedy = text.replace("\"m_cost_kib\": 64", "\"m_cost_kib\": 4000000000");
        fs::write(store.path_of("frank"), greedy).unwrap();
        assert!(matches!(
            store.unlock("frank", b"pw"),
            Err(KeystoreError::Corrupt(_))
        ));
    }

    #[test]
    fn missing_directory_lists_empty() {
        let temp = tempfile::tempdir().unwrap();
        assert!(keystore(&temp.path().join("nowhere"))
            .list()
            .unwrap()
            .is_empty());
    }
}
