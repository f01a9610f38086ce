//! The Noise transport under every peer connection, as a stranger reaches
//! it: the handshake, in either role, on whatever bytes the other side
//! sends, and an established session's encrypted frame decoding
//! (`NoiseStream`) on the ciphertext an honest peer sent after anyone on
//! the path cut, changed, dropped or added bytes. The streams under it are
//! in-memory and wait only for bytes that are not there yet, so a future
//! that waits with every byte there is a hang.

use arbitrary::{Arbitrary, Unstructured};
use ledger::SecretKey;
use node::p2p::noise::{handshake, LocalIdentity, NoiseStream, Role, TransportError};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Our node's and an honest peer's identities, made once per process (the
/// X25519 static keys and signed payloads).
fn identities() -> &'static (LocalIdentity, LocalIdentity) {
    static IDS: OnceLock<(LocalIdentity, LocalIdentity)> = OnceLock::new();
    IDS.get_or_init(|| {
        (
            LocalIdentity::new(&SecretKey::from_seed("fuzz noise us")),
            LocalIdentity::new(&SecretKey::from_seed("fuzz noise peer")),
        )
    })
}

/// Polls `future` a few times; `None` if it still waits. Futures on
/// `Pipe`s only wait for bytes that are not there yet.
fn poll_a_few<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut context = Context::from_waker(futures::task::noop_waker_ref());
    (0..16).find_map(|_| match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    })
}

/// `poll_a_few` for a future that has every byte it needs: waiting is a
/// hang.
fn finish<F: Future>(future: F) -> F::Output {
    poll_a_few(future).expect("the transport waited with every byte there (a hang)")
}

