//! Relay: announce-then-fetch gossip of blocks and txs. What the node
//! accepts is announced to every peer not known to have it (blocks at once
//! and before txs, txs batched); announcements of what we lack are fetched
//! from one peer at a time and re-asked from another on `NotFound` or
//! timeout; received objects go to the node for validation, at most a
//! bounded backlog of them unrequested; peers' requests are answered from
//! the chain and the mempool; invalid objects from peers that must have
//! known get them banned.

use super::gossip::Announced;
use super::time::Mono;
use super::{Action, ChainView, ConnId, NetworkState, Outgoing};
use crate::events::NodeEvent;
use crate::p2p::message::{InvItem, Message, MAX_HEADERS, MAX_INV_ITEMS, MAX_SENDER_TXS};
use crate::p2p::{BlockVerdict, TxVerdict};
use ledger::{Address, Block, BlockHash, Transaction, TxId};
use rand::Rng;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

/// Received objects waiting for validation beyond which unrequested ones
/// are dropped.
const MAX_UNSOLICITED_BACKLOG: usize = 1_024;
/// Bytes of blocks waiting for validation beyond which blocks that no sync
/// asked for are dropped (a sync's own are bounded by its window).
pub(super) const MAX_BLOCK_BACKLOG_BYTES: usize = 64 * 1024 * 1024;
/// Pending txs announced to a new peer: a whole default mempool.
const MEMPOOL_ANNOUNCE_LIMIT: usize = 50_000;
/// A gap in one sender's nonces is asked for at most this often.
const GAP_RETRY: Duration = Duration::from_secs(2);
/// Gaps being filled at once, over all senders.
const MAX_GAP_REQUESTS: usize = 4_096;
/// Pending txs are announced again after this many blocks (drawn anew each
/// time, so that nodes do not all do it on the same block)...
pub(super) const REANNOUNCE_EVERY_BLOCKS: Range<u32> = 3..6;
/// ...at most this many, the longest pending first.
const REANNOUNCE_LIMIT: usize = 1_000;
/// An announcement naming at least this many txs we hold gets a debug
/// line naming the peer (fewer are ordinary gossip overlap).
const KNOWN_TXS_WORTH_LOGGING: u64 = 1_000;

/// The longest wait for a tx announcement round, in mean intervals.
const TX_ROUND_MAX_FACTOR: f64 = 8.0;

/// How `flush_announcements` announces an item to a peer, in the order
/// each peer gets them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fresh {
    /// A block pushed as a `CompactBlock`.
    Compact,
    /// A block in an `Inv`.
    Inv,
    /// A tx in an `Inv` (after the blocks').
    TxInv,
}

/// Nonces of one sender asked of a peer.
pub(super) struct GapRequest {
    peer: ConnId,
    nonces: Range<u64>,
    asked_at: Mono,
}

impl<V: ChainView> NetworkState<V> {
    pub(super) fn on_node_event(&mut self, event: NodeEvent) {
        let now = self.now.mono;
        match event {
            // Relayed the moment it is validated, while the chain writer
            // commits it: each hop then costs a check, not a commit.
            NodeEvent::BlockValidated { hash, .. } => {
                self.sync_block_held(&hash);
                self.pending_blocks.push(InvItem::Block(hash));
                self.flush_announcements();
            }
            // Announced already when validated (peers' known sets skip
            // it); kept for backends that only report connections.
            NodeEvent::BlockConnected { block, .. } => {
                self.pending_blocks.push(InvItem::Block(block.hash()));
                self.pending_since.get_or_insert(now);
                self.blocks_since_reannounce += 1;
                if self.blocks_since_reannounce >= self.reannounce_after && !self.sync.is_active() {
                    self.reannounce_pending();
                }
            }
            NodeEvent::TxAccepted { tx } => {
                self.pending_txs.push(InvItem::Tx(tx.txid()));
                self.arm_tx_announcement();
            }
            NodeEvent::TxReadmitted { tx } => {
                // What we announced while it sat in a block may never have
                // arrived (a partition drops messages without closing the
                // connection), so no peer is assumed to know it any more.
                let item = InvItem::Tx(tx.txid());
                self.known.forget_all(&item);
                self.pending_txs.push(item);
                self.arm_tx_announcement();
            }
            NodeEvent::Reorg { .. } | NodeEvent::TxDropped { .. } => {}
        }
    }

