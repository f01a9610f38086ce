//! `Session`: the per-connection protocol as a state machine, free of I/O.
//! The link's secure transport proves who the peer is (`Input::Secured`)
//! before any message arrives; the session then runs the `Hello` exchange
//! (magic, genesis, version, self connections, and that the `Hello` names
//! the proven node id), acknowledged by an empty `HelloAck`, and ping/pong
//! liveness. `NetworkState` feeds it the connection's messages and the
//! time, and carries out what it answers; it never sees a socket.

use super::time::Mono;
use super::CloseReason;
use crate::p2p::message::{Hello, HelloAck, Message, NetworkMagic, PROTOCOL_VERSION};
use crate::p2p::P2pTiming;
use ledger::{BlockHash, PublicKey, SecretKey};
use rand::RngCore;
use std::time::Duration;

/// Who we are, as the handshake states it.
pub struct Identity {
    pub key: SecretKey,
    pub node_id: PublicKey,
    pub magic: NetworkMagic,
    pub genesis_hash: BlockHash,
    /// The port we accept connections on (0: we do not listen).
    pub listen_port: u16,
}

/// Where the handshake stands.
#[derive(Debug)]
enum Phase {
    /// Our `Hello` is sent; theirs has not arrived.
    AwaitHello,
    /// Their `Hello` checked out and our `HelloAck` is sent; theirs has
    /// not arrived.
    AwaitAck(Box<Hello>),
    /// Authenticated.
    Ready,
}

/// Ping bookkeeping of an authenticated connection.
#[derive(Debug)]
struct Liveness {
    next_ping: Mono,
    outstanding: Option<(u64, Mono)>,
    missed: u32,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    /// The node id the secure transport proved, once it has.
    proven_peer: Option<PublicKey>,
    handshake_deadline: Mono,
    liveness: Option<Liveness>,
}

/// What the session asks its owner to do after the peer's `HelloAck`.
pub enum HandshakeStep {
    /// Send this (our `HelloAck`) and wait for theirs.
    Reply(Message),
    /// The peer accepted our `Hello` too: here is what it said in its own.
    Authenticated(Box<Hello>),
}

/// What liveness asks for at a timer tick.
#[derive(Debug, PartialEq, Eq)]
pub enum PingStep {
    Nothing,
    Send(u64),
    Dead,
}

fn violation(detail: impl Into<String>) -> CloseReason {
    CloseReason::Misbehaved {
        reason: "protocol_violation",
        detail: detail.into(),
    }
}

impl Session {
    /// A fresh connection: returns the session and the `Hello` to send.
    pub fn start(
        identity: &Identity,
        tip: &crate::p2p::TipSummary,
        now: Mono,
        timing: &P2pTiming,
    ) -> (Session, Message) {
        let hello = Hello {
            magic: identity.magic,
            protocol_version: PROTOCOL_VERSION,
            genesis_hash: identity.genesis_hash,
            node_id: identity.node_id,
            best_height: tip.height,
            best_work: tip.total_work,
            listen_port: identity.listen_port,
        };
        let session = Session {
            phase: Phase::AwaitHello,
            proven_peer: None,
            handshake_deadline: now + timing.handshake_timeout,
            liveness: None,
        };
        (session, Message::Hello(Box::new(hello)))
    }

    /// The transport proved the peer holds `node_id`'s key.
    pub fn secured(&mut self, node_id: PublicKey) {
        self.proven_peer = Some(node_id);
    }

