//! The peer-to-peer network: framing, handshake, gossip, discovery, sync
//! and defence against bad peers. It reaches the rest of the node only
//! through the `Backend` trait.
//!
//! Bird's-eye view, bottom up (one concept per file):
//! - `message`: the wire messages and their size and count limits.
//! - `codec`: length-prefixed frames (4 MiB at most, or a whole block of
//!   the chain when that is larger; checked before allocating) and
//!   per-kind caps before decoding.
//! - `compact`: rebuilding a block from a `CompactBlock` and the mempool.
//! - `noise`: the secure transport under every link: a Noise XX handshake
//!   that binds each side's node key to its session, then an encrypted
//!   byte stream. No plaintext mode.
//! - `connection`: a `Transport` (the Noise stream over TCP) split into a
//!   message reader and a frame writer, counting messages by kind.
//! - `protocol`: the core. `NetworkState` decides every rule (handshake
//!   sessions, liveness, slots and dialing, gossip, sync, addresses, bans)
//!   from `Input`s and time given by its caller, and says what to do as
//!   `Action`s. No sockets, clocks, threads or storage: the same inputs and
//!   seed give the same actions, so its rules are unit-tested on a fake
//!   clock and a simulation can run thousands of them.
//! - `link`: one connection's tasks, which only move bytes (dial, read,
//!   write, serve answers) under per-connection memory bounds.
//! - `driver`: the tokio layer that feeds the core real time and events and
//!   carries out its actions (links, sled records, metrics), with `import`,
//!   the tasks that validate what peers send off the driver's task.
//! - this module: `start`, the config, and `P2pHandle`, the cheap `Clone`
//!   handle the rest of the node holds.
//!
//! Tasks: the driver, three per connection (reader, writer, answer
//! server), one block importer and a few tx importers (so validation never
//! blocks the driver). All are tracked and stop on the `CancellationToken`
//! given to `start`.

pub mod backend;
pub mod codec;
pub mod compact;
pub mod connection;
mod driver;
mod import;
mod inbound;
pub mod link;
pub mod message;
pub mod noise;
pub mod protocol;

pub use backend::{Backend, BlockVerdict, JudgeNow, TipSummary, TxVerdict, UrgentJob};
pub use driver::unix_ms;
pub use protocol::{addrbook, gossip, sync, ChainView, ConnId};

use crate::metrics::Metrics;
use addrbook::BanKey;
use driver::{Clock, CommandRequest, Driver, DriverParts, Stores};
use ledger::chain::AuxTree;
use ledger::json::{KnownNodeJson, NetworkJson, PeerJson};
use ledger::{BlockHash, PublicKey, SecretKey};
use message::NetworkMagic;
pub use protocol::ProtocolConfig;
use protocol::{Command, Mono, Snapshot};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Timers of the protocol. The defaults are the production values; tests
/// shorten them.
#[derive(Clone, Debug)]
pub struct P2pTiming {
    /// A connection must finish the handshake within this (10 s).
    pub handshake_timeout: Duration,
    /// A ping is sent this often (30 s)...
    pub ping_interval: Duration,
    /// ...and a peer is dead after this many pings without a pong (3).
    pub max_missed_pongs: u32,
    /// A `GetData` unanswered this long is asked of another peer (5 s).
    pub request_timeout: Duration,
    /// A sync peer silent this long is replaced (15 s).
    pub sync_stall_timeout: Duration,
    /// TCP connect timeout per resolved address (5 s).
    pub connect_timeout: Duration,
    /// How often dial slots, timeouts and stalls are checked (500 ms).
    pub maintenance_interval: Duration,
    /// Txs are announced in rounds this far apart on average, every tx
    /// accepted since the last round in one `Inv` per peer; the gaps are
    /// drawn from an exponential distribution, so a round's time tells
    /// nothing. Zero (the default) announces each tx within the 20 ms
    /// batch window of its acceptance: blocks here come seconds apart,
    /// and a compact block rebuilds from the receiver's mempool only if
    /// the block's txs have spread by then.
    pub tx_announce_interval: Duration,
}

