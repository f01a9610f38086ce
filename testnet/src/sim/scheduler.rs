//! The discrete-event scheduler: a priority queue of events ordered by
//! (virtual time, sequence number), so events at the same instant run in
//! the order they were scheduled and a run never depends on the wall clock
//! or on hash order.
//!
//! The heap holds only 24-byte keys; the events themselves wait in a slab
//! and never move while the heap sifts. Events queued for the current
//! instant skip the heap: each is later in the order than everything
//! already queued for that instant, so a FIFO behind the heap's entries
//! for now keeps the (time, sequence) order exactly.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Virtual time in nanoseconds since the simulation started.
pub type SimTime = u64;

/// One nanosecond-resolution instant per second.
pub const SECOND: SimTime = 1_000_000_000;
pub const MILLISECOND: SimTime = 1_000_000;

#[derive(Clone, Copy)]
struct Key {
    at: SimTime,
    seq: u64,
    slot: u32,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest must come
    /// out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The event queue and the clock.
pub struct Scheduler<E> {
    now: SimTime,
    next_seq: u64,
    queue: BinaryHeap<Key>,
    /// The events of `queue`, by slot; `free` lists empty slots.
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    /// Events queued for `now` after the clock reached it, in order.
    current: VecDeque<E>,
    processed: u64,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler {
            now: 0,
            next_seq: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            current: VecDeque::new(),
            processed: 0,
        }
    }
}

impl<E> Scheduler<E> {
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Queues `event` at `at`, never before now.
    pub fn at(&mut self, at: SimTime, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if at <= self.now {
            self.current.push_back(event);
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 queued events")
            }
        };
        self.queue.push(Key { at, seq, slot });
    }

    /// Queues `event` `delay` after now.
    pub fn after(&mut self, delay: SimTime, event: E) {
        self.at(self.now.saturating_add(delay), event);
    }

    /// The next event up to `until`, advancing the clock to it.
    pub fn pop_until(&mut self, until: SimTime) -> Option<E> {
        // The heap's entries for now (or earlier: none, the clock never
        // passes a queued event) were queued before the clock got here,
        // so they come before the FIFO's.
        let heap_first = self.queue.peek().is_some_and(|key| key.at <= self.now);
        if !heap_first {
            if self.now <= until {
                if let Some(event) = self.current.pop_front() {
                    self.processed += 1;
                    return Some(event);
                }
            }
            if self.queue.peek()?.at > until {
                return None;
            }
        }
        let key = self.queue.pop()?;
        self.now = key.at;
        self.processed += 1;
        self.free.push(key.slot);
        self.slots[key.slot as usize].take()
    }

    /// When the next queued event is due.
    pub fn next_at(&self) -> Option<SimTime> {
        if !self.current.is_empty() {
            return Some(self.now);
        }
        self.queue.peek().map(|key| key.at)
    }

    /// Moves the clock to `at` (not before now) for something run outside
    /// the queue (a node's timer), counted as an event. Nothing may wait
    /// for an earlier instant.
    pub fn run_at(&mut self, at: SimTime) {
        debug_assert!(at <= self.now || self.current.is_empty());
        self.now = self.now.max(at);
        self.processed += 1;
    }

    /// Events run so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Events waiting.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.current.len()
    }

    /// Moves the clock to `to` (the end of a run) when nothing is due
    /// before it.
    pub fn advance_to(&mut self, to: SimTime) {
        self.now = self.now.max(to);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_insertion_order() {
        let mut scheduler = Scheduler::default();
        scheduler.at(20, "late");
        scheduler.at(10, "first");
        scheduler.at(10, "second");
        scheduler.at(30, "after the horizon");
        assert_eq!(scheduler.pop_until(25), Some("first"));
        assert_eq!(scheduler.now(), 10);
        assert_eq!(scheduler.pop_until(25), Some("second"));
        assert_eq!(scheduler.pop_until(25), Some("late"));
        assert_eq!(scheduler.pop_until(25), None);
        assert_eq!(scheduler.pending(), 1);
        // Nothing is scheduled in the past.
        scheduler.at(5, "past");
        assert_eq!(scheduler.pop_until(100), Some("past"));
        assert_eq!(scheduler.now(), 20);
    }

    #[test]
    fn events_for_the_current_instant_keep_the_sequence_order() {
        let mut scheduler = Scheduler::default();
        scheduler.at(10, "a");
        scheduler.at(10, "b");
        scheduler.at(20, "later");
        assert_eq!(scheduler.pop_until(100), Some("a"));
        // Queued at the instant the clock is at: after "b", queued before.
        scheduler.at(10, "c");
        scheduler.at(5, "d");
        assert_eq!(scheduler.next_at(), Some(10));
        assert_eq!(scheduler.pending(), 4);
        assert_eq!(scheduler.pop_until(100), Some("b"));
        assert_eq!(scheduler.pop_until(100), Some("c"));
        assert_eq!(scheduler.pop_until(100), Some("d"));
        assert_eq!(scheduler.now(), 10);
        assert_eq!(scheduler.pop_until(15), None);
        assert_eq!(scheduler.pop_until(100), Some("later"));
        assert_eq!(scheduler.pop_until(100), None);
        assert_eq!(scheduler.processed(), 5);
    }
}
