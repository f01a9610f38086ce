//! `RelayCache`: the `Message::Block` and `Message::CompactBlock` payloads
//! of the last few blocks this node validated, encoded once on the chain
//! writer's thread the moment each block passes its checks. A peer asking
//! for a block we just announced, or pushed a compact block, is served from
//! here: without waiting on sled (whose writes briefly shut out readers)
//! and without encoding the block again for every peer.

use crate::p2p::codec::{block_payload, compact_payload, encode_message};
use crate::p2p::message::{CompactBlock, Message};
use ledger::{encoding, Block, BlockHash};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio_util::bytes::Bytes;

/// How many recent blocks are kept (a block is at most a few MiB, and
/// only the newest are asked for by many peers at once).
pub const RELAY_CACHE_BLOCKS: usize = 8;

/// One block's payloads.
struct Entry {
    hash: BlockHash,
    block: Bytes,
    compact: Bytes,
    /// Most of the block's txs would travel prefilled anyway: pushed to
    /// high-bandwidth peers whole, which spares them the rebuild.
    push_whole: bool,
}

#[derive(Default)]
pub struct RelayCache {
    entries: Mutex<VecDeque<Entry>>,
}

impl RelayCache {
    /// Encodes both payloads of a block that just passed its checks.
    pub fn insert_block(&self, hash: BlockHash, block: &Block) {
        self.insert(
            hash,
            block_payload(&encoding::encode(block)),
            compact_payload(block),
        );
    }

    /// `insert_block` with the compact form given (some txs prefilled).
    /// A block more than half of whose txs are prefilled is pushed whole.
    pub fn insert_block_with(&self, hash: BlockHash, block: &Block, compact: CompactBlock) {
        let push_whole = compact.prefilled.len() * 2 > compact.tx_count();
        self.insert_entry(Entry {
            hash,
            block: block_payload(&encoding::encode(block)),
            compact: encode_message(&Message::CompactBlock(Box::new(compact))),
            push_whole,
        });
    }

    /// What to push to a high-bandwidth peer: the compact block, or the
    /// whole block when most of it would be prefilled.
    pub fn push_payload(&self, hash: &BlockHash) -> Option<(&'static str, Bytes)> {
        self.lock()
            .iter()
            .find(|entry| entry.hash == *hash)
            .map(|entry| {
                if entry.push_whole {
                    ("block", entry.block.clone())
                } else {
                    ("compact_block", entry.compact.clone())
                }
            })
    }

    /// The block of a cached payload (one validated but perhaps not yet
    /// committed).
    pub fn block(&self, hash: &BlockHash) -> Option<Block> {
        let payload = self.get(hash)?;
        encoding::decode(payload.get(4..)?).ok()
    }

    pub fn insert(&self, hash: BlockHash, block: Bytes, compact: Bytes) {
        self.insert_entry(Entry {
            hash,
            block,
            compact,
            push_whole: false,
        });
    }

    fn insert_entry(&self, entry: Entry) {
        let mut entries = self.lock();
        if entries.iter().any(|held| held.hash == entry.hash) {
            return;
        }
        if entries.len() == RELAY_CACHE_BLOCKS {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.lock().iter().any(|entry| entry.hash == *hash)
    }

    /// The `Message::Block` payload.
    pub fn get(&self, hash: &BlockHash) -> Option<Bytes> {
        self.find(hash, |entry| &entry.block)
    }

    /// The `Message::CompactBlock` payload.
    pub fn compact(&self, hash: &BlockHash) -> Option<Bytes> {
        self.find(hash, |entry| &entry.compact)
    }

    fn find(&self, hash: &BlockHash, field: impl Fn(&Entry) -> &Bytes) -> Option<Bytes> {
        self.lock()
            .iter()
            .find(|entry| entry.hash == *hash)
            .map(|entry| field(entry).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        ledger::sync::lock(&self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::Hash256;
    use ledger::Height;

    fn hash(n: u8) -> BlockHash {
        BlockHash(Hash256([n; 32]))
    }

    #[test]
    fn keeps_the_newest_blocks() {
        let cache = RelayCache::default();
        for n in 0..=RELAY_CACHE_BLOCKS as u8 {
            cache.insert(hash(n), Bytes::from(vec![n]), Bytes::from(vec![n, n]));
        }
        assert_eq!(cache.get(&hash(0)), None, "the oldest was dropped");
        assert_eq!(cache.get(&hash(1)), Some(Bytes::from(vec![1])));
        assert_eq!(cache.compact(&hash(1)), Some(Bytes::from(vec![1, 1])));
        let newest = RELAY_CACHE_BLOCKS as u8;
        assert_eq!(cache.get(&hash(newest)), Some(Bytes::from(vec![newest])));
    }

    #[test]
    fn a_block_mostly_prefilled_is_pushed_whole() {
        use ledger::{Address, Amount, Block, Transaction, TxId};
        let key = ledger::chainspec::dev_secret_key(0);
        let txs: Vec<Transaction> = (0..4)
            .map(|nonce| {
                Transaction::new_signed(
                    &key,
                    &hash(0),
                    Address([1; 20]),
                    Amount::from_base_units(1),
                    Amount::from_base_units(1),
                    nonce,
                    String::new(),
                )
            })
            .collect();
        let txids: Vec<TxId> = txs.iter().map(Transaction::txid).collect();
        let block = Block {
            header: ledger::Header {
                version: 1,
                height: Height(1),
                prev_hash: hash(0),
                merkle_root: ledger::block::merkle_root(&txids),
                timestamp: 1,
                bits: ledger::target::CompactTarget(0x2000_ffff),
                nonce: 0,
                miner: Address([4; 20]),
                reward: Amount::ZERO,
            },
            txs,
        };
        let cache = RelayCache::default();
        for (n, prefilled) in [(1, 2), (2, 3)] {
            let compact = CompactBlock::prefilling(&block, &txids, |index| index < prefilled);
            cache.insert_block_with(hash(n), &block, compact);
        }
        assert_eq!(
            cache.push_payload(&hash(1)).unwrap().0,
            "compact_block",
            "half"
        );
        assert_eq!(
            cache.push_payload(&hash(2)).unwrap().0,
            "block",
            "three of four"
        );
    }
}
