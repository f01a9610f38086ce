//! The end of a run: the tip most living nodes hold is the network's
//! answer, and every submitted tx is confirmed on it, pending somewhere,
//! gone with a killed node, or lost.

use super::{Outcome, World};
use crate::sim::node::SimNode;
use crate::sim::report::{Final, Report};
use ledger::{BlockHash, Height};

impl World {
    pub(super) fn finish(mut self, wall_seconds: f64) -> Outcome {
        let n = self.nodes.len();
        let trace = self.trace.finish();
        // The tip most living nodes hold is the network's answer.
        let mut tips: Vec<(BlockHash, Height)> = self
            .nodes
            .iter()
            .zip(&self.killed)
            .filter(|(_, killed)| !**killed)
            .map(|(node, _)| {
                let tip = node.reader().tip();
                (tip.hash, tip.height)
            })
            .collect();
        tips.sort();
        let mut best = (tips[0], 0usize);
        let mut run = 0;
        for index in 0..tips.len() {
            run = if index > 0 && tips[index].0 == tips[index - 1].0 {
                run + 1
            } else {
                1
            };
            if run > best.1 {
                best = (tips[index], run);
            }
        }
        let ((final_tip, best_height), nodes_on_final_tip) = best;
        let reference = self
            .nodes
            .iter()
            .zip(&self.killed)
            .find(|(node, killed)| !**killed && node.tip() == final_tip)
            .map(|(node, _)| node)
            .expect("a node holds the final tip");
        let reader = reference.reader();
        let blocks_on_best_chain = self
            .stats
            .mined()
            .iter()
            .filter(|hash| {
                reader
                    .header(hash)
                    .is_some_and(|header| reader.hash_at(header.height) == Some(**hash))
            })
            .count() as u64;
        let (mut confirmed, mut pending, mut lost, mut only_killed) = (0, 0, 0, 0);
        let holds = |node: &SimNode, txid: &ledger::TxId| {
            node.mempool_contains(txid) || node.reader().tx(txid).is_some()
        };
        for txid in self.stats.submitted() {
            if reader.tx(txid).is_some() {
                confirmed += 1;
            } else if self
                .nodes
                .iter()
                .zip(&self.killed)
                .any(|(node, killed)| !*killed && holds(node, txid))
            {
                // Waiting in a mempool, or in a block at the tip of a node
                // the final tip has not reached yet.
                pending += 1;
            } else if self
                .nodes
                .iter()
                .zip(&self.killed)
                .any(|(node, killed)| *killed && holds(node, txid))
            {
                only_killed += 1;
            } else {
                lost += 1;
                tracing::warn!(%txid, "a submitted tx is neither confirmed nor pending anywhere");
            }
        }
        let connections = (0..n)
            .map(|node| self.network.degree_of(node))
            .sum::<usize>()
            / 2;
        let end = Final {
            seed: self.options.seed,
            connections,
            simulated: self.scheduler.now(),
            events: self.scheduler.processed(),
            best_height: best_height.0,
            final_tip,
            nodes_on_final_tip,
            blocks_on_best_chain,
            txs_confirmed: confirmed,
            txs_pending: pending,
            txs_lost: lost,
            txs_only_on_killed_nodes: only_killed,
            wall_seconds,
        };
        Outcome {
            report: Report::new(&self.stats, end),
            block_delays_ms: self.stats.block_delays_ms(),
            trace,
        }
    }
}
