//! The Noise XX handshake and the identity binding. Three messages, each a
//! 2-byte big-endian length and a Noise handshake message:
//!
//! ```text
//! -> e                                  (initiator: 32 bytes)
//! <- e, ee, s, es, payload(responder)   (192 bytes)
//! -> s, se, payload(initiator)          (160 bytes)
//! ```
//!
//! Each payload is the sender's ed25519 node id and its signature over
//! `IDENTITY_DOMAIN || X25519 static public key`. Both payloads travel
//! encrypted, after the sender's static key is mixed in, so the receiver
//! checks the signature against the static key this very handshake proved
//! the sender holds (a DH with it authenticated the payload). A relay that
//! substitutes its own static key cannot produce the victim's signature
//! over it, and one that forwards the victim's static key cannot finish the
//! DH. The payload sizes are fixed, so every length is checked against the
//! expected size (and the 1 KiB pre-handshake cap) before it is read.

use super::stream::NoiseStream;
use super::TransportError;
use crate::p2p::link::HANDSHAKE_MAX_FRAME;
use ledger::{PublicKey, SecretKey, Signature};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The Noise protocol name. SHA-256 rather than BLAKE2s: the node already
/// builds and trusts `sha2` (hashes, Merkle roots, ed25519 via SHA-512's
/// sibling), it runs on the SHA extensions of current x86 and ARM cores,
/// and the hash only works during the handshake, so its speed does not
/// show in the transport's cost.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// Mixed into the handshake hash by both sides: a node of another protocol
/// version fails the handshake instead of misreading what follows.
pub const PROLOGUE: &[u8] = b"gossip-ledger p2p v3";
/// What the node key signs, before the X25519 static public key.
const IDENTITY_DOMAIN: &[u8] = b"gossip-ledger noise static key v1:";
const KEY_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
const PAYLOAD_BYTES: usize = KEY_BYTES + 64;
const MESSAGE_1_BYTES: usize = KEY_BYTES;
const MESSAGE_2_BYTES: usize = KEY_BYTES + (KEY_BYTES + TAG_BYTES) + PAYLOAD_BYTES + TAG_BYTES;
const MESSAGE_3_BYTES: usize = (KEY_BYTES + TAG_BYTES) + PAYLOAD_BYTES + TAG_BYTES;

/// Which side of the handshake we play: the dialer initiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// This node's side of every handshake: an X25519 static key made at start
/// (it never leaves the process, and the node key vouches for it) and the
/// signed payload that proves which node holds it.
pub struct LocalIdentity {
    static_private: Vec<u8>,
    payload: [u8; PAYLOAD_BYTES],
    node_id: PublicKey,
}

impl LocalIdentity {
    /// A fresh static key signed by `node_key`.
    pub fn new(node_key: &SecretKey) -> LocalIdentity {
        let keypair = builder()
            .generate_keypair()
            .expect("the built-in resolver generates X25519 keys");
        let node_id = node_key.public_key();
        let signature = node_key.sign(&identity_statement(&keypair.public));
        LocalIdentity::from_parts(keypair.private, node_id, signature)
    }

    /// An identity with a given static key and payload: how the tests build
    /// forged proofs (a signature over another key, another node's id).
    pub fn from_parts(
        static_private: Vec<u8>,
        node_id: PublicKey,
        signature: Signature,
    ) -> LocalIdentity {
        let mut payload = [0u8; PAYLOAD_BYTES];
        payload[..KEY_BYTES].copy_from_slice(node_id.as_bytes());
        payload[KEY_BYTES..].copy_from_slice(&signature.0);
        LocalIdentity {
            static_private,
            payload,
            node_id,
        }
    }

    /// A fresh X25519 key pair `(private, public)`, for forged identities.
    pub fn generate_static() -> (Vec<u8>, Vec<u8>) {
        let keypair = builder()
            .generate_keypair()
            .expect("the built-in resolver generates X25519 keys");
        (keypair.private, keypair.public)
    }

    /// The node id this identity claims.
    pub fn node_id(&self) -> PublicKey {
        self.node_id
    }
}

