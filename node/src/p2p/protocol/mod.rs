//! The protocol core: every rule of the peer-to-peer network, decided in
//! one deterministic state machine that does no I/O. `NetworkState` owns
//! all peer state (sessions, gossip bookkeeping, the sync, the address book
//! and bans, slots and dialing, relay). Its interface is `handle(now,
//! input)` and `poll_action()`, plus `next_timer()` to say when it next
//! needs the clock. Time comes only from `now`, randomness only from the
//! seeded RNG it owns, and peers live in maps ordered by `ConnId`, so the
//! same inputs with the same seed always give the same actions in the same
//! order. The chain is read through `ChainView` (synchronous reads; a
//! simulation supplies its own); validation, sockets, timers, storage and
//! metrics are the driver's, reached only through `Action`s.

pub mod addrbook;
mod addrbuckets;
mod compact;
mod connmap;
mod eviction;
pub mod gossip;
mod interface;
mod known;
pub mod netgroup;
mod peers;
mod ratelimit;
mod relay;
mod seeds;
pub mod session;
pub mod sync;
mod syncing;
pub mod time;

#[cfg(test)]
mod tests;

use crate::p2p::message::{Message, NetworkMagic};
use crate::p2p::{P2pTiming, TipSummary};
use addrbook::{AddrBook, AddrEntry, BanKey, BanList};
use connmap::ConnMap;
use core::net::SocketAddr;
use gossip::{InventoryKey, Requests};
pub use interface::{
    Action, CloseCause, CloseReason, Command, Input, KnownView, MetricUpdate, Outgoing, PeerView,
    Snapshot,
};
use known::{KnownByPeers, PeerSlot};
use ledger::json::Direction;
use ledger::{Address, BlockHash, Header, Height, PublicKey, SecretKey, Transaction, TxId, Work};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use session::{Identity, Session};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use sync::BlockSync;
pub use time::{Mono, Time};

/// Identifies one connection for the lifetime of the node. (A peer's
/// identity is its node id; a node may connect to us more than once.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The chain and mempool as the core reads them. Every call is a cheap,
/// synchronous lookup; nothing here validates or writes.
pub trait ChainView {
    fn tip(&self) -> TipSummary;
    /// Block locator of the best chain: recent hashes densely, then
    /// exponentially sparser back to genesis.
    fn locator(&self) -> Vec<BlockHash>;
    /// Best-chain headers after the first locator hash we know, up to `max`.
    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<Header>;
    /// Whether we hold the block (validated, so it can be served).
    fn has_block(&self, hash: &BlockHash) -> bool;
    /// The total work of the chain ending in a block we hold (any branch);
    /// `None` when we do not hold it. What a peer's headers are counted
    /// from. A view that knows only its tip answers for the tip.
    fn block_work(&self, hash: &BlockHash) -> Option<Work> {
        let tip = self.tip();
        (tip.hash == *hash).then_some(tip.total_work)
    }
    /// A tx in the mempool (for answering `GetData`).
    fn mempool_tx(&self, txid: &TxId) -> Option<Transaction>;
    /// Several txs of the mempool at once, in order (rebuilding a compact
    /// block takes thousands); a backend with a lock takes it once.
    fn mempool_txs(&self, txids: &[TxId]) -> Vec<Option<Transaction>> {
        txids.iter().map(|txid| self.mempool_tx(txid)).collect()
    }
    /// Up to `limit` txids of the mempool, newest first.
    fn mempool_txids(&self, limit: usize) -> Vec<TxId>;
    /// Whether a tx is in the mempool or was confirmed by a recent block
    /// (`Mempool::knows`): answered from memory, as it is asked for every
    /// txid a peer announces. A tx confirmed long ago reads as unknown; if
    /// a peer announces one, it is fetched and refused by its nonce.
    fn has_tx(&self, txid: &TxId) -> bool;
    /// `has_tx` for each of `txids`, in order (an `Inv` carries up to
    /// thousands); a backend with a lock takes it once.
    fn has_txs(&self, txids: &[TxId]) -> Vec<bool> {
        txids.iter().map(|txid| self.has_tx(txid)).collect()
    }
    /// Up to `limit` txids of the mempool, the longest pending first.
    fn oldest_pending_txids(&self, limit: usize) -> Vec<TxId>;
    /// The nonce `sender`'s next tx needs: its confirmed nonce plus its
    /// consecutive pending txs.
    fn next_nonce(&self, sender: &Address) -> u64;
    /// `sender`'s pending txs from `first_nonce`, in nonce order, at most
    /// `limit`.
    fn sender_txs(&self, sender: &Address, first_nonce: u64, limit: usize) -> Vec<Transaction>;
}

