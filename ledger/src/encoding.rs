//! The canonical encoding: one pinned bincode 2 configuration (fixed-width
//! little-endian integers, so every value has exactly one byte form) behind
//! `encode` and `decode`. Nothing in gossip-ledger is hashed, signed, stored
//! or sent except the output of this module, and decoding always runs with a
//! byte limit and rejects trailing bytes, so hostile input can neither make
//! us allocate more than the limit nor smuggle a second form of a value.

use bincode::config::{self, Configuration, Fixint, LittleEndian, NoLimit};

pub use bincode::{Decode, Encode};

/// The largest value we ever decode: a whole block of the largest chain spec
/// (`chainspec::MAX_BLOCK_BYTES_LIMIT`, 32 MiB) plus framing. Wire frames are
/// capped separately, per message kind, by the node.
pub const MAX_DECODE_BYTES: usize = 33 * 1024 * 1024;

/// Allocation tiers of `decode_with_limit` below `MAX_DECODE_BYTES`.
const SMALL_LIMIT: usize = 64 * 1024;
const MEDIUM_LIMIT: usize = 4 * 1024 * 1024;

const CONFIG: Configuration<LittleEndian, Fixint, NoLimit> = config::standard()
    .with_little_endian()
    .with_fixed_int_encoding();

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("input of {len} bytes is over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("invalid encoding: {0}")]
    Invalid(String),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// Encodes a value canonically. Encoding into a `Vec` cannot fail for our
/// types (no maps, no unsupported values), so this returns bytes directly.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, CONFIG).expect("encoding into a Vec never fails")
}

/// Length of the canonical encoding, without keeping the bytes.
pub fn encoded_len<T: Encode>(value: &T) -> usize {
    let mut counter = bincode::enc::write::SizeWriter::default();
    bincode::encode_into_writer(value, &mut counter, CONFIG)
        .expect("encoding into a counter never fails");
    counter.bytes_written
}

/// Decodes exactly one value that must use all of `bytes`, refusing inputs
/// over `MAX_DECODE_BYTES`.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with_limit(bytes, MAX_DECODE_BYTES)
}

/// Decodes with an explicit size limit; every container length read from the
/// input is checked against the limit before anything is allocated.
pub fn decode_with_limit<T: Decode<()>>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    // The limit also bounds allocations the decoder claims for containers,
    // which can be larger than the input when a length prefix lies. It is a
    // type parameter, so the caller's limit picks the smallest of a few
    // tiers that covers it: a lying prefix in a small message can never
    // claim a block's worth of memory.
    let decoded = if limit <= SMALL_LIMIT {
        bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ SMALL_LIMIT }>())
    } else if limit <= MEDIUM_LIMIT {
        bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ MEDIUM_LIMIT }>())
    } else {
        bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ MAX_DECODE_BYTES }>())
    };
    let (value, used): (T, usize) =
        decoded.map_err(|error| DecodeError::Invalid(error.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// Where each transaction's canonical bytes sit inside its block's
/// canonical encoding, as (offset, length): the block is its header, the
/// transaction count (a u64) and each transaction in turn. Stored in the tx
/// and address indexes, so one transaction is read, and decoded, without
/// its block.
pub fn tx_spans(block: &crate::block::Block) -> Vec<(u32, u32)> {
    let mut offset = encoded_len(&block.header) + encoded_len(&0u64);
    block
        .txs
        .iter()
        .map(|tx| {
            let len = encoded_len(tx);
            let span = (
                u32::try_from(offset).unwrap_or(u32::MAX),
                u32::try_from(len).unwrap_or(u32::MAX),
            );
            offset += len;
            span
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_little_endian() {
        assert_eq!(encode(&1u64), vec![1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(&vec![7u8]), vec![1, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(encoded_len(&vec![7u8]), 9);
    }

    #[test]
    fn trailing_bytes_and_lying_lengths_are_rejected() {
        assert!(matches!(
            decode::<u32>(&[1, 0, 0, 0, 9]),
            Err(DecodeError::TrailingBytes(1))
        ));
        // A Vec<u8> claiming 2^60 elements must fail without allocating.
        let mut lying = (1u64 << 60).to_le_bytes().to_vec();
        lying.push(1);
        assert!(decode::<Vec<u8>>(&lying).is_err());
        assert!(matches!(
            decode_with_limit::<u64>(&[0; 16], 8),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