impl Default for P2pTiming {
    fn default() -> Self {
        P2pTiming {
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            max_missed_pongs: 3,
            request_timeout: Duration::from_secs(5),
            sync_stall_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            maintenance_interval: Duration::from_millis(500),
            tx_announce_interval: Duration::ZERO,
        }
    }
}

/// How the node runs its network: the protocol's settings, and where its
/// records persist.
#[derive(Clone)]
pub struct P2pConfig {
    /// `listen_addr` is where to bind (port 0 picks one); the core is
    /// given the bound address.
    pub protocol: ProtocolConfig,
    /// Where the address book persists (a sled tree); `None` keeps it in memory.
    pub address_book: Option<AuxTree>,
    /// Where bans persist (a sled tree); `None` keeps them in memory.
    pub ban_store: Option<AuxTree>,
}

impl P2pConfig {
    /// A config with SPEC.md's defaults (32 inbound, 8 outbound, 24 h bans,
    /// discovery on, no bootstrap peers, in-memory address book).
    pub fn new(
        listen_addr: SocketAddr,
        network_magic: impl Into<NetworkMagic>,
        genesis_hash: BlockHash,
        node_key: SecretKey,
    ) -> P2pConfig {
        P2pConfig {
            protocol: ProtocolConfig {
                listen_addr,
                peers: Vec::new(),
                dns_seeds: Vec::new(),
                external_addr: None,
                no_discovery: false,
                max_inbound: 32,
                max_outbound: 8,
                ban_duration: Duration::from_secs(24 * 60 * 60),
                network_magic: network_magic.into(),
                genesis_hash,
                node_key,
                timing: P2pTiming::default(),
            },
            address_book: None,
            ban_store: None,
        }
    }
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the P2P config is for genesis {config} but the node's chain has genesis {backend}")]
    GenesisMismatch {
        config: BlockHash,
        backend: BlockHash,
    },
}

