//! `NoiseStream`: a byte stream carried in Noise transport messages, each a
//! 2-byte big-endian length and at most 65,535 bytes of ciphertext. It
//! implements the Tokio I/O traits, so the frame layer above it is the same
//! code that once ran on plain TCP: a frame larger than one Noise message
//! simply spans several, and the frame codec reassembles it under its own
//! cap. The stream never holds more than one Noise message of ciphertext
//! and one of plaintext on the read side (a length prefix cannot ask for
//! more than 64 KiB), and about `WRITE_HIGH_WATER` on the write side.
//!
//! Both directions rekey (Noise's `REKEY`) every `REKEY_INTERVAL` messages,
//! at the same message count on both ends, and a session that reaches
//! `MAX_MESSAGES` in either direction fails (the link closes and the node
//! reconnects), far below the 2^64 nonces a key may use.

use super::TransportError;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::bytes::{Buf, BytesMut};

/// The largest Noise message.
const MAX_MESSAGE: usize = 65_535;
const TAG_BYTES: usize = 16;
const LENGTH_BYTES: usize = 2;
/// The most plaintext one Noise message carries.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_BYTES;
/// Messages per key before each direction rekeys.
pub const REKEY_INTERVAL: u64 = 1 << 16;
/// Messages per direction before the session is given up.
pub const MAX_MESSAGES: u64 = 1 << 60;
/// Encrypted bytes buffered before a write waits for the socket.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Bytes asked of the socket per read when nothing larger is due.
const READ_CHUNK: usize = 16 * 1024;

/// An established Noise session over `S`.
pub struct NoiseStream<S> {
    inner: S,
    session: snow::TransportState,
    rekey_interval: u64,
    max_messages: u64,
    /// Ciphertext read from the socket and not yet decrypted.
    incoming: BytesMut,
    /// Where socket reads land before they join `incoming`.
    scratch: Vec<u8>,
    /// Decrypted bytes not yet handed out: `plain[plain_start..plain_end]`.
    plain: Vec<u8>,
    plain_start: usize,
    plain_end: usize,
    /// Ciphertext not yet written: `outgoing[out_start..]`.
    outgoing: Vec<u8>,
    out_start: usize,
    /// Set once the session failed; every later call fails the same way.
    failed: Option<&'static str>,
}

impl<S> NoiseStream<S> {
    pub(super) fn new(inner: S, session: snow::TransportState) -> NoiseStream<S> {
        NoiseStream {
            inner,
            session,
            rekey_interval: REKEY_INTERVAL,
            max_messages: MAX_MESSAGES,
            incoming: BytesMut::new(),
            scratch: Vec::new(),
            plain: Vec::new(),
            plain_start: 0,
            plain_end: 0,
            outgoing: Vec::new(),
            out_start: 0,
            failed: None,
        }
    }

    /// Changes the rekey interval and message budget (both ends must agree
    /// on the interval): for tests that cross them in a few messages.
    pub fn set_limits(&mut self, rekey_interval: u64, max_messages: u64) {
        self.rekey_interval = rekey_interval.max(1);
        self.max_messages = max_messages;
    }

    /// The stream underneath (e.g. to ask a socket its address).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Messages sent and received so far.
    pub fn message_counts(&self) -> (u64, u64) {
        (self.session.sending_nonce(), self.session.receiving_nonce())
    }

    fn fail(&mut self, error: TransportError) -> io::Error {
        self.failed = Some(error.reason());
        error.into_io()
    }

    fn failure(&self) -> Option<io::Error> {
        self.failed.map(|reason| {
            let error = match reason {
                "bad_ciphertext" => TransportError::Decrypt,
                "session_exhausted" => TransportError::Exhausted(self.max_messages),
                other => TransportError::Handshake(other.to_string()),
            };
            error.into_io()
        })
    }

    /// Decrypts the first whole message in `incoming`, if there is one.
    /// `Ok(false)`: more ciphertext is needed (and room for it reserved).
    fn decrypt_next(&mut self) -> Result<bool, TransportError> {
        if self.incoming.len() < LENGTH_BYTES {
            return Ok(false);
        }
        let len = u16::from_be_bytes([self.incoming[0], self.incoming[1]]) as usize;
        if len < TAG_BYTES {
            return Err(TransportError::Decrypt);
        }
        if self.incoming.len() < LENGTH_BYTES + len {
            // At most one Noise message: the prefix cannot ask for more.
            self.incoming
                .reserve(LENGTH_BYTES + len - self.incoming.len());
            return Ok(false);
        }
        if self.session.receiving_nonce() >= self.max_messages {
            return Err(TransportError::Exhausted(self.max_messages));
        }
        if self.plain.len() < len {
            self.plain.resize(len, 0);
        }
        let message = &self.incoming[LENGTH_BYTES..LENGTH_BYTES + len];
        let read = self
            .session
            .read_message(message, &mut self.plain)
            .map_err(|_| TransportError::Decrypt)?;
        self.incoming.advance(LENGTH_BYTES + len);
        if self
            .session
            .receiving_nonce()
            .is_multiple_of(self.rekey_interval)
        {
            self.session.rekey_incoming();
        }
        self.plain_start = 0;
        self.plain_end = read;
        Ok(true)
    }

    /// Encrypts one message of `plaintext` (at most `MAX_PLAINTEXT`) onto
    /// `outgoing`.
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<(), TransportError> {
        if self.session.sending_nonce() >= self.max_messages {
            return Err(TransportError::Exhausted(self.max_messages));
        }
        let start = self.outgoing.len();
        self.outgoing
            .resize(start + LENGTH_BYTES + plaintext.len() + TAG_BYTES, 0);
        let written = self
            .session
            .write_message(plaintext, &mut self.outgoing[start + LENGTH_BYTES..])
            .map_err(|error| TransportError::Handshake(error.to_string()))?;
        self.outgoing[start..start + LENGTH_BYTES].copy_from_slice(&(written as u16).to_be_bytes());
        self.outgoing.truncate(start + LENGTH_BYTES + written);
        if self
            .session
            .sending_nonce()
            .is_multiple_of(self.rekey_interval)
        {
            self.session.rekey_outgoing();
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> NoiseStream<S> {
    /// Writes all buffered ciphertext to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_start < self.outgoing.len() {
            let written =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.outgoing[self.out_start..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_start += written;
        }
        self.outgoing.clear();
        self.out_start = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoiseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.failure() {
            return Poll::Ready(Err(error));
        }
        loop {
            if this.plain_start < this.plain_end {
                let n = buf.remaining().min(this.plain_end - this.plain_start);
                buf.put_slice(&this.plain[this.plain_start..this.plain_start + n]);
                this.plain_start += n;
                return Poll::Ready(Ok(()));
            }
            match this.decrypt_next() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => return Poll::Ready(Err(this.fail(error))),
            }
            if this.scratch.is_empty() {
                this.scratch = vec![0u8; READ_CHUNK];
            }
            let mut landing = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut landing))?;
            let read = landing.filled().len();
            this.incoming.extend_from_slice(landing.filled());
            if read == 0 {
                if this.incoming.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a noise message",
                )));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoiseStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.failure() {
            return Poll::Ready(Err(error));
        }
        if this.outgoing.len() - this.out_start >= WRITE_HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let chunk = buf.len().min(MAX_PLAINTEXT);
        if let Err(error) = this.encrypt(&buf[..chunk]) {
            return Poll::Ready(Err(this.fail(error)));
        }
        Poll::Ready(Ok(chunk))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
