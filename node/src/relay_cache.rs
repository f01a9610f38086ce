//! `RelayCache`: the `Message::Block` payloads of the last few blocks this
//! node validated, encoded once on the chain writer's thread the moment each
//! block passes its checks. A peer asking for a block we just announced is
//! answered from here: without waiting on sled (whose writes briefly shut
//! out readers) and without encoding the block again for every peer.

use ledger::BlockHash;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio_util::bytes::Bytes;

/// How many recent blocks are kept (a block is at most a few MiB, and
/// only the newest are asked for by many peers at once).
pub const RELAY_CACHE_BLOCKS: usize = 8;

#[derive(Default)]
pub struct RelayCache {
    entries: Mutex<VecDeque<(BlockHash, Bytes)>>,
}

impl RelayCache {
    pub fn insert(&self, hash: BlockHash, payload: Bytes) {
        let mut entries = self.lock();
        if entries.iter().any(|(known, _)| *known == hash) {
            return;
        }
        if entries.len() == RELAY_CACHE_BLOCKS {
            entries.pop_front();
        }
        entries.push_back((hash, payload));
    }

    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.lock().iter().any(|(known, _)| known == hash)
    }

    pub fn get(&self, hash: &BlockHash) -> Option<Bytes> {
        self.lock()
            .iter()
            .find(|(known, _)| known == hash)
            .map(|(_, payload)| payload.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(BlockHash, Bytes)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            cache.insert(hash(n), Bytes::from(vec![n]));
        }
        assert_eq!(cache.get(&hash(0)), None, "the oldest was dropped");
        assert_eq!(cache.get(&hash(1)), Some(Bytes::from(vec![1])));
        let newest = RELAY_CACHE_BLOCKS as u8;
        assert_eq!(cache.get(&hash(newest)), Some(Bytes::from(vec![newest])));
    }
}