/// Starts the network: binds the listener, then runs the driver and its
/// tasks until `cancel` fires.
pub async fn start<B: Backend>(
    config: P2pConfig,
    backend: B,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<P2pHandle, P2pError> {
    let P2pConfig {
        protocol: mut protocol_config,
        address_book,
        ban_store,
    } = config;
    if protocol_config.genesis_hash != backend.genesis_hash() {
        return Err(P2pError::GenesisMismatch {
            config: protocol_config.genesis_hash,
            backend: backend.genesis_hash(),
        });
    }
    let bind_addr = protocol_config.listen_addr;
    let listener = TcpListener::bind(bind_addr)
        .await
        .map_err(|source| P2pError::Bind {
            addr: bind_addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| P2pError::Bind {
        addr: bind_addr,
        source,
    })?;
    protocol_config.listen_addr = local_addr;
    let tracker = TaskTracker::new();
    let shared = Arc::new(Shared::default());
    let (commands, command_receiver) = mpsc::unbounded_channel();
    let node_id = protocol_config.node_key.public_key();
    let clock = Clock {
        epoch: Instant::now(),
    };
    let stores = Stores {
        address_book,
        bans: ban_store,
    };
    let driver = Driver::new(DriverParts {
        config: protocol_config,
        backend,
        metrics,
        cancel,
        listener,
        tracker: tracker.clone(),
        shared: shared.clone(),
        commands: command_receiver,
        stores,
        clock,
        // Nonces and jitter must not be guessable by peers: a node seeds
        // its core from the OS; only tests and simulations fix the seed.
        seed: rand::random(),
    });
    tracker.spawn(driver.run());
    // Closing only means "wait() may finish once every task ended"; the
    // driver still spawns connection tasks on it while it runs.
    tracker.close();
    Ok(P2pHandle {
        inner: Arc::new(HandleInner {
            local_addr,
            node_id,
            commands,
            shared,
            tracker,
            clock,
        }),
    })
}

/// What the driver publishes for the handle's synchronous reads. A std
/// `Mutex` because no `.await` happens while it is held.
#[derive(Default)]
pub(crate) struct Shared {
    pub snapshot: Mutex<Snapshot>,
    /// Bans in force, until an instant on the driver's clock.
    pub bans: Mutex<BTreeMap<BanKey, Mono>>,
    pub syncing: AtomicBool,
    /// The core's `relay_backlog` after its last input.
    pub relay_backlog: AtomicUsize,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is replaced wholesale or updated in single steps, so a
    // panic elsewhere cannot leave it half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct HandleInner {
    local_addr: SocketAddr,
    node_id: PublicKey,
    commands: mpsc::UnboundedSender<CommandRequest>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    clock: Clock,
}

/// Cheap handle to the running network.
#[derive(Clone)]
pub struct P2pHandle {
    inner: Arc<HandleInner>,
}

impl P2pHandle {
    /// The address the listener is bound to (with the real port when the
    /// config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Our node id: the hex of the node key's public key.
    pub fn node_id(&self) -> String {
        hex::encode(self.inner.node_id.as_bytes())
    }

    pub fn peers(&self) -> Vec<PeerJson> {
        let now = self.inner.clock.now().mono;
        lock(&self.inner.shared.snapshot)
            .peers
            .iter()
            .map(|peer| PeerJson {
                addr: peer.addr.to_string(),
                direction: peer.direction,
                node_id: hex::encode(peer.node_id.as_bytes()),
                height: peer.height,
                ping_ms: peer.ping_ms,
                connected_secs: now.saturating_duration_since(peer.connected_at).as_secs(),
                score: peer.score,
                throttled: peer.throttled.map(str::to_string),
            })
            .collect()
    }

    pub fn n_peers(&self) -> usize {
        lock(&self.inner.shared.snapshot).peers.len()
    }

    /// Dials `addr` (`host:port`) and keeps reconnecting to it like a
    /// bootstrap peer.
    pub fn dial(&self, addr: String) {
        let _ = self.inner.commands.send(CommandRequest {
            command: Command::Dial(addr),
            taken: None,
        });
    }

    /// Like `dial`, and says whether the peer was pinned: `Some(false)`
    /// when every pinned slot (at most `--max-outbound`) holds a live
    /// connection; `None` when the network has stopped.
    pub async fn pin(&self, addr: String) -> Option<bool> {
        let (taken, answer) = oneshot::channel();
        let request = CommandRequest {
            command: Command::Dial(addr),
            taken: Some(taken),
        };
        self.inner.commands.send(request).ok()?;
        answer.await.ok()
    }

    /// True while blocks are being fetched from a peer with more work.
    pub fn is_syncing(&self) -> bool {
        self.inner.shared.syncing.load(Ordering::Relaxed)
    }

    /// Txs peers sent that wait for validation, the share of the peer
    /// with the most left out: how far this node's mempool lags what its
    /// peers relay.
    pub fn relay_backlog(&self) -> usize {
        self.inner.shared.relay_backlog.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn set_relay_backlog_for_tests(&self, backlog: usize) {
        self.inner
            .shared
            .relay_backlog
            .store(backlog, Ordering::Relaxed);
    }

    /// Whether connections from `addr` are refused by a ban now.
    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.banned(&BanKey::for_addr(addr))
    }

    /// Whether the node id is banned now.
    pub fn is_node_banned(&self, node_id: &PublicKey) -> bool {
        self.banned(&BanKey::Node(*node_id))
    }

    fn banned(&self, key: &BanKey) -> bool {
        let now = self.inner.clock.now().mono;
        lock(&self.inner.shared.bans)
            .get(key)
            .is_some_and(|until| *until > now)
    }

    /// `GET /v1/network`: our peers, and our peers' peers as they reported
    /// them.
    pub fn network_view(&self) -> NetworkJson {
        let known = lock(&self.inner.shared.snapshot)
            .known
            .iter()
            .map(|view| KnownNodeJson {
                node_id: hex::encode(view.node_id.as_bytes()),
                addr: view.addr.to_string(),
                peers: view
                    .peers
                    .iter()
                    .map(|id| hex::encode(id.as_bytes()))
                    .collect(),
            })
            .collect();
        NetworkJson {
            known,
            node_id: self.node_id(),
            peers: self.peers(),
        }
    }

    /// Resolves once every P2P task has ended (after the cancel token fired).
    pub async fn closed(&self) {
        self.inner.tracker.wait().await
    }
}
