//! The sled-backed store: the only module that names sled. It owns the
//! on-disk layout and makes every change of the best chain atomic.
//!
//! Trees (keys and values are canonical encodings unless noted):
//! - `blocks`: block hash -> `Block`. Every stored block, on any branch.
//! - `block_index`: block hash -> `IndexEntry` (header, cumulative work,
//!   status valid / invalid / data missing, first-seen sequence number).
//! - `best_chain`: height (u64 big-endian, so keys sort by height) -> hash.
//! - `accounts`: address (20 bytes) -> `Account`. Default accounts are
//!   never stored, so iteration order is address order and a digest over
//!   it is canonical.
//! - `tx_index`: txid -> `TxIndexEntry` (best chain only): the
//!   `TxLocation` and the byte span of the tx inside its block's stored
//!   encoding (`encoding::tx_spans`), so a lookup decodes that tx alone.
//!   Entries written before the span was added hold a bare `TxLocation`
//!   and are still read (by decoding the block).
//! - `address_txs`: address ++ height (u64 BE) -> block hash ++ `0x01` ++,
//!   for each of the block's txs that the address sent or received, in
//!   ascending position, (position, offset, length) as u32 BE; a reverse
//!   scan of an address prefix is its history, newest first, and a range
//!   below a height is the page after a cursor. One key per address and
//!   block, not per tx: sled's cost is per key, and busy addresses appear
//!   many times in one block. (Older entries hold bare u32 positions with
//!   no tag byte; their length after the hash is a multiple of 4, never 1
//!   more, so both forms are told apart and read.)
//! - `undo`: block hash -> `BlockUndo`, for blocks on the best chain.
//! - `meta`: `genesis`, `chain_name`, `tip`, `indexed` (see below), and
//!   `state`: a `StateRecord` (tip, height, and the state digest
//!   accumulator with the account count and supply), rewritten in the same
//!   transaction as every change of the accounts, so `GET /v1/state` is
//!   one read that can never mix two tips.
//! - `aux/<name>`: free key-value trees for the node (address book, node
//!   key).
//!
//! Connecting or disconnecting one block is ONE sled transaction over the
//! consensus trees (accounts, undo, best_chain, meta/tip), so after a crash
//! the store holds either the whole block or none of it, and `meta/tip`
//! always names the block the account state matches. A few consecutive
//! blocks may also connect in one transaction (`connect_blocks`): then the
//! store holds all of them or none. The tx and address
//! indexes (most of a block's keys: one per tx) are written right after,
//! then `meta/indexed` moves to the block; every best-chain block up to
//! `meta/indexed` is indexed, so `Chain::open` finishes (again, entries are
//! idempotent) the indexing a crash interrupted.
//!
//! Durability: sled 0.34.7's `flush()` uses `sync_file_range`, not `fsync`,
//! and its background flusher runs every 500 ms. After a power loss or
//! SIGKILL the last fraction of a second of connected blocks may be gone;
//! the store then reopens consistent at an earlier tip and the node fetches
//! the missing blocks from its peers again.
//!
//! Memory: sled keeps a page cache whose default, 1 GiB, is larger than
//! everything else a node holds. `Store::open` caps it at
//! `cache_capacity()` (`DEFAULT_CACHE_BYTES` unless the process set
//! another with `set_cache_capacity`, as the node does for `--db-cache-mb`).
//! sled counts the cache by the size of the pages it holds, not by the
//! allocator's view, so the process's resident memory can exceed the cap.
//!
//! Crash recovery: before every open, leftover `snap.<lsn>.generating`
//! files are deleted. sled writes a snapshot under that name and renames it
//! when complete, so the rename is the snapshot's commit point; 0.34.7 would
//! otherwise take a half-written one as the newest snapshot and fail with
//! `Corruption` (sled issues #1527, #1533).

use crate::address::Address;
use crate::block::{Block, Header};
use crate::encoding::{self, Decode, Encode};
use crate::hash::{BlockHash, TxId};
use crate::state::{Account, AccountSource, BlockStateChange, BlockUndo, StateDigester};
use crate::target::Work;
use crate::tx::Transaction;
use crate::Height;
use sled::Transactional;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What we know about a stored block's validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum BlockStatus {
    /// Stored and passed every check that does not need account state; it
    /// was fully validated if it is, or ever was, on the best chain.
    Valid,
    /// Failed a check, or descends from a block that did.
    Invalid,
    /// Indexed but its body is not in the store.
    DataMissing,
}

