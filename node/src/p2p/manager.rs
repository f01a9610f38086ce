//! The network actor. `Manager` owns all peer state (connections, what each
//! peer knows, outstanding requests, the sync, the address book and bans)
//! and runs as one task; peer tasks, importers and the `P2pHandle` talk to
//! it over channels, so no lock guards peer state. It accepts inbound
//! connections up to the cap, keeps bootstrap peers connected with jittered
//! exponential backoff and fills the outbound slots from the address book,
//! relays what the node accepts (announce-then-fetch, blocks before txs),
//! hands received blocks and txs to importer tasks so validation never
//! blocks it, and bans peers that break the rules.

use super::addrbook::{backoff, is_dialable, AddrBook, BanKey};
use super::codec::encode_message;
use super::gossip::{Announced, KnownInventory, PeerId, Requests, KNOWN_INVENTORY_CAPACITY};
use super::message::{InvItem, Message, PeerAddr, MAX_ADDRS, MAX_INV_ITEMS};
use super::peer::{self, CloseReason, LocalInfo, PeerContext, PeerEvent, PeerSender};
use super::sync::{BlockSync, HeadersError};
use super::{
    lock, Backend, BlockVerdict, Command, KnownView, P2pConfig, PeerView, Shared, TxVerdict,
};
use crate::events::NodeEvent;
use crate::metrics::Metrics;
use futures::StreamExt;
use ledger::json::Direction;
use ledger::{Block, BlockHash, Height, PublicKey, Transaction, TxId, Work};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Per-peer queue budget: 8 MiB of encoded messages.
const SEND_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// Capacity of the channel from peer tasks; a full channel makes peer
/// readers wait, which pushes back on the sockets.
const EVENT_CHANNEL: usize = 4_096;
/// Parallel tx importers; txs of one sender always go to the same one so
/// their nonces arrive in order.
const TX_IMPORTERS: usize = 4;
/// Received objects waiting for validation beyond which unrequested ones
/// are dropped.
const MAX_UNSOLICITED_BACKLOG: usize = 1_024;
/// Pending txs announced to a new peer.
const MEMPOOL_ANNOUNCE_LIMIT: usize = 5_000;
/// Synced blocks whose signatures are checked ahead of the chain.
const PRECHECK_AHEAD: usize = 32;
/// Announcements wait at most this long to be batched.
const MAX_ANNOUNCE_DELAY: Duration = Duration::from_millis(20);
/// `GetAddr` is answered at most this often per peer.
const GETADDR_INTERVAL: Duration = Duration::from_secs(30);
/// We refresh our view of the network this often.
const ADDR_REFRESH: Duration = Duration::from_secs(60);
/// Addresses accepted from one peer: a burst of `MAX_ADDRS`, then this many
/// per second.
const ADDR_TOKENS_PER_SEC: f64 = 0.1;

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// The outcome of validating something a peer sent.
pub(crate) enum Verdict {
    Block {
        from: Option<PeerId>,
        hash: BlockHash,
        size: usize,
        verdict: BlockVerdict,
    },
    Tx {
        from: PeerId,
        txid: TxId,
        verdict: TxVerdict,
    },
}

/// A received block on its way to validation.
struct ImportItem {
    from: Option<PeerId>,
    block: Block,
    size: usize,
    /// A block the sync asked for: `Backend::precheck_block` runs first,
    /// then `Backend::submit_synced_block`.
    synced: bool,
}

/// Why an outbound connection exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialKind {
    /// Index into `targets`.
    Persistent(usize),
    /// From the address book.
    Book(SocketAddr),
}

/// A bootstrap or manually added peer we keep connected.
struct PersistentTarget {
    target: String,
    node_id: Option<PublicKey>,
    conn: Option<PeerId>,
    failures: u32,
    next_attempt: Instant,
    is_self: bool,
}

/// A peer after its handshake.
struct ReadyPeer {
    node_id: PublicKey,
    listen_addr: Option<SocketAddr>,
    sender: PeerSender,
    best_height: Height,
    best_work: Work,
    /// We synced from it and have what it claimed; set again to false when
    /// it shows us something new.
    synced: bool,
    connected_at: Instant,
    ping_ms: Option<u64>,
    known: KnownInventory,
    addr_tokens: f64,
    addr_tokens_at: Instant,
    last_getaddr_answered: Option<Instant>,
    reported_peers: Vec<PublicKey>,
}

/// Any connection, from dialing to close.
struct Conn {
    direction: Direction,
    cancel: CancellationToken,
    remote: Option<SocketAddr>,
    dial: Option<DialKind>,
    peer: Option<ReadyPeer>,
}

/// What `start` hands the manager.
pub(crate) struct ManagerParts<B: Backend> {
    pub config: P2pConfig,
    pub backend: B,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    pub tracker: TaskTracker,
    pub shared: Arc<Shared>,
    pub commands: mpsc::UnboundedReceiver<Command>,
}

pub(crate) struct Manager<B: Backend> {
    config: P2pConfig,
    local: Arc<LocalInfo>,
    backend: B,
    metrics: Metrics,
    cancel: CancellationToken,
    tracker: TaskTracker,
    listener: TcpListener,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::Sender<PeerEvent>,
    events: mpsc::Receiver<PeerEvent>,
    verdicts_tx: mpsc::UnboundedSender<Verdict>,
    verdicts: mpsc::UnboundedReceiver<Verdict>,
    block_import: Option<mpsc::UnboundedSender<ImportItem>>,
    tx_import: Vec<mpsc::UnboundedSender<(PeerId, Transaction)>>,
    node_events: broadcast::Receiver<NodeEvent>,
    node_events_open: bool,
    next_id: PeerId,
    conns: HashMap<PeerId, Conn>,
    targets: Vec<PersistentTarget>,
    book: AddrBook,
    self_addrs: HashSet<SocketAddr>,
    requests: Requests,
    sync: BlockSync,
    pending_blocks: Vec<InvItem>,
    pending_txs: Vec<InvItem>,
    pending_since: Option<Instant>,
    block_backlog: usize,
    tx_backlog: usize,
    last_addr_refresh: Instant,
    last_housekeeping: Instant,
}

