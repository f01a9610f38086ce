//! The discrete-event scheduler: a priority queue of events ordered by
//! (virtual time, sequence number), so events at the same instant run in
//! the order they were scheduled and a run never depends on the wall clock
//! or on hash order.
//!
//! The queue is a calendar: events wait unsorted, next to their keys
//! (time, sequence), in a ring of buckets about a millisecond wide; those
//! beyond the ring's second or so wait in a heap of their own until their
//! bucket comes up. When the clock reaches a bucket, its keys (about a
//! hundred at 1,000 nodes) are sorted once, which also brings its events,
//! written side by side, into the cache. Every event of the current bucket
//! (or an earlier one) is in that sorted list and every other event is in
//! a later bucket, so the list's first is the queue's first: the same
//! order as one heap over everything, without sifting a large heap or
//! fetching each event from a slab. Events queued for the current instant
//! skip the queue: each is later in the order than everything already
//! queued for that instant, so a FIFO behind the queue's entries for now
//! keeps the (time, sequence) order exactly.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Virtual time in nanoseconds since the simulation started.
pub type SimTime = u64;

/// One nanosecond-resolution instant per second.
pub const SECOND: SimTime = 1_000_000_000;
pub const MILLISECOND: SimTime = 1_000_000;

/// A queued event and its place in the order.
struct Entry<E> {
    at: SimTime,
    seq: u64,
    /// Taken when the event runs.
    event: Option<E>,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest must come
    /// out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The key of an entry of the current bucket: where it is in `soon`.
#[derive(Clone, Copy)]
struct SoonKey {
    at: SimTime,
    seq: u64,
    index: u32,
}

/// A bucket is `1 << BUCKET_SHIFT` ns (about 1 ms) of virtual time.
const BUCKET_SHIFT: u32 = 20;
/// Buckets in the ring (about 1.07 s of virtual time).
const RING: u64 = 1024;

fn bucket_of(at: SimTime) -> u64 {
    at >> BUCKET_SHIFT
}

/// The event queue and the clock.
pub struct Scheduler<E> {
    now: SimTime,
    next_seq: u64,
    /// The bucket `soon` holds.
    bucket: u64,
    /// The entries of `bucket` and of any earlier bucket, in the order
    /// they came, and their keys sorted latest first (the next to run is
    /// the last).
    soon: Vec<Entry<E>>,
    soon_keys: Vec<SoonKey>,
    /// Entries of the buckets after `bucket` and within `RING` of it, by
    /// bucket modulo `RING`, unsorted; `ring_len` counts them.
    ring: Vec<Vec<Entry<E>>>,
    ring_len: usize,
    /// Entries of buckets at least `RING` after `bucket` when queued:
    /// moved to `soon` when their bucket comes up.
    later: BinaryHeap<Entry<E>>,
    /// Events queued for `now` after the clock reached it, in order.
    current: VecDeque<E>,
    processed: u64,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler {
            now: 0,
            next_seq: 0,
            bucket: 0,
            soon: Vec::new(),
            soon_keys: Vec::new(),
            ring: (0..RING).map(|_| Vec::new()).collect(),
            ring_len: 0,
            later: BinaryHeap::new(),
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
        let entry = Entry {
            at,
            seq,
            event: Some(event),
        };
        let bucket = bucket_of(at);
        if bucket <= self.bucket {
            let key = SoonKey {
                at,
                seq,
                index: u32::try_from(self.soon.len()).expect("fewer than 2^32 events a bucket"),
            };
            self.soon.push(entry);
            let place = self
                .soon_keys
                .partition_point(|other| (other.at, other.seq) > (at, seq));
            self.soon_keys.insert(place, key);
        } else if bucket < self.bucket + RING {
            self.ring[(bucket % RING) as usize].push(entry);
            self.ring_len += 1;
        } else {
            self.later.push(entry);
        }
    }

    /// Queues `event` `delay` after now.
    pub fn after(&mut self, delay: SimTime, event: E) {
        self.at(self.now.saturating_add(delay), event);
    }

    /// The queue's first key, moving to the next bucket holding any when
    /// the current one is done.
    fn first(&mut self) -> Option<SoonKey> {
        while self.soon_keys.is_empty() {
            // Every event of `soon` ran: its list goes back to the ring
            // for its capacity, and the next bucket's comes out.
            self.soon.clear();
            if self.ring_len == 0 {
                // Nothing within the ring: straight to the next entry's
                // bucket (the ring's buckets up to it are all empty).
                let next = self.later.peek()?;
                self.bucket = self.bucket.max(bucket_of(next.at));
            } else {
                self.bucket += 1;
                let slot = (self.bucket % RING) as usize;
                std::mem::swap(&mut self.soon, &mut self.ring[slot]);
                self.ring_len -= self.soon.len();
            }
            while self
                .later
                .peek()
                .is_some_and(|entry| bucket_of(entry.at) <= self.bucket)
            {
                let entry = self.later.pop().expect("peeked");
                self.soon.push(entry);
            }
            let keys = self.soon.iter().enumerate().map(|(index, entry)| SoonKey {
                at: entry.at,
                seq: entry.seq,
                index: u32::try_from(index).expect("fewer than 2^32 events a bucket"),
            });
            self.soon_keys.extend(keys);
            self.soon_keys
                .sort_unstable_by_key(|key| std::cmp::Reverse((key.at, key.seq)));
        }
        self.soon_keys.last().copied()
    }