    /// Announces what the node accepted to every peer not known to have it:
    /// blocks first, in their own `Inv`, then txs.
    /// Peers that asked for high-bandwidth compact relay get each new
    /// block pushed as a `CompactBlock` instead of its `Inv`.
    pub(super) fn flush_announcements(&mut self) {
        self.pending_since = None;
        let blocks = std::mem::take(&mut self.pending_blocks);
        let txs = if self.tx_round_due() {
            self.tx_round_at = None;
            std::mem::take(&mut self.pending_txs)
        } else {
            Vec::new()
        };
        // The peers in `ConnId` order: their bits, and whether they take
        // new blocks as compact blocks.
        debug_assert_eq!(self.relay_peers, self.relay_peers_from_conns());
        if self.relay_peers.is_empty() {
            return;
        }
        // Each item's entry once (one table for every peer), then each
        // peer's bit in it: a block goes compact to the peers that asked
        // for that, as an `Inv` to the rest, a tx as an `Inv`.
        let mut fresh: Vec<(ConnId, Fresh, InvItem)> = Vec::new();
        for (item, is_block) in blocks
            .iter()
            .map(|item| (item, true))
            .chain(txs.iter().map(|item| (item, false)))
        {
            let cell = self.known.entry(self.known.fingerprint(item));
            for (id, slot, wants_compact) in &self.relay_peers {
                if self.known.test_and_set(cell, *slot) {
                    let kind = match (is_block, wants_compact) {
                        (true, true) => Fresh::Compact,
                        (true, false) => Fresh::Inv,
                        (false, _) => Fresh::TxInv,
                    };
                    fresh.push((*id, kind, *item));
                }
            }
        }
        // Sent per peer in `ConnId` order: compact blocks, then the `Inv`
        // of blocks, then that of txs, each in the order queued (the sort
        // is stable).
        fresh.sort_by_key(|(id, kind, _)| (*id, *kind));
        let mut rest = &fresh[..];
        while let Some(&(id, kind, _)) = rest.first() {
            let run = rest
                .iter()
                .take_while(|(other, other_kind, _)| *other == id && *other_kind == kind)
                .count();
            let (group, tail) = rest.split_at(run);
            rest = tail;
            if kind == Fresh::Compact {
                for (_, _, item) in group {
                    let hash = BlockHash(item.hash());
                    self.push(Action::PushCompact { conn: id, hash });
                }
            } else {
                for chunk in group.chunks(MAX_INV_ITEMS) {
                    let items = chunk.iter().map(|(_, _, item)| *item).collect();
                    self.send(id, Message::Inv(items));
                }
            }
        }
    }

    /// Announces the longest-pending txs again to every peer, even those
    /// counted as knowing them: an announcement may have been passed over
    /// (request caps) or its fetch refused, and a sender whose nonce never
    /// reached the miner waits for good otherwise. Peers that have them
    /// only look them up.
    fn reannounce_pending(&mut self) {
        self.blocks_since_reannounce = 0;
        self.reannounce_after = self.rng.gen_range(REANNOUNCE_EVERY_BLOCKS);
        let stale = self.view.oldest_pending_txids(REANNOUNCE_LIMIT);
        if stale.is_empty() {
            return;
        }
        let items: Vec<InvItem> = stale.into_iter().map(InvItem::Tx).collect();
        for item in &items {
            self.known.forget_all(item);
        }
        self.metric_add("p2p_reannounced_total", ("kind", "tx"), items.len() as u64);
        self.pending_txs.extend(items);
        self.arm_tx_announcement();
    }

    /// Schedules the announcement of the txs just queued: within the batch
    /// window, or with announcement rounds on, at the next round (drawn
    /// when the first tx waits for it).
    fn arm_tx_announcement(&mut self) {
        let mean = self.config.timing.tx_announce_interval;
        if mean.is_zero() {
            self.pending_since.get_or_insert(self.now.mono);
        } else if self.tx_round_at.is_none() {
            // Exponential gaps; 1 - u lies in (0, 1], so the log is finite,
            // and the cap keeps one unlucky draw from stalling relay.
            let draw = -(1.0 - self.rng.gen::<f64>()).ln();
            let wait = mean.mul_f64(draw.min(TX_ROUND_MAX_FACTOR));
            self.tx_round_at = Some(self.now.mono + wait);
        }
    }

    /// Whether the pending txs go out with this flush.
    fn tx_round_due(&self) -> bool {
        self.config.timing.tx_announce_interval.is_zero()
            || self.tx_round_at.is_some_and(|at| self.now.mono >= at)
    }

