//! The sync as the core drives it. A peer that claims more work than our
//! tip, or sends a block whose parent we lack, is asked for headers; a
//! claim does no more than that. Its `Headers` answers are checked
//! (chaining and proof-of-work, with bans for either; unsolicited ones
//! refused before any is hashed) and the work they show, counted from the
//! fork point, replaces its claim: a peer whose headers, once complete,
//! fall short of what it claimed is dropped (`unbacked_claim`), one that
//! leaves a `GetHeaders` unanswered for the stall timeout is dropped
//! (`headers_timeout`), and an answer that repeats the peer's last one is
//! read no further than its last header and not asked for again
//! (`repeated_headers`). Blocks are fetched from every peer whose checked
//! headers named them, in `BlockSync`'s moving window; a block unanswered
//! for the block timeout (a third of the stall timeout) goes to another
//! peer, and a peer that lets blocks time out in `MAX_BLOCK_STALLS` rounds
//! is dropped (`block_stalling`). A liar or a drip-feeder therefore never
//! holds the sync: the honest peers' blocks come in beside its own.

use super::sync::{HeadersAnswer, HeadersError, MAX_BLOCK_STALLS};
use super::{ChainView, CloseReason, ConnId, NetworkState};
use crate::p2p::message::{InvItem, Message};
use ledger::{BlockHash, Header};
use std::collections::BTreeMap;
use std::time::Duration;

impl<V: ChainView> NetworkState<V> {
    /// Asks `id` for headers from our locator (again, if it had finished:
    /// it has shown us something new), unless a request is out already.
    pub(super) fn start_sync(&mut self, id: ConnId) {
        self.sync.reopen(id);
        if self.sync.expects_headers_from(id) || !self.sync.wants_headers(id) {
            return;
        }
        let now = self.now.mono;
        let tip = self.view.tip();
        if !self.sync.is_active() {
            tracing::info!(peer = %id, height = tip.height.0, "syncing");
        }
        tracing::debug!(peer = %id, height = tip.height.0, "asking peer for headers");
        let locator = self.sync.headers_requested(id, now, self.view.locator());
        self.send(id, Message::GetHeaders(locator));
        self.publish();
    }

    /// Asks for headers every peer that claims more work than our tip and
    /// has not yet shown us all it has.
    pub(super) fn choose_sync_peer(&mut self) {
        let our_work = self.view.tip().total_work;
        let candidates: Vec<ConnId> = self
            .conns
            .iter()
            .filter_map(|(id, conn)| conn.peer.as_ref().map(|peer| (*id, peer)))
            .filter(|(id, peer)| {
                !peer.caught_up && peer.best_work > our_work && self.sync.peer(*id).is_none()
            })
            .map(|(id, _)| id)
            .collect();
        for id in candidates {
            self.start_sync(id);
        }
    }

