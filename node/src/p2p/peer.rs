//! One peer connection's life, as a task: dial (outbound), the
//! authenticated handshake under a timeout, then a reader loop and a
//! separate writer task. The peer task answers what needs no shared state
//! itself (pings, `GetData` and `GetHeaders` from the `Backend`'s reads) and
//! forwards everything else to the manager. Outgoing messages go through a
//! `PeerSender` whose queue is bounded in bytes: the manager's pushes fail
//! fast when a peer cannot keep up (and the manager drops it), while answers
//! to the peer's own requests wait for room, so a greedy peer only slows
//! itself down.

use super::codec::{encode_message, CodecError, MAX_FRAME_BYTES};
use super::connection::{self, ConnectionReader, ConnectionWriter, Transport};
use super::gossip::PeerId;
use super::message::{
    handshake_message, Hello, HelloAck, InvItem, Message, MAX_HEADERS, PROTOCOL_VERSION,
};
use super::{Backend, P2pTiming};
use crate::metrics::Metrics;
use ledger::json::Direction;
use ledger::{BlockHash, PublicKey, SecretKey};
use rand::RngCore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Frames before the handshake completes are capped far below the normal
/// limit: an unauthenticated stranger may make us buffer only this much.
const HANDSHAKE_MAX_FRAME: usize = 1024;
/// Every queued message is charged at least this many bytes of budget, which
/// bounds the number of queued messages too.
const MIN_MESSAGE_CHARGE: usize = 64;

/// Who we are, shared by every peer task.
pub struct LocalInfo {
    pub key: SecretKey,
    pub node_id: PublicKey,
    pub magic: [u8; 4],
    pub genesis_hash: BlockHash,
    pub listen_port: u16,
    pub timing: P2pTiming,
    pub send_budget_bytes: usize,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum CloseReason {
    /// No TCP connection could be made.
    DialFailed(String),
    /// The peer broke the rules: ban it.
    Misbehaved {
        reason: &'static str,
        detail: String,
    },
    /// We dialed ourselves.
    SelfConnection,
    /// The manager refused the finished handshake (duplicate, banned, full).
    Rejected,
    HandshakeTimeout,
    /// No pong for too many pings.
    Dead,
    /// Its send queue overflowed.
    SlowPeer,
    /// Closed by either side or a network error.
    Disconnected(String),
}

/// What a peer task tells the manager.
pub enum PeerEvent {
    /// An outbound connection reached this address (before the handshake).
    Connected {
        id: PeerId,
        remote: SocketAddr,
    },
    /// The handshake is done; the manager answers whether to keep the peer.
    Ready {
        id: PeerId,
        hello: Hello,
        remote: SocketAddr,
        sender: PeerSender,
        reply: oneshot::Sender<bool>,
    },
    Message {
        id: PeerId,
        message: Message,
    },
    Pong {
        id: PeerId,
        rtt: Duration,
    },
    /// Always the last event of a connection.
    Closed {
        id: PeerId,
        reason: CloseReason,
    },
}

struct Outgoing {
    kind: &'static str,
    payload: Bytes,
    _permit: OwnedSemaphorePermit,
}

/// The sending side of a peer's outgoing queue, bounded in bytes.
#[derive(Clone)]
pub struct PeerSender {
    queue: mpsc::UnboundedSender<Outgoing>,
    budget: Arc<Semaphore>,
    capacity: usize,
}

impl PeerSender {
    fn new(capacity: usize) -> (PeerSender, mpsc::UnboundedReceiver<Outgoing>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let capacity = capacity.clamp(MAX_FRAME_BYTES, u32::MAX as usize);
        (
            PeerSender {
                queue,
                budget: Arc::new(Semaphore::new(capacity)),
                capacity,
            },
            receiver,
        )
    }

    fn charge(&self, len: usize) -> u32 {
        len.max(MIN_MESSAGE_CHARGE).min(self.capacity) as u32
    }