/// One block of [`Store::connect_blocks`]: its undo record and, for a block
/// that has just arrived, the body and index entry to write with it.
pub struct ConnectRecord<'a> {
    pub hash: &'a BlockHash,
    pub block: &'a Block,
    pub undo: &'a BlockUndo,
    pub new_body: Option<&'a IndexEntry>,
}

/// One entry of the block index.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct IndexEntry {
    pub header: Header,
    /// Work of the chain from genesis up to and including this block.
    pub total_work: Work,
    pub status: BlockStatus,
    /// Order in which blocks were first stored; fork-choice ties go to the
    /// lower number (first seen).
    pub seq: u64,
}

/// Where a confirmed transaction sits on the best chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TxLocation {
    pub block_hash: BlockHash,
    pub height: Height,
    /// Position in the block's transaction list.
    pub index: u32,
}

/// A `tx_index` value: where the tx is, and its bytes' (offset, length)
/// in the block's stored encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
struct TxIndexEntry {
    location: TxLocation,
    offset: u32,
    len: u32,
}

/// `meta/state`: the account state's summary as of `tip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StateRecord {
    pub tip: BlockHash,
    pub height: Height,
    pub digest: StateDigester,
}

/// (offset, length) of a tx's bytes in its block's stored encoding.
type TxSpan = (u32, u32);

/// The tag byte after the block hash in an `address_txs` value that
/// carries tx spans.
const ADDRESS_ENTRY_WITH_SPANS: u8 = 1;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("sled error: {0}")]
    Sled(#[source] sled::Error),
    #[error("sled transaction aborted")]
    Aborted,
    #[error("{} is in use by another process (could not lock it: {source})", path.display())]
    Locked {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

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

const META_GENESIS: &[u8] = b"genesis";
const META_CHAIN_NAME: &[u8] = b"chain_name";
const META_TIP: &[u8] = b"tip";
const META_INDEXED: &[u8] = b"indexed";
const META_STATE: &[u8] = b"state";

/// The store. Cloning is cheap (sled trees are shared handles); only the
/// chain writer calls the mutating methods.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    blocks: sled::Tree,
    index: sled::Tree,
    best_chain: sled::Tree,
    accounts: sled::Tree,
    tx_index: sled::Tree,
    address_txs: sled::Tree,
    undo: sled::Tree,
    meta: sled::Tree,
    /// Prefix of the aux trees' names (stores in one arena keep apart).
    tree_prefix: String,
    path: PathBuf,
    /// Block bodies read so far (`block`, `block_bytes`, `tx`), shared by
    /// every clone: what proves a lookup answered from the indexes alone.
    block_reads: Arc<AtomicU64>,
    /// `meta/state` as last committed, shared by every clone, so
    /// `state_record` touches no sled lock: every sled read takes the read
    /// side of one process-wide lock whose write side a transaction holds
    /// while it commits (and a commit may wait for the flusher's write-out),
    /// and `GET /v1/state` must not queue behind that. Set only after the
    /// sled commit it mirrors succeeded.
    state: Arc<std::sync::Mutex<Option<StateRecord>>>,
}

fn decode_stored<T: Decode<()>>(bytes: &[u8], what: &str) -> Result<T, StorageError> {
    encoding::decode(bytes).map_err(|error| StorageError::Corrupt(format!("{what}: {error}")))
}

fn hash_from_bytes(bytes: &[u8], what: &str) -> Result<BlockHash, StorageError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what}: expected 32 bytes")))?;
    Ok(BlockHash(crate::hash::Hash256(array)))
}

fn address_tx_key(address: &Address, height: Height) -> [u8; 28] {
    let mut key = [0u8; 28];
    key[..20].copy_from_slice(&address.0);
    key[20..28].copy_from_slice(&height.to_be_bytes());
    key
}

/// For each address a block touches, the positions of its txs, ascending.
fn positions_by_address(block: &Block) -> std::collections::BTreeMap<Address, Vec<u32>> {
    let mut map: std::collections::BTreeMap<Address, Vec<u32>> = std::collections::BTreeMap::new();
    for (position, tx) in block.txs.iter().enumerate() {
        let position = position as u32;
        for address in [tx.sender(), tx.to] {
            let positions = map.entry(address).or_default();
            // A self-transfer names the same address twice.
            if positions.last() != Some(&position) {
                positions.push(position);
            }
        }
    }
    map
}

