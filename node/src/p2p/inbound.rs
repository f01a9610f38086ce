//! A link's inbound side: the reader that decodes frames off the secured
//! stream and hands them to the driver, within the connection's shares of
//! the driver's event channels (`EventShares`: one for frames about blocks
//! and the connection itself, `Message::is_urgent`, one for tx traffic).
//! Urgent frames go ahead of the link's tx frames: while its bulk share is
//! used up, up to `HELD_BULK_FRAMES` tx frames (at most `HELD_BULK_BYTES`,
//! plus the frame that crosses it) wait here, in order, and the reader
//! keeps reading, so a block behind them is not left in the socket until
//! the driver has worked through them. Past that hold the reader stops
//! reading, as it does while the peer's answers are still being sent.

use super::codec::CodecError;
use super::connection::{ConnectionReader, Transport};
use super::link::{close_cause, AnswerBacklog, LinkEvents, MAX_PENDING_ANSWERS};
use super::message::Message;
use super::protocol::{CloseCause, ConnId, Input};
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{oneshot, Semaphore};

/// Tx frames one connection may have waiting in the driver's bulk channel
/// at once. The channels hold 4,096 each, so it takes 128 flooding
/// connections to fill one, and an honest peer's frame waits behind at
/// most this many of each flooder's.
pub const MAX_QUEUED_FRAMES_PER_LINK: usize = 32;
/// The same for urgent frames, in the urgent channel.
pub const MAX_QUEUED_URGENT_FRAMES_PER_LINK: usize = 8;
/// Tx frames a reader holds while its bulk share is used up.
pub const HELD_BULK_FRAMES: usize = 256;
/// Bytes (encoded) of the tx frames a reader holds; the frame that crosses
/// it is still held, so the hold never exceeds this plus one frame.
pub const HELD_BULK_BYTES: usize = 1 << 20;

/// A connection's shares of the driver's event channels: the reader takes
/// a permit per frame it hands on, and the driver gives it back when it
/// takes the frame (`Link::frame_taken`).
#[derive(Clone)]
pub struct EventShares {
    pub urgent: Arc<Semaphore>,
    pub bulk: Arc<Semaphore>,
}

impl EventShares {
    pub fn new() -> EventShares {
        EventShares {
            urgent: Arc::new(Semaphore::new(MAX_QUEUED_URGENT_FRAMES_PER_LINK)),
            bulk: Arc::new(Semaphore::new(MAX_QUEUED_FRAMES_PER_LINK)),
        }
    }

    /// The driver took one of the connection's frames.
    pub fn give_back(&self, urgent: bool) {
        if urgent {
            self.urgent.add_permits(1);
        } else {
            self.bulk.add_permits(1);
        }
    }
}

impl Default for EventShares {
    fn default() -> Self {
        EventShares::new()
    }
}

/// The reader's side of a connection's `EventShares`.
pub struct ReaderShare {
    pub conn: ConnId,
    pub shares: EventShares,
    pub metrics: Metrics,
}

impl ReaderShare {
    /// Counts (and logs once per connection) that the reader could not hand
    /// a frame on at once: `rule` says which limit it met.
    fn waited(&self, rule: &'static str, logged: &mut bool) {
        self.metrics
            .inc("p2p_event_share_waits_total", &[("rule", rule)]);
        if !*logged {
            *logged = true;
            tracing::debug!(
                peer = %self.conn,
                rule,
                "peer's frames wait for its share of the driver's queue"
            );
        }
    }

    /// Waits for room in the urgent share; `None` when the share is gone.
    async fn take_urgent(&self, logged: &mut bool) -> Option<()> {
        let permit = match self.shares.urgent.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.waited("urgent_share", logged);
                self.shares.urgent.clone().acquire_owned().await.ok()?
            }
        };
        // Given back by the driver when it takes the frame.
        permit.forget();
        Some(())
    }
}