    /// Queues without waiting; false when the queue is full or closed (the
    /// caller then treats the peer as unable to keep up).
    pub fn try_send(&self, kind: &'static str, payload: Bytes) -> bool {
        match self
            .budget
            .clone()
            .try_acquire_many_owned(self.charge(payload.len()))
        {
            Ok(permit) => self
                .queue
                .send(Outgoing {
                    kind,
                    payload,
                    _permit: permit,
                })
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Queues, waiting for room; false when the connection is gone.
    pub async fn send(&self, kind: &'static str, payload: Bytes) -> bool {
        match self
            .budget
            .clone()
            .acquire_many_owned(self.charge(payload.len()))
            .await
        {
            Ok(permit) => self
                .queue
                .send(Outgoing {
                    kind,
                    payload,
                    _permit: permit,
                })
                .is_ok(),
            Err(_) => false,
        }
    }

    pub fn send_message_now(&self, message: &Message) -> bool {
        self.try_send(message.kind(), encode_message(message))
    }
}

/// Everything a peer task needs.
pub struct PeerContext<B: Backend> {
    pub id: PeerId,
    pub direction: Direction,
    pub backend: B,
    pub metrics: Metrics,
    pub events: mpsc::Sender<PeerEvent>,
    /// Cancelled by the manager to drop this peer, and by the node's
    /// shutdown (it is a child token).
    pub cancel: CancellationToken,
    pub local: Arc<LocalInfo>,
    pub tracker: TaskTracker,
}

/// Resolves `target` afresh (host names may have moved), connects to the
/// first address that answers, and runs the connection.
pub async fn dial_and_run<B: Backend>(context: PeerContext<B>, target: String) {
    let timeout = context.local.timing.connect_timeout;
    let connecting = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|error| format!("cannot resolve {target}: {error}"))?
            .collect();
        let mut last_error = format!("{target} resolved to no address");
        for addr in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, addr)),
                Ok(Err(error)) => last_error = format!("{addr}: {error}"),
                Err(_) => last_error = format!("{addr}: connect timed out"),
            }
        }
        Err(last_error)
    };
    let outcome = tokio::select! {
        _ = context.cancel.cancelled() => Err("cancelled".to_string()),
        outcome = connecting => outcome,
    };
    match outcome {
        Ok((stream, remote)) => {
            let _ = stream.set_nodelay(true);
            let _ = context
                .events
                .send(PeerEvent::Connected {
                    id: context.id,
                    remote,
                })
                .await;
            run_connection(context, stream, remote).await;
        }
        Err(detail) => {
            let _ = context
                .events
                .send(PeerEvent::Closed {
                    id: context.id,
                    reason: CloseReason::DialFailed(detail),
                })
                .await;
        }
    }
}

/// Runs an established connection to its end, then reports why it ended.
pub async fn run_connection<B: Backend, T: Transport>(
    context: PeerContext<B>,
    stream: T,
    remote: SocketAddr,
) {
    let reason = run(&context, stream, remote).await;
    context.cancel.cancel();
    let _ = context
        .events
        .send(PeerEvent::Closed {
            id: context.id,
            reason,
        })
        .await;
}

fn violation(detail: impl Into<String>) -> CloseReason {
    CloseReason::Misbehaved {
        reason: "protocol_violation",
        detail: detail.into(),
    }
}

fn from_codec(error: CodecError) -> CloseReason {
    if error.is_misbehaviour() {
        CloseReason::Misbehaved {
            reason: error.reason(),
            detail: error.to_string(),
        }
    } else {
        CloseReason::Disconnected(error.to_string())
    }
}

async fn run<B: Backend, T: Transport>(
    context: &PeerContext<B>,
    stream: T,
    remote: SocketAddr,
) -> CloseReason {
    let (mut reader, mut writer) =
        connection::split(stream, MAX_FRAME_BYTES, context.metrics.clone());
    reader.set_max_frame(HANDSHAKE_MAX_FRAME);
    let handshake = tokio::time::timeout(
        context.local.timing.handshake_timeout,
        handshake(context, &mut reader, &mut writer),
    );
    let hello = tokio::select! {
        _ = context.cancel.cancelled() => return CloseReason::Disconnected("shutting down".into()),
        outcome = handshake => match outcome {
            Err(_) => return CloseReason::HandshakeTimeout,
            Ok(Err(reason)) => return reason,
            Ok(Ok(hello)) => hello,
        },
    };
    reader.set_max_frame(MAX_FRAME_BYTES);

    let (sender, queue) = PeerSender::new(context.local.send_budget_bytes);
    let (reply, accepted) = oneshot::channel();
    let ready = PeerEvent::Ready {
        id: context.id,
        hello,
        remote,
        sender: sender.clone(),
        reply,
    };
    if context.events.send(ready).await.is_err() {
        return CloseReason::Disconnected("shutting down".into());
    }
    match accepted.await {
        Ok(true) => {}
        _ => return CloseReason::Rejected,
    }

    let writer_cancel = context.cancel.clone();
    context
        .tracker
        .spawn(write_loop(writer, queue, writer_cancel));
    read_loop(context, &mut reader, &sender).await
}

