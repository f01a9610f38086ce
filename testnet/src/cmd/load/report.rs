//! Verifying and reporting, phase 4 of a load run: every node's best chain
//! is read back from the first height that could hold our transactions,
//! accepted txids missing anywhere are counted as lost, and the tracker's
//! records become the `Report`: throughput, submit-to-confirmed latency,
//! block propagation, and the verdict.

use super::plan::Plan;
use super::watch::Run;
use super::VERIFY_PAGE_BLOCKS;
use ledger::Height;
use ledger::{BlockHash, TxId};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;
use testnet::api::Api;
use testnet::stats::LatencySummary;

/// What reading the chains back found.
pub(super) struct Verification {
    /// The block hashes of the first node's final best chain, from the
    /// run's first height.
    final_chain: HashSet<BlockHash>,
    missing_per_node: Vec<u64>,
    /// Accepted txids missing from at least one node.
    lost: u64,
    converged_height: Option<u64>,
}

/// Reads every node's best chain up to the converged height (or its own
/// tip when the nodes did not converge) and counts the accepted txids each
/// one lacks.
pub(super) async fn verify(
    plan: &Plan,
    run: &Run,
    converged_height: Option<u64>,
) -> anyhow::Result<Verification> {
    let accepted_txids: HashSet<TxId> = run.tracker().accepted.keys().copied().collect();
    let mut missing_per_node = Vec::with_capacity(plan.apis.len());
    let mut missing_anywhere: HashSet<TxId> = HashSet::new();
    let mut final_chain: Option<HashSet<BlockHash>> = None;
    for api in &plan.apis {
        let up_to = match converged_height {
            Some(height) => height,
            None => api
                .status()
                .await
                .map(|status| status.height.0)
                .unwrap_or(0),
        };
        let (on_chain, hashes) = chain_contents(api, plan.start_height + 1, up_to).await?;
        final_chain.get_or_insert(hashes);
        let missing: Vec<TxId> = accepted_txids
            .iter()
            .filter(|txid| !on_chain.contains(txid))
            .copied()
            .collect();
        missing_per_node.push(missing.len() as u64);
        missing_anywhere.extend(missing);
    }
    Ok(Verification {
        final_chain: final_chain.unwrap_or_default(),
        missing_per_node,
        lost: missing_anywhere.len() as u64,
        converged_height,
    })
}

/// Every txid and block hash in a node's best chain from height `from` to
/// `to`.
async fn chain_contents(
    api: &Api,
    from: u64,
    to: u64,
) -> anyhow::Result<(HashSet<TxId>, HashSet<BlockHash>)> {
    let mut txids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut height = from;
    while height <= to {
        let blocks = api.blocks(height, VERIFY_PAGE_BLOCKS).await?;
        if blocks.is_empty() {
            break;
        }
        for block in blocks {
            if block.height > Height(to) {
                break;
            }
            height = (block.height + 1).0;
            hashes.insert(block.hash);
            txids.extend(
                block
                    .txs
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|tx| tx.txid),
            );
        }
    }
    Ok((txids, hashes))
}

/// Block propagation figures, over the blocks of the final best chain (a
/// block that lost a race is never connected by most nodes, so it has no
/// arrival time there to measure).
#[derive(Debug, Serialize)]
struct Propagation {
    /// Final-chain blocks of the run seen through events.
    blocks: usize,
    /// Of those, blocks whose arrival every node announced.
    reached_all_nodes: usize,
    /// Time from a block's first arrival (connection to the best chain) on
    /// any node to its arrival on each other node. A node that first
    /// followed a competing block adopts this one only at its reorg, and
    /// that wait counts too.
    delay: LatencySummary,
}

/// The run's clock marks.
pub(super) struct Timing {
    pub(super) start: Instant,
    /// When sending was scheduled to stop.
    pub(super) end: Instant,
    /// When the last sender actually stopped.
    pub(super) send_end: Instant,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    rpc_urls: Vec<String>,
    chain: String,
    target_tps: u32,
    duration_secs: u64,
    senders: u32,
    submitted: u64,
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    confirmed: u64,
    /// Accepted transactions not in any block by the end of the drain.
    unconfirmed: u64,
    /// Accepted per second of sending.
    accepted_tps: f64,
    /// Confirmed transactions over the time from the first submission to
    /// the last confirmation (drain included): the conservative figure.
    confirmed_tps: f64,
    /// Transactions confirmed during the sending window over its length.
    confirmed_tps_while_sending: f64,
    /// Submit to the arrival of the including block on the node it was
    /// submitted to.
    latency: LatencySummary,
    blocks: usize,
    /// Blocks seen during the run that are not in the final best chain.
    stale_blocks: usize,
    max_block_txs: usize,
    propagation: Propagation,
    reorgs: u64,
    txid_mismatches: u64,
    events_missed: u64,
    /// Accepted txids missing from the final best chain of at least one node.
    pub(super) lost: u64,
    missing_per_node: Vec<u64>,
    converged: bool,
    final_height: Option<u64>,
    elapsed_secs: f64,
}