/// Reads frames and hands them on; `None` when the driver went away.
pub(super) async fn read_loop<T: Transport>(
    share: &ReaderShare,
    reader: &mut ConnectionReader<T>,
    events: &LinkEvents,
    backlog: &AnswerBacklog,
    authenticated: oneshot::Receiver<()>,
    max_frame: usize,
) -> Option<CloseCause> {
    let conn = share.conn;
    let mut authenticated = Some(authenticated);
    let mut logged = false;
    let mut held: VecDeque<(Message, usize)> = VecDeque::new();
    let mut held_bytes = 0usize;
    let mut stalled = false;
    loop {
        let room = held.len() < HELD_BULK_FRAMES && held_bytes < HELD_BULK_BYTES;
        if !room && !stalled {
            share.waited("held_full", &mut logged);
        }
        stalled = !room;
        tokio::select! {
            biased;
            // The oldest held tx frame goes on once the driver has room.
            permit = share.shares.bulk.acquire(), if !held.is_empty() => {
                permit.ok()?.forget();
                let (message, len) = held.pop_front()?;
                held_bytes -= len;
                events.bulk.send(Input::Frame { conn, message }).await.ok()?;
            }
            read = next_frame(reader, backlog), if room => {
                let (message, len) = match read {
                    Err(error) => return Some(close_cause(error)),
                    Ok(None) => return Some(CloseCause::Disconnected("closed by peer".into())),
                    Ok(Some(frame)) => frame,
                };
                let ends_handshake =
                    authenticated.is_some() && matches!(message, Message::HelloAck(_));
                if message.is_urgent() {
                    share.take_urgent(&mut logged).await?;
                    events.urgent.send(Input::Frame { conn, message }).await.ok()?;
                } else if let (true, Ok(permit)) = (held.is_empty(), share.shares.bulk.try_acquire()) {
                    permit.forget();
                    events.bulk.send(Input::Frame { conn, message }).await.ok()?;
                } else {
                    if held.is_empty() {
                        share.waited("event_share", &mut logged);
                    }
                    held_bytes += len;
                    held.push_back((message, len));
                }
                if ends_handshake {
                    // The core judges the handshake before anything larger
                    // than a handshake frame is read from this peer.
                    let signal = authenticated.take()?;
                    signal.await.ok()?;
                    reader.set_max_frame(max_frame);
                }
            }
            else => return None,
        }
    }
}

