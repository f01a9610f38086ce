//! The core's interface types: what the driver feeds it (`Input`,
//! `Command`, `CloseCause`), what it asks the driver to do (`Action`,
//! `Outgoing`, `MetricUpdate`), why connections end (`CloseReason`), and
//! what it publishes for the handle to read (`Snapshot`).

use super::addrbook::BookChange;
use super::time::Mono;
use super::ConnId;
use crate::events::NodeEvent;
use crate::p2p::compact::{RebuildJob, Rebuilt};
use crate::p2p::message::{CompactBlock, Message};
use crate::p2p::{BlockVerdict, TxVerdict};
use core::net::SocketAddr;
use ledger::json::Direction;
use ledger::{Address, Block, BlockHash, Height, PublicKey, Transaction, TxId};
use std::sync::Arc;
use std::time::Duration;

/// A command from `P2pHandle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Dial `host:port` and keep it connected like a bootstrap peer
    /// (`POST /v1/peers`). Such pinned peers take outbound slots and at
    /// most `max_outbound` are kept (`peers::on_dial_command`).
    Dial(String),
}

/// Why the driver saw a connection end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer closed it, or the network failed.
    Disconnected(String),
    /// The peer sent a frame no honest peer sends (oversized, undecodable).
    BadFrame {
        reason: &'static str,
        detail: String,
    },
    /// Its send queue overflowed: it does not read what we send.
    SlowPeer,
    /// The secure transport failed: no Noise handshake, a failed one, a
    /// bad identity proof, or a ciphertext that does not authenticate.
    /// Never banned, since anyone on the path could have caused it.
    Insecure {
        reason: &'static str,
        detail: String,
    },
}

/// What happens to the core.
#[derive(Clone, Debug)]
pub enum Input {
    /// A peer connected to our listener from `remote`; the core answers
    /// `Admit` or `Refuse`.
    Inbound {
        remote: SocketAddr,
    },
    /// An outbound dial reached `remote`.
    Connected {
        conn: ConnId,
        remote: SocketAddr,
    },
    /// An outbound dial found no address that answered.
    DialFailed {
        conn: ConnId,
        error: String,
    },
    /// The connection's secure transport proved that the peer holds
    /// `node_id`'s key. Comes before any `Frame` of the connection.
    Secured {
        conn: ConnId,
        node_id: PublicKey,
    },
    /// A decoded message from a connection.
    Frame {
        conn: ConnId,
        message: Message,
    },
    /// A connection ended. Always the last input about `conn`.
    Closed {
        conn: ConnId,
        cause: CloseCause,
    },
    /// The node judged a block that `ImportBlock` handed it.
    BlockVerdict {
        from: Option<ConnId>,
        hash: BlockHash,
        size: usize,
        verdict: BlockVerdict,
    },
    /// The node judged a tx that `ImportTx` handed it.
    TxVerdict {
        from: ConnId,
        txid: TxId,
        sender: Address,
        nonce: u64,
        verdict: TxVerdict,
    },
    /// Something changed in the node (a block validated or connected, a
    /// tx admitted or put back by a reorg).
    Node(NodeEvent),
    /// The clock moved: run whatever timers are due.
    Tick,
    /// The driver has nothing else waiting: announcements go out now
    /// rather than after their batching delay.
    Idle,
    Command(Command),
    /// The DNS seeds resolved (every address of every seed name that
    /// answered this round): dial candidates.
    SeedsResolved {
        addrs: Vec<SocketAddr>,
    },
    /// The driver ran a `Rebuild` of a compact block from `from`.
    Rebuilt {
        from: ConnId,
        compact: Box<CompactBlock>,
        rebuilt: Rebuilt,
    },
    /// The driver ran a `Rebuild` of a compact block from `from`, rebuilt
    /// it in full and had it judged at once where the rebuild ran (the
    /// node's chain writer), without an `ImportBlock`: `verdict` is what
    /// that import would have answered; `judging` is how long judging it
    /// took (not part of its rebuild time).
    RebuiltJudged {
        from: ConnId,
        compact: Box<CompactBlock>,
        verdict: BlockVerdict,
        judging: Duration,
    },
}

/// Something to send to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    Message(Message),
    /// A stored block, sent as the bytes we hold (never decoded and
    /// encoded again).
    Block(BlockHash),
    /// A tx from the mempool, looked up when its turn to be sent comes (so
    /// the core never copies a peer's whole request out of the mempool);
    /// one that left the mempool meanwhile is listed in a `NotFound` after
    /// the batch.
    Tx(TxId),
    /// A stored block as a `CompactBlock`.
    CompactBlock(BlockHash),
    /// Txs of a stored block, by index (`GetBlockTxs`): sent as one
    /// `BlockTxs`, or a `NotFound` for the block when an index is bad.
    BlockTxs {
        block: BlockHash,
        indexes: Vec<u32>,
    },
}

