//! Side branches: which indexed blocks are off the best chain, and how
//! long they are kept. A sync stores the blocks of a branch that has less
//! work than the tip, because a branch that will overtake the tip arrives
//! that way, block by block; so a peer that feeds a cheap low-work fork
//! through a sync could grow the block index and the disk without bound.
//! Two rules bound them, applied after every block and at open:
//! - count: at most `SideBranchLimits::max_blocks` side blocks are kept;
//!   past that the side leaf with the least work goes first (the newest
//!   of equals), so a low-work fork is cut from its tip while the
//!   competitive branches near the tip stay;
//! - staleness: a side branch whose fork point is more than
//!   `SideBranchLimits::depth` blocks below the tip, and which has not
//!   grown while the tip advanced that many blocks, is forgotten with all
//!   its descendants. A branch still arriving (a reorg being synced) is
//!   never stale, so a deep reorg is followed as long as the branch fits
//!   under the count.
//!
//! Forgetting removes the block from the in-memory index and its body and
//! index entry from the store (`Store::remove_blocks`); an invalid one is
//! remembered among the rejected headers, so its descendants are still
//! refused at once. The price is a reorg limit: a competing branch that
//! needs more than `max_blocks` side blocks before it overtakes the tip is
//! cut, so the node does not follow it. `ARCHITECTURE.md` ("Threat
//! model") says so.

use super::{Chain, Node};
use crate::hash::BlockHash;
use crate::storage::{BlockStatus, StorageError};
use crate::Height;
use std::collections::{BTreeMap, HashSet};

/// A side branch forking more than this many blocks below the tip, and
/// not grown while the tip advanced as many, is pruned (with 2 s blocks,
/// about ten minutes of chain).
pub const STALE_BRANCH_DEPTH: u64 = 288;
/// Most side-branch blocks kept at once: room for a reorg of twice
/// `STALE_BRANCH_DEPTH` beside the usual stale tips.
pub const MAX_SIDE_BLOCKS: usize = 2 * STALE_BRANCH_DEPTH as usize;

/// How long side branches are kept (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideBranchLimits {
    /// A side branch whose fork point is more than this many blocks below
    /// the tip, and which has not grown while the tip advanced as many,
    /// is pruned.
    pub depth: u64,
    /// Most side blocks kept at once.
    pub max_blocks: usize,
}

impl Default for SideBranchLimits {
    fn default() -> Self {
        SideBranchLimits {
            depth: STALE_BRANCH_DEPTH,
            max_blocks: MAX_SIDE_BLOCKS,
        }
    }
}

/// The indexed blocks off the best chain, lowest height first, each with
/// the tip's height when it joined the side (arrived, or left the best
/// chain): the first is always the root of a side branch.
pub(super) type SideBlocks = BTreeMap<(Height, BlockHash), Height>;

impl Chain {
    /// Blocks in the index that are not on the best chain.
    pub fn side_block_count(&self) -> usize {
        self.side.len()
    }

    /// Side blocks pruned since the chain was opened.
    pub fn pruned_side_blocks(&self) -> u64 {
        self.pruned_side_blocks
    }

    pub fn side_branch_limits(&self) -> SideBranchLimits {
        self.side_limits
    }

    /// Sets the limits and prunes to them at once.
    pub fn set_side_branch_limits(&mut self, limits: SideBranchLimits) -> Result<(), StorageError> {
        self.side_limits = limits;
        self.prune_side_branches().map(|_| ())
    }

    /// The side blocks of a freshly loaded index: every block that is not
    /// the tip or one of its ancestors, as if it joined the side now.
    pub(super) fn find_side_blocks(&self) -> SideBlocks {
        let mut best = HashSet::new();
        let mut cursor = Some(self.tip);
        while let Some(hash) = cursor {
            let Some(node) = self.nodes.get(&hash) else {
                break;
            };
            best.insert(hash);
            cursor = (node.header.height != Height::ZERO).then_some(node.header.prev_hash);
        }
        let tip_height = self
            .nodes
            .get(&self.tip)
            .map_or(Height::ZERO, |tip| tip.header.height);
        self.nodes
            .iter()
            .filter(|(hash, _)| !best.contains(*hash))
            .map(|(hash, node)| ((node.header.height, *hash), tip_height))
            .collect()
    }

