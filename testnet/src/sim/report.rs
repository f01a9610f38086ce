//! What a run measures and how it is reported: per block and per tx, when
//! each node first held it; tips in use; reorgs; messages and bytes by
//! kind; the partition's heal. `Stats` collects during the run, `Report`
//! is the result (JSON with `--json`, a table otherwise). Only keys named
//! `wall_*` depend on the wall clock.

use super::scheduler::{SimTime, MILLISECOND, SECOND};
use crate::stats::percentile;
use ledger::{BlockHash, TxId};
use node::p2p::message::KINDS;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Seconds between samples of the tips in use.
pub const TIPS_BUCKET_SECONDS: u64 = 10;

/// A set of node indexes.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    /// Inserts; false when already present.
    fn insert(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

/// When the nodes first held one item (a block or a tx).
struct Spread {
    origin_at: SimTime,
    /// Nodes alive when it appeared (`--kill` takes some for good): the
    /// whole that its fractions are of.
    of: usize,
    holders: Bits,
    /// Nodes that held it so far.
    count: usize,
    /// Delay since `origin_at` of each node's first holding, in arrival
    /// order: for blocks, whose every delay the CDF plots. A tx keeps
    /// only the delays at `TX_FRACTIONS` (a run has thousands of txs and
    /// a delay per node each would be most of its memory).
    delays: Vec<SimTime>,
    keep_all: bool,
    /// (nodes, delay) when the count reached each of `TX_FRACTIONS`.
    marks: Vec<(usize, SimTime)>,
}

/// The fractions of nodes a tx's report asks about.
const TX_FRACTIONS: [f64; 3] = [0.5, 0.9, 1.0];

fn nodes_needed(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).ceil() as usize).max(1)
}

impl Spread {
    fn new(n: usize, of: usize, origin_at: SimTime, keep_all: bool) -> Spread {
        Spread {
            origin_at,
            of,
            holders: Bits::new(n),
            count: 0,
            delays: Vec::new(),
            keep_all,
            marks: Vec::new(),
        }
    }

    fn reached(&mut self, node: usize, now: SimTime) {
        if !self.holders.insert(node) {
            return;
        }
        self.count += 1;
        let delay = now.saturating_sub(self.origin_at);
        if self.keep_all {
            self.delays.push(delay);
        } else if TX_FRACTIONS
            .iter()
            .any(|fraction| nodes_needed(self.of, *fraction) == self.count)
        {
            self.marks.push((self.count, delay));
        }
    }

    /// The delay until `fraction` of the nodes alive at its start held it.
    fn time_to(&self, fraction: f64) -> Option<SimTime> {
        let needed = nodes_needed(self.of, fraction);
        if self.keep_all {
            return self.delays.get(needed - 1).copied();
        }
        debug_assert!(TX_FRACTIONS.contains(&fraction));
        self.marks
            .iter()
            .find(|(count, _)| *count == needed)
            .map(|(_, delay)| *delay)
    }
}

/// Collected during a run.
pub struct Stats {
    n: usize,
    /// Nodes not taken by `--kill`.
    alive: usize,
    blocks: HashMap<BlockHash, Spread>,
    mined: Vec<BlockHash>,
    txs: HashMap<TxId, Spread>,
    submitted: Vec<TxId>,
    pub txs_refused_at_origin: u64,
    tips: HashMap<BlockHash, u32>,
    tips_series: Vec<u32>,
    pub reorgs: u64,
    pub deepest_reorg: usize,
    pub sent: [u64; KINDS.len()],
    pub sent_bytes: [u64; KINDS.len()],
    pub dropped_partition: u64,
    pub dropped_loss: u64,
    pub dropped_closed: u64,
    pub heal_at: Option<SimTime>,
    pub converged_after_heal: Option<SimTime>,
    /// Per block, each node's hop count from the miner (`NO_HOP`: not
    /// known yet, or it did not come from a peer).
    hops: HashMap<BlockHash, Vec<u8>>,
}

/// A node's hop count not known.
const NO_HOP: u8 = u8::MAX;

