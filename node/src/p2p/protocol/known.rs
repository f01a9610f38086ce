//! `KnownByPeers`: which peers are known to have each recent inventory
//! item, in one table per node. An item is kept once, as a 64-bit keyed
//! fingerprint (`gossip::InventoryKey`), next to a bitmask of the peers
//! that announced it to us, sent it, or heard it from us; the oldest item
//! is forgotten first once the table holds its capacity. A node used to
//! keep one set per peer: announcing an item to sixteen peers touched
//! sixteen tables far apart in memory, and a node full of inbound peers
//! held over a hundred of them. Here announcing touches one entry, and
//! a peer costs one bit per remembered item.

use std::cell::Cell;

use super::gossip::InventoryKey;
use crate::p2p::message::InvItem;

/// The empty cell's fingerprint. A real fingerprint of 0 is stored as 1
/// (two items then share one with odds of 2^-63).
const EMPTY: u64 = 0;
/// Peers per mask word.
const WORD_BITS: usize = 64;

/// A peer's bit in every mask, handed out by `KnownByPeers::add_peer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSlot(usize);

/// See the module docs.
pub struct KnownByPeers {
    key: InventoryKey,
    /// Most items remembered.
    capacity: usize,
    /// Cells of `stride` words: the fingerprint, then the peer mask.
    /// Linear probing from the fingerprint's low bits; a power of two of
    /// cells, never more than half of them used.
    cells: Vec<u64>,
    stride: usize,
    len: usize,
    /// Fingerprints in insertion order, oldest at `head` once it holds
    /// `capacity` (a ring from then on).
    order: Vec<u64>,
    head: usize,
    /// Which peer bits are handed out.
    in_use: Vec<bool>,
    /// Items forgotten to make room since `take_forgotten` last ran.
    forgotten: u64,
    /// The last item fingerprinted and its print: a prefetch and then
    /// the lookup it prepares ask for the same item's print, and a keyed
    /// hash costs more than comparing 33 bytes.
    last_print: Cell<Option<(InvItem, u64)>>,
}

impl KnownByPeers {
    /// A table of at most `capacity` items (at least one), with room for
    /// 64 peers to start with (it widens when more connect).
    pub fn new(capacity: usize, key: InventoryKey) -> KnownByPeers {
        KnownByPeers {
            key,
            capacity: capacity.max(1),
            cells: Vec::new(),
            stride: 2,
            len: 0,
            order: Vec::new(),
            head: 0,
            in_use: Vec::new(),
            forgotten: 0,
            last_print: Cell::new(None),
        }
    }

    /// How many items were forgotten to make room since the last call.
    pub fn take_forgotten(&mut self) -> u64 {
        std::mem::take(&mut self.forgotten)
    }

    pub fn fingerprint(&self, item: &InvItem) -> u64 {
        if let Some((last, print)) = self.last_print.get() {
            if last == *item {
                return print;
            }
        }
        let print = self.key.fingerprint(item).max(1);
        self.last_print.set(Some((*item, print)));
        print
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// A bit for a new peer: the lowest free one, clear in every mask.
    pub fn add_peer(&mut self) -> PeerSlot {
        let bit = match self.in_use.iter().position(|used| !used) {
            Some(bit) => bit,
            None => {
                self.in_use.push(false);
                self.in_use.len() - 1
            }
        };
        self.in_use[bit] = true;
        if bit / WORD_BITS + 1 >= self.stride {
            self.rebuild(self.stride + 1, self.capacity);
        }
        PeerSlot(bit)
    }

    /// The peer is gone: its bit is cleared everywhere and freed.
    pub fn remove_peer(&mut self, peer: PeerSlot) {
        let (word, bit) = Self::word_bit(peer);
        for cell in self.cells.chunks_exact_mut(self.stride) {
            cell[word] &= !bit;
        }
        if let Some(used) = self.in_use.get_mut(peer.0) {
            *used = false;
        }
    }

    /// Changes how many items are remembered; the newest are kept.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.rebuild(self.stride, capacity.max(1));
    }

    /// Records that `peer` has the item; true when that was not known.
    pub fn mark(&mut self, peer: PeerSlot, item: &InvItem) -> bool {
        let print = self.fingerprint(item);
        let cell = self.entry(print);
        self.test_and_set(cell, peer)
    }

    /// Prefetches the cell where a lookup of `item` starts (see
    /// `NetworkState::prefetch_fields`).
    pub fn prefetch(&self, item: &InvItem) {
        if self.cells.is_empty() {
            return;
        }
        let cell = self.fingerprint(item) as usize & self.mask();
        ledger::prefetch::prefetch(&self.cells[cell * self.stride]);
    }