async fn handshake<B: Backend, T: Transport>(
    context: &PeerContext<B>,
    reader: &mut ConnectionReader<T>,
    writer: &mut ConnectionWriter<T>,
) -> Result<Hello, CloseReason> {
    let local = &context.local;
    let tip = context.backend.tip();
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ours = Hello {
        magic: local.magic,
        protocol_version: PROTOCOL_VERSION,
        genesis_hash: local.genesis_hash,
        node_id: local.node_id,
        best_height: tip.height,
        best_work: tip.total_work,
        listen_port: local.listen_port,
        nonce,
    };
    writer
        .write_message(&Message::Hello(ours))
        .await
        .map_err(from_codec)?;
    let theirs = match reader.read_message().await.map_err(from_codec)? {
        Some(Message::Hello(hello)) => hello,
        Some(other) => return Err(violation(format!("{} before hello", other.kind()))),
        None => return Err(CloseReason::Disconnected("closed during handshake".into())),
    };
    if theirs.magic != local.magic {
        return Err(CloseReason::Misbehaved {
            reason: "wrong_magic",
            detail: format!("magic {:02x?}", theirs.magic),
        });
    }
    if theirs.genesis_hash != local.genesis_hash {
        return Err(CloseReason::Misbehaved {
            reason: "wrong_genesis",
            detail: format!("genesis {}", theirs.genesis_hash),
        });
    }
    if theirs.protocol_version != PROTOCOL_VERSION {
        // Another version is not an attack; we simply cannot talk.
        return Err(CloseReason::Disconnected(format!(
            "protocol version {} is not {PROTOCOL_VERSION}",
            theirs.protocol_version
        )));
    }
    if theirs.node_id == local.node_id {
        return Err(CloseReason::SelfConnection);
    }
    let statement = handshake_message(
        local.magic,
        &local.genesis_hash,
        &theirs.nonce,
        &local.node_id,
        &theirs.node_id,
    );
    let ack = HelloAck {
        signature: local.key.sign(&statement),
    };
    writer
        .write_message(&Message::HelloAck(ack))
        .await
        .map_err(from_codec)?;
    let their_ack = match reader.read_message().await.map_err(from_codec)? {
        Some(Message::HelloAck(ack)) => ack,
        Some(other) => return Err(violation(format!("{} instead of hello_ack", other.kind()))),
        None => return Err(CloseReason::Disconnected("closed during handshake".into())),
    };
    let expected = handshake_message(
        local.magic,
        &local.genesis_hash,
        &nonce,
        &theirs.node_id,
        &local.node_id,
    );
    if theirs
        .node_id
        .verify(&expected, &their_ack.signature)
        .is_err()
    {
        return Err(CloseReason::Misbehaved {
            reason: "bad_handshake",
            detail: "hello_ack signature does not verify".into(),
        });
    }
    Ok(theirs)
}

