//! `Chain`: the single writer of the block tree. It accepts blocks in any
//! order, keeps bounded orphans, chooses the valid chain with the most
//! cumulative work (ties keep the first seen), reorganises with undo data,
//! and reports every change as a `ChainUpdate` so a mempool can follow.
//! `ChainReader` is the cheap, cloneable read side: it reads sled directly
//! and never waits on the writer.
//!
//! The whole block index (headers, cumulative work, status) is held in
//! memory, loaded at open; block bodies, state and indexes stay in the
//! store (see `storage`). Invariant after every public call: the tip is the
//! best valid candidate, i.e. no stored block that is not known invalid has
//! more work than the tip (or equal work and an earlier first-seen number).
//! The one exception to "connected means stored": connects held for a group
//! commit (`process_block_held`), which only the writer sees until
//! `commit_held`.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{Block, Header};
use crate::chainspec::ChainSpec;
use crate::difficulty::{self, BlockTiming, RETARGET_WINDOW};
use crate::hash::{BlockHash, Hash256, TxId};
use crate::sigcache::SignatureCache;
use crate::state::{self, Account, AccountSource, BlockUndo, StateDigester};
pub use crate::storage::TemporaryArena;
pub use crate::storage::{AuxEntries, AuxTree};
use crate::storage::{ConnectRecord, IndexEntry, StorageError, Store};
use crate::target::{Target, Work};
use crate::tx::Transaction;
use crate::validation::{self, BlockError};
use crate::Height;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::storage::{BlockStatus, TxLocation};

/// Most orphans kept at once.
pub const MAX_ORPHANS: usize = 256;
/// Most bytes of orphans kept at once.
pub const MAX_ORPHAN_BYTES: usize = 32 * 1024 * 1024;
/// Orphans older than this are dropped.
pub const ORPHAN_EXPIRY_MS: u64 = 20 * 60 * 1000;
/// How many rejected-but-unstored block hashes are remembered, so their
/// descendants are refused at once instead of waiting as orphans.
pub const MAX_REMEMBERED_REJECTS: usize = 4096;

/// Why the chain store could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("data dir holds chain {found_name:?} (genesis {found}), not {expected_name:?} (genesis {expected}); use another --data-dir")]
    WrongChain {
        found_name: String,
        found: BlockHash,
        expected_name: String,
        expected: BlockHash,
    },
    #[error(
        "chain store in {dir} is corrupt ({detail}); move the directory away to resync from peers"
    )]
    Corrupt { dir: String, detail: String },
    #[error("chain storage error: {0}")]
    Storage(String),
}

impl ChainError {
    fn from_storage(dir: &Path, error: StorageError) -> ChainError {
        match error {
            StorageError::Corrupt(detail) => ChainError::Corrupt {
                dir: dir.display().to_string(),
                detail,
            },
            other => ChainError::Storage(other.to_string()),
        }
    }
}

fn storage_block_error(error: StorageError) -> BlockError {
    BlockError::Storage(error.to_string())
}

/// What `process_block` did with a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// Already stored (or waiting as an orphan).
    Known,
    /// Parent unknown: kept as an orphan until the parent arrives.
    Orphan,
    /// Valid so far and stored on a branch with no more work than the tip.
    SideChain,
    /// The best chain changed.
    Connected(ChainUpdate),
    /// Not stored: an unrequested block whose chain has less work than the
    /// tip (`process_block_unrequested`).
    LowWork,
}

/// A change of the best chain, net of any intermediate steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainUpdate {
    pub old_tip: BlockHash,
    pub new_tip: BlockHash,
    /// Height of the last block the old and new chains share.
    pub fork_height: Height,
    /// Blocks taken off the best chain, old tip first (shared, so a node
    /// can publish them without copying).
    pub disconnected: Vec<Arc<Block>>,
    /// Blocks added to the best chain, in height order.
    pub connected: Vec<Arc<Block>>,
}

impl ChainUpdate {
    pub fn is_reorg(&self) -> bool {
        !self.disconnected.is_empty()
    }
}

/// Everything a miner needs to build on the tip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextBlockContext {
    pub height: Height,
    pub prev_hash: BlockHash,
    pub target: Target,
    /// Smallest valid timestamp: one more than the median of the last 11.
    pub min_timestamp: u64,
    /// `max(now, min_timestamp)`.
    pub timestamp: u64,
}

/// The best block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TipInfo {
    pub height: Height,
    pub hash: BlockHash,
    pub total_work: Work,
    /// The target of the tip block itself.
    pub target: Target,
    pub timestamp: u64,
}

/// `GET /v1/state`: see `state::StateDigester` for the digest's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSummary {
    pub height: Height,
    pub tip: BlockHash,
    pub accounts: u64,
    pub total_supply: Amount,
    pub digest: Hash256,
}

#[derive(Clone, Debug)]
struct Node {
    header: Header,
    total_work: Work,
    status: BlockStatus,
    seq: u64,
}

impl Node {
    fn entry(&self) -> IndexEntry {
        IndexEntry {
            header: self.header.clone(),
            total_work: self.total_work,
            status: self.status,
            seq: self.seq,
        }
    }
}

struct Orphan {
    block: Block,
    received_ms: u64,
    bytes: usize,
}

/// Blocks whose parent we do not have yet, bounded in count and bytes.
#[derive(Default)]
struct OrphanPool {
    blocks: HashMap<BlockHash, Orphan>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    order: VecDeque<BlockHash>,
    bytes: usize,
}

impl OrphanPool {
    fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    fn insert(&mut self, hash: BlockHash, block: Block, now_ms: u64) {
        if self.blocks.contains_key(&hash) {
            return;
        }
        let bytes = block.encoded_len();
        self.by_parent
            .entry(block.header.prev_hash)
            .or_default()
            .push(hash);
        self.blocks.insert(
            hash,
            Orphan {
                block,
                received_ms: now_ms,
                bytes,
            },
        );
        self.order.push_back(hash);
        self.bytes += bytes;
        while self.blocks.len() > MAX_ORPHANS || self.bytes > MAX_ORPHAN_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let orphan = self.blocks.remove(hash)?;
        self.bytes -= orphan.bytes;
        let parent = orphan.block.header.prev_hash;
        if let Some(siblings) = self.by_parent.get_mut(&parent) {
            siblings.retain(|sibling| sibling != hash);
            if siblings.is_empty() {
                self.by_parent.remove(&parent);
            }
        }
        // `order` is cleaned lazily: stale hashes are skipped on eviction.
        Some(orphan.block)
    }

    fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        hashes
            .iter()
            .filter_map(|hash| {
                let orphan = self.blocks.remove(hash)?;
                self.bytes -= orphan.bytes;
                Some(orphan.block)
            })
            .collect()
    }

    /// Drops every orphan descending from `root` and returns their hashes.
    fn drop_descendants(&mut self, root: &BlockHash) -> Vec<BlockHash> {
        let mut dropped = Vec::new();
        let mut stack = vec![*root];
        while let Some(parent) = stack.pop() {
            for child in self.take_children(&parent) {
                let hash = child.hash();
                dropped.push(hash);
                stack.push(hash);
            }
        }
        dropped
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(oldest) = self.order.front().copied() {
            match self.blocks.get(&oldest) {
                None => {
                    self.order.pop_front();
                }
                Some(orphan) if orphan.received_ms.saturating_add(ORPHAN_EXPIRY_MS) < now_ms => {
                    self.order.pop_front();
                    self.remove(&oldest);
                }
                Some(_) => break,
            }
        }
        if self.order.len() > 4 * MAX_ORPHANS {
            let blocks = &self.blocks;
            self.order.retain(|hash| blocks.contains_key(hash));
        }
    }
}

/// Reads accounts from the store for the writer, remembering the first
/// storage error so a failing disk is never mistaken for an invalid block.
struct StrictAccounts<'a> {
    store: &'a Store,
    /// Values left by connects not committed yet (see `HeldConnects`).
    held: &'a HashMap<Address, Account>,
    error: RefCell<Option<StorageError>>,
}

impl AccountSource for StrictAccounts<'_> {
    fn account(&self, address: &Address) -> Account {
        if let Some(account) = self.held.get(address) {
            return *account;
        }
        match self.store.account(address) {
            Ok(account) => account,
            Err(error) => {
                self.error.borrow_mut().get_or_insert(error);
                Account::default()
            }
        }
    }
}

/// The chain writer. Not `Sync` on purpose: one owner (the node's chain
/// thread) calls `process_block`; everyone else uses a `ChainReader`.
pub struct Chain {
    spec: Arc<ChainSpec>,
    genesis: BlockHash,
    store: Store,
    nodes: HashMap<BlockHash, Node>,
    children: HashMap<BlockHash, Vec<BlockHash>>,
    tip: BlockHash,
    next_seq: u64,
    orphans: OrphanPool,
    rejected: RejectedHeaders,
    recent_blocks: RecentBlocks,
    cache: SignatureCache,
    validated_hook: Option<ValidatedHook>,
    /// Best-chain blocks connected but not yet in the tx and address
    /// indexes, in connect order (see `write_indexes`).
    unindexed: Vec<(BlockHash, Arc<CachedBlock>)>,
    /// Whether `process_block` leaves the indexing to an explicit
    /// `write_indexes` call.
    defer_indexing: bool,
    /// Blocks accepted by the current `process_block` whose bodies are not
    /// in sled yet: one that joins the best chain is written by its
    /// connect's transaction, the rest before `process_block` returns.
    unstored: Vec<(BlockHash, Arc<CachedBlock>)>,
    /// Best-chain connects validated and applied in memory whose sled
    /// commit waits for a group commit (see `process_block_held`).
    held: HeldConnects,
    /// How many connects the current call may hold (0: commit each).
    hold_limit: usize,
}

/// Connects held back for one group commit: a syncing node commits several
/// blocks per sled transaction, because every transaction seals and syncs a
/// log buffer. Held blocks are the newest part of the best chain and of
/// `unindexed`; readers (`ChainReader`) do not see them until the commit.
#[derive(Default)]
struct HeldConnects {
    /// Account values as the held blocks left them.
    accounts: HashMap<Address, Account>,
    blocks: Vec<HeldConnect>,
}

impl HeldConnects {
    fn get(&self, hash: &BlockHash) -> Option<&Arc<CachedBlock>> {
        self.blocks
            .iter()
            .find(|connect| connect.hash == *hash)
            .map(|connect| &connect.cached)
    }
}

struct HeldConnect {
    hash: BlockHash,
    cached: Arc<CachedBlock>,
    undo: BlockUndo,
    /// The index entry of a block that has just arrived, whose body goes
    /// out with the commit.
    new_body: Option<IndexEntry>,
}

/// Called with each block the chain is about to connect, once it has passed
/// every check, its state transition included, and before it is written.
/// A node relays from here, so the sled commit is not on the path between
/// peers. The body of a block that has just arrived is written with that
/// commit, so whoever relays must be able to serve it from memory until
/// then (the node keeps a relay cache).
pub type ValidatedHook = Box<dyn FnMut(&BlockHash, &Block) + Send>;

/// A decoded block with its txids, so connecting a block just accepted
/// neither decodes it from sled nor hashes its transactions again.
struct CachedBlock {
    block: Arc<Block>,
    txids: Vec<TxId>,
}

/// The last few accepted or loaded blocks (bounded by count; a block is at
/// most `max_block_bytes`, so this stays within a few MiB).
#[derive(Default)]
struct RecentBlocks {
    blocks: HashMap<BlockHash, Arc<CachedBlock>>,
    order: VecDeque<BlockHash>,
}

const RECENT_BLOCKS: usize = 8;

impl RecentBlocks {
    fn get(&self, hash: &BlockHash) -> Option<Arc<CachedBlock>> {
        self.blocks.get(hash).cloned()
    }

    fn insert(&mut self, hash: BlockHash, cached: Arc<CachedBlock>) {
        if self.blocks.insert(hash, cached).is_none() {
            self.order.push_back(hash);
        }
        while self.order.len() > RECENT_BLOCKS {
            if let Some(oldest) = self.order.pop_front() {
                self.blocks.remove(&oldest);
            }
        }
    }
}

/// Hashes of blocks refused without being stored whose header itself is
/// invalid (or descends from an invalid block). Bounded, oldest forgotten
/// first. Blocks refused for a body problem are not remembered: the same
/// header with a correct body may still arrive.
#[derive(Default)]
struct RejectedHeaders {
    members: std::collections::HashSet<BlockHash>,
    order: VecDeque<BlockHash>,
}

impl RejectedHeaders {
    fn insert(&mut self, hash: BlockHash) {
        if self.members.insert(hash) {
            self.order.push_back(hash);
            if self.order.len() > MAX_REMEMBERED_REJECTS {
                if let Some(oldest) = self.order.pop_front() {
                    self.members.remove(&oldest);
                }
            }
        }
    }

    fn contains(&self, hash: &BlockHash) -> bool {
        self.members.contains(hash)
    }
}

/// Whether an error condemns the header itself (any body would fail).
fn is_header_error(error: &BlockError) -> bool {
    matches!(
        error,
        BlockError::BadVersion(_)
            | BlockError::BadCompactTarget(_)
            | BlockError::TargetTooEasy
            | BlockError::BadProofOfWork
            | BlockError::BadHeight { .. }
            | BlockError::WrongTarget { .. }
            | BlockError::TimestampTooOld { .. }
            | BlockError::InvalidAncestor
    )
}

