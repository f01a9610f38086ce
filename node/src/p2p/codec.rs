//! Framing: bytes on a stream <-> `Message`s. A frame is a 4-byte
//! little-endian length followed by that many bytes of one canonically
//! encoded `Message`. The length is checked against `MAX_FRAME_BYTES`
//! before a single byte of buffer is reserved for it, then the message kind
//! (the first four bytes of the payload) is checked against its own cap
//! before decoding, and decoding itself runs with a limit, so a hostile peer
//! can make us hold at most one capped frame per connection.

use super::message::{max_encoded_len, Message, KINDS, MIN_TX_BYTES};
use ledger::encoding;
use std::io;
use tokio_util::bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The frame cap of a codec built with `Default` (tools and tests). A
/// node's links use their chain's cap instead (`message::max_frame_for`),
/// up to a whole block of 32 MiB.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
const LENGTH_BYTES: usize = 4;

/// Why a frame could not be read or written. Everything except `Io` means
/// the peer sent something no honest implementation sends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty or truncated frame of {0} bytes")]
    Truncated(usize),
    #[error("unknown message kind {0}")]
    UnknownKind(u32),
    #[error("{kind} message of {len} bytes is over its limit of {max} bytes")]
    MessageTooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("undecodable {kind} message: {reason}")]
    Undecodable { kind: &'static str, reason: String },
}

impl CodecError {
    /// True when the peer broke the protocol (as opposed to the connection
    /// failing): such peers are banned.
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(self, CodecError::Io(_))
    }

    /// Short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            CodecError::Io(_) => "io",
            CodecError::FrameTooLarge { .. } | CodecError::MessageTooLarge { .. } => {
                "oversized_frame"
            }
            CodecError::Truncated(_)
            | CodecError::UnknownKind(_)
            | CodecError::Undecodable { .. } => "undecodable_frame",
        }
    }
}

/// Encodes a message into a frame payload (without the length prefix). The
/// result is cheap to clone, so one announcement is encoded once for every
/// peer.
pub fn encode_message(message: &Message) -> Bytes {
    Bytes::from(encoding::encode(message))
}

/// The payload of `Message::Block` for a block given by its canonical
/// encoding (as stored): the message's kind index, then the block, which is
/// exactly `encode_message(&Message::Block(block))` without decoding the
/// block first.
pub fn block_payload(encoded_block: &[u8]) -> Bytes {
    let index = Message::BLOCK_KIND_INDEX as u32;
    let mut payload = BytesMut::with_capacity(4 + encoded_block.len());
    payload.put_slice(&index.to_le_bytes());
    payload.put_slice(encoded_block);
    payload.freeze()
}

/// The payload of `Message::Tx` for `tx`: exactly
/// `encode_message(&Message::Tx(..))` of it, without copying the tx into a
/// message first (every `GetData` for a tx is answered this way).
pub fn tx_payload(tx: &ledger::Transaction) -> Bytes {
    Bytes::from(encoding::encode(&(Message::TX_KIND_INDEX as u32, tx)))
}

/// The payload of `Message::CompactBlock` for `block`, no tx prefilled.
pub fn compact_payload(block: &ledger::Block) -> Bytes {
    encode_message(&Message::CompactBlock(Box::new(
        super::message::CompactBlock::from_block(block),
    )))
}

/// The txid a frame payload announces, when it is exactly an `Inv` of one
/// tx (as gossip sends most of them), without decoding it: for a caller
/// that looks at frames before their turn (the simulator's prefetch).
pub fn single_tx_announcement(payload: &[u8]) -> Option<ledger::TxId> {
    static PREFIX: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let template = encoding::encode(&Message::Inv(vec![super::message::InvItem::Tx(
            ledger::TxId::ZERO,
        )]));
        template[..template.len() - 32].to_vec()
    });
    let txid = payload.strip_prefix(prefix.as_slice())?;
    let bytes: [u8; 32] = txid.try_into().ok()?;
    Some(ledger::TxId(ledger::hash::Hash256(bytes)))
}

