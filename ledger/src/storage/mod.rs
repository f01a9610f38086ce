//! The store: the chain's data layout, and the only module that names
//! sled. It owns the on-disk layout and makes every change of the best
//! chain atomic. `Store` is written against `tree::Tree` and holds its
//! trees in one of two backends:
//! - `sled_backend`: a sled database in a directory (`Store::open`, the
//!   node), or many stores in one temporary sled database
//!   (`TemporaryArena`, `Store::open_in_arena`);
//! - `memory`: stores that live in memory only (`MemoryArena`,
//!   `Store::open_in_memory`), for simulations and tests; equal data of
//!   many stores in one arena is held once.
//!
//! Files: `mod.rs` (the layout, the types and the reads), `write.rs` (the
//! writes), `tree.rs` (the backend-neutral tree and atomic `commit`),
//! `sled_backend.rs`, `memory.rs`.
//!
//! Trees (keys and values are canonical encodings unless noted):
//! - `blocks`: block hash -> `Block`. Every stored block, on any branch
//!   (side branches until the chain prunes them: `remove_blocks`).
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
//! Crash recovery: see `sled_backend` (half-written snapshots).

mod memory;
mod sled_backend;
mod tree;
mod write;

pub use memory::MemoryArena;
pub use sled_backend::{
    cache_capacity, remove_partial_snapshots, set_cache_capacity, TemporaryArena,
    DEFAULT_CACHE_BYTES,
};

use crate::address::Address;
use crate::block::{Block, Header};
use crate::encoding::{self, Decode, Encode};
use crate::hash::{BlockHash, TxId};
use crate::state::{Account, AccountSource, BlockUndo, StateDigester};
use crate::target::Work;
use crate::tx::Transaction;
use crate::Height;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tree::Tree;

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
pub(super) struct TxIndexEntry {
    pub(super) location: TxLocation,
    pub(super) offset: u32,
    pub(super) len: u32,
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
pub(super) const ADDRESS_ENTRY_WITH_SPANS: u8 = 1;

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

pub(super) const META_GENESIS: &[u8] = b"genesis";
pub(super) const META_CHAIN_NAME: &[u8] = b"chain_name";
pub(super) const META_TIP: &[u8] = b"tip";
pub(super) const META_INDEXED: &[u8] = b"indexed";
pub(super) const META_STATE: &[u8] = b"state";

/// Where a store's trees live, for opening more of them (aux trees) and
/// flushing.
#[derive(Clone)]
enum Backend {
    /// The database, and the prefix of this store's tree names (stores in
    /// one temporary arena keep apart).
    Sled { db: sled::Db, prefix: String },
    /// The arena and this store's member id in it.
    Memory { arena: MemoryArena, member: u32 },
}

impl Backend {
    fn tree(&self, name: &str) -> Result<Tree, StorageError> {
        match self {
            Backend::Sled { db, prefix } => sled_backend::open_tree(db, prefix, name),
            Backend::Memory { arena, member } => Ok(Tree::Memory(arena.tree(name, *member))),
        }
    }
}

/// The store. Cloning is cheap (trees are shared handles); only the
/// chain writer calls the mutating methods.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    blocks: Tree,
    index: Tree,
    best_chain: Tree,
    accounts: Tree,
    tx_index: Tree,
    address_txs: Tree,
    undo: Tree,
    meta: Tree,
    path: PathBuf,
    /// Block bodies read so far (`block`, `block_bytes`, `tx`), shared by
    /// every clone: what proves a lookup answered from the indexes alone.
    block_reads: Arc<AtomicU64>,
    /// `meta/state` as last committed, shared by every clone, so
    /// `state_record` touches no backend lock: every sled read takes the
    /// read side of one process-wide lock whose write side a transaction
    /// holds while it commits, and `GET /v1/state` must not queue behind
    /// that. Set only after the commit it mirrors succeeded.
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

pub(super) fn address_tx_key(address: &Address, height: Height) -> [u8; 28] {
    let mut key = [0u8; 28];
    key[..20].copy_from_slice(&address.0);
    key[20..28].copy_from_slice(&height.to_be_bytes());
    key
}

/// For each address a block touches, the positions of its txs, ascending.
pub(super) fn positions_by_address(block: &Block) -> std::collections::BTreeMap<Address, Vec<u32>> {
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
        let db = sled_backend::open_db(dir)?;
        let backend = Backend::Sled {
            db,
            prefix: String::new(),
        };
        let store = Store::with_backend(backend, dir.to_path_buf())?;
        store.ensure_state_record()?;
        Ok(store)
    }