impl Chain {
    /// Opens or creates the chain store in `dir`. A dir of another chain
    /// gives `ChainError::WrongChain`; an inconsistent store gives
    /// `ChainError::Corrupt`. If the store was left mid-reorg, the best
    /// valid chain is re-activated before returning.
    pub fn open(spec: ChainSpec, dir: &Path) -> Result<Chain, ChainError> {
        let store = Store::open(dir).map_err(|error| ChainError::from_storage(dir, error))?;
        Chain::open_store(spec, store, dir)
    }

    /// A new chain in a store of `arena` named `name`
    /// (`Store::open_in_arena`): gone with the arena. For simulations and
    /// tests.
    pub fn open_in_arena(
        spec: ChainSpec,
        arena: &TemporaryArena,
        name: &str,
    ) -> Result<Chain, ChainError> {
        let dir = PathBuf::from(format!("(temporary)/{name}"));
        let store = Store::open_in_arena(arena, name)
            .map_err(|error| ChainError::from_storage(&dir, error))?;
        Chain::open_store(spec, store, &dir)
    }

    fn open_store(spec: ChainSpec, store: Store, dir: &Path) -> Result<Chain, ChainError> {
        let genesis_block = spec.genesis_block();
        let genesis = genesis_block.hash();
        let corrupt = |detail: String| ChainError::Corrupt {
            dir: dir.display().to_string(),
            detail,
        };
        let from_storage = |error| ChainError::from_storage(dir, error);
        match store.chain_identity().map_err(from_storage)? {
            Some((found, found_name)) if found != genesis => {
                return Err(ChainError::WrongChain {
                    found_name,
                    found,
                    expected_name: spec.name.clone(),
                    expected: genesis,
                })
            }
            Some(_) => {}
            None => {
                let entry = IndexEntry {
                    header: genesis_block.header.clone(),
                    total_work: Target::from_compact(genesis_block.header.bits)
                        .map(|target| target.work())
                        .unwrap_or(Work::ZERO),
                    status: BlockStatus::Valid,
                    seq: 0,
                };
                let allocations: Vec<(Address, Account)> =
                    state::genesis_state(&spec).into_iter().collect();
                store
                    .init_genesis(&spec.name, &genesis_block, &entry, &allocations)
                    .map_err(from_storage)?;
                tracing::info!(chain = %spec.name, genesis = %genesis, "initialised a new chain store");
            }
        }

        let mut nodes = HashMap::new();
        let mut children: HashMap<BlockHash, Vec<BlockHash>> = HashMap::new();
        let mut next_seq = 1;
        for (hash, entry) in store.load_index().map_err(from_storage)? {
            if hash != entry.header.hash() {
                return Err(corrupt(format!("index entry {hash} holds another header")));
            }
            next_seq = next_seq.max(entry.seq.saturating_add(1));
            if hash != genesis {
                children
                    .entry(entry.header.prev_hash)
                    .or_default()
                    .push(hash);
            }
            nodes.insert(
                hash,
                Node {
                    header: entry.header,
                    total_work: entry.total_work,
                    status: entry.status,
                    seq: entry.seq,
                },
            );
        }
        if !nodes.contains_key(&genesis) {
            return Err(corrupt("genesis is missing from the block index".into()));
        }
        let tip = store
            .tip_hash()
            .map_err(from_storage)?
            .ok_or_else(|| corrupt("no tip recorded".into()))?;

        let mut chain = Chain {
            spec: Arc::new(spec),
            genesis,
            store,
            nodes,
            children,
            tip,
            next_seq,
            orphans: OrphanPool::default(),
            rejected: RejectedHeaders::default(),
            recent_blocks: RecentBlocks::default(),
            cache: SignatureCache::default(),
            validated_hook: None,
            unindexed: Vec::new(),
            defer_indexing: false,
            unstored: Vec::new(),
            held: HeldConnects::default(),
            hold_limit: 0,
        };
        chain.check_best_chain().map_err(corrupt)?;
        chain.mark_missing_data().map_err(from_storage)?;
        chain.finish_indexing().map_err(corrupt)?;
        chain
            .activate_best_chain(None)
            .map_err(|error| match error {
                BlockError::Storage(detail) => ChainError::Storage(detail),
                other => ChainError::Storage(other.to_string()),
            })?;
        // Blocks re-connected just now (a reorg the crash interrupted).
        chain.write_indexes().map_err(from_storage)?;
        let tip = chain.tip();
        tracing::info!(height = tip.height, tip = %tip.hash, "chain store open");
        Ok(chain)
    }

