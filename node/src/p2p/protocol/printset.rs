//! `PrintSet`: a set of 64-bit keyed fingerprints in one flat table, the
//! storage behind each peer's `KnownInventory`. The fingerprints are keyed
//! hashes already, so their own bits pick the slot (no hashing again), and
//! the table stores them directly with linear probing at most half full:
//! a lookup is usually one cache line, where a general hash table reads a
//! line of control bytes and then a line of slots. A node probes one of
//! these for every item it announces or hears announced, each time in a
//! different peer's table, so those cache misses were most of its cost.

/// The empty slot. Fingerprint 0 itself is kept apart in `has_zero`.
const EMPTY: u64 = 0;
/// The table's first size once something is inserted.
const MIN_SLOTS: usize = 16;

/// See the module docs.
#[derive(Default)]
pub struct PrintSet {
    /// Linear probing from `print & mask`; a power of two in length (or
    /// empty before the first insert), never more than half full.
    slots: Vec<u64>,
    has_zero: bool,
    len: usize,
}

impl PrintSet {
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Where `print` (not `EMPTY`) is, or the empty slot ending its probe.
    fn find(&self, print: u64) -> Result<usize, usize> {
        let mask = self.mask();
        let mut index = print as usize & mask;
        loop {
            match self.slots[index] {
                EMPTY => return Err(index),
                found if found == print => return Ok(index),
                _ => index = (index + 1) & mask,
            }
        }
    }

    pub fn contains(&self, print: u64) -> bool {
        if print == EMPTY {
            return self.has_zero;
        }
        !self.slots.is_empty() && self.find(print).is_ok()
    }

    /// Returns true when `print` was not in the set.
    pub fn insert(&mut self, print: u64) -> bool {
        if print == EMPTY {
            let fresh = !self.has_zero;
            self.has_zero = true;
            self.len += usize::from(fresh);
            return fresh;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.find(print) {
            Ok(_) => false,
            Err(index) => {
                self.slots[index] = print;
                self.len += 1;
                true
            }
        }
    }

    /// Returns true when `print` was in the set.
    pub fn remove(&mut self, print: u64) -> bool {
        if print == EMPTY {
            let was = self.has_zero;
            self.has_zero = false;
            self.len -= usize::from(was);
            return was;
        }
        if self.slots.is_empty() {
            return false;
        }
        let Ok(mut hole) = self.find(print) else {
            return false;
        };
        // Backward shift: every later entry of the run that may sit in
        // the hole (its home slot is not between the hole and it) moves
        // into it, so no probe ever stops early at a gap.
        let mask = self.mask();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let entry = self.slots[next];
            if entry == EMPTY {
                break;
            }
            let home = entry as usize & mask;
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = entry;
                hole = next;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for print in old.into_iter().filter(|print| *print != EMPTY) {
            if let Err(index) = self.find(print) {
                self.slots[index] = print;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A small deterministic generator whose outputs collide in their low
    /// bits often, so probe runs wrap and shift.
    fn draws(seed: u64, count: usize) -> Vec<u64> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                // 0..64 in the low bits, a few bits above them: many share
                // a home slot, and 0 itself comes up.
                (state >> 58) | ((state >> 20) & 0x300)
            })
            .collect()
    }

    #[test]
    fn agrees_with_a_hash_set_through_inserts_and_removals() {
        for seed in 0..20 {
            let mut set = PrintSet::default();
            let mut model = HashSet::new();
            for (step, print) in draws(seed, 3_000).into_iter().enumerate() {
                if step % 3 == 2 {
                    assert_eq!(set.remove(print), model.remove(&print));
                } else {
                    assert_eq!(set.insert(print), model.insert(print));
                }
                assert_eq!(set.len(), model.len());
            }
            for print in 0..0x400 {
                assert_eq!(set.contains(print), model.contains(&print), "{print}");
            }
            assert!(set.slots.len() >= 2 * set.len());
        }
    }
}