/// Writes queued messages, batching whatever is already waiting into one
/// flush.
async fn write_loop<T: Transport>(
    mut writer: ConnectionWriter<T>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    cancel: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            next = queue.recv() => match next {
                Some(outgoing) => outgoing,
                None => break,
            },
        };
        let written = async {
            writer.feed(first.kind, first.payload.clone()).await?;
            drop(first);
            while let Ok(more) = queue.try_recv() {
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

async fn read_loop<B: Backend, T: Transport>(
    context: &PeerContext<B>,
    reader: &mut ConnectionReader<T>,
    sender: &PeerSender,
) -> CloseReason {
    let timing = &context.local.timing;
    // The first ping goes out soon after the handshake so `ping_ms` is known
    // within a second or so instead of only after a whole interval.
    let mut ping_timer = tokio::time::interval_at(
        tokio::time::Instant::now() + timing.ping_interval.min(Duration::from_secs(1)),
        timing.ping_interval,
    );
    ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outstanding_ping: Option<(u64, Instant)> = None;
    let mut missed_pongs = 0u32;
    loop {
        let message = tokio::select! {
            _ = context.cancel.cancelled() => return CloseReason::Disconnected("dropped".into()),
            _ = ping_timer.tick() => {
                if outstanding_ping.is_some() {
                    missed_pongs += 1;
                    if missed_pongs >= timing.max_missed_pongs {
                        return CloseReason::Dead;
                    }
                } else {
                    let nonce = rand::random::<u64>();
                    if !sender.send_message_now(&Message::Ping(nonce)) {
                        return CloseReason::SlowPeer;
                    }
                    outstanding_ping = Some((nonce, Instant::now()));
                }
                continue;
            }
            read = reader.read_message() => match read {
                Err(error) => return from_codec(error),
                Ok(None) => return CloseReason::Disconnected("closed by peer".into()),
                Ok(Some(message)) => message,
            },
        };
        match message {
            Message::Ping(nonce) => {
                if !sender.send_message_now(&Message::Pong(nonce)) {
                    return CloseReason::SlowPeer;
                }
            }
            Message::Pong(nonce) => {
                if let Some((expected, sent_at)) = outstanding_ping {
                    if expected == nonce {
                        outstanding_ping = None;
                        missed_pongs = 0;
                        let rtt = sent_at.elapsed();
                        let _ = context
                            .events
                            .send(PeerEvent::Pong {
                                id: context.id,
                                rtt,
                            })
                            .await;
                    }
                }
            }
            Message::GetData(items) => {
                if !serve_data(context, sender, items).await {
                    return CloseReason::Disconnected("dropped".into());
                }
            }
            Message::GetHeaders(locator) => {
                let headers = context.backend.headers_after(&locator, MAX_HEADERS);
                if !send_waiting(context, sender, &Message::Headers(headers)).await {
                    return CloseReason::Disconnected("dropped".into());
                }
            }
            Message::Hello(_) | Message::HelloAck(_) => {
                return violation("handshake message after the handshake");
            }
            other => {
                let event = PeerEvent::Message {
                    id: context.id,
                    message: other,
                };
                tokio::select! {
                    _ = context.cancel.cancelled() => return CloseReason::Disconnected("dropped".into()),
                    sent = context.events.send(event) => if sent.is_err() {
                        return CloseReason::Disconnected("shutting down".into());
                    },
                }
            }
        }
    }
}

/// Sends an answer, waiting for queue room unless the peer is dropped.
async fn send_waiting<B: Backend>(
    context: &PeerContext<B>,
    sender: &PeerSender,
    message: &Message,
) -> bool {
    let payload = encode_message(message);
    tokio::select! {
        _ = context.cancel.cancelled() => false,
        sent = sender.send(message.kind(), payload) => sent,
    }
}

/// Answers a `GetData` from our chain and mempool, in request order, with
/// one `NotFound` for whatever we lack.
async fn serve_data<B: Backend>(
    context: &PeerContext<B>,
    sender: &PeerSender,
    items: Vec<InvItem>,
) -> bool {
    let mut missing = Vec::new();
    for item in items {
        // Blocks go out as the bytes we hold (never decoded and encoded
        // again); txs are small and encoded here.
        let payload = match item {
            InvItem::Block(hash) => context
                .backend
                .block_payload(&hash)
                .map(|payload| ("block", payload)),
            InvItem::Tx(txid) => context
                .backend
                .mempool_tx(&txid)
                .map(|tx| ("tx", encode_message(&Message::Tx(tx)))),
        };
        let Some((kind, payload)) = payload else {
            missing.push(item);
            continue;
        };
        let sent = tokio::select! {
            _ = context.cancel.cancelled() => false,
            sent = sender.send(kind, payload) => sent,
        };
        if !sent {
            return false;
        }
    }
    if missing.is_empty() {
        true
    } else {
        send_waiting(context, sender, &Message::NotFound(missing)).await
    }
}