    /// Announces our pending txs to a new peer, oldest first so that a
    /// sender's nonces arrive in order.
    pub(super) fn announce_mempool(&mut self, id: ConnId) {
        let mut pending = self.view.mempool_txids(MEMPOOL_ANNOUNCE_LIMIT);
        pending.reverse();
        let Some(slot) = self.known_slot(id) else {
            return;
        };
        let fresh: Vec<InvItem> = pending
            .into_iter()
            .map(InvItem::Tx)
            .filter(|item| self.known.mark(slot, item))
            .collect();
        for chunk in fresh.chunks(MAX_INV_ITEMS) {
            self.send(id, Message::Inv(chunk.to_vec()));
        }
    }

    /// Answers a `GetData` from our chain and mempool, in request order:
    /// blocks we do not hold go into one `NotFound` at the end; txs are
    /// looked up as they are sent (`Outgoing::Tx`), and those gone by then
    /// are listed the same way.
    pub(super) fn on_get_data(&mut self, id: ConnId, items: Vec<InvItem>) {
        let mut answer = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for item in items {
            match item {
                InvItem::Block(hash) if self.view.has_block(&hash) => {
                    answer.push(Outgoing::Block(hash))
                }
                InvItem::CompactBlock(hash) if self.view.has_block(&hash) => {
                    answer.push(Outgoing::CompactBlock(hash))
                }
                // Named as the block, which is what the asker tracks.
                InvItem::Block(hash) | InvItem::CompactBlock(hash) => {
                    missing.push(InvItem::Block(hash))
                }
                InvItem::Tx(txid) => answer.push(Outgoing::Tx(txid)),
            }
        }
        if !missing.is_empty() {
            answer.push(Outgoing::Message(Message::NotFound(missing)));
        }
        if !answer.is_empty() {
            self.push(Action::Answer {
                conn: id,
                items: answer,
            });
        }
    }

    pub(super) fn on_get_headers(&mut self, id: ConnId, locator: Vec<BlockHash>) {
        let headers = self.view.headers_after(&locator, MAX_HEADERS);
        self.push(Action::Answer {
            conn: id,
            items: vec![Outgoing::Message(Message::Headers(headers))],
        });
    }

    pub(super) fn on_inv(&mut self, id: ConnId, items: Vec<InvItem>) {
        let now = self.now.mono;
        let mut fetch = Vec::new();
        let mut new_block = false;
        let mut over_cap: BTreeMap<&'static str, u64> = BTreeMap::new();
        // This peer's fetch room, worked out when the first item we lack
        // needs it: most announcements name only what we hold, and nothing
        // before that item changes what it would be.
        let mut room: Option<usize> = None;
        let mut known_txs = 0u64;
        // Every item counts as known to the peer; nothing below reads
        // that, so it is done first, in one pass over the peer's set.
        if let Some(slot) = self.known_slot(id) {
            for item in &items {
                self.known.mark(slot, item);
            }
        }
        // Gossip announces most txs one at a time: such an `Inv` is
        // answered without building lists.
        let single = match items.as_slice() {
            [InvItem::Tx(txid)] => Some(self.view.has_tx(txid)),
            _ => None,
        };
        let mut have_txs = if single.is_some() {
            Vec::new()
        } else {
            let txids: Vec<TxId> = items
                .iter()
                .filter_map(|item| match item {
                    InvItem::Tx(txid) => Some(*txid),
                    _ => None,
                })
                .collect();
            self.view.has_txs(&txids)
        }
        .into_iter();
        for item in items {
            let have = match item {
                InvItem::Tx(_) => single.or_else(|| have_txs.next()).unwrap_or(false),
                InvItem::Block(hash) => self.view.has_block(&hash),
                // Only ever asked for, never announced.
                InvItem::CompactBlock(_) => continue,
            };
            if have {
                known_txs += u64::from(!item.is_block());
                // A peer announcing our own tip is at least that high; this
                // keeps `GET /v1/peers` heights current for peers whose blocks
                // reach us first through someone else.
                if let InvItem::Block(hash) = item {
                    let tip = self.view.tip();
                    if hash == tip.hash {
                        if let Some(peer) = self.peer_mut(id) {
                            peer.best_height = peer.best_height.max(tip.height);
                        }
                    }
                }
                continue;
            }
            new_block |= item.is_block();
            let left = match room {
                Some(left) => left,
                None => *room.insert(self.fetch_room(id)),
            };
            if left == 0 && !self.requests.is_tracked(&item) {
                // Over this peer's share (see `ratelimit::fetch_room`).
                *over_cap.entry("peer_share").or_default() += 1;
                continue;
            }
            match self.requests.announced(item, id, now) {
                Announced::Fetch => {
                    room = Some(left - 1);
                    fetch.push(item)
                }
                other => {
                    if let Some(label) = other.over_cap() {
                        *over_cap.entry(label).or_default() += 1;
                    }
                }
            }
        }
        if known_txs > 0 {
            // Legal, and answered from memory (`ChainView::has_tx`), so a
            // flood of known txids costs little. Counted in the metric at
            // the next maintenance round.
            self.known_tx_announcements = self.known_tx_announcements.saturating_add(known_txs);
            if known_txs >= KNOWN_TXS_WORTH_LOGGING {
                tracing::debug!(
                    peer = %id,
                    known_txs,
                    rule = "known_announcements_are_key_lookups",
                    "peer announced txs we hold"
                );
            }
        }
        // Passed over, not lost: the gap recovery and the announcer's own
        // re-announcements bring these back.
        for (label, count) in over_cap {
            self.metric_add("p2p_announcements_ignored_total", ("reason", label), count);
        }
        if new_block {
            if let Some(peer) = self.peer_mut(id) {
                peer.caught_up = false;
            }
        }
        if fetch.is_empty() {
            return;
        }
        // Blocks first: they may make some of the txs redundant. A new
        // block is asked for in its compact form, unless a sync is under
        // way (we are behind and its parent is likely missing). Whether
        // one is reads every peer's sync state, so it is asked only when a
        // block is fetched.
        fetch.sort_by_key(|item| !item.is_block());
        if new_block && !self.sync.is_active() {
            for item in &mut fetch {
                if let InvItem::Block(hash) = *item {
                    *item = InvItem::CompactBlock(hash);
                }
            }
        }
        self.send(id, Message::GetData(fetch));
    }

