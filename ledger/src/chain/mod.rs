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
//!
//! One concept a file: `tree` (accepting blocks and fork choice), `connect`
//! (moving the tip one block, and the group commit of held connects),
//! `orphans` (blocks waiting for their parent), `cache` (the writer's
//! bounded memories: recent bodies, rejected headers), `prune` (side
//! branches: which blocks are off the best chain, and forgetting the stale
//! and the surplus ones), `open` (loading the index and recovering from a
//! crash) and `reader` (`ChainReader`).

mod cache;
mod connect;
mod open;
mod orphans;
mod prune;
mod reader;
mod tree;

use crate::amount::Amount;
use crate::block::{Block, Header};
use crate::chainspec::ChainSpec;
use crate::difficulty;
use crate::hash::{BlockHash, Hash256, TxId};
use crate::sigcache::SignatureCache;
pub use crate::storage::{AuxEntries, AuxTree};
use crate::storage::{IndexEntry, StorageError, Store};
pub use crate::storage::{MemoryArena, TemporaryArena};
use crate::target::{Target, Work};
use crate::validation::BlockError;
use crate::Height;
use cache::{CachedBlock, RecentBlocks, RejectedHeaders};
use connect::HeldConnects;
use orphans::OrphanPool;
pub use orphans::OrphanSource;
use prune::SideBlocks;
pub use prune::{SideBranchLimits, MAX_SIDE_BLOCKS, STALE_BRANCH_DEPTH};
pub use reader::ChainReader;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use crate::storage::{BlockStatus, TxLocation};

/// Most orphans kept at once.
pub const MAX_ORPHANS: usize = 256;
/// Most bytes of orphans kept at once.
pub const MAX_ORPHAN_BYTES: usize = 32 * 1024 * 1024;
/// Most orphans one `OrphanSource` (one peer) keeps at once: an eighth of
/// the pool, so filling it takes at least eight senders.
pub const MAX_ORPHANS_PER_SOURCE: usize = MAX_ORPHANS / 8;
/// Most bytes of orphans one `OrphanSource` keeps at once.
pub const MAX_ORPHAN_BYTES_PER_SOURCE: usize = MAX_ORPHAN_BYTES / 8;
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
    Storage(#[source] StorageError),
}

impl ChainError {
    fn from_storage(dir: &Path, error: StorageError) -> ChainError {
        match error {
            StorageError::Corrupt(detail) => ChainError::Corrupt {
                dir: dir.display().to_string(),
                detail,
            },
            other => ChainError::Storage(other),
        }
    }
}

/// Why `process_block` gave no outcome. The two causes are kept apart
/// because only one is a verdict on the block: an invalid block is its
/// sender's doing, while a storage failure is ours and says nothing about
/// the block (the same block may connect once the disk recovers).
/// Exhaustive on purpose: every caller decides, for each cause, whether it
/// blames the block's sender.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Invalid(#[from] BlockError),
    #[error("chain storage error: {0}")]
    Storage(#[from] StorageError),
}

impl ProcessError {
    /// A stable, low-cardinality name for metric labels: the failed rule
    /// of an invalid block, or `storage`.
    pub fn reason(&self) -> &'static str {
        match self {
            ProcessError::Invalid(error) => error.reason(),
            ProcessError::Storage(_) => "storage",
        }
    }

    /// The block's error, when the block itself was found invalid.
    pub fn invalid(&self) -> Option<&BlockError> {
        match self {
            ProcessError::Invalid(error) => Some(error),
            ProcessError::Storage(_) => None,
        }
    }
}

/// A broken in-memory index or store: something the chain needs that it
/// wrote itself is gone.
fn missing(detail: String) -> StorageError {
    StorageError::Corrupt(detail)
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
    /// The txids of the block the current `process_block_with_txids` call
    /// hands in, taken by its checks.
    known_txids: Option<(BlockHash, Vec<TxId>)>,
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
    /// Indexed blocks off the best chain (see `prune`).
    side: SideBlocks,
    side_limits: SideBranchLimits,
    pruned_side_blocks: u64,
}

/// Called with each block the chain is about to connect, once it has passed
/// every check, its state transition included, and before it is written.
/// A node relays from here, so the sled commit is not on the path between
/// peers. The body of a block that has just arrived is written with that
/// commit, so whoever relays must be able to serve it from memory until
/// then (the node keeps a relay cache). The block's txids, computed by
/// its checks, come with it so the hook need not hash every tx again.
pub type ValidatedHook = Box<dyn FnMut(&BlockHash, &Block, &[TxId]) + Send>;

impl Chain {
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

    /// Whether the block is in the block index (any branch, any status;
    /// orphans are not).
    pub fn has_block(&self, hash: &BlockHash) -> bool {
        self.nodes.contains_key(hash)
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
        self.orphans.len()
    }

    /// How many orphans `source` holds (at most `MAX_ORPHANS_PER_SOURCE`).
    pub fn orphans_held_by(&self, source: OrphanSource) -> usize {
        self.orphans.held_by(source)
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

/// Chains and blocks for the unit tests of this module's files: a regtest
/// chain in a temporary store, and solved blocks on any block of it
/// (regtest's target is met by about every other hash).
#[cfg(test)]
mod testing {
    use super::{Chain, TemporaryArena};
    use crate::address::Address;
    use crate::block::{Block, Header};
    use crate::chainspec::ChainSpec;
    use crate::miner;
    use std::sync::atomic::AtomicBool;

    pub(super) fn regtest_chain() -> (TemporaryArena, Chain) {
        let arena = TemporaryArena::new(1 << 20).expect("arena");
        let spec = ChainSpec::builtin("regtest").expect("built-in");
        let chain = Chain::open_in_arena(spec, &arena, "test").expect("open");
        (arena, chain)
    }

    /// A solved empty block on `parent`, one second after it; `salt` tells
    /// competing blocks apart.
    pub(super) fn block_on(chain: &Chain, parent: &Header, salt: u8) -> Block {
        let spec = chain.spec();
        let mut block = miner::assemble_block(
            spec,
            parent.height + 1,
            parent.hash(),
            spec.initial_target,
            parent.timestamp + 1_000,
            Address([salt; 20]),
            Vec::new(),
        );
        assert!(miner::solve(&mut block.header, &AtomicBool::new(false), 1));
        block
    }

    /// A time at which every block `block_on` makes is timely.
    pub(super) fn now_ms(chain: &Chain) -> u64 {
        chain.spec().genesis_timestamp + 1_000_000
    }
}