/// How the network runs, as the core needs it.
#[derive(Clone)]
pub struct ProtocolConfig {
    /// The address our listener is bound to.
    pub listen_addr: SocketAddr,
    /// Bootstrap peers, `host:port`, resolved again at every dial.
    pub peers: Vec<String>,
    /// DNS seed names, `host:port`: the driver resolves them every seed
    /// round and reports `SeedsResolved`.
    pub dns_seeds: Vec<String>,
    /// The address peers should dial us at, when not our bound one.
    pub external_addr: Option<SocketAddr>,
    /// Dial only `peers` (still accept inbound and answer `GetAddr`).
    pub no_discovery: bool,
    pub max_inbound: usize,
    pub max_outbound: usize,
    pub ban_duration: Duration,
    pub network_magic: NetworkMagic,
    pub genesis_hash: BlockHash,
    pub node_key: SecretKey,
    pub timing: P2pTiming,
}

/// What persisted state the core starts from.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub addresses: Vec<(SocketAddr, AddrEntry)>,
    /// Bans with their expiry in Unix ms.
    pub bans: Vec<(BanKey, u64)>,
}

/// The address book's bucket key, from the seed but apart from the RNG's
/// own sequence.
fn bucket_key(seed: u64) -> [u8; 32] {
    use rand::RngCore;
    let mut key = [0u8; 32];
    ChaCha8Rng::seed_from_u64(seed ^ 0x6164_6472_6b65_7973).fill_bytes(&mut key);
    key
}

/// The key of the peers' known-inventory fingerprints, from the seed but
/// apart from the RNG's own sequence.
fn inventory_key(seed: u64) -> InventoryKey {
    use rand::RngCore;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x696e_7665_6e74_6f72);
    InventoryKey::new(rng.next_u64(), rng.next_u64())
}

/// Announcements wait at most this long to be batched.
const MAX_ANNOUNCE_DELAY: Duration = Duration::from_millis(20);

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
    conn: Option<ConnId>,
    failures: u32,
    next_attempt: Mono,
    is_self: bool,
    /// Added by `Command::Dial` rather than `--peer`: dialed only into a
    /// free outbound slot, and capped in number.
    pinned: bool,
}

/// A peer after its handshake.
struct ReadyPeer {
    node_id: PublicKey,
    listen_addr: Option<SocketAddr>,
    best_height: Height,
    best_work: Work,
    /// We have everything it offered when we last synced from it; false
    /// again once it shows us something new.
    caught_up: bool,
    connected_at: Mono,
    ping_ms: Option<u64>,
    /// Its bit in `NetworkState::known`.
    known: PeerSlot,
    addr_tokens: f64,
    addr_tokens_at: Mono,
    last_getaddr_answered: Option<Mono>,
    /// Shared with the published snapshot, which the maintenance round
    /// rebuilds and compares every 500 ms: a reference count to copy, and
    /// the same allocation compares equal without reading the list.
    reported_peers: Arc<[PublicKey]>,
    /// It asked us to push new blocks as compact blocks (`SendCompact`).
    wants_compact: bool,
    behaviour: ratelimit::PeerBehaviour,
    /// Its txs handed to validation and not yet judged.
    tx_backlog: usize,
}

/// Any connection, from dialing to close.
struct Conn {
    direction: Direction,
    remote: Option<SocketAddr>,
    dial: Option<DialKind>,
    /// `None` while an outbound dial is still connecting.
    session: Option<Session>,
    peer: Option<ReadyPeer>,
}

