//! Opening the chain store, and recovering from whatever a crash left:
//! the block index is loaded into memory, the best chain is checked link
//! by link against the height index (a mismatch is `ChainError::Corrupt`,
//! never a silent repair), side-branch entries whose bodies are gone are
//! marked data-missing, blocks connected but not indexed are indexed, and
//! a reorg the crash interrupted is finished by re-activating the best
//! valid chain.

use super::cache::{RecentBlocks, RejectedHeaders};
use super::connect::HeldConnects;
use super::orphans::OrphanPool;
use super::{Chain, ChainError, Node};
use crate::address::Address;
use crate::hash::BlockHash;
use crate::sigcache::SignatureCache;
use crate::state::{self, Account};
use crate::storage::{BlockStatus, IndexEntry, MemoryArena, StorageError, Store, TemporaryArena};
use crate::target::{Target, Work};
use crate::validation::BlockError;
use crate::ChainSpec;
use crate::Height;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the stored best chain cannot be trusted as it is; reported as
/// `ChainError::Corrupt`, whatever the cause, because the remedy is the
/// same (move the directory away and resync).
#[derive(Debug, thiserror::Error)]
enum Inconsistency {
    #[error("{0}")]
    Broken(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Block(#[from] BlockError),
}

fn broken(detail: String) -> Inconsistency {
    Inconsistency::Broken(detail)
}

impl Chain {
    /// Opens or creates the chain store in `dir`. A dir of another chain
    /// gives `ChainError::WrongChain`; an inconsistent store gives
    /// `ChainError::Corrupt`. If the store was left mid-reorg, the best
    /// valid chain is re-activated before returning.
    pub fn open(spec: ChainSpec, dir: &Path) -> Result<Chain, ChainError> {
        let started = std::time::Instant::now();
        let store = Store::open(dir).map_err(|error| ChainError::from_storage(dir, error))?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            dir = %dir.display(),
            "sled store open"
        );
        Chain::open_store(spec, store, dir)
    }

    /// A new chain in a store of `arena` named `name`
    /// (`Store::open_in_arena`): gone with the arena. For simulations and
    /// tests.
    pub fn open_in_arena(
        spec: ChainSpec,
        arena: &TemporaryArena,
        name: &str,
    ) -> Result<Chain, ChainError> {
        let dir = PathBuf::from(format!("(temporary)/{name}"));
        let store = Store::open_in_arena(arena, name)
            .map_err(|error| ChainError::from_storage(&dir, error))?;
        Chain::open_store(spec, store, &dir)
    }

    /// A new chain in memory only, one store of `arena`
    /// (`Store::open_in_memory`), gone with the arena: for simulations and
    /// tests. Stores of one arena hold equal data once.
    pub fn open_in_memory(
        spec: ChainSpec,
        arena: &MemoryArena,
        name: &str,
    ) -> Result<Chain, ChainError> {
        let dir = PathBuf::from(format!("(memory)/{name}"));
        let store = Store::open_in_memory(arena, name)
            .map_err(|error| ChainError::from_storage(&dir, error))?;
        Chain::open_store(spec, store, &dir)
    }

    fn open_store(spec: ChainSpec, store: Store, dir: &Path) -> Result<Chain, ChainError> {
        let genesis_block = spec.genesis_block();
        let genesis = genesis_block.hash();
        let corrupt = |detail: String| ChainError::Corrupt {
            dir: dir.display().to_string(),
            detail,
        };
        let from_storage = |error| ChainError::from_storage(dir, error);
        match store.chain_identity().map_err(from_storage)? {
            Some((found, found_name)) if found != genesis => {
                return Err(ChainError::WrongChain {
                    found_name,
                    found,
                    expected_name: spec.name.clone(),
                    expected: genesis,
                })
            }
            Some(_) => {}
            None => {
                let entry = IndexEntry {
                    header: genesis_block.header.clone(),
                    total_work: Target::from_compact(genesis_block.header.bits)
                        .map(|target| target.work())
                        .unwrap_or(Work::ZERO),
                    status: BlockStatus::Valid,
                    seq: 0,
                };
                let allocations: Vec<(Address, Account)> =
                    state::genesis_state(&spec).into_iter().collect();
                store
                    .init_genesis(&spec.name, &genesis_block, &entry, &allocations)
                    .map_err(from_storage)?;
                tracing::info!(chain = %spec.name, genesis = %genesis, "initialised a new chain store");
            }
        }

        let phase = std::time::Instant::now();
        let mut nodes = HashMap::new();
        let mut children: HashMap<BlockHash, Vec<BlockHash>> = HashMap::new();
        let mut next_seq = 1;
        for (hash, entry) in store.load_index().map_err(from_storage)? {
            if hash != entry.header.hash() {
                return Err(corrupt(format!("index entry {hash} holds another header")));
            }
            next_seq = next_seq.max(entry.seq.saturating_add(1));
            if hash != genesis {
                children
                    .entry(entry.header.prev_hash)
                    .or_default()
                    .push(hash);
            }
            nodes.insert(
                hash,
                Node {
                    header: entry.header,
                    total_work: entry.total_work,
                    status: entry.status,
                    seq: entry.seq,
                },
            );
        }
        if !nodes.contains_key(&genesis) {
            return Err(corrupt("genesis is missing from the block index".into()));
        }
        let tip = store
            .tip_hash()
            .map_err(from_storage)?
            .ok_or_else(|| corrupt("no tip recorded".into()))?;

        let mut chain = Chain {
            spec: Arc::new(spec),
            genesis,
            store,
            nodes,
            children,
            tip,
            next_seq,
            orphans: OrphanPool::default(),
            rejected: RejectedHeaders::default(),
            recent_blocks: RecentBlocks::default(),
            cache: SignatureCache::default(),
            validated_hook: None,
            known_txids: None,
            unindexed: Vec::new(),
            defer_indexing: false,
            unstored: Vec::new(),
            held: HeldConnects::default(),
            hold_limit: 0,
            side: Default::default(),
            side_limits: Default::default(),
            pruned_side_blocks: 0,
        };
        let index_ms = phase.elapsed().as_millis() as u64;
        let phase = std::time::Instant::now();
        chain
            .check_best_chain()
            .map_err(|error| corrupt(error.to_string()))?;
        let check_ms = phase.elapsed().as_millis() as u64;
        chain.side = chain.find_side_blocks();
        let phase = std::time::Instant::now();
        chain.mark_missing_data().map_err(from_storage)?;
        let missing_ms = phase.elapsed().as_millis() as u64;
        let phase = std::time::Instant::now();
        chain
            .finish_indexing()
            .map_err(|error| corrupt(error.to_string()))?;
        chain.activate_best_chain(None).map_err(from_storage)?;
        // Blocks re-connected just now (a reorg the crash interrupted).
        chain.write_indexes().map_err(from_storage)?;
        let pruned = chain.prune_side_branches().map_err(from_storage)?;
        let recover_ms = phase.elapsed().as_millis() as u64;
        let tip = chain.tip();
        tracing::info!(
            height = tip.height.0,
            tip = %tip.hash,
            index_ms,
            check_ms,
            missing_ms,
            recover_ms,
            side_blocks = chain.side.len(),
            pruned,
            "chain store open"
        );
        Ok(chain)
    }

    /// Checks that the stored tip is in the index and that the height index
    /// matches the hash links from the tip back to genesis, with every
    /// body present.
    fn check_best_chain(&self) -> Result<(), Inconsistency> {
        let tip = self
            .nodes
            .get(&self.tip)
            .ok_or_else(|| broken(format!("tip {} is not in the block index", self.tip)))?;
        if tip.status != BlockStatus::Valid {
            return Err(broken(format!(
                "tip {} is marked {:?}",
                self.tip, tip.status
            )));
        }
        let mut hash = self.tip;
        loop {
            let node = self.nodes.get(&hash).ok_or_else(|| {
                broken(format!(
                    "ancestor {hash} of the tip is not in the block index"
                ))
            })?;
            let height = node.header.height;
            match self.store.hash_at(height) {
                Ok(Some(stored)) if stored == hash => {}
                Ok(other) => {
                    return Err(broken(format!(
                        "height index at {height} holds {other:?}, but the tip's ancestor there is {hash}"
                    )))
                }
                Err(error) => return Err(error.into()),
            }
            match self.store.has_block_data(&hash) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(broken(format!(
                        "body of best-chain block {hash} is missing"
                    )))
                }
                Err(error) => return Err(error.into()),
            }
            if height == Height::ZERO {
                if hash != self.genesis {
                    return Err(broken(format!(
                        "best chain starts at {hash}, not at genesis"
                    )));
                }
                break;
            }
            hash = node.header.prev_hash;
        }
        let tip_height = tip.header.height;
        match self.store.best_chain_last() {
            Ok(Some((height, _))) if height == tip_height => Ok(()),
            Ok(other) => Err(broken(format!(
                "height index ends at {other:?}, but the tip is at height {tip_height}"
            ))),
            Err(error) => Err(error.into()),
        }
    }

    /// Indexes the best-chain blocks above `meta/indexed`: those whose
    /// connect was written but whose index entries were not (a crash in
    /// between). A store without the record predates deferred indexing and
    /// is fully indexed.
    fn finish_indexing(&mut self) -> Result<(), Inconsistency> {
        let indexed = match self.store.indexed_hash().map_err(Inconsistency::from)? {
            Some(indexed) => indexed,
            None => {
                return self
                    .store
                    .set_indexed_hash(&self.tip)
                    .map_err(Inconsistency::from)
            }
        };
        if indexed == self.tip {
            return Ok(());
        }
        let height = |hash: &BlockHash| self.nodes.get(hash).map(|node| node.header.height);
        let (Some(from), Some(to)) = (height(&indexed), height(&self.tip)) else {
            return Err(broken(format!(
                "indexed block {indexed} is not in the block index"
            )));
        };
        let on_best_chain = self.store.hash_at(from).map_err(Inconsistency::from)?;
        if on_best_chain != Some(indexed) || from > to {
            return Err(broken(format!(
                "indexed block {indexed} is not on the best chain below the tip"
            )));
        }
        for height in (from.0 + 1..=to.0).map(Height) {
            let hash = self
                .store
                .hash_at(height)
                .map_err(Inconsistency::from)?
                .ok_or_else(|| broken(format!("no best-chain block at height {height}")))?;
            let cached = self
                .load_block(&hash)?
                .ok_or_else(|| broken(format!("body of best-chain block {hash} is missing")))?;
            self.unindexed.push((hash, cached));
        }
        tracing::info!(blocks = to - from, "indexing blocks a crash left unindexed");
        self.write_indexes().map_err(Inconsistency::from)
    }

    /// Marks side-branch entries whose bodies are gone as data-missing, so
    /// fork choice never tries to connect them.
    fn mark_missing_data(&mut self) -> Result<(), StorageError> {
        let mut missing = Vec::new();
        for (hash, node) in &self.nodes {
            if node.status == BlockStatus::Valid && !self.store.has_block_data(hash)? {
                missing.push(*hash);
            }
        }
        for hash in missing {
            self.mark_subtree(hash, BlockStatus::DataMissing)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{block_on, now_ms};
    use super::*;

    fn spec(name: &str) -> ChainSpec {
        ChainSpec::builtin(name).expect("built-in")
    }

    #[test]
    fn a_new_store_starts_at_genesis() {
        let dir = tempfile::tempdir().expect("temp dir");
        let chain = Chain::open(spec("regtest"), dir.path()).expect("open");

        assert_eq!(chain.tip().height, Height::ZERO);
        assert_eq!(chain.tip().hash, spec("regtest").genesis_block().hash());
        assert_eq!(chain.index_len(), 1);
    }

    #[test]
    fn a_store_of_another_chain_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(Chain::open(spec("regtest"), dir.path()).expect("open"));

        let error = Chain::open(spec("dev"), dir.path()).err().expect("refused");

        assert!(matches!(error, ChainError::WrongChain { .. }), "{error}");
    }

    #[test]
    fn reopening_loads_the_index_and_the_tip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = Chain::open(spec("regtest"), dir.path()).expect("open");
        let now = now_ms(&chain);
        let first = block_on(&chain, &chain.spec().genesis_block().header, 1);
        let side = block_on(&chain, &chain.spec().genesis_block().header, 2);
        let second = block_on(&chain, &first.header, 1);
        let tip = second.hash();
        for block in [first, side, second] {
            chain.process_block(block, now).expect("valid");
        }
        chain.flush().expect("flush");
        drop(chain);

        let chain = Chain::open(spec("regtest"), dir.path()).expect("reopen");

        assert_eq!(chain.tip().hash, tip);
        assert_eq!(chain.tip().height, Height(2));
        assert_eq!(chain.index_len(), 4);
    }

    #[test]
    fn a_tip_missing_from_the_height_index_is_corruption() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = Chain::open(spec("regtest"), dir.path()).expect("open");
        let now = now_ms(&chain);
        let block = block_on(&chain, &chain.spec().genesis_block().header, 1);
        chain.process_block(block, now).expect("valid");
        // A side entry claiming to be the tip, with no height-index record.
        let side = block_on(&chain, &chain.spec().genesis_block().header, 2);
        let side_hash = side.hash();
        chain.tip = side_hash;
        chain.nodes.insert(
            side_hash,
            Node {
                header: side.header,
                total_work: Work::ZERO,
                status: BlockStatus::Valid,
                seq: 99,
            },
        );

        assert!(chain.check_best_chain().is_err());
    }
}