    /// Applies both rules (see the module doc). Returns how many blocks
    /// were forgotten.
    pub(super) fn prune_side_branches(&mut self) -> Result<usize, StorageError> {
        let tip_height = self.nodes[&self.tip].header.height;
        let depth = self.side_limits.depth;
        let mut doomed = Vec::new();
        for (root, fork_depth) in self.deep_side_roots(tip_height) {
            let newest = self.newest_in_subtree(root);
            if tip_height.0 < newest.0.saturating_add(depth) {
                continue;
            }
            let before = doomed.len();
            self.forget_subtree(root, &mut doomed);
            tracing::debug!(root = %root, fork_depth, blocks = doomed.len() - before, rule = "stale_side_branch", "pruned a stale side branch forking too deep below the tip");
        }
        while self.side.len() > self.side_limits.max_blocks {
            let Some(leaf) = self.weakest_side_leaf() else {
                break;
            };
            self.forget_subtree(leaf, &mut doomed);
            tracing::debug!(block = %leaf, side_blocks = self.side.len(), rule = "side_blocks_cap", "pruned the side leaf with the least work");
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        self.store.remove_blocks(&doomed)?;
        self.pruned_side_blocks += doomed.len() as u64;
        Ok(doomed.len())
    }

    /// Roots of side branches (side blocks whose parent is on the best
    /// chain) forking more than the depth below the tip, with that depth.
    fn deep_side_roots(&self, tip_height: Height) -> Vec<(BlockHash, u64)> {
        let mut roots = Vec::new();
        for &(height, hash) in self.side.keys() {
            // A root's parent, on the best chain, is the fork point.
            let fork_depth = tip_height.0.saturating_sub(height.0.saturating_sub(1));
            if fork_depth <= self.side_limits.depth {
                break;
            }
            let parent = self.nodes.get(&hash).map(|node| node.header.prev_hash);
            let parent_is_side = parent.is_some_and(|parent| {
                self.side
                    .contains_key(&(Height(height.0.saturating_sub(1)), parent))
            });
            if !parent_is_side {
                roots.push((hash, fork_depth));
            }
        }
        roots
    }

    /// The latest tip height at which a block of `root`'s subtree joined
    /// the side: when the branch last grew.
    fn newest_in_subtree(&self, root: BlockHash) -> Height {
        let mut newest = Height::ZERO;
        let mut stack = vec![root];
        while let Some(hash) = stack.pop() {
            if let Some(node) = self.nodes.get(&hash) {
                if let Some(seen) = self.side.get(&(node.header.height, hash)) {
                    newest = newest.max(*seen);
                }
            }
            if let Some(children) = self.children.get(&hash) {
                stack.extend(children.iter().copied());
            }
        }
        newest
    }

    /// The side block with no children and the least work (the newest of
    /// equals).
    fn weakest_side_leaf(&self) -> Option<BlockHash> {
        self.side
            .keys()
            .filter(|(_, hash)| self.children.get(hash).is_none_or(Vec::is_empty))
            .filter_map(|(_, hash)| self.nodes.get(hash).map(|node| (hash, node)))
            .min_by(|(_, a), (_, b)| a.total_work.cmp(&b.total_work).then(b.seq.cmp(&a.seq)))
            .map(|(hash, _)| *hash)
    }

    /// Drops `root` and its descendants from the index (memory only),
    /// adding their hashes to `doomed`. Only ever called on side blocks,
    /// whose descendants are all side blocks.
    fn forget_subtree(&mut self, root: BlockHash, doomed: &mut Vec<BlockHash>) {
        if let Some(parent) = self.nodes.get(&root).map(|node| node.header.prev_hash) {
            if let Some(siblings) = self.children.get_mut(&parent) {
                siblings.retain(|child| *child != root);
                if siblings.is_empty() {
                    self.children.remove(&parent);
                }
            }
        }
        let mut stack = vec![root];
        while let Some(hash) = stack.pop() {
            if let Some(children) = self.children.remove(&hash) {
                stack.extend(children);
            }
            let Some(Node { header, status, .. }) = self.nodes.remove(&hash) else {
                continue;
            };
            self.side.remove(&(header.height, hash));
            if status == BlockStatus::Invalid {
                self.rejected.insert(hash);
            }
            doomed.push(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{block_on, now_ms, regtest_chain};
    use super::super::ProcessOutcome;
    use super::*;
    use crate::block::Block;

    /// Mines `n` blocks on `parent` (salted apart from other branches)
    /// and hands each to the chain as a sync would.
    fn extend(
        chain: &mut super::Chain,
        parent: &crate::block::Header,
        n: usize,
        salt: u8,
    ) -> Vec<Block> {
        let now = now_ms(chain);
        let mut parent = parent.clone();
        let mut blocks = Vec::new();
        for _ in 0..n {
            let block = block_on(chain, &parent, salt);
            parent = block.header.clone();
            chain.process_block(block.clone(), now).expect("valid");
            blocks.push(block);
        }
        blocks
    }

    fn limits(depth: u64, max_blocks: usize) -> SideBranchLimits {
        SideBranchLimits { depth, max_blocks }
    }

    #[test]
    fn a_side_branch_forking_deeper_than_the_limit_is_pruned_from_memory_and_store() {
        let (_arena, mut chain) = regtest_chain();
        chain.set_side_branch_limits(limits(5, 100)).expect("set");
        let genesis = chain.spec().genesis_block().header;
        let main = extend(&mut chain, &genesis, 2, 1);
        // A two-block side branch forking at height 1.
        let side = {
            let first = block_on(&chain, &main[0].header, 2);
            let now = now_ms(&chain);
            assert_eq!(
                chain.process_block(first.clone(), now).expect("valid"),
                ProcessOutcome::SideChain
            );
            first
        };
        assert_eq!(chain.side_block_count(), 1);
        let stored = chain.reader().stored_block_count();

        // The fork point (height 1) is 5 below a tip at 6: still kept.
        extend(&mut chain, &main[1].header, 4, 1);
        assert_eq!(chain.tip().height, Height(6));
        assert!(chain.contains(&side.hash()));
        // At 7 it is 6 below: pruned.
        let tip = chain.nodes[&chain.tip].header.clone();
        extend(&mut chain, &tip, 1, 1);

        assert!(!chain.contains(&side.hash()));
        assert_eq!(chain.side_block_count(), 0);
        assert_eq!(chain.pruned_side_blocks(), 1);
        assert_eq!(chain.reader().stored_block_count(), stored + 5 - 1);
        assert_eq!(chain.reader().block_status(&side.hash()), None);
        assert!(chain
            .children
            .values()
            .flatten()
            .all(|child| *child != side.hash()));
    }

    #[test]
    fn a_low_work_fork_fed_block_by_block_stays_within_the_side_cap() {
        let (_arena, mut chain) = regtest_chain();
        chain.set_side_branch_limits(limits(1_000, 8)).expect("set");
        let genesis = chain.spec().genesis_block().header;
        let main = extend(&mut chain, &genesis, 30, 1);
        let index_before = chain.index_len();
        let stored_before = chain.reader().stored_block_count();

        // A fork from genesis, delivered in order as a sync would: 25
        // blocks, all with less work than the tip.
        let now = now_ms(&chain);
        let mut parent = genesis.clone();
        let mut forgotten = 0;
        for _ in 0..25 {
            let block = block_on(&chain, &parent, 2);
            parent = block.header.clone();
            match chain.process_block(block, now).expect("valid") {
                ProcessOutcome::SideChain => {}
                // Its parent was the pruned leaf.
                ProcessOutcome::Orphan => forgotten += 1,
                other => panic!("unexpected {other:?}"),
            }
            assert!(chain.side_block_count() <= 8);
        }

        assert_eq!(chain.tip().hash, main[29].hash());
        assert!(forgotten > 0, "the fork's tip was cut");
        assert!(chain.index_len() <= index_before + 8);
        assert!(chain.reader().stored_block_count() <= stored_before + 8);
    }

    #[test]
    fn the_cap_cuts_the_weakest_leaf_and_keeps_the_competitive_branch() {
        let (_arena, mut chain) = regtest_chain();
        chain.set_side_branch_limits(limits(1_000, 3)).expect("set");
        let genesis = chain.spec().genesis_block().header;
        let main = extend(&mut chain, &genesis, 10, 1);
        // A rival of the tip: as much work as the tip, so competitive.
        let rival = block_on(&chain, &main[8].header, 3);
        let now = now_ms(&chain);
        chain.process_block(rival.clone(), now).expect("valid");
        // A low-work fork from genesis, three blocks.
        let mut parent = genesis.clone();
        for _ in 0..3 {
            let block = block_on(&chain, &parent, 2);
            parent = block.header.clone();
            chain.process_block(block, now).expect("valid");
        }

        assert_eq!(chain.side_block_count(), 3);
        assert!(chain.contains(&rival.hash()), "the rival stays");
        assert_eq!(chain.pruned_side_blocks(), 1);
    }

    #[test]
    fn a_deep_branch_that_keeps_growing_is_not_stale_until_it_stops() {
        let (_arena, mut chain) = regtest_chain();
        chain.set_side_branch_limits(limits(3, 100)).expect("set");
        let genesis = chain.spec().genesis_block().header;
        let main = extend(&mut chain, &genesis, 6, 1);
        // Forks at height 2, four below the tip: deep, but just arrived.
        let mut side = extend(&mut chain, &main[1].header, 1, 2);
        let mut tip = main[5].header.clone();
        for _ in 0..5 {
            tip = extend(&mut chain, &tip, 1, 1)[0].header.clone();
            let parent = side.last().expect("side").header.clone();
            side.extend(extend(&mut chain, &parent, 1, 2));
            assert!(chain.contains(&side[0].hash()), "a growing branch stays");
        }
        assert_eq!(chain.tip().height, Height(11));
        assert_eq!(chain.side_block_count(), 6);
        // It stops growing: after three more blocks of the tip it is stale.
        for _ in 0..2 {
            tip = extend(&mut chain, &tip, 1, 1)[0].header.clone();
        }
        assert_eq!(chain.side_block_count(), 6);
        extend(&mut chain, &tip, 1, 1);

        assert_eq!(chain.side_block_count(), 0);
        assert!(side.iter().all(|block| !chain.contains(&block.hash())));
        assert_eq!(chain.pruned_side_blocks(), 6);
    }

    #[test]
    fn pruned_invalid_blocks_keep_their_descendants_refused() {
        let (_arena, mut chain) = regtest_chain();
        let genesis = chain.spec().genesis_block().header;
        let main = extend(&mut chain, &genesis, 3, 1);
        let side = block_on(&chain, &main[0].header, 2);
        let now = now_ms(&chain);
        chain.process_block(side.clone(), now).expect("valid");
        chain
            .mark_subtree(side.hash(), BlockStatus::Invalid)
            .expect("mark");

        chain.set_side_branch_limits(limits(1, 100)).expect("set");
        // Deep, but it joined the side at this tip: stale one block later.
        assert!(chain.contains(&side.hash()));
        extend(&mut chain, &main[2].header, 1, 1);

        assert!(!chain.contains(&side.hash()));
        assert!(chain.rejected.contains(&side.hash()));
        let child = block_on(&chain, &side.header, 2);
        assert!(chain.process_block(child, now).is_err());
    }

    #[test]
    fn reopening_finds_the_side_blocks_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = crate::chainspec::ChainSpec::builtin("regtest").expect("built-in");
        let mut chain = super::Chain::open(spec.clone(), dir.path()).expect("open");
        let genesis = chain.spec().genesis_block().header;
        let main = extend(&mut chain, &genesis, 4, 1);
        let side = extend(&mut chain, &main[1].header, 1, 2);
        assert_eq!(chain.side_block_count(), 1);
        // A disconnected block is a side block too.
        chain.disconnect_tip().expect("disconnect");
        assert_eq!(chain.side_block_count(), 2);
        assert!(chain.find_side_blocks().keys().eq(chain.side.keys()));
        chain.flush().expect("flush");
        drop(chain);

        let chain = super::Chain::open(spec, dir.path()).expect("reopen");

        // The tip is back at height 4; the side block forks at 2, within
        // the default depth.
        assert_eq!(chain.tip().hash, main[3].hash());
        assert_eq!(chain.side_block_count(), 1);
        assert!(chain.contains(&side[0].hash()));
        assert!(chain.find_side_blocks().keys().eq(chain.side.keys()));
    }
}
