//! One connection's tasks, which only move bytes: a dial (outbound), the
//! Noise handshake that secures the stream and proves the peer's node id
//! (reported to the core as `Input::Secured` before any frame), a reader
//! that decodes frames and hands them to the driver, a writer that
//! drains two lanes bounded in bytes (urgent before bulk, see `Lane`),
//! and one server per lane that carries out the core's answers to the
//! peer's requests. Nothing here decides anything:
//! the core (`protocol::NetworkState`) does, through the driver.
//!
//! Two rules keep a connection's memory bounded. Before the handshake the
//! Noise messages and then the frames are of at most 1 KiB, and after the
//! peer's `HelloAck`
//! it reads nothing more until the core has judged the handshake. And the
//! reader stops reading while the peer's answers are still being sent, so
//! a peer that asks for more than it reads only slows itself down, while
//! our own pushes (`try_send`) fail fast on a full queue and the driver
//! drops the peer as too slow.
//!
//! One rule keeps a connection from crowding out the others: it may have
//! at most `MAX_QUEUED_FRAMES_PER_LINK` tx frames and
//! `MAX_QUEUED_URGENT_FRAMES_PER_LINK` others waiting in the driver's
//! shared event channels (its `EventShares`); past that its reader holds a
//! bounded number of tx frames and then stops reading its socket until the
//! driver has taken one, so a flooding peer's frames never stand in front
//! of another peer's by more than that many (`inbound`).

use super::codec::{encode_message, tx_payload, CodecError};
use super::compact;
use super::connection::{self, ConnectionWriter, Transport};
use super::inbound::{read_loop, EventShares, ReaderShare};
pub use super::inbound::{MAX_QUEUED_FRAMES_PER_LINK, MAX_QUEUED_URGENT_FRAMES_PER_LINK};
use super::message::{InvItem, Message};
use super::noise::{self, LocalIdentity, Role, TransportError};
use super::protocol::{CloseCause, ConnId, Input, Outgoing};
use super::Backend;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Frames before the handshake completes are capped far below the normal
/// limit: an unauthenticated stranger may make us buffer only this much.
pub const HANDSHAKE_MAX_FRAME: usize = 1024;
/// Every queued message is charged at least this many bytes of budget, which
/// bounds the number of queued messages too.
const MIN_MESSAGE_CHARGE: usize = 64;
/// Answer batches (one per `GetData` or `GetHeaders`) queued for a peer
/// before its reader waits for them to go out.
pub(super) const MAX_PENDING_ANSWERS: usize = 4;

struct Queued {
    kind: &'static str,
    payload: Bytes,
    _permit: OwnedSemaphorePermit,
}

/// Which of a peer's two outgoing lanes a message takes. Answers that
/// carry blocks or headers, and compact-block pushes, go out ahead of the
/// rest, so a block's relay never waits behind megabytes of queued txs;
/// each lane keeps its own order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Urgent,
    Bulk,
}

impl Lane {
    pub fn of(message: &Message) -> Lane {
        // `GetAddr` follows the `HelloAck` at the end of the handshake and
        // must not overtake it.
        if message.is_urgent() || matches!(message, Message::GetAddr) {
            Lane::Urgent
        } else {
            Lane::Bulk
        }
    }

    fn of_answer(item: &Outgoing) -> Lane {
        match item {
            Outgoing::Message(message) => Lane::of(message),
            Outgoing::Tx(_) => Lane::Bulk,
            Outgoing::Block(_) | Outgoing::CompactBlock(_) | Outgoing::BlockTxs { .. } => {
                Lane::Urgent
            }
        }
    }
}

/// One outgoing lane: its queue and its byte budget.
#[derive(Clone)]
struct LaneSender {
    queue: mpsc::UnboundedSender<Queued>,
    budget: Arc<Semaphore>,
}

/// The writer's end of both lanes.
struct LaneQueues {
    urgent: mpsc::UnboundedReceiver<Queued>,
    bulk: mpsc::UnboundedReceiver<Queued>,
}

