//! `KnownInventory`: which inventory each peer is known to have, for all of
//! a node's peers in one table. Each item a node has seen announced, sent
//! or received is one record, its 64-bit keyed fingerprint and a bit per
//! peer slot (`KnownSlot`), in a flat open-addressing table; each peer
//! keeps its own ring of the fingerprints it learnt, oldest first, and is
//! bounded by it: inserting beyond the peer's capacity forgets the peer's
//! oldest, exactly as a set per peer would. One table instead of one per
//! peer is what makes it cheap: a node announcing an item to its peers, or
//! hearing it from them, reads one record (one cache line) and not one
//! table per peer, and a peer's ring is only ever touched at its head.

use crate::p2p::message::InvItem;
use siphasher::sip::SipHasher13;

/// The table's first size in records once something is inserted.
const MIN_RECORDS: usize = 16;

/// The secret key of a node's inventory fingerprints: drawn once per core,
/// so no peer can make two items share a fingerprint.
#[derive(Clone, Copy, Debug)]
pub struct InventoryKey {
    k0: u64,
    k1: u64,
}

impl InventoryKey {
    pub fn new(k0: u64, k1: u64) -> InventoryKey {
        InventoryKey { k0, k1 }
    }

    /// The 64-bit fingerprint of `item`: keyed SipHash-1-3 of its kind and
    /// hash.
    pub fn fingerprint(&self, item: &InvItem) -> u64 {
        let kind: u8 = match item {
            InvItem::Tx(_) => 0,
            InvItem::Block(_) => 1,
            InvItem::CompactBlock(_) => 2,
        };
        let mut bytes = [0u8; 33];
        bytes[0] = kind;
        bytes[1..].copy_from_slice(&item.hash().0);
        SipHasher13::new_with_keys(self.k0, self.k1).hash(&bytes)
    }
}

/// A peer's place in its node's `KnownInventory`, held by the peer from
/// its handshake until it goes (`KnownInventory::close`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownSlot(u32);

/// One peer's side: the fingerprints it learnt, in order.
#[derive(Default)]
struct PeerRing {
    /// Insertion order, oldest at `head` once it holds `capacity` entries
    /// (a ring from then on); before that, oldest first. An entry may name
    /// an item forgotten since: it still ages out in its turn, and a later
    /// re-insert may then be forgotten a little early, which at worst costs
    /// one repeated announcement.
    order: Vec<u64>,
    head: usize,
    capacity: usize,
    /// Items the peer is known to have (its bits set).
    len: usize,
    open: bool,
}

/// Inventory each peer is known to have, for every peer of one node. Items
/// are kept as 64-bit keyed fingerprints: two share one with odds of
/// 2^-64, and the key is the node's secret, so a peer cannot aim for a
/// collision (which would at worst keep one announcement from that peer).
pub struct KnownInventory {
    key: InventoryKey,
    /// Records of `1 + words` words: the fingerprint, then a bit per slot.
    /// A record with no bit set is empty. Linear probing from
    /// `print & (n_records - 1)`, at most half full.
    table: Vec<u64>,
    words: usize,
    n_records: usize,
    used: usize,
    peers: Vec<PeerRing>,
}

impl KnownInventory {
    pub fn new(key: InventoryKey) -> KnownInventory {
        KnownInventory {
            key,
            table: Vec::new(),
            words: 1,
            n_records: 0,
            used: 0,
            peers: Vec::new(),
        }
    }

    pub fn key(&self) -> InventoryKey {
        self.key
    }

    pub fn fingerprint(&self, item: &InvItem) -> u64 {
        self.key.fingerprint(item)
    }

    /// A slot for a new peer that remembers at most `capacity` items (at
    /// least one): the lowest free one.
    pub fn open(&mut self, capacity: usize) -> KnownSlot {
        let index = match self.peers.iter().position(|peer| !peer.open) {
            Some(index) => index,
            None => {
                self.peers.push(PeerRing::default());
                self.peers.len() - 1
            }
        };
        if index >= self.words * 64 {
            self.rebuild(self.n_records, self.words + 1);
        }
        self.peers[index] = PeerRing {
            capacity: capacity.max(1),
            open: true,
            ..PeerRing::default()
        };
        KnownSlot(index as u32)
    }

    /// The peer went away: none of its items is known any more, and the
    /// slot is free for the next.
    pub fn close(&mut self, slot: KnownSlot) {
        let order = std::mem::take(&mut self.peers[slot.0 as usize].order);
        for print in order {
            self.clear_bit(print, slot);
        }
        self.peers[slot.0 as usize] = PeerRing::default();
    }

