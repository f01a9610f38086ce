//! Transactions: the signed transfer of an amount plus a fee from the
//! account of `from` (a public key) to an address, at the sender's next
//! nonce. The signed message is domain-separated and commits to the chain's
//! genesis hash and to every field, so a signature is valid on one chain only.

use crate::address::Address;
use crate::amount::Amount;
use crate::encoding::{self, Decode, Encode};
use crate::hash::{BlockHash, Hash256, TxId};
use crate::keys::{PublicKey, SecretKey, Signature};

/// Largest memo, in bytes of UTF-8.
pub const MAX_MEMO_BYTES: usize = 64;
/// Prefix of every signed transaction message.
pub const TX_SIGNING_DOMAIN: &[u8] = b"gossip-ledger/tx/v1\0";
/// The encoded size of a transaction with an empty memo; with a memo the
/// size grows by the memo's length. Nothing valid is larger than this plus
/// `MAX_MEMO_BYTES`.
pub const MAX_TX_BYTES: usize = 256;

/// A signed transfer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Transaction {
    pub from: PublicKey,
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
    pub nonce: u64,
    pub memo: String,
    pub signature: Signature,
}

/// A structural problem found without any chain state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxFormatError {
    #[error("memo is {0} bytes, at most 64 are allowed")]
    MemoTooLong(usize),
    #[error("amount plus fee overflows")]
    AmountOverflow,
    #[error("amount must be greater than zero")]
    ZeroAmount,
}

impl Transaction {
    /// Builds and signs a transaction for the chain with `genesis`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_signed(
        key: &SecretKey,
        genesis: &BlockHash,
        to: Address,
        amount: Amount,
        fee: Amount,
        nonce: u64,
        memo: String,
    ) -> Transaction {
        let mut tx = Transaction {
            from: key.public_key(),
            to,
            amount,
            fee,
            nonce,
            memo,
            signature: Signature::default(),
        };
        tx.signature = key.sign(&tx.signing_message(genesis));
        tx
    }

    /// The exact bytes the sender signs.
    pub fn signing_message(&self, genesis: &BlockHash) -> Vec<u8> {
        let unsigned = (
            &self.from,
            &self.to,
            &self.amount,
            &self.fee,
            &self.nonce,
            &self.memo,
        );
        let mut message = Vec::with_capacity(TX_SIGNING_DOMAIN.len() + 32 + 160);
        message.extend_from_slice(TX_SIGNING_DOMAIN);
        message.extend_from_slice(genesis.as_bytes());
        message.extend_from_slice(&encoding::encode(&unsigned));
        message
    }

    /// SHA-256 of the canonical encoding, signature included.
    pub fn txid(&self) -> TxId {
        TxId(Hash256::digest(&encoding::encode(self)))
    }

    pub fn sender(&self) -> Address {
        Address::from_public_key(&self.from)
    }

    pub fn encoded_len(&self) -> usize {
        encoding::encoded_len(self)
    }

    /// `amount + fee`, the most the sender's balance must cover.
    pub fn total_cost(&self) -> Option<Amount> {
        self.amount.checked_add(self.fee)
    }

    /// Checks that need no chain state and no signature work.
    pub fn check_format(&self) -> Result<(), TxFormatError> {
        if self.memo.len() > MAX_MEMO_BYTES {
            return Err(TxFormatError::MemoTooLong(self.memo.len()));
        }
        if self.amount == Amount::ZERO {
            return Err(TxFormatError::ZeroAmount);
        }
        self.total_cost().ok_or(TxFormatError::AmountOverflow)?;
        Ok(())
    }

    /// Strict signature check against the chain with `genesis`.
    pub fn verify_signature(&self, genesis: &BlockHash) -> Result<(), crate::keys::SignatureError> {
        self.from
            .verify(&self.signing_message(genesis), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_chain_and_fields() {
        let key = SecretKey::from_seed("tx test");
        let genesis = BlockHash(Hash256::digest(b"chain a"));
        let other = BlockHash(Hash256::digest(b"chain b"));
        let tx = Transaction::new_signed(
            &key,
            &genesis,
            Address([1; 20]),
            Amount::from_base_units(5),
            Amount::from_base_units(1000),
            0,
            "hi".into(),
        );
        assert!(tx.verify_signature(&genesis).is_ok());
        assert!(tx.verify_signature(&other).is_err());
        let mut changed = tx.clone();
        changed.fee = Amount::from_base_units(1001);
        assert!(changed.verify_signature(&genesis).is_err());
        assert!(tx.encoded_len() <= MAX_TX_BYTES + MAX_MEMO_BYTES);
        let decoded: Transaction = encoding::decode(&encoding::encode(&tx)).unwrap();
        assert_eq!(decoded, tx);
    }
}