    /// The node id the transport proved, if it has.
    pub fn proven_peer(&self) -> Option<PublicKey> {
        self.proven_peer
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The next instant this session needs the clock: its handshake
    /// deadline, or its next ping.
    pub fn next_timer(&self) -> Mono {
        match &self.liveness {
            Some(liveness) => liveness.next_ping,
            None => self.handshake_deadline,
        }
    }

    /// A message during the handshake: what to do next, or why to close.
    pub fn on_handshake_message(
        &mut self,
        identity: &Identity,
        message: Message,
    ) -> Result<HandshakeStep, CloseReason> {
        match (&self.phase, message) {
            (Phase::AwaitHello, Message::Hello(theirs)) => {
                let Some(proven) = self.proven_peer else {
                    return Err(violation(
                        "hello before the secure transport proved the peer",
                    ));
                };
                if theirs.node_id != proven {
                    // Whoever holds `proven`'s key relays or impersonates.
                    return Err(CloseReason::Misbehaved {
                        reason: "bad_handshake",
                        detail: format!(
                            "hello claims node {:?} but the transport proved {:?}",
                            theirs.node_id, proven
                        ),
                    });
                }
                check_hello(identity, &theirs)?;
                self.phase = Phase::AwaitAck(theirs);
                Ok(HandshakeStep::Reply(Message::HelloAck(HelloAck {})))
            }
            (Phase::AwaitAck(_), Message::HelloAck(HelloAck {})) => {
                let Phase::AwaitAck(theirs) = std::mem::replace(&mut self.phase, Phase::Ready)
                else {
                    unreachable!("matched AwaitAck above");
                };
                Ok(HandshakeStep::Authenticated(theirs))
            }
            (Phase::AwaitHello, other) => Err(violation(format!("{} before hello", other.kind()))),
            (Phase::AwaitAck(_), other) => {
                Err(violation(format!("{} instead of hello_ack", other.kind())))
            }
            (Phase::Ready, other) => Err(violation(format!(
                "{} handled as a handshake message after the handshake",
                other.kind()
            ))),
        }
    }

    /// Starts pinging: the first ping goes out soon (so `ping_ms` is known
    /// within a second or so), then every `ping_interval`.
    pub fn authenticated(&mut self, now: Mono, timing: &P2pTiming) {
        self.liveness = Some(Liveness {
            next_ping: now + timing.ping_interval.min(Duration::from_secs(1)),
            outstanding: None,
            missed: 0,
        });
    }

    /// Whether the handshake ran out of time.
    pub fn handshake_expired(&self, now: Mono) -> bool {
        !self.is_ready() && now >= self.handshake_deadline
    }

    /// The ping timer: a ping still unanswered at the next tick counts as
    /// missed, and `max_missed_pongs` misses in a row mean the peer is dead.
    pub fn on_timer(&mut self, now: Mono, timing: &P2pTiming, rng: &mut impl RngCore) -> PingStep {
        let Some(liveness) = self.liveness.as_mut() else {
            return PingStep::Nothing;
        };
        if now < liveness.next_ping {
            return PingStep::Nothing;
        }
        liveness.next_ping = now + timing.ping_interval;
        if liveness.outstanding.is_some() {
            liveness.missed += 1;
            if liveness.missed >= timing.max_missed_pongs {
                return PingStep::Dead;
            }
            return PingStep::Nothing;
        }
        let nonce = rng.next_u64();
        liveness.outstanding = Some((nonce, now));
        PingStep::Send(nonce)
    }

    /// A pong: the round-trip time when it answers our outstanding ping.
    pub fn on_pong(&mut self, nonce: u64, now: Mono) -> Option<Duration> {
        let liveness = self.liveness.as_mut()?;
        match liveness.outstanding {
            Some((expected, sent_at)) if expected == nonce => {
                liveness.outstanding = None;
                liveness.missed = 0;
                Some(now.saturating_duration_since(sent_at))
            }
            _ => None,
        }
    }
}

/// The checks on a peer's `Hello` before we sign anything for it.
fn check_hello(identity: &Identity, theirs: &Hello) -> Result<(), CloseReason> {
    if theirs.magic != identity.magic {
        return Err(CloseReason::Misbehaved {
            reason: "wrong_magic",
            detail: format!("magic {:02x?}", theirs.magic.0),
        });
    }
    if theirs.genesis_hash != identity.genesis_hash {
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
    if theirs.node_id == identity.node_id {
        return Err(CloseReason::SelfConnection);
    }
    Ok(())
}
