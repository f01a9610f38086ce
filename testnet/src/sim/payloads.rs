//! `CompactPayloads`: the encoded `CompactBlock` of recent blocks, shared
//! by every simulated node. A node pushes each new block to the peers that
//! asked for high-bandwidth relay, and answers `GetData` for it, with the
//! block's compact form and no tx prefilled; that form, and so its
//! encoding, is a function of the block alone. Built by each node for each
//! push, it read the block back from the store and hashed every tx of it
//! again, some three thousand times a block at 1,000 nodes. A node still
//! sends it only when its own store holds the block, as before.

use super::node::Payload;
use ledger::{Block, BlockHash};
use node::p2p::codec::compact_payload;
use std::collections::{HashMap, VecDeque};

/// Blocks whose payload is kept: a block is pushed within a second or two
/// of being found, and a fork's few blocks at most a little later.
const KEPT_BLOCKS: usize = 64;

/// See the module docs.
#[derive(Default)]
pub struct CompactPayloads {
    by_hash: HashMap<BlockHash, Payload>,
    /// Insertion order, oldest first: the next to forget.
    order: VecDeque<BlockHash>,
}

impl CompactPayloads {
    /// The payload of `Message::CompactBlock` for the block `hash`, from
    /// the cache or built from `read()` (the block as stored); `None` when
    /// `read` finds no block.
    pub fn get_or_build(
        &mut self,
        hash: &BlockHash,
        read: impl FnOnce() -> Option<Block>,
    ) -> Option<Payload> {
        if let Some(payload) = self.by_hash.get(hash) {
            return Some(payload.clone());
        }
        let block = read()?;
        debug_assert_eq!(block.hash(), *hash);
        let payload = Payload::from(compact_payload(&block).as_ref());
        if self.order.len() >= KEPT_BLOCKS {
            if let Some(old) = self.order.pop_front() {
                self.by_hash.remove(&old);
            }
        }
        self.order.push_back(*hash);
        self.by_hash.insert(*hash, payload.clone());
        Some(payload)
    }
}
