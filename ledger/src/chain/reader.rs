//! `ChainReader`, the read side of the chain: cheap to clone, shared by the
//! RPC, P2P and the mempool, and never waiting on the writer, because it
//! reads sled directly. A block connects in one sled transaction, so a
//! reader sees it wholly or not at all; connects the writer still holds
//! for a group commit are not visible yet.

use super::{StateSummary, TipInfo};
use crate::address::Address;
use crate::block::{Block, Header};
use crate::chainspec::ChainSpec;
use crate::hash::{BlockHash, TxId};
use crate::state::{Account, AccountSource, StateDigester};
use crate::storage::{BlockStatus, StorageError, Store, TxLocation};
use crate::target::{Target, Work};
use crate::tx::Transaction;
use crate::Height;
use std::sync::Arc;

/// The read side of the chain: `Clone`, `Send`, `Sync`; every call reads
/// sled directly and never waits on the writer. A storage error reads as
/// "absent" and is logged.
#[derive(Clone)]
pub struct ChainReader {
    pub(super) spec: Arc<ChainSpec>,
    pub(super) genesis: BlockHash,
    pub(super) store: Store,
}

fn logged<T>(result: Result<Option<T>, StorageError>) -> Option<T> {
    match result {
        Ok(value) => value,
        Err(error) => {
            tracing::error!(%error, "chain storage read failed");
            None
        }
    }
}

impl ChainReader {
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis
    }

    /// The best block as of the last committed connect or disconnect.
    pub fn tip(&self) -> TipInfo {
        let hash = logged(self.store.tip_hash()).unwrap_or(self.genesis);
        match logged(self.store.entry(&hash)) {
            Some(entry) => TipInfo {
                height: entry.header.height,
                hash,
                total_work: entry.total_work,
                target: Target::from_compact(entry.header.bits).unwrap_or(Target::MAX),
                timestamp: entry.header.timestamp,
            },
            None => TipInfo {
                height: Height::ZERO,
                hash,
                total_work: Work::ZERO,
                target: self.spec.initial_target,
                timestamp: self.spec.genesis_timestamp,
            },
        }
    }

    pub fn account(&self, address: &Address) -> Account {
        AccountSource::account(&self.store, address)
    }

    /// Any stored block, on any branch.
    pub fn block(&self, hash: &BlockHash) -> Option<Block> {
        logged(self.store.block(hash))
    }

    /// Whether a block's body is stored (on any branch): `block` would
    /// find it, without reading it.
    pub fn has_block_data(&self, hash: &BlockHash) -> bool {
        match self.store.has_block_data(hash) {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "chain storage read failed");
                false
            }
        }
    }

    /// A stored block's canonical encoding, as stored: a node serving peers
    /// forwards it without decoding and encoding it again.
    pub fn block_bytes(&self, hash: &BlockHash) -> Option<Vec<u8>> {
        logged(self.store.block_bytes(hash))
    }

    pub fn header(&self, hash: &BlockHash) -> Option<Header> {
        logged(self.store.entry(hash)).map(|entry| entry.header)
    }

    /// Whether the block is stored and not known invalid.
    pub fn has_block(&self, hash: &BlockHash) -> bool {
        logged(self.store.entry(hash)).is_some_and(|entry| entry.status == BlockStatus::Valid)
    }

    /// The total work of the chain ending in a stored valid block (any
    /// branch); `None` when it is not stored or known invalid.
    pub fn total_work(&self, hash: &BlockHash) -> Option<Work> {
        logged(self.store.entry(hash))
            .filter(|entry| entry.status == BlockStatus::Valid)
            .map(|entry| entry.total_work)
    }

    /// What the index says about a block (any branch); `None` when unknown.
    pub fn block_status(&self, hash: &BlockHash) -> Option<BlockStatus> {
        logged(self.store.entry(hash)).map(|entry| entry.status)
    }

    /// Best-chain hash at `height`.
    pub fn hash_at(&self, height: Height) -> Option<BlockHash> {
        logged(self.store.hash_at(height))
    }

    /// Best-chain block at `height`.
    pub fn block_at(&self, height: Height) -> Option<Block> {
        self.hash_at(height).and_then(|hash| self.block(&hash))
    }

    /// A transaction confirmed on the best chain; only its bytes are
    /// decoded, not its block's.
    pub fn tx(&self, txid: &TxId) -> Option<(Transaction, TxLocation)> {
        logged(self.store.tx(txid))
    }

    /// Whether a tx is confirmed on the best chain, from the tx index
    /// alone: no block is read. What a peer's announcement is checked
    /// against.
    pub fn has_tx(&self, txid: &TxId) -> bool {
        match self.store.has_tx(txid) {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "chain storage read failed");
                false
            }
        }
    }

    /// Block bodies in the store, on every branch (counts them: for tests
    /// and diagnostics).
    pub fn stored_block_count(&self) -> usize {
        self.store.block_count()
    }

    /// Block bodies read from storage since it was opened (every reader of
    /// one chain shares the count).
    pub fn block_reads(&self) -> u64 {
        self.store.block_reads()
    }

    /// Best-chain transactions sent or received by `address`, newest first,
    /// before `before` (height, position in the block) when given: the
    /// next page after the last entry of the previous one.
    pub fn address_txs(
        &self,
        address: &Address,
        limit: usize,
        before: Option<(Height, u32)>,
    ) -> Vec<(Transaction, TxLocation)> {
        match self.store.address_txs(address, limit, before) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "reading address history failed");
                Vec::new()
            }
        }
    }

    /// Block locator of the best chain: the last 10 hashes one by one, then
    /// doubling steps back, always ending with genesis.
    pub fn locator(&self) -> Vec<BlockHash> {
        let tip = self.tip();
        let mut locator = Vec::new();
        let mut height = tip.height;
        let mut step = 1u64;
        loop {
            if let Some(hash) = self.hash_at(height) {
                locator.push(hash);
            }
            if height == Height::ZERO {
                break;
            }
            if locator.len() >= 10 {
                step = step.saturating_mul(2);
            }
            height = height.saturating_sub(step);
        }
        if locator.last() != Some(&self.genesis) {
            locator.push(self.genesis);
        }
        locator
    }

    /// Best-chain headers after the first locator hash that is on our best
    /// chain (genesis when none is), up to `max`.
    pub fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<Header> {
        let mut start = Height::ZERO;
        for hash in locator {
            if let Some(entry) = logged(self.store.entry(hash)) {
                if self.hash_at(entry.header.height) == Some(*hash) {
                    start = entry.header.height;
                    break;
                }
            }
        }
        let mut headers = Vec::new();
        let mut height = start + 1;
        while headers.len() < max {
            let Some(hash) = self.hash_at(height) else {
                break;
            };
            let Some(header) = self.header(&hash) else {
                break;
            };
            headers.push(header);
            height += 1;
        }
        headers
    }

    /// Height, tip, account count, total supply and digest, all from one
    /// state: one read of the summary the store keeps current with every
    /// connect and disconnect (`storage::StateRecord`), so O(1).
    pub fn state_summary(&self) -> StateSummary {
        match logged(self.store.state_record()) {
            Some(record) => {
                let (digest, accounts, total_supply) = record.digest.finish();
                StateSummary {
                    height: record.height,
                    tip: record.tip,
                    accounts,
                    total_supply,
                    digest,
                }
            }
            None => {
                // Only a store without genesis has no record.
                let tip = self.tip();
                let (digest, accounts, total_supply) = StateDigester::new().finish();
                StateSummary {
                    height: tip.height,
                    tip: tip.hash,
                    accounts,
                    total_supply,
                    digest,
                }
            }
        }
    }
}

