//! The block tree and fork choice: `process_block` and its variants take
//! blocks in any order, run the cheap checks, accept a block (and the
//! orphans waiting on it) into the in-memory index, and move the tip to the
//! valid chain with the most cumulative work; ties keep the block seen
//! first (`seq`), so two nodes that saw the same blocks in the same order
//! agree. A block that fails to connect is marked invalid with all its
//! descendants, and the search for the best chain repeats.

use super::cache::CachedBlock;
use super::{missing, Chain, ChainUpdate, Node, OrphanSource, ProcessError, ProcessOutcome};
use crate::block::Block;
use crate::difficulty::{self, BlockTiming, RETARGET_WINDOW};
use crate::hash::{BlockHash, TxId};
use crate::storage::{BlockStatus, StorageError};
use crate::target::Target;
use crate::validation::{self, BlockError};
use crate::Height;
use std::sync::Arc;

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
    /// Validates and stores `block`, connects it (and any orphans waiting
    /// for it) when that gives the chain with the most work, and reports
    /// what changed. An invalid block is marked (with its descendants) and
    /// its error returned; the chain then stays on the best valid tip.
    pub fn process_block(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<ProcessOutcome, ProcessError> {
        self.commit_held()?;
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
    ) -> Result<ProcessOutcome, ProcessError> {
        self.process_block_from(block, now_ms, None)
    }

    /// `process_block_unrequested` naming who sent the block: an orphan
    /// counts against `source`'s share of the orphan pool
    /// (`MAX_ORPHANS_PER_SOURCE`), and past it replaces that source's own
    /// oldest orphan, never another's.
    pub fn process_block_from(
        &mut self,
        block: Block,
        now_ms: u64,
        source: Option<OrphanSource>,
    ) -> Result<ProcessOutcome, ProcessError> {
        self.commit_held()?;
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
                            height = block.header.height.0,
                            rule = "low_work_unrequested",
                            "not storing a block whose chain has less work than the tip"
                        );
                        return Ok(ProcessOutcome::LowWork);
                    }
                }
            }
        }
        self.process_block_sourced(block, now_ms, source)
    }

    /// `process_block_from` for a block whose txids the caller has already
    /// worked out from its txs (a block rebuilt from the mempool): its
    /// checks use them instead of hashing every tx again (the merkle root
    /// and duplicates are still checked against them).
    pub fn process_block_with_txids(
        &mut self,
        block: Block,
        txids: Vec<TxId>,
        now_ms: u64,
        source: Option<OrphanSource>,
    ) -> Result<ProcessOutcome, ProcessError> {
        self.known_txids = Some((block.hash(), txids));
        let result = self.process_block_from(block, now_ms, source);
        self.known_txids = None;
        result
    }

    pub(super) fn process_block_inner(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<ProcessOutcome, ProcessError> {
        self.process_block_sourced(block, now_ms, None)
    }

    fn process_block_sourced(
        &mut self,
        block: Block,
        now_ms: u64,
        source: Option<OrphanSource>,
    ) -> Result<ProcessOutcome, ProcessError> {
        self.orphans.expire(now_ms);
        self.write_indexes()?;
        let hash = block.hash();
        if let Some(node) = self.nodes.get(&hash) {
            return match node.status {
                BlockStatus::Invalid => Err(BlockError::KnownInvalid.into()),
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
        if block.header.height == Height::ZERO {
            return Err(BlockError::BadGenesis.into());
        }
        if self.rejected.contains(&hash) {
            return Err(BlockError::KnownInvalid.into());
        }
        if self.rejected.contains(&block.header.prev_hash) {
            self.reject_header(hash);
            return Err(BlockError::InvalidAncestor.into());
        }
        let Some(parent) = self.nodes.get(&block.header.prev_hash) else {
            // Cheap checks only: proof-of-work makes junk expensive to send,
            // and signatures are checked once the parent shows up.
            validation::check_block_structure(&block, &self.spec)?;
            let replaced = self.orphans.insert(hash, block, now_ms, source);
            if let Some(source) = source.filter(|_| replaced > 0) {
                tracing::debug!(block = %hash, source = source.0, replaced, rule = "orphans_per_peer", "a source at its orphan share replaced its own oldest");
            }
            return Ok(ProcessOutcome::Orphan);
        };
        if parent.status == BlockStatus::Invalid {
            self.reject_header(hash);
            return Err(BlockError::InvalidAncestor.into());
        }

        let result = self.accept_and_activate(hash, block, now_ms);
        // Bodies that did not go out with a connect (side branches, blocks
        // that failed to connect) are stored now, whatever happened; then
        // side branches past the limits are forgotten.
        let stored = self.store_unstored();
        let pruned = match &stored {
            Ok(()) => self.prune_side_branches().map(|_| ()),
            Err(_) => Ok(()),
        };
        let outcome = result?;
        stored?;
        pruned?;
        Ok(outcome)
    }

    /// The part of `process_block` after the cheap checks: accept `block`
    /// and the orphans waiting on it, then move to the best chain.
    fn accept_and_activate(
        &mut self,
        hash: BlockHash,
        block: Block,
        now_ms: u64,
    ) -> Result<ProcessOutcome, ProcessError> {
        let old_tip = self.tip;
        if let Err(error) = self.accept_block(hash, block, now_ms) {
            // Orphans waiting on a block that can never be valid cannot be
            // either; a block merely early (clock) keeps its orphans.
            if is_header_error(&error) {
                self.reject_header(hash);
            } else if error.is_misbehaviour() {
                self.orphans.drop_descendants(&hash);
            }
            return Err(error.into());
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
                        self.orphans.insert(child_hash, early_copy, now_ms, None);
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
            self.write_indexes()?;
        }
        if let Some((_, error)) = failures.into_iter().find(|(failed, _)| *failed == hash) {
            return Err(error.into());
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
        let known = self
            .known_txids
            .take_if(|(known, _)| *known == hash)
            .map(|(_, txids)| txids);
        let txids = validation::check_block_stateless_with(
            &block,
            &self.spec,
            &self.genesis,
            &self.cache,
            known,
        )?;
        let target = Target::from_compact(block.header.bits)
            .map_err(|_| BlockError::BadCompactTarget(block.header.bits.0))?;
        let node = Node {
            header: block.header.clone(),
            total_work: parent_work.saturating_add(&target.work()),
            status: BlockStatus::Valid,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let tip_height = self.nodes[&self.tip].header.height;
        self.side.insert((block.header.height, hash), tip_height);
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
    pub(super) fn store_unstored(&mut self) -> Result<(), StorageError> {
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
    pub(super) fn recent_timings(&self, last: &BlockHash) -> Vec<BlockTiming> {
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
            if timings.len() == wanted || node.header.height == Height::ZERO {
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
    /// the search repeats. Returns the failures; the error is our store's.
    pub(super) fn activate_best_chain(
        &mut self,
        hint: Option<BlockHash>,
    ) -> Result<Vec<(BlockHash, BlockError)>, StorageError> {
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
                    self.mark_subtree(failed, BlockStatus::Invalid)?;
                    failures.push((failed, error));
                    candidate = self.best_candidate();
                }
            }
        }
        Ok(failures)
    }

    /// Disconnects back to the fork point with `target`'s chain and connects
    /// towards `target`. Returns the first block that failed validation, if
    /// any (the tip is then its parent); the error is our store's.
    fn reorganize_to(
        &mut self,
        target: BlockHash,
    ) -> Result<Option<(BlockHash, BlockError)>, StorageError> {
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
                    self.mark_subtree(hash, BlockStatus::DataMissing)?;
                    return Ok(None);
                }
            };
            if let Err(error) = self.connect_tip(&hash, &block)? {
                return Ok(Some((hash, error)));
            }
        }
        Ok(None)
    }

    /// The last common ancestor of `a` and `b`.
    fn fork_point(&self, a: &BlockHash, b: &BlockHash) -> Result<BlockHash, StorageError> {
        let lookup = |hash: &BlockHash| {
            self.nodes
                .get(hash)
                .ok_or_else(|| missing(format!("block {hash} missing from the index")))
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
    pub(super) fn mark_subtree(
        &mut self,
        root: BlockHash,
        status: BlockStatus,
    ) -> Result<(), StorageError> {
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
    ) -> Result<ChainUpdate, StorageError> {
        let fork = self.fork_point(&old_tip, &new_tip)?;
        let load = |hash: &BlockHash| {
            if let Some(cached) = self.recent_blocks.get(hash) {
                return Ok(Arc::clone(&cached.block));
            }
            if let Some(cached) = self.held.get(hash) {
                return Ok(Arc::clone(&cached.block));
            }
            self.store
                .block(hash)?
                .map(Arc::new)
                .ok_or_else(|| missing(format!("body of block {hash} is missing")))
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{block_on, now_ms, regtest_chain};
    use super::*;

    #[test]
    fn at_equal_work_the_block_seen_first_stays_the_tip() {
        let (_arena, mut chain) = regtest_chain();
        let now = now_ms(&chain);
        let genesis = chain.spec().genesis_block().header;
        let first = block_on(&chain, &genesis, 1);
        let rival = block_on(&chain, &genesis, 2);
        let first_hash = first.hash();

        let outcome = chain.process_block(first, now).expect("valid");
        assert!(matches!(outcome, ProcessOutcome::Connected(_)));
        let outcome = chain.process_block(rival, now).expect("valid");

        assert_eq!(outcome, ProcessOutcome::SideChain);
        assert_eq!(chain.tip().hash, first_hash);
    }

    #[test]
    fn more_work_on_a_side_branch_reorganises_to_it() {
        let (_arena, mut chain) = regtest_chain();
        let now = now_ms(&chain);
        let genesis = chain.spec().genesis_block().header;
        let first = block_on(&chain, &genesis, 1);
        let rival = block_on(&chain, &genesis, 2);
        let rival_child = block_on(&chain, &rival.header, 2);
        let (first_hash, rival_hash, child_hash) = (first.hash(), rival.hash(), rival_child.hash());
        chain.process_block(first, now).expect("valid");
        chain.process_block(rival, now).expect("valid");

        let ProcessOutcome::Connected(update) =
            chain.process_block(rival_child, now).expect("valid")
        else {
            panic!("the longer branch should connect");
        };

        assert!(update.is_reorg());
        assert_eq!(update.fork_height, Height::ZERO);
        assert_eq!(update.old_tip, first_hash);
        let connected: Vec<BlockHash> = update.connected.iter().map(|block| block.hash()).collect();
        assert_eq!(connected, vec![rival_hash, child_hash]);
        assert_eq!(chain.tip().hash, child_hash);
    }

    #[test]
    fn an_orphan_connects_when_its_parent_arrives() {
        let (_arena, mut chain) = regtest_chain();
        let now = now_ms(&chain);
        let parent = block_on(&chain, &chain.spec().genesis_block().header, 1);
        let child = block_on(&chain, &parent.header, 1);
        let child_hash = child.hash();

        assert_eq!(
            chain.process_block(child, now).unwrap(),
            ProcessOutcome::Orphan
        );
        assert_eq!(chain.orphan_count(), 1);
        chain.process_block(parent, now).expect("valid");

        assert_eq!(chain.orphan_count(), 0);
        assert_eq!(chain.tip().hash, child_hash);
    }

    #[test]
    fn descendants_of_a_rejected_header_are_refused_at_once() {
        let (_arena, mut chain) = regtest_chain();
        let now = now_ms(&chain);
        let mut bad = block_on(&chain, &chain.spec().genesis_block().header, 1);
        bad.header.version += 1;
        let bad_hash = bad.hash();
        let child = block_on(&chain, &bad.header, 1);

        assert!(chain.process_block(bad, now).is_err());
        assert!(chain.rejected.contains(&bad_hash));
        assert_eq!(
            chain.process_block(child, now).unwrap_err().invalid(),
            Some(&BlockError::InvalidAncestor)
        );
        assert_eq!(chain.orphan_count(), 0);
    }

    /// Txids handed in with a block are what its checks use (wrong ones
    /// fail its merkle root, so they were not ignored); the right ones
    /// connect it.
    #[test]
    fn known_txids_are_used_by_the_checks_and_held_to_the_merkle_root() {
        let (_arena, mut chain) = regtest_chain();
        let now = now_ms(&chain);
        let spec = chain.spec().clone();
        let parent = spec.genesis_block().header;
        let genesis = chain.genesis_hash();
        let tx = crate::testing::transfer(&genesis, 0, crate::Address([9; 20]), 5, 1_000, 0);
        let mut block = crate::miner::assemble_block(
            &spec,
            parent.height + 1,
            parent.hash(),
            spec.initial_target,
            parent.timestamp + 1_000,
            crate::Address([1; 20]),
            vec![tx],
        );
        assert!(crate::miner::solve(
            &mut block.header,
            &std::sync::atomic::AtomicBool::new(false),
            1
        ));
        let txids = block.txids();
        let wrong = vec![TxId(crate::Hash256([5; 32])); txids.len()];

        let refused = chain
            .process_block_with_txids(block.clone(), wrong, now, None)
            .unwrap_err();
        assert_eq!(refused.invalid(), Some(&BlockError::BadMerkleRoot));
        let hash = block.hash();
        let outcome = chain
            .process_block_with_txids(block, txids, now, None)
            .expect("valid");
        assert!(matches!(outcome, ProcessOutcome::Connected(_)));
        assert_eq!(chain.tip().hash, hash);
    }

    #[test]
    fn only_header_rules_condemn_a_header() {
        assert!(is_header_error(&BlockError::BadProofOfWork));
        assert!(is_header_error(&BlockError::InvalidAncestor));
        assert!(!is_header_error(&BlockError::KnownInvalid));
        assert!(!is_header_error(&BlockError::BadGenesis));
    }
}