    pub(super) fn on_not_found(&mut self, id: ConnId, items: Vec<InvItem>) {
        let now = self.now.mono;
        let usable = self.ready_set();
        let mut again = Vec::new();
        let mut sync_gap = false;
        for item in items {
            if let InvItem::Block(hash) = item {
                if self.compact_not_found(id, &hash) {
                    continue;
                }
                if self.sync.block_unavailable(id, &hash) {
                    // Its headers named it, but it no longer has it (it
                    // reorganised): other peers that named it are asked.
                    self.requests.done(&item);
                    sync_gap = true;
                    continue;
                }
            }
            if let Some(next) = self
                .requests
                .not_found(item, id, now, &|peer| usable.contains(&peer))
            {
                again.push((item, next));
            }
        }
        self.send_requests(again);
        if sync_gap {
            self.sync_progress();
        }
    }

    /// Txs received from peers and handed to validation, not yet judged,
    /// leaving out the share of the peer with the most: how far this
    /// node's mempool lags what the network relays, which no single peer
    /// can inflate by streaming txs at us (the API refuses new txs while
    /// it is high, `relay_backlog`).
    pub fn relay_backlog(&self) -> usize {
        // The driver asks after every input; most of the time nothing
        // waits, and then no connection needs reading.
        if self.tx_backlog == 0 {
            return 0;
        }
        let largest = self
            .conns
            .values()
            .filter_map(|conn| conn.peer.as_ref())
            .map(|peer| peer.tx_backlog)
            .max()
            .unwrap_or(0);
        self.tx_backlog.saturating_sub(largest)
    }

    pub(super) fn on_tx(&mut self, id: ConnId, tx: Box<Transaction>) {
        let now = self.now.mono;
        let txid = tx.txid();
        let item = InvItem::Tx(txid);
        self.mark_known(id, &item);
        let asked = self.requests.received(&item, now);
        if asked {
            self.delivered(id);
        }
        let requested = asked || self.gap_requested(id, &tx.sender(), tx.nonce);
        if !requested && self.tx_backlog >= MAX_UNSOLICITED_BACKLOG {
            self.metric_inc("p2p_dropped_total", ("reason", "tx_backlog"));
            return;
        }
        if self.view.has_tx(&txid) {
            self.requests.done(&item);
            return;
        }
        self.tx_backlog += 1;
        if let Some(peer) = self.peer_mut(id) {
            peer.tx_backlog += 1;
        }
        self.push(Action::ImportTx { from: id, tx });
    }

