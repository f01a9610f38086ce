//! The discrete-event scheduler: a priority queue of events ordered by
//! (virtual time, sequence number), so events at the same instant run in
//! the order they were scheduled and a run never depends on the wall clock
//! or on hash order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Virtual time in nanoseconds since the simulation started.
pub type SimTime = u64;

/// One nanosecond-resolution instant per second.
pub const SECOND: SimTime = 1_000_000_000;
pub const MILLISECOND: SimTime = 1_000_000;

struct Entry<E> {
    at: SimTime,
    seq: u64,
    event: E,
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

/// The event queue and the clock.
pub struct Scheduler<E> {
    now: SimTime,
    next_seq: u64,
    queue: BinaryHeap<Entry<E>>,
    processed: u64,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler {
            now: 0,
            next_seq: 0,
            queue: BinaryHeap::new(),
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
        self.queue.push(Entry {
            at: at.max(self.now),
            seq,
            event,
        });
    }

    /// Queues `event` `delay` after now.
    pub fn after(&mut self, delay: SimTime, event: E) {
        self.at(self.now.saturating_add(delay), event);
    }

    /// The next event up to `until`, advancing the clock to it.
    pub fn pop_until(&mut self, until: SimTime) -> Option<E> {
        if self.queue.peek()?.at > until {
            return None;
        }
        let entry = self.queue.pop()?;
        self.now = entry.at;
        self.processed += 1;
        Some(entry.event)
    }

    /// When the next queued event is due.
    pub fn next_at(&self) -> Option<SimTime> {
        self.queue.peek().map(|entry| entry.at)
    }

    /// Moves the clock to `at` (not before now) for something run outside
    /// the queue (a node's timer), counted as an event.
    pub fn run_at(&mut self, at: SimTime) {
        self.now = self.now.max(at);
        self.processed += 1;
    }

    /// Events run so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Events waiting.
    pub fn pending(&self) -> usize {
        self.queue.len()
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
}
