//! The sled backend: opening a database directory (waiting for a lock the
//! previous handle in this process still holds, removing half-written
//! snapshots first), the page-cache setting, the temporary arena, and
//! sled's errors as `StorageError`s.
//!
//! Crash recovery: before every open, leftover `snap.<lsn>.generating`
//! files are deleted. sled writes a snapshot under that name and renames it
//! when complete, so the rename is the snapshot's commit point; 0.34.7 would
//! otherwise take a half-written one as the newest snapshot and fail with
//! `Corruption` (sled issues #1527, #1533).

use super::tree::Tree;
use super::StorageError;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

impl From<sled::Error> for StorageError {
    fn from(error: sled::Error) -> Self {
        match error {
            sled::Error::Corruption { .. } => StorageError::Corrupt(error.to_string()),
            other => StorageError::Sled(other),
        }
    }
}

impl From<sled::transaction::TransactionError<()>> for StorageError {
    fn from(error: sled::transaction::TransactionError<()>) -> Self {
        match error {
            sled::transaction::TransactionError::Storage(error) => error.into(),
            sled::transaction::TransactionError::Abort(()) => StorageError::Aborted,
        }
    }
}

/// Deletes `snap.*.generating` files left by a crash during snapshotting.
/// Returns how many were removed.
pub fn remove_partial_snapshots(dir: &Path) -> Result<usize, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(StorageError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| StorageError::Io { path, source })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// How long `open` waits for the directory lock held by a previous handle
/// in this process: sled's background flusher lets go of the file lock a
/// moment after the last handle is dropped.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled reports a held lock as an `Other` i/o error with this text.
fn is_lock_error(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock
        || error.to_string().contains("could not acquire lock")
}

/// One temporary sled database (sled's temporary mode: its log in a file
/// under `/dev/shm` on Linux, removed when the last handle is dropped; no
/// background flusher) that holds many stores (`Store::open_in_arena`).
/// For simulations and tests.
#[derive(Clone)]
pub struct TemporaryArena {
    db: sled::Db,
}

impl TemporaryArena {
    /// A new arena whose page cache holds about `cache_bytes`.
    pub fn new(cache_bytes: u64) -> Result<TemporaryArena, StorageError> {
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(None)
            .cache_capacity(cache_bytes)
            .open()?;
        Ok(TemporaryArena { db })
    }
}

/// The page cache of a store opened by `Store::open`, unless
/// `set_cache_capacity` changed it: 16 MiB (sled's own default is 1 GiB).
/// sled counts a cached page by its encoded size, and decoded pages of
/// small entries (accounts, index entries) take several times that in
/// memory: connecting 1,000 full blocks took a process holding only the
/// store to 372 MiB with a 64 MiB cap and 226 MiB with 16 MiB
/// (`examples/store_memory.rs`; figures in BENCHMARKS.md).
pub const DEFAULT_CACHE_BYTES: u64 = 16 << 20;

static CACHE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_CACHE_BYTES);

/// Sets the page cache, in bytes, of every store `Store::open` opens from
/// now on in this process (stores already open keep theirs).
pub fn set_cache_capacity(bytes: u64) {
    CACHE_BYTES.store(bytes, Ordering::Relaxed);
}

/// The page cache `Store::open` gives a store it opens now.
pub fn cache_capacity() -> u64 {
    CACHE_BYTES.load(Ordering::Relaxed)
}

pub(crate) fn open_db(dir: &Path) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity());
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(error))
                if is_lock_error(&error) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(sled::Error::Io(error)) if is_lock_error(&error) => {
                return Err(StorageError::Locked {
                    path: dir.to_path_buf(),
                    source: error,
                })
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Opens the trees of one store: `name` prefixed by `prefix`.
pub(crate) fn open_tree(db: &sled::Db, prefix: &str, name: &str) -> Result<Tree, StorageError> {
    Ok(Tree::Sled(db.open_tree(format!("{prefix}{name}"))?))
}

impl TemporaryArena {
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }
}
