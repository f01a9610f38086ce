//! The secure transport on in-memory pipes: round trips across Noise
//! message boundaries, rekeying, and every way a handshake or a session
//! can be tampered with.

use super::handshake::identity_statement;
use super::*;
use ledger::SecretKey;
use std::time::Duration;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

async fn pair(
    initiator: &LocalIdentity,
    responder: &LocalIdentity,
) -> (
    Result<(NoiseStream<DuplexStream>, ledger::PublicKey), TransportError>,
    Result<(NoiseStream<DuplexStream>, ledger::PublicKey), TransportError>,
) {
    let (a, b) = duplex(1 << 20);
    tokio::join!(
        handshake(a, Role::Initiator, initiator),
        handshake(b, Role::Responder, responder)
    )
}

#[tokio::test]
async fn both_sides_learn_the_other_node_id_and_large_writes_round_trip() {
    let (key_a, key_b) = (SecretKey::generate(), SecretKey::generate());
    let (a, b) = pair(&LocalIdentity::new(&key_a), &LocalIdentity::new(&key_b)).await;
    let (mut a, seen_by_a) = a.expect("initiator completes");
    let (mut b, seen_by_b) = b.expect("responder completes");
    assert_eq!(seen_by_a, key_b.public_key());
    assert_eq!(seen_by_b, key_a.public_key());
    // 300 KB spans five Noise messages and is reassembled byte for byte.
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.flush().await.unwrap();
            a
        })
    };
    let mut received = vec![0u8; sent.len()];
    b.read_exact(&mut received).await.unwrap();
    assert_eq!(received, sent);
    let a = writer.await.unwrap();
    let (sent_messages, _) = a.message_counts();
    assert_eq!(sent_messages, sent.len().div_ceil(MAX_PLAINTEXT) as u64);
}

#[tokio::test]
async fn rekeying_keeps_both_directions_in_step() {
    let (a, b) = pair(
        &LocalIdentity::new(&SecretKey::generate()),
        &LocalIdentity::new(&SecretKey::generate()),
    )
    .await;
    let (mut a, mut b) = (a.unwrap().0, b.unwrap().0);
    a.set_limits(3, MAX_MESSAGES);
    b.set_limits(3, MAX_MESSAGES);
    for round in 0..10u8 {
        a.write_all(&[round; 100]).await.unwrap();
        a.flush().await.unwrap();
        let mut got = [0u8; 100];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [round; 100]);
        b.write_all(&[round + 1; 10]).await.unwrap();
        b.flush().await.unwrap();
        let mut back = [0u8; 10];
        a.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [round + 1; 10]);
    }
    // Only one side rekeying desynchronises the keys: the next message fails.
    a.set_limits(1, MAX_MESSAGES);
    a.write_all(b"x").await.unwrap();
    a.flush().await.unwrap();
    a.write_all(b"y").await.unwrap();
    a.flush().await.unwrap();
    let mut got = [0u8; 2];
    let error = b.read_exact(&mut got).await.expect_err("keys differ");
    assert_eq!(
        TransportError::from_io(&error).map(TransportError::reason),
        Some("bad_ciphertext")
    );
}

#[tokio::test]
async fn a_session_stops_at_its_message_budget() {
    let (a, b) = pair(
        &LocalIdentity::new(&SecretKey::generate()),
        &LocalIdentity::new(&SecretKey::generate()),
    )
    .await;
    let (mut a, _b) = (a.unwrap().0, b.unwrap().0);
    a.set_limits(REKEY_INTERVAL, 2);
    a.write_all(b"1").await.unwrap();
    a.write_all(b"2").await.unwrap();
    let error = a.write_all(b"3").await.expect_err("budget used up");
    assert_eq!(
        TransportError::from_io(&error).map(TransportError::reason),
        Some("session_exhausted")
    );
}

/// Runs the responder side against hand-fed bytes and returns its outcome.
async fn responder_outcome(bytes: Vec<u8>) -> TransportError {
    let (mut ours, theirs) = duplex(1 << 16);
    let local = LocalIdentity::new(&SecretKey::generate());
    let responder = tokio::spawn(async move {
        handshake(theirs, Role::Responder, &local)
            .await
            .map(|_| ())
            .expect_err("must fail")
    });
    ours.write_all(&bytes).await.unwrap();
    // Read whatever the responder answers, then hang up.
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), ours.read(&mut sink)).await;
    drop(ours);
    responder.await.unwrap()
}

#[tokio::test]
async fn a_plaintext_hello_is_not_noise() {
    // What a protocol v2 node sends first: a little-endian length, then a
    // `Hello` (kind 0) in the clear.
    let mut old_hello = 134u32.to_le_bytes().to_vec();
    old_hello.extend_from_slice(&[0, 0, 0, 0]);
    old_hello.extend_from_slice(&[7; 130]);
    let error = responder_outcome(old_hello).await;
    assert_eq!(error.reason(), "not_noise", "{error}");
}

/// Records the three handshake messages of a session between two parties.
async fn record_session(
    initiator: &LocalIdentity,
    responder: &LocalIdentity,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (a, relay_a) = duplex(1 << 16);
    let (relay_b, b) = duplex(1 << 16);
    let (mut relay_a, mut relay_b) = (relay_a, relay_b);
    let relay = async {
        let mut messages = Vec::new();
        for (from_a, len) in [(true, 34), (false, 194), (true, 162)] {
            let mut message = vec![0u8; len];
            if from_a {
                relay_a.read_exact(&mut message).await.unwrap();
                relay_b.write_all(&message).await.unwrap();
            } else {
                relay_b.read_exact(&mut message).await.unwrap();
                relay_a.write_all(&message).await.unwrap();
            }
            messages.push(message);
        }
        messages
    };
    let (outcome_a, outcome_b, messages) = tokio::join!(
        handshake(a, Role::Initiator, initiator),
        handshake(b, Role::Responder, responder),
        relay
    );
    assert!(outcome_a.is_ok() && outcome_b.is_ok());
    let mut messages = messages.into_iter();
    (
        messages.next().unwrap(),
        messages.next().unwrap(),
        messages.next().unwrap(),
    )
}