/// The next frame and its encoded size, once the peer's answers have gone
/// out (see `AnswerBacklog`). Cancel safe: waiting and reading both are.
async fn next_frame<T: Transport>(
    reader: &mut ConnectionReader<T>,
    backlog: &AnswerBacklog,
) -> Result<Option<(Message, usize)>, CodecError> {
    loop {
        let drained = backlog.drained.notified();
        if backlog.pending.load(Ordering::SeqCst) < MAX_PENDING_ANSWERS {
            break;
        }
        drained.await;
    }
    reader.read_sized().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::codec::encode_message;
    use crate::p2p::connection::{self, ConnectionWriter};
    use crate::p2p::link::HANDSHAKE_MAX_FRAME;
    use ledger::testing::transfer;
    use std::time::{Duration, Instant};
    use tokio::sync::mpsc;

    /// A reader for connection `id` on one end of an in-memory stream,
    /// handing frames to `events`; returns the other end's writer and the
    /// connection's shares (the test plays the driver giving them back).
    fn spawn_reader(
        id: u64,
        events: &LinkEvents,
        keep: &mut Vec<oneshot::Sender<()>>,
    ) -> (ConnectionWriter<tokio::io::DuplexStream>, EventShares) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let metrics = Metrics::new();
        let (mut reader, _) = connection::split(ours, HANDSHAKE_MAX_FRAME, metrics.clone());
        let (_, writer) = connection::split(theirs, HANDSHAKE_MAX_FRAME, metrics.clone());
        let (authenticated_tx, authenticated) = oneshot::channel();
        keep.push(authenticated_tx);
        let shares = EventShares::new();
        let share = ReaderShare {
            conn: ConnId(id),
            shares: shares.clone(),
            metrics,
        };
        let events = events.clone();
        tokio::spawn(async move {
            let backlog = AnswerBacklog::default();
            read_loop(
                &share,
                &mut reader,
                &events,
                &backlog,
                authenticated,
                HANDSHAKE_MAX_FRAME,
            )
            .await
        });
        (writer, shares)
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Attack 4's shared channel: a peer that floods frames while the
    /// driver is busy holds at most its share of the channel, so an honest
    /// peer's frame stands behind at most that many of the flooder's (with
    /// one channel for all, it stood behind all 2,000).
    #[tokio::test]
    async fn a_flooding_connection_holds_at_most_its_share_of_the_drivers_queue() {
        let (urgent, mut urgent_rx) = mpsc::channel(4_096);
        let (bulk, mut bulk_rx) = mpsc::channel(4_096);
        let events = LinkEvents { urgent, bulk };
        let mut keep = Vec::new();
        let (mut flooder, _) = spawn_reader(1, &events, &mut keep);
        let (mut honest, _) = spawn_reader(2, &events, &mut keep);
        for _ in 0..2_000 {
            flooder
                .feed("ping", encode_message(&Message::Ping(7)))
                .await
                .expect("in memory");
        }
        flooder.flush().await.expect("in memory");
        wait_for("the flooder's share", || {
            urgent_rx.len() + bulk_rx.len() >= MAX_QUEUED_URGENT_FRAMES_PER_LINK
        })
        .await;
        honest
            .write_message(&Message::Ping(8))
            .await
            .expect("in memory");
        wait_for("the honest frame", || {
            urgent_rx.len() + bulk_rx.len() > MAX_QUEUED_URGENT_FRAMES_PER_LINK
        })
        .await;

        // The driver, busy until now, reads: the honest frame comes within
        // the first share's worth plus one.
        let mut position = None;
        for taken in 0..=MAX_QUEUED_URGENT_FRAMES_PER_LINK {
            let input = tokio::select! {
                biased;
                Some(input) = urgent_rx.recv() => input,
                Some(input) = bulk_rx.recv() => input,
            };
            if matches!(
                input,
                Input::Frame {
                    conn: ConnId(2),
                    ..
                }
            ) {
                position = Some(taken);
                break;
            }
        }
        assert_eq!(position, Some(MAX_QUEUED_URGENT_FRAMES_PER_LINK));
        assert_eq!(
            urgent_rx.len() + bulk_rx.len(),
            0,
            "the flooder waits for room"
        );
    }

    /// A block frame behind a stalled stream of tx frames: the driver has
    /// taken none of the link's tx frames yet, and the block still reaches
    /// it at once, while the tx frames past the share wait in the reader's
    /// hold; once the driver takes them, they all follow in order.
    #[tokio::test]
    async fn a_block_frame_overtakes_the_links_stalled_tx_frames() {
        let (urgent, mut urgent_rx) = mpsc::channel(4_096);
        let (bulk, mut bulk_rx) = mpsc::channel(4_096);
        let events = LinkEvents { urgent, bulk };
        let mut keep = Vec::new();
        let (mut peer, shares) = spawn_reader(1, &events, &mut keep);
        let genesis = ledger::testing::regtest().genesis_hash();
        let txs: Vec<_> = (0..100)
            .map(|nonce| transfer(&genesis, 0, ledger::Address([9; 20]), 1, 1_000, nonce))
            .collect();
        for tx in &txs {
            let message = Message::Tx(Box::new(tx.clone()));
            peer.feed(message.kind(), encode_message(&message))
                .await
                .expect("in memory");
        }
        peer.feed("ping", encode_message(&Message::Ping(7)))
            .await
            .expect("in memory");
        peer.flush().await.expect("in memory");

        let first = tokio::time::timeout(Duration::from_secs(10), urgent_rx.recv())
            .await
            .expect("the urgent frame came through");
        assert!(matches!(
            first,
            Some(Input::Frame {
                message: Message::Ping(7),
                ..
            })
        ));
        assert_eq!(
            bulk_rx.len(),
            MAX_QUEUED_FRAMES_PER_LINK,
            "only its share went on"
        );

        for tx in &txs {
            let input = tokio::time::timeout(Duration::from_secs(10), bulk_rx.recv())
                .await
                .expect("the held frames follow");
            match input {
                Some(Input::Frame {
                    message: Message::Tx(got),
                    ..
                }) => assert_eq!(got.txid(), tx.txid()),
                _ => panic!("expected the next tx frame"),
            }
            shares.give_back(false);
        }
    }
}
