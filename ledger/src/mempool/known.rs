//! The txids the pool knows, for relay's "do we have this tx?", which it
//! asks for every txid a peer announces: the pending ones, and those that
//! recent blocks confirmed (oldest forgotten first), so that a peer
//! announcing a tx a block has just taken out of the pool is answered
//! from memory too. Both live in one flat table of keyed 62-bit
//! fingerprints, two bits of state each, probed linearly: an answer reads
//! one cache line, where the pool's own map and a set of confirmed txids
//! took three or four misses. A fingerprint under a per-process random
//! key cannot be aimed at by a peer; a chance collision (odds of about one
//! in 2^62 per entry) only makes us pass over one announcement, which the
//! announcer's re-announcements or another peer bring back. Admission
//! itself never trusts this table: it looks the txid up in the pool.
//! Peers only announce what their own pools hold, and a confirmed tx
//! leaves every pool within a block or two, so recent blocks cover nearly
//! every such announcement; an older one is fetched and refused by its
//! nonce, which is what it would have cost a peer to send it unasked.

use crate::hash::TxId;
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;

/// Default number of confirmed txids remembered: nine full 1 MiB blocks.
pub const DEFAULT_RECENT_CONFIRMED: usize = 65_536;

/// A slot's state bits: pending in the pool, confirmed by a recent block.
const PENDING: u64 = 1;
const CONFIRMED: u64 = 2;
const STATE: u64 = PENDING | CONFIRMED;
/// Slots when the table is first used; it doubles at half full.
const MIN_SLOTS: usize = 64;

/// Pending and recently confirmed txids, as fingerprints.
pub(super) struct KnownTxids {
    key: RandomState,
    /// Zero is empty; otherwise a fingerprint (never zero, low two bits
    /// clear) with its state bits.
    slots: Vec<u64>,
    len: usize,
    /// Confirmed fingerprints, oldest first, at most `capacity`.
    confirmed: VecDeque<u64>,
    capacity: usize,
    /// The last txid fingerprinted and its print: a prefetch and then the
    /// lookup it prepares (or an admission's lookup and insert) ask for
    /// the same txid's print, and a keyed hash costs more than comparing
    /// 32 bytes.
    last_print: Cell<Option<(TxId, u64)>>,
}

impl Default for KnownTxids {
    fn default() -> Self {
        KnownTxids::new(DEFAULT_RECENT_CONFIRMED)
    }
}

impl KnownTxids {
    /// Remembers up to `capacity` confirmed txids.
    pub(super) fn new(capacity: usize) -> KnownTxids {
        KnownTxids {
            key: RandomState::new(),
            slots: Vec::new(),
            len: 0,
            confirmed: VecDeque::new(),
            capacity,
            last_print: Cell::new(None),
        }
    }

    fn fingerprint(&self, txid: &TxId) -> u64 {
        if let Some((last, print)) = self.last_print.get() {
            if last == *txid {
                return print;
            }
        }
        let print = match self.key.hash_one(txid.as_bytes()) & !STATE {
            0 => STATE + 1,
            print => print,
        };
        self.last_print.set(Some((*txid, print)));
        print
    }

    fn home(&self, print: u64) -> usize {
        (print >> 2) as usize & (self.slots.len() - 1)
    }