    /// Keeps the header and block requests flowing, marks the peers that
    /// gave us all they have, and logs the end of a round of catching up.
    pub(super) fn sync_progress(&mut self) {
        let now = self.now.mono;
        let ready = self.ready_conns();
        for id in &ready {
            if self.sync.peer(*id).is_some() && self.sync.wants_headers(*id) {
                let locator = self.sync.headers_requested(*id, now, self.view.locator());
                self.send(*id, Message::GetHeaders(locator));
            }
        }
        let usable = self.ready_set();
        let batch = self.sync.next_requests(now, |id| usable.contains(&id));
        let mut by_peer: BTreeMap<ConnId, Vec<InvItem>> = BTreeMap::new();
        for (peer, hash) in batch {
            let item = InvItem::Block(hash);
            self.requests.insert(item, peer, now, true);
            by_peer.entry(peer).or_default().push(item);
        }
        for (peer, items) in by_peer {
            self.send(peer, Message::GetData(items));
        }
        for id in ready {
            if self.sync.peer_done(id) {
                if let Some(peer) = self.peer_mut(id) {
                    peer.caught_up = true;
                }
            }
        }
        if let Some((started, blocks)) = self.sync.finish() {
            // The writer commits the last few synced blocks a moment
            // later (held connects), so the committed tip may still be a
            // few blocks short: the log names the committed height.
            let tip = self.view.tip();
            tracing::info!(
                committed_height = tip.height.0,
                blocks,
                secs = now.saturating_duration_since(started).as_secs_f64(),
                "sync finished"
            );
            self.publish();
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
        let our_work = self.view.tip().total_work;
        let view = &self.view;
        let answer = self.sync.on_headers(
            id,
            &headers,
            now,
            our_work,
            |hash| view.block_work(hash),
            |hash| view.has_block(hash),
        );
        let earlier = self.sync.take_earlier_wanted();
        match answer {
            Ok(HeadersAnswer::Repeated) => {
                // Its last answer again, read no further than the last
                // header; it is not asked again until it shows something
                // new.
                let remote = self.conns.get(&id).and_then(|conn| conn.remote);
                tracing::debug!(peer = ?remote, conn = %id, rule = "repeated_headers", n = headers.len(), "headers repeating the last answer not read");
                self.metric_inc("p2p_dropped_total", ("reason", "repeated_headers"));
                self.add_score(id, 1, "repeated_headers");
                if !self.claim_unbacked(id) {
                    self.sync_progress();
                }
            }
            Ok(HeadersAnswer::Read) if self.claim_unbacked(id) => {}
            Ok(HeadersAnswer::Read) => {
                if earlier > 0 {
                    // Its branch had no more work than ours when it showed
                    // them (after a partition, typically): now it has.
                    tracing::info!(peer = %id, blocks = earlier, rule = "branch_overtook_ours", "peer's branch now beats our tip: the blocks its earlier headers named are wanted too");
                }
                self.sync_progress();
            }
            Err(HeadersError::BadProofOfWork) => {
                self.ban_peer(id, "bad_pow", "header misses its target".into())
            }
            Err(HeadersError::Unconnected) => {
                self.ban_peer(id, "protocol_violation", "headers do not chain".into())
            }
        }
    }

    /// Once a peer's headers are complete, their work (counted from the
    /// fork point) must reach what it claimed in `Hello`, or our own tip's
    /// if that rose since: if not, it is dropped; if so, its claim is
    /// replaced by what we checked. Returns whether it was dropped.
    fn claim_unbacked(&mut self, id: ConnId) -> bool {
        if !self.sync.headers_complete(id) {
            return false;
        }
        let Some(checked) = self.sync.peer(id).map(|sync| sync.checked_work) else {
            return false;
        };
        let backed = checked.max(self.view.tip().total_work);
        let remote = self.conns.get(&id).and_then(|conn| conn.remote);
        let Some(peer) = self.peer_mut(id) else {
            return false;
        };
        if backed >= peer.best_work {
            peer.best_work = checked;
            return false;
        }
        tracing::warn!(peer = ?remote, conn = %id, rule = "unbacked_claim", claimed = ?peer.best_work, checked = ?checked, "peer's headers do not back its claimed work: dropped");
        self.metric_inc("p2p_sync_peers_dropped_total", ("rule", "unbacked_claim"));
        self.close(id, CloseReason::Refused("unbacked_claim"));
        true
    }

    /// The per-block timeouts and the header timeout: blocks asked longer
    /// than the block timeout go to other peers, the slow peer gets a
    /// stall (dropped at `MAX_BLOCK_STALLS`), and a peer that leaves a
    /// `GetHeaders` unanswered for the stall timeout is dropped.
    pub(super) fn check_sync_stall(&mut self) {
        let now = self.now.mono;
        let stall = self.config.timing.sync_stall_timeout;
        let block_timeout = (stall / 3).max(Duration::from_secs(2)).min(stall);
        let again = self.sync.expire_received(now, stall * 2);
        if again > 0 {
            tracing::debug!(
                blocks = again,
                "synced blocks still waiting for their parents: wanted again"
            );
        }
        let (stalled, taken_back) = self.sync.expire(now, block_timeout);
        for hash in taken_back {
            self.requests.done(&InvItem::Block(hash));
        }
        for (id, (blocks, stalls)) in stalled {
            let remote = self.conns.get(&id).and_then(|conn| conn.remote);
            self.metric_add(
                "p2p_sync_block_timeouts_total",
                ("rule", "block_timeout"),
                blocks as u64,
            );
            if stalls >= MAX_BLOCK_STALLS {
                tracing::warn!(peer = ?remote, conn = %id, rule = "block_stalling", stalls, "peer kept letting sync blocks time out: dropped");
                self.metric_inc("p2p_sync_peers_dropped_total", ("rule", "block_stalling"));
                self.close(id, CloseReason::Stalled);
            } else {
                tracing::info!(peer = ?remote, conn = %id, rule = "block_timeout", blocks, stalls, secs = block_timeout.as_secs_f64(), "sync blocks timed out: asked of other peers, the peer's share halved");
            }
        }
        for id in self.sync.headers_overdue(now, stall) {
            let remote = self.conns.get(&id).and_then(|conn| conn.remote);
            tracing::warn!(peer = ?remote, conn = %id, rule = "headers_timeout", secs = stall.as_secs_f64(), "peer left our GetHeaders unanswered: dropped");
            self.metric_inc("p2p_sync_peers_dropped_total", ("rule", "headers_timeout"));
            self.close(id, CloseReason::Stalled);
        }
        self.sync_progress();
    }

    /// A peer left: the blocks it was asked go back to the window.
    pub(super) fn sync_peer_gone(&mut self, id: ConnId) {
        for hash in self.sync.peer_gone(id) {
            self.requests.done(&InvItem::Block(hash));
        }
        self.sync_progress();
    }

    /// We hold a block now, however it came: the sync no longer wants it.
    pub(super) fn sync_block_held(&mut self, hash: &BlockHash) {
        if self.sync.block_held(hash).is_some() {
            self.requests.done(&InvItem::Block(*hash));
        }
    }
}