impl LaneQueues {
    /// The next queued message, urgent ones first, without waiting.
    fn try_next(&mut self) -> Option<Queued> {
        self.urgent
            .try_recv()
            .ok()
            .or_else(|| self.bulk.try_recv().ok())
    }
}

/// Where a connection's tasks report: what concerns blocks and the
/// connection itself on one channel, which the driver reads first, and tx
/// and address traffic on another. Both are bounded, so a reader whose
/// channel is full waits, which pushes back on its socket. A connection's
/// last report (`Closed`) goes on the first channel after all its urgent
/// frames; bulk frames still queued behind it are dropped with the link.
#[derive(Clone)]
pub struct LinkEvents {
    pub urgent: mpsc::Sender<Input>,
    pub bulk: mpsc::Sender<Input>,
}

/// The sending side of a peer's two outgoing lanes, each bounded in
/// bytes (so the urgent lane never waits for room behind tx traffic).
#[derive(Clone)]
pub struct PeerSender {
    urgent: LaneSender,
    bulk: LaneSender,
    capacity: usize,
}

impl PeerSender {
    /// Two lanes of `capacity` bytes each, which always hold one frame of
    /// the largest size.
    fn new(capacity: usize, max_frame: usize) -> (PeerSender, LaneQueues) {
        let capacity = capacity.clamp(max_frame, u32::MAX as usize);
        let (urgent, urgent_queue) = mpsc::unbounded_channel();
        let (bulk, bulk_queue) = mpsc::unbounded_channel();
        let lane = |queue| LaneSender {
            queue,
            budget: Arc::new(Semaphore::new(capacity)),
        };
        (
            PeerSender {
                urgent: lane(urgent),
                bulk: lane(bulk),
                capacity,
            },
            LaneQueues {
                urgent: urgent_queue,
                bulk: bulk_queue,
            },
        )
    }

    fn lane(&self, lane: Lane) -> &LaneSender {
        match lane {
            Lane::Urgent => &self.urgent,
            Lane::Bulk => &self.bulk,
        }
    }

    fn charge(&self, len: usize) -> u32 {
        len.max(MIN_MESSAGE_CHARGE).min(self.capacity) as u32
    }

    fn enqueue(
        &self,
        lane: Lane,
        kind: &'static str,
        payload: Bytes,
        permit: OwnedSemaphorePermit,
    ) -> bool {
        let queued = Queued {
            kind,
            payload,
            _permit: permit,
        };
        self.lane(lane).queue.send(queued).is_ok()
    }

    /// Queues without waiting; false when the lane is full or closed.
    pub fn try_send(&self, lane: Lane, kind: &'static str, payload: Bytes) -> bool {
        let charge = self.charge(payload.len());
        match self
            .lane(lane)
            .budget
            .clone()
            .try_acquire_many_owned(charge)
        {
            Ok(permit) => self.enqueue(lane, kind, payload, permit),
            Err(_) => false,
        }
    }

    /// Queues, waiting for room; false when the connection is gone.
    async fn send(&self, lane: Lane, kind: &'static str, payload: Bytes) -> bool {
        let charge = self.charge(payload.len());
        match self
            .lane(lane)
            .budget
            .clone()
            .acquire_many_owned(charge)
            .await
        {
            Ok(permit) => self.enqueue(lane, kind, payload, permit),
            Err(_) => false,
        }
    }
}

/// Answer batches queued and not yet sent, which the reader waits on.
#[derive(Default)]
pub(super) struct AnswerBacklog {
    pub(super) pending: AtomicUsize,
    pub(super) drained: Notify,
}

/// The driver's end of one connection.
pub struct Link {
    pub cancel: CancellationToken,
    pub sender: PeerSender,
    answers: AnswerSenders,
    backlog: Arc<AnswerBacklog>,
    authenticated: Option<oneshot::Sender<()>>,
    event_shares: EventShares,
}