/// A metric to update (names without the `ledger_` prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricUpdate {
    Inc {
        name: &'static str,
        label: (&'static str, &'static str),
    },
    Add {
        name: &'static str,
        label: (&'static str, &'static str),
        value: u64,
    },
    Set {
        name: &'static str,
        label: (&'static str, &'static str),
        value: i64,
    },
    /// One duration into a summary (count and sum of seconds).
    Observe { name: &'static str, micros: u64 },
}

/// A connected peer as the handle shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub addr: SocketAddr,
    pub direction: Direction,
    pub node_id: PublicKey,
    pub height: Height,
    pub ping_ms: Option<u64>,
    pub connected_at: Mono,
    /// Its misbehaviour score (`ratelimit::MAX_SCORE` disconnects).
    pub score: u32,
    /// The rule holding it back now, if any.
    pub throttled: Option<&'static str>,
}

/// A peer's own peers, as it reported them in `Addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownView {
    pub node_id: PublicKey,
    pub addr: SocketAddr,
    pub peers: Arc<[PublicKey]>,
}

/// What the core publishes for synchronous reads through the handle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub peers: Vec<PeerView>,
    pub known: Vec<KnownView>,
    pub syncing: bool,
}

/// What the core asks its driver to do, in order.
#[derive(Clone, Debug)]
pub enum Action {
    /// Resolve `target` afresh and connect; report `Connected` or
    /// `DialFailed` for `conn`.
    Dial {
        conn: ConnId,
        target: String,
    },
    /// Keep the inbound connection from `remote` as `conn`.
    Admit {
        conn: ConnId,
        remote: SocketAddr,
    },
    /// Close the inbound connection from `remote` at once.
    Refuse {
        remote: SocketAddr,
    },
    /// The handshake is done: the connection may carry full-size frames.
    Authenticated {
        conn: ConnId,
    },
    /// Queue without waiting; if the peer's queue is full it is too slow
    /// (report `Closed` with `SlowPeer`).
    Send {
        conn: ConnId,
        message: Message,
    },
    /// Push a block we just validated to a high-bandwidth peer as a
    /// `CompactBlock`, like `Send`; an `Inv` of it if its compact form is
    /// not at hand.
    PushCompact {
        conn: ConnId,
        hash: BlockHash,
    },
    /// Rebuild a compact block from the mempool (or finish one with the
    /// txs its sender gave) and report `Rebuilt`.
    Rebuild {
        from: ConnId,
        job: Box<RebuildJob>,
    },
    /// Answer the peer's own request, in order, waiting for queue room, so
    /// a greedy peer only slows itself down.
    Answer {
        conn: ConnId,
        items: Vec<Outgoing>,
    },
    /// Close the connection. No further input about it is needed.
    Disconnect {
        conn: ConnId,
        reason: &'static str,
    },
    /// Validate a block (in arrival order) and report a `BlockVerdict`.
    /// `from_sync`: one of a run of blocks the sync fetched.
    ImportBlock {
        from: Option<ConnId>,
        block: Box<Block>,
        size: usize,
        from_sync: bool,
    },
    /// Validate a tx and report a `TxVerdict`; txs of one sender in order.
    ImportTx {
        from: ConnId,
        tx: Box<Transaction>,
    },
    /// Persist an address-book or ban change.
    Store(BookChange),
    Metric(MetricUpdate),
    Publish(Box<Snapshot>),
}

/// Why the core closes a connection (or saw it closed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    DialFailed(String),
    /// The peer broke the rules: ban it.
    Misbehaved {
        reason: &'static str,
        detail: String,
    },
    /// We reached ourselves.
    SelfConnection,
    /// Refused after the handshake: "duplicate" or "banned".
    Refused(&'static str),
    HandshakeTimeout,
    /// No pong for too many pings.
    Dead,
    /// Its send queue overflowed.
    SlowPeer,
    /// The sync peer stopped delivering.
    Stalled,
    /// Closed by either side or a network error.
    Disconnected(String),
    /// The secure transport failed (`CloseCause::Insecure`).
    Insecure {
        reason: &'static str,
        detail: String,
    },
}

impl CloseReason {
    /// The `reason` label of `p2p_disconnects_total`.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::DialFailed(_) => "dial_failed",
            CloseReason::Misbehaved { .. } => "misbehaved",
            CloseReason::SelfConnection => "self",
            CloseReason::Refused(why) => why,
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Dead => "dead",
            CloseReason::SlowPeer => "slow",
            CloseReason::Stalled => "stalled",
            CloseReason::Disconnected(_) => "closed",
            CloseReason::Insecure { reason, .. } => reason,
        }
    }
}
