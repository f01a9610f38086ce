//! The fault scripts' effects on the world: `--churn` (a node leaves and
//! comes back), `--kill` (nodes leave for good, hash power and all); the
//! partition itself is only a flag of the network's.

use super::{Event, World};
use crate::sim::scheduler::SimTime;
use node::p2p::protocol::{CloseCause, Input};
use rand::seq::SliceRandom;
use rand::Rng;

impl World {
    /// A node drawn at random leaves: its connections close at both ends.
    pub(super) fn churn_leave(&mut self, now: SimTime) {
        let Some(churn) = self.options.churn.clone() else {
            return;
        };
        let node = self.rng.gen_range(0..self.nodes.len());
        if !self.network.offline[node] {
            self.trace
                .line(now, "churn_leave", format_args!("\"node\":{node}"));
            self.take_offline(node, now);
            self.scheduler.after(
                churn.down.as_nanos() as SimTime,
                Event::ChurnReturn { node },
            );
        }
        self.scheduler
            .after(churn.every.as_nanos() as SimTime, Event::ChurnLeave);
    }

    /// `--kill`: nodes drawn at random among those not yet killed leave
    /// for good.
    pub(super) fn kill(&mut self, now: SimTime) {
        let Some(kill) = self.options.kill.clone() else {
            return;
        };
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|node| !self.killed[*node])
            .collect();
        let count = kill.nodes.of(self.nodes.len()).min(candidates.len());
        let mut chosen: Vec<usize> = candidates
            .choose_multiple(&mut self.rng, count)
            .copied()
            .collect();
        chosen.sort_unstable();
        for node in chosen {
            self.trace
                .line(now, "kill", format_args!("\"node\":{node}"));
            self.killed[node] = true;
            let tip = self.nodes[node].tip();
            self.stats.node_killed(tip, now);
            if !self.network.offline[node] {
                self.take_offline(node, now);
            }
        }
    }

    /// Closes every connection of `node` at both ends and marks it
    /// offline (nothing reaches it, its dials fail).
    fn take_offline(&mut self, node: usize, now: SimTime) {
        {
            self.network.offline[node] = true;
            for (conn, end) in self.network.conns_of(node) {
                self.network.remove_end(node, conn);
                self.scheduler.at(
                    now + end.latency,
                    Event::Closed {
                        node: end.peer,
                        conn: end.peer_conn,
                    },
                );
                self.feed(
                    node,
                    Input::Closed {
                        conn,
                        cause: CloseCause::Disconnected("network gone".into()),
                    },
                );
            }
        }
    }
}