    /// Checks that the stored tip is in the index and that the height index
    /// matches the hash links from the tip back to genesis, with every
    /// body present.
    fn check_best_chain(&self) -> Result<(), String> {
        let tip = self
            .nodes
            .get(&self.tip)
            .ok_or_else(|| format!("tip {} is not in the block index", self.tip))?;
        if tip.status != BlockStatus::Valid {
            return Err(format!("tip {} is marked {:?}", self.tip, tip.status));
        }
        let mut hash = self.tip;
        loop {
            let node = self
                .nodes
                .get(&hash)
                .ok_or_else(|| format!("ancestor {hash} of the tip is not in the block index"))?;
            let height = node.header.height;
            match self.store.hash_at(height) {
                Ok(Some(stored)) if stored == hash => {}
                Ok(other) => {
                    return Err(format!(
                        "height index at {height} holds {other:?}, but the tip's ancestor there is {hash}"
                    ))
                }
                Err(error) => return Err(error.to_string()),
            }
            match self.store.has_block_data(&hash) {
                Ok(true) => {}
                Ok(false) => return Err(format!("body of best-chain block {hash} is missing")),
                Err(error) => return Err(error.to_string()),
            }
            if height == 0 {
                if hash != self.genesis {
                    return Err(format!("best chain starts at {hash}, not at genesis"));
                }
                break;
            }
            hash = node.header.prev_hash;
        }
        let tip_height = tip.header.height;
        match self.store.best_chain_last() {
            Ok(Some((height, _))) if height == tip_height => Ok(()),
            Ok(other) => Err(format!(
                "height index ends at {other:?}, but the tip is at height {tip_height}"
            )),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Indexes the best-chain blocks above `meta/indexed`: those whose
    /// connect was written but whose index entries were not (a crash in
    /// between). A store without the record predates deferred indexing and
    /// is fully indexed.
    fn finish_indexing(&mut self) -> Result<(), String> {
        let indexed = match self
            .store
            .indexed_hash()
            .map_err(|error| error.to_string())?
        {
            Some(indexed) => indexed,
            None => {
                return self
                    .store
                    .set_indexed_hash(&self.tip)
                    .map_err(|error| error.to_string())
            }
        };
        if indexed == self.tip {
            return Ok(());
        }
        let height = |hash: &BlockHash| self.nodes.get(hash).map(|node| node.header.height);
        let (Some(from), Some(to)) = (height(&indexed), height(&self.tip)) else {
            return Err(format!("indexed block {indexed} is not in the block index"));
        };
        let on_best_chain = self
            .store
            .hash_at(from)
            .map_err(|error| error.to_string())?;
        if on_best_chain != Some(indexed) || from > to {
            return Err(format!(
                "indexed block {indexed} is not on the best chain below the tip"
            ));
        }
        for height in from + 1..=to {
            let hash = self
                .store
                .hash_at(height)
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no best-chain block at height {height}"))?;
            let cached = self
                .load_block(&hash)
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("body of best-chain block {hash} is missing"))?;
            self.unindexed.push((hash, cached));
        }
        tracing::info!(blocks = to - from, "indexing blocks a crash left unindexed");
        self.write_indexes().map_err(|error| error.to_string())
    }

    /// Marks side-branch entries whose bodies are gone as data-missing, so
    /// fork choice never tries to connect them.
    fn mark_missing_data(&mut self) -> Result<(), StorageError> {
        let mut missing = Vec::new();
        for (hash, node) in &self.nodes {
            if node.status == BlockStatus::Valid && !self.store.has_block_data(hash)? {
                missing.push(*hash);
            }
        }
        for hash in missing {
            self.mark_subtree(hash, BlockStatus::DataMissing)?;
        }
        Ok(())
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis
    }

    pub fn reader(&self) -> ChainReader {
        ChainReader {
            spec: Arc::clone(&self.spec),
            genesis: self.genesis,
            store: self.store.clone(),
        }
    }

    /// Installs the hook called between validating and writing each block
    /// that joins the best chain (see [`ValidatedHook`]).
    pub fn set_validated_hook(&mut self, hook: ValidatedHook) {
        self.validated_hook = Some(hook);
    }

    /// With `true`, `process_block` connects blocks without writing their
    /// tx and address index entries; the caller publishes the new tip and
    /// then calls [`Chain::write_indexes`]. Whatever is still pending is
    /// written before the next block is processed and on `flush`. Meanwhile
    /// `ChainReader::tx` and `address_txs` do not see the newest blocks.
    pub fn set_defer_indexing(&mut self, defer: bool) {
        self.defer_indexing = defer;
    }

    /// Writes the tx and address index entries of the blocks connected
    /// since the last call (see `Store::index_blocks`).
    /// Held connects (see [`Chain::process_block_held`]) wait for their
    /// commit: an index entry never names a block readers cannot load.
    pub fn write_indexes(&mut self) -> Result<(), StorageError> {
        let committed = self.unindexed.len().saturating_sub(self.held.blocks.len());
        if committed == 0 {
            return Ok(());
        }
        let blocks: Vec<(BlockHash, &Block, &[TxId])> = self.unindexed[..committed]
            .iter()
            .map(|(hash, cached)| (*hash, cached.block.as_ref(), cached.txids.as_slice()))
            .collect();
        self.store.index_blocks(&blocks)?;
        self.unindexed.drain(..committed);
        Ok(())
    }

    /// Whether some connects wait for [`Chain::commit_held`].
    pub fn has_held(&self) -> bool {
        !self.held.blocks.is_empty()
    }

    /// Commits the held connects in one sled transaction. On failure the
    /// chain goes back to the last committed tip (the held blocks stay
    /// known and valid, and connect again with a later block).
    pub fn commit_held(&mut self) -> Result<(), StorageError> {
        if self.held.blocks.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let records: Vec<ConnectRecord<'_>> = held
            .blocks
            .iter()
            .map(|connect| ConnectRecord {
                hash: &connect.hash,
                block: &connect.cached.block,
                undo: &connect.undo,
                new_body: connect.new_body.as_ref(),
            })
            .collect();
        let accounts: Vec<(Address, Account)> = held.accounts.into_iter().collect();
        let result = self.store.connect_blocks(&records, &accounts);
        drop(records);
        if let Err(error) = result {
            tracing::error!(%error, blocks = held.blocks.len(), "committing connected blocks failed; back to the last committed tip");
            if let Some(first) = held.blocks.first() {
                self.tip = first.cached.block.header.prev_hash;
            }
            let keep = self.unindexed.len().saturating_sub(held.blocks.len());
            self.unindexed.truncate(keep);
            for connect in held.blocks {
                if connect.new_body.is_some() {
                    self.unstored.push((connect.hash, connect.cached));
                }
            }
            // Best effort: the bodies are still needed to connect again.
            let _ = self.store_unstored();
            return Err(error);
        }
        Ok(())
    }

    /// [`Chain::process_block`] for a block of a sync: the connects it
    /// makes may be held, up to `limit` in all, and committed together by
    /// [`Chain::commit_held`] (which the caller calls when no such block
    /// follows), or by the connect that reaches `limit`, a disconnect, or
    /// `flush`. Until then readers see the last committed tip.
    pub fn process_block_held(
        &mut self,
        block: Block,
        now_ms: u64,
        limit: usize,
    ) -> Result<ProcessOutcome, BlockError> {
        self.hold_limit = limit;
        let result = self.process_block_inner(block, now_ms);
        self.hold_limit = 0;
        result
    }

    /// Shares a signature cache with the mempool.
    pub fn set_signature_cache(&mut self, cache: SignatureCache) {
        self.cache = cache;
    }

    pub fn signature_cache(&self) -> &SignatureCache {
        &self.cache
    }

    /// The best block, from memory.
    pub fn tip(&self) -> TipInfo {
        let node = &self.nodes[&self.tip];
        tip_info(self.tip, node)
    }

    /// Whether the block is stored (any branch, any status) or is an orphan.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.nodes.contains_key(hash) || self.orphans.contains(hash)
    }

    /// Whether the block is known to be invalid.
    pub fn is_invalid(&self, hash: &BlockHash) -> bool {
        self.nodes
            .get(hash)
            .is_some_and(|node| node.status == BlockStatus::Invalid)
    }

    /// Blocks in the in-memory block index (every branch).
    pub fn index_len(&self) -> usize {
        self.nodes.len()
    }

    pub fn orphan_count(&self) -> usize {
        self.orphans.blocks.len()
    }