impl AccountSource for ChainReader {
    fn account(&self, address: &Address) -> Account {
        ChainReader::account(self, address)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{block_on, now_ms, regtest_chain};
    use super::super::Chain;
    use crate::block::Header;
    use crate::Height;

    /// Extends the best chain by `count` blocks and returns their headers.
    fn extend(chain: &mut Chain, count: usize) -> Vec<Header> {
        let now = now_ms(chain);
        let mut parent = chain.spec().genesis_block().header;
        let mut headers = Vec::new();
        for _ in 0..count {
            let block = block_on(chain, &parent, 1);
            parent = block.header.clone();
            headers.push(block.header.clone());
            chain.process_block(block, now).expect("valid");
        }
        headers
    }

    #[test]
    fn the_locator_steps_back_one_by_one_then_doubling_to_genesis() {
        let (_arena, mut chain) = regtest_chain();
        extend(&mut chain, 20);
        let reader = chain.reader();

        let heights: Vec<Height> = reader
            .locator()
            .iter()
            .map(|hash| reader.header(hash).expect("stored").height)
            .collect();

        assert_eq!(
            heights,
            vec![20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 9, 5, 0]
        );
    }

    #[test]
    fn headers_after_start_past_the_first_locator_hash_on_the_best_chain() {
        let (_arena, mut chain) = regtest_chain();
        let headers = extend(&mut chain, 6);
        let reader = chain.reader();
        let unknown = crate::BlockHash(crate::Hash256::digest(b"unknown"));

        let after = reader.headers_after(&[unknown, headers[2].hash()], 2);

        assert_eq!(after, vec![headers[3].clone(), headers[4].clone()]);
        assert_eq!(
            reader.headers_after(&[], 100).len(),
            6,
            "none known: from genesis"
        );
    }

    #[test]
    fn the_state_summary_follows_the_tip() {
        let (_arena, mut chain) = regtest_chain();
        let reader = chain.reader();
        let before = reader.state_summary();
        extend(&mut chain, 1);

        let after = reader.state_summary();

        assert_eq!(before.height, Height::ZERO);
        assert_eq!(after.height, Height(1));
        assert_eq!(after.tip, chain.tip().hash);
        assert_eq!(after.accounts, before.accounts + 1);
        assert_ne!(after.digest, before.digest);
    }
}