impl<B: Backend> Manager<B> {
    pub(crate) fn new(parts: ManagerParts<B>) -> Manager<B> {
        let ManagerParts {
            config,
            backend,
            metrics,
            cancel,
            listener,
            local_addr,
            tracker,
            shared,
            commands,
        } = parts;
        let local = Arc::new(LocalInfo {
            key: config.node_key.clone(),
            node_id: config.node_key.public_key(),
            magic: config.network_magic,
            genesis_hash: config.genesis_hash,
            listen_port: local_addr.port(),
            timing: config.timing.clone(),
            send_budget_bytes: SEND_BUDGET_BYTES,
        });
        let (events_tx, events) = mpsc::channel(EVENT_CHANNEL);
        let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
        let now = Instant::now();
        let mut seen = HashSet::new();
        let targets = config
            .peers
            .iter()
            .filter(|target| seen.insert(target.to_string()))
            .map(|target| PersistentTarget {
                target: target.clone(),
                node_id: None,
                conn: None,
                failures: 0,
                next_attempt: now,
                is_self: false,
            })
            .collect();
        let book = AddrBook::load(config.address_book.clone());
        metrics.describe(
            "p2p_messages_received_total",
            "P2P messages received, by kind.",
        );
        metrics.describe("p2p_messages_sent_total", "P2P messages sent, by kind.");
        metrics.describe("p2p_bans_total", "Peers banned, by reason.");
        metrics.describe("p2p_peers", "Connected peers, by direction.");
        metrics.describe(
            "p2p_disconnects_total",
            "Peer connections closed, by reason.",
        );
        let node_events = backend.subscribe();
        Manager {
            local,
            backend,
            metrics,
            cancel,
            tracker,
            listener,
            shared,
            commands,
            events_tx,
            events,
            verdicts_tx,
            verdicts,
            block_import: None,
            tx_import: Vec::new(),
            node_events,
            node_events_open: true,
            next_id: 1,
            conns: HashMap::new(),
            targets,
            book,
            self_addrs: HashSet::new(),
            requests: Requests::default(),
            sync: BlockSync::new(),
            pending_blocks: Vec::new(),
            pending_txs: Vec::new(),
            pending_since: None,
            block_backlog: 0,
            tx_backlog: 0,
            last_addr_refresh: now,
            last_housekeeping: now,
            config,
        }
    }

    fn spawn_importers(&mut self) {
        let (block_sender, block_queue) = mpsc::unbounded_channel();
        let (checked_sender, checked_queue) = mpsc::channel(PRECHECK_AHEAD);
        self.block_import = Some(block_sender);
        self.tracker.spawn(precheck_blocks(
            self.backend.clone(),
            block_queue,
            checked_sender,
            self.cancel.clone(),
        ));
        self.tracker.spawn(import_blocks(
            self.backend.clone(),
            checked_queue,
            self.verdicts_tx.clone(),
            self.cancel.clone(),
        ));
        for _ in 0..TX_IMPORTERS {
            let (tx_sender, tx_queue) = mpsc::unbounded_channel();
            self.tx_import.push(tx_sender);
            self.tracker.spawn(import_txs(
                self.backend.clone(),
                tx_queue,
                self.verdicts_tx.clone(),
                self.cancel.clone(),
            ));
        }
    }

