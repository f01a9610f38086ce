//! `Connection`: one byte stream to a peer, split into a message reader and
//! a frame writer, counting every message in and out by kind. The stream is
//! any `Transport`: in the node always a `noise::NoiseStream` over TCP, so
//! the layers above only ever see `Message`s of an authenticated session.

use super::codec::{encode_message, CodecError, FrameCodec, MessageCodec};
use super::message::Message;
use crate::metrics::Metrics;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{FramedRead, FramedWrite};

/// A bidirectional byte stream to a peer (a `NoiseStream` in the node).
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// Counter names (without the `ledger_` prefix).
pub const RECEIVED_METRIC: &str = "p2p_messages_received_total";
pub const SENT_METRIC: &str = "p2p_messages_sent_total";
/// Payload bytes of the messages counted above, by kind: what relaying a
/// block costs, and what compact blocks save.
pub const RECEIVED_BYTES_METRIC: &str = "p2p_bytes_received_total";
pub const SENT_BYTES_METRIC: &str = "p2p_bytes_sent_total";

/// The reading half: yields decoded, size-checked messages.
pub struct ConnectionReader<T: Transport> {
    frames: FramedRead<ReadHalf<T>, MessageCodec>,
    metrics: Metrics,
}

/// The writing half: sends pre-encoded message payloads.
pub struct ConnectionWriter<T: Transport> {
    frames: FramedWrite<WriteHalf<T>, FrameCodec>,
    metrics: Metrics,
}

/// Splits a stream into its reader and writer. Reading and writing then
/// proceed independently, so a peer that stops reading can never stop us
/// from reading it (and the other way round).
pub fn split<T: Transport>(
    stream: T,
    max_frame: usize,
    metrics: Metrics,
) -> (ConnectionReader<T>, ConnectionWriter<T>) {
    let (read, write) = tokio::io::split(stream);
    (
        ConnectionReader {
            frames: FramedRead::new(read, MessageCodec::new(max_frame)),
            metrics: metrics.clone(),
        },
        ConnectionWriter {
            frames: FramedWrite::new(write, FrameCodec::new(max_frame)),
            metrics,
        },
    )
}

impl<T: Transport> ConnectionReader<T> {
    /// Changes the largest frame accepted from now on.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.frames.decoder_mut().set_max_frame(max_frame);
    }

    /// The next message; `Ok(None)` when the peer closed the stream. Cancel
    /// safe: a message is either returned whole or stays buffered.
    pub async fn read_message(&mut self) -> Result<Option<Message>, CodecError> {
        Ok(self.read_sized().await?.map(|(message, _)| message))
    }

    /// `read_message` with the frame's encoded size. Cancel safe too.
    pub async fn read_sized(&mut self) -> Result<Option<(Message, usize)>, CodecError> {
        match self.frames.next().await {
            None => Ok(None),
            Some(Err(error)) => Err(error),
            Some(Ok((message, len))) => {
                let kind = [("kind", message.kind())];
                self.metrics.inc(RECEIVED_METRIC, &kind);
                self.metrics.add(RECEIVED_BYTES_METRIC, &kind, len as u64);
                Ok(Some((message, len)))
            }
        }
    }
}

impl<T: Transport> ConnectionWriter<T> {
    /// Encodes and sends one message, flushing it.
    pub async fn write_message(&mut self, message: &Message) -> Result<(), CodecError> {
        self.feed(message.kind(), encode_message(message)).await?;
        self.flush().await
    }

    /// Queues an already encoded message without flushing, so a burst of
    /// messages leaves in as few writes as possible.
    pub async fn feed(&mut self, kind: &'static str, payload: Bytes) -> Result<(), CodecError> {
        let len = payload.len() as u64;
        self.frames.feed(payload).await?;
        self.metrics.inc(SENT_METRIC, &[("kind", kind)]);
        self.metrics.add(SENT_BYTES_METRIC, &[("kind", kind)], len);
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), CodecError> {
        self.frames.flush().await
    }

    /// Flushes and shuts the stream down for writing.
    pub async fn close(&mut self) -> Result<(), CodecError> {
        self.frames.close().await
    }
}
