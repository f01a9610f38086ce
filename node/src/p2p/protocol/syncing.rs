//! The sync as the core drives it: which peer to sync from (the one
//! claiming the most work above ours that we have not caught up with),
//! sending `GetHeaders` and windows of `GetData`, checking `Headers`
//! answers (chaining and proof-of-work, with bans for either; unsolicited
//! ones refused before any is hashed), ending the sync when nothing is
//! left, and replacing a sync peer that stalls. A claim only opens a sync:
//! a peer whose headers, once complete, show less work than it claimed is
//! dropped, and one that lets the head of the block window wait for the
//! block timeout (a third of the stall timeout) is replaced, so a liar or
//! a drip-feeder holds the sync for seconds, not for good.
//! `BlockSync` keeps the books.

use super::sync::HeadersError;
use super::{ChainView, CloseReason, ConnId, NetworkState};
use crate::p2p::message::{InvItem, Message};
use ledger::Header;
use std::time::Duration;

impl<V: ChainView> NetworkState<V> {
    pub(super) fn start_sync(&mut self, id: ConnId) {
        let now = self.now.mono;
        let tip = self.view.tip();
        if !self.sync.start(id, now, tip.total_work) {
            return;
        }
        tracing::info!(peer = %id, height = tip.height.0, "syncing from peer");
        let locator = self.sync.locator(self.view.locator());
        self.sync.headers_requested(now);
        self.send(id, Message::GetHeaders(locator));
        self.publish();
    }

    pub(super) fn reset_sync(&mut self) {
        for hash in self.sync.reset() {
            self.requests.done(&InvItem::Block(hash));
        }
        self.publish();
    }

    /// Starts a sync with the peer claiming the most work above ours.
    pub(super) fn choose_sync_peer(&mut self) {
        if self.sync.is_active() {
            return;
        }
        let our_work = self.view.tip().total_work;
        let best = self
            .conns
            .iter()
            .filter_map(|(id, conn)| conn.peer.as_ref().map(|peer| (*id, peer)))
            .filter(|(_, peer)| !peer.caught_up && peer.best_work > our_work)
            // The first of equals in `ConnId` order, whatever the map's
            // iteration would otherwise prefer.
            .fold(
                None,
                |best: Option<(ConnId, ledger::Work)>, (id, peer)| match best {
                    Some((_, work)) if work >= peer.best_work => best,
                    _ => Some((id, peer.best_work)),
                },
            )
            .map(|(id, _)| id);
        if let Some(id) = best {
            self.start_sync(id);
        }
    }

    /// Keeps the sync's header and block requests flowing, and ends it when
    /// nothing is left.
    pub(super) fn sync_progress(&mut self) {
        let Some(peer) = self.sync.peer() else { return };
        let now = self.now.mono;
        if self.sync.wants_headers() {
            let locator = self.sync.locator(self.view.locator());
            self.sync.headers_requested(now);
            self.send(peer, Message::GetHeaders(locator));
        }
        let batch = self.sync.next_requests(now);
        if !batch.is_empty() {
            let items: Vec<InvItem> = batch.into_iter().map(InvItem::Block).collect();
            for item in &items {
                self.requests.insert(*item, peer, now, true);
            }
            self.send(peer, Message::GetData(items));
        }
        if self.sync.is_done() {
            // The writer commits the last few synced blocks a moment
            // later (held connects), so the committed tip may still be a
            // few blocks short of the sync's last header: log both.
            let tip = self.view.tip();
            tracing::info!(
                peer = %peer,
                height = self.sync.last_header_height().max(tip.height).0,
                committed_height = tip.height.0,
                blocks = self.sync.blocks_imported,
                secs = now.saturating_duration_since(self.sync.started_at()).as_secs_f64(),
                "sync finished"
            );
            if let Some(synced) = self.peer_mut(peer) {
                synced.caught_up = true;
            }
            self.reset_sync();
            self.choose_sync_peer();
        }
    }

    pub(super) fn on_headers(&mut self, id: ConnId, headers: Vec<Header>) {
        let now = self.now.mono;
        if !self.sync.expects_headers_from(id) {
            // Not hashed, not read: an answer we did not ask for (or one
            // that comes after its sync ended) costs the sender a point.
            let remote = self.conns.get(&id).and_then(|conn| conn.remote);
            tracing::debug!(peer = ?remote, conn = %id, rule = "unsolicited_headers", n = headers.len(), "headers refused unread");
            self.metric_inc("p2p_dropped_total", ("reason", "unsolicited_headers"));
            self.add_score(id, 1, "unsolicited_headers");
            return;
        }
        if let Some(last) = headers.last() {
            let height = last.height;
            if let Some(peer) = self.peer_mut(id) {
                peer.best_height = peer.best_height.max(height);
            }
        }
        let view = &self.view;
        match self
            .sync
            .on_headers(id, &headers, now, |hash| view.has_block(hash))
        {
            Ok(()) if self.claim_unbacked(id) => {}
            Ok(()) => self.sync_progress(),
            Err(HeadersError::BadProofOfWork) => {
                self.ban_peer(id, "bad_pow", "header misses its target".into())
            }
            Err(HeadersError::Unconnected) => {
                self.ban_peer(id, "protocol_violation", "headers do not chain".into())
            }
        }
    }

    /// Once the sync peer's headers are complete, their work must reach
    /// what it claimed in `Hello`: if not, it is dropped (and the sync moves
    /// on); if so, its claim is replaced by what we checked. Returns
    /// whether it was dropped.
    fn claim_unbacked(&mut self, id: ConnId) -> bool {
        if !self.sync.headers_complete() {
            return false;
        }
        let checked = self.sync.checked_work();
        let remote = self.conns.get(&id).and_then(|conn| conn.remote);
        let Some(peer) = self.peer_mut(id) else {
            return false;
        };
        if checked >= peer.best_work {
            peer.best_work = checked;
            return false;
        }
        tracing::warn!(peer = ?remote, conn = %id, rule = "unbacked_claim", claimed = ?peer.best_work, checked = ?checked, "sync peer's headers do not back its claimed work: dropped");
        self.metric_inc("p2p_sync_peers_dropped_total", ("rule", "unbacked_claim"));
        self.reset_sync();
        self.close(id, CloseReason::Refused("unbacked_claim"));
        self.choose_sync_peer();
        true
    }

    /// A sync peer silent for the stall timeout, or that lets the head of
    /// the block window wait for the block timeout, is dropped; the sync
    /// starts over with another.
    pub(super) fn check_sync_stall(&mut self) {
        let now = self.now.mono;
        let stall = self.config.timing.sync_stall_timeout;
        let block_timeout = (stall / 3).max(Duration::from_secs(2)).min(stall);
        let window = self.sync.window_stalled(now, block_timeout);
        if !window && !self.sync.is_stalled(now, stall) {
            return;
        }
        if window {
            let remote = self
                .sync
                .peer()
                .and_then(|id| self.conns.get(&id))
                .and_then(|conn| conn.remote);
            tracing::warn!(peer = ?remote, rule = "block_timeout", secs = block_timeout.as_secs_f64(), "sync peer let the block window's head wait: replaced");
            self.metric_inc("p2p_sync_peers_dropped_total", ("rule", "block_timeout"));
        }
        if let Some(peer) = self.sync.peer() {
            if let Some(stalled) = self.peer_mut(peer) {
                stalled.caught_up = true;
            }
            self.reset_sync();
            self.close(peer, CloseReason::Stalled);
        }
    }
}
