//! `OrphanPool`: blocks whose parent this node does not have yet, kept
//! until the parent arrives. Bounded by count (`MAX_ORPHANS`) and bytes
//! (`MAX_ORPHAN_BYTES`), and by age (`ORPHAN_EXPIRY_MS`), because a peer
//! can send orphans for free: their proof-of-work is checked, but nothing
//! proves the parent exists. Each orphan remembers its `OrphanSource` (the
//! peer that sent it, when the caller says), and one source holds at most
//! `MAX_ORPHANS_PER_SOURCE` orphans and `MAX_ORPHAN_BYTES_PER_SOURCE`
//! bytes: its next one replaces its own oldest. When the whole pool is
//! full, the oldest orphan of the source holding the most goes first, so
//! one peer, or a few, cannot push out everyone else's. Children are
//! indexed by parent, so a newly stored block finds its waiting orphans
//! without a scan.

use super::{
    MAX_ORPHANS, MAX_ORPHANS_PER_SOURCE, MAX_ORPHAN_BYTES, MAX_ORPHAN_BYTES_PER_SOURCE,
    ORPHAN_EXPIRY_MS,
};
use crate::block::Block;
use crate::hash::BlockHash;
use std::collections::{HashMap, VecDeque};

/// Who sent a block, as the caller names it (the node uses the number of
/// the peer's connection). The chain only compares these, to bound what
/// one sender may keep in the orphan pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrphanSource(pub u64);

struct Orphan {
    block: Block,
    received_ms: u64,
    bytes: usize,
    source: Option<OrphanSource>,
}

/// What one source holds, oldest first.
#[derive(Default)]
struct SourceShare {
    hashes: VecDeque<BlockHash>,
    bytes: usize,
}

/// Blocks whose parent we do not have yet, bounded in count and bytes, in
/// total and per source.
#[derive(Default)]
pub(super) struct OrphanPool {
    blocks: HashMap<BlockHash, Orphan>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    by_source: HashMap<OrphanSource, SourceShare>,
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

    /// How many orphans `source` holds.
    pub(super) fn held_by(&self, source: OrphanSource) -> usize {
        self.by_source
            .get(&source)
            .map_or(0, |share| share.hashes.len())
    }

