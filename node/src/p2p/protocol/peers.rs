//! Connections and who they are: admitting inbound peers within the slots,
//! running each session's handshake and deciding whether to keep the peer
//! (bans, duplicate connections to one node), dialing bootstrap peers with
//! jittered backoff and filling outbound slots from the address book,
//! exchanging addresses under a token bucket, and closing: one place that
//! counts why a connection ended, bans misbehaving peers and hands their
//! requests and sync to others.

use super::addrbook::{backoff, is_dialable, BanKey, Learned};
use super::connmap::ConnMap;
use super::netgroup::NetGroup;
use super::ratelimit::Costly;
use super::session::{HandshakeStep, Session};
use super::{
    Action, ChainView, CloseReason, Conn, ConnId, DialKind, NetworkState, PersistentTarget,
    ReadyPeer,
};
use crate::p2p::message::{Hello, Message, PeerAddr, MAX_ADDRS};
use core::net::SocketAddr;
use ledger::json::Direction;
use ledger::PublicKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// `GetAddr` is answered at most this often per peer.
const GETADDR_INTERVAL: Duration = Duration::from_secs(30);
/// We refresh our view of the network this often.
pub(super) const ADDR_REFRESH: Duration = Duration::from_secs(60);
/// Addresses accepted from one peer: a burst of `MAX_ADDRS`, then this many
/// per second.
const ADDR_TOKENS_PER_SEC: f64 = 0.1;

/// Which addresses are not worth dialing now: ones we are connected or
/// connecting to, our own, banned ones, and ones the book ties to a node we
/// already have, to ourselves or to a banned node.
pub(super) struct DialFilter<'a> {
    addrs_in_use: BTreeSet<SocketAddr>,
    nodes_in_use: BTreeSet<PublicKey>,
    self_addrs: &'a BTreeSet<SocketAddr>,
    bans: &'a super::addrbook::BanList,
    ours: [Option<SocketAddr>; 2],
    our_id: PublicKey,
    now: super::time::Mono,
}

impl<'a> DialFilter<'a> {
    fn new(
        conns: &ConnMap<Conn>,
        self_addrs: &'a BTreeSet<SocketAddr>,
        bans: &'a super::addrbook::BanList,
        ours: [Option<SocketAddr>; 2],
        our_id: PublicKey,
        now: super::time::Mono,
    ) -> DialFilter<'a> {
        let mut addrs_in_use = BTreeSet::new();
        let mut nodes_in_use = BTreeSet::new();
        for conn in conns.values() {
            addrs_in_use.extend(conn.remote);
            if let Some(DialKind::Book(addr)) = conn.dial {
                addrs_in_use.insert(addr);
            }
            if let Some(peer) = &conn.peer {
                addrs_in_use.extend(peer.listen_addr);
                nodes_in_use.insert(peer.node_id);
            }
        }
        DialFilter {
            addrs_in_use,
            nodes_in_use,
            self_addrs,
            bans,
            ours,
            our_id,
            now,
        }
    }

    /// Whether to dial `addr`, known (when the book knows) as `node_id`.
    pub(super) fn allows(&self, addr: &SocketAddr, node_id: Option<PublicKey>) -> bool {
        is_dialable(addr)
            && !self.addrs_in_use.contains(addr)
            && !self.self_addrs.contains(addr)
            && !self.ours.contains(&Some(*addr))
            && !self.bans.is_addr_banned(*addr, self.now)
            && !node_id.is_some_and(|node_id| {
                node_id == self.our_id
                    || self.nodes_in_use.contains(&node_id)
                    || self.bans.is_banned(&BanKey::Node(node_id), self.now)
            })
    }
}