    /// Validates and stores `block`, connects it (and any orphans waiting
    /// for it) when that gives the chain with the most work, and reports
    /// what changed. An invalid block is marked (with its descendants) and
    /// its error returned; the chain then stays on the best valid tip.
    pub fn process_block(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<ProcessOutcome, BlockError> {
        self.commit_held().map_err(storage_block_error)?;
        self.process_block_inner(block, now_ms)
    }

    /// `process_block` for a block this chain did not ask for (a peer's
    /// gossip, as opposed to a sync that followed headers with more work):
    /// when its parent is known and its chain has less work than the tip,
    /// it is not stored (`ProcessOutcome::LowWork`). Proof-of-work on a
    /// side branch that eased its own target is cheap, so storing such
    /// blocks would let any peer fill the disk and the block index. A
    /// branch that will overtake the tip comes back through a sync of its
    /// headers (`process_block_held`, `process_block`), which has no such
    /// rule, and a competing block of equal work is still stored.
    pub fn process_block_unrequested(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<ProcessOutcome, BlockError> {
        self.commit_held().map_err(storage_block_error)?;
        let hash = block.hash();
        if !self.nodes.contains_key(&hash) {
            if let Some(parent) = self.nodes.get(&block.header.prev_hash) {
                // An unusable target is left for validation to report.
                if let Ok(target) = Target::from_compact(block.header.bits) {
                    let work = parent.total_work.saturating_add(&target.work());
                    let tip = &self.nodes[&self.tip];
                    if work < tip.total_work && parent.status != BlockStatus::Invalid {
                        tracing::debug!(
                            block = %hash,
                            height = block.header.height,
                            rule = "low_work_unrequested",
                            "not storing a block whose chain has less work than the tip"
                        );
                        return Ok(ProcessOutcome::LowWork);
                    }
                }
            }
        }
        self.process_block_inner(block, now_ms)
    }

    fn process_block_inner(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<ProcessOutcome, BlockError> {
        self.orphans.expire(now_ms);
        self.write_indexes().map_err(storage_block_error)?;
        let hash = block.hash();
        if let Some(node) = self.nodes.get(&hash) {
            return match node.status {
                BlockStatus::Invalid => Err(BlockError::KnownInvalid),
                _ => Ok(ProcessOutcome::Known),
            };
        }
        if self.orphans.contains(&hash) {
            if !self.nodes.contains_key(&block.header.prev_hash) {
                return Ok(ProcessOutcome::Known);
            }
            // Kept after its parent arrived because it was early (clock):
            // delivered again, it is tried again.
            self.orphans.remove(&hash);
        }
        if block.header.height == 0 {
            return Err(BlockError::BadGenesis);
        }
        if self.rejected.contains(&hash) {
            return Err(BlockError::KnownInvalid);
        }
        if self.rejected.contains(&block.header.prev_hash) {
            self.reject_header(hash);
            return Err(BlockError::InvalidAncestor);
        }
        let Some(parent) = self.nodes.get(&block.header.prev_hash) else {
            // Cheap checks only: proof-of-work makes junk expensive to send,
            // and signatures are checked once the parent shows up.
            validation::check_block_structure(&block, &self.spec)?;
            self.orphans.insert(hash, block, now_ms);
            return Ok(ProcessOutcome::Orphan);
        };
        if parent.status == BlockStatus::Invalid {
            self.reject_header(hash);
            return Err(BlockError::InvalidAncestor);
        }

        let result = self.accept_and_activate(hash, block, now_ms);
        // Bodies that did not go out with a connect (side branches, blocks
        // that failed to connect) are stored now, whatever happened.
        let stored = self.store_unstored();
        let outcome = result?;
        stored.map_err(storage_block_error)?;
        Ok(outcome)
    }

    /// The part of `process_block` after the cheap checks: accept `block`
    /// and the orphans waiting on it, then move to the best chain.
    fn accept_and_activate(
        &mut self,
        hash: BlockHash,
        block: Block,
        now_ms: u64,
    ) -> Result<ProcessOutcome, BlockError> {
        let old_tip = self.tip;
        if let Err(error) = self.accept_block(hash, block, now_ms) {
            // Orphans waiting on a block that can never be valid cannot be
            // either; a block merely early (clock) keeps its orphans.
            if is_header_error(&error) {
                self.reject_header(hash);
            } else if error.is_misbehaviour() {
                self.orphans.drop_descendants(&hash);
            }
            return Err(error);
        }
        let mut best_new = hash;
        // Orphans waiting on this block (and on those) can now be stored.
        let mut queue = vec![hash];
        while let Some(parent_hash) = queue.pop() {
            for child in self.orphans.take_children(&parent_hash) {
                let child_hash = child.hash();
                // Kept to put back if it is only early (clock).
                let early_copy = child.clone();
                match self.accept_block(child_hash, child, now_ms) {
                    Ok(()) => {
                        if self.better(&child_hash, &best_new) {
                            best_new = child_hash;
                        }
                        queue.push(child_hash);
                    }
                    Err(error @ BlockError::TimestampTooFarAhead { .. }) => {
                        // Our clock may be behind; valid later. It and the
                        // orphans waiting on it stay, for a later delivery.
                        tracing::debug!(block = %child_hash, %error, rule = "early_orphan_kept", "kept an early orphan for a later retry");
                        self.orphans.insert(child_hash, early_copy, now_ms);
                    }
                    Err(error) => {
                        tracing::debug!(block = %child_hash, %error, "dropped an invalid orphan");
                        if is_header_error(&error) {
                            self.reject_header(child_hash);
                        } else {
                            self.orphans.drop_descendants(&child_hash);
                        }
                    }
                }
            }
        }
        let failures = self.activate_best_chain(Some(best_new))?;
        if !self.defer_indexing {
            self.write_indexes().map_err(storage_block_error)?;
        }
        if let Some((_, error)) = failures.into_iter().find(|(failed, _)| *failed == hash) {
            return Err(error);
        }
        if self.tip == old_tip {
            return Ok(ProcessOutcome::SideChain);
        }
        let update = self.update_between(old_tip, self.tip)?;
        Ok(ProcessOutcome::Connected(update))
    }

    /// Remembers a block whose header can never be valid, and drops (and
    /// remembers) every orphan descending from it.
    fn reject_header(&mut self, hash: BlockHash) {
        self.rejected.insert(hash);
        for descendant in self.orphans.drop_descendants(&hash) {
            self.rejected.insert(descendant);
        }
    }

    /// Stateless and contextual checks, then stores the block and indexes
    /// it. The parent must be in the index and not invalid.
    fn accept_block(
        &mut self,
        hash: BlockHash,
        block: Block,
        now_ms: u64,
    ) -> Result<(), BlockError> {
        let parent = self
            .nodes
            .get(&block.header.prev_hash)
            .ok_or(BlockError::InvalidAncestor)?;
        if parent.status == BlockStatus::Invalid {
            return Err(BlockError::InvalidAncestor);
        }
        let parent_height = parent.header.height;
        let parent_work = parent.total_work;
        let recent = self.recent_timings(&block.header.prev_hash);
        validation::check_header_context(
            &block.header,
            parent_height,
            &recent,
            &self.spec,
            now_ms,
        )?;
        let txids =
            validation::check_block_stateless(&block, &self.spec, &self.genesis, &self.cache)?;
        let target = Target::from_compact(block.header.bits)
            .map_err(|_| BlockError::BadCompactTarget(block.header.bits.0))?;
        let node = Node {
            header: block.header.clone(),
            total_work: parent_work.saturating_add(&target.work()),
            status: BlockStatus::Valid,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.children
            .entry(block.header.prev_hash)
            .or_default()
            .push(hash);
        self.nodes.insert(hash, node);
        let cached = Arc::new(CachedBlock {
            block: Arc::new(block),
            txids,
        });
        self.recent_blocks.insert(hash, Arc::clone(&cached));
        self.unstored.push((hash, cached));
        Ok(())
    }

    /// Writes the bodies and index entries of accepted blocks that no
    /// connect has written.
    fn store_unstored(&mut self) -> Result<(), StorageError> {
        for (hash, cached) in std::mem::take(&mut self.unstored) {
            let Some(node) = self.nodes.get(&hash) else {
                continue;
            };
            self.store.put_block(&hash, &cached.block, &node.entry())?;
        }
        Ok(())
    }

    /// Timestamps and bits of `last` and its ancestors, oldest first, as
    /// many as retargeting and the median rule need.
    fn recent_timings(&self, last: &BlockHash) -> Vec<BlockTiming> {
        let wanted = (RETARGET_WINDOW + 1).max(difficulty::MEDIAN_TIME_SPAN);
        let mut timings = Vec::with_capacity(wanted);
        let mut cursor = Some(*last);
        while let Some(hash) = cursor {
            let Some(node) = self.nodes.get(&hash) else {
                break;
            };
            timings.push(BlockTiming {
                timestamp: node.header.timestamp,
                bits: node.header.bits,
            });
            if timings.len() == wanted || node.header.height == 0 {
                break;
            }
            cursor = Some(node.header.prev_hash);
        }
        timings.reverse();
        timings
    }

    /// Whether `a` beats `b` in fork choice: more work, or equal work and
    /// seen first.
    fn better(&self, a: &BlockHash, b: &BlockHash) -> bool {
        match (self.nodes.get(a), self.nodes.get(b)) {
            (Some(a), Some(b)) => {
                a.total_work > b.total_work || (a.total_work == b.total_work && a.seq < b.seq)
            }
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The best block that is not known invalid and has data, by a scan of
    /// the whole index.
    fn best_candidate(&self) -> BlockHash {
        let mut best = self.genesis;
        for (hash, node) in &self.nodes {
            if node.status == BlockStatus::Valid && self.better(hash, &best) {
                best = *hash;
            }
        }
        best
    }

    /// Moves the tip to the best valid chain. `hint` is a block just
    /// stored: if it beats the tip it is tried first, without a scan. Blocks
    /// that fail to connect are marked invalid with their descendants and
    /// the search repeats. Returns the failures.
    fn activate_best_chain(
        &mut self,
        hint: Option<BlockHash>,
    ) -> Result<Vec<(BlockHash, BlockError)>, BlockError> {
        let mut failures = Vec::new();
        let mut candidate = match hint {
            Some(hint) if self.better(&hint, &self.tip) => hint,
            Some(_) => return Ok(failures),
            None => self.best_candidate(),
        };
        // Each round either reaches the candidate or marks at least one
        // block invalid or data-missing, so this ends.
        while candidate != self.tip && self.better(&candidate, &self.tip) {
            match self.reorganize_to(candidate)? {
                None if self.tip == candidate => break,
                // A body on the way was missing (and is now marked): the
                // tip may sit mid-way, so look for the best block again.
                None => candidate = self.best_candidate(),
                Some((failed, error)) => {
                    tracing::warn!(block = %failed, %error, "block failed to connect; marking it and its descendants invalid");
                    self.mark_subtree(failed, BlockStatus::Invalid)
                        .map_err(storage_block_error)?;
                    failures.push((failed, error));
                    candidate = self.best_candidate();
                }
            }
        }
        Ok(failures)
    }

    /// Disconnects back to the fork point with `target`'s chain and connects
    /// towards `target`. Returns the first block that failed validation, if
    /// any (the tip is then its parent).
    fn reorganize_to(
        &mut self,
        target: BlockHash,
    ) -> Result<Option<(BlockHash, BlockError)>, BlockError> {
        let fork = self.fork_point(&self.tip, &target)?;
        while self.tip != fork {
            self.disconnect_tip()?;
        }
        let mut path = Vec::new();
        let mut cursor = target;
        while cursor != fork {
            path.push(cursor);
            cursor = self.nodes[&cursor].header.prev_hash;
        }
        for hash in path.into_iter().rev() {
            let block = match self.load_block(&hash)? {
                Some(block) => block,
                None => {
                    self.mark_subtree(hash, BlockStatus::DataMissing)
                        .map_err(storage_block_error)?;
                    return Ok(None);
                }
            };
            if let Err(error) = self.connect_tip(&hash, &block)? {
                return Ok(Some((hash, error)));
            }
        }
        Ok(None)
    }

    /// Connects `block` on the tip. The outer error is a storage failure;
    /// the inner one says the block is invalid.
    fn connect_tip(
        &mut self,
        hash: &BlockHash,
        cached: &Arc<CachedBlock>,
    ) -> Result<Result<(), BlockError>, BlockError> {
        let block = &cached.block;
        let accounts = StrictAccounts {
            store: &self.store,
            held: &self.held.accounts,
            error: RefCell::new(None),
        };
        let result = state::apply_block(block, &self.spec, &accounts);
        if let Some(error) = accounts.error.into_inner() {
            return Err(storage_block_error(error));
        }
        let change = match result {
            Ok(change) => change,
            Err(error) => return Ok(Err(error)),
        };
        if let Some(hook) = self.validated_hook.as_mut() {
            hook(hash, block);
        }
        // A block accepted by this `process_block` goes to sled in the same
        // transaction as its connect: one sled commit per new tip.
        let new_body = match self.unstored.iter().position(|(known, _)| known == hash) {
            Some(position) => {
                self.unstored.swap_remove(position);
                self.nodes.get(hash).map(Node::entry)
            }
            None => None,
        };
        if self.hold_limit > 1 {
            self.held.accounts.extend(change.updates.iter().copied());
            self.held.blocks.push(HeldConnect {
                hash: *hash,
                cached: Arc::clone(cached),
                undo: change.undo,
                new_body,
            });
            self.unindexed.push((*hash, Arc::clone(cached)));
            self.tip = *hash;
            if self.held.blocks.len() >= self.hold_limit {
                self.commit_held().map_err(storage_block_error)?;
            }
            return Ok(Ok(()));
        }
        self.store
            .connect_block(hash, block, &change, new_body.as_ref())
            .map_err(storage_block_error)?;
        self.unindexed.push((*hash, Arc::clone(cached)));
        self.tip = *hash;
        Ok(Ok(()))
    }

    /// A block body with its txids, from the recent-block cache or sled.
    fn load_block(&mut self, hash: &BlockHash) -> Result<Option<Arc<CachedBlock>>, BlockError> {
        if let Some(cached) = self.recent_blocks.get(hash) {
            return Ok(Some(cached));
        }
        if let Some((_, cached)) = self.unstored.iter().find(|(known, _)| known == hash) {
            return Ok(Some(Arc::clone(cached)));
        }
        if let Some(cached) = self.held.get(hash) {
            return Ok(Some(Arc::clone(cached)));
        }
        let Some(block) = self.store.block(hash).map_err(storage_block_error)? else {
            return Ok(None);
        };
        let txids = block.txids();
        let cached = Arc::new(CachedBlock {
            block: Arc::new(block),
            txids,
        });
        self.recent_blocks.insert(*hash, Arc::clone(&cached));
        Ok(Some(cached))
    }

    fn disconnect_tip(&mut self) -> Result<(), BlockError> {
        // Undo works on committed state.
        self.commit_held().map_err(storage_block_error)?;
        let hash = self.tip;
        if hash == self.genesis {
            return Err(BlockError::Storage("cannot disconnect genesis".into()));
        }
        let missing = |what: &str| {
            BlockError::Storage(format!("{what} of best-chain block {hash} is missing"))
        };
        let cached = self.load_block(&hash)?.ok_or_else(|| missing("body"))?;
        let block = &cached.block;
        let undo = self
            .store
            .undo(&hash)
            .map_err(storage_block_error)?
            .ok_or_else(|| missing("undo record"))?;
        // Only the tip can still be unindexed here (blocks are indexed in
        // order and `unindexed` ends at the tip).
        let indexed = match self.unindexed.last() {
            Some((last, _)) if *last == hash => {
                self.unindexed.pop();
                false
            }
            _ => true,
        };
        self.store
            .disconnect_block(&hash, block, &cached.txids, &undo, indexed)
            .map_err(storage_block_error)?;
        self.tip = block.header.prev_hash;
        Ok(())
    }

    /// The last common ancestor of `a` and `b`.
    fn fork_point(&self, a: &BlockHash, b: &BlockHash) -> Result<BlockHash, BlockError> {
        let lookup = |hash: &BlockHash| {
            self.nodes
                .get(hash)
                .ok_or_else(|| BlockError::Storage(format!("block {hash} missing from the index")))
        };
        let (mut a, mut b) = (*a, *b);
        let (mut node_a, mut node_b) = (lookup(&a)?, lookup(&b)?);
        while node_a.header.height > node_b.header.height {
            a = node_a.header.prev_hash;
            node_a = lookup(&a)?;
        }
        while node_b.header.height > node_a.header.height {
            b = node_b.header.prev_hash;
            node_b = lookup(&b)?;
        }
        while a != b {
            a = node_a.header.prev_hash;
            b = node_b.header.prev_hash;
            node_a = lookup(&a)?;
            node_b = lookup(&b)?;
        }
        Ok(a)
    }

    /// Sets `status` on `root` and every descendant, in memory and store.
    fn mark_subtree(&mut self, root: BlockHash, status: BlockStatus) -> Result<(), StorageError> {
        let mut changed = Vec::new();
        let mut stack = vec![root];
        while let Some(hash) = stack.pop() {
            if let Some(node) = self.nodes.get_mut(&hash) {
                if node.status != BlockStatus::Invalid {
                    node.status = status;
                }
                changed.push((hash, node.entry()));
            }
            if let Some(children) = self.children.get(&hash) {
                stack.extend(children.iter().copied());
            }
        }
        self.store.put_index_entries(&changed)
    }

    /// The net change from `old_tip` to `new_tip`.
    fn update_between(
        &self,
        old_tip: BlockHash,
        new_tip: BlockHash,
    ) -> Result<ChainUpdate, BlockError> {
        let fork = self.fork_point(&old_tip, &new_tip)?;
        let load = |hash: &BlockHash| {
            if let Some(cached) = self.recent_blocks.get(hash) {
                return Ok(Arc::clone(&cached.block));
            }
            if let Some(cached) = self.held.get(hash) {
                return Ok(Arc::clone(&cached.block));
            }
            self.store
                .block(hash)
                .map_err(storage_block_error)?
                .map(Arc::new)
                .ok_or_else(|| BlockError::Storage(format!("body of block {hash} is missing")))
        };
        let mut disconnected = Vec::new();
        let mut cursor = old_tip;
        while cursor != fork {
            let block = load(&cursor)?;
            cursor = block.header.prev_hash;
            disconnected.push(block);
        }
        let mut connected = Vec::new();
        let mut cursor = new_tip;
        while cursor != fork {
            let block = load(&cursor)?;
            cursor = block.header.prev_hash;
            connected.push(block);
        }
        connected.reverse();
        Ok(ChainUpdate {
            old_tip,
            new_tip,
            fork_height: self.nodes[&fork].header.height,
            disconnected,
            connected,
        })
    }

    /// Height, parent, target and timestamps for a block on the tip.
    pub fn next_block_context(&self, now_ms: u64) -> NextBlockContext {
        let recent = self.recent_timings(&self.tip);
        let tip = &self.nodes[&self.tip];
        let min_timestamp = difficulty::median_time_past(&recent).saturating_add(1);
        NextBlockContext {
            height: tip.header.height + 1,
            prev_hash: self.tip,
            target: difficulty::next_required_target(&self.spec, &recent),
            min_timestamp,
            timestamp: now_ms.max(min_timestamp),
        }
    }

    /// Asks sled to write out everything. In sled 0.34.7 this is
    /// `sync_file_range`, not `fsync`, and the background flusher runs every
    /// 500 ms: after a crash the last fraction of a second of connected
    /// blocks may be lost. The store then reopens consistent at an earlier
    /// tip and the node fetches the missing blocks from its peers again.
    pub fn flush(&mut self) -> Result<(), ChainError> {
        self.commit_held()
            .map_err(|error| ChainError::from_storage(self.store.path(), error))?;
        self.write_indexes()
            .map_err(|error| ChainError::from_storage(self.store.path(), error))?;
        self.store
            .flush()
            .map_err(|error| ChainError::from_storage(self.store.path(), error))
    }

    /// A named key-value tree in the same database, for the node's own
    /// records (address book, node key).
    pub fn aux_tree(&self, name: &str) -> Result<AuxTree, ChainError> {
        self.store
            .aux_tree(name)
            .map_err(|error| ChainError::from_storage(self.store.path(), error))
    }
}

fn tip_info(hash: BlockHash, node_header_work: &Node) -> TipInfo {
    TipInfo {
        height: node_header_work.header.height,
        hash,
        total_work: node_header_work.total_work,
        target: Target::from_compact(node_header_work.header.bits).unwrap_or(Target::MAX),
        timestamp: node_header_work.header.timestamp,
    }
}

/// The read side of the chain: `Clone`, `Send`, `Sync`; every call reads
/// sled directly and never waits on the writer. A storage error reads as
/// "absent" and is logged.
#[derive(Clone)]
pub struct ChainReader {
    spec: Arc<ChainSpec>,
    genesis: BlockHash,
    store: Store,
}

fn logged<T>(result: Result<Option<T>, StorageError>) -> Option<T> {
    match result {
        Ok(value) => value,
        Err(error) => {
            tracing::error!(%error, "chain storage read failed");
            None
        }
    }
}

impl ChainReader {
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis
    }

    /// The best block as of the last committed connect or disconnect.
    pub fn tip(&self) -> TipInfo {
        let hash = logged(self.store.tip_hash()).unwrap_or(self.genesis);
        match logged(self.store.entry(&hash)) {
            Some(entry) => TipInfo {
                height: entry.header.height,
                hash,
                total_work: entry.total_work,
                target: Target::from_compact(entry.header.bits).unwrap_or(Target::MAX),
                timestamp: entry.header.timestamp,
            },
            None => TipInfo {
                height: 0,
                hash,
                total_work: Work::ZERO,
                target: self.spec.initial_target,
                timestamp: self.spec.genesis_timestamp,
            },
        }
    }

    pub fn account(&self, address: &Address) -> Account {
        AccountSource::account(&self.store, address)
    }

    /// Any stored block, on any branch.
    pub fn block(&self, hash: &BlockHash) -> Option<Block> {
        logged(self.store.block(hash))
    }

    /// A stored block's canonical encoding, as stored: a node serving peers
    /// forwards it without decoding and encoding it again.
    pub fn block_bytes(&self, hash: &BlockHash) -> Option<Vec<u8>> {
        logged(self.store.block_bytes(hash))
    }

    pub fn header(&self, hash: &BlockHash) -> Option<Header> {
        logged(self.store.entry(hash)).map(|entry| entry.header)
    }

    /// Whether the block is stored and not known invalid.
    pub fn has_block(&self, hash: &BlockHash) -> bool {
        logged(self.store.entry(hash)).is_some_and(|entry| entry.status == BlockStatus::Valid)
    }

    /// What the index says about a block (any branch); `None` when unknown.
    pub fn block_status(&self, hash: &BlockHash) -> Option<BlockStatus> {
        logged(self.store.entry(hash)).map(|entry| entry.status)
    }

    /// Best-chain hash at `height`.
    pub fn hash_at(&self, height: Height) -> Option<BlockHash> {
        logged(self.store.hash_at(height))
    }

    /// Best-chain block at `height`.
    pub fn block_at(&self, height: Height) -> Option<Block> {
        self.hash_at(height).and_then(|hash| self.block(&hash))
    }

    /// A transaction confirmed on the best chain; only its bytes are
    /// decoded, not its block's.
    pub fn tx(&self, txid: &TxId) -> Option<(Transaction, TxLocation)> {
        logged(self.store.tx(txid))
    }

    /// Whether a tx is confirmed on the best chain, from the tx index
    /// alone: no block is read. What a peer's announcement is checked
    /// against.
    pub fn has_tx(&self, txid: &TxId) -> bool {
        match self.store.has_tx(txid) {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "chain storage read failed");
                false
            }
        }
    }

    /// Block bodies in the store, on every branch (counts them: for tests
    /// and diagnostics).
    pub fn stored_block_count(&self) -> usize {
        self.store.block_count()
    }

    /// Block bodies read from storage since it was opened (every reader of
    /// one chain shares the count).
    pub fn block_reads(&self) -> u64 {
        self.store.block_reads()
    }

    /// Best-chain transactions sent or received by `address`, newest first,
    /// before `before` (height, position in the block) when given: the
    /// next page after the last entry of the previous one.
    pub fn address_txs(
        &self,
        address: &Address,
        limit: usize,
        before: Option<(Height, u32)>,
    ) -> Vec<(Transaction, TxLocation)> {
        match self.store.address_txs(address, limit, before) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "reading address history failed");
                Vec::new()
            }
        }
    }