    /// Keeps `block`. Returns how many of `source`'s own older orphans it
    /// replaced because the source was at its share (0 for most calls).
    pub(super) fn insert(
        &mut self,
        hash: BlockHash,
        block: Block,
        now_ms: u64,
        source: Option<OrphanSource>,
    ) -> usize {
        if self.blocks.contains_key(&hash) {
            return 0;
        }
        let bytes = block.encoded_len();
        let mut replaced = 0;
        if let Some(source) = source {
            while let Some(share) = self.by_source.get(&source) {
                let full = share.hashes.len() >= MAX_ORPHANS_PER_SOURCE
                    || (share.bytes + bytes > MAX_ORPHAN_BYTES_PER_SOURCE
                        && !share.hashes.is_empty());
                let Some(oldest) = share.hashes.front().copied().filter(|_| full) else {
                    break;
                };
                self.remove(&oldest);
                replaced += 1;
            }
            let share = self.by_source.entry(source).or_default();
            share.hashes.push_back(hash);
            share.bytes += bytes;
        }
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
                source,
            },
        );
        self.order.push_back(hash);
        self.bytes += bytes;
        while self.blocks.len() > MAX_ORPHANS || self.bytes > MAX_ORPHAN_BYTES {
            let Some(victim) = self.eviction_victim() else {
                break;
            };
            self.remove(&victim);
        }
        replaced
    }

    /// The orphan to drop when the pool is full: the oldest of the source
    /// holding the most (ties: the lowest source, so the choice is the same
    /// on every run), or, when no source holds more than one, the oldest.
    fn eviction_victim(&mut self) -> Option<BlockHash> {
        let largest = self
            .by_source
            .iter()
            .filter(|(_, share)| share.hashes.len() > 1)
            .max_by(|(a_source, a), (b_source, b)| {
                a.hashes
                    .len()
                    .cmp(&b.hashes.len())
                    .then(b_source.cmp(a_source))
            })
            .and_then(|(_, share)| share.hashes.front().copied());
        if largest.is_some() {
            return largest;
        }
        while let Some(oldest) = self.order.pop_front() {
            if self.blocks.contains_key(&oldest) {
                return Some(oldest);
            }
        }
        None
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
        if let Some(source) = orphan.source {
            if let Some(share) = self.by_source.get_mut(&source) {
                share.hashes.retain(|held| held != hash);
                share.bytes -= orphan.bytes;
                if share.hashes.is_empty() {
                    self.by_source.remove(&source);
                }
            }
        }
        // `order` is cleaned lazily: stale hashes are skipped on eviction.
        Some(orphan.block)
    }

    pub(super) fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        let hashes = self.by_parent.get(parent).cloned().unwrap_or_default();
        hashes.iter().filter_map(|hash| self.remove(hash)).collect()
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
        pool.insert(hash, block, now_ms, None);
        hash
    }

    fn insert_from(pool: &mut OrphanPool, block: Block, source: u64) -> BlockHash {
        let hash = block.hash();
        pool.insert(hash, block, 0, Some(OrphanSource(source)));
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

    #[test]
    fn one_source_holds_at_most_its_share_and_replaces_its_own_oldest() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        let honest = insert_from(&mut pool, block_on(parent, 0), 1);
        let flood: Vec<BlockHash> = (1..=3 * MAX_ORPHANS_PER_SOURCE as u64)
            .map(|nonce| insert_from(&mut pool, block_on(parent, nonce), 2))
            .collect();

        assert_eq!(pool.held_by(OrphanSource(2)), MAX_ORPHANS_PER_SOURCE);
        assert_eq!(pool.len(), MAX_ORPHANS_PER_SOURCE + 1);
        assert!(pool.contains(&honest), "another source's orphan stays");
        let kept = &flood[flood.len() - MAX_ORPHANS_PER_SOURCE..];
        assert!(
            kept.iter().all(|hash| pool.contains(hash)),
            "the newest stay"
        );
        assert!(!pool.contains(&flood[0]));
    }

    #[test]
    fn a_full_pool_evicts_from_the_largest_source_first() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        let honest = insert_from(&mut pool, block_on(parent, 0), 1);
        // Many sources at their share fill the pool past its total.
        let mut nonce = 1;
        let sources = MAX_ORPHANS / MAX_ORPHANS_PER_SOURCE + 2;
        for source in 10..10 + sources as u64 {
            for _ in 0..MAX_ORPHANS_PER_SOURCE {
                insert_from(&mut pool, block_on(parent, nonce), source);
                nonce += 1;
            }
        }

        assert_eq!(pool.len(), MAX_ORPHANS);
        assert!(
            pool.contains(&honest),
            "the oldest orphan, but its source's only one"
        );
        assert_eq!(pool.held_by(OrphanSource(1)), 1);
        let most = (10..10 + sources as u64)
            .map(|source| pool.held_by(OrphanSource(source)))
            .max();
        assert!(most <= Some(MAX_ORPHANS_PER_SOURCE));
    }

    #[test]
    fn a_source_share_is_bounded_in_bytes_too() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        let mut big = block_on(parent, 1);
        // The pool checks nothing, so one tx with a long memo makes a big
        // block: about a third of a source's byte share.
        big.txs.push(crate::tx::Transaction {
            from: crate::keys::PublicKey::default(),
            to: crate::address::Address::default(),
            amount: crate::amount::Amount::ZERO,
            fee: crate::amount::Amount::ZERO,
            nonce: 0,
            memo: "x".repeat(MAX_ORPHAN_BYTES_PER_SOURCE / 3),
            signature: crate::keys::Signature([0; 64]),
        });
        for nonce in 0..4 {
            let mut block = big.clone();
            block.header.nonce = nonce;
            insert_from(&mut pool, block, 7);
        }

        assert!(pool.held_by(OrphanSource(7)) < 4);
        assert!(pool.by_source[&OrphanSource(7)].bytes <= MAX_ORPHAN_BYTES_PER_SOURCE);
    }

    #[test]
    fn removing_an_orphan_frees_its_source_share() {
        let mut pool = OrphanPool::default();
        let parent = named(b"parent");
        insert_from(&mut pool, block_on(parent, 1), 3);
        insert_from(&mut pool, block_on(parent, 2), 3);

        assert_eq!(pool.take_children(&parent).len(), 2);
        assert_eq!(pool.held_by(OrphanSource(3)), 0);
        assert!(pool.by_source.is_empty());
        assert_eq!(pool.bytes, 0);
    }
}