/// Decodes one frame payload into a message, enforcing the per-kind caps.
pub fn decode_message(payload: &[u8], max_frame: usize) -> Result<Message, CodecError> {
    if payload.len() < 4 {
        return Err(CodecError::Truncated(payload.len()));
    }
    let index = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let max = max_encoded_len(index, max_frame).ok_or(CodecError::UnknownKind(index))?;
    let kind = KINDS[index as usize];
    if payload.len() > max {
        return Err(CodecError::MessageTooLarge {
            kind,
            len: payload.len(),
            max,
        });
    }
    let message: Message =
        encoding::decode_with_limit(payload, max).map_err(|error| CodecError::Undecodable {
            kind,
            reason: error.to_string(),
        })?;
    // A block of `max_frame` bytes holds at most this many txs: the bound
    // of every per-tx list in compact block messages.
    message
        .check_counts(max_frame / MIN_TX_BYTES)
        .map_err(|reason| CodecError::Undecodable { kind, reason })?;
    Ok(message)
}

/// Length-prefixed frames of raw payload bytes. The writer side of a
/// connection uses it directly with pre-encoded `Bytes`.
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> FrameCodec {
        FrameCodec { max_frame }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(MAX_FRAME_BYTES)
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        if src.len() < LENGTH_BYTES {
            return Ok(None);
        }
        let len = u32::from_le_bytes([src[0], src[1], src[2], src[3]]) as usize;
        // The check comes before any reservation: a 4 GiB prefix costs us
        // four bytes of buffer and a ban, not four gigabytes.
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < LENGTH_BYTES + len {
            src.reserve(LENGTH_BYTES + len - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_BYTES);
        Ok(Some(src.split_to(len)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        if payload.len() > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len: payload.len(),
                max: self.max_frame,
            });
        }
        dst.reserve(LENGTH_BYTES + payload.len());
        dst.put_u32_le(payload.len() as u32);
        dst.extend_from_slice(&payload);
        Ok(())
    }
}

/// Frames decoded all the way to `Message`s: the reader side of a
/// connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageCodec {
    frames: FrameCodec,
}

impl MessageCodec {
    pub fn new(max_frame: usize) -> MessageCodec {
        MessageCodec {
            frames: FrameCodec::new(max_frame),
        }
    }

    /// Changes the frame limit, e.g. from the small handshake limit to the
    /// full one once the peer proved who it is.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.frames.max_frame = max_frame;
    }
}

impl Decoder for MessageCodec {
    type Item = (Message, usize);
    type Error = CodecError;

    /// Yields each message with its payload size (for metrics).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<(Message, usize)>, CodecError> {
        match self.frames.decode(src)? {
            None => Ok(None),
            Some(payload) => {
                let message = decode_message(&payload, self.frames.max_frame)?;
                Ok(Some((message, payload.len())))
            }
        }
    }
}

