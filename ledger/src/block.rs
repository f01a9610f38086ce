//! Blocks: a header (everything proof-of-work commits to) and the ordered
//! transactions that the header's merkle root commits to.

use crate::address::Address;
use crate::amount::Amount;
use crate::encoding::{self, Decode, Encode};
use crate::hash::{BlockHash, Hash256, TxId};
use crate::target::CompactTarget;
use crate::tx::Transaction;
use crate::Height;

/// The current block version.
pub const BLOCK_VERSION: u32 = 1;

/// A block header. Every value of every field can be encoded, so fields are
/// public; validity is decided by `validation`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Header {
    pub version: u32,
    pub height: Height,
    pub prev_hash: BlockHash,
    pub merkle_root: Hash256,
    /// Unix milliseconds.
    pub timestamp: u64,
    pub bits: CompactTarget,
    pub nonce: u64,
    pub miner: Address,
    /// What the miner credits itself: exactly subsidy plus fees.
    pub reward: Amount,
}

/// A header and its transactions.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<Transaction>,
}

impl Header {
    /// SHA-256 of the canonical header encoding.
    pub fn hash(&self) -> BlockHash {
        BlockHash(Hash256::digest(&encoding::encode(self)))
    }

    /// Byte offset of `nonce` inside the canonical encoding, so a miner can
    /// patch it in place instead of re-encoding for every attempt.
    pub const NONCE_OFFSET: usize = 4 + 8 + 32 + 32 + 8 + 4;
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    pub fn txids(&self) -> Vec<TxId> {
        self.txs.iter().map(Transaction::txid).collect()
    }

    pub fn encoded_len(&self) -> usize {
        encoding::encoded_len(self)
    }

    /// Sum of the fees, `None` on overflow.
    pub fn total_fees(&self) -> Option<Amount> {
        Amount::checked_sum(self.txs.iter().map(|tx| tx.fee))
    }
}

/// Merkle root over txids: leaves are the txids; an inner node is
/// SHA-256(0x01 || left || right); an odd node is carried up unchanged. The
/// empty list has the all-zero root. The inner-node prefix keeps a txid from
/// ever being mistaken for an inner node.
pub fn merkle_root(txids: &[TxId]) -> Hash256 {
    if txids.is_empty() {
        return Hash256::ZERO;
    }
    let mut level: Vec<Hash256> = txids.iter().map(|txid| txid.0).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => Hash256::digest_parts(&[&[1u8], &left.0, &right.0]),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_offset_matches_encoding() {
        let mut header = Header {
            version: BLOCK_VERSION,
            height: Height(7),
            prev_hash: BlockHash::ZERO,
            merkle_root: Hash256::ZERO,
            timestamp: 1,
            bits: CompactTarget(0x2000_ffff),
            nonce: 0,
            miner: Address::default(),
            reward: Amount::ZERO,
        };
        let before = encoding::encode(&header);
        header.nonce = 0x0102_0304_0506_0708;
        let after = encoding::encode(&header);
        assert_eq!(
            &after[Header::NONCE_OFFSET..Header::NONCE_OFFSET + 8],
            &header.nonce.to_le_bytes()
        );
        assert_eq!(before.len(), after.len());
    }

    #[test]
    fn merkle_root_shapes() {
        let ids: Vec<TxId> = (0..5u8).map(|i| TxId(Hash256::digest(&[i]))).collect();
        assert_eq!(merkle_root(&[]), Hash256::ZERO);
        assert_eq!(merkle_root(&ids[..1]), ids[0].0);
        assert_ne!(merkle_root(&ids[..4]), merkle_root(&ids[..5]));
        let mut swapped = ids.clone();
        swapped.swap(0, 1);
        assert_ne!(merkle_root(&ids), merkle_root(&swapped));
    }
}