pub(super) fn build_report(
    plan: &Plan,
    run: &Run,
    timing: Timing,
    verification: Verification,
) -> Report {
    let Verification {
        final_chain,
        missing_per_node,
        lost,
        converged_height,
    } = verification;
    let Timing {
        start,
        end,
        send_end,
    } = timing;
    let tracker = run.tracker();
    let mut latencies = Vec::with_capacity(tracker.accepted.len());
    let mut last_confirmation = start;
    let mut confirmed_while_sending = 0u64;
    for (txid, accepted) in &tracker.accepted {
        if let Some(at) = tracker.confirmed_at(txid, accepted) {
            latencies.push(at.saturating_duration_since(accepted.submitted_at));
            last_confirmation = last_confirmation.max(at);
            if at <= end {
                confirmed_while_sending += 1;
            }
        }
    }
    let mut delays = Vec::new();
    let mut blocks_by_event = 0;
    let mut reached_all = 0;
    let mut max_block_txs = 0;
    let mut stale_blocks = 0;
    for (hash, block) in &tracker.blocks {
        max_block_txs = max_block_txs.max(block.txids.as_ref().map_or(0, Vec::len));
        if !final_chain.contains(hash) {
            stale_blocks += 1;
            continue;
        }
        let by_event: Vec<Instant> = block
            .arrivals
            .iter()
            .flatten()
            .filter(|(_, via_event)| *via_event)
            .map(|(at, _)| *at)
            .collect();
        let Some(first) = by_event.iter().min().copied() else {
            continue;
        };
        blocks_by_event += 1;
        if by_event.len() == tracker.n_urls {
            reached_all += 1;
        }
        let mut skipped_first = false;
        for at in by_event {
            if at == first && !skipped_first {
                skipped_first = true;
                continue;
            }
            delays.push(at - first);
        }
    }
    let confirmed = tracker.confirmed;
    let accepted = tracker.accepted.len() as u64;
    let sending_secs = (send_end - start).as_secs_f64().max(1e-9);
    let confirm_span = (last_confirmation - start).as_secs_f64();
    Report {
        rpc_urls: plan.apis.iter().map(|api| api.url().to_string()).collect(),
        chain: run.spec.name.clone(),
        target_tps: plan.tps,
        duration_secs: plan.duration.as_secs(),
        senders: plan.n_senders as u32,
        submitted: tracker.submitted,
        accepted,
        rejected: tracker.rejected.clone(),
        confirmed,
        unconfirmed: accepted.saturating_sub(confirmed),
        accepted_tps: accepted as f64 / sending_secs,
        confirmed_tps: if confirm_span > 0.0 {
            confirmed as f64 / confirm_span
        } else {
            0.0
        },
        confirmed_tps_while_sending: confirmed_while_sending as f64
            / (end - start).as_secs_f64().max(1e-9),
        latency: LatencySummary::from_durations(latencies),
        blocks: tracker.blocks.len(),
        stale_blocks,
        max_block_txs,
        propagation: Propagation {
            blocks: blocks_by_event,
            reached_all_nodes: reached_all,
            delay: LatencySummary::from_durations(delays),
        },
        reorgs: tracker.reorgs,
        txid_mismatches: tracker.txid_mismatches,
        events_missed: tracker.events_missed,
        lost,
        missing_per_node,
        converged: converged_height.is_some(),
        final_height: converged_height,
        elapsed_secs: start.elapsed().as_secs_f64(),
    }
}

impl Report {
    pub(super) fn describe(&self) -> String {
        let rejected_total: u64 = self.rejected.values().sum();
        let rejected = if self.rejected.is_empty() {
            String::new()
        } else {
            let codes: Vec<String> = self
                .rejected
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            format!(" ({})", codes.join(", "))
        };
        let verdict = if self.lost == 0 {
            "every accepted tx is confirmed on every node".to_string()
        } else {
            format!("missing per node: {:?}", self.missing_per_node)
        };
        let convergence = match self.final_height {
            Some(height) => format!("all nodes on one tip at height {height}"),
            None => "nodes did NOT converge within the drain timeout".to_string(),
        };
        format!(
            "load report: {} nodes, chain {}, {} senders, target {} tx/s for {} s\n\
             \x20 submitted    {}\n\
             \x20 accepted     {} ({:.1} tx/s)\n\
             \x20 rejected     {rejected_total}{rejected}\n\
             \x20 confirmed    {} ({:.1} tx/s first submit to last confirmation; {:.1} tx/s while sending)\n\
             \x20 unconfirmed  {}\n\
             \x20 latency      submit to confirmed: {}\n\
             \x20 blocks       {} (largest {} txs), {} stale, {} reorgs, {} events dropped for us\n\
             \x20 propagation  first node to each other node: {} ({} final-chain blocks, {} reached all nodes)\n\
             \x20 lost         {} ({verdict})\n\
             \x20 convergence  {convergence}\n\
             \x20 elapsed      {:.1} s\n",
            self.rpc_urls.len(),
            self.chain,
            self.senders,
            self.target_tps,
            self.duration_secs,
            self.submitted,
            self.accepted,
            self.accepted_tps,
            self.confirmed,
            self.confirmed_tps,
            self.confirmed_tps_while_sending,
            self.unconfirmed,
            self.latency.describe(),
            self.blocks,
            self.max_block_txs,
            self.stale_blocks,
            self.reorgs,
            self.events_missed,
            self.propagation.delay.describe(),
            self.propagation.blocks,
            self.propagation.reached_all_nodes,
            self.lost,
            self.elapsed_secs,
        )
    }
}