    #[cfg(test)]
    /// How many items the peer is known to have.
    pub fn len(&self, slot: KnownSlot) -> usize {
        self.peers[slot.0 as usize].len
    }

    #[cfg(test)]
    pub fn contains(&self, slot: KnownSlot, item: &InvItem) -> bool {
        let print = self.fingerprint(item);
        self.find(print)
            .is_ok_and(|record| self.has_bit(record, slot))
    }

    /// Counts `item` as known to the peer. Returns true when it was not.
    pub fn insert(&mut self, slot: KnownSlot, item: &InvItem) -> bool {
        self.insert_fingerprint(slot, self.fingerprint(item))
    }

    /// `insert` of an item whose fingerprint the caller computed
    /// (`fingerprint`), as when one item goes to every peer.
    pub fn insert_fingerprint(&mut self, slot: KnownSlot, print: u64) -> bool {
        if (self.used + 1) * 2 > self.n_records {
            self.rebuild((self.n_records * 2).max(MIN_RECORDS), self.words);
        }
        let stride = self.stride();
        let record = match self.find(print) {
            Ok(record) if self.has_bit(record, slot) => return false,
            Ok(record) => record,
            Err(record) => {
                self.table[record * stride] = print;
                self.used += 1;
                record
            }
        };
        let index = slot.0 as usize;
        self.table[record * stride + 1 + index / 64] |= 1 << (index % 64);
        let ring = &mut self.peers[index];
        ring.len += 1;
        // The peer never has more than its capacity: its oldest goes.
        if ring.order.len() < ring.capacity {
            if ring.order.len() == ring.order.capacity() {
                // Grown in steps, never past `capacity` entries.
                let want = (ring.order.len() * 2).max(16).min(ring.capacity);
                ring.order.reserve_exact(want - ring.order.len());
            }
            ring.order.push(print);
        } else {
            let old = std::mem::replace(&mut ring.order[ring.head], print);
            ring.head = (ring.head + 1) % ring.capacity;
            // An old entry naming this item (forgotten since) ages out
            // before the item comes back, as with a set per peer.
            if old != print {
                self.clear_bit(old, slot);
            }
        }
        true
    }

    #[cfg(test)]
    /// Stops assuming the peer has `item` (its entry in the peer's order
    /// stays until it ages out).
    pub fn forget(&mut self, slot: KnownSlot, item: &InvItem) {
        self.clear_bit(self.fingerprint(item), slot);
    }

    /// Stops assuming any peer has `item`.
    pub fn forget_everywhere(&mut self, item: &InvItem) {
        let print = self.fingerprint(item);
        let Ok(record) = self.find(print) else {
            return;
        };
        let start = record * self.stride() + 1;
        for word in 0..self.words {
            let mut bits = std::mem::take(&mut self.table[start + word]);
            while bits != 0 {
                let index = word * 64 + bits.trailing_zeros() as usize;
                self.peers[index].len -= 1;
                bits &= bits - 1;
            }
        }
        self.remove_record(record);
    }

    fn stride(&self) -> usize {
        1 + self.words
    }

    fn is_empty_record(&self, record: usize) -> bool {
        let start = record * self.stride() + 1;
        self.table[start..start + self.words]
            .iter()
            .all(|word| *word == 0)
    }

    fn has_bit(&self, record: usize, slot: KnownSlot) -> bool {
        let index = slot.0 as usize;
        let word = self.table[record * self.stride() + 1 + index / 64];
        word & (1 << (index % 64)) != 0
    }

    /// Where `print`'s record is, or the empty record ending its probe.
    fn find(&self, print: u64) -> Result<usize, usize> {
        if self.n_records == 0 {
            return Err(0);
        }
        let mask = self.n_records - 1;
        let stride = self.stride();
        let mut record = print as usize & mask;
        loop {
            if self.is_empty_record(record) {
                return Err(record);
            }
            if self.table[record * stride] == print {
                return Ok(record);
            }
            record = (record + 1) & mask;
        }
    }

    fn clear_bit(&mut self, print: u64, slot: KnownSlot) {
        let Ok(record) = self.find(print) else {
            return;
        };
        let index = slot.0 as usize;
        let at = record * self.stride() + 1 + index / 64;
        let bit = 1 << (index % 64);
        if self.table[at] & bit == 0 {
            return;
        }
        self.table[at] &= !bit;
        self.peers[index].len -= 1;
        if self.is_empty_record(record) {
            self.remove_record(record);
        }
    }

