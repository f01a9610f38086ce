//! The sync as the core drives it: which peer to sync from (the one
//! claiming the most work above ours that we have not caught up with),
//! sending `GetHeaders` and windows of `GetData`, checking `Headers`
//! answers (chaining and proof-of-work, with bans for either), ending the
//! sync when nothing is left, and replacing a sync peer that stalls.
//! `BlockSync` keeps the books.

use super::sync::HeadersError;
use super::{ChainView, CloseReason, ConnId, NetworkState};
use crate::p2p::message::{InvItem, Message};
use ledger::Header;

impl<V: ChainView> NetworkState<V> {
    pub(super) fn start_sync(&mut self, id: ConnId) {
        let now = self.now.mono;
        if !self.sync.start(id, now) {
            return;
        }
        let tip = self.view.tip();
        tracing::info!(peer = %id, height = tip.height, "syncing from peer");
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
        let batch = self.sync.next_requests();
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
                height = self.sync.last_header_height().max(tip.height),
                committed_height = tip.height,
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
            Ok(()) => self.sync_progress(),
            Err(HeadersError::BadProofOfWork) => {
                self.ban_peer(id, "bad_pow", "header misses its target".into())
            }
            Err(HeadersError::Unconnected) => {
                self.ban_peer(id, "protocol_violation", "headers do not chain".into())
            }
        }
    }

    /// A sync peer silent for the stall timeout is dropped; the sync starts
    /// over with another.
    pub(super) fn check_sync_stall(&mut self) {
        if !self
            .sync
            .is_stalled(self.now.mono, self.config.timing.sync_stall_timeout)
        {
            return;
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