#[tokio::test]
async fn a_replayed_handshake_does_not_complete() {
    let initiator = LocalIdentity::new(&SecretKey::generate());
    let responder = LocalIdentity::new(&SecretKey::generate());
    let (first, _, third) = record_session(&initiator, &responder).await;
    // Replaying the initiator's messages to the same responder: it answers
    // with a fresh ephemeral key, so the old third message cannot decrypt.
    let (mut ours, theirs) = duplex(1 << 16);
    let outcome = tokio::spawn(async move {
        handshake(theirs, Role::Responder, &responder)
            .await
            .map(|_| ())
    });
    ours.write_all(&first).await.unwrap();
    let mut second = vec![0u8; 194];
    ours.read_exact(&mut second).await.unwrap();
    ours.write_all(&third).await.unwrap();
    let error = outcome.await.unwrap().expect_err("replay refused");
    assert_eq!(error.reason(), "noise_handshake_failed", "{error}");
}

#[tokio::test]
async fn a_tampered_static_key_fails_the_handshake() {
    let initiator = LocalIdentity::new(&SecretKey::generate());
    let responder = LocalIdentity::new(&SecretKey::generate());
    let (first, second, _) = record_session(&initiator, &responder).await;
    assert_eq!(first.len(), 34);
    // Flip a bit of the responder's encrypted static key (after the length
    // and its 32-byte ephemeral key) on the way to a fresh initiator.
    let (ours, theirs) = duplex(1 << 16);
    let mut ours = ours;
    let outcome = tokio::spawn(async move {
        handshake(theirs, Role::Initiator, &initiator)
            .await
            .map(|_| ())
    });
    let mut fresh_first = vec![0u8; 34];
    ours.read_exact(&mut fresh_first).await.unwrap();
    let mut tampered = second.clone();
    tampered[2 + 32 + 5] ^= 0x10;
    ours.write_all(&tampered).await.unwrap();
    let error = outcome.await.unwrap().expect_err("tampering detected");
    assert_eq!(error.reason(), "noise_handshake_failed", "{error}");
}

#[tokio::test]
async fn a_signature_over_another_static_key_is_refused() {
    let impostor_key = SecretKey::generate();
    let (private, _public) = LocalIdentity::generate_static();
    let (_, other_public) = LocalIdentity::generate_static();
    // The node key signed some static key, but not the one used.
    let forged = LocalIdentity::from_parts(
        private,
        impostor_key.public_key(),
        impostor_key.sign(&identity_statement(&other_public)),
    );
    let honest = LocalIdentity::new(&SecretKey::generate());
    let (a, b) = pair(&forged, &honest).await;
    assert_eq!(b.map(|_| ()).expect_err("refused").reason(), "bad_identity");
    drop(a);
    // A valid signature by another node over this static key, presented
    // under a third node's id.
    let victim = SecretKey::generate();
    let (private, public) = LocalIdentity::generate_static();
    let stolen = LocalIdentity::from_parts(
        private,
        SecretKey::generate().public_key(),
        victim.sign(&identity_statement(&public)),
    );
    let (a, _b) = pair(&LocalIdentity::new(&SecretKey::generate()), &stolen).await;
    assert_eq!(a.map(|_| ()).expect_err("refused").reason(), "bad_identity");
}

#[tokio::test]
async fn a_flipped_bit_in_a_transport_message_is_detected() {
    let (a, relay_a) = duplex(1 << 16);
    let (relay_b, b) = duplex(1 << 16);
    let (a_read, a_write) = tokio::io::split(relay_a);
    let (b_read, b_write) = tokio::io::split(relay_b);
    // Initiator to responder: handshake messages 1 and 3 (34 + 162 bytes),
    // then transport messages; the flip lands inside the second one, after
    // the first ("first": 2 + 5 + 16 bytes).
    let flip_at = 34 + 162 + (2 + 5 + 16) + 2 + 3;
    let forward = tokio::spawn(async move {
        tokio::join!(
            copy_split(a_read, b_write, Some(flip_at)),
            copy_split(b_read, a_write, None)
        );
    });
    let initiator = LocalIdentity::new(&SecretKey::generate());
    let responder = LocalIdentity::new(&SecretKey::generate());
    let (left, right) = tokio::join!(
        handshake(a, Role::Initiator, &initiator),
        handshake(b, Role::Responder, &responder)
    );
    let (mut left, mut right) = (left.unwrap().0, right.unwrap().0);
    left.write_all(b"first").await.unwrap();
    left.flush().await.unwrap();
    let mut got = [0u8; 5];
    right.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"first");
    left.write_all(b"second").await.unwrap();
    left.flush().await.unwrap();
    let mut got = [0u8; 6];
    let error = right.read_exact(&mut got).await.expect_err("flip detected");
    assert_eq!(
        TransportError::from_io(&error).map(TransportError::reason),
        Some("bad_ciphertext")
    );
    // The session stays failed.
    let error = right.read(&mut got).await.expect_err("still failed");
    assert!(TransportError::from_io(&error).is_some());
    forward.abort();
}

async fn copy_split<R, W>(mut from: R, mut to: W, flip_at: Option<usize>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut seen = 0usize;
    let mut buffer = [0u8; 4096];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        if let Some(at) = flip_at.filter(|at| (seen..seen + read).contains(at)) {
            buffer[at - seen] ^= 0x01;
        }
        seen += read;
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