/// One end of an in-memory wire: reads take what `inbox` holds (at most
/// `chunk` bytes a read), and wait while it is empty unless the wire is
/// `closed` (then it is the end of the stream); writes go to `outbox`.
struct Pipe {
    inbox: Rc<RefCell<VecDeque<u8>>>,
    outbox: Rc<RefCell<VecDeque<u8>>>,
    closed: Rc<Cell<bool>>,
    chunk: usize,
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.is_empty() && !self.closed.get() {
            return Poll::Pending;
        }
        let n = buf.remaining().min(inbox.len()).min(self.chunk);
        let bytes: Vec<u8> = inbox.drain(..n).collect();
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.outbox.borrow_mut().extend(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn queue(bytes: &[u8]) -> Rc<RefCell<VecDeque<u8>>> {
    Rc::new(RefCell::new(bytes.iter().copied().collect()))
}

/// `p2p_noise`: the first byte picks the handshake as responder, as
/// initiator, or an established session's decoding; the rest drives it.
pub fn transport(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => stranger_handshake(rest, Role::Responder),
        1 => stranger_handshake(rest, Role::Initiator),
        _ => session(rest),
    }
}

/// The handshake against a peer that sends `bytes` (read in pieces of a
/// size the first byte picks). Without the keys nobody can complete it,
/// so it must fail, at its first poll and without a panic.
fn stranger_handshake(bytes: &[u8], role: Role) {
    let Some((&chunk, rest)) = bytes.split_first() else {
        return;
    };
    let pipe = Pipe {
        inbox: queue(rest),
        outbox: queue(&[]),
        closed: Rc::new(Cell::new(true)),
        chunk: usize::from(chunk).max(1),
    };
    let result = finish(handshake(pipe, role, &identities().0));
    assert!(
        result.is_err(),
        "a handshake completed with a stranger that holds no key"
    );
}

/// What the path does to the honest peer's ciphertext, and when.
#[derive(Arbitrary, Debug)]
enum Step {
    /// The peer writes this plaintext (`repeat` times over), then flushes.
    Send { bytes: Vec<u8>, repeat: u8 },
    /// A byte on the wire, counted from the end, is xored.
    Flip { back: u16, xor: u8 },
    /// The last `count` bytes on the wire vanish.
    Cut { count: u16 },
    /// Bytes nobody encrypted join the wire.
    Inject(Vec<u8>),
    /// Everything on the wire so far reaches us, read in pieces of `chunk`.
    Deliver { chunk: u16 },
}

/// A real session between two in-memory identities, then the fuzzed path:
/// what we read must be a prefix of what the peer sent, all of it when
/// nothing was changed, and once a read fails every later read fails.
fn session(bytes: &[u8]) {
    let mut input = Unstructured::new(bytes);
    let Ok(rekey) = input.int_in_range(1u64..=4) else {
        return;
    };
    let (us, peer) = identities();
    let to_peer = queue(&[]);
    let to_us = queue(&[]);
    let closed = Rc::new(Cell::new(false));
    let our_end = Pipe {
        inbox: Rc::clone(&to_us),
        outbox: Rc::clone(&to_peer),
        closed: Rc::clone(&closed),
        chunk: usize::MAX,
    };
    let peer_end = Pipe {
        inbox: Rc::clone(&to_peer),
        outbox: Rc::clone(&to_us),
        closed: Rc::new(Cell::new(false)),
        chunk: usize::MAX,
    };
    let (ours, theirs) = finish(async {
        futures::join!(
            handshake(our_end, Role::Responder, us),
            handshake(peer_end, Role::Initiator, peer)
        )
    });
    let (mut ours, peer_id) = ours.expect("an honest handshake completes");
    let (mut theirs, our_id) = theirs.expect("an honest handshake completes");
    assert_eq!(peer_id, peer.node_id());
    assert_eq!(our_id, us.node_id());
    ours.set_limits(rekey, u64::MAX);
    theirs.set_limits(rekey, u64::MAX);
    // The wire: what the peer wrote (and the path then changed), not yet
    // handed to us.
    let mut wire: Vec<u8> = Vec::new();
    let mut sent: Vec<u8> = Vec::new();
    let mut read: Vec<u8> = Vec::new();
    let mut tampered = false;
    let mut failed: Option<String> = None;
    for _ in 0..16 {
        let Ok(step) = Step::arbitrary(&mut input) else {
            break;
        };
        match step {
            Step::Send { bytes, repeat } => {
                let mut plain = Vec::new();
                for _ in 0..=repeat % 64 {
                    plain.extend_from_slice(&bytes);
                }
                finish(async {
                    theirs.write_all(&plain).await.expect("the peer writes");
                    theirs.flush().await.expect("the peer flushes");
                });
                sent.extend_from_slice(&plain);
                wire.extend(to_us.borrow_mut().drain(..));
            }
            Step::Flip { back, xor } => {
                if let Some(at) = wire.len().checked_sub(1 + usize::from(back)) {
                    wire[at] ^= xor;
                    tampered |= xor != 0;
                }
            }
            Step::Cut { count } => {
                let count = usize::from(count).min(wire.len());
                wire.truncate(wire.len() - count);
                tampered |= count > 0;
            }
            Step::Inject(bytes) => {
                tampered |= !bytes.is_empty();
                wire.extend_from_slice(&bytes);
            }
            Step::Deliver { chunk } => {
                let chunk = usize::from(chunk).max(1);
                for piece in wire.chunks(chunk) {
                    to_us.borrow_mut().extend(piece);
                    receive(&mut ours, &mut read, &mut failed);
                }
                wire.clear();
            }
        }
    }
    // The path closes: we read what is left.
    to_us.borrow_mut().extend(wire.drain(..));
    closed.set(true);
    receive(&mut ours, &mut read, &mut failed);
    assert!(
        sent.starts_with(&read),
        "read bytes the peer never sent ({} read, {} sent)",
        read.len(),
        sent.len()
    );
    if !tampered {
        assert_eq!(read.len(), sent.len(), "an untouched stream lost bytes");
        assert_eq!(failed, None, "an untouched stream failed");
    }
}

/// Reads everything `ours` gives until it waits for more bytes or the
/// stream ends, records a failure, and checks that a failed session stays
/// failed.
fn receive(ours: &mut NoiseStream<Pipe>, read: &mut Vec<u8>, failed: &mut Option<String>) {
    let mut buffer = [0u8; 4096];
    loop {
        let Some(outcome) = poll_a_few(ours.read(&mut buffer)) else {
            return;
        };
        match outcome {
            Ok(0) => return,
            Ok(n) => {
                assert!(failed.is_none(), "read after the session failed");
                read.extend_from_slice(&buffer[..n]);
            }
            Err(error) => {
                if failed.is_none() {
                    let reason = TransportError::from_io(&error).map(TransportError::reason);
                    assert!(
                        matches!(reason, Some("bad_ciphertext"))
                            || error.kind() == io::ErrorKind::UnexpectedEof,
                        "an unexpected transport error: {error}"
                    );
                }
                *failed = Some(error.to_string());
                return;
            }
        }
    }
}