/// The driver's end of a link's two answer queues (see `Lane`).
struct AnswerSenders {
    urgent: mpsc::UnboundedSender<Vec<Outgoing>>,
    bulk: mpsc::UnboundedSender<Vec<Outgoing>>,
}

impl Link {
    /// The driver took one of this connection's frames off its channels
    /// (`urgent`: `Message::is_urgent`): the reader may hand on one more.
    pub fn frame_taken(&self, urgent: bool) {
        self.event_shares.give_back(urgent);
    }

    /// Queues the answers to one request of the peer's: blocks and
    /// headers on the urgent lane, txs on the bulk one, each in request
    /// order.
    pub fn answer(&self, items: Vec<Outgoing>) {
        let (urgent, bulk): (Vec<Outgoing>, Vec<Outgoing>) = items
            .into_iter()
            .partition(|item| Lane::of_answer(item) == Lane::Urgent);
        for (batch, queue) in [(urgent, &self.answers.urgent), (bulk, &self.answers.bulk)] {
            if !batch.is_empty() {
                self.backlog.pending.fetch_add(1, Ordering::SeqCst);
                let _ = queue.send(batch);
            }
        }
    }

    /// Lets the reader past the end of the handshake.
    pub fn authenticated(&mut self) {
        if let Some(signal) = self.authenticated.take() {
            let _ = signal.send(());
        }
    }
}

/// The tasks' end of one connection.
pub struct LinkTasks<B: Backend> {
    pub conn: ConnId,
    pub backend: B,
    pub metrics: Metrics,
    pub events: LinkEvents,
    pub tracker: TaskTracker,
    cancel: CancellationToken,
    sender: PeerSender,
    queue: LaneQueues,
    answers: [mpsc::UnboundedReceiver<Vec<Outgoing>>; 2],
    backlog: Arc<AnswerBacklog>,
    authenticated: oneshot::Receiver<()>,
    /// The frame cap after the handshake (`message::max_frame_for`).
    max_frame: usize,
    noise_identity: Arc<LocalIdentity>,
    event_shares: EventShares,
}

/// How a connection runs: its memory bounds and our Noise identity.
#[derive(Clone)]
pub struct LinkConfig {
    /// Bytes queued for the peer before pushes fail (the peer is too slow).
    pub send_budget: usize,
    /// The frame cap after the handshake (`message::max_frame_for`).
    pub max_frame: usize,
    pub noise_identity: Arc<LocalIdentity>,
}

/// Creates both ends of a connection. `cancel` closes it.
// Each argument is a separate handle the driver owns; a struct to carry
// them would only be unpacked again here.
#[allow(clippy::too_many_arguments)]
pub fn new_link<B: Backend>(
    conn: ConnId,
    backend: B,
    metrics: Metrics,
    events: LinkEvents,
    tracker: TaskTracker,
    cancel: CancellationToken,
    config: LinkConfig,
) -> (Link, LinkTasks<B>) {
    let (sender, queue) = PeerSender::new(config.send_budget, config.max_frame);
    let (urgent_answers, urgent_answers_rx) = mpsc::unbounded_channel();
    let (bulk_answers, bulk_answers_rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(AnswerBacklog::default());
    let (authenticated_tx, authenticated) = oneshot::channel();
    let event_shares = EventShares::new();
    (
        Link {
            cancel: cancel.clone(),
            sender: sender.clone(),
            answers: AnswerSenders {
                urgent: urgent_answers,
                bulk: bulk_answers,
            },
            backlog: backlog.clone(),
            authenticated: Some(authenticated_tx),
            event_shares: event_shares.clone(),
        },
        LinkTasks {
            conn,
            backend,
            metrics,
            events,
            tracker,
            cancel,
            sender,
            queue,
            answers: [urgent_answers_rx, bulk_answers_rx],
            backlog,
            authenticated,
            max_frame: config.max_frame,
            noise_identity: config.noise_identity,
            event_shares,
        },
    )
}

/// Resolves `target` afresh (host names may have moved), connects to the
/// first address that answers, and runs the connection.
pub async fn dial_and_run<B: Backend>(
    tasks: LinkTasks<B>,
    target: String,
    connect_timeout: Duration,
) {
    let connecting = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|error| format!("cannot resolve {target}: {error}"))?
            .collect();
        let mut last_error = format!("{target} resolved to no address");
        for addr in addrs {
            match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, addr)),
                Ok(Err(error)) => last_error = format!("{addr}: {error}"),
                Err(_) => last_error = format!("{addr}: connect timed out"),
            }
        }
        Err(last_error)
    };
    let outcome = tokio::select! {
        _ = tasks.cancel.cancelled() => return,
        outcome = connecting => outcome,
    };
    let conn = tasks.conn;
    match outcome {
        Ok((stream, remote)) => {
            let _ = stream.set_nodelay(true);
            if tasks
                .events
                .urgent
                .send(Input::Connected { conn, remote })
                .await
                .is_ok()
            {
                run(tasks, stream, Role::Initiator).await;
            }
        }
        Err(error) => {
            let _ = tasks
                .events
                .urgent
                .send(Input::DialFailed { conn, error })
                .await;
        }
    }
}

