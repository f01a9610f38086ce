//! Transaction and block decoding: whatever bytes decode must encode back
//! to exactly those bytes (one canonical form per value), hash the same
//! after the round trip, and decode the same under every size limit that
//! holds them; a block's transaction spans must locate each transaction's
//! own canonical bytes.

use ledger::encoding::{self, DecodeError};
use ledger::{Block, Header, Transaction};

/// `tx_decode`: the bytes as a `Transaction`.
pub fn tx_decode(data: &[u8]) {
    let Some(tx) = round_trip::<Transaction>(data) else {
        return;
    };
    assert_eq!(tx.encoded_len(), data.len());
    assert_eq!(tx.txid(), ledger::TxId(ledger::Hash256::digest(data)));
    // Never panics, whatever the fields hold.
    let _ = tx.check_format();
    let _ = tx.total_cost();
    let _ = tx.sender();
}

/// `block_decode`: the bytes as a `Block` (and, when they are 116 bytes or
/// fewer, as a `Header`).
pub fn block_decode(data: &[u8]) {
    let _ = round_trip::<Header>(data);
    let Some(block) = round_trip::<Block>(data) else {
        return;
    };
    assert_eq!(block.encoded_len(), data.len());
    assert_eq!(
        block.header.hash(),
        round_trip::<Header>(&encoding::encode(&block.header))
            .expect("a header re-decodes")
            .hash()
    );
    let spans = encoding::tx_spans(&block);
    assert_eq!(spans.len(), block.txs.len());
    for ((offset, len), tx) in spans.iter().zip(&block.txs) {
        let bytes = &data[*offset as usize..(*offset + *len) as usize];
        let decoded: Transaction = encoding::decode(bytes).expect("a span holds its tx");
        assert_eq!(&decoded, tx);
    }
    let _ = block.txids();
    let _ = block.total_fees();
}

/// Decodes `data` as a `T`; if it decodes, checks the canonical round
/// trip and that a tighter (but sufficient) limit gives the same value.
fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: encoding::Decode<()> + encoding::Encode + PartialEq + std::fmt::Debug,
{
    let decoded: Result<T, DecodeError> = encoding::decode(data);
    let value = decoded.ok()?;
    let encoded = encoding::encode(&value);
    assert_eq!(encoded, data, "decoding then encoding changed the bytes");
    assert_eq!(encoding::encoded_len(&value), data.len());
    let again: T = encoding::decode_with_limit(data, data.len()).expect("decodes at its own size");
    assert_eq!(again, value);
    if !data.is_empty() {
        assert!(encoding::decode_with_limit::<T>(data, data.len() - 1).is_err());
    }
    Some(value)
}
