//! `Timers`: each node's next core timer, ordered by (time, node). A
//! node's timer moves after most inputs (a tx waiting to be announced
//! brings it forward, the flush puts it back), so moving one must be
//! cheap: it is one push onto a heap of (time, node, generation), and an
//! entry whose generation is no longer its node's is dropped when it
//! reaches the top. An ordered set gave the same order for a removal and
//! an insertion, each a walk down a tree, on every move.

use super::scheduler::SimTime;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// See the module docs.
pub struct Timers {
    /// Each node's timer (`SimTime::MAX`: none).
    at: Vec<SimTime>,
    /// Bumped on every move: the one entry of a node that counts.
    generation: Vec<u32>,
    heap: BinaryHeap<Reverse<(SimTime, usize, u32)>>,
}

impl Timers {
    /// `nodes` nodes, none with a timer.
    pub fn new(nodes: usize) -> Timers {
        Timers {
            at: vec![SimTime::MAX; nodes],
            generation: vec![0; nodes],
            heap: BinaryHeap::new(),
        }
    }

    /// Moves `node`'s timer to `at` (`SimTime::MAX`: none).
    pub fn set(&mut self, node: usize, at: SimTime) {
        if self.at[node] == at {
            return;
        }
        self.at[node] = at;
        self.generation[node] = self.generation[node].wrapping_add(1);
        if at != SimTime::MAX {
            self.heap.push(Reverse((at, node, self.generation[node])));
        }
    }

    /// The earliest timer and its node, the lowest node first among equal
    /// times.
    pub fn first(&mut self) -> Option<(SimTime, usize)> {
        while let Some(Reverse((at, node, generation))) = self.heap.peek().copied() {
            if generation == self.generation[node] && at == self.at[node] {
                return Some((at, node));
            }
            self.heap.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Against an ordered set of (time, node), the structure it replaced,
    /// through moves forward and back, repeats of the same time, clears,
    /// and timers fired at the front.
    #[test]
    fn orders_as_an_ordered_set_of_time_and_node() {
        let nodes = 7;
        let mut timers = Timers::new(nodes);
        let mut model: BTreeSet<(SimTime, usize)> = BTreeSet::new();
        let mut model_at = vec![SimTime::MAX; nodes];
        let mut state = 11u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let node = (state >> 33) as usize % nodes;
            if state.is_multiple_of(5) {
                // Fire the first, as the event loop does.
                let first = timers.first();
                assert_eq!(first, model.first().copied());
                if let Some((at, node)) = first {
                    model.remove(&(at, node));
                    model_at[node] = SimTime::MAX;
                    timers.set(node, SimTime::MAX);
                }
                continue;
            }
            // Few distinct times, so moves come back to an earlier one.
            let at = if state.is_multiple_of(7) {
                SimTime::MAX
            } else {
                (state >> 40) % 12
            };
            if model_at[node] != at {
                model.remove(&(model_at[node], node));
                model_at[node] = at;
                if at != SimTime::MAX {
                    model.insert((at, node));
                }
            }
            timers.set(node, at);
            assert_eq!(timers.first(), model.first().copied());
        }
    }
}