/// The protocol core. See the module docs.
pub struct NetworkState<V: ChainView> {
    config: ProtocolConfig,
    identity: Identity,
    view: V,
    rng: ChaCha8Rng,
    now: Time,
    actions: VecDeque<Action>,
    next_conn: u64,
    conns: ConnMap<Conn>,
    targets: Vec<PersistentTarget>,
    book: AddrBook,
    bans: BanList,
    self_addrs: BTreeSet<SocketAddr>,
    /// What the DNS seeds last resolved to.
    seed_addrs: BTreeSet<SocketAddr>,
    requests: Requests,
    sync: BlockSync,
    pending_blocks: Vec<crate::p2p::message::InvItem>,
    pending_txs: Vec<crate::p2p::message::InvItem>,
    pending_since: Option<Mono>,
    /// When pending txs are next announced, with announcement rounds on
    /// (`P2pTiming::tx_announce_interval`) and txs waiting.
    tx_round_at: Option<Mono>,
    block_backlog: usize,
    /// Encoded bytes of the blocks waiting for validation.
    block_backlog_bytes: usize,
    tx_backlog: usize,
    compact: compact::CompactRelay,
    /// Gaps in senders' nonces we asked a peer to fill, by sender.
    gap_requests: BTreeMap<Address, relay::GapRequest>,
    /// Blocks connected since pending txs were last announced again, and
    /// how many to wait for before the next time (drawn at random).
    blocks_since_reannounce: u32,
    reannounce_after: u32,
    next_maintenance: Mono,
    last_addr_refresh: Mono,
    /// Whose turn it is to be asked for addresses (see `maintain`).
    addr_refresh_turn: usize,
    last_housekeeping: Mono,
    published: Option<Snapshot>,
    /// Which peers are known to have each recent item
    /// (`gossip::KNOWN_INVENTORY_CAPACITY` items unless
    /// `set_known_inventory_capacity` changed it).
    known: KnownByPeers,
    /// The peers with a finished handshake, in `ConnId` order, with their
    /// bit in `known` and whether they take new blocks as compact blocks:
    /// what every flush of announcements walks. Kept here (see
    /// `relay_peers_changed`, `on_send_compact`) because reading it from
    /// each connection cost a cache miss per connection on every flush.
    relay_peers: Vec<(ConnId, PeerSlot, bool)>,
    /// Announced txs we already held, counted since the last maintenance
    /// round, which adds them to `p2p_announcements_known_total`: most
    /// announcements are of such txs, and one metric update each was as
    /// many actions as announcements.
    known_tx_announcements: u64,
    /// The earliest of the sessions' timers (`None`: no session), kept up
    /// to date where one changes (`refresh_session_timer`): `next_timer`
    /// runs after every input, and walking every connection each time was
    /// a measurable share of a large simulation.
    earliest_session_timer: Option<Mono>,
}

