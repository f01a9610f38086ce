//! `Backend`: everything the P2P layer needs from the rest of the node,
//! so networking can be built and tested apart from the RPC and the miner.
//! It extends the protocol core's `ChainView` (synchronous reads) with what
//! only the driver uses: validation (async, off the network's task), block
//! bytes to serve, and the node's events. The node's `NodeHandle`
//! implements it.

use super::protocol::{ChainView, ConnId};
use crate::events::NodeEvent;
use ledger::{Block, BlockHash, Height, Transaction, TxId, Work};
use std::future::Future;
use tokio::sync::broadcast;
use tokio_util::bytes::Bytes;

/// Our best chain, as peers are told about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TipSummary {
    pub height: Height,
    pub hash: BlockHash,
    pub total_work: Work,
}

/// What became of a block a peer sent us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockVerdict {
    /// Valid and new, and it joined our best chain: relay it; the peer
    /// that sent it earns credit for a useful block.
    Accepted,
    /// Valid and new, stored on a side branch that did not become our
    /// tip: no credit (a peer could otherwise earn eviction protection
    /// with cheap stale blocks).
    SideBranch,
    /// We had it already.
    Known,
    /// Its parent is unknown: kept as an orphan; ask the peer for headers.
    Orphan,
    /// Invalid. `misbehaving` is true when the sender must have known (bad
    /// proof-of-work, bad signature, malformed): disconnect and ban.
    Rejected { reason: String, misbehaving: bool },
}

/// What became of a transaction a peer sent us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxVerdict {
    /// Newly admitted to the mempool; relay it.
    Accepted,
    /// Already in the mempool or the chain.
    Known,
    /// Refused. `misbehaving` is true only for what no honest peer sends
    /// (bad signature, wrong chain, malformed); an unaffordable or late tx
    /// is not misbehaviour.
    Rejected { reason: String, misbehaving: bool },
}

/// Work on a new block's path (a large compact block's rebuild) for
/// `Backend::run_urgent`. It may end with a block to judge at once, on
/// the same thread (see `JudgeNow`).
pub type UrgentJob = Box<dyn FnOnce() -> Option<JudgeNow> + Send>;

/// A block an urgent job rebuilt in full, to be judged where the job ran
/// (the node's chain writer) as `submit_block_from(from, block)` would,
/// without going through the driver and the importer first. `then` gets
/// the verdict, or the block back where nothing can judge it there (the
/// job ran on a blocking thread, or the block's parent is not in the
/// chain yet): the caller then sends it the usual way.
pub struct JudgeNow {
    pub from: ConnId,
    pub block: Block,
    /// The block's txids, worked out by the rebuild from these very txs.
    pub txids: Vec<TxId>,
    pub then: Box<dyn FnOnce(Result<BlockVerdict, Block>) + Send>,
}

impl JudgeNow {
    /// Nothing here can judge the block: hand it back to `then`.
    pub fn decline(self) {
        (self.then)(Err(self.block));
    }
}

/// The node as the P2P layer sees it. Reads are cheap and synchronous;
/// submissions are async because validation runs off the async threads.
pub trait Backend: ChainView + Clone + Send + Sync + 'static {
    fn genesis_hash(&self) -> BlockHash;
    /// The chain's parameters (a peer's block messages are capped by its
    /// `max_block_bytes`, `message::max_frame_for`).
    fn chain_spec(&self) -> &ledger::ChainSpec;
    fn block(&self, hash: &BlockHash) -> Option<Block>;
    /// The `Message::Block` payload for a stored block, to answer
    /// `GetData`. The default encodes `block`; a node forwards the stored
    /// bytes, or the payload it encoded once when it validated the block.
    fn block_payload(&self, hash: &BlockHash) -> Option<Bytes> {
        self.block(hash).map(|block| {
            super::codec::encode_message(&super::message::Message::Block(Box::new(block)))
        })
    }
    /// The `Message::CompactBlock` payload for a stored block. The default
    /// builds it from `block`; a node keeps the one it encoded when it
    /// validated the block.
    fn compact_payload(&self, hash: &BlockHash) -> Option<Bytes> {
        self.block(hash)
            .map(|block| super::codec::compact_payload(&block))
    }
    /// What to push to a high-bandwidth peer for a block we just
    /// validated: `("compact_block", payload)` or, when most of its txs
    /// would be prefilled, `("block", payload)`. The default is the
    /// compact block.
    fn push_payload(&self, hash: &BlockHash) -> Option<(&'static str, Bytes)> {
        self.compact_payload(hash)
            .map(|payload| ("compact_block", payload))
    }
    /// A stored block or one validated and still being committed, to
    /// answer `GetBlockTxs`. The default is `block`.
    fn recent_block(&self, hash: &BlockHash) -> Option<Block> {
        self.block(hash)
    }
    fn submit_block(&self, block: Block) -> impl Future<Output = BlockVerdict> + Send;
    /// `submit_block` for a block connection `from` sent unasked (or
    /// announced): an orphan counts against that peer's share of the
    /// orphan pool. The default is `submit_block`.
    fn submit_block_from(
        &self,
        from: ConnId,
        block: Block,
    ) -> impl Future<Output = BlockVerdict> + Send {
        let _ = from;
        self.submit_block(block)
    }
    /// `submit_block` for a block a sync fetched: more of them follow at
    /// once, so the backend may commit several together. The default is
    /// `submit_block`.
    fn submit_synced_block(&self, block: Block) -> impl Future<Output = BlockVerdict> + Send {
        self.submit_block(block)
    }
    /// Optional: checks what needs no chain state (the tx signatures, into
    /// the signature cache) before `submit_block`, and hands the block back.
    /// During a sync the P2P layer runs this for up to 32 blocks ahead
    /// while the chain applies the current one, so signature checks use
    /// the cores the chain leaves idle. The default does nothing.
    fn precheck_block(&self, block: Block) -> impl Future<Output = Block> + Send {
        async move { block }
    }
    fn submit_tx(&self, tx: Transaction) -> impl Future<Output = TxVerdict> + Send;
    /// `submit_tx` for several txs, in order, one verdict each; a node
    /// admits them in one trip to a blocking thread and under one lock.
    fn submit_txs(&self, txs: Vec<Transaction>) -> impl Future<Output = Vec<TxVerdict>> + Send {
        async move {
            let mut verdicts = Vec::with_capacity(txs.len());
            for tx in txs {
                verdicts.push(self.submit_tx(tx).await);
            }
            verdicts
        }
    }
    fn subscribe(&self) -> broadcast::Receiver<NodeEvent>;
    /// Optional: a block was rebuilt in full from `compact`, as a peer
    /// sent it. A node may relay that same compact form once the block is
    /// valid instead of working out its own. The default does nothing.
    fn rebuilt_from(&self, compact: &super::message::CompactBlock) {
        let _ = compact;
    }
    /// Optional: runs `job` (a large compact block's rebuild) where the
    /// node's block path runs, ahead of its tx work, and judges the block
    /// it may end with there (`JudgeNow`); or hands it back for a blocking
    /// thread. The default hands it back.
    fn run_urgent(&self, job: UrgentJob) -> Result<(), UrgentJob> {
        Err(job)
    }
}