    /// Runs until cancelled.
    pub(crate) async fn run(mut self) {
        self.spawn_importers();
        tracing::info!(addr = %self.local_addr(), node_id = %hex::encode(self.local.node_id.as_bytes()), "P2P listening");
        let mut maintenance = tokio::time::interval(self.config.timing.maintenance_interval);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self
                .pending_since
                .is_some_and(|since| since.elapsed() >= MAX_ANNOUNCE_DELAY)
            {
                self.flush_announcements();
            }
            let has_pending = self.pending_since.is_some();
            // Biased: rare, cheap sources first, so a flood of peer
            // messages cannot starve relaying or timers; announcements go
            // out as soon as nothing else is waiting.
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                event = self.node_events.recv(), if self.node_events_open => self.on_node_event(event),
                Some(verdict) = self.verdicts.recv() => self.on_verdict(verdict),
                Some(command) = self.commands.recv() => self.on_command(command),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, remote)) => self.on_accept(stream, remote),
                    Err(error) => tracing::warn!(%error, "accepting a peer failed"),
                },
                _ = maintenance.tick() => self.maintain(),
                Some(event) = self.events.recv() => self.on_peer_event(event),
                _ = std::future::ready(()), if has_pending => self.flush_announcements(),
            }
        }
        for conn in self.conns.values() {
            conn.cancel.cancel();
        }
        self.shared.syncing.store(false, Ordering::Relaxed);
        tracing::info!("P2P stopped");
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.listen_addr)
    }

    fn now_ms(&self) -> u64 {
        unix_ms()
    }

    // ------------------------------------------------------------ connections

    fn new_context(&mut self, direction: Direction) -> (PeerId, PeerContext<B>, CancellationToken) {
        let id = self.next_id;
        self.next_id += 1;
        let cancel = self.cancel.child_token();
        let context = PeerContext {
            id,
            direction,
            backend: self.backend.clone(),
            metrics: self.metrics.clone(),
            events: self.events_tx.clone(),
            cancel: cancel.clone(),
            local: self.local.clone(),
            tracker: self.tracker.clone(),
        };
        (id, context, cancel)
    }

    fn is_banned_addr(&self, addr: SocketAddr) -> bool {
        lock(&self.shared.bans).is_addr_banned(addr, Instant::now())
    }

    fn on_accept(&mut self, stream: TcpStream, remote: SocketAddr) {
        if self.is_banned_addr(remote) {
            tracing::debug!(peer = %remote, "refused a banned address");
            self.metrics
                .inc("p2p_disconnects_total", &[("reason", "banned")]);
            return;
        }
        let inbound = self
            .conns
            .values()
            .filter(|conn| conn.direction == Direction::Inbound)
            .count();
        if inbound >= self.config.max_inbound {
            tracing::debug!(peer = %remote, inbound, "inbound slots full");
            self.metrics
                .inc("p2p_disconnects_total", &[("reason", "inbound_full")]);
            return;
        }
        let _ = stream.set_nodelay(true);
        let (id, context, cancel) = self.new_context(Direction::Inbound);
        self.conns.insert(
            id,
            Conn {
                direction: Direction::Inbound,
                cancel,
                remote: Some(remote),
                dial: None,
                peer: None,
            },
        );
        self.tracker
            .spawn(peer::run_connection(context, stream, remote));
    }

    fn dial(&mut self, kind: DialKind, target: String) -> PeerId {
        let (id, context, cancel) = self.new_context(Direction::Outbound);
        self.conns.insert(
            id,
            Conn {
                direction: Direction::Outbound,
                cancel,
                remote: None,
                dial: Some(kind),
                peer: None,
            },
        );
        tracing::debug!(%target, "dialing");
        self.tracker.spawn(peer::dial_and_run(context, target));
        id
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial(target) => {
                if self.targets.iter().any(|known| known.target == target) {
                    // Dial again now even when backing off.
                    if let Some(known) =
                        self.targets.iter_mut().find(|known| known.target == target)
                    {
                        known.next_attempt = Instant::now();
                        known.is_self = false;
                    }
                } else {
                    self.targets.push(PersistentTarget {
                        target,
                        node_id: None,
                        conn: None,
                        failures: 0,
                        next_attempt: Instant::now(),
                        is_self: false,
                    });
                }
                self.dial_targets();
            }
        }
    }

    fn ready_peer_with(&self, node_id: &PublicKey) -> Option<PeerId> {
        self.conns
            .iter()
            .find(|(_, conn)| {
                conn.peer
                    .as_ref()
                    .is_some_and(|peer| peer.node_id == *node_id)
            })
            .map(|(id, _)| *id)
    }

    fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Connected { id, remote } => {
                let banned = self.is_banned_addr(remote);
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.remote = Some(remote);
                    if banned {
                        conn.cancel.cancel();
                    }
                }
            }
            PeerEvent::Ready {
                id,
                hello,
                remote,
                sender,
                reply,
            } => {
                let accepted = self.on_ready(id, hello, remote, sender);
                let _ = reply.send(accepted);
                if accepted {
                    self.after_ready(id);
                }
            }
            PeerEvent::Message { id, message } => self.on_message(id, message),
            PeerEvent::Pong { id, rtt } => {
                if let Some(peer) = self.conns.get_mut(&id).and_then(|conn| conn.peer.as_mut()) {
                    peer.ping_ms = Some(rtt.as_millis() as u64);
                }
            }
            PeerEvent::Closed { id, reason } => self.on_closed(id, reason),
        }
    }

    /// Decides whether to keep a peer that finished its handshake.
    fn on_ready(
        &mut self,
        id: PeerId,
        hello: super::message::Hello,
        remote: SocketAddr,
        sender: PeerSender,
    ) -> bool {
        let now = Instant::now();
        let Some(direction) = self.conns.get(&id).map(|conn| conn.direction) else {
            return false;
        };
        {
            let bans = lock(&self.shared.bans);
            if bans.is_banned(&BanKey::Node(hello.node_id), now) || bans.is_addr_banned(remote, now)
            {
                tracing::debug!(peer = %remote, "refused a banned node");
                return false;
            }
        }
        let node_id = hello.node_id;
        if let Some(existing) = self.ready_peer_with(&node_id) {
            // Two connections to one node (often both sides dialing at
            // once): both ends keep the one dialed by the smaller node id,
            // so they agree without talking.
            let existing_direction = self.conns.get(&existing).map(|conn| conn.direction);
            let dialer = |direction: Direction| {
                if direction == Direction::Outbound {
                    self.local.node_id
                } else {
                    node_id
                }
            };
            let keep_new = existing_direction.is_some_and(|existing_direction| {
                existing_direction != direction && dialer(direction) < dialer(existing_direction)
            });
            if !keep_new {
                tracing::debug!(peer = %remote, "second connection to a connected node");
                self.metrics
                    .inc("p2p_disconnects_total", &[("reason", "duplicate")]);
                self.note_target_node(id, node_id);
                return false;
            }
            if let Some(old) = self.conns.get(&existing) {
                old.cancel.cancel();
            }
        }
        let listen_addr = match direction {
            Direction::Outbound => Some(remote),
            Direction::Inbound => {
                Some(SocketAddr::new(remote.ip(), hello.listen_port)).filter(is_dialable)
            }
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        conn.remote = Some(remote);
        conn.peer = Some(ReadyPeer {
            node_id,
            listen_addr,
            sender,
            best_height: hello.best_height,
            best_work: hello.best_work,
            synced: false,
            connected_at: now,
            ping_ms: None,
            known: KnownInventory::new(KNOWN_INVENTORY_CAPACITY),
            addr_tokens: MAX_ADDRS as f64,
            addr_tokens_at: now,
            last_getaddr_answered: None,
            reported_peers: Vec::new(),
        });
        tracing::info!(
            peer = %remote,
            node_id = %hex::encode(node_id.as_bytes()),
            direction = ?direction,
            height = hello.best_height,
            "peer connected"
        );
        self.note_target_node(id, node_id);
        if let Some(listen_addr) = listen_addr {
            let now_ms = self.now_ms();
            self.book.connected(listen_addr, node_id, now_ms);
        }
        true
    }

    fn note_target_node(&mut self, id: PeerId, node_id: PublicKey) {
        if let Some(DialKind::Persistent(index)) = self.conns.get(&id).and_then(|conn| conn.dial) {
            if let Some(target) = self.targets.get_mut(index) {
                target.node_id = Some(node_id);
            }
        }
    }

    fn after_ready(&mut self, id: PeerId) {
        self.send(id, &Message::GetAddr);
        // Our pending txs, oldest of them first so a sender's nonces arrive
        // in order.
        let mut pending = self.backend.mempool_txids(MEMPOOL_ANNOUNCE_LIMIT);
        pending.reverse();
        if let Some(peer) = self.peer_mut(id) {
            let fresh: Vec<InvItem> = pending
                .into_iter()
                .map(InvItem::Tx)
                .filter(|item| peer.known.insert(*item))
                .collect();
            for chunk in fresh.chunks(MAX_INV_ITEMS) {
                if !self.send(id, &Message::Inv(chunk.to_vec())) {
                    break;
                }
            }
        }
        let our_work = self.backend.tip().total_work;
        let claims_more = self
            .conns
            .get(&id)
            .and_then(|conn| conn.peer.as_ref())
            .is_some_and(|peer| peer.best_work > our_work);
        if claims_more {
            self.start_sync(id);
        }
        self.publish();
    }

    fn on_closed(&mut self, id: PeerId, reason: CloseReason) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        let now = Instant::now();
        let was_ready = conn.peer.is_some();
        let label = match &reason {
            CloseReason::DialFailed(_) => "dial_failed",
            CloseReason::Misbehaved { .. } => "misbehaved",
            CloseReason::SelfConnection => "self",
            CloseReason::Rejected => "rejected",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Dead => "dead",
            CloseReason::SlowPeer => "slow",
            CloseReason::Disconnected(_) => "closed",
        };
        self.metrics
            .inc("p2p_disconnects_total", &[("reason", label)]);
        match &reason {
            CloseReason::Misbehaved {
                reason: why,
                detail,
            } => {
                let node_id = conn.peer.as_ref().map(|peer| peer.node_id);
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
            _ => {}
        }
        match conn.dial {
            Some(DialKind::Persistent(index)) => {
                if let Some(target) = self.targets.get_mut(index) {
                    if target.conn == Some(id) {
                        target.conn = None;
                    }
                    if was_ready {
                        target.failures = 0;
                    } else {
                        target.failures = target.failures.saturating_add(1);
                    }
                    target.next_attempt = now + backoff(target.failures);
                }
            }
            Some(DialKind::Book(addr))
                if !was_ready && !matches!(reason, CloseReason::SelfConnection) =>
            {
                let now_ms = self.now_ms();
                self.book.failed(&addr, now_ms);
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
            let usable = self.usable_peers();
            let again = self
                .requests
                .peer_gone(id, now, &|peer| usable.contains(&peer));
            self.send_requests(again);
            if self.sync.peer() == Some(id) {
                self.reset_sync();
                self.choose_sync_peer();
            }
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
        let (now, now_ms, duration) = (Instant::now(), self.now_ms(), self.config.ban_duration);
        {
            let mut bans = lock(&self.shared.bans);
            for addr in remote.iter().chain(listen.iter()) {
                bans.ban(BanKey::for_addr(*addr), now, now_ms, duration);
            }
            if let Some(node_id) = node_id {
                bans.ban(BanKey::Node(node_id), now, now_ms, duration);
            }
        }
        if let Some(listen) = listen {
            self.book.remove(&listen);
        }
        self.metrics.inc("p2p_bans_total", &[("reason", reason)]);
        tracing::warn!(
            peer = ?remote,
            node_id = ?node_id.map(|id| hex::encode(id.as_bytes())),
            reason,
            detail,
            ban_secs = self.config.ban_duration.as_secs(),
            "banned misbehaving peer"
        );
    }

    /// Bans a connected peer and drops it.
    fn ban_peer(&mut self, id: PeerId, reason: &'static str, detail: &str) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        conn.cancel.cancel();
        let remote = conn.remote;
        let listen = conn.peer.as_ref().and_then(|peer| peer.listen_addr);
        let node_id = conn.peer.as_ref().map(|peer| peer.node_id);
        self.ban(remote, listen, node_id, reason, detail);
    }

    fn drop_peer(&mut self, id: PeerId, why: &str) {
        if let Some(conn) = self.conns.get(&id) {
            tracing::info!(peer = ?conn.remote, why, "dropping peer");
            conn.cancel.cancel();
        }
    }

    // ------------------------------------------------------------- sending

    fn peer_mut(&mut self, id: PeerId) -> Option<&mut ReadyPeer> {
        self.conns.get_mut(&id).and_then(|conn| conn.peer.as_mut())
    }

    /// Queues a message for a peer; a peer whose queue is full is dropped.
    fn send(&mut self, id: PeerId, message: &Message) -> bool {
        let payload = encode_message(message);
        self.send_encoded(id, message.kind(), payload)
    }

    fn send_encoded(
        &mut self,
        id: PeerId,
        kind: &'static str,
        payload: tokio_util::bytes::Bytes,
    ) -> bool {
        let Some(peer) = self.conns.get(&id).and_then(|conn| conn.peer.as_ref()) else {
            return false;
        };
        if peer.sender.try_send(kind, payload) {
            return true;
        }
        self.metrics
            .inc("p2p_disconnects_total", &[("reason", "slow")]);
        self.drop_peer(id, "send queue full: peer cannot keep up");
        false
    }

    fn send_requests(&mut self, requests: Vec<(InvItem, PeerId)>) {
        let mut by_peer: HashMap<PeerId, Vec<InvItem>> = HashMap::new();
        for (item, peer) in requests {
            by_peer.entry(peer).or_default().push(item);
        }
        for (peer, items) in by_peer {
            for chunk in items.chunks(MAX_INV_ITEMS) {
                self.send(peer, &Message::GetData(chunk.to_vec()));
            }
        }
    }

    fn usable_peers(&self) -> HashSet<PeerId> {
        self.conns
            .iter()
            .filter(|(_, conn)| conn.peer.is_some() && !conn.cancel.is_cancelled())
            .map(|(id, _)| *id)
            .collect()
    }

    // ------------------------------------------------------------- relaying

    fn on_node_event(&mut self, event: Result<NodeEvent, broadcast::error::RecvError>) {
        match event {
            // Relayed the moment it is validated, while the chain writer
            // commits it: each hop then costs a check, not a sled commit.
            Ok(NodeEvent::BlockValidated { hash, .. }) => {
                self.pending_blocks.push(InvItem::Block(hash));
                self.flush_announcements();
            }
            // Announced already when validated (peers' known sets skip
            // it); kept for backends that only report connections.
            Ok(NodeEvent::BlockConnected { block, .. }) => {
                self.pending_blocks.push(InvItem::Block(block.hash()));
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Ok(NodeEvent::TxAccepted { tx }) => {
                self.pending_txs.push(InvItem::Tx(tx.txid()));
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Ok(NodeEvent::TxReadmitted { tx }) => {
                // What we announced while it sat in a block may never have
                // arrived (a partition drops messages without closing the
                // connection), so no peer is assumed to know it any more.
                let item = InvItem::Tx(tx.txid());
                for conn in self.conns.values_mut() {
                    if let Some(peer) = conn.peer.as_mut() {
                        peer.known.forget(&item);
                    }
                }
                self.pending_txs.push(item);
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Ok(NodeEvent::Reorg { .. }) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "P2P fell behind the node's events; some announcements are skipped"
                );
            }
            Err(broadcast::error::RecvError::Closed) => self.node_events_open = false,
        }
    }

    /// Announces what the node accepted to every peer not known to have it:
    /// blocks first, in their own `Inv`, then txs.
    fn flush_announcements(&mut self) {
        self.pending_since = None;
        let blocks = std::mem::take(&mut self.pending_blocks);
        let txs = std::mem::take(&mut self.pending_txs);
        let ids: Vec<PeerId> = self.usable_peers().into_iter().collect();
        for id in ids {
            for batch in [&blocks, &txs] {
                let Some(peer) = self.peer_mut(id) else { break };
                let fresh: Vec<InvItem> = batch
                    .iter()
                    .copied()
                    .filter(|item| peer.known.insert(*item))
                    .collect();
                for chunk in fresh.chunks(MAX_INV_ITEMS) {
                    if !self.send(id, &Message::Inv(chunk.to_vec())) {
                        break;
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------- messages

    fn on_message(&mut self, id: PeerId, message: Message) {
        if self.peer_mut(id).is_none() {
            return;
        }
        match message {
            Message::GetAddr => self.on_get_addr(id),
            Message::Addr(addrs) => self.on_addr(id, addrs),
            Message::Inv(items) => self.on_inv(id, items),
            Message::NotFound(items) => self.on_not_found(id, items),
            Message::Tx(tx) => self.on_tx(id, tx),
            Message::Block(block) => self.on_block(id, block),
            Message::Headers(headers) => self.on_headers(id, headers),
            // Answered by the peer task itself.
            Message::Ping(_) | Message::Pong(_) | Message::GetData(_) | Message::GetHeaders(_) => {}
            Message::Hello(_) | Message::HelloAck(_) => self.ban_peer(
                id,
                "protocol_violation",
                "handshake message after the handshake",
            ),
        }
    }

    fn on_get_addr(&mut self, id: PeerId) {
        let now = Instant::now();
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if peer
            .last_getaddr_answered
            .is_some_and(|last| now.duration_since(last) < GETADDR_INTERVAL)
        {
            return;
        }
        peer.last_getaddr_answered = Some(now);
        let asker_addr = peer.listen_addr;
        let now_ms = self.now_ms();
        let mut seen: HashSet<SocketAddr> = HashSet::new();
        let mut addrs = Vec::new();
        for (other, conn) in &self.conns {
            if *other == id {
                continue;
            }
            if let Some(peer) = &conn.peer {
                // Inbound peers that do not listen are still reported
                // (with their node id) so explorers can draw the edge;
                // their ephemeral port is never offered as dialable.
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
        self.send(id, &Message::Addr(addrs));
    }

    fn on_addr(&mut self, id: PeerId, addrs: Vec<PeerAddr>) {
        let now = Instant::now();
        let now_ms = self.now_ms();
        let our_id = self.local.node_id;
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        peer.reported_peers = addrs
            .iter()
            .filter(|addr| addr.connected)
            .filter_map(|addr| addr.node_id)
            .collect();
        let elapsed = now.duration_since(peer.addr_tokens_at).as_secs_f64();
        peer.addr_tokens = (peer.addr_tokens + elapsed * ADDR_TOKENS_PER_SEC).min(MAX_ADDRS as f64);
        peer.addr_tokens_at = now;
        let allowed = (peer.addr_tokens.floor() as usize).min(addrs.len());
        peer.addr_tokens -= allowed as f64;
        for addr in addrs.into_iter().take(allowed) {
            if addr.node_id == Some(our_id) || self.self_addrs.contains(&addr.addr) {
                continue;
            }
            self.book.learned(&addr, now_ms);
        }
        self.publish();
    }

    fn on_inv(&mut self, id: PeerId, items: Vec<InvItem>) {
        let now = Instant::now();
        let mut fetch = Vec::new();
        let mut new_block = false;
        for item in items {
            if let Some(peer) = self.peer_mut(id) {
                peer.known.insert(item);
            }
            let have = match item {
                InvItem::Tx(txid) => self.backend.has_tx(&txid),
                InvItem::Block(hash) => self.backend.has_block(&hash),
            };
            if have {
                // A peer announcing our own tip is at least that high; this
                // keeps `GET /v1/peers` heights current for peers whose blocks
                // reach us first through someone else.
                if let InvItem::Block(hash) = item {
                    let tip = self.backend.tip();
                    if hash == tip.hash {
                        if let Some(peer) = self.peer_mut(id) {
                            peer.best_height = peer.best_height.max(tip.height);
                        }
                    }
                }
                continue;
            }
            new_block |= item.is_block();
            if self.requests.announced(item, id, now) == Announced::Fetch {
                fetch.push(item);
            }
        }
        if new_block {
            if let Some(peer) = self.peer_mut(id) {
                peer.synced = false;
            }
        }
        // Blocks first: they may make some of the txs redundant.
        fetch.sort_by_key(|item| !item.is_block());
        if !fetch.is_empty() {
            self.send(id, &Message::GetData(fetch));
        }
    }

    fn on_not_found(&mut self, id: PeerId, items: Vec<InvItem>) {
        let now = Instant::now();
        let usable = self.usable_peers();
        let mut again = Vec::new();
        let mut sync_gap = false;
        for item in items {
            if let InvItem::Block(hash) = item {
                if self.sync.peer() == Some(id) && self.sync.block_unavailable(&hash) {
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
            // The sync peer no longer has blocks its own headers named
            // (it reorganised): start over from whoever has the most work.
            if let Some(peer) = self.peer_mut(id) {
                peer.synced = true;
            }
            self.reset_sync();
            self.choose_sync_peer();
        }
    }

    fn on_tx(&mut self, id: PeerId, tx: Transaction) {
        let now = Instant::now();
        let txid = tx.txid();
        let item = InvItem::Tx(txid);
        if let Some(peer) = self.peer_mut(id) {
            peer.known.insert(item);
        }
        let requested = self.requests.received(&item, now);
        if !requested && self.tx_backlog >= MAX_UNSOLICITED_BACKLOG {
            return;
        }
        if self.backend.has_tx(&txid) {
            self.requests.done(&item);
            return;
        }
        let worker = tx.from.as_bytes()[0] as usize % self.tx_import.len().max(1);
        match self.tx_import.get(worker) {
            Some(queue) if queue.send((id, tx)).is_ok() => self.tx_backlog += 1,
            _ => self.requests.done(&item),
        }
    }

    fn on_block(&mut self, id: PeerId, block: Block) {
        let now = Instant::now();
        let hash = block.hash();
        let item = InvItem::Block(hash);
        let size = block.encoded_len();
        if let Some(peer) = self.peer_mut(id) {
            peer.known.insert(item);
            peer.best_height = peer.best_height.max(block.header.height);
        }
        let requested = self.requests.received(&item, now);
        let for_sync = self.sync.block_received(&hash, size, now);
        if !requested && !for_sync && self.block_backlog >= MAX_UNSOLICITED_BACKLOG {
            return;
        }
        if self.backend.has_block(&hash) {
            self.requests.done(&item);
            self.sync.block_judged(&hash, size);
            self.sync_progress();
            return;
        }
        let import = ImportItem {
            from: Some(id),
            block,
            size,
            synced: for_sync,
        };
        match &self.block_import {
            Some(queue) if queue.send(import).is_ok() => self.block_backlog += 1,
            _ => {
                self.requests.done(&item);
                self.sync.block_judged(&hash, size);
            }
        }
        self.sync_progress();
    }

    fn on_headers(&mut self, id: PeerId, headers: Vec<ledger::Header>) {
        let now = Instant::now();
        if let Some(last) = headers.last() {
            let height = last.height;
            if let Some(peer) = self.peer_mut(id) {
                peer.best_height = peer.best_height.max(height);
            }
        }
        let backend = self.backend.clone();
        match self
            .sync
            .on_headers(id, &headers, now, |hash| backend.has_block(hash))
        {
            Ok(()) => self.sync_progress(),
            Err(HeadersError::BadProofOfWork) => {
                self.ban_peer(id, "bad_pow", "header misses its target")
            }
            Err(HeadersError::Unconnected) => {
                self.ban_peer(id, "protocol_violation", "headers do not chain")
            }
        }
    }

    fn on_verdict(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Tx {
                from,
                txid,
                verdict,
            } => {
                self.tx_backlog = self.tx_backlog.saturating_sub(1);
                self.requests.done(&InvItem::Tx(txid));
                if let TxVerdict::Rejected {
                    reason,
                    misbehaving,
                } = verdict
                {
                    if misbehaving {
                        self.ban_peer(from, "bad_tx", &format!("tx {txid}: {reason}"));
                    } else {
                        tracing::debug!(%txid, %reason, "peer's tx not admitted");
                    }
                }
            }
            Verdict::Block {
                from,
                hash,
                size,
                verdict,
            } => {
                self.block_backlog = self.block_backlog.saturating_sub(1);
                self.requests.done(&InvItem::Block(hash));
                let for_sync = self.sync.block_judged(&hash, size);
                match verdict {
                    BlockVerdict::Accepted | BlockVerdict::Known => {}
                    BlockVerdict::Orphan => {
                        if let Some(from) = from {
                            if let Some(peer) = self.peer_mut(from) {
                                peer.synced = false;
                            }
                            if !self.sync.is_active() {
                                self.start_sync(from);
                            }
                        }
                    }
                    BlockVerdict::Rejected {
                        reason,
                        misbehaving,
                    } => {
                        if misbehaving {
                            if let Some(from) = from {
                                self.ban_peer(
                                    from,
                                    "bad_block",
                                    &format!("block {hash}: {reason}"),
                                );
                            }
                        } else {
                            tracing::info!(%hash, %reason, "peer's block rejected");
                        }
                        if for_sync {
                            if let Some(peer) = self.sync.peer().and_then(|id| self.peer_mut(id)) {
                                peer.synced = true;
                            }
                            self.reset_sync();
                            self.choose_sync_peer();
                        }
                    }
                }
                self.sync_progress();
            }
        }
    }

    // ----------------------------------------------------------------- sync

    fn start_sync(&mut self, id: PeerId) {
        let now = Instant::now();
        if !self.sync.start(id, now) {
            return;
        }
        self.shared.syncing.store(true, Ordering::Relaxed);
        let tip = self.backend.tip();
        tracing::info!(peer = id, height = tip.height, "syncing from peer");
        let locator = self.sync.locator(self.backend.locator());
        self.sync.headers_requested(now);
        self.send(id, &Message::GetHeaders(locator));
    }

    fn reset_sync(&mut self) {
        for hash in self.sync.reset() {
            self.requests.done(&InvItem::Block(hash));
        }
        self.shared.syncing.store(false, Ordering::Relaxed);
    }

    /// Starts a sync with the peer claiming the most work above ours.
    fn choose_sync_peer(&mut self) {
        if self.sync.is_active() {
            return;
        }
        let our_work = self.backend.tip().total_work;
        let best = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.cancel.is_cancelled())
            .filter_map(|(id, conn)| conn.peer.as_ref().map(|peer| (*id, peer)))
            .filter(|(_, peer)| !peer.synced && peer.best_work > our_work)
            .max_by_key(|(_, peer)| peer.best_work)
            .map(|(id, _)| id);
        if let Some(id) = best {
            self.start_sync(id);
        }
    }

    /// Keeps the sync's header and block requests flowing, and ends it when
    /// nothing is left.
    fn sync_progress(&mut self) {
        let Some(peer) = self.sync.peer() else { return };
        let now = Instant::now();
        if self.sync.wants_headers() {
            let locator = self.sync.locator(self.backend.locator());
            self.sync.headers_requested(now);
            self.send(peer, &Message::GetHeaders(locator));
        }
        let batch = self.sync.next_requests();
        if !batch.is_empty() {
            let items: Vec<InvItem> = batch.into_iter().map(InvItem::Block).collect();
            for item in &items {
                self.requests.insert(*item, peer, now, true);
            }
            self.send(peer, &Message::GetData(items));
        }
        if self.sync.is_done() {
            // The writer commits the last few synced blocks a moment
            // later (held connects), so the committed tip may still be a
            // few blocks short of the sync's last header: log both.
            let tip = self.backend.tip();
            tracing::info!(
                peer,
                height = self.sync.last_header_height().max(tip.height),
                committed_height = tip.height,
                blocks = self.sync.blocks_imported,
                secs = self.sync.started_at().elapsed().as_secs_f64(),
                "sync finished"
            );
            if let Some(synced) = self.peer_mut(peer) {
                synced.synced = true;
            }
            self.reset_sync();
            self.choose_sync_peer();
        }
    }

    // ---------------------------------------------------------- maintenance

    fn maintain(&mut self) {
        let now = Instant::now();
        let usable = self.usable_peers();
        let (again, _sync_expired) =
            self.requests
                .expire(now, self.config.timing.request_timeout, &|peer| {
                    usable.contains(&peer)
                });
        self.send_requests(again);
        if self
            .sync
            .is_stalled(now, self.config.timing.sync_stall_timeout)
        {
            if let Some(peer) = self.sync.peer() {
                tracing::warn!(peer, "sync peer stalled; replacing it");
                self.metrics
                    .inc("p2p_disconnects_total", &[("reason", "stalled")]);
                if let Some(stalled) = self.peer_mut(peer) {
                    stalled.synced = true;
                }
                self.drop_peer(peer, "stalled sync");
                self.reset_sync();
            }
        }
        self.choose_sync_peer();
        self.dial_targets();
        if !self.config.no_discovery {
            self.fill_outbound();
        }
        if now.duration_since(self.last_addr_refresh) >= ADDR_REFRESH {
            self.last_addr_refresh = now;
            for id in self.usable_peers() {
                self.send(id, &Message::GetAddr);
            }
        }
        if now.duration_since(self.last_housekeeping) >= Duration::from_secs(60) {
            self.last_housekeeping = now;
            let now_ms = self.now_ms();
            let forgotten = self.book.age_out(now_ms);
            let bans = lock(&self.shared.bans).expire(now);
            tracing::debug!(forgotten, bans, book = self.book.len(), "P2P housekeeping");
        }
        self.publish();
    }

    fn dial_targets(&mut self) {
        let now = Instant::now();
        let connected: HashSet<PublicKey> = self
            .conns
            .values()
            .filter_map(|conn| conn.peer.as_ref().map(|peer| peer.node_id))
            .collect();
        let mut to_dial = Vec::new();
        for (index, target) in self.targets.iter().enumerate() {
            if target.is_self || target.conn.is_some() || target.next_attempt > now {
                continue;
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

    /// Dials address-book entries while outbound slots are free.
    fn fill_outbound(&mut self) {
        // Slots are taken by working outbound peers and by address-book
        // dials in flight; a bootstrap peer being redialed after it died
        // does not hold a slot, or a dead bootstrap peer would block its
        // own replacement.
        let outbound = self
            .conns
            .values()
            .filter(|conn| conn.direction == Direction::Outbound)
            .filter(|conn| conn.peer.is_some() || matches!(conn.dial, Some(DialKind::Book(_))))
            .count();
        if outbound >= self.config.max_outbound {
            return;
        }
        let now = Instant::now();
        let now_ms = self.now_ms();
        let mut busy: HashSet<SocketAddr> = HashSet::new();
        let mut connected_nodes: HashSet<PublicKey> = HashSet::new();
        for conn in self.conns.values() {
            busy.extend(conn.remote);
            if let Some(DialKind::Book(addr)) = conn.dial {
                busy.insert(addr);
            }
            if let Some(peer) = &conn.peer {
                busy.extend(peer.listen_addr);
                connected_nodes.insert(peer.node_id);
            }
        }
        let local_addr = self.local_addr();
        let our_id = self.local.node_id;
        let candidates = {
            let bans = lock(&self.shared.bans);
            self.book.candidates(now_ms, |addr, entry| {
                busy.contains(addr)
                    || self.self_addrs.contains(addr)
                    || *addr == local_addr
                    || bans.is_addr_banned(*addr, now)
                    || entry.node_id.is_some_and(|node_id| {
                        node_id == our_id
                            || connected_nodes.contains(&node_id)
                            || bans.is_banned(&BanKey::Node(node_id), now)
                    })
            })
        };
        for addr in candidates
            .into_iter()
            .take(self.config.max_outbound - outbound)
        {
            self.book.attempted(&addr, now_ms);
            self.dial(DialKind::Book(addr), addr.to_string());
        }
    }

    /// Publishes the peer list for the handle's synchronous reads.
    fn publish(&self) {
        let mut peers = Vec::new();
        let mut known = Vec::new();
        let (mut inbound, mut outbound) = (0i64, 0i64);
        for conn in self.conns.values() {
            let Some(peer) = &conn.peer else { continue };
            if conn.cancel.is_cancelled() {
                continue;
            }
            match conn.direction {
                Direction::Inbound => inbound += 1,
                Direction::Outbound => outbound += 1,
            }
            let addr = peer.listen_addr.or(conn.remote);
            if let Some(addr) = addr {
                peers.push(PeerView {
                    addr,
                    direction: conn.direction,
                    node_id: peer.node_id,
                    height: peer.best_height,
                    ping_ms: peer.ping_ms,
                    connected_at: peer.connected_at,
                });
                if !peer.reported_peers.is_empty() {
                    known.push(KnownView {
                        node_id: peer.node_id,
                        addr,
                        peers: peer.reported_peers.clone(),
                    });
                }
            }
        }
        peers.sort_by_key(|peer| peer.connected_at);
        *lock(&self.shared.peers) = peers;
        *lock(&self.shared.known) = known;
        self.metrics
            .set("p2p_peers", &[("direction", "inbound")], inbound);
        self.metrics
            .set("p2p_peers", &[("direction", "outbound")], outbound);
    }
}

/// Runs `Backend::precheck_block` on up to `PRECHECK_AHEAD` queued blocks
/// at once (only synced blocks: a single gossiped block has its txs'
/// signatures cached from the mempool already), passing them on in order.
async fn precheck_blocks<B: Backend>(
    backend: B,
    queue: mpsc::UnboundedReceiver<ImportItem>,
    checked: mpsc::Sender<ImportItem>,
    cancel: CancellationToken,
) {
    let incoming = futures::stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|item| (item, queue))
    });
    let mut prechecked = Box::pin(
        incoming
            .map(|item: ImportItem| {
                let backend = backend.clone();
                async move {
                    if item.synced {
                        let block = backend.precheck_block(item.block).await;
                        ImportItem { block, ..item }
                    } else {
                        item
                    }
                }
            })
            .buffered(PRECHECK_AHEAD),
    );
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => break,
            next = prechecked.next() => match next {
                Some(item) => item,
                None => break,
            },
        };
        let sent = tokio::select! {
            _ = cancel.cancelled() => break,
            sent = checked.send(item) => sent,
        };
        if sent.is_err() {
            break;
        }
    }
}

/// Validates blocks one at a time, in arrival order (sync delivers parents
/// before children), off the manager's task.
async fn import_blocks<B: Backend>(
    backend: B,
    mut queue: mpsc::Receiver<ImportItem>,
    verdicts: mpsc::UnboundedSender<Verdict>,
    cancel: CancellationToken,
) {
    loop {
        let ImportItem {
            from,
            block,
            size,
            synced,
        } = tokio::select! {
            _ = cancel.cancelled() => break,
            next = queue.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let hash = block.hash();
        let verdict = tokio::select! {
            _ = cancel.cancelled() => break,
            verdict = async {
                if synced {
                    backend.submit_synced_block(block).await
                } else {
                    backend.submit_block(block).await
                }
            } => verdict,
        };
        if verdicts
            .send(Verdict::Block {
                from,
                hash,
                size,
                verdict,
            })
            .is_err()
        {
            break;
        }
    }
}

/// Validates txs in arrival order for the senders routed to this importer.
async fn import_txs<B: Backend>(
    backend: B,
    mut queue: mpsc::UnboundedReceiver<(PeerId, Transaction)>,
    verdicts: mpsc::UnboundedSender<Verdict>,
    cancel: CancellationToken,
) {
    loop {
        let (from, tx) = tokio::select! {
            _ = cancel.cancelled() => break,
            next = queue.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let txid = tx.txid();
        let verdict = tokio::select! {
            _ = cancel.cancelled() => break,
            verdict = backend.submit_tx(tx) => verdict,
        };
        if verdicts
            .send(Verdict::Tx {
                from,
                txid,
                verdict,
            })
            .is_err()
        {
            break;
        }
    }
}
