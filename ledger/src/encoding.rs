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

/// Allocation tiers of `decode_with_limit`: what the decoder may claim
/// (bincode counts every byte read, plus a container's whole capacity
/// before its elements are read), the smallest tier that covers
/// `CLAIM_PER_INPUT_BYTE` times the input.
const SMALL_CLAIM: usize = 64 * 1024;
const MEDIUM_CLAIM: usize = 4 * 1024 * 1024;
const LARGE_CLAIM: usize = 32 * 1024 * 1024;
/// The largest claim: a block of `MAX_DECODE_BYTES` made of the smallest
/// txs claims its tx vector's capacity (each `Transaction` takes more
/// memory than its encoding) on top of the bytes it reads.
const HUGE_CLAIM: usize = 4 * MAX_DECODE_BYTES;
/// How much a value may claim per byte of its encoding. Our types take at
/// most about five times their encoded size in memory (an address entry of
/// `Addr` without a node id: about 20 bytes encoded, 80 in memory; an
/// empty `String`: 8 against 24), so a value that claims more than this
/// is a lying length prefix, refused before anything is allocated for it.
const CLAIM_PER_INPUT_BYTE: usize = 16;

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

/// Decodes with an explicit size limit. Every container length read from
/// the input is checked before anything is allocated against a budget that
/// grows with the input (see `CLAIM_PER_INPUT_BYTE`), so a short input
/// that claims a long container fails at the claim.
pub fn decode_with_limit<T: Decode<()>>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    // The claim budget bounds what the decoder allocates for containers,
    // which can be far more than the input when a length prefix lies. It is
    // a type parameter, so the input's size picks the smallest of a few
    // tiers that covers it: a lying prefix in a small message can never
    // claim more than a small multiple of that message.
    let budget = bytes.len().saturating_mul(CLAIM_PER_INPUT_BYTE);
    let decoded = if budget <= SMALL_CLAIM {
        bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ SMALL_CLAIM }>())
    } else if budget <= MEDIUM_CLAIM {
        bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ MEDIUM_CLAIM }>())
    } else if budget <= LARGE_CLAIM {
        bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ LARGE_CLAIM }>())
    } else {
        bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ HUGE_CLAIM }>())
    };
    let (value, used): (T, usize) =
        decoded.map_err(|error| DecodeError::Invalid(error.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// The fixed-size byte values (keys, signatures, hashes, addresses) encode
/// as their raw bytes and decode from them, exactly as bincode does for a
/// `[u8; N]` (claiming the N bytes first), but written here with
/// `#[inline]`: every tx carries three of them and a block thousands, and a
/// derived impl left the call to bincode's generic array code wherever the
/// compiler's codegen units happened to put it (a tx's encode ran half as
/// many instructions again when it was out of line).
macro_rules! raw_bytes_codec {
    ($($ty:ty: $len:literal),* $(,)?) => {$(
        impl Encode for $ty {
            #[inline]
            fn encode<E: bincode::enc::Encoder>(
                &self,
                encoder: &mut E,
            ) -> Result<(), bincode::error::EncodeError> {
                bincode::enc::write::Writer::write(encoder.writer(), &self.0)
            }
        }

        impl<Context> Decode<Context> for $ty {
            #[inline]
            fn decode<D: bincode::de::Decoder<Context = Context>>(
                decoder: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                decoder.claim_bytes_read($len)?;
                let mut bytes = [0u8; $len];
                bincode::de::read::Reader::read(decoder.reader(), &mut bytes)?;
                Ok(Self(bytes))
            }
        }

        bincode::impl_borrow_decode!($ty);
    )*};
}

raw_bytes_codec!(
    crate::keys::PublicKey: 32,
    crate::keys::Signature: 64,
    crate::hash::Hash256: 32,
    crate::address::Address: 20,
);

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
    fn fixed_byte_values_encode_as_the_plain_array_and_decode_back() {
        use crate::address::Address;
        use crate::hash::{Hash256, TxId};
        use crate::keys::{PublicKey, Signature};
        let key = PublicKey(std::array::from_fn(|i| i as u8));
        let signature = Signature(std::array::from_fn(|i| 255 - i as u8));
        let hash = Hash256([7; 32]);
        let address = Address(std::array::from_fn(|i| (i * 3) as u8));
        assert_eq!(encode(&key), encode(&key.0));
        assert_eq!(encode(&signature), encode(&signature.0));
        assert_eq!(encode(&hash), encode(&hash.0));
        assert_eq!(encode(&TxId(hash)), hash.0.to_vec());
        assert_eq!(encode(&address), encode(&address.0));
        assert_eq!(encoded_len(&signature), 64);
        assert_eq!(decode::<PublicKey>(&encode(&key)).unwrap(), key);
        assert!(decode::<Signature>(&encode(&signature)).unwrap() == signature);
        assert_eq!(decode::<Address>(&encode(&address)).unwrap(), address);
        assert!(decode::<PublicKey>(&[0; 31]).is_err());
        assert!(matches!(
            decode::<Signature>(&[0; 65]),
            Err(DecodeError::TrailingBytes(1))
        ));
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

    /// A short input whose length prefix claims more than a few times
    /// its own size fails at the claim, before the decoder allocates.
    #[test]
    fn a_short_input_cannot_claim_a_large_allocation() {
        // A 100-byte input claiming a 30 MB string.
        let mut lying = 30_000_000u64.to_le_bytes().to_vec();
        lying.extend_from_slice(&[b'a'; 92]);
        let error = decode::<String>(&lying).expect_err("refused");
        assert!(error.to_string().contains("LimitExceeded"), "{error}");
        // A truthful container just inside the budget decodes.
        let strings: Vec<String> = vec![String::new(); 1_000];
        assert_eq!(decode::<Vec<String>>(&encode(&strings)).unwrap(), strings);
    }

    /// The largest block a chain may have, made of the smallest txs (so
    /// the most `Transaction`s to claim room for), decodes.
    #[test]
    fn a_largest_block_of_smallest_txs_decodes() {
        use crate::block::{Block, Header};
        use crate::chainspec::MAX_BLOCK_BYTES_LIMIT;
        use crate::tx::Transaction;
        use crate::{Address, Amount, BlockHash, Height, PublicKey, Signature};
        let tx = Transaction {
            from: PublicKey([1; 32]),
            to: Address([2; 20]),
            amount: Amount::from_base_units(1),
            fee: Amount::from_base_units(1),
            nonce: 0,
            memo: String::new(),
            signature: Signature([3; 64]),
        };
        let header = Header {
            version: 1,
            height: Height(1),
            prev_hash: BlockHash::ZERO,
            merkle_root: crate::Hash256::ZERO,
            timestamp: 0,
            bits: crate::target::CompactTarget(0x2000_ffff),
            nonce: 0,
            miner: Address([4; 20]),
            reward: Amount::ZERO,
        };
        let room = usize::try_from(MAX_BLOCK_BYTES_LIMIT).unwrap() - encoded_len(&header) - 8;
        let count = room / encoded_len(&tx);
        let block = Block {
            header,
            txs: vec![tx; count],
        };
        let bytes = encode(&block);
        assert!(bytes.len() <= MAX_DECODE_BYTES);
        let decoded: Block = decode(&bytes).expect("decodes");
        assert_eq!(decoded.txs.len(), count);
    }
}
