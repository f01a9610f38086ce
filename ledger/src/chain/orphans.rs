//! `OrphanPool`: blocks whose parent this node does not have yet, kept
//! until the parent arrives. Bounded by count (`MAX_ORPHANS`) and bytes
//! (`MAX_ORPHAN_BYTES`), oldest evicted first, and by age
//! (`ORPHAN_EXPIRY_MS`), because a peer can send orphans for free: their
//! proof-of-work is checked, but nothing proves the parent exists. Children
//! are indexed by parent, so a newly stored block finds its waiting orphans
//! without a scan.

use super::{MAX_ORPHANS, MAX_ORPHAN_BYTES, ORPHAN_EXPIRY_MS};
use crate::block::Block;
use crate::hash::BlockHash;
use std::collections::{HashMap, VecDeque};
struct Orphan {
    block: Block,
    received_ms: u64,
    bytes: usize,
}

/// Blocks whose parent we do not have yet, bounded in count and bytes.
#[derive(Default)]
pub(super) struct OrphanPool {
    blocks: HashMap<BlockHash, Orphan>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    order: VecDeque<BlockHash>,
    bytes: usize,
}

impl OrphanPool {
    pub(super) fn len(&self) -> usize {
        self.blocks.len()
    }

    pub(super) fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    pub(super) fn insert(&mut self, hash: BlockHash, block: Block, now_ms: u64) {
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

    pub(super) fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
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

    pub(super) fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
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
    pub(super) fn drop_descendants(&mut self, root: &BlockHash) -> Vec<BlockHash> {
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

    pub(super) fn expire(&mut self, now_ms: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chainspec::ChainSpec;
    use crate::hash::Hash256;
    use crate::Height;

    /// A block (not solved: the pool never checks proof-of-work) on `parent`,
    /// made distinct by `nonce`.
    fn block_on(parent: BlockHash, nonce: u64) -> Block {
        let mut block = ChainSpec::builtin("regtest")
            .expect("built-in")
            .genesis_block();
        block.header.height = Height(1);
        block.header.prev_hash = parent;
        block.header.nonce = nonce;
        block
    }

    fn named(name: &[u8]) -> BlockHash {
        BlockHash(Hash256::digest(name))
    }

    fn insert(pool: &mut OrphanPool, block: Block, now_ms: u64) -> BlockHash {
        let hash = block.hash();
        pool.insert(hash, block, now_ms);
        hash
    }

    #[test]
    fn take_children_returns_only_that_parents_blocks() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        let other = named(b"other");
        let first = insert(&mut pool, block_on(parent, 1), 0);
        let second = insert(&mut pool, block_on(parent, 2), 0);
        let unrelated = insert(&mut pool, block_on(other, 3), 0);

        let children: Vec<BlockHash> = pool
            .take_children(&parent)
            .iter()
            .map(Block::hash)
            .collect();

        assert_eq!(children, vec![first, second]);
        assert!(!pool.contains(&first) && !pool.contains(&second));
        assert!(pool.contains(&unrelated));
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.bytes, block_on(other, 3).encoded_len());
    }

    #[test]
    fn drop_descendants_drops_the_whole_subtree_and_nothing_else() {
        let mut pool = OrphanPool::default();
        let root = named(b"root");
        let child = insert(&mut pool, block_on(root, 1), 0);
        let grandchild = insert(&mut pool, block_on(child, 2), 0);
        let elsewhere = insert(&mut pool, block_on(grandchild, 3), 0);
        let stranger = named(b"stranger");
        let kept = insert(&mut pool, block_on(stranger, 4), 0);

        let mut dropped = pool.drop_descendants(&root);
        dropped.sort();
        let mut expected = vec![child, grandchild, elsewhere];
        expected.sort();

        assert_eq!(dropped, expected);
        assert_eq!(pool.len(), 1);
        assert!(pool.contains(&kept));
    }

    #[test]
    fn the_oldest_orphan_goes_first_when_the_pool_is_full() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        let hashes: Vec<BlockHash> = (0..MAX_ORPHANS as u64 + 1)
            .map(|nonce| insert(&mut pool, block_on(parent, nonce), 0))
            .collect();

        assert_eq!(pool.len(), MAX_ORPHANS);
        assert!(!pool.contains(&hashes[0]));
        assert!(hashes[1..].iter().all(|hash| pool.contains(hash)));
    }

    #[test]
    fn expire_drops_only_orphans_past_the_expiry() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        let old = insert(&mut pool, block_on(parent, 1), 1_000);
        let young = insert(&mut pool, block_on(parent, 2), 2_000);

        pool.expire(1_000 + ORPHAN_EXPIRY_MS);
        assert_eq!(pool.len(), 2, "exactly at the expiry an orphan stays");

        pool.expire(1_001 + ORPHAN_EXPIRY_MS);
        assert!(!pool.contains(&old));
        assert!(pool.contains(&young));
    }

    #[test]
    fn a_block_already_kept_is_not_counted_twice() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        let block = block_on(parent, 1);
        let bytes = block.encoded_len();
        insert(&mut pool, block.clone(), 0);
        insert(&mut pool, block, 5);

        assert_eq!(pool.len(), 1);
        assert_eq!(pool.bytes, bytes);
        assert_eq!(pool.take_children(&parent).len(), 1);
    }
}