fn insecure(error: &TransportError) -> CloseCause {
    CloseCause::Insecure {
        reason: error.reason(),
        detail: error.to_string(),
    }
}

pub(super) fn close_cause(error: CodecError) -> CloseCause {
    if let CodecError::Io(io_error) = &error {
        if let Some(transport) = TransportError::from_io(io_error) {
            return insecure(transport);
        }
    }
    if error.is_misbehaviour() {
        CloseCause::BadFrame {
            reason: error.reason(),
            detail: error.to_string(),
        }
    } else {
        CloseCause::Disconnected(error.to_string())
    }
}

/// Secures an established connection with the Noise handshake (as `role`)
/// and runs it to its end; reports `Closed` unless the driver cancelled it.
/// A stalled handshake ends with the core's handshake deadline, which
/// cancels the link.
pub async fn run<B: Backend, T: Transport>(tasks: LinkTasks<B>, stream: T, role: Role) {
    let (conn, cancel, events) = (tasks.conn, tasks.cancel.clone(), tasks.events.clone());
    let secured = tokio::select! {
        _ = cancel.cancelled() => return,
        secured = noise::handshake(stream, role, &tasks.noise_identity) => secured,
    };
    match secured {
        Ok((stream, node_id)) => {
            let secured = Input::Secured { conn, node_id };
            if events.urgent.send(secured).await.is_ok() {
                run_secured(tasks, stream).await;
            }
        }
        Err(error) => {
            let cause = match error {
                TransportError::Io(error) => CloseCause::Disconnected(error.to_string()),
                other => insecure(&other),
            };
            let _ = events.urgent.send(Input::Closed { conn, cause }).await;
        }
    }
}

/// Runs a secured connection: frames over the Noise stream.
async fn run_secured<B: Backend, T: Transport>(tasks: LinkTasks<B>, stream: T) {
    let (conn, cancel, events, backlog) = (tasks.conn, tasks.cancel, tasks.events, tasks.backlog);
    let max_frame = tasks.max_frame;
    let share = ReaderShare {
        conn,
        shares: tasks.event_shares,
        metrics: tasks.metrics.clone(),
    };
    let (mut reader, writer) = connection::split(stream, max_frame, tasks.metrics);
    reader.set_max_frame(HANDSHAKE_MAX_FRAME);
    tasks
        .tracker
        .spawn(write_loop(writer, tasks.queue, cancel.clone()));
    // One server per lane, so a large tx answer never holds up a block.
    for (lane, answers) in [Lane::Urgent, Lane::Bulk].into_iter().zip(tasks.answers) {
        tasks.tracker.spawn(serve_answers(
            tasks.backend.clone(),
            tasks.sender.clone(),
            lane,
            answers,
            backlog.clone(),
            cancel.clone(),
        ));
    }
    let cause = tokio::select! {
        _ = cancel.cancelled() => None,
        cause = read_loop(&share, &mut reader, &events, &backlog, tasks.authenticated, max_frame) => cause,
    };
    cancel.cancel();
    if let Some(cause) = cause {
        let _ = events.urgent.send(Input::Closed { conn, cause }).await;
    }
}