    /// The slot holding `print`, or the empty slot where it would go.
    fn find(&self, print: u64) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut at = self.home(print);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return Err(at);
            }
            if slot & !STATE == print {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    fn set_bit(&mut self, print: u64, bit: u64) -> bool {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.find(print) {
            Ok(at) => {
                let fresh = self.slots[at] & bit == 0;
                self.slots[at] |= bit;
                fresh
            }
            Err(at) => {
                self.slots[at] = print | bit;
                self.len += 1;
                true
            }
        }
    }

    fn clear_bit(&mut self, print: u64, bit: u64) {
        if self.slots.is_empty() {
            return;
        }
        if let Ok(at) = self.find(print) {
            self.slots[at] &= !bit;
            if self.slots[at] & STATE == 0 {
                self.remove_at(at);
            }
        }
    }

    /// Empties slot `hole`, moving back every later entry of its run that
    /// may sit there, so that no search stops early at the gap.
    fn remove_at(&mut self, mut hole: usize) {
        let mask = self.slots.len() - 1;
        self.slots[hole] = 0;
        self.len -= 1;
        let mut at = (hole + 1) & mask;
        while self.slots[at] != 0 {
            let home = self.home(self.slots[at]);
            // The entry may move to the hole when the hole lies between
            // its home and where it sits.
            if (at.wrapping_sub(home) & mask) >= (at.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[at];
                self.slots[at] = 0;
                hole = at;
            }
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        for slot in old.into_iter().filter(|slot| *slot != 0) {
            // Fingerprints are distinct in the table: each finds a gap.
            let (Ok(at) | Err(at)) = self.find(slot & !STATE);
            self.slots[at] = slot;
        }
    }

    /// Whether `txid` is pending or recently confirmed.
    pub(super) fn contains(&self, txid: &TxId) -> bool {
        !self.slots.is_empty() && self.find(self.fingerprint(txid)).is_ok()
    }

    /// Prefetches the slot where a lookup of `txid` starts.
    pub(super) fn prefetch(&self, txid: &TxId) {
        if !self.slots.is_empty() {
            crate::prefetch::prefetch(&self.slots[self.home(self.fingerprint(txid))]);
        }
    }

    pub(super) fn pending_added(&mut self, txid: &TxId) {
        self.set_bit(self.fingerprint(txid), PENDING);
    }

    pub(super) fn pending_removed(&mut self, txid: &TxId) {
        self.clear_bit(self.fingerprint(txid), PENDING);
    }

    /// Remembers that a block confirmed `txid`, forgetting the oldest
    /// confirmed one beyond the capacity. A repeat is not a second entry.
    pub(super) fn confirmed(&mut self, txid: &TxId) {
        if self.capacity == 0 {
            return;
        }
        let print = self.fingerprint(txid);
        if !self.set_bit(print, CONFIRMED) {
            return;
        }
        if self.confirmed.len() == self.capacity {
            if let Some(oldest) = self.confirmed.pop_front() {
                self.clear_bit(oldest, CONFIRMED);
            }
        }
        self.confirmed.push_back(print);
    }

    /// Forgets every confirmed txid (a reorg took confirmed txs back out
    /// of the chain; which ones is not worth tracking for a hint). Pending
    /// ones stay.
    pub(super) fn forget_confirmed(&mut self) {
        while let Some(print) = self.confirmed.pop_front() {
            self.clear_bit(print, CONFIRMED);
        }
    }

    #[cfg(test)]
    fn confirmed_len(&self) -> usize {
        self.confirmed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash256;
    use std::collections::HashSet;

    fn txid(n: u32) -> TxId {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        TxId(Hash256(bytes))
    }

    #[test]
    fn the_remembered_print_is_the_keyed_one() {
        let known = KnownTxids::new(3);
        let fresh = |txid: &TxId| match known.key.hash_one(txid.as_bytes()) & !STATE {
            0 => STATE + 1,
            print => print,
        };
        for n in [1, 1, 2, 1, 3, 3] {
            assert_eq!(known.fingerprint(&txid(n)), fresh(&txid(n)));
        }
    }

    #[test]
    fn remembers_the_newest_confirmed_up_to_its_capacity() {
        let mut known = KnownTxids::new(3);
        for n in 0..5 {
            known.confirmed(&txid(n));
        }
        assert_eq!(known.confirmed_len(), 3);
        assert!(!known.contains(&txid(0)));
        assert!(!known.contains(&txid(1)));
        for n in 2..5 {
            assert!(known.contains(&txid(n)));
        }
        // A repeat is not a second entry: it does not push another out.
        known.confirmed(&txid(4));
        assert!(known.contains(&txid(2)));
        known.forget_confirmed();
        assert_eq!(known.confirmed_len(), 0);
        assert!(!known.contains(&txid(4)));
        assert_eq!(known.len, 0);
    }

    #[test]
    fn capacity_zero_remembers_no_confirmed_tx() {
        let mut known = KnownTxids::new(0);
        known.confirmed(&txid(1));
        assert!(!known.contains(&txid(1)));
        known.pending_added(&txid(1));
        assert!(known.contains(&txid(1)));
    }

    #[test]
    fn a_tx_both_pending_and_confirmed_stays_known_until_both_end() {
        let mut known = KnownTxids::new(10);
        known.pending_added(&txid(7));
        known.confirmed(&txid(7));
        known.pending_removed(&txid(7));
        assert!(known.contains(&txid(7)));
        known.forget_confirmed();
        assert!(!known.contains(&txid(7)));
        known.confirmed(&txid(8));
        known.pending_added(&txid(8));
        known.forget_confirmed();
        assert!(known.contains(&txid(8)));
    }

    /// Against two plain sets: many txids through growth, removals from
    /// the middle of probe runs, evictions and reorg forgetting, with a
    /// tiny key space of homes (the same run touched over and over).
    #[test]
    fn answers_as_a_pending_set_and_a_bounded_confirmed_list_do() {
        let capacity = 50;
        let mut known = KnownTxids::new(capacity);
        let mut pending: HashSet<u32> = HashSet::new();
        let mut confirmed: VecDeque<u32> = VecDeque::new();
        let mut state = 3u64;
        for step in 0..100_000u32 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let n = (state >> 33) as u32 % 400;
            match (state >> 20) % 8 {
                0..=2 => {
                    known.pending_added(&txid(n));
                    pending.insert(n);
                }
                3..=4 => {
                    known.pending_removed(&txid(n));
                    pending.remove(&n);
                }
                5..=6 => {
                    known.confirmed(&txid(n));
                    if !confirmed.contains(&n) {
                        if confirmed.len() == capacity {
                            confirmed.pop_front();
                        }
                        confirmed.push_back(n);
                    }
                }
                _ if step % 97 == 0 => {
                    known.forget_confirmed();
                    confirmed.clear();
                }
                _ => {}
            }
            let probe = (state >> 45) as u32 % 400;
            assert_eq!(
                known.contains(&txid(probe)),
                pending.contains(&probe) || confirmed.contains(&probe),
                "txid {probe} at step {step}"
            );
        }
        let union: HashSet<u32> = pending.iter().chain(confirmed.iter()).copied().collect();
        assert_eq!(known.len, union.len());
    }
}