    /// A store inside `arena`, its trees named under `name/`: gone when
    /// the arena's last handle is dropped. Many such stores share one sled
    /// database (one page cache, one log), so a simulation can hold
    /// thousands; nothing survives.
    pub fn open_in_arena(arena: &TemporaryArena, name: &str) -> Result<Store, StorageError> {
        let backend = Backend::Sled {
            db: arena.db().clone(),
            prefix: format!("{name}/"),
        };
        Store::with_backend(backend, PathBuf::from(format!("(temporary)/{name}")))
    }

    /// A new, empty store in memory, a member of `arena` (see
    /// `MemoryArena`): gone when the arena's last handle is dropped.
    /// `name` only labels it (`path`).
    pub fn open_in_memory(arena: &MemoryArena, name: &str) -> Result<Store, StorageError> {
        let backend = Backend::Memory {
            arena: arena.clone(),
            member: arena.add_member(),
        };
        Store::with_backend(backend, PathBuf::from(format!("(memory)/{name}")))
    }

    fn with_backend(backend: Backend, path: PathBuf) -> Result<Store, StorageError> {
        Ok(Store {
            blocks: backend.tree("blocks")?,
            index: backend.tree("block_index")?,
            best_chain: backend.tree("best_chain")?,
            accounts: backend.tree("accounts")?,
            tx_index: backend.tree("tx_index")?,
            address_txs: backend.tree("address_txs")?,
            undo: backend.tree("undo")?,
            meta: backend.tree("meta")?,
            backend,
            path,
            block_reads: Arc::new(AtomicU64::new(0)),
            state: Arc::new(std::sync::Mutex::new(None)),
        })
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
            None => Height::ZERO,
        };
        let mut digest = StateDigester::new();
        self.for_each_account(|address, account| digest.add(address, account))?;
        let record = StateRecord {
            tip,
            height,
            digest,
        };
        self.meta.insert(META_STATE, &encoding::encode(&record))?;
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
    pub(super) fn publish_state(&self, record: StateRecord) {
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

    /// Every index entry, in hash order.
    pub fn load_index(&self) -> Result<Vec<(BlockHash, IndexEntry)>, StorageError> {
        let mut entries = Vec::new();
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
        self.blocks.contains_key(hash.as_bytes())
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
            .get(&height.to_be_bytes())?
            .map(|bytes| hash_from_bytes(&bytes, "best chain entry"))
            .transpose()
    }

    /// The highest height in the best-chain index.
    pub fn best_chain_last(&self) -> Result<Option<(Height, BlockHash)>, StorageError> {
        match self.best_chain.last()? {
            None => Ok(None),
            Some((key, value)) => {
                let height_bytes: [u8; 8] = key.as_slice().try_into().map_err(|_| {
                    StorageError::Corrupt("best chain key: expected 8 bytes".into())
                })?;
                Ok(Some((
                    Height::from_be_bytes(height_bytes),
                    hash_from_bytes(&value, "best chain entry")?,
                )))
            }
        }
    }

    pub fn account(&self, address: &Address) -> Result<Account, StorageError> {
        match self.accounts.get(&address.0)? {
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
                .as_slice()
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
        self.tx_index.contains_key(txid.as_bytes())
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
        let start = address_tx_key(address, Height::ZERO);
        let end = address_tx_key(address, before.map_or(Height::MAX, |(height, _)| height));
        let corrupt = || StorageError::Corrupt("malformed address tx entry".into());
        for item in self.address_txs.range_rev(&start, &end) {
            let (key, value) = item?;
            let height_bytes: [u8; 8] = key
                .get(20..28)
                .ok_or_else(corrupt)?
                .try_into()
                .map_err(|_| corrupt())?;
            let height = Height::from_be_bytes(height_bytes);
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

    /// A named auxiliary tree (`aux/<name>`) in the same database.
    pub fn aux_tree(&self, name: &str) -> Result<AuxTree, StorageError> {
        Ok(AuxTree {
            tree: self.backend.tree(&format!("aux/{name}"))?,
        })
    }

    /// Asks sled to write everything out (see the module doc for what that
    /// does and does not guarantee in 0.34.7).
    pub fn flush(&self) -> Result<(), StorageError> {
        if let Backend::Sled { db, .. } = &self.backend {
            db.flush()?;
        }
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
    tree: Tree,
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
            .map(|item| item.map(|(key, value)| (key.to_vec(), value.to_vec())))
            .collect()
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.tree.flush()?;
        Ok(())
    }
}