    /// The cell of `print` (a `fingerprint`), inserted (forgetting the
    /// oldest item when full) if it was not there. Valid until the next
    /// change to the table.
    pub fn entry(&mut self, print: u64) -> usize {
        if self.cells.is_empty() {
            self.rebuild(self.stride, self.capacity);
        }
        if let Ok(cell) = self.find(print) {
            return cell;
        }
        if self.order.len() < self.capacity {
            self.order.push(print);
        } else {
            let old = std::mem::replace(&mut self.order[self.head], print);
            self.head = (self.head + 1) % self.capacity;
            self.remove(old);
            self.forgotten += 1;
        }
        let cell = match self.find(print) {
            Ok(cell) | Err(cell) => cell,
        };
        let at = cell * self.stride;
        self.cells[at] = print;
        self.cells[at + 1..at + self.stride].fill(0);
        self.len += 1;
        cell
    }

    /// Sets `peer`'s bit in `cell` (from `entry`); true when it was clear.
    pub fn test_and_set(&mut self, cell: usize, peer: PeerSlot) -> bool {
        let (word, bit) = Self::word_bit(peer);
        let mask = &mut self.cells[cell * self.stride + word];
        let fresh = *mask & bit == 0;
        *mask |= bit;
        fresh
    }

    /// Whether `peer` is known to have the item.
    #[cfg(test)]
    pub fn knows(&self, peer: PeerSlot, item: &InvItem) -> bool {
        let (word, bit) = Self::word_bit(peer);
        match self.find(self.fingerprint(item)) {
            Ok(cell) => self.cells[cell * self.stride + word] & bit != 0,
            Err(_) => false,
        }
    }

    /// Stops assuming any peer has the item (it stays remembered, with no
    /// peer, until it ages out).
    pub fn forget_all(&mut self, item: &InvItem) {
        if let Ok(cell) = self.find(self.fingerprint(item)) {
            let at = cell * self.stride;
            self.cells[at + 1..at + self.stride].fill(0);
        }
    }

    /// The mask word of `peer`'s bit (after the fingerprint) and the bit.
    fn word_bit(peer: PeerSlot) -> (usize, u64) {
        (1 + peer.0 / WORD_BITS, 1u64 << (peer.0 % WORD_BITS))
    }

    fn mask(&self) -> usize {
        self.cells.len() / self.stride - 1
    }

    /// The cell holding `print`, or the empty cell ending its probe.
    fn find(&self, print: u64) -> Result<usize, usize> {
        if self.cells.is_empty() {
            return Err(0);
        }
        let mask = self.mask();
        let mut cell = print as usize & mask;
        loop {
            match self.cells[cell * self.stride] {
                EMPTY => return Err(cell),
                found if found == print => return Ok(cell),
                _ => cell = (cell + 1) & mask,
            }
        }
    }

