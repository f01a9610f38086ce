//! `RelayCache`: the `Message::Block` and `Message::CompactBlock` payloads
//! of the last few blocks this node validated, encoded once on the chain
//! writer's thread the moment each block passes its checks. A peer asking
//! for a block we just announced, or pushed a compact block, is served from
//! here: without waiting on sled (whose writes briefly shut out readers)
//! and without encoding the block again for every peer.

use crate::p2p::codec::{block_payload, compact_payload};
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

    /// The block of a cached payload (one validated but perhaps not yet
    /// committed).
    pub fn block(&self, hash: &BlockHash) -> Option<Block> {
        let payload = self.get(hash)?;
        encoding::decode(payload.get(4..)?).ok()
    }

    pub fn insert(&self, hash: BlockHash, block: Bytes, compact: Bytes) {
        let mut entries = self.lock();
        if entries.iter().any(|entry| entry.hash == hash) {
            return;
        }
        if entries.len() == RELAY_CACHE_BLOCKS {
            entries.pop_front();
        }
        entries.push_back(Entry {
            hash,
            block,
            compact,
        });
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
}
