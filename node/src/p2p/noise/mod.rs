//! The secure transport under every peer connection. A connection opens
//! with a Noise XX handshake (`Noise_XX_25519_ChaChaPoly_SHA256`, from the
//! `snow` crate) in which each side's ed25519 node key signs its X25519
//! static key (`handshake`), then carries the frame layer's byte stream in
//! Noise transport messages (`NoiseStream`). A peer's node id is only ever
//! learned here, from a signature over the static key that the Noise
//! handshake just proved the peer holds, so everything above this layer
//! talks to an authenticated, encrypted session. There is no plaintext
//! mode: a peer that does not open with this handshake is refused.

mod handshake;
mod stream;
#[cfg(test)]
mod tests;

pub use handshake::{handshake, LocalIdentity, Role, NOISE_PARAMS, PROLOGUE};
pub use stream::{NoiseStream, MAX_MESSAGES, MAX_PLAINTEXT, REKEY_INTERVAL};

use std::io;

/// Why a secure session could not be set up or went wrong. None of these
/// bans the peer: the bytes could have been changed by anyone on the
/// path, and banning for them would let that party cut us off from honest
/// neighbours. The connection is closed and counted instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error(
        "peer does not speak the Noise handshake of protocol v3 (its first message announced \
         {0} bytes): an older plaintext node, or not a gossip-ledger node"
    )]
    NotNoise(usize),
    #[error("noise handshake failed: {0}")]
    Handshake(String),
    #[error("peer's identity proof is invalid: {0}")]
    Identity(&'static str),
    #[error("a noise transport message does not authenticate (corrupted or forged ciphertext)")]
    Decrypt,
    #[error("the session used up its message budget of {0}; reconnect")]
    Exhausted(u64),
}

impl TransportError {
    /// Short label for metrics (`p2p_disconnects_total{reason=...}`) and
    /// logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TransportError::Io(_) => "closed",
            TransportError::NotNoise(_) => "not_noise",
            TransportError::Handshake(_) => "noise_handshake_failed",
            TransportError::Identity(_) => "bad_identity",
            TransportError::Decrypt => "bad_ciphertext",
            TransportError::Exhausted(_) => "session_exhausted",
        }
    }

    /// The error as the `io::Error` a `NoiseStream` returns, so it passes
    /// through the Tokio I/O traits and can be told apart afterwards
    /// (`TransportError::from_io`).
    pub fn into_io(self) -> io::Error {
        match self {
            TransportError::Io(error) => error,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// The transport failure inside an I/O error, if it is one.
    pub fn from_io(error: &io::Error) -> Option<&TransportError> {
        error.get_ref()?.downcast_ref::<TransportError>()
    }
}