impl Encoder<Bytes> for MessageCodec {
    type Error = CodecError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.frames.encode(payload, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::message::{InvItem, MAX_INV_ITEMS};
    use ledger::{Hash256, TxId};

    fn frame(message: &Message) -> BytesMut {
        let mut out = BytesMut::new();
        FrameCodec::default()
            .encode(encode_message(message), &mut out)
            .expect("fits");
        out
    }

    #[test]
    fn block_payload_from_stored_bytes_equals_encoding_the_message() {
        let spec = ledger::ChainSpec::builtin("regtest").expect("built-in");
        let block = spec.genesis_block();
        let payload = block_payload(&encoding::encode(&block));
        assert_eq!(
            payload,
            encode_message(&Message::Block(Box::new(block.clone())))
        );
        assert_eq!(
            decode_message(&payload, MAX_FRAME_BYTES).expect("decodes"),
            Message::Block(Box::new(block))
        );
    }

    #[test]
    fn tx_payload_equals_encoding_the_message() {
        let key = ledger::SecretKey::from_seed("tx payload");
        let tx = ledger::Transaction::new_signed(
            &key,
            &ledger::BlockHash(ledger::Hash256::digest(b"genesis")),
            ledger::Address([7; 20]),
            ledger::Amount::from_base_units(3),
            ledger::Amount::from_base_units(1_000),
            9,
            "memo".into(),
        );
        let payload = tx_payload(&tx);
        assert_eq!(payload, encode_message(&Message::Tx(Box::new(tx.clone()))));
        assert_eq!(
            decode_message(&payload, MAX_FRAME_BYTES).expect("decodes"),
            Message::Tx(Box::new(tx))
        );
    }

    #[test]
    fn a_single_tx_announcement_is_read_without_decoding_and_nothing_else_is() {
        let txid = TxId(Hash256::digest(b"announced"));
        let payload = encode_message(&Message::Inv(vec![InvItem::Tx(txid)]));
        assert_eq!(single_tx_announcement(&payload), Some(txid));
        // Anything else, including a longer or a cut announcement, is not.
        let block = ledger::BlockHash(Hash256::digest(b"block"));
        let others = [
            Message::Inv(vec![InvItem::Block(block)]),
            Message::Inv(vec![InvItem::Tx(txid), InvItem::Tx(txid)]),
            Message::Inv(Vec::new()),
            Message::GetData(vec![InvItem::Tx(txid)]),
            Message::NotFound(vec![InvItem::Tx(txid)]),
            Message::Ping(7),
        ];
        for message in others {
            assert_eq!(single_tx_announcement(&encode_message(&message)), None);
        }
        assert_eq!(single_tx_announcement(&payload[..payload.len() - 1]), None);
        let mut longer = payload.to_vec();
        longer.push(0);
        assert_eq!(single_tx_announcement(&longer), None);
    }

    #[test]
    fn frames_round_trip_across_partial_reads() {
        let mut wire = frame(&Message::Ping(7));
        wire.extend_from_slice(&frame(&Message::GetAddr));
        let mut codec = MessageCodec::default();
        let mut buffer = BytesMut::new();
        let mut seen = Vec::new();
        for byte in wire.iter() {
            buffer.put_u8(*byte);
            while let Some((message, _)) = codec.decode(&mut buffer).expect("valid") {
                seen.push(message);
            }
        }
        assert_eq!(seen, vec![Message::Ping(7), Message::GetAddr]);
    }

    #[test]
    fn huge_length_prefix_is_refused_before_allocating() {
        let mut buffer = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
        let capacity_before = buffer.capacity();
        let error = MessageCodec::default()
            .decode(&mut buffer)
            .expect_err("too large");
        assert!(matches!(error, CodecError::FrameTooLarge { .. }));
        assert!(error.is_misbehaviour());
        assert_eq!(buffer.capacity(), capacity_before);
    }

    #[test]
    fn per_kind_caps_and_garbage() {
        // A ping frame padded to 100 bytes is over the ping cap.
        let mut payload = encoding::encode(&Message::Ping(1));
        payload.resize(100, 0);
        assert!(matches!(
            decode_message(&payload, MAX_FRAME_BYTES),
            Err(CodecError::MessageTooLarge { kind: "ping", .. })
        ));
        assert!(matches!(
            decode_message(&[99, 0, 0, 0], MAX_FRAME_BYTES),
            Err(CodecError::UnknownKind(99))
        ));
        assert!(matches!(
            decode_message(&[2, 0, 0, 0, 1], MAX_FRAME_BYTES),
            Err(CodecError::Undecodable { .. })
        ));
        assert!(matches!(
            decode_message(&[2], MAX_FRAME_BYTES),
            Err(CodecError::Truncated(1))
        ));
        // An Inv whose length prefix lies about its entries.
        let mut lying = 6u32.to_le_bytes().to_vec();
        lying.extend_from_slice(&(u64::MAX).to_le_bytes());
        assert!(decode_message(&lying, MAX_FRAME_BYTES).is_err());
        let over = Message::Inv(vec![InvItem::Tx(TxId(Hash256::ZERO)); MAX_INV_ITEMS + 1]);
        assert!(decode_message(&encoding::encode(&over), MAX_FRAME_BYTES).is_err());
    }
}