    /// The next event up to `until`, advancing the clock to it.
    pub fn pop_until(&mut self, until: SimTime) -> Option<E> {
        // The queue's entries for now (or earlier: none, the clock never
        // passes a queued event) were queued before the clock got here,
        // so they come before the FIFO's.
        let first = self.first();
        let queue_first = first.is_some_and(|key| key.at <= self.now);
        if !queue_first {
            if self.now <= until {
                if let Some(event) = self.current.pop_front() {
                    self.processed += 1;
                    return Some(event);
                }
            }
            if first?.at > until {
                return None;
            }
        }
        let key = self.soon_keys.pop()?;
        self.now = key.at;
        self.processed += 1;
        self.soon[key.index as usize].event.take()
    }

    /// The current bucket's queued event `ahead` places after its first,
    /// if it holds that many: for looking ahead (to prefetch what it will
    /// need), not for running. Events queued for the present instant wait
    /// in a FIFO this does not see, so it may name an event a few places
    /// later than `ahead`; a hint needs no more.
    pub fn peek_ahead(&self, ahead: usize) -> Option<&E> {
        let index = self.soon_keys.len().checked_sub(ahead + 1)?;
        self.soon[self.soon_keys[index].index as usize]
            .event
            .as_ref()
    }

    /// When the next queued event is due.
    pub fn next_at(&mut self) -> Option<SimTime> {
        if !self.current.is_empty() {
            return Some(self.now);
        }
        self.first().map(|key| key.at)
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
        self.soon_keys.len() + self.ring_len + self.later.len() + self.current.len()
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

    #[test]
    fn looking_ahead_sees_the_current_buckets_events_in_order() {
        let mut scheduler = Scheduler::default();
        for (at, name) in [(30, "c"), (10, "a"), (20, "b"), (5 * SECOND, "far")] {
            scheduler.at(at, name);
        }
        assert_eq!(scheduler.next_at(), Some(10));
        assert_eq!(scheduler.peek_ahead(0), Some(&"a"));
        assert_eq!(scheduler.peek_ahead(2), Some(&"c"));
        // Beyond the current bucket: not known yet.
        assert_eq!(scheduler.peek_ahead(3), None);
        assert_eq!(scheduler.pop_until(100), Some("a"));
        assert_eq!(scheduler.peek_ahead(0), Some(&"b"));
        assert_eq!(scheduler.peek_ahead(1), Some(&"c"));
        assert_eq!(scheduler.peek_ahead(2), None);
    }

    /// Against one ordered set of (time, sequence): delays from nothing
    /// to several seconds (within a bucket, across the ring, past it),
    /// queued while popping, with the clock also moved from outside.
    #[test]
    fn the_calendar_pops_in_exactly_the_order_of_one_heap() {
        use std::collections::BTreeSet;
        let mut scheduler = Scheduler::default();
        let mut model: BTreeSet<(SimTime, u64)> = BTreeSet::new();
        let mut state = 7u64;
        let mut draw = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let mut popped = 0;
        for step in 0..200_000u64 {
            let now = scheduler.now();
            let delay = match draw() % 10 {
                0 => 0,
                1 => draw() % 1_000,
                2..=6 => draw() % (200 * MILLISECOND),
                7 | 8 => draw() % (3 * SECOND),
                _ => draw() % (30 * SECOND),
            };
            let at = now + delay;
            // One event a step: the step is its sequence number.
            scheduler.at(at, step);
            // The FIFO's events count as queued at now.
            model.insert((at.max(now), step));
            if step % 97 == 0 {
                // A timer outside the queue moves the clock, never past
                // the next event.
                let next = scheduler.next_at().unwrap_or(now);
                scheduler.run_at(now + (next - now) / 2);
            }
            let pops = if step < 150_000 { draw() % 2 } else { 3 };
            for _ in 0..pops {
                let until = scheduler.now() + SECOND;
                let expected = model.first().copied().filter(|(at, _)| *at <= until);
                let event = scheduler.pop_until(until);
                assert_eq!(event, expected.map(|(_, seq)| seq));
                if let Some((at, _)) = expected {
                    model.pop_first();
                    assert_eq!(scheduler.now(), at);
                    popped += 1;
                }
                assert_eq!(scheduler.pending(), model.len());
            }
        }
        assert!(popped > 150_000);
    }
}
