//! `LocalChain`: how a node answers the P2P core's chain questions
//! (`ChainView`) from its own chain reader, relay cache and mempool. The
//! node's handle and the test harness's backend, which stands in for it,
//! both hold these three, so both answer through this one implementation
//! and the tests see exactly what peers of a real node see.

use crate::p2p::{ChainView, TipSummary};
use crate::relay_cache::RelayCache;
use ledger::chain::ChainReader;
use ledger::mempool::Mempool;
use ledger::sync::lock;
use ledger::{Address, Block, BlockHash, Header, Transaction, TxId};
use std::sync::Mutex;
use tokio_util::bytes::Bytes;

/// The parts of a node that `ChainView` reads.
pub struct LocalChain<'a> {
    pub reader: &'a ChainReader,
    /// Validated blocks still being committed, which may be served already.
    pub relay_cache: &'a RelayCache,
    pub mempool: &'a Mutex<Mempool>,
}

/// The block reads of `p2p::Backend`, which the node and its stand-in
/// answer alike.
impl LocalChain<'_> {
    /// A block's P2P payload: encoded already if it was validated lately.
    pub fn block_payload(&self, hash: &BlockHash) -> Option<Bytes> {
        if let Some(payload) = self.relay_cache.get(hash) {
            return Some(payload);
        }
        self.reader
            .block_bytes(hash)
            .map(|bytes| crate::p2p::codec::block_payload(&bytes))
    }

    /// A block's `CompactBlock` payload, from the relay cache or built.
    pub fn compact_payload(&self, hash: &BlockHash) -> Option<Bytes> {
        if let Some(payload) = self.relay_cache.compact(hash) {
            return Some(payload);
        }
        self.reader
            .block(hash)
            .map(|block| crate::p2p::codec::compact_payload(&block))
    }

    /// A block just validated is decoded from its relay payload, since it
    /// may not be committed yet.
    pub fn recent_block(&self, hash: &BlockHash) -> Option<Block> {
        self.relay_cache
            .block(hash)
            .or_else(|| self.reader.block(hash))
    }
}

/// A node (or a stand-in for one) whose `ChainView` is its `LocalChain`.
pub trait HasLocalChain {
    fn local_chain(&self) -> LocalChain<'_>;
}

impl<T: HasLocalChain> ChainView for T {
    fn tip(&self) -> TipSummary {
        let tip = self.local_chain().reader.tip();
        TipSummary {
            height: tip.height,
            hash: tip.hash,
            total_work: tip.total_work,
        }
    }

    fn locator(&self) -> Vec<BlockHash> {
        self.local_chain().reader.locator()
    }

    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<Header> {
        self.local_chain().reader.headers_after(locator, max)
    }

    /// Stored, or validated and still being committed (in the relay cache,
    /// so it can be served already).
    fn has_block(&self, hash: &BlockHash) -> bool {
        let chain = self.local_chain();
        chain.relay_cache.contains(hash) || chain.reader.has_block(hash)
    }

    fn block_work(&self, hash: &BlockHash) -> Option<ledger::Work> {
        self.local_chain().reader.total_work(hash)
    }

    fn mempool_tx(&self, txid: &TxId) -> Option<Transaction> {
        lock(self.local_chain().mempool).get(txid).cloned()
    }

    fn mempool_txs(&self, txids: &[TxId]) -> Vec<Option<Transaction>> {
        let mempool = lock(self.local_chain().mempool);
        txids
            .iter()
            .map(|txid| mempool.get(txid).cloned())
            .collect()
    }

    fn mempool_txids(&self, limit: usize) -> Vec<TxId> {
        lock(self.local_chain().mempool).txids_newest_first(limit)
    }

    /// From memory only (the pool and the txids of recent blocks): peers
    /// may announce any number of txids, and each answer used to cost a
    /// read of the stored tx index when the tx was not pending.
    fn has_tx(&self, txid: &TxId) -> bool {
        lock(self.local_chain().mempool).knows(txid)
    }

    fn has_txs(&self, txids: &[TxId]) -> Vec<bool> {
        let mempool = lock(self.local_chain().mempool);
        txids.iter().map(|txid| mempool.knows(txid)).collect()
    }

    fn oldest_pending_txids(&self, limit: usize) -> Vec<TxId> {
        lock(self.local_chain().mempool).txids_oldest_first(limit)
    }

    fn next_nonce(&self, sender: &Address) -> u64 {
        let chain = self.local_chain();
        lock(chain.mempool).next_nonce(sender, chain.reader)
    }

    fn sender_txs(&self, sender: &Address, first_nonce: u64, limit: usize) -> Vec<Transaction> {
        lock(self.local_chain().mempool)
            .sender_txs_from(sender, first_nonce, limit)
            .into_iter()
            .cloned()
            .collect()
    }
}