/// The bytes the node key signs for a static key.
pub fn identity_statement(static_public: &[u8]) -> Vec<u8> {
    let mut statement = Vec::with_capacity(IDENTITY_DOMAIN.len() + static_public.len());
    statement.extend_from_slice(IDENTITY_DOMAIN);
    statement.extend_from_slice(static_public);
    statement
}

fn builder() -> snow::Builder<'static> {
    snow::Builder::new(NOISE_PARAMS.parse().expect("valid Noise protocol name"))
}

fn noise_error(error: snow::Error) -> TransportError {
    TransportError::Handshake(error.to_string())
}

/// Runs the handshake on `stream` and returns the secured stream and the
/// peer's proven node id. Cancel it (drop the future) to give up; the
/// caller's handshake deadline covers a peer that stalls.
pub async fn handshake<S>(
    mut stream: S,
    role: Role,
    local: &LocalIdentity,
) -> Result<(NoiseStream<S>, PublicKey), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let builder = builder()
        .local_private_key(&local.static_private)
        .and_then(|builder| builder.prologue(PROLOGUE))
        .map_err(noise_error)?;
    let mut state = match role {
        Role::Initiator => builder.build_initiator(),
        Role::Responder => builder.build_responder(),
    }
    .map_err(noise_error)?;
    let mut message = [0u8; HANDSHAKE_MAX_FRAME];
    let mut payload = [0u8; HANDSHAKE_MAX_FRAME];
    let peer = match role {
        Role::Initiator => {
            let len = state
                .write_message(&[], &mut message)
                .map_err(noise_error)?;
            send(&mut stream, &message[..len]).await?;
            let len = receive(&mut stream, &mut message, MESSAGE_2_BYTES).await?;
            let read = state
                .read_message(&message[..len], &mut payload)
                .map_err(noise_error)?;
            let peer = verify_identity(&state, &payload[..read])?;
            let len = state
                .write_message(&local.payload, &mut message)
                .map_err(noise_error)?;
            send(&mut stream, &message[..len]).await?;
            peer
        }
        Role::Responder => {
            let len = receive(&mut stream, &mut message, MESSAGE_1_BYTES).await?;
            let read = state
                .read_message(&message[..len], &mut payload)
                .map_err(noise_error)?;
            if read != 0 {
                return Err(TransportError::Handshake(
                    "first message carries a payload".into(),
                ));
            }
            let len = state
                .write_message(&local.payload, &mut message)
                .map_err(noise_error)?;
            send(&mut stream, &message[..len]).await?;
            let len = receive(&mut stream, &mut message, MESSAGE_3_BYTES).await?;
            let read = state
                .read_message(&message[..len], &mut payload)
                .map_err(noise_error)?;
            verify_identity(&state, &payload[..read])?
        }
    };
    let transport = state.into_transport_mode().map_err(noise_error)?;
    Ok((NoiseStream::new(stream, transport), peer))
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> Result<(), TransportError> {
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads one handshake message of exactly `expected` bytes into `buffer`.
/// The length is judged before a byte of the body is read: our handshake
/// messages have fixed sizes, so any other length is not our protocol.
async fn receive<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut [u8; HANDSHAKE_MAX_FRAME],
    expected: usize,
) -> Result<usize, TransportError> {
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let len = u16::from_be_bytes(prefix) as usize;
    if len != expected {
        return Err(TransportError::NotNoise(len));
    }
    stream.read_exact(&mut buffer[..len]).await?;
    Ok(len)
}

/// Checks the peer's payload against the static key the handshake proved
/// it holds; returns its node id.
fn verify_identity(
    state: &snow::HandshakeState,
    payload: &[u8],
) -> Result<PublicKey, TransportError> {
    if payload.len() != PAYLOAD_BYTES {
        return Err(TransportError::Identity(
            "payload is not a node id and signature",
        ));
    }
    let static_public = state
        .get_remote_static()
        .ok_or(TransportError::Identity("no static key in the handshake"))?;
    let mut node_id = [0u8; KEY_BYTES];
    node_id.copy_from_slice(&payload[..KEY_BYTES]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&payload[KEY_BYTES..]);
    let node_id = PublicKey(node_id);
    node_id
        .verify(&identity_statement(static_public), &Signature(signature))
        .map_err(|_| TransportError::Identity("signature over the static key does not verify"))?;
    Ok(node_id)
}
