//! `NodeEvent`: what the node announces on its broadcast channel when the
//! chain or the mempool changes. The P2P layer relays from it, the RPC layer
//! streams it as server-sent events, and the miner restarts on it.

use ledger::chain::ChainUpdate;
use ledger::{Block, BlockHash, Height, Transaction, TxId};
use std::sync::Arc;

/// A change in the node's view of the world, in the order it happened.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// A block passed every check (its state transition included) and is
    /// about to be written as the new tip: the P2P layer announces it now,
    /// so peers fetch it while we commit. Followed by its `BlockConnected`
    /// once written. Not streamed over RPC: until then it is not our tip.
    BlockValidated { hash: BlockHash, height: Height },
    /// A block joined the best chain (sent once per block, in height order,
    /// including each block connected during a reorg).
    BlockConnected { block: Arc<Block>, height: Height },
    /// The best chain switched branches. Sent after the `BlockConnected`
    /// events of the new branch.
    Reorg {
        old_tip: BlockHash,
        new_tip: BlockHash,
        fork_height: Height,
        disconnected: Vec<BlockHash>,
        connected: Vec<BlockHash>,
    },
    /// A transaction was newly admitted to the mempool.
    TxAccepted { tx: Arc<Transaction> },
    /// A transaction of a disconnected block went back into the mempool
    /// (sent after the `Reorg`). Peers may have been counted as knowing it
    /// (we announced it before, perhaps into a partition that dropped the
    /// message), so it is announced again to every peer.
    TxReadmitted { tx: Arc<Transaction> },
    /// The mempool let go of a transaction it had admitted (evicted,
    /// expired, replaced, made invalid by a block, or left out after a
    /// reorg); `reason` is a `DropReason` code. Streamed as `dropped`.
    TxDropped { txid: TxId, reason: &'static str },
}

impl NodeEvent {
    /// The `Reorg` event of a change of the best chain (one that
    /// disconnected blocks), naming the blocks by hash.
    pub fn reorg(update: &ChainUpdate) -> NodeEvent {
        let hashes = |blocks: &[Arc<Block>]| blocks.iter().map(|block| block.hash()).collect();
        NodeEvent::Reorg {
            old_tip: update.old_tip,
            new_tip: update.new_tip,
            fork_height: update.fork_height,
            disconnected: hashes(&update.disconnected),
            connected: hashes(&update.connected),
        }
    }
}