impl<V: ChainView> NetworkState<V> {
    fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    fn start_session(&mut self, id: ConnId) {
        let tip = self.view.tip();
        let (session, hello) =
            Session::start(&self.identity, &tip, self.now.mono, &self.config.timing);
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.session = Some(session);
        }
        self.refresh_session_timer();
        self.send(id, hello);
    }

    pub(super) fn on_inbound(&mut self, remote: SocketAddr) {
        if self.bans.is_addr_banned(remote, self.now.mono) {
            tracing::debug!(peer = %remote, "refused a banned address");
            self.metric_inc("p2p_disconnects_total", ("reason", "banned"));
            self.push(Action::Refuse { remote });
            return;
        }
        if !self.inbound_admissible(remote) {
            return;
        }
        let id = self.new_conn_id();
        self.conns.insert(
            id,
            Conn {
                direction: Direction::Inbound,
                remote: Some(remote),
                dial: None,
                session: None,
                peer: None,
            },
        );
        self.push(Action::Admit { conn: id, remote });
        self.start_session(id);
    }

    pub(super) fn dial(&mut self, kind: DialKind, target: String) -> ConnId {
        let id = self.new_conn_id();
        self.conns.insert(
            id,
            Conn {
                direction: Direction::Outbound,
                remote: None,
                dial: Some(kind),
                session: None,
                peer: None,
            },
        );
        tracing::debug!(%target, conn = %id, "dialing");
        self.push(Action::Dial { conn: id, target });
        id
    }

    pub(super) fn on_connected(&mut self, id: ConnId, remote: SocketAddr) {
        let banned = self.bans.is_addr_banned(remote, self.now.mono);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.remote = Some(remote);
        if banned {
            self.close(id, CloseReason::Refused("banned"));
            return;
        }
        self.start_session(id);
    }

    /// `POST /v1/peers`: pins `target` (dials it now, and again after it
    /// drops). At most `max_outbound` targets are pinned; a new one takes
    /// the place of the oldest pinned target that is not connected, and is
    /// refused (logged) when every pinned target is connected.
    pub(super) fn on_dial_command(&mut self, target: String) {
        let now = self.now.mono;
        if let Some(known) = self.targets.iter_mut().find(|known| known.target == target) {
            // Dial again now even when backing off.
            known.next_attempt = now;
            known.is_self = false;
        } else {
            let fresh = PersistentTarget {
                target,
                node_id: None,
                conn: None,
                failures: 0,
                next_attempt: now,
                is_self: false,
                pinned: true,
            };
            let n_pinned = self.targets.iter().filter(|known| known.pinned).count();
            if n_pinned < self.config.max_outbound {
                self.targets.push(fresh);
            } else if let Some(slot) = self
                .targets
                .iter_mut()
                .find(|known| known.pinned && known.conn.is_none())
            {
                // Reused in place: targets are referred to by index, and
                // no connection refers to one without a connection.
                tracing::info!(old = %slot.target, new = %fresh.target, "pinned peer replaced");
                *slot = fresh;
            } else {
                tracing::warn!(
                    target = %fresh.target,
                    max = self.config.max_outbound,
                    "not pinning another peer: every pinned peer is connected"
                );
                return;
            }
        }
        self.dial_targets();
    }

    /// Whether `target` is one the core keeps dialing (a `--peer`, or a
    /// pin it took): after `Command::Dial`, false means the pin was refused
    /// because every pinned slot is taken by a live connection.
    pub fn is_dial_target(&self, target: &str) -> bool {
        self.targets.iter().any(|known| known.target == target)
    }

    /// Outbound slots in use: working outbound peers, and dials in flight
    /// to address-book entries and pinned targets. A bootstrap peer being
    /// redialed after it died does not hold a slot, or a dead bootstrap
    /// peer would block its own replacement.
    pub(super) fn outbound_in_use(&self) -> usize {
        self.conns
            .values()
            .filter(|conn| conn.direction == Direction::Outbound)
            .filter(|conn| {
                conn.peer.is_some()
                    || match conn.dial {
                        Some(DialKind::Book(_)) => true,
                        Some(DialKind::Persistent(index)) => {
                            self.targets.get(index).is_some_and(|target| target.pinned)
                        }
                        None => false,
                    }
            })
            .count()
    }

    /// The transport proved who is at the other end of `id`.
    pub(super) fn on_secured(&mut self, id: ConnId, node_id: PublicKey) {
        if let Some(session) = self
            .conns
            .get_mut(&id)
            .and_then(|conn| conn.session.as_mut())
        {
            session.secured(node_id);
        }
    }

    /// A message from a connection: to its session during the handshake,
    /// to the relay, sync and address rules after it.
    pub(super) fn on_frame(&mut self, id: ConnId, message: Message) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(session) = conn.session.as_mut() else {
            return;
        };
        if !session.is_ready() {
            match session.on_handshake_message(&self.identity, message) {
                Ok(HandshakeStep::Reply(reply)) => self.send(id, reply),
                Ok(HandshakeStep::Authenticated(hello)) => self.on_authenticated(id, *hello),
                Err(reason) => self.close(id, reason),
            }
            return;
        }
        match message {
            Message::Ping(nonce) => self.send(id, Message::Pong(nonce)),
            Message::Pong(nonce) => {
                let now = self.now.mono;
                let rtt = conn
                    .session
                    .as_mut()
                    .and_then(|session| session.on_pong(nonce, now));
                if let (Some(rtt), Some(peer)) = (rtt, conn.peer.as_mut()) {
                    peer.ping_ms = Some(rtt.as_millis() as u64);
                }
            }
            Message::GetData(items) => self.on_get_data(id, items),
            Message::GetHeaders(locator) => {
                if self.allow(id, Costly::GetHeaders, 1) {
                    self.on_get_headers(id, locator)
                }
            }
            Message::GetAddr => self.on_get_addr(id),
            Message::Addr(addrs) => self.on_addr(id, addrs),
            Message::Inv(items) => {
                if self.allow(id, Costly::InvItems, items.len()) {
                    self.on_inv(id, items)
                }
            }
            Message::NotFound(items) => self.on_not_found(id, items),
            Message::Tx(tx) => self.on_tx(id, tx),
            Message::Block(block) => self.on_block(id, block),
            Message::Headers(headers) => self.on_headers(id, headers),
            Message::GetSenderTxs {
                sender,
                first_nonce,
                count,
            } => {
                if self.allow(id, Costly::SenderTxs, 1) {
                    self.on_get_sender_txs(id, sender, first_nonce, count)
                }
            }
            Message::SendCompact { high_bandwidth } => self.on_send_compact(id, high_bandwidth),
            Message::CompactBlock(compact) => self.on_compact_block(id, *compact),
            Message::GetBlockTxs { block, indexes } => {
                if self.allow(id, Costly::SenderTxs, 1) {
                    self.on_get_block_txs(id, block, indexes)
                }
            }
            Message::BlockTxs { block, txs } => self.on_block_txs(id, block, txs),
            Message::Hello(_) | Message::HelloAck(_) => self.close(
                id,
                CloseReason::Misbehaved {
                    reason: "protocol_violation",
                    detail: "handshake message after the handshake".into(),
                },
            ),
        }
    }

    fn ready_conn_with(&self, node_id: &PublicKey) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, conn)| {
                conn.peer
                    .as_ref()
                    .is_some_and(|peer| peer.node_id == *node_id)
            })
            .map(|(id, _)| *id)
    }

    /// The peer proved its identity: decide whether to keep it.
    fn on_authenticated(&mut self, id: ConnId, hello: Hello) {
        let now = self.now.mono;
        let Some((direction, remote)) = self
            .conns
            .get(&id)
            .and_then(|conn| conn.remote.map(|remote| (conn.direction, remote)))
        else {
            return;
        };
        if self.bans.is_banned(&BanKey::Node(hello.node_id), now)
            || self.bans.is_addr_banned(remote, now)
        {
            tracing::debug!(peer = %remote, "refused a banned node");
            self.close(id, CloseReason::Refused("banned"));
            return;
        }
        let node_id = hello.node_id;
        if let Some(existing) = self.ready_conn_with(&node_id) {
            // Two connections to one node (often both sides dialing at
            // once): both ends keep the one dialed by the smaller node id,
            // so they agree without talking.
            let existing_direction = self.conns.get(&existing).map(|conn| conn.direction);
            let our_id = self.identity.node_id;
            let dialer = |direction: Direction| {
                if direction == Direction::Outbound {
                    our_id
                } else {
                    node_id
                }
            };
            let keep_new = existing_direction.is_some_and(|existing_direction| {
                existing_direction != direction && dialer(direction) < dialer(existing_direction)
            });
            if !keep_new {
                tracing::debug!(peer = %remote, "second connection to a connected node");
                self.note_target_node(id, node_id);
                self.close(id, CloseReason::Refused("duplicate"));
                return;
            }
            self.close(existing, CloseReason::Refused("duplicate"));
        }
        if direction == Direction::Inbound && !self.make_room_for_inbound(id) {
            return;
        }
        let listen_addr = match direction {
            Direction::Outbound => Some(remote),
            Direction::Inbound => {
                Some(SocketAddr::new(remote.ip(), hello.listen_port)).filter(is_dialable)
            }
        };
        let timing = self.config.timing.clone();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(session) = conn.session.as_mut() {
            session.authenticated(now, &timing);
        }
        let known = match &conn.peer {
            Some(peer) => peer.known,
            None => self.known.add_peer(),
        };
        conn.peer = Some(ReadyPeer {
            node_id,
            listen_addr,
            best_height: hello.best_height,
            best_work: hello.best_work,
            caught_up: false,
            connected_at: now,
            ping_ms: None,
            known,
            addr_tokens: MAX_ADDRS as f64,
            addr_tokens_at: now,
            last_getaddr_answered: None,
            reported_peers: Arc::from([]),
            wants_compact: false,
            behaviour: super::ratelimit::PeerBehaviour::new(now),
            tx_backlog: 0,
        });
        self.relay_peers_changed();
        self.refresh_session_timer();
        tracing::info!(
            peer = %remote,
            node_id = %hex::encode(node_id.as_bytes()),
            direction = ?direction,
            height = hello.best_height.0,
            "peer connected"
        );
        self.push(Action::Authenticated { conn: id });
        self.note_target_node(id, node_id);
        // Only a connection we made shows an address works: what an
        // inbound peer says it listens on is just learned, from it.
        match (listen_addr, direction) {
            (Some(listen_addr), Direction::Outbound) => {
                self.book.connected(listen_addr, node_id, self.now.unix_ms)
            }
            (Some(addr), Direction::Inbound) => {
                let heard = PeerAddr {
                    addr,
                    node_id: Some(node_id),
                    last_seen_ms: self.now.unix_ms,
                    connected: true,
                };
                self.book
                    .learned_from(&heard, self.now.unix_ms, remote.ip());
            }
            (None, _) => {}
        }
        self.send(id, Message::GetAddr);
        self.compact_peer_ready(id, direction == Direction::Outbound);
        self.announce_mempool(id);
        let our_work = self.view.tip().total_work;
        if hello.best_work > our_work {
            self.start_sync(id);
        }
        self.publish();
    }

    fn note_target_node(&mut self, id: ConnId, node_id: PublicKey) {
        if let Some(DialKind::Persistent(index)) = self.conns.get(&id).and_then(|conn| conn.dial) {
            if let Some(target) = self.targets.get_mut(index) {
                target.node_id = Some(node_id);
            }
        }
    }

    /// Ends a connection for `reason`: counts it, bans when the rules say
    /// so, schedules the redial, and hands its requests and sync to
    /// others. Closing a connection that is already gone does nothing.
    pub(super) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(peer) = &conn.peer {
            self.known.remove_peer(peer.known);
            self.relay_peers_changed();
        }
        self.refresh_session_timer();
        let now = self.now.mono;
        let was_ready = conn.peer.is_some();
        self.push(Action::Disconnect {
            conn: id,
            reason: reason.label(),
        });
        self.metric_inc("p2p_disconnects_total", ("reason", reason.label()));
        match &reason {
            CloseReason::Misbehaved {
                reason: why,
                detail,
            } => {
                // Before its handshake ends a peer is known by the node id
                // its transport proved, and that id answers for it.
                let node_id = conn.peer.as_ref().map(|peer| peer.node_id).or_else(|| {
                    conn.session
                        .as_ref()
                        .and_then(|session| session.proven_peer())
                });
                let listen = conn.peer.as_ref().and_then(|peer| peer.listen_addr);
                self.ban(conn.remote, listen, node_id, why, detail);
            }
            CloseReason::SelfConnection => {
                if let Some(remote) = conn.remote {
                    self.self_addrs.insert(remote);
                    self.book.remove(&remote);
                }
                if let Some(DialKind::Persistent(index)) = conn.dial {
                    if let Some(target) = self.targets.get_mut(index) {
                        target.is_self = true;
                    }
                }
            }
            CloseReason::HandshakeTimeout => {
                tracing::info!(peer = ?conn.remote, "peer dropped: no handshake in time");
            }
            CloseReason::Stalled => {
                tracing::warn!(peer = ?conn.remote, conn = %id, "sync peer stalled; replacing it");
            }
            CloseReason::SlowPeer => {
                tracing::info!(peer = ?conn.remote, "peer dropped: send queue full, it cannot keep up");
            }
            CloseReason::Insecure {
                reason: why,
                detail,
            } => {
                tracing::warn!(peer = ?conn.remote, conn = %id, reason = why, %detail, "peer refused: secure transport failed");
            }
            _ => {}
        }
        match conn.dial {
            Some(DialKind::Persistent(index)) => {
                let failures = match self.targets.get(index) {
                    Some(_) if was_ready => 0,
                    Some(target) => target.failures.saturating_add(1),
                    None => 0,
                };
                let delay = backoff(failures, &mut self.rng);
                if let Some(target) = self.targets.get_mut(index) {
                    if target.conn == Some(id) {
                        target.conn = None;
                    }
                    target.failures = failures;
                    target.next_attempt = now + delay;
                }
            }
            Some(DialKind::Book(addr))
                if !was_ready && !matches!(reason, CloseReason::SelfConnection) =>
            {
                self.book.failed(&addr, self.now.unix_ms, &mut self.rng);
            }
            _ => {}
        }
        if let Some(peer) = conn.peer {
            tracing::info!(
                peer = ?conn.remote,
                node_id = %hex::encode(peer.node_id.as_bytes()),
                reason = ?reason,
                "peer disconnected"
            );
            let usable = self.ready_set();
            let again = self
                .requests
                .peer_gone(id, now, &|peer| usable.contains(&peer));
            self.send_requests(again);
            self.compact_peer_gone(id);
            self.sync_peer_gone(id);
            self.publish();
        }
    }

    fn ban(
        &mut self,
        remote: Option<SocketAddr>,
        listen: Option<SocketAddr>,
        node_id: Option<PublicKey>,
        reason: &'static str,
        detail: &str,
    ) {
        let duration = self.config.ban_duration;
        for addr in remote.iter().chain(listen.iter()) {
            self.bans.ban(BanKey::for_addr(*addr), self.now, duration);
        }
        if let Some(node_id) = node_id {
            self.bans.ban(BanKey::Node(node_id), self.now, duration);
        }
        if let Some(listen) = listen {
            self.book.remove(&listen);
        }
        // The ban is stored (and visible through the handle) before it is
        // counted, so whoever sees the count finds the ban in force.
        self.take_book_changes();
        self.metric_inc("p2p_bans_total", ("reason", reason));
        let evicted = self.bans.take_evicted();
        if evicted > 0 {
            self.metric_add(
                "p2p_bans_evicted_total",
                ("reason", "ban_list_full"),
                evicted,
            );
        }
        tracing::warn!(
            peer = ?remote,
            node_id = ?node_id.map(|id| hex::encode(id.as_bytes())),
            reason,
            detail,
            ban_secs = duration.as_secs(),
            "banned misbehaving peer"
        );
    }

    /// Bans a connected peer and drops it.
    pub(super) fn ban_peer(&mut self, id: ConnId, reason: &'static str, detail: String) {
        self.close(id, CloseReason::Misbehaved { reason, detail });
    }

    pub(super) fn ready_set(&self) -> BTreeSet<ConnId> {
        self.ready_conns().into_iter().collect()
    }

    pub(super) fn dial_targets(&mut self) {
        let now = self.now.mono;
        let connected: BTreeSet<PublicKey> = self
            .conns
            .values()
            .filter_map(|conn| conn.peer.as_ref().map(|peer| peer.node_id))
            .collect();
        let mut to_dial = Vec::new();
        let mut free_slots = self
            .config
            .max_outbound
            .saturating_sub(self.outbound_in_use());
        for (index, target) in self.targets.iter().enumerate() {
            if target.is_self || target.conn.is_some() || target.next_attempt > now {
                continue;
            }
            if target.pinned {
                if free_slots == 0 {
                    continue;
                }
                free_slots -= 1;
            }
            if target
                .node_id
                .is_some_and(|node_id| connected.contains(&node_id))
            {
                continue;
            }
            to_dial.push((index, target.target.clone()));
        }
        for (index, target) in to_dial {
            let id = self.dial(DialKind::Persistent(index), target);
            if let Some(target) = self.targets.get_mut(index) {
                target.conn = Some(id);
            }
        }
    }

    /// What rules an address out of dialing now (see `DialFilter`).
    pub(super) fn dial_filter(&self) -> DialFilter<'_> {
        DialFilter::new(
            &self.conns,
            &self.self_addrs,
            &self.bans,
            [Some(self.config.listen_addr), self.config.external_addr],
            self.identity.node_id,
            self.now.mono,
        )
    }

    /// Dials address-book entries while outbound slots are free.
    pub(super) fn fill_outbound(&mut self) {
        let outbound = self.outbound_in_use();
        if outbound >= self.config.max_outbound {
            return;
        }
        let filter = self.dial_filter();
        // The RNG is taken out for the draw and put back, since the filter
        // holds `self`.
        let mut rng = self.rng.clone();
        let candidates = self
            .book
            .candidates(self.now.unix_ms, &mut rng, |addr, entry| {
                !filter.allows(addr, entry.node_id)
            });
        self.rng = rng;
        // One outbound connection per network group (loopback aside: a
        // local testnet shares one IP), so no single group is all we see.
        let mut groups: BTreeSet<NetGroup> = self
            .conns
            .values()
            .filter(|conn| conn.direction == Direction::Outbound)
            .filter_map(|conn| match conn.dial {
                Some(DialKind::Book(addr)) => Some(addr),
                _ => conn.remote,
            })
            .map(|addr| NetGroup::of(addr.ip()))
            .filter(|group| !group.is_loopback())
            .collect();
        let spread: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|addr| {
                let group = NetGroup::of(addr.ip());
                group.is_loopback() || groups.insert(group)
            })
            .collect();
        for addr in spread.into_iter().take(self.config.max_outbound - outbound) {
            self.book.attempted(&addr, self.now.unix_ms, &mut self.rng);
            self.dial(DialKind::Book(addr), addr.to_string());
        }
    }

    fn on_get_addr(&mut self, id: ConnId) {
        let now = self.now.mono;
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if peer
            .last_getaddr_answered
            .is_some_and(|last| now.saturating_duration_since(last) < GETADDR_INTERVAL)
        {
            return;
        }
        peer.last_getaddr_answered = Some(now);
        let asker_addr = peer.listen_addr;
        let now_ms = self.now.unix_ms;
        let mut seen: BTreeSet<SocketAddr> = BTreeSet::new();
        let mut addrs = Vec::new();
        // Our `--external-addr` first, so a peer learns where to dial us.
        if let Some(own) = self.advertised_self() {
            seen.insert(own.addr);
            addrs.push(own);
        }
        for (other, conn) in &self.conns {
            if *other == id {
                continue;
            }
            // Inbound peers that do not listen are not offered: their
            // ephemeral port is never dialable.
            if let Some(peer) = &conn.peer {
                if let Some(addr) = peer.listen_addr {
                    if seen.insert(addr) {
                        addrs.push(PeerAddr {
                            addr,
                            node_id: Some(peer.node_id),
                            last_seen_ms: now_ms,
                            connected: true,
                        });
                    }
                }
            }
        }
        for shared in self.book.share(MAX_ADDRS) {
            if addrs.len() >= MAX_ADDRS {
                break;
            }
            if Some(shared.addr) != asker_addr && seen.insert(shared.addr) {
                addrs.push(shared);
            }
        }
        addrs.truncate(MAX_ADDRS);
        self.send(id, Message::Addr(addrs));
    }

    fn on_addr(&mut self, id: ConnId, addrs: Vec<PeerAddr>) {
        let now = self.now.mono;
        let now_ms = self.now.unix_ms;
        let our_id = self.identity.node_id;
        let Some(source) = self.conns.get(&id).and_then(|conn| conn.remote) else {
            return;
        };
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        peer.reported_peers = addrs
            .iter()
            .filter(|addr| addr.connected)
            .filter_map(|addr| addr.node_id)
            .collect();
        let elapsed = now
            .saturating_duration_since(peer.addr_tokens_at)
            .as_secs_f64();
        peer.addr_tokens = (peer.addr_tokens + elapsed * ADDR_TOKENS_PER_SEC).min(MAX_ADDRS as f64);
        peer.addr_tokens_at = now;
        let allowed = (peer.addr_tokens.floor() as usize).min(addrs.len());
        peer.addr_tokens -= allowed as f64;
        let mut refused: BTreeMap<&'static str, u64> = BTreeMap::new();
        for addr in addrs.into_iter().take(allowed) {
            if addr.node_id == Some(our_id) || self.self_addrs.contains(&addr.addr) {
                continue;
            }
            if let Learned::Refused(rule) = self.book.learned_from(&addr, now_ms, source.ip()) {
                *refused.entry(rule).or_default() += 1;
            }
        }
        for (rule, count) in refused {
            tracing::debug!(peer = %source, conn = %id, rule, count, "addresses refused");
            self.metric_add("p2p_addrs_refused_total", ("reason", rule), count);
        }
        self.publish();
    }
}