    /// Block locator of the best chain: the last 10 hashes one by one, then
    /// doubling steps back, always ending with genesis.
    pub fn locator(&self) -> Vec<BlockHash> {
        let tip = self.tip();
        let mut locator = Vec::new();
        let mut height = tip.height;
        let mut step = 1u64;
        loop {
            if let Some(hash) = self.hash_at(height) {
                locator.push(hash);
            }
            if height == 0 {
                break;
            }
            if locator.len() >= 10 {
                step = step.saturating_mul(2);
            }
            height = height.saturating_sub(step);
        }
        if locator.last() != Some(&self.genesis) {
            locator.push(self.genesis);
        }
        locator
    }

    /// Best-chain headers after the first locator hash that is on our best
    /// chain (genesis when none is), up to `max`.
    pub fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<Header> {
        let mut start = 0;
        for hash in locator {
            if let Some(entry) = logged(self.store.entry(hash)) {
                if self.hash_at(entry.header.height) == Some(*hash) {
                    start = entry.header.height;
                    break;
                }
            }
        }
        let mut headers = Vec::new();
        let mut height = start + 1;
        while headers.len() < max {
            let Some(hash) = self.hash_at(height) else {
                break;
            };
            let Some(header) = self.header(&hash) else {
                break;
            };
            headers.push(header);
            height += 1;
        }
        headers
    }

    /// Height, tip, account count, total supply and digest, all from one
    /// state: one read of the summary the store keeps current with every
    /// connect and disconnect (`storage::StateRecord`), so O(1).
    pub fn state_summary(&self) -> StateSummary {
        match logged(self.store.state_record()) {
            Some(record) => {
                let (digest, accounts, total_supply) = record.digest.finish();
                StateSummary {
                    height: record.height,
                    tip: record.tip,
                    accounts,
                    total_supply,
                    digest,
                }
            }
            None => {
                // Only a store without genesis has no record.
                let tip = self.tip();
                let (digest, accounts, total_supply) = StateDigester::new().finish();
                StateSummary {
                    height: tip.height,
                    tip: tip.hash,
                    accounts,
                    total_supply,
                    digest,
                }
            }
        }
    }
}

impl AccountSource for ChainReader {
    fn account(&self, address: &Address) -> Account {
        ChainReader::account(self, address)
    }
}