impl<V: ChainView> NetworkState<V> {
    /// A core with no connections. `seed` drives every random choice
    /// (nonces, jitter, dial order); a node draws it from the OS, a test or
    /// a simulation fixes it.
    pub fn new(
        config: ProtocolConfig,
        view: V,
        seed: u64,
        now: Time,
        restored: Restored,
    ) -> NetworkState<V> {
        let identity = Identity {
            key: config.node_key.clone(),
            node_id: config.node_key.public_key(),
            magic: config.network_magic,
            genesis_hash: config.genesis_hash,
            // Peers dial what we announce: the external port when set.
            listen_port: config
                .external_addr
                .map_or(config.listen_addr.port(), |addr| addr.port()),
        };
        let mut seen = BTreeSet::new();
        let targets = config
            .peers
            .iter()
            .filter(|target| seen.insert(target.to_string()))
            .map(|target| PersistentTarget {
                target: target.clone(),
                node_id: None,
                conn: None,
                failures: 0,
                next_attempt: now.mono,
                is_self: false,
                pinned: false,
            })
            .collect();
        let bans = BanList::restore(restored.bans, now);
        let mut state = NetworkState {
            identity,
            view,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now,
            actions: VecDeque::new(),
            next_conn: 1,
            conns: ConnMap::default(),
            targets,
            book: AddrBook::restore(restored.addresses, bucket_key(seed)),
            bans,
            self_addrs: BTreeSet::new(),
            seed_addrs: BTreeSet::new(),
            requests: Requests::default(),
            sync: BlockSync::new(),
            pending_blocks: Vec::new(),
            pending_txs: Vec::new(),
            pending_since: None,
            tx_round_at: None,
            block_backlog: 0,
            block_backlog_bytes: 0,
            tx_backlog: 0,
            compact: compact::CompactRelay::default(),
            gap_requests: BTreeMap::new(),
            blocks_since_reannounce: 0,
            reannounce_after: relay::REANNOUNCE_EVERY_BLOCKS.start,
            next_maintenance: now.mono,
            last_addr_refresh: now.mono,
            addr_refresh_turn: 0,
            last_housekeeping: now.mono,
            published: None,
            known: KnownByPeers::new(gossip::KNOWN_INVENTORY_CAPACITY, inventory_key(seed)),
            relay_peers: Vec::new(),
            known_tx_announcements: 0,
            earliest_session_timer: None,
            config,
        };
        state.take_book_changes();
        state
    }

    /// Feeds one input. What to do about it is then read with
    /// `poll_action`.
    pub fn handle(&mut self, now: Time, input: Input) {
        // Time never runs backwards inside the core, whatever the caller's
        // clocks do.
        self.now = Time {
            mono: now.mono.max(self.now.mono),
            unix_ms: now.unix_ms,
        };
        match input {
            Input::Inbound { remote } => self.on_inbound(remote),
            Input::Connected { conn, remote } => self.on_connected(conn, remote),
            Input::DialFailed { conn, error } => self.close(conn, CloseReason::DialFailed(error)),
            Input::Secured { conn, node_id } => self.on_secured(conn, node_id),
            Input::Frame { conn, message } => self.on_frame(conn, message),
            Input::Closed { conn, cause } => {
                let reason = match cause {
                    CloseCause::Disconnected(detail) => CloseReason::Disconnected(detail),
                    CloseCause::BadFrame { reason, detail } => {
                        CloseReason::Misbehaved { reason, detail }
                    }
                    CloseCause::SlowPeer => CloseReason::SlowPeer,
                    CloseCause::Insecure { reason, detail } => {
                        CloseReason::Insecure { reason, detail }
                    }
                };
                self.close(conn, reason);
            }
            Input::BlockVerdict {
                from,
                hash,
                size,
                verdict,
            } => self.on_block_verdict(from, hash, size, verdict),
            Input::TxVerdict {
                from,
                txid,
                sender,
                nonce,
                verdict,
            } => self.on_tx_verdict(from, txid, (sender, nonce), verdict),
            Input::Node(event) => self.on_node_event(event),
            Input::Tick => self.on_tick(),
            Input::Idle => {
                if self.pending_since.is_some() {
                    self.flush_announcements();
                }
            }
            Input::Command(Command::Dial(target)) => self.on_dial_command(target),
            Input::SeedsResolved { addrs } => self.on_seeds_resolved(addrs),
            Input::Rebuilt {
                from,
                compact,
                rebuilt,
            } => self.on_rebuilt(from, *compact, rebuilt),
            Input::RebuiltJudged {
                from,
                compact,
                verdict,
                judging,
            } => self.on_rebuilt_judged(from, &compact, verdict, judging),
        }
        if self.pending_since.is_some_and(|since| {
            self.now.mono.saturating_duration_since(since) >= MAX_ANNOUNCE_DELAY
        }) || self.tx_round_at.is_some_and(|at| self.now.mono >= at)
        {
            self.flush_announcements();
        }
        self.take_book_changes();
    }