    pub(super) fn on_block(&mut self, id: ConnId, block: Box<Block>) {
        let now = self.now.mono;
        let hash = block.hash();
        let item = InvItem::Block(hash);
        let size = block.encoded_len();
        self.mark_known(id, &item);
        if let Some(peer) = self.peer_mut(id) {
            peer.best_height = peer.best_height.max(block.header.height);
        }
        let requested = self.requests.received(&item, now);
        if requested {
            self.delivered(id);
        } else if self.compact.is_high_bandwidth(id) {
            // Pushed whole because most of it would have been prefilled.
            self.metric_inc("p2p_compact_blocks_total", ("result", "pushed_whole"));
        }
        let from_sync = self.sync.block_received(id, &hash, size, now);
        if !requested && !from_sync && self.block_backlog >= MAX_UNSOLICITED_BACKLOG {
            self.metric_inc("p2p_dropped_total", ("reason", "block_backlog"));
            return;
        }
        if !from_sync && self.block_backlog_bytes.saturating_add(size) > MAX_BLOCK_BACKLOG_BYTES {
            self.metric_inc("p2p_dropped_total", ("reason", "block_backlog_bytes"));
            tracing::debug!(peer = %id, %hash, size, rule = "block_backlog_bytes", "import backlog full: block dropped");
            // Asked again of whoever announces it next.
            self.requests.done(&item);
            return;
        }
        if self.view.has_block(&hash) {
            self.requests.done(&item);
            self.sync_block_held(&hash);
            self.sync_progress();
            return;
        }
        self.block_backlog += 1;
        self.block_backlog_bytes = self.block_backlog_bytes.saturating_add(size);
        self.compact.importing.insert(hash);
        self.push(Action::ImportBlock {
            from: Some(id),
            block,
            size,
            from_sync,
        });
        self.sync_progress();
    }

    pub(super) fn on_tx_verdict(
        &mut self,
        from: ConnId,
        txid: TxId,
        (sender, nonce): (Address, u64),
        verdict: TxVerdict,
    ) {
        self.tx_backlog = self.tx_backlog.saturating_sub(1);
        if let Some(peer) = self.peer_mut(from) {
            peer.tx_backlog = peer.tx_backlog.saturating_sub(1);
        }
        self.requests.done(&InvItem::Tx(txid));
        match verdict {
            TxVerdict::Accepted => {
                let now = self.now.mono;
                if let Some(peer) = self.peer_mut(from) {
                    peer.behaviour.last_tx_at = Some(now);
                }
                self.fill_gap(from, sender, nonce)
            }
            TxVerdict::Known => {}
            TxVerdict::Rejected {
                reason,
                misbehaving: true,
            } => self.ban_peer(from, "bad_tx", format!("tx {txid}: {reason}")),
            TxVerdict::Rejected { reason, .. } => {
                tracing::debug!(peer = %from, %txid, %reason, "peer's tx not admitted");
                self.metric_inc("p2p_txs_refused_total", ("reason", "mempool"));
                // Refused for running too far ahead: its predecessors are
                // what we lack.
                if reason == "nonce_too_high" {
                    self.fill_gap(from, sender, nonce);
                }
            }
        }
    }

    /// After a tx of `sender` with `nonce` came from `peer`: if we lack
    /// nonces below it, asks `peer` (which must have had them to accept
    /// this one) for them by sender and nonce.
    fn fill_gap(&mut self, peer: ConnId, sender: Address, nonce: u64) {
        let first = self.view.next_nonce(&sender);
        if first >= nonce {
            return;
        }
        let now = self.now.mono;
        if let Some(asked) = self.gap_requests.get(&sender) {
            if asked.nonces.contains(&first)
                && now.saturating_duration_since(asked.asked_at) < GAP_RETRY
            {
                return;
            }
        }
        if self.gap_requests.len() >= MAX_GAP_REQUESTS && !self.gap_requests.contains_key(&sender) {
            self.metric_inc("p2p_gap_requests_total", ("result", "over_cap"));
            return;
        }
        let count = (nonce - first).min(u64::from(MAX_SENDER_TXS)) as u32;
        self.gap_requests.insert(
            sender,
            GapRequest {
                peer,
                nonces: first..first + u64::from(count),
                asked_at: now,
            },
        );
        self.metric_inc("p2p_gap_requests_total", ("result", "sent"));
        self.send(
            peer,
            Message::GetSenderTxs {
                sender,
                first_nonce: first,
                count,
            },
        );
    }

    /// Whether `peer` is sending this tx because we asked it by nonce.
    pub(super) fn gap_requested(&self, peer: ConnId, sender: &Address, nonce: u64) -> bool {
        self.gap_requests
            .get(sender)
            .is_some_and(|asked| asked.peer == peer && asked.nonces.contains(&nonce))
    }