    /// Empties `hole` (its bits already clear or not needed) with a
    /// backward shift: every later record of the run that may sit in the
    /// hole (its home is not between the hole and it) moves into it, so no
    /// probe ever stops early at a gap.
    fn remove_record(&mut self, mut hole: usize) {
        let mask = self.n_records - 1;
        let stride = self.stride();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            if self.is_empty_record(next) {
                break;
            }
            let home = self.table[next * stride] as usize & mask;
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.table
                    .copy_within(next * stride..(next + 1) * stride, hole * stride);
                hole = next;
            }
        }
        self.table[hole * stride..(hole + 1) * stride].fill(0);
        self.used -= 1;
    }

    /// Moves every record into a table of `n_records` records of `words`
    /// bit words.
    fn rebuild(&mut self, n_records: usize, words: usize) {
        let old_stride = self.stride();
        let old_words = self.words;
        let old = std::mem::replace(&mut self.table, vec![0; n_records * (1 + words)]);
        self.n_records = n_records;
        self.words = words;
        let stride = self.stride();
        for record in old.chunks_exact(old_stride) {
            if record[1..].iter().all(|word| *word == 0) {
                continue;
            }
            if let Err(at) = self.find(record[0]) {
                let start = at * stride;
                self.table[start..start + 1 + old_words].copy_from_slice(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{Hash256, TxId};
    use std::collections::{HashSet, VecDeque};

    fn tx(n: u8) -> InvItem {
        InvItem::Tx(TxId(Hash256::digest(&[n])))
    }

    #[test]
    fn forgets_the_oldest() {
        let mut known = KnownInventory::new(InventoryKey::new(1, 2));
        let slot = known.open(2);
        assert!(known.insert(slot, &tx(1)));
        assert!(!known.insert(slot, &tx(1)));
        known.insert(slot, &tx(2));
        known.insert(slot, &tx(3));
        assert!(!known.contains(slot, &tx(1)));
        assert!(known.contains(slot, &tx(3)));
        assert_eq!(known.len(slot), 2);
    }

    /// One peer's bounded set as a hash set and a queue of insertions,
    /// which is what each slot must behave exactly like (a forgotten
    /// item's old place in the queue included).
    #[derive(Default)]
    struct Model {
        set: HashSet<u64>,
        order: VecDeque<u64>,
        capacity: usize,
    }

    impl Model {
        fn insert(&mut self, print: u64) -> bool {
            if self.set.contains(&print) {
                return false;
            }
            while self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
            self.set.insert(print);
            self.order.push_back(print);
            true
        }
    }

    /// Many peers (more than one word of bits), opened and closed, each
    /// against its own model.
    #[test]
    fn every_slot_keeps_the_rules_of_a_set_per_peer() {
        let key = InventoryKey::new(3, 4);
        let mut known = KnownInventory::new(key);
        let capacities = [1, 2, 5, 16, 40];
        let mut slots: Vec<Option<(KnownSlot, Model)>> = (0..70).map(|_| None).collect();
        let mut state = 7u64;
        for step in 0..60_000u32 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let peer = (state >> 33) as usize % slots.len();
            // Few distinct items, so they come back after being forgotten
            // or evicted.
            let item = tx((state >> 58) as u8 + if step % 2 == 0 { 0 } else { 64 });
            let print = key.fingerprint(&item);
            match (&mut slots[peer], step % 97) {
                (None, _) => {
                    let capacity = capacities[peer % capacities.len()];
                    let model = Model {
                        capacity,
                        ..Model::default()
                    };
                    slots[peer] = Some((known.open(capacity), model));
                }
                (Some((slot, _)), 0) => {
                    known.close(*slot);
                    slots[peer] = None;
                }
                (Some(_), 1) => {
                    known.forget_everywhere(&item);
                    for (_, model) in slots.iter_mut().flatten() {
                        model.set.remove(&print);
                    }
                }
                (Some((slot, model)), _) if step % 7 == 3 => {
                    known.forget(*slot, &item);
                    model.set.remove(&print);
                }
                (Some((slot, model)), _) => {
                    assert_eq!(known.insert(*slot, &item), model.insert(print));
                }
            }
            if step % 1_000 == 0 {
                for (slot, model) in slots.iter().flatten() {
                    assert_eq!(known.len(*slot), model.set.len());
                    for other in 0..128u8 {
                        let other = tx(other);
                        assert_eq!(
                            known.contains(*slot, &other),
                            model.set.contains(&key.fingerprint(&other))
                        );
                    }
                }
            }
        }
        // Every slot closed: nothing is left in the table.
        for (slot, _) in slots.iter().flatten() {
            known.close(*slot);
        }
        assert_eq!(known.used, 0);
    }
}
