//! `Backend`: everything the P2P layer needs from the rest of the node,
//! as one trait, so networking can be built and tested apart from the RPC
//! and the miner. The node's `NodeHandle` implements it.

use crate::events::NodeEvent;
use ledger::{Block, BlockHash, Header, Height, Transaction, TxId, Work};
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
    /// Valid and new: stored (on the best chain or a side branch); relay it.
    Accepted,
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

/// The node as the P2P layer sees it. Reads are cheap and synchronous;
/// submissions are async because validation runs off the async threads.
pub trait Backend: Clone + Send + Sync + 'static {
    fn genesis_hash(&self) -> BlockHash;
    fn tip(&self) -> TipSummary;
    /// Block locator of the best chain: recent hashes densely, then
    /// exponentially sparser back to genesis.
    fn locator(&self) -> Vec<BlockHash>;
    /// Best-chain headers after the first locator hash we know, up to `max`.
    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<Header>;
    fn has_block(&self, hash: &BlockHash) -> bool;
    fn block(&self, hash: &BlockHash) -> Option<Block>;
    /// The `Message::Block` payload for a stored block, to answer
    /// `GetData`. The default encodes `block`; a node forwards the stored
    /// bytes, or the payload it encoded once when it validated the block.
    fn block_payload(&self, hash: &BlockHash) -> Option<Bytes> {
        self.block(hash)
            .map(|block| super::codec::encode_message(&super::message::Message::Block(block)))
    }
    /// A tx in the mempool (for answering `GetData`).
    fn mempool_tx(&self, txid: &TxId) -> Option<Transaction>;
    /// Up to `limit` txids of the mempool, newest first: announced to each
    /// new peer so pending txs reach nodes that connect later (a late
    /// joiner, a healed partition).
    fn mempool_txids(&self, limit: usize) -> Vec<TxId>;
    /// Whether a tx is in the mempool or confirmed on the best chain.
    fn has_tx(&self, txid: &TxId) -> bool;
    fn submit_block(&self, block: Block) -> impl Future<Output = BlockVerdict> + Send;
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
    fn subscribe(&self) -> broadcast::Receiver<NodeEvent>;
}