impl Stats {
    pub fn new(n: usize, genesis: BlockHash) -> Stats {
        Stats {
            n,
            alive: n,
            blocks: HashMap::new(),
            mined: Vec::new(),
            txs: HashMap::new(),
            submitted: Vec::new(),
            txs_refused_at_origin: 0,
            tips: HashMap::from([(genesis, n as u32)]),
            tips_series: Vec::new(),
            reorgs: 0,
            deepest_reorg: 0,
            sent: [0; KINDS.len()],
            sent_bytes: [0; KINDS.len()],
            dropped_partition: 0,
            dropped_loss: 0,
            dropped_closed: 0,
            heal_at: None,
            converged_after_heal: None,
            hops: HashMap::new(),
        }
    }

    pub fn block_mined(&mut self, hash: BlockHash, now: SimTime) {
        self.blocks
            .insert(hash, Spread::new(self.n, self.alive, now, true));
        self.mined.push(hash);
        self.hops.insert(hash, vec![NO_HOP; self.n]);
    }

    /// The miner holds its block at hop 0.
    pub fn block_hop_origin(&mut self, hash: &BlockHash, miner: usize) {
        if let Some(hops) = self.hops.get_mut(hash) {
            hops[miner] = 0;
        }
    }

    /// `node` took `hash` from `peer`, as a new valid block: one hop more
    /// than the peer, if the peer's count is known.
    pub fn block_hop(&mut self, hash: &BlockHash, node: usize, peer: usize) {
        if let Some(hops) = self.hops.get_mut(hash) {
            if hops[node] == NO_HOP && hops[peer] != NO_HOP {
                hops[node] = hops[peer].saturating_add(1).min(NO_HOP - 1);
            }
        }
    }

    /// How many (block, node) pairs got each block at each hop count
    /// (index = hops; the miners' own hop 0 included).
    fn hop_histogram(&self) -> Vec<u64> {
        let mut histogram = Vec::new();
        for hops in self.hops.values() {
            for &hop in hops.iter().filter(|hop| **hop != NO_HOP) {
                let hop = usize::from(hop);
                if histogram.len() <= hop {
                    histogram.resize(hop + 1, 0);
                }
                histogram[hop] += 1;
            }
        }
        histogram
    }

    pub fn node_has_block(&mut self, node: usize, hash: &BlockHash, now: SimTime) {
        if let Some(spread) = self.blocks.get_mut(hash) {
            spread.reached(node, now);
        }
    }

    pub fn tx_submitted(&mut self, txid: TxId, now: SimTime) {
        self.txs
            .insert(txid, Spread::new(self.n, self.alive, now, false));
        self.submitted.push(txid);
    }

    pub fn node_has_tx(&mut self, node: usize, txid: &TxId, now: SimTime) {
        if let Some(spread) = self.txs.get_mut(txid) {
            spread.reached(node, now);
        }
    }

    pub fn submitted(&self) -> &[TxId] {
        &self.submitted
    }

    pub fn mined(&self) -> &[BlockHash] {
        &self.mined
    }

    /// A node's tip moved from `old` to `new`.
    pub fn tip_moved(&mut self, old: BlockHash, new: BlockHash, now: SimTime) {
        self.drop_tip(old);
        *self.tips.entry(new).or_insert(0) += 1;
        self.note_tips(now);
    }

    fn drop_tip(&mut self, tip: BlockHash) {
        if let Some(count) = self.tips.get_mut(&tip) {
            *count -= 1;
            if *count == 0 {
                self.tips.remove(&tip);
            }
        }
    }

    /// A node left for good (`--kill`) holding `tip`: its tip no longer
    /// counts as one in use, and later items are spread among the rest.
    pub fn node_killed(&mut self, tip: BlockHash, now: SimTime) {
        self.alive -= 1;
        self.drop_tip(tip);
        self.note_tips(now);
    }

    pub fn nodes_killed(&self) -> usize {
        self.n - self.alive
    }

