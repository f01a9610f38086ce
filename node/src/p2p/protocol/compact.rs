//! Compact block relay: a new block travels as its header plus an 8-byte
//! short id per tx, and the receiver rebuilds it from its own mempool,
//! asking only for the txs it lacks. Each node asks the (at most three)
//! peers that most recently brought it a new block first to push their
//! new blocks compactly at once (high-bandwidth mode, `SendCompact`);
//! from the others it fetches announced blocks as `CompactBlock`s. The
//! mempool work runs in the driver (`Action::Rebuild`); this module keeps
//! the bookkeeping: which blocks are being rebuilt, what was asked, and
//! when to give up and fetch the block whole.

use super::{Action, ChainView, ConnId, MetricUpdate, NetworkState};
use crate::p2p::compact::{RebuildJob, Rebuilt};
use crate::p2p::message::{CompactBlock, InvItem, Message, MAX_HIGH_BANDWIDTH_PEERS};
use crate::p2p::BlockVerdict;
use ledger::{Block, BlockHash, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::time::Mono;

/// Blocks being rebuilt or waiting for their missing txs at once; beyond
/// this a compact block is fetched whole.
const MAX_PARTIAL_BLOCKS: usize = 16;
/// How long a peer has to answer `GetBlockTxs` before the block is
/// fetched whole.
const BLOCK_TXS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a rebuilt block waits for its parent's verdict before it is
/// handed to validation anyway (where it becomes an orphan).
const PARENT_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A block waiting for the txs we asked its sender for.
struct Partial {
    from: ConnId,
    compact: CompactBlock,
    found: Vec<Option<Transaction>>,
    asked_at: Mono,
    received_at: Mono,
}

/// The compact-relay state of the core.
#[derive(Default)]
pub(super) struct CompactRelay {
    /// Peers we asked to push compact blocks, the most recent first
    /// deliverer first.
    high_bandwidth: Vec<ConnId>,
    /// Blocks handed to the driver to rebuild: who sent them, whether
    /// this is the second pass, with the txs it sent (`GetBlockTxs`), and
    /// when the compact block came.
    rebuilding: BTreeMap<BlockHash, (ConnId, bool, Mono)>,
    partial: BTreeMap<BlockHash, Partial>,
    /// Blocks handed to validation (`ImportBlock`) and not judged yet.
    /// The importer takes blocks in order, so a child may follow them.
    pub(super) importing: BTreeSet<BlockHash>,
    /// Rebuilt blocks whose parent is still being rebuilt or finished:
    /// by hash, (parent, sender, block, since). Imported after the
    /// parent, so that a node a block behind under load does not turn
    /// every next compact block into a whole-block fetch and an orphan.
    waiting: BTreeMap<BlockHash, (BlockHash, ConnId, Block, Mono)>,
}

impl CompactRelay {
    fn busy(&self) -> usize {
        self.rebuilding.len() + self.partial.len() + self.waiting.len()
    }

    fn in_progress(&self, hash: &BlockHash) -> bool {
        self.rebuilding.contains_key(hash)
            || self.partial.contains_key(hash)
            || self.waiting.contains_key(hash)
    }

    /// Whether `hash` is on its way to the chain: being rebuilt, waiting
    /// for txs or its own parent, or with the validator.
    fn on_its_way(&self, hash: &BlockHash) -> bool {
        self.in_progress(hash) || self.importing.contains(hash)
    }

    /// Whether we asked `peer` to push us compact blocks.
    pub(super) fn is_high_bandwidth(&self, peer: ConnId) -> bool {
        self.high_bandwidth.contains(&peer)
    }
}

impl<V: ChainView> NetworkState<V> {
    /// A new outbound peer fills a free high-bandwidth place, so a node
    /// gets compact pushes before any peer has proven itself fast.
    pub(super) fn compact_peer_ready(&mut self, id: ConnId, outbound: bool) {
        if outbound && self.compact.high_bandwidth.len() < MAX_HIGH_BANDWIDTH_PEERS {
            self.compact.high_bandwidth.push(id);
            self.send(
                id,
                Message::SendCompact {
                    high_bandwidth: true,
                },
            );
        }
    }

    pub(super) fn compact_peer_gone(&mut self, id: ConnId) {
        self.compact.high_bandwidth.retain(|peer| *peer != id);
        let dropped: Vec<BlockHash> = self
            .compact
            .partial
            .iter()
            .filter(|(_, partial)| partial.from == id)
            .map(|(hash, _)| *hash)
            .collect();
        for hash in dropped {
            self.compact.partial.remove(&hash);
            // Its other announcers are asked in turn.
            self.refetch_whole(hash, None);
        }
    }

    /// `id` brought us a new block first: it becomes our first
    /// high-bandwidth peer, displacing the one that has gone longest
    /// without doing so.
    pub(super) fn promote_high_bandwidth(&mut self, id: ConnId) {
        let list = &mut self.compact.high_bandwidth;
        if list.first() == Some(&id) {
            return;
        }
        let was_listed = list.contains(&id);
        list.retain(|peer| *peer != id);
        list.insert(0, id);
        let demoted = if list.len() > MAX_HIGH_BANDWIDTH_PEERS {
            list.pop()
        } else {
            None
        };
        if !was_listed {
            self.send(
                id,
                Message::SendCompact {
                    high_bandwidth: true,
                },
            );
        }
        if let Some(demoted) = demoted {
            self.send(
                demoted,
                Message::SendCompact {
                    high_bandwidth: false,
                },
            );
        }
    }

    pub(super) fn on_send_compact(&mut self, id: ConnId, high_bandwidth: bool) {
        if let Some(peer) = self.peer_mut(id) {
            peer.wants_compact = high_bandwidth;
            // One entry, found by id: a peer may send this as often as it
            // likes, so it does not rebuild the list.
            if let Ok(at) = self
                .relay_peers
                .binary_search_by_key(&id, |(peer, ..)| *peer)
            {
                self.relay_peers[at].2 = high_bandwidth;
            }
        }
    }

    pub(super) fn on_compact_block(&mut self, id: ConnId, compact: CompactBlock) {
        let now = self.now.mono;
        let hash = compact.header.hash();
        let item = InvItem::Block(hash);
        self.mark_known(id, &item);
        if let Some(peer) = self.peer_mut(id) {
            peer.best_height = peer.best_height.max(compact.header.height);
        }
        if self.view.has_block(&hash) {
            self.requests.done(&item);
            return;
        }
        if self.compact.on_its_way(&hash) {
            // Another high-bandwidth peer pushed the same block.
            self.metric_inc("p2p_compact_blocks_total", ("result", "duplicate"));
            return;
        }
        let requested = self.requests.received(&item, now) || self.compact.is_high_bandwidth(id);
        if !requested {
            // Pushed by a peer we never asked: treated as an announcement.
            self.metric_inc("p2p_compact_blocks_total", ("result", "unsolicited"));
            self.on_inv(id, vec![item]);
            return;
        }
        let parent = compact.header.prev_hash;
        if !self.view.has_block(&parent) && !self.compact.on_its_way(&parent) {
            // We are behind: the whole block goes through the orphan
            // path, which starts a sync.
            self.metric_inc("p2p_compact_blocks_total", ("result", "unknown_parent"));
            self.refetch_whole(hash, Some(id));
            return;
        }
        if self.compact.busy() >= MAX_PARTIAL_BLOCKS {
            self.metric_inc("p2p_compact_blocks_total", ("result", "over_cap"));
            self.refetch_whole(hash, Some(id));
            return;
        }
        self.compact.rebuilding.insert(hash, (id, false, now));
        self.push(Action::Rebuild {
            from: id,
            job: Box::new(RebuildJob {
                compact,
                found: None,
                fill: Vec::new(),
            }),
        });
    }

    /// The driver's answer to `Action::Rebuild`.
    pub(super) fn on_rebuilt(&mut self, from: ConnId, compact: CompactBlock, rebuilt: Rebuilt) {
        let hash = compact.header.hash();
        let (filled, received_at) = match self.compact.rebuilding.remove(&hash) {
            Some((_, filled, received_at)) => (filled, received_at),
            None => (false, self.now.mono),
        };
        match rebuilt {
            Rebuilt::Complete(block) => {
                let label = if filled { "filled" } else { "rebuilt" };
                self.metric_inc("p2p_compact_blocks_total", ("result", label));
                self.metric_observe("p2p_compact_rebuild_seconds", received_at);
                self.import_rebuilt(from, block);
            }
            Rebuilt::Missing { found, missing } => {
                if self.peer_mut(from).is_none() {
                    self.refetch_whole(hash, None);
                    return;
                }
                self.metric_add(
                    "p2p_compact_txs_requested_total",
                    ("kind", "tx"),
                    missing.len() as u64,
                );
                self.compact.partial.insert(
                    hash,
                    Partial {
                        from,
                        compact,
                        found,
                        asked_at: self.now.mono,
                        received_at,
                    },
                );
                self.send(
                    from,
                    Message::GetBlockTxs {
                        block: hash,
                        indexes: missing,
                    },
                );
            }
            Rebuilt::Failed(reason) => {
                tracing::debug!(%hash, reason, "compact block not rebuilt; fetching it whole");
                self.metric_inc("p2p_compact_blocks_total", ("result", reason));
                self.refetch_whole(hash, Some(from));
            }
        }
    }

    /// The driver's answer to `Action::Rebuild` when the block was rebuilt
    /// in full and judged where it was rebuilt: counted as a rebuild, then
    /// as the verdict of an import (credit, sync, children waiting for it).
    pub(super) fn on_rebuilt_judged(
        &mut self,
        from: ConnId,
        compact: &CompactBlock,
        verdict: BlockVerdict,
        judging: Duration,
    ) {
        let hash = compact.header.hash();
        let (filled, received_at) = match self.compact.rebuilding.remove(&hash) {
            Some((_, filled, received_at)) => (filled, received_at),
            None => (false, self.now.mono),
        };
        let label = if filled { "filled" } else { "rebuilt" };
        self.metric_inc("p2p_compact_blocks_total", ("result", label));
        let rebuilding = self
            .now
            .mono
            .saturating_duration_since(received_at)
            .saturating_sub(judging);
        self.push(Action::Metric(MetricUpdate::Observe {
            name: "p2p_compact_rebuild_seconds",
            micros: u64::try_from(rebuilding.as_micros()).unwrap_or(u64::MAX),
        }));
        // Counted as `hand_to_validation` counts an import, for the
        // verdict to take back (it never waited, so no bytes).
        self.block_backlog += 1;
        self.compact.importing.insert(hash);
        self.on_block_verdict(Some(from), hash, 0, verdict);
    }

    pub(super) fn on_block_txs(&mut self, id: ConnId, hash: BlockHash, txs: Vec<Transaction>) {
        let Some(partial) = self.compact.partial.remove(&hash) else {
            self.metric_inc("p2p_dropped_total", ("reason", "unsolicited_block_txs"));
            return;
        };
        if partial.from != id {
            self.compact.partial.insert(hash, partial);
            self.metric_inc("p2p_dropped_total", ("reason", "unsolicited_block_txs"));
            return;
        }
        self.metric_observe("p2p_compact_block_txs_wait_seconds", partial.asked_at);
        self.compact
            .rebuilding
            .insert(hash, (id, true, partial.received_at));
        self.push(Action::Rebuild {
            from: id,
            job: Box::new(RebuildJob {
                compact: partial.compact,
                found: Some(partial.found),
                fill: txs,
            }),
        });
    }

    pub(super) fn on_get_block_txs(&mut self, id: ConnId, hash: BlockHash, indexes: Vec<u32>) {
        if self.view.has_block(&hash) {
            self.push(Action::Answer {
                conn: id,
                items: vec![super::Outgoing::BlockTxs {
                    block: hash,
                    indexes,
                }],
            });
        } else {
            self.send(id, Message::NotFound(vec![InvItem::Block(hash)]));
        }
    }

    /// A `NotFound` for a block we are finishing from that peer.
    pub(super) fn compact_not_found(&mut self, id: ConnId, hash: &BlockHash) -> bool {
        if self
            .compact
            .partial
            .get(hash)
            .is_some_and(|partial| partial.from == id)
        {
            self.compact.partial.remove(hash);
            self.refetch_whole(*hash, None);
            return true;
        }
        false
    }

    /// Blocks whose missing txs never came are fetched whole.
    pub(super) fn expire_partial_blocks(&mut self) {
        let now = self.now.mono;
        let late: Vec<BlockHash> = self
            .compact
            .partial
            .iter()
            .filter(|(_, partial)| {
                now.saturating_duration_since(partial.asked_at) > BLOCK_TXS_TIMEOUT
            })
            .map(|(hash, _)| *hash)
            .collect();
        for hash in late {
            if let Some(partial) = self.compact.partial.remove(&hash) {
                self.metric_inc("p2p_compact_blocks_total", ("result", "timeout"));
                self.refetch_whole(hash, Some(partial.from));
            }
        }
    }

    /// Fetches `hash` as a full block from `from` (if still connected), or
    /// from the next peer that announced it.
    fn refetch_whole(&mut self, hash: BlockHash, from: Option<ConnId>) {
        let item = InvItem::Block(hash);
        let now = self.now.mono;
        match from.filter(|id| self.peer_mut(*id).is_some()) {
            Some(id) => {
                self.requests.again(item, id, now);
                self.send(id, Message::GetData(vec![item]));
            }
            None => {
                let usable = self.ready_set();
                if let Some(next) = self
                    .requests
                    .ask_next(item, now, &|peer| usable.contains(&peer))
                {
                    self.send(next, Message::GetData(vec![item]));
                }
            }
        }
    }

    /// A block rebuilt from a compact one goes to validation like a
    /// requested block, after its parent if that is still being rebuilt.
    fn import_rebuilt(&mut self, from: ConnId, block: Block) {
        let hash = block.hash();
        if self.view.has_block(&hash) {
            self.requests.done(&InvItem::Block(hash));
            return;
        }
        let parent = block.header.prev_hash;
        if !self.view.has_block(&parent) && self.compact.in_progress(&parent) {
            self.metric_inc("p2p_compact_blocks_total", ("result", "waiting_parent"));
            let now = self.now.mono;
            self.compact
                .waiting
                .insert(hash, (parent, from, block, now));
            return;
        }
        self.hand_to_validation(from, hash, block);
    }

    /// Hands a rebuilt block to the validator, which takes blocks in order.
    fn hand_to_validation(&mut self, from: ConnId, hash: BlockHash, block: Block) {
        let size = block.encoded_len();
        self.block_backlog += 1;
        // Taken back by the verdict, as for any other imported block.
        self.block_backlog_bytes = self.block_backlog_bytes.saturating_add(size);
        self.compact.importing.insert(hash);
        self.push(Action::ImportBlock {
            from: Some(from),
            block: Box::new(block),
            size,
            from_sync: false,
        });
    }

    /// `hash` was judged: rebuilt children waiting for it go to
    /// validation (which judges them against whatever became of it).
    pub(super) fn release_children(&mut self, hash: &BlockHash) {
        self.compact.importing.remove(hash);
        let children: Vec<BlockHash> = self
            .compact
            .waiting
            .iter()
            .filter(|(_, (parent, ..))| parent == hash)
            .map(|(child, _)| *child)
            .collect();
        for child in children {
            if let Some((_, from, block, _)) = self.compact.waiting.remove(&child) {
                self.import_rebuilt(from, block);
            }
        }
    }

    /// Rebuilt blocks whose parent never came go to validation anyway.
    pub(super) fn expire_waiting_children(&mut self) {
        let now = self.now.mono;
        let late: Vec<BlockHash> = self
            .compact
            .waiting
            .iter()
            .filter(|(_, (.., since))| now.saturating_duration_since(*since) > PARENT_WAIT_TIMEOUT)
            .map(|(hash, _)| *hash)
            .collect();
        for hash in late {
            if let Some((_, from, block, _)) = self.compact.waiting.remove(&hash) {
                self.metric_inc("p2p_compact_blocks_total", ("result", "parent_timeout"));
                self.hand_to_validation(from, hash, block);
            }
        }
    }
}
