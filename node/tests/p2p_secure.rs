//! The secure transport between real nodes on loopback: a relay in the
//! middle that terminates both sides with its own keys, a relay that flips
//! one bit, a peer that speaks the old plaintext protocol, and one that
//! stalls in the Noise handshake. Each must end in a closed link with a
//! metric, no node believing it talks to another node than it does, and no
//! ban where the bytes could have been changed by someone on the path.

use ledger::SecretKey;
use node::p2p::noise::{self, LocalIdentity, Role};
use node::test_utils::p2p_net::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn disconnects(node: &TestNode, reason: &str) -> u64 {
    node.metrics
        .counter("p2p_disconnects_total", &[("reason", reason)])
}

async fn start(dir: &tempfile::TempDir, peers: Vec<String>) -> TestNode {
    TestNode::start(
        dir.path(),
        NodeOptions {
            peers,
            ..NodeOptions::default()
        },
    )
    .await
}

/// A relay that accepts on its own port, terminates the dialer's Noise
/// session as `toward_dialer`, opens its own to `target` as
/// `toward_target`, and pipes the decrypted streams into each other, for
/// as many connections as come.
async fn terminating_relay(
    target: SocketAddr,
    toward_dialer: LocalIdentity,
    toward_target: LocalIdentity,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let identities = std::sync::Arc::new((toward_dialer, toward_target));
    let task = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let identities = identities.clone();
            tokio::spawn(async move {
                // Both sides at once, as a relay in a hurry would.
                let upstream = async {
                    let outbound = TcpStream::connect(target).await?;
                    noise::handshake(outbound, Role::Initiator, &identities.1).await
                };
                let (dialer, upstream) = tokio::join!(
                    noise::handshake(inbound, Role::Responder, &identities.0),
                    upstream
                );
                let (Ok((mut dialer, _)), Ok((mut upstream, _))) = (dialer, upstream) else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut dialer, &mut upstream).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_its_own_keys_cannot_pass_as_either_node() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let b = start(&dirs[1], Vec::new()).await;
    let relay_key = SecretKey::generate();
    let (relay, task) = terminating_relay(
        b.socket_addr(),
        LocalIdentity::new(&relay_key),
        LocalIdentity::new(&relay_key),
    )
    .await;
    // A thinks it dials B (the relay is the only address it has for it).
    let a = start(&dirs[0], vec![relay.to_string()]).await;
    // Both Noise sessions complete (with the relay), but each node learns
    // the relay's node id, and B's and A's hellos name another node.
    wait_for("both nodes catch the relayed hello", LONG, || {
        a.bans("bad_handshake") >= 1 && b.bans("bad_handshake") >= 1
    })
    .await;
    assert!(!a.has_peer(&b) && !b.has_peer(&a));
    assert!(a.p2p.is_node_banned(&relay_key.public_key()));
    assert!(b.p2p.is_node_banned(&relay_key.public_key()));
    assert!(!a.p2p.is_node_banned(&b.key.public_key()));
    assert!(!b.p2p.is_node_banned(&a.key.public_key()));
    task.abort();
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_claiming_the_other_node_id_fails_the_identity_proof() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let b = start(&dirs[1], Vec::new()).await;
    let a_key = SecretKey::generate();
    let relay_key = SecretKey::generate();
    // Toward A it claims B's node id, toward B A's, signing with its own
    // key: the only signatures it can make.
    let claim = |claimed: ledger::PublicKey| {
        let (private, public) = LocalIdentity::generate_static();
        let signature = relay_key.sign(&noise_statement(&public));
        LocalIdentity::from_parts(private, claimed, signature)
    };
    let (relay, task) = terminating_relay(
        b.socket_addr(),
        claim(b.key.public_key()),
        claim(a_key.public_key()),
    )
    .await;
    let a = TestNode::start(
        dirs[0].path(),
        NodeOptions {
            peers: vec![relay.to_string()],
            key: Some(a_key),
            ..NodeOptions::default()
        },
    )
    .await;
    wait_for("both nodes refuse the forged proof", LONG, || {
        disconnects(&a, "bad_identity") >= 1 && disconnects(&b, "bad_identity") >= 1
    })
    .await;
    assert!(!a.has_peer(&b) && !b.has_peer(&a));
    assert!(a.p2p.peers().is_empty() && b.p2p.peers().is_empty());
    // Anyone on the path could forge this; nobody is banned for it.
    assert_eq!(a.bans("bad_identity") + b.bans("bad_identity"), 0);
    assert!(!a.p2p.is_banned(relay));
    task.abort();
    a.stop().await;
    b.stop().await;
}

/// What a node key signs for a static key (the scheme under test, spelled
/// out here so that a change to it is a visible change to this test).
fn noise_statement(static_public: &[u8]) -> Vec<u8> {
    let mut statement = b"gossip-ledger noise static key v1:".to_vec();
    statement.extend_from_slice(static_public);
    statement
}

/// A transparent TCP relay that flips one bit at byte `flip_at` of the
/// first connection's dialer-to-target stream.
async fn flipping_relay(
    target: SocketAddr,
    flip_at: usize,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut first = true;
        while let Ok((inbound, _)) = listener.accept().await {
            let flip = first.then_some(flip_at);
            first = false;
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                let forward = async {
                    let mut seen = 0usize;
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let read = match in_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => read,
                        };
                        if let Some(at) = flip.filter(|at| (seen..seen + read).contains(at)) {
                            buffer[at - seen] ^= 0x01;
                        }
                        seen += read;
                        if out_write.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                    let _ = out_write.shutdown().await;
                };
                let backward = async {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                    let _ = in_write.shutdown().await;
                };
                tokio::join!(forward, backward);
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_one_ciphertext_closes_the_link_without_a_ban() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let b = start(&dirs[1], Vec::new()).await;
    // Dialer to target: handshake messages 1 and 3 (34 + 162 bytes), then
    // the first transport message (A's hello); flip a bit inside it.
    let (relay, task) = flipping_relay(b.socket_addr(), 34 + 162 + 2 + 10).await;
    let a = start(&dirs[0], vec![relay.to_string()]).await;
    wait_for("B refuses the corrupted message", LONG, || {
        disconnects(&b, "bad_ciphertext") == 1
    })
    .await;
    // The next connection is not tampered with, and nobody was banned.
    wait_for("A reconnects through the relay", LONG, || {
        a.has_peer(&b) && b.has_peer(&a)
    })
    .await;
    assert_eq!(disconnects(&b, "bad_ciphertext"), 1);
    assert!(!b.p2p.is_node_banned(&a.key.public_key()));
    task.abort();
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_peer_is_refused_without_a_ban() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let mut old = TcpStream::connect(setup.node.socket_addr()).await.unwrap();
    // A protocol v2 node opens with a plaintext `Hello` frame: a
    // little-endian length, kind 0, then the hello.
    let mut frame = 134u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0u8; 4]);
    frame.extend_from_slice(&[1u8; 130]);
    old.write_all(&frame).await.unwrap();
    let mut sink = vec![0u8; 4096];
    let closed = tokio::time::timeout(LONG, async {
        loop {
            match old.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "node closes the plaintext connection");
    wait_for("refusal counted", LONG, || {
        disconnects(&setup.node, "not_noise") == 1
    })
    .await;
    let local = old.local_addr().unwrap();
    assert!(!setup.node.p2p.is_banned(local));
    setup.still_serves(0).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_noise_handshake_ends_at_the_handshake_timeout() {
    let mut options = NodeOptions::default();
    options.timing.handshake_timeout = Duration::from_millis(500);
    let setup = setup_with_honest_peer(options).await;
    let mut stalled = TcpStream::connect(setup.node.socket_addr()).await.unwrap();
    // Half of the first handshake message, then nothing.
    stalled.write_all(&[0, 32, 1, 2, 3]).await.unwrap();
    let mut sink = [0u8; 64];
    let closed = tokio::time::timeout(LONG, stalled.read(&mut sink)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {closed:?}"
    );
    wait_for("timeout counted", LONG, || {
        disconnects(&setup.node, "handshake_timeout") == 1
    })
    .await;
    setup.still_serves(0).await;
    setup.stop().await;
}