    /// Tracks the most tips in use per bucket, and the end of a heal.
    pub fn note_tips(&mut self, now: SimTime) {
        let bucket = (now / (TIPS_BUCKET_SECONDS * SECOND)) as usize;
        if self.tips_series.len() <= bucket {
            self.tips_series.resize(bucket + 1, 0);
        }
        let in_use = self.tips.len() as u32;
        self.tips_series[bucket] = self.tips_series[bucket].max(in_use);
        if let (Some(heal_at), None) = (self.heal_at, self.converged_after_heal) {
            if in_use == 1 {
                self.converged_after_heal = Some(now - heal_at);
            }
        }
    }

    pub fn tips_in_use(&self) -> usize {
        self.tips.len()
    }

    pub fn reorg(&mut self, depth: usize) {
        self.reorgs += 1;
        self.deepest_reorg = self.deepest_reorg.max(depth);
    }

    /// Per block, the delays (ms) of all nodes that got it: the CDF's
    /// samples.
    pub fn block_delays_ms(&self) -> Vec<f64> {
        let mut delays: Vec<f64> = self
            .mined
            .iter()
            .flat_map(|hash| self.blocks[hash].delays.iter())
            .map(|delay| *delay as f64 / MILLISECOND as f64)
            .collect();
        delays.sort_by(f64::total_cmp);
        delays
    }

    pub fn tips_series(&self) -> &[u32] {
        &self.tips_series
    }

    /// The report's propagation figures.
    fn propagation(spreads: impl Iterator<Item = Option<SimTime>>) -> Propagation {
        let mut reached = Vec::new();
        let mut missed = 0;
        for time in spreads {
            match time {
                Some(time) => reached.push(time),
                None => missed += 1,
            }
        }
        reached.sort_unstable();
        let ms = |p: f64| percentile(&reached, p).map(|t| t as f64 / MILLISECOND as f64);
        Propagation {
            items: reached.len() as u64,
            never_reached: missed,
            p50_ms: ms(50.0),
            p90_ms: ms(90.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
        }
    }

    /// Block propagation: time to `fraction` of nodes, over blocks.
    fn block_propagation(&self, fraction: f64, blocks: &[BlockHash]) -> Propagation {
        Stats::propagation(
            blocks
                .iter()
                .map(|hash| self.blocks[hash].time_to(fraction)),
        )
    }

    fn tx_propagation(&self, fraction: f64) -> Propagation {
        Stats::propagation(
            self.submitted
                .iter()
                .map(|txid| self.txs[txid].time_to(fraction)),
        )
    }
}

/// Delays over items, in milliseconds (nearest rank).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Propagation {
    /// Items that reached the fraction of nodes.
    pub items: u64,
    /// Items that never did (stale blocks, txs still spreading at the end).
    pub never_reached: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// One message kind's traffic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KindTraffic {
    pub kind: &'static str,
    pub messages: u64,
    pub bytes: u64,
    pub messages_per_node_per_block: f64,
    pub bytes_per_node_per_block: f64,
}

/// The partition's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionReport {
    pub healed_at_s: f64,
    /// From the heal until every node had the same tip; `None`: never
    /// within the run.
    pub time_to_one_tip_ms: Option<f64>,
}

/// The run's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub connections: usize,
    pub simulated_s: f64,
    pub events: u64,
    pub blocks_mined: u64,
    pub best_height: u64,
    pub final_tip: String,
    pub nodes_on_final_tip: usize,
    pub stale_blocks: u64,
    pub stale_rate: f64,
    pub reorgs: u64,
    pub deepest_reorg: usize,
    pub block_to_50pct: Propagation,
    pub block_to_90pct: Propagation,
    pub block_to_100pct: Propagation,
    pub txs_submitted: u64,
    pub txs_refused_at_origin: u64,
    /// On the final tip's chain.
    pub txs_confirmed: u64,
    /// In some mempool, or only in a block the final tip does not hold yet.
    pub txs_pending: u64,
    /// Admitted by a node and then found nowhere: must be 0.
    pub txs_lost: u64,
    /// Nodes taken for good by `--kill`.
    pub nodes_killed: usize,
    /// Held only in the mempools of killed nodes: gone with them, which
    /// no protocol can prevent for a tx that never left its node.
    pub txs_only_on_killed_nodes: u64,
    pub tx_to_50pct: Propagation,
    pub tx_to_100pct: Propagation,
    /// (block, node) pairs by the hop count at which the node got the
    /// block (index 0: the miner itself), over every mined block.
    pub block_hops: Vec<u64>,
    /// Mean hop count over the pairs above that came from a peer.
    pub block_hops_mean: Option<f64>,
    pub traffic: Vec<KindTraffic>,
    pub frames_dropped_partition: u64,
    pub frames_dropped_loss: u64,
    pub frames_to_closed_connections: u64,
    pub most_tips_in_use: u32,
    /// Most tips in use per 10 simulated seconds.
    pub tips_in_use_series: Vec<u32>,
    pub partition: Option<PartitionReport>,
    pub wall_seconds: f64,
    pub wall_sim_per_wall: f64,
    pub wall_events_per_second: f64,
}