/// Writes queued messages, batching whatever is already waiting into one
/// flush.
async fn write_loop<T: Transport>(
    mut writer: ConnectionWriter<T>,
    mut queues: LaneQueues,
    cancel: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(queued) = queues.urgent.recv() => queued,
            Some(queued) = queues.bulk.recv() => queued,
            else => break,
        };
        let written = async {
            writer.feed(first.kind, first.payload.clone()).await?;
            drop(first);
            while let Some(more) = queues.try_next() {
                writer.feed(more.kind, more.payload.clone()).await?;
            }
            writer.flush().await
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            outcome = written => outcome,
        };
        if let Err(error) = outcome {
            tracing::debug!(%error, "peer write failed");
            cancel.cancel();
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.close()).await;
}

/// Carries out the core's answers in order: blocks are read as the bytes
/// we hold and txs from the mempool only when their turn comes, and each
/// item waits for room in the peer's queue. Txs no longer in the mempool
/// are listed in one `NotFound` after the batch.
async fn serve_answers<B: Backend>(
    backend: B,
    sender: PeerSender,
    lane: Lane,
    mut answers: mpsc::UnboundedReceiver<Vec<Outgoing>>,
    backlog: Arc<AnswerBacklog>,
    cancel: CancellationToken,
) {
    loop {
        let items = tokio::select! {
            _ = cancel.cancelled() => break,
            next = answers.recv() => match next {
                Some(items) => items,
                None => break,
            },
        };
        let mut gone = Vec::new();
        for item in items {
            let (kind, payload) = match item {
                Outgoing::Message(message) => (message.kind(), encode_message(&message)),
                Outgoing::Block(hash) => match backend.block_payload(&hash) {
                    Some(payload) => ("block", payload),
                    None => {
                        // Gone between the core's check and now; the peer
                        // asks another after its request timeout.
                        tracing::debug!(%hash, "requested block no longer available");
                        continue;
                    }
                },
                Outgoing::Tx(txid) => match backend.mempool_tx(&txid) {
                    Some(tx) => ("tx", tx_payload(&tx)),
                    None => {
                        gone.push(InvItem::Tx(txid));
                        continue;
                    }
                },
                Outgoing::CompactBlock(hash) => match backend.compact_payload(&hash) {
                    Some(payload) => ("compact_block", payload),
                    None => {
                        gone.push(InvItem::Block(hash));
                        continue;
                    }
                },
                Outgoing::BlockTxs { block, indexes } => {
                    let txs = backend
                        .recent_block(&block)
                        .and_then(|found| compact::block_txs(&found, &indexes));
                    match txs {
                        Some(txs) => {
                            let message = Message::BlockTxs { block, txs };
                            (message.kind(), encode_message(&message))
                        }
                        None => {
                            gone.push(InvItem::Block(block));
                            continue;
                        }
                    }
                }
            };
            let sent = tokio::select! {
                _ = cancel.cancelled() => false,
                sent = sender.send(lane, kind, payload) => sent,
            };
            if !sent {
                return;
            }
        }
        if !gone.is_empty() {
            let not_found = Message::NotFound(gone);
            let sent = tokio::select! {
                _ = cancel.cancelled() => false,
                sent = sender.send(lane, not_found.kind(), encode_message(&not_found)) => sent,
            };
            if !sent {
                return;
            }
        }
        backlog.pending.fetch_sub(1, Ordering::SeqCst);
        backlog.drained.notify_waiters();
    }
}
