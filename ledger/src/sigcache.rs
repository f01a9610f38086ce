//! `SignatureCache`: the set of txids whose signatures were already checked
//! on this chain, shared by the mempool and block validation so a
//! transaction relayed first and mined later is verified once.
//!
//! A txid is the hash of the whole encoded transaction, signature included,
//! and the signed message commits to the genesis hash and every field. So
//! "this txid verified on this chain" implies "this exact transaction has a
//! valid signature here": the cache can never turn an invalid signature into
//! a valid one, it can only skip repeating work. A node uses one cache per
//! chain, which is the only way it is ever built.

use crate::hash::TxId;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default capacity: a few full blocks plus a full mempool.
pub const DEFAULT_SIGNATURE_CACHE_CAPACITY: usize = 200_000;

/// Txids `SignatureCache::unchecked` looks up per hold of the lock (a
/// millisecond or two of lookups).
const LOOKUP_CHUNK: usize = 4_096;

/// A bounded set of verified txids with first-in-first-out eviction.
/// Cloning is cheap and clones share the same set.
#[derive(Clone)]
pub struct SignatureCache {
    inner: Arc<Mutex<CacheInner>>,
}

struct CacheInner {
    capacity: usize,
    members: HashSet<TxId>,
    order: VecDeque<TxId>,
}

impl SignatureCache {
    /// A cache that holds at most `capacity` txids (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SignatureCache {
            inner: Arc::new(Mutex::new(CacheInner {
                capacity,
                members: HashSet::with_capacity(capacity.min(1 << 16)),
                order: VecDeque::with_capacity(capacity.min(1 << 16)),
            })),
        }
    }

    /// Records that `txid`'s signature verified. Evicts the oldest entry
    /// when full.
    pub fn insert(&self, txid: TxId) {
        let mut inner = self.lock();
        if !inner.members.insert(txid) {
            return;
        }
        inner.order.push_back(txid);
        while inner.order.len() > inner.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.members.remove(&oldest);
            }
        }
    }

    /// Records many verified txids under one lock.
    pub fn insert_many(&self, txids: impl IntoIterator<Item = TxId>) {
        let mut inner = self.lock();
        for txid in txids {
            if inner.members.insert(txid) {
                inner.order.push_back(txid);
            }
        }
        while inner.order.len() > inner.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.members.remove(&oldest);
            }
        }
    }

    pub fn contains(&self, txid: &TxId) -> bool {
        self.lock().members.contains(txid)
    }

    /// The positions in `txids` that are not in the cache, in order. The
    /// lock is taken once per `LOOKUP_CHUNK` txids, not once per txid: a
    /// block's check no longer queues behind every admission's insert
    /// thousands of times, and an admission never waits long behind it.
    pub fn unchecked(&self, txids: &[TxId]) -> Vec<usize> {
        let mut missing = Vec::new();
        for (chunk_index, chunk) in txids.chunks(LOOKUP_CHUNK).enumerate() {
            let inner = self.lock();
            let base = chunk_index * LOOKUP_CHUNK;
            missing.extend(
                chunk
                    .iter()
                    .enumerate()
                    .filter(|(_, txid)| !inner.members.contains(txid))
                    .map(|(index, _)| base + index),
            );
        }
        missing
    }

    pub fn len(&self) -> usize {
        self.lock().members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // The set stays consistent even if a holder panicked mid-insert
        // (worst case one txid is in `order` but not `members`), so a
        // poisoned lock is safe to keep using.
        crate::sync::lock(&self.inner)
    }
}

impl Default for SignatureCache {
    fn default() -> Self {
        SignatureCache::new(DEFAULT_SIGNATURE_CACHE_CAPACITY)
    }
}

impl std::fmt::Debug for SignatureCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SignatureCache")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash256;

    #[test]
    fn evicts_oldest_first() {
        let cache = SignatureCache::new(2);
        let ids: Vec<TxId> = (0..3u8).map(|i| TxId(Hash256::digest(&[i]))).collect();
        cache.insert(ids[0]);
        cache.insert(ids[1]);
        cache.insert(ids[1]);
        assert!(cache.contains(&ids[0]));
        cache.insert(ids[2]);
        assert!(!cache.contains(&ids[0]));
        assert!(cache.contains(&ids[1]) && cache.contains(&ids[2]));
        assert_eq!(cache.len(), 2);
    }

    /// `unchecked` answers as `contains` would, position by position,
    /// across the chunks it takes the lock for.
    #[test]
    fn unchecked_lists_the_positions_not_cached() {
        let cache = SignatureCache::new(100_000);
        let ids: Vec<TxId> = (0..(2 * LOOKUP_CHUNK + 5) as u32)
            .map(|i| TxId(Hash256::digest(&i.to_le_bytes())))
            .collect();
        cache.insert_many(ids.iter().step_by(3).copied());
        let expected: Vec<usize> = (0..ids.len()).filter(|index| index % 3 != 0).collect();
        assert_eq!(cache.unchecked(&ids), expected);
        assert!(cache.unchecked(&[]).is_empty());
    }
}