/// Decodes the tx at `span` of a block's stored bytes; `None` when the
/// span lies outside them.
fn tx_in(
    block_bytes: &[u8],
    (offset, len): (u32, u32),
) -> Result<Option<Transaction>, StorageError> {
    let start = offset as usize;
    let Some(bytes) = start
        .checked_add(len as usize)
        .and_then(|end| block_bytes.get(start..end))
    else {
        return Ok(None);
    };
    decode_stored(bytes, "indexed transaction").map(Some)
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
/// (`examples/store_memory.rs`, BENCHMARKS.md, issue 16).
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

fn open_db(dir: &Path) -> Result<sled::Db, StorageError> {
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

impl Store {
    /// Opens (creating if needed) the store in `dir`, after removing any
    /// half-written snapshot files.
    pub fn open(dir: &Path) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let removed = remove_partial_snapshots(dir)?;
        if removed > 0 {
            tracing::warn!(removed, dir = %dir.display(), "removed half-written sled snapshot files");
        }
        let db = open_db(dir)?;
        let store = Store {
            blocks: db.open_tree("blocks")?,
            index: db.open_tree("block_index")?,
            best_chain: db.open_tree("best_chain")?,
            accounts: db.open_tree("accounts")?,
            tx_index: db.open_tree("tx_index")?,
            address_txs: db.open_tree("address_txs")?,
            undo: db.open_tree("undo")?,
            meta: db.open_tree("meta")?,
            tree_prefix: String::new(),
            db,
            path: dir.to_path_buf(),
            block_reads: Arc::new(AtomicU64::new(0)),
            state: Arc::new(std::sync::Mutex::new(None)),
        };
        store.ensure_state_record()?;
        Ok(store)
    }

    /// A store inside `arena`, its trees named under `name/`: gone when
    /// the arena's last handle is dropped. Many such stores share one sled
    /// database (one page cache, one log), so a simulation can hold
    /// thousands; nothing survives.
    pub fn open_in_arena(arena: &TemporaryArena, name: &str) -> Result<Store, StorageError> {
        let db = arena.db.clone();
        let tree = |what: &str| db.open_tree(format!("{name}/{what}"));
        let store = Store {
            blocks: tree("blocks")?,
            index: tree("block_index")?,
            best_chain: tree("best_chain")?,
            accounts: tree("accounts")?,
            tx_index: tree("tx_index")?,
            address_txs: tree("address_txs")?,
            undo: tree("undo")?,
            meta: tree("meta")?,
            tree_prefix: format!("{name}/"),
            db,
            path: PathBuf::from(format!("(temporary)/{name}")),
            block_reads: Arc::new(AtomicU64::new(0)),
            state: Arc::new(std::sync::Mutex::new(None)),
        };
        Ok(store)
    }

    /// Writes `meta/state` from a full scan of the accounts when a store
    /// from before it lacks one (once; afterwards every connect and
    /// disconnect keeps it current).
    fn ensure_state_record(&self) -> Result<(), StorageError> {
        if self.meta.contains_key(META_STATE)? || !self.meta.contains_key(META_GENESIS)? {
            return Ok(());
        }
        let Some(tip) = self.tip_hash()? else {
            return Ok(());
        };
        let height = match self.entry(&tip)? {
            Some(entry) => entry.header.height,
            None => 0,
        };
        let mut digest = StateDigester::new();
        self.for_each_account(|address, account| digest.add(address, account))?;
        let record = StateRecord {
            tip,
            height,
            digest,
        };
        self.meta.insert(META_STATE, encoding::encode(&record))?;
        self.publish_state(record);
        Ok(())
    }

    /// The state summary as of the last committed connect or disconnect:
    /// from memory after the first read.
    pub fn state_record(&self) -> Result<Option<StateRecord>, StorageError> {
        if let Some(record) = *crate::sync::lock(&self.state) {
            return Ok(Some(record));
        }
        let record: Option<StateRecord> = self
            .meta
            .get(META_STATE)?
            .map(|bytes| decode_stored(&bytes, "meta/state"))
            .transpose()?;
        if let Some(record) = record {
            // A writer may have published a newer one meanwhile.
            crate::sync::lock(&self.state).get_or_insert(record);
        }
        Ok(record)
    }

    /// Records what a committed write left in `meta/state`.
    fn publish_state(&self, record: StateRecord) {
        *crate::sync::lock(&self.state) = Some(record);
    }

    /// The current record, for a writer about to change it.
    fn state_for_update(&self) -> Result<StateDigester, StorageError> {
        match self.state_record()? {
            Some(record) => Ok(record.digest),
            None => {
                let mut digest = StateDigester::new();
                self.for_each_account(|address, account| digest.add(address, account))?;
                Ok(digest)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(genesis hash, chain name)` recorded at initialisation, if any.
    pub fn chain_identity(&self) -> Result<Option<(BlockHash, String)>, StorageError> {
        let Some(genesis) = self.meta.get(META_GENESIS)? else {
            return Ok(None);
        };
        let genesis = hash_from_bytes(&genesis, "meta/genesis")?;
        let name = self
            .meta
            .get(META_CHAIN_NAME)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        Ok(Some((genesis, name)))
    }

    pub fn tip_hash(&self) -> Result<Option<BlockHash>, StorageError> {
        self.meta
            .get(META_TIP)?
            .map(|bytes| hash_from_bytes(&bytes, "meta/tip"))
            .transpose()
    }

    /// The last best-chain block whose tx and address index entries are
    /// written (`None` in a store from before the indexes were deferred,
    /// where every connected block was indexed with it).
    pub fn indexed_hash(&self) -> Result<Option<BlockHash>, StorageError> {
        self.meta
            .get(META_INDEXED)?
            .map(|bytes| hash_from_bytes(&bytes, "meta/indexed"))
            .transpose()
    }

    /// Records `hash` as indexed without writing entries (upgrading a store
    /// whose connected blocks were all indexed with their connect).
    pub fn set_indexed_hash(&self, hash: &BlockHash) -> Result<(), StorageError> {
        self.meta.insert(META_INDEXED, &hash.as_bytes()[..])?;
        Ok(())
    }

    /// Writes the allocations, then genesis, its index entry, height 0 and
    /// the chain identity in one transaction whose last write is the
    /// genesis record: a store without that record is uninitialised, and a
    /// crash before it leaves accounts that the next `init_genesis` clears
    /// and writes again.
    ///
    /// The allocations are not part of the transaction: a large genesis
    /// (100,000 accounts) written as one sled transaction or batch holds
    /// one epoch guard across every insert, so every node copy an insert
    /// replaces stays allocated until well after the write, about 400 MB
    /// for 100,000 accounts (BENCHMARKS.md, issue 16). One insert at a
    /// time lets sled free them as it goes.
    pub fn init_genesis(
        &self,
        chain_name: &str,
        genesis: &Block,
        entry: &IndexEntry,
        allocations: &[(Address, Account)],
    ) -> Result<(), StorageError> {
        let hash = genesis.hash();
        let block_bytes = encoding::encode(genesis);
        let entry_bytes = encoding::encode(entry);
        if !self.accounts.is_empty() {
            self.accounts.clear()?;
        }
        let mut digest = StateDigester::new();
        for (address, account) in allocations {
            if *account != Account::default() {
                self.accounts
                    .insert(&address.0[..], encoding::encode(account))?;
                digest.add(address, account);
            }
        }
        let state = StateRecord {
            tip: hash,
            height: genesis.header.height,
            digest,
        };
        let state_bytes = encoding::encode(&state);
        let trees = [&self.blocks, &self.index, &self.best_chain, &self.meta];
        trees[..].transaction(|trees| {
            trees[0].insert(&hash.as_bytes()[..], block_bytes.as_slice())?;
            trees[1].insert(&hash.as_bytes()[..], entry_bytes.as_slice())?;
            trees[2].insert(&0u64.to_be_bytes()[..], &hash.as_bytes()[..])?;
            trees[3].insert(META_CHAIN_NAME, chain_name.as_bytes())?;
            trees[3].insert(META_TIP, &hash.as_bytes()[..])?;
            trees[3].insert(META_INDEXED, &hash.as_bytes()[..])?;
            trees[3].insert(META_STATE, state_bytes.as_slice())?;
            // Written last inside the same transaction: a store with a
            // genesis record is a fully initialised store.
            trees[3].insert(META_GENESIS, &hash.as_bytes()[..])?;
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })?;
        self.publish_state(state);
        Ok(())
    }

    /// Stores a block body and its index entry together.
    pub fn put_block(
        &self,
        hash: &BlockHash,
        block: &Block,
        entry: &IndexEntry,
    ) -> Result<(), StorageError> {
        let block_bytes = encoding::encode(block);
        let entry_bytes = encoding::encode(entry);
        let trees = [&self.blocks, &self.index];
        trees[..].transaction(|trees| {
            trees[0].insert(&hash.as_bytes()[..], block_bytes.as_slice())?;
            trees[1].insert(&hash.as_bytes()[..], entry_bytes.as_slice())?;
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })?;
        Ok(())
    }

    /// Rewrites index entries (status changes) in one batch.
    pub fn put_index_entries(
        &self,
        entries: &[(BlockHash, IndexEntry)],
    ) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (hash, entry) in entries {
            batch.insert(&hash.as_bytes()[..], encoding::encode(entry));
        }
        self.index.apply_batch(batch)?;
        Ok(())
    }

    /// Every index entry, in hash order.
    pub fn load_index(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StorageError> {
        let mut entries = Vec::with_capacity(self.index.len());
        for item in self.index.iter() {
            let (key, value) = item?;
            let hash = hash_from_bytes(&key, "block index key")?;
            let entry: IndexEntry = decode_stored(&value, "block index entry")?;
            entries.push((hash, entry));
        }
        Ok(entries)
    }

    pub fn entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StorageError> {
        self.index
            .get(hash.as_bytes())?
            .map(|bytes| decode_stored(&bytes, "block index entry"))
            .transpose()
    }

    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StorageError> {
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        self.blocks
            .get(hash.as_bytes())?
            .map(|bytes| decode_stored(&bytes, "block"))
            .transpose()
    }

    /// A stored block's canonical encoding, undecoded (to pass on as is).
    pub fn block_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, StorageError> {
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .blocks
            .get(hash.as_bytes())?
            .map(|bytes| bytes.to_vec()))
    }

    /// Block bodies stored, on every branch (a full scan of the keys).
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// How many block bodies this store (any clone) has read since it was
    /// opened.
    pub fn block_reads(&self) -> u64 {
        self.block_reads.load(Ordering::Relaxed)
    }

    pub fn has_block_data(&self, hash: &BlockHash) -> Result<bool, StorageError> {
        Ok(self.blocks.contains_key(hash.as_bytes())?)
    }

    pub fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StorageError> {
        self.undo
            .get(hash.as_bytes())?
            .map(|bytes| decode_stored(&bytes, "undo record"))
            .transpose()
    }

    /// Best-chain hash at `height`.
    pub fn hash_at(&self, height: Height) -> Result<Option<BlockHash>, StorageError> {
        self.best_chain
            .get(height.to_be_bytes())?
            .map(|bytes| hash_from_bytes(&bytes, "best chain entry"))
            .transpose()
    }

    /// The highest height in the best-chain index.
    pub fn best_chain_last(&self) -> Result<Option<(Height, BlockHash)>, StorageError> {
        match self.best_chain.last()? {
            None => Ok(None),
            Some((key, value)) => {
                let height_bytes: [u8; 8] = key.as_ref().try_into().map_err(|_| {
                    StorageError::Corrupt("best chain key: expected 8 bytes".into())
                })?;
                Ok(Some((
                    u64::from_be_bytes(height_bytes),
                    hash_from_bytes(&value, "best chain entry")?,
                )))
            }
        }
    }

    pub fn account(&self, address: &Address) -> Result<Account, StorageError> {
        match self.accounts.get(address.0)? {
            None => Ok(Account::default()),
            Some(bytes) => decode_stored(&bytes, "account"),
        }
    }

    /// Calls `visit` for every stored account in address order.
    pub fn for_each_account(
        &self,
        mut visit: impl FnMut(&Address, &Account),
    ) -> Result<(), StorageError> {
        for item in self.accounts.iter() {
            let (key, value) = item?;
            let bytes: [u8; 20] = key
                .as_ref()
                .try_into()
                .map_err(|_| StorageError::Corrupt("account key: expected 20 bytes".into()))?;
            let account: Account = decode_stored(&value, "account")?;
            visit(&Address(bytes), &account);
        }
        Ok(())
    }

    /// Whether a tx is confirmed on the best chain: one key lookup in the
    /// tx index, no block read, so answering a peer's announcement of a
    /// known txid costs no more than an unknown one.
    pub fn has_tx(&self, txid: &TxId) -> Result<bool, StorageError> {
        Ok(self.tx_index.contains_key(txid.as_bytes())?)
    }

    pub fn tx_location(&self, txid: &TxId) -> Result<Option<TxLocation>, StorageError> {
        Ok(self.tx_entry(txid)?.map(|(location, _)| location))
    }

    /// A tx index entry, in either stored form: with its span, or (written
    /// before spans were kept) without.
    fn tx_entry(&self, txid: &TxId) -> Result<Option<(TxLocation, Option<TxSpan>)>, StorageError> {
        let Some(bytes) = self.tx_index.get(txid.as_bytes())? else {
            return Ok(None);
        };
        if let Ok(entry) = encoding::decode::<TxIndexEntry>(&bytes) {
            return Ok(Some((entry.location, Some((entry.offset, entry.len)))));
        }
        let location: TxLocation = decode_stored(&bytes, "tx index entry")?;
        Ok(Some((location, None)))
    }

    /// A confirmed tx and where it is: only its own bytes are decoded.
    pub fn tx(&self, txid: &TxId) -> Result<Option<(Transaction, TxLocation)>, StorageError> {
        let Some((location, span)) = self.tx_entry(txid)? else {
            return Ok(None);
        };
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        let Some(block_bytes) = self.blocks.get(location.block_hash.as_bytes())? else {
            return Ok(None);
        };
        let tx = match span {
            Some(span) => tx_in(&block_bytes, span)?,
            None => {
                let block: Block = decode_stored(&block_bytes, "block")?;
                block.txs.into_iter().nth(location.index as usize)
            }
        };
        Ok(tx.map(|tx| (tx, location)))
    }

    /// Up to `limit` best-chain txs that `address` sent or received, newest
    /// first, all before `before` (height, position) when given. Reads one
    /// block's stored bytes at a time and decodes only the address's txs.
    pub fn address_txs(
        &self,
        address: &Address,
        limit: usize,
        before: Option<(Height, u32)>,
    ) -> Result<Vec<(Transaction, TxLocation)>, StorageError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let start = address_tx_key(address, 0);
        let end = address_tx_key(address, before.map_or(u64::MAX, |(height, _)| height));
        let corrupt = || StorageError::Corrupt("malformed address tx entry".into());
        for item in self.address_txs.range(start..=end).rev() {
            let (key, value) = item?;
            let height_bytes: [u8; 8] = key
                .get(20..28)
                .ok_or_else(corrupt)?
                .try_into()
                .map_err(|_| corrupt())?;
            let height = u64::from_be_bytes(height_bytes);
            if value.len() < 32 {
                return Err(corrupt());
            }
            let block_hash = hash_from_bytes(&value[..32], "address tx entry")?;
            let rest = &value[32..];
            // (position, span) of the address's txs in this block, newest
            // (highest position) first.
            let mut entries: Vec<(u32, Option<TxSpan>)> = Vec::new();
            if rest.first() == Some(&ADDRESS_ENTRY_WITH_SPANS) && rest.len() % 12 == 1 {
                for chunk in rest[1..].chunks_exact(12) {
                    let word = |i: usize| {
                        u32::from_be_bytes([chunk[i], chunk[i + 1], chunk[i + 2], chunk[i + 3]])
                    };
                    entries.push((word(0), Some((word(4), word(8)))));
                }
            } else if rest.len() % 4 == 0 {
                for chunk in rest.chunks_exact(4) {
                    entries.push((
                        u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                        None,
                    ));
                }
            } else {
                return Err(corrupt());
            }
            entries.reverse();
            if let Some((before_height, before_position)) = before {
                if height == before_height {
                    entries.retain(|(position, _)| *position < before_position);
                }
            }
            entries.truncate(limit - out.len());
            if entries.is_empty() {
                continue;
            }
            self.block_reads.fetch_add(1, Ordering::Relaxed);
            let Some(block_bytes) = self.blocks.get(block_hash.as_bytes())? else {
                continue;
            };
            let mut decoded: Option<Block> = None;
            for (position, span) in entries {
                let tx = match span {
                    Some(span) => tx_in(&block_bytes, span)?,
                    None => {
                        if decoded.is_none() {
                            decoded = Some(decode_stored(&block_bytes, "block")?);
                        }
                        decoded
                            .as_ref()
                            .and_then(|block| block.txs.get(position as usize).cloned())
                    }
                };
                if let Some(tx) = tx {
                    let location = TxLocation {
                        block_hash,
                        height,
                        index: position,
                    };
                    out.push((tx, location));
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Connects `block` (whose parent is the current tip) in one
    /// transaction: account values, undo record, height index and tip. Its
    /// tx and address index entries follow in [`Store::index_blocks`]:
    /// until then `meta/indexed` names an ancestor, so a crash in between
    /// is seen and repaired when the chain is opened.
    ///
    /// With `new_body`, the block's body and that index entry are written
    /// in the same transaction (a block connected as soon as it arrives):
    /// sled seals and syncs a log buffer for every transaction, so a
    /// syncing node saves one of those per block.
    pub fn connect_block(
        &self,
        hash: &BlockHash,
        block: &Block,
        change: &BlockStateChange,
        new_body: Option<&IndexEntry>,
    ) -> Result<(), StorageError> {
        let record = ConnectRecord {
            hash,
            block,
            undo: &change.undo,
            new_body,
        };
        self.connect_blocks(&[record], &change.updates)
    }

    /// Connects `blocks` (each the child of the one before, the first a
    /// child of the current tip) in one transaction, as
    /// [`Store::connect_block`] does for one: `accounts` are the values the
    /// last of them leaves. A syncing node commits a few blocks at a time
    /// like this, since each sled transaction seals and syncs a log buffer.
    pub fn connect_blocks(
        &self,
        blocks: &[ConnectRecord<'_>],
        accounts: &[(Address, Account)],
    ) -> Result<(), StorageError> {
        let Some(last) = blocks.last() else {
            return Ok(());
        };
        // Each account's value before the first of the blocks is in the
        // first undo record that names it.
        let mut before: std::collections::HashMap<Address, Account> =
            std::collections::HashMap::new();
        for record in blocks {
            for (address, account) in &record.undo.previous {
                before.entry(*address).or_insert(*account);
            }
        }
        let mut digest = self.state_for_update()?;
        for (address, account) in accounts {
            let old = before.get(address).copied().unwrap_or_default();
            digest.change(address, &old, account);
        }
        let state = StateRecord {
            tip: *last.hash,
            height: last.block.header.height,
            digest,
        };
        let state_bytes = encoding::encode(&state);
        let accounts = account_batch(accounts);
        let encoded: Vec<_> = blocks
            .iter()
            .map(|record| {
                (
                    encoding::encode(record.undo),
                    record
                        .new_body
                        .map(|entry| (encoding::encode(record.block), encoding::encode(entry))),
                )
            })
            .collect();
        let trees = [
            &self.accounts,
            &self.undo,
            &self.best_chain,
            &self.meta,
            &self.blocks,
            &self.index,
        ];
        trees[..].transaction(|trees| {
            trees[0].apply_batch(&accounts)?;
            for (record, (undo_bytes, body)) in blocks.iter().zip(&encoded) {
                let hash = &record.hash.as_bytes()[..];
                let height = record.block.header.height;
                trees[1].insert(hash, undo_bytes.as_slice())?;
                trees[2].insert(&height.to_be_bytes()[..], hash)?;
                if let Some((block_bytes, entry_bytes)) = body {
                    trees[4].insert(hash, block_bytes.as_slice())?;
                    trees[5].insert(hash, entry_bytes.as_slice())?;
                }
            }
            trees[3].insert(META_TIP, &last.hash.as_bytes()[..])?;
            trees[3].insert(META_STATE, state_bytes.as_slice())?;
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })?;
        self.publish_state(state);
        Ok(())
    }

    /// Writes the tx and address index entries of connected best-chain
    /// blocks, given in connect order with their txids, then moves
    /// `meta/indexed` to the last. Most of a block's sled writes are these
    /// (one key per tx), which is why they come after the connect: a node
    /// publishes the new tip first. They are plain inserts, not a batch or
    /// transaction: sled makes those exclude every reader in the process
    /// while they run, and an index entry is idempotent, so a crash part way
    /// is repaired by indexing the same blocks again from `meta/indexed`.
    pub fn index_blocks(
        &self,
        blocks: &[(BlockHash, &Block, &[TxId])],
    ) -> Result<(), StorageError> {
        let Some((last, _, _)) = blocks.last() else {
            return Ok(());
        };
        for (hash, block, txids) in blocks {
            let height = block.header.height;
            let spans = encoding::tx_spans(block);
            for ((position, txid), (offset, len)) in txids.iter().enumerate().zip(&spans) {
                let entry = TxIndexEntry {
                    location: TxLocation {
                        block_hash: *hash,
                        height,
                        index: position as u32,
                    },
                    offset: *offset,
                    len: *len,
                };
                self.tx_index
                    .insert(&txid.as_bytes()[..], encoding::encode(&entry))?;
            }
            for (address, positions) in positions_by_address(block) {
                let mut value = Vec::with_capacity(33 + 12 * positions.len());
                value.extend_from_slice(hash.as_bytes());
                value.push(ADDRESS_ENTRY_WITH_SPANS);
                for position in positions {
                    let (offset, len) = spans.get(position as usize).copied().unwrap_or((0, 0));
                    value.extend_from_slice(&position.to_be_bytes());
                    value.extend_from_slice(&offset.to_be_bytes());
                    value.extend_from_slice(&len.to_be_bytes());
                }
                self.address_txs
                    .insert(&address_tx_key(&address, height)[..], value)?;
            }
        }
        self.meta.insert(META_INDEXED, &last.as_bytes()[..])?;
        Ok(())
    }

    /// Disconnects the tip `block` in one transaction, restoring the
    /// accounts from `undo` and making `block`'s parent the tip. When the
    /// block was `indexed`, its tx and address index entries go in the same
    /// transaction and `meta/indexed` moves to the parent.
    pub fn disconnect_block(
        &self,
        hash: &BlockHash,
        block: &Block,
        txids: &[TxId],
        undo: &BlockUndo,
        indexed: bool,
    ) -> Result<(), StorageError> {
        let height = block.header.height;
        let mut digest = self.state_for_update()?;
        for (address, previous) in &undo.previous {
            let current = self.account(address)?;
            digest.change(address, &current, previous);
        }
        let state = StateRecord {
            tip: block.header.prev_hash,
            height: height.saturating_sub(1),
            digest,
        };
        let state_bytes = encoding::encode(&state);
        let accounts = account_batch(&undo.previous);
        let mut tx_index = sled::Batch::default();
        let mut address_txs = sled::Batch::default();
        if indexed {
            for txid in txids {
                tx_index.remove(&txid.as_bytes()[..]);
            }
            for address in positions_by_address(block).into_keys() {
                address_txs.remove(&address_tx_key(&address, height)[..]);
            }
        }
        let parent = block.header.prev_hash;
        let trees = [
            &self.accounts,
            &self.undo,
            &self.best_chain,
            &self.meta,
            &self.tx_index,
            &self.address_txs,
        ];
        trees[..].transaction(|trees| {
            trees[0].apply_batch(&accounts)?;
            trees[1].remove(&hash.as_bytes()[..])?;
            trees[2].remove(&height.to_be_bytes()[..])?;
            trees[3].insert(META_TIP, &parent.as_bytes()[..])?;
            trees[3].insert(META_STATE, state_bytes.as_slice())?;
            if indexed {
                trees[3].insert(META_INDEXED, &parent.as_bytes()[..])?;
                trees[4].apply_batch(&tx_index)?;
                trees[5].apply_batch(&address_txs)?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })?;
        self.publish_state(state);
        Ok(())
    }

    /// A named auxiliary tree (`aux/<name>`) in the same database.
    pub fn aux_tree(&self, name: &str) -> Result<AuxTree, StorageError> {
        Ok(AuxTree {
            tree: self
                .db
                .open_tree(format!("{}aux/{name}", self.tree_prefix))?,
        })
    }

    /// Asks sled to write everything out (see the module doc for what that
    /// does and does not guarantee in 0.34.7).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Reads account state straight from the store. A storage error reads as
/// the default account and is logged; the chain writer uses
/// [`Store::account`] directly where errors must propagate.
impl AccountSource for Store {
    fn account(&self, address: &Address) -> Account {
        match Store::account(self, address) {
            Ok(account) => account,
            Err(error) => {
                tracing::error!(%error, "reading an account failed");
                Account::default()
            }
        }
    }
}

/// Key-value pairs read from an `AuxTree`.
pub type AuxEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// A named key-value tree beside the chain data, for node state that is not
/// consensus (the P2P address book). Its writes are not part of any block's
/// transaction.
#[derive(Clone)]
pub struct AuxTree {
    tree: sled::Tree,
}

impl AuxTree {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree.get(key)?.map(|value| value.to_vec()))
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    pub fn remove(&self, key: &[u8]) -> Result<(), StorageError> {
        self.tree.remove(key)?;
        Ok(())
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Result<AuxEntries, StorageError> {
        self.tree
            .iter()
            .map(|item| {
                item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                    .map_err(StorageError::from)
            })
            .collect()
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.tree.flush()?;
        Ok(())
    }
}

/// The account writes of a connect or disconnect: an account back at the
/// default (zero balance, zero nonce) is removed, so the accounts tree holds
/// exactly the accounts the state digest counts.
fn account_batch<'a>(entries: impl IntoIterator<Item = &'a (Address, Account)>) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (address, account) in entries {
        if *account == Account::default() {
            batch.remove(&address.0[..]);
        } else {
            batch.insert(&address.0[..], encoding::encode(account));
        }
    }
    batch
}