    /// Prefetch hints for a caller that knows which inputs come next (the
    /// simulator, which runs a thousand cores in turn): each asks the CPU
    /// to start loading what `handle` will read first, and changes
    /// nothing. In order, an event or two apart, as each needs what the
    /// one before loaded: the core's own fields, then its connection list,
    /// then the connection an input names, then its peer's state.
    pub fn prefetch_fields(&self) {
        use ledger::prefetch::prefetch;
        prefetch(&self.now);
        prefetch(&self.conns);
        prefetch(&self.pending_since);
        prefetch(&self.actions);
        self.book.prefetch_changes();
        self.bans.prefetch_changes();
        prefetch(&self.known);
        prefetch(&self.requests);
    }

    /// See `prefetch_fields`.
    pub fn prefetch_conn_ids(&self) {
        self.conns.prefetch_ids();
    }

    /// See `prefetch_fields`.
    pub fn prefetch_conn(&self, conn: ConnId) {
        use ledger::prefetch::prefetch;
        if let Some(state) = self.conns.get(&conn) {
            prefetch(state);
            prefetch(&state.session);
            prefetch(&state.peer);
        }
    }

    /// See `prefetch_fields`: the peer's state a frame from `conn` reads
    /// and, for an announcement of one tx, where the tx is marked as known
    /// to that peer.
    pub fn prefetch_peer(&self, conn: ConnId, announced: Option<TxId>) {
        use ledger::prefetch::prefetch;
        if let Some(peer) = self.conns.get(&conn).and_then(|state| state.peer.as_ref()) {
            prefetch(&peer.behaviour);
            prefetch(&peer.known);
            prefetch(&peer.tx_backlog);
        }
        if let Some(txid) = announced {
            self.known.prefetch(&crate::p2p::message::InvItem::Tx(txid));
        }
    }

    /// The next thing to do, in the order decided.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the core next needs a `Tick` (a handshake deadline, a ping, the
    /// maintenance round or the announcement batch delay).
    pub fn next_timer(&self) -> Mono {
        let mut next = self.next_maintenance;
        if let Some(since) = self.pending_since {
            next = next.min(since + MAX_ANNOUNCE_DELAY);
        }
        if let Some(at) = self.tx_round_at {
            next = next.min(at);
        }
        debug_assert_eq!(
            self.earliest_session_timer,
            self.walk_session_timers(),
            "a session's timer changed without refresh_session_timer"
        );
        if let Some(at) = self.earliest_session_timer {
            next = next.min(at);
        }
        next
    }

    /// The earliest session timer, by a walk over every connection.
    fn walk_session_timers(&self) -> Option<Mono> {
        self.conns
            .values()
            .filter_map(|conn| conn.session.as_ref().map(Session::next_timer))
            .min()
    }

    /// Called wherever a session starts, ends, or moves its timer (its
    /// start, its handshake's end, a tick): the only places one changes.
    fn refresh_session_timer(&mut self) {
        self.earliest_session_timer = self.walk_session_timers();
    }

    /// Whether announcements are waiting to be batched out (the driver
    /// then sends `Idle` when it has nothing else to do).
    pub fn has_pending_announcements(&self) -> bool {
        self.pending_since.is_some()
    }

    /// How many items the known-inventory table remembers (the newest
    /// are kept). The simulator lowers it: a thousand nodes' tables at the
    /// default would hold far more than its runs need.
    pub fn set_known_inventory_capacity(&mut self, capacity: usize) {
        self.known.set_capacity(capacity);
    }

    /// The bit of ready peer `id` in the known-inventory table.
    fn known_slot(&self, id: ConnId) -> Option<PeerSlot> {
        self.conns.get(&id)?.peer.as_ref().map(|peer| peer.known)
    }

    /// Records that ready peer `id` has `item`.
    fn mark_known(&mut self, id: ConnId, item: &crate::p2p::message::InvItem) {
        if let Some(slot) = self.known_slot(id) {
            self.known.mark(slot, item);
        }
    }

    /// Our node id.
    pub fn node_id(&self) -> PublicKey {
        self.identity.node_id
    }