    pub(super) fn forget_old_gap_requests(&mut self) {
        let now = self.now.mono;
        self.gap_requests
            .retain(|_, asked| now.saturating_duration_since(asked.asked_at) < GAP_RETRY * 5);
    }

    /// Answers a `GetSenderTxs` with the txs we hold, in nonce order.
    pub(super) fn on_get_sender_txs(
        &mut self,
        id: ConnId,
        sender: Address,
        first_nonce: u64,
        count: u32,
    ) {
        let limit = count.min(MAX_SENDER_TXS) as usize;
        let items: Vec<Outgoing> = self
            .view
            .sender_txs(&sender, first_nonce, limit)
            .into_iter()
            .map(|tx| Outgoing::Message(Message::Tx(Box::new(tx))))
            .collect();
        if !items.is_empty() {
            self.push(Action::Answer { conn: id, items });
        }
    }

    pub(super) fn on_block_verdict(
        &mut self,
        from: Option<ConnId>,
        hash: BlockHash,
        size: usize,
        verdict: BlockVerdict,
    ) {
        self.block_backlog = self.block_backlog.saturating_sub(1);
        self.block_backlog_bytes = self.block_backlog_bytes.saturating_sub(size);
        self.requests.done(&InvItem::Block(hash));
        let orphan = verdict == BlockVerdict::Orphan;
        let for_sync = self.sync.block_judged(&hash, orphan);
        match verdict {
            BlockVerdict::Accepted => {
                let now = self.now.mono;
                if let Some(peer) = from.and_then(|from| self.peer_mut(from)) {
                    peer.behaviour.last_block_at = Some(now);
                    // Who a block came from, for tracing its path across
                    // a network (the simulator's comparison reads it).
                    tracing::debug!(
                        block = %hash,
                        peer = %hex::encode(peer.node_id.as_bytes()),
                        "block accepted from a peer"
                    );
                }
                if let Some(from) = from.filter(|_| !for_sync) {
                    self.promote_high_bandwidth(from);
                }
            }
            BlockVerdict::SideBranch => {
                // Stored, but not our best chain: no eviction protection
                // and no high-bandwidth promotion for it.
                if let Some(from) = from {
                    let remote = self.conns.get(&from).and_then(|conn| conn.remote);
                    tracing::debug!(peer = ?remote, conn = %from, block = %hash, rule = "side_branch_no_credit", "side-branch block from a peer earns no credit");
                    self.metric_inc("p2p_blocks_without_credit_total", ("rule", "side_branch"));
                }
            }
            BlockVerdict::Known => {}
            // A synced block that arrived before its parent waits in the
            // window; the sync already has the headers.
            BlockVerdict::Orphan if for_sync => {}
            BlockVerdict::Orphan => {
                if let Some(from) = from {
                    if let Some(peer) = self.peer_mut(from) {
                        peer.caught_up = false;
                    }
                    self.start_sync(from);
                }
            }
            BlockVerdict::Rejected {
                reason,
                misbehaving,
            } => {
                if misbehaving {
                    if let Some(from) = from {
                        self.ban_peer(from, "bad_block", format!("block {hash}: {reason}"));
                    }
                } else {
                    tracing::info!(peer = ?from, %hash, %reason, "peer's block rejected");
                }
            }
        }
        self.release_children(&hash);
        self.sync_progress();
    }

    /// Sends `GetData` for each peer's share of `requests`, in `ConnId`
    /// order.
    pub(super) fn send_requests(&mut self, requests: Vec<(InvItem, ConnId)>) {
        let mut by_peer: BTreeMap<ConnId, Vec<InvItem>> = BTreeMap::new();
        for (item, peer) in requests {
            by_peer.entry(peer).or_default().push(item);
        }
        for (peer, items) in by_peer {
            for chunk in items.chunks(MAX_INV_ITEMS) {
                self.send(peer, Message::GetData(chunk.to_vec()));
            }
        }
    }

    /// Requests unanswered for the request timeout go to the next peer
    /// that announced them.
    pub(super) fn expire_requests(&mut self) {
        let expiring = self
            .requests
            .expiring_by_peer(self.now.mono, self.config.timing.request_timeout);
        let usable = self.ready_set();
        let (again, _sync_expired) =
            self.requests
                .expire(self.now.mono, self.config.timing.request_timeout, &|peer| {
                    usable.contains(&peer)
                });
        self.send_requests(again);
        self.strike_expired(expiring.into_iter().collect());
    }
}
