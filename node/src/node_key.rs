//! The node key: a persistent ed25519 key that identifies this node to its
//! peers (node id = hex of its public key). It lives in the data dir as
//! `node_key`, 64 hex characters, created once with mode 0600 (written to a
//! temporary file first and renamed, so a crash never leaves half a key).

use ledger::SecretKey;
use std::io::Write;
use std::path::Path;

/// File name of the node key inside the data dir.
pub const NODE_KEY_FILE: &str = "node_key";

/// Why the node key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    #[error("cannot read node key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write node key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("node key {path} is not 64 hex characters; delete it to make a new one")]
    Corrupt { path: String },
}

/// Loads the key from `data_dir`, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, NodeKeyError> {
    let path = data_dir.join(NODE_KEY_FILE);
    let display = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut bytes)
                .map_err(|_| NodeKeyError::Corrupt { path: display })?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let temporary = data_dir.join(format!("{NODE_KEY_FILE}.tmp"));
            let write = |source| NodeKeyError::Write {
                path: display.clone(),
                source,
            };
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary).map_err(write)?;
            file.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())
                .map_err(write)?;
            file.sync_all().map_err(write)?;
            std::fs::rename(&temporary, &path).map_err(write)?;
            Ok(key)
        }
        Err(source) => Err(NodeKeyError::Read {
            path: display,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(NODE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(NODE_KEY_FILE), "zz").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(NodeKeyError::Corrupt { .. })
        ));
    }
}
