//! The genesis hash each RPC URL served the first time the wallet signed
//! for it, kept beside the keys the way SSH keeps `known_hosts`. A
//! transaction's signature covers the genesis hash the node reports, so a
//! node that switched chains (or someone in the middle of a plain-HTTP
//! path pretending to be another chain) would otherwise get the wallet to
//! sign for a chain the user never chose.
//!
//! The file is `known_chains` in the keystore directory (mode 0600; not a
//! `.json` file, so key listings pass it over), one `URL GENESIS_HASH`
//! line per node, `#` lines ignored. It is rewritten whole, through a
//! temporary file and a rename.

use ledger::BlockHash;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The file's name inside the keystore directory.
pub const FILE_NAME: &str = "known_chains";

/// Reading or writing the file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KnownChainsError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: expected `URL GENESIS_HASH`")]
    Corrupt { path: String, line: usize },
}

/// The pinned genesis hashes, by normalized RPC URL.
#[derive(Debug)]
pub struct KnownChains {
    path: PathBuf,
    pins: BTreeMap<String, BlockHash>,
}

/// The form a URL is pinned under: trimmed, without trailing slashes, with
/// its scheme and host in lower case (they are case-insensitive; a path
/// is not).
pub fn url_key(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(slash) => rest.split_at(slash),
                None => (rest, ""),
            };
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase()
            )
        }
        None => url.to_string(),
    }
}

impl KnownChains {
    /// Reads the file in `dir`; a missing file (or directory) is empty.
    pub fn load(dir: &Path) -> Result<KnownChains, KnownChainsError> {
        let path = dir.join(FILE_NAME);
        let shown = path.display().to_string();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(KnownChainsError::Io {
                    path: shown,
                    source,
                })
            }
        };
        let mut pins = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let corrupt = || KnownChainsError::Corrupt {
                path: shown.clone(),
                line: number + 1,
            };
            let (url, hash) = line.rsplit_once(char::is_whitespace).ok_or_else(corrupt)?;
            let hash: BlockHash = hash.parse().map_err(|_| corrupt())?;
            pins.insert(url_key(url), hash);
        }
        Ok(KnownChains { path, pins })
    }

    /// The genesis hash pinned for `url`, if any.
    pub fn get(&self, url: &str) -> Option<BlockHash> {
        self.pins.get(&url_key(url)).copied()
    }

    /// Pins `genesis` for `url` and writes the file.
    pub fn pin(&mut self, url: &str, genesis: BlockHash) -> Result<(), KnownChainsError> {
        self.pins.insert(url_key(url), genesis);
        self.save()
    }

    fn save(&self) -> Result<(), KnownChainsError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| KnownChainsError::Io { path, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let mut text = String::from(
            "# gossip-ledger wallet: the genesis hash each node URL served when first used.\n\
             # A node that later reports another genesis is refused (exit 4, chain_changed)\n\
             # unless `send --chain-genesis HASH` names the new one.\n",
        );
        for (url, genesis) in &self.pins {
            text.push_str(&format!("{url} {genesis}\n"));
        }
        let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io(&temp))?;
            file.write_all(text.as_bytes()).map_err(io(&temp))?;
            file.sync_all().map_err(io(&temp))?;
            fs::rename(&temp, &self.path).map_err(io(&self.path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn urls_normalize() {
        assert_eq!(url_key("HTTP://LocalHost:8080/"), "http://localhost:8080");
        assert_eq!(url_key(" http://a.example/Path/ "), "http://a.example/Path");
    }

    #[test]
    fn pins_survive_a_reload_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let keystore = dir.path().join("keys");
        let mut known = KnownChains::load(&keystore).unwrap();
        assert_eq!(known.get("http://127.0.0.1:8080"), None);
        let genesis = BlockHash(ledger::Hash256([7; 32]));
        known.pin("http://127.0.0.1:8080/", genesis).unwrap();
        let again = KnownChains::load(&keystore).unwrap();
        assert_eq!(again.get("http://127.0.0.1:8080"), Some(genesis));
        let mode = fs::metadata(keystore.join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(keystore.join(FILE_NAME), "http://x nothex\n").unwrap();
        assert!(KnownChains::load(&keystore).is_err());
    }
}
