//! The writer's bounded memories: `RecentBlocks`, the last few decoded
//! bodies (so the block just accepted is connected without a sled read or
//! hashing its transactions again), and `RejectedHeaders`, hashes of
//! blocks refused without being stored (so their descendants are refused
//! at once instead of waiting as orphans). Both forget their oldest entry
//! first, so neither grows with what peers send.

use super::MAX_REMEMBERED_REJECTS;
use crate::block::Block;
use crate::hash::{BlockHash, TxId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// A decoded block with its txids, so connecting a block just accepted
/// neither decodes it from sled nor hashes its transactions again.
pub(super) struct CachedBlock {
    pub(super) block: Arc<Block>,
    pub(super) txids: Vec<TxId>,
}

/// The last few accepted or loaded blocks (bounded by count; a block is at
/// most `max_block_bytes`, so this stays within a few MiB).
#[derive(Default)]
pub(super) struct RecentBlocks {
    blocks: HashMap<BlockHash, Arc<CachedBlock>>,
    order: VecDeque<BlockHash>,
}

const RECENT_BLOCKS: usize = 8;

impl RecentBlocks {
    pub(super) fn get(&self, hash: &BlockHash) -> Option<Arc<CachedBlock>> {
        self.blocks.get(hash).cloned()
    }

    pub(super) fn insert(&mut self, hash: BlockHash, cached: Arc<CachedBlock>) {
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
pub(super) struct RejectedHeaders {
    members: HashSet<BlockHash>,
    order: VecDeque<BlockHash>,
}

impl RejectedHeaders {
    pub(super) fn insert(&mut self, hash: BlockHash) {
        if self.members.insert(hash) {
            self.order.push_back(hash);
            if self.order.len() > MAX_REMEMBERED_REJECTS {
                if let Some(oldest) = self.order.pop_front() {
                    self.members.remove(&oldest);
                }
            }
        }
    }

    pub(super) fn contains(&self, hash: &BlockHash) -> bool {
        self.members.contains(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chainspec::ChainSpec;
    use crate::hash::Hash256;

    fn named(index: u64) -> BlockHash {
        BlockHash(Hash256::digest(&index.to_le_bytes()))
    }

    fn cached() -> Arc<CachedBlock> {
        let block = ChainSpec::builtin("regtest")
            .expect("built-in")
            .genesis_block();
        let txids = block.txids();
        Arc::new(CachedBlock {
            block: Arc::new(block),
            txids,
        })
    }

    #[test]
    fn recent_blocks_keep_the_newest_few() {
        let mut recent = RecentBlocks::default();
        for index in 0..RECENT_BLOCKS as u64 + 2 {
            recent.insert(named(index), cached());
        }
        assert!(recent.get(&named(0)).is_none());
        assert!(recent.get(&named(1)).is_none());
        assert!((2..RECENT_BLOCKS as u64 + 2).all(|index| recent.get(&named(index)).is_some()));
    }

    #[test]
    fn inserting_a_recent_block_again_does_not_push_another_out() {
        let mut recent = RecentBlocks::default();
        for index in 0..RECENT_BLOCKS as u64 {
            recent.insert(named(index), cached());
        }
        recent.insert(named(3), cached());
        assert!((0..RECENT_BLOCKS as u64).all(|index| recent.get(&named(index)).is_some()));
    }

    #[test]
    fn rejected_headers_forget_the_oldest_beyond_the_bound() {
        let mut rejected = RejectedHeaders::default();
        for index in 0..MAX_REMEMBERED_REJECTS as u64 + 1 {
            rejected.insert(named(index));
        }
        // Inserting a remembered hash again neither grows nor reorders it.
        rejected.insert(named(5));
        assert!(!rejected.contains(&named(0)));
        assert!(rejected.contains(&named(1)));
        assert!(rejected.contains(&named(MAX_REMEMBERED_REJECTS as u64)));
        assert_eq!(rejected.order.len(), MAX_REMEMBERED_REJECTS);
    }
}