    /// The ban list in force (for the driver's start-up view).
    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    /// Connections with a finished handshake.
    pub fn n_ready(&self) -> usize {
        self.conns
            .values()
            .filter(|conn| conn.peer.is_some())
            .count()
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn metric_inc(&mut self, name: &'static str, label: (&'static str, &'static str)) {
        self.push(Action::Metric(MetricUpdate::Inc { name, label }));
    }

    fn metric_add(&mut self, name: &'static str, label: (&'static str, &'static str), value: u64) {
        if value > 0 {
            self.push(Action::Metric(MetricUpdate::Add { name, label, value }));
        }
    }

    fn metric_observe(&mut self, name: &'static str, since: Mono) {
        let micros = self.now.mono.saturating_duration_since(since).as_micros();
        self.push(Action::Metric(MetricUpdate::Observe {
            name,
            micros: u64::try_from(micros).unwrap_or(u64::MAX),
        }));
    }

    fn take_book_changes(&mut self) {
        for change in self.book.take_changes() {
            self.push(Action::Store(change));
        }
        for change in self.bans.take_changes() {
            self.push(Action::Store(change));
        }
    }

    fn peer_mut(&mut self, conn: ConnId) -> Option<&mut ReadyPeer> {
        self.conns
            .get_mut(&conn)
            .and_then(|conn| conn.peer.as_mut())
    }

    /// `relay_peers` read again from the connections: called wherever a
    /// handshake finishes or a connection closes (a peer's compact-block
    /// wish updates its own entry).
    fn relay_peers_changed(&mut self) {
        self.relay_peers = self.relay_peers_from_conns();
    }

    fn relay_peers_from_conns(&self) -> Vec<(ConnId, PeerSlot, bool)> {
        self.conns
            .iter()
            .filter_map(|(id, conn)| {
                let peer = conn.peer.as_ref()?;
                Some((*id, peer.known, peer.wants_compact))
            })
            .collect()
    }

    /// Connections with a finished handshake, in `ConnId` order.
    fn ready_conns(&self) -> Vec<ConnId> {
        self.relay_peers.iter().map(|(id, _, _)| *id).collect()
    }

    /// Queues a message for a peer.
    fn send(&mut self, conn: ConnId, message: Message) {
        self.push(Action::Send { conn, message });
    }

    /// The timers: handshake deadlines, pings, the maintenance round.
    fn on_tick(&mut self) {
        let now = self.now.mono;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        let timing = self.config.timing.clone();
        for id in ids {
            let Some(session) = self
                .conns
                .get_mut(&id)
                .and_then(|conn| conn.session.as_mut())
            else {
                continue;
            };
            if session.handshake_expired(now) {
                self.close(id, CloseReason::HandshakeTimeout);
                continue;
            }
            match session.on_timer(now, &timing, &mut self.rng) {
                session::PingStep::Nothing => {}
                session::PingStep::Send(nonce) => self.send(id, Message::Ping(nonce)),
                session::PingStep::Dead => self.close(id, CloseReason::Dead),
            }
        }
        self.refresh_session_timer();
        if now >= self.next_maintenance {
            self.next_maintenance = now + self.config.timing.maintenance_interval;
            self.maintain();
        }
    }

    /// The periodic round: expired requests re-asked, a stalled sync
    /// replaced, slots filled, addresses refreshed, old entries dropped.
    fn maintain(&mut self) {
        let now = self.now.mono;
        self.expire_requests();
        self.expire_partial_blocks();
        self.expire_waiting_children();
        self.check_sync_stall();
        self.choose_sync_peer();
        self.dial_targets();
        if !self.config.no_discovery {
            self.fill_outbound();
        }
        if now.saturating_duration_since(self.last_addr_refresh) >= peers::ADDR_REFRESH {
            self.last_addr_refresh = now;
            self.refresh_addresses();
        }
        self.forget_old_gap_requests();
        let forgotten = self.known.take_forgotten();
        self.metric_add(
            "p2p_known_inventory_forgotten_total",
            ("reason", "capacity"),
            forgotten,
        );
        let known_txs = std::mem::take(&mut self.known_tx_announcements);
        self.metric_add("p2p_announcements_known_total", ("kind", "tx"), known_txs);
        if now.saturating_duration_since(self.last_housekeeping) >= Duration::from_secs(60) {
            self.last_housekeeping = now;
            let forgotten = self.book.age_out(self.now.unix_ms);
            let bans = self.bans.expire(now);
            tracing::debug!(forgotten, bans, book = self.book.len(), "P2P housekeeping");
        }
        self.publish();
    }

    /// Asks one peer a round for addresses, outbound ones in turn when we
    /// have any (we chose them, so nobody gets asked by dialing us). Every
    /// peer is asked once at the handshake; asking every peer every round
    /// made address gossip most of the bytes a large network sent
    /// (BENCHMARKS.md, "Simulation, third round"). A node that dials only
    /// its configured peers asks nobody.
    fn refresh_addresses(&mut self) {
        if self.config.no_discovery {
            return;
        }
        let ready = self.ready_conns();
        let outbound: Vec<ConnId> = ready
            .iter()
            .copied()
            .filter(|id| {
                self.conns
                    .get(id)
                    .is_some_and(|conn| conn.direction == Direction::Outbound)
            })
            .collect();
        let candidates = if outbound.is_empty() { ready } else { outbound };
        if candidates.is_empty() {
            return;
        }
        let id = candidates[self.addr_refresh_turn % candidates.len()];
        self.addr_refresh_turn = self.addr_refresh_turn.wrapping_add(1);
        self.send(id, Message::GetAddr);
    }

    /// Publishes the peer list and sync state when they changed. Each
    /// peer's reported peers are compared by pointer with the published
    /// ones before anything is copied: this runs on every maintenance
    /// round, and most rounds change nothing.
    fn publish(&mut self) {
        let mut peers = Vec::new();
        // Each peer's reported list, borrowed: copied only if published.
        let mut reported = Vec::new();
        let (mut inbound, mut outbound) = (0i64, 0i64);
        for conn in self.conns.values() {
            let Some(peer) = &conn.peer else { continue };
            match conn.direction {
                Direction::Inbound => inbound += 1,
                Direction::Outbound => outbound += 1,
            }
            let Some(addr) = peer.listen_addr.or(conn.remote) else {
                continue;
            };
            peers.push(PeerView {
                addr,
                direction: conn.direction,
                node_id: peer.node_id,
                height: peer.best_height,
                ping_ms: peer.ping_ms,
                connected_at: peer.connected_at,
                score: peer.behaviour.score,
                throttled: peer.behaviour.throttled,
            });
            if !peer.reported_peers.is_empty() {
                reported.push((peer.node_id, addr, &peer.reported_peers));
            }
        }
        peers.sort_by_key(|peer| peer.connected_at);
        let syncing = self.sync.is_active();
        if let Some(published) = &self.published {
            let known_same =
                published.known.len() == reported.len()
                    && published.known.iter().zip(&reported).all(
                        |(view, (node_id, addr, list))| {
                            view.node_id == *node_id
                                && view.addr == *addr
                                && Arc::ptr_eq(&view.peers, list)
                        },
                    );
            if known_same && published.syncing == syncing && published.peers == peers {
                return;
            }
        }
        let known = reported
            .into_iter()
            .map(|(node_id, addr, list)| KnownView {
                node_id,
                addr,
                peers: Arc::clone(list),
            })
            .collect();
        let snapshot = Snapshot {
            peers,
            known,
            syncing,
        };
        if self.published.as_ref() == Some(&snapshot) {
            return;
        }
        self.published = Some(snapshot.clone());
        self.push(Action::Publish(Box::new(snapshot)));
        for (direction, value) in [("inbound", inbound), ("outbound", outbound)] {
            self.push(Action::Metric(MetricUpdate::Set {
                name: "p2p_peers",
                label: ("direction", direction),
                value,
            }));
        }
    }
}
