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
    /// Compact blocks as peers sent them, for blocks rebuilt from them in
    /// full and not yet validated (see `note_received`).
    received: Mutex<VecDeque<(BlockHash, CompactBlock)>>,
}

impl RelayCache {
    /// Remembers the compact form a peer sent for a block we rebuilt from
    /// it in full, so that validating the block relays that same form
    /// (`take_received`): its short ids are the same for everyone, and the
    /// txs its sender prefilled are the ones our peers most likely lack
    /// too. Only the last few are kept.
    pub fn note_received(&self, compact: &CompactBlock) {
        let hash = compact.header.hash();
        let mut received = ledger::sync::lock(&self.received);
        if received.iter().any(|(known, _)| *known == hash) {
            return;
        }
        if received.len() >= RELAY_CACHE_BLOCKS {
            received.pop_front();
        }
        received.push_back((hash, compact.clone()));
    }

    /// The compact form `note_received` kept for `hash`, taken out.
    pub fn take_received(&self, hash: &BlockHash) -> Option<CompactBlock> {
        let mut received = ledger::sync::lock(&self.received);
        let position = received.iter().position(|(known, _)| known == hash)?;
        received.remove(position).map(|(_, compact)| compact)
    }

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
    fn a_received_compact_form_is_taken_once_and_only_the_newest_are_kept() {
        let cache = RelayCache::default();
        let genesis = ledger::testing::regtest().genesis_block();
        let mut forms = Vec::new();
        for n in 0..=RELAY_CACHE_BLOCKS as u64 {
            let mut block = genesis.clone();
            block.txs.clear();
            block.header.timestamp += n;
            let form = CompactBlock::prefilling(&block, &[], |_| false);
            cache.note_received(&form);
            forms.push(form);
        }
        assert_eq!(
            cache.take_received(&forms[0].header.hash()),
            None,
            "the oldest was dropped"
        );
        let newest = forms.last().unwrap();
        assert_eq!(
            cache.take_received(&newest.header.hash()).as_ref(),
            Some(newest)
        );
        assert_eq!(
            cache.take_received(&newest.header.hash()),
            None,
            "taken once"
        );
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