    /// Removes `print` by backward shift: every later cell of the probe run
    /// that may sit in the hole (its home is not between the hole and it)
    /// moves into it, so no probe ever stops early at a gap.
    fn remove(&mut self, print: u64) {
        let Ok(mut hole) = self.find(print) else {
            return;
        };
        let mask = self.mask();
        let stride = self.stride;
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let entry = self.cells[next * stride];
            if entry == EMPTY {
                break;
            }
            let home = entry as usize & mask;
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.cells
                    .copy_within(next * stride..(next + 1) * stride, hole * stride);
                hole = next;
            }
        }
        self.cells[hole * stride] = EMPTY;
        self.len -= 1;
    }

    /// A new table of `stride` words a cell and room for `capacity` items,
    /// holding the newest `capacity` items of this one with their masks.
    fn rebuild(&mut self, stride: usize, capacity: usize) {
        let mut ordered: Vec<u64> = Vec::with_capacity(self.order.len());
        ordered.extend_from_slice(&self.order[self.head..]);
        ordered.extend_from_slice(&self.order[..self.head]);
        let dropped = ordered.len().saturating_sub(capacity);
        let ordered = &ordered[dropped..];
        let cells = (capacity * 2).next_power_of_two();
        let mut table = KnownByPeers {
            key: self.key,
            capacity,
            cells: vec![EMPTY; cells * stride],
            stride,
            len: 0,
            order: Vec::with_capacity(ordered.len()),
            head: 0,
            in_use: std::mem::take(&mut self.in_use),
            forgotten: self.forgotten + dropped as u64,
            last_print: self.last_print.clone(),
        };
        let words = self.stride.min(stride) - 1;
        for print in ordered {
            let Ok(old) = self.find(*print) else {
                continue;
            };
            let cell = table.entry(*print);
            let from = old * self.stride + 1;
            table.cells[cell * stride + 1..cell * stride + 1 + words]
                .copy_from_slice(&self.cells[from..from + words]);
        }
        *self = table;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{BlockHash, Hash256, TxId};
    use std::collections::{HashSet, VecDeque};

    fn tx(n: u32) -> InvItem {
        InvItem::Tx(TxId(Hash256::digest(&n.to_le_bytes())))
    }

    #[test]
    fn the_remembered_print_is_the_keyed_one() {
        let key = InventoryKey::new(7, 9);
        let known = KnownByPeers::new(4, key);
        let block = InvItem::Block(BlockHash(Hash256::digest(b"b")));
        for item in [tx(1), tx(1), tx(2), block, tx(1), block] {
            assert_eq!(known.fingerprint(&item), key.fingerprint(&item).max(1));
        }
    }

    #[test]
    fn marks_per_peer_and_forgets_the_oldest_item() {
        let mut known = KnownByPeers::new(2, InventoryKey::new(1, 2));
        let (a, b) = (known.add_peer(), known.add_peer());
        assert!(known.mark(a, &tx(1)));
        assert!(!known.mark(a, &tx(1)));
        assert!(known.mark(b, &tx(1)), "another peer's bit is its own");
        assert!(known.mark(a, &tx(2)));
        assert!(known.mark(a, &tx(3)), "a third item forgets the first");
        assert!(!known.knows(a, &tx(1)) && !known.knows(b, &tx(1)));
        assert!(known.knows(a, &tx(2)) && known.knows(a, &tx(3)));
        assert_eq!(known.len(), 2);
        assert_eq!(known.take_forgotten(), 1);
        assert_eq!(known.take_forgotten(), 0, "counted once");
        known.forget_all(&tx(3));
        assert!(!known.knows(a, &tx(3)));
        assert!(known.mark(a, &tx(3)));
    }

    #[test]
    fn a_freed_bit_comes_back_clear_and_the_table_widens() {
        let mut known = KnownByPeers::new(16, InventoryKey::new(3, 4));
        let first = known.add_peer();
        known.mark(first, &tx(7));
        known.remove_peer(first);
        let again = known.add_peer();
        assert_eq!(again, first, "the lowest free bit is reused");
        assert!(!known.knows(again, &tx(7)), "a new peer inherits nothing");
        let mut peers = vec![again];
        for _ in 0..150 {
            peers.push(known.add_peer());
        }
        for (n, peer) in peers.iter().enumerate() {
            assert!(known.mark(*peer, &tx(n as u32 % 10)));
        }
        for (n, peer) in peers.iter().enumerate() {
            assert!(known.knows(*peer, &tx(n as u32 % 10)), "peer {n}");
            assert!(!known.knows(*peer, &tx(n as u32 % 10 + 10)));
        }
    }

    /// Against a plain model (a map of item to peers, and the order items
    /// first came in), through marks, forgets, peers leaving and joining,
    /// and a capacity change, with many items per home cell.
    #[test]
    fn behaves_like_the_plain_model() {
        for capacity in [1, 3, 8, 40] {
            let mut known = KnownByPeers::new(capacity, InventoryKey::new(5, capacity as u64));
            let mut model: VecDeque<(InvItem, HashSet<usize>)> = VecDeque::new();
            let mut peers: Vec<PeerSlot> = (0..5).map(|_| known.add_peer()).collect();
            let mut state = 17u64;
            let mut capacity = capacity;
            for step in 0..3_000u32 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let item = tx((state >> 40) as u32 % 60);
                let peer = (state >> 20) as usize % peers.len();
                match (state >> 10) % 23 {
                    0 => {
                        known.forget_all(&item);
                        if let Some((_, who)) = model.iter_mut().find(|(i, _)| *i == item) {
                            who.clear();
                        }
                    }
                    1 => {
                        known.remove_peer(peers[peer]);
                        for (_, who) in model.iter_mut() {
                            who.remove(&peers[peer].0);
                        }
                        peers[peer] = known.add_peer();
                    }
                    2 if step % 500 == 0 => {
                        capacity = capacity % 7 + 1;
                        known.set_capacity(capacity);
                        while model.len() > capacity {
                            model.pop_front();
                        }
                    }
                    _ => {
                        let slot = peers[peer];
                        let fresh = known.mark(slot, &item);
                        let expected = match model.iter_mut().find(|(i, _)| *i == item) {
                            Some((_, who)) => who.insert(slot.0),
                            None => {
                                if model.len() == capacity {
                                    model.pop_front();
                                }
                                model.push_back((item, HashSet::from([slot.0])));
                                true
                            }
                        };
                        assert_eq!(fresh, expected, "step {step}");
                    }
                }
                assert_eq!(known.len(), model.len(), "step {step}");
                for n in 0..60 {
                    let item = tx(n);
                    let who = model.iter().find(|(i, _)| *i == item).map(|(_, w)| w);
                    for slot in &peers {
                        let expected = who.is_some_and(|who| who.contains(&slot.0));
                        assert_eq!(known.knows(*slot, &item), expected, "step {step}");
                    }
                }
            }
        }
    }
}