/// What the world knows at the end, beyond `Stats`.
pub struct Final {
    pub seed: u64,
    pub connections: usize,
    pub simulated: SimTime,
    pub events: u64,
    pub best_height: u64,
    pub final_tip: BlockHash,
    pub nodes_on_final_tip: usize,
    /// Mined blocks on the final best chain.
    pub blocks_on_best_chain: u64,
    pub txs_confirmed: u64,
    pub txs_pending: u64,
    pub txs_lost: u64,
    pub txs_only_on_killed_nodes: u64,
    pub wall_seconds: f64,
}

impl Report {
    pub fn new(stats: &Stats, end: Final) -> Report {
        let mined = stats.mined.len() as u64;
        let stale = mined.saturating_sub(end.blocks_on_best_chain);
        let per = (stats.n as f64 * mined.max(1) as f64).max(1.0);
        let traffic = KINDS
            .iter()
            .enumerate()
            .filter(|(index, _)| stats.sent[*index] > 0)
            .map(|(index, kind)| KindTraffic {
                kind,
                messages: stats.sent[index],
                bytes: stats.sent_bytes[index],
                messages_per_node_per_block: round3(stats.sent[index] as f64 / per),
                bytes_per_node_per_block: round3(stats.sent_bytes[index] as f64 / per),
            })
            .collect();
        let simulated_s = end.simulated as f64 / SECOND as f64;
        let wall = end.wall_seconds.max(1e-9);
        let block_hops = stats.hop_histogram();
        let relayed: u64 = block_hops.iter().skip(1).sum();
        let hop_sum: u64 = block_hops
            .iter()
            .enumerate()
            .map(|(hop, count)| hop as u64 * count)
            .sum();
        Report {
            seed: end.seed,
            nodes: stats.n,
            connections: end.connections,
            simulated_s,
            events: end.events,
            blocks_mined: mined,
            best_height: end.best_height,
            final_tip: end.final_tip.to_string(),
            nodes_on_final_tip: end.nodes_on_final_tip,
            stale_blocks: stale,
            stale_rate: round3(stale as f64 / mined.max(1) as f64),
            reorgs: stats.reorgs,
            deepest_reorg: stats.deepest_reorg,
            block_to_50pct: stats.block_propagation(0.5, &stats.mined),
            block_to_90pct: stats.block_propagation(0.9, &stats.mined),
            block_to_100pct: stats.block_propagation(1.0, &stats.mined),
            txs_submitted: stats.submitted.len() as u64,
            txs_refused_at_origin: stats.txs_refused_at_origin,
            txs_confirmed: end.txs_confirmed,
            txs_pending: end.txs_pending,
            txs_lost: end.txs_lost,
            nodes_killed: stats.nodes_killed(),
            txs_only_on_killed_nodes: end.txs_only_on_killed_nodes,
            tx_to_50pct: stats.tx_propagation(0.5),
            tx_to_100pct: stats.tx_propagation(1.0),
            block_hops_mean: (relayed > 0).then(|| round3(hop_sum as f64 / relayed as f64)),
            block_hops,
            traffic,
            frames_dropped_partition: stats.dropped_partition,
            frames_dropped_loss: stats.dropped_loss,
            frames_to_closed_connections: stats.dropped_closed,
            most_tips_in_use: stats.tips_series.iter().copied().max().unwrap_or(1),
            tips_in_use_series: stats.tips_series.clone(),
            partition: stats.heal_at.map(|heal_at| PartitionReport {
                healed_at_s: heal_at as f64 / SECOND as f64,
                time_to_one_tip_ms: stats
                    .converged_after_heal
                    .map(|after| after as f64 / MILLISECOND as f64),
            }),
            wall_seconds: round3(end.wall_seconds),
            wall_sim_per_wall: round3(simulated_s / wall),
            wall_events_per_second: (end.events as f64 / wall).round(),
        }
    }

    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let ms = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.0}"));
        let _ = writeln!(
            out,
            "simulated {:.0} s, {} nodes, {} connections, seed {}, {} events",
            self.simulated_s, self.nodes, self.connections, self.seed, self.events
        );
        let _ = writeln!(
            out,
            "blocks: {} mined, best height {}, {} stale ({:.1}%), {} reorgs, deepest {}",
            self.blocks_mined,
            self.best_height,
            self.stale_blocks,
            self.stale_rate * 100.0,
            self.reorgs,
            self.deepest_reorg
        );
        let _ = writeln!(
            out,
            "final tip {} on {}/{} nodes",
            self.final_tip, self.nodes_on_final_tip, self.nodes
        );
        let _ = writeln!(
            out,
            "\npropagation (ms)        p50      p90      p99      max  never"
        );
        for (name, row) in [
            ("block to 50% of nodes", &self.block_to_50pct),
            ("block to 90% of nodes", &self.block_to_90pct),
            ("block to all nodes", &self.block_to_100pct),
            ("tx to 50% of nodes", &self.tx_to_50pct),
            ("tx to all nodes", &self.tx_to_100pct),
        ] {
            let _ = writeln!(
                out,
                "{name:<22} {:>8} {:>8} {:>8} {:>8} {:>6}",
                ms(row.p50_ms),
                ms(row.p90_ms),
                ms(row.p99_ms),
                ms(row.max_ms),
                row.never_reached
            );
        }
        let _ = writeln!(
            out,
            "\ntxs: {} submitted, {} refused at origin, {} confirmed, {} pending, {} lost",
            self.txs_submitted,
            self.txs_refused_at_origin,
            self.txs_confirmed,
            self.txs_pending,
            self.txs_lost
        );
        if self.nodes_killed > 0 {
            let _ = writeln!(
                out,
                "killed: {} nodes, taking {} txs that only they held",
                self.nodes_killed, self.txs_only_on_killed_nodes
            );
        }
        if let Some(mean) = self.block_hops_mean {
            let spread: Vec<String> = self
                .block_hops
                .iter()
                .enumerate()
                .skip(1)
                .map(|(hop, count)| format!("{hop}: {count}"))
                .collect();
            let _ = writeln!(
                out,
                "block hops from the miner: mean {mean:.2} ({})",
                spread.join(", ")
            );
        }
        let _ = writeln!(out, "\nper node per block   messages      bytes");
        for kind in &self.traffic {
            let _ = writeln!(
                out,
                "{:<18} {:>10.2} {:>10.0}",
                kind.kind, kind.messages_per_node_per_block, kind.bytes_per_node_per_block
            );
        }
        let _ = writeln!(
            out,
            "\nframes dropped: {} by the partition, {} by loss, {} to closed connections",
            self.frames_dropped_partition,
            self.frames_dropped_loss,
            self.frames_to_closed_connections
        );
        let _ = writeln!(out, "most tips in use at once: {}", self.most_tips_in_use);
        if let Some(partition) = &self.partition {
            let _ = writeln!(
                out,
                "partition healed at {:.0} s; one tip {} ms later",
                partition.healed_at_s,
                ms(partition.time_to_one_tip_ms)
            );
        }
        let _ = writeln!(
            out,
            "\nwall time {:.1} s, {:.1}x faster than real time, {:.0} events/s",
            self.wall_seconds, self.wall_sim_per_wall, self.wall_events_per_second
        );
        out
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
