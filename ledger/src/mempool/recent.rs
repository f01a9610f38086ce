//! The txids that recent blocks confirmed, remembered (as keyed 64-bit
//! fingerprints, oldest forgotten first) so that a peer announcing a tx a
//! block has just taken out of the pool is answered from memory. Relay asks
//! "do we have this tx?" for every announced txid; before this set it also
//! looked the txid up in the stored tx index, one storage read per item
//! that was not pending, which under load was the bulk of those answers.
//! Peers only announce what their own pools hold, and a confirmed tx
//! leaves every pool within a block or two, so recent blocks cover nearly
//! every such announcement; an older one is fetched and refused by its
//! nonce, which is what it would have cost a peer to send it unasked.

use crate::hash::TxId;
use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Default number of confirmed txids remembered: nine full 1 MiB blocks.
pub const DEFAULT_RECENT_CONFIRMED: usize = 65_536;

/// Hashes a fingerprint to itself: fingerprints are already keyed hashes.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in for safety.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A bounded set of txids, as fingerprints under a per-process random key
/// (a peer cannot choose txids that collide), forgotten in the order they
/// were added.
pub(super) struct RecentlyConfirmed {
    key: RandomState,
    set: HashSet<u64, BuildHasherDefault<Identity>>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl RecentlyConfirmed {
    pub(super) fn new(capacity: usize) -> RecentlyConfirmed {
        RecentlyConfirmed {
            key: RandomState::new(),
            set: HashSet::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn fingerprint(&self, txid: &TxId) -> u64 {
        self.key.hash_one(txid.as_bytes())
    }

    pub(super) fn insert(&mut self, txid: &TxId) {
        if self.capacity == 0 {
            return;
        }
        let print = self.fingerprint(txid);
        if !self.set.insert(print) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.order.push_back(print);
    }

    pub(super) fn contains(&self, txid: &TxId) -> bool {
        !self.set.is_empty() && self.set.contains(&self.fingerprint(txid))
    }

    /// Forgets everything (a reorg took confirmed txs back out of the
    /// chain; which ones is not worth tracking for a hint).
    pub(super) fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash256;

    fn txid(n: u32) -> TxId {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        TxId(Hash256(bytes))
    }

    #[test]
    fn remembers_the_newest_up_to_its_capacity() {
        let mut recent = RecentlyConfirmed::new(3);
        for n in 0..5 {
            recent.insert(&txid(n));
        }
        assert_eq!(recent.len(), 3);
        assert!(!recent.contains(&txid(0)));
        assert!(!recent.contains(&txid(1)));
        for n in 2..5 {
            assert!(recent.contains(&txid(n)));
        }
        // A repeat is not a second entry: it does not push another out.
        recent.insert(&txid(4));
        assert!(recent.contains(&txid(2)));
        recent.clear();
        assert_eq!(recent.len(), 0);
        assert!(!recent.contains(&txid(4)));
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let mut recent = RecentlyConfirmed::new(0);
        recent.insert(&txid(1));
        assert!(!recent.contains(&txid(1)));
    }
}
