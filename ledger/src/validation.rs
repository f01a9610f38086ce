//! Block and transaction validation, in two stages with one error variant
//! per rule.
//!
//! - *Stateless* ([`check_block_stateless`], [`check_header_pow`]):
//!   structure, sizes, proof-of-work, merkle root, duplicate transactions and
//!   signatures. Needs only the block and the spec, so a header or body can be
//!   refused before anything is stored.
//! - *Contextual* ([`check_header_context`]): height, difficulty bits and
//!   timestamps against the parent's ancestry and the local clock.
//! - *Stateful* ([`check_tx_against_account`], and `state::apply_block`):
//!   nonces, balances, fees and the miner's reward against the parent's
//!   account state.
//!
//! Signatures of a block are checked with `keys::verify_many`, which runs
//! strict per-signature checks in parallel; txids already in the
//! [`SignatureCache`] are skipped. We do not use the ed25519 batch equation:
//! with random coefficients it can accept a crafted signature carrying a
//! small torsion component that `verify_strict` rejects, so batch and single
//! verification could disagree and split the chain (see the doc of
//! `keys.rs`). Parallel strict checks agree with the single check by
//! construction.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{merkle_root, Block, Header, BLOCK_VERSION};
use crate::chainspec::ChainSpec;
use crate::difficulty::{self, BlockTiming};
use crate::hash::{BlockHash, TxId};
use crate::keys::{self, PublicKey, Signature};
use crate::sigcache::SignatureCache;
use crate::state::Account;
use crate::target::{CompactTarget, Target};
use crate::tx::{Transaction, TxFormatError};
use crate::Height;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Why a transaction is invalid (in a block or for the mempool).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("small-order public key or non-canonical signature")]
    WeakKeyOrSignature,
    #[error("signature was made for another chain")]
    WrongChain,
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("nonce {got} was already used (expected {expected})")]
    NonceTooLow { expected: u64, got: u64 },
    #[error("nonce {got} skips ahead of the expected {expected}")]
    NonceGap { expected: u64, got: u64 },
    #[error("balance {balance} does not cover amount plus fee {needed}")]
    InsufficientFunds { balance: Amount, needed: Amount },
    #[error("amount plus fee overflows")]
    AmountOverflow,
    #[error("fee {fee} is below the minimum {min_fee}")]
    FeeTooLow { fee: Amount, min_fee: Amount },
    #[error("recipient balance would overflow")]
    BalanceOverflow,
}

impl TxError {
    /// True when no honest sender produces this (the transaction can never
    /// become valid); false for errors that depend on timing or state.
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            TxError::BadSignature
                | TxError::WeakKeyOrSignature
                | TxError::WrongChain
                | TxError::Malformed(_)
                | TxError::AmountOverflow
        )
    }
}

impl From<TxFormatError> for TxError {
    fn from(error: TxFormatError) -> Self {
        match error {
            TxFormatError::AmountOverflow => TxError::AmountOverflow,
            other => TxError::Malformed(other.to_string()),
        }
    }
}

/// Why a block is invalid, or could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    #[error("unsupported block version {0}")]
    BadVersion(u32),
    #[error("block is {size} bytes, more than the limit of {max}")]
    TooBig { size: usize, max: u64 },
    #[error("compact target {0:#010x} is not a valid target")]
    BadCompactTarget(u32),
    #[error("target is easier than the chain's easiest target")]
    TargetTooEasy,
    #[error("block hash does not meet its target")]
    BadProofOfWork,
    #[error("merkle root does not match the transactions")]
    BadMerkleRoot,
    #[error("transaction {txid} appears twice in the block")]
    DuplicateTx { txid: TxId },
    #[error("block at height {got} does not follow its parent (expected height {expected})")]
    BadHeight { expected: Height, got: Height },
    #[error("wrong target: expected bits {expected:#010x}, got {got:#010x}")]
    WrongTarget { expected: u32, got: u32 },
    #[error("timestamp {timestamp} is not after the median {median} of the last 11 blocks")]
    TimestampTooOld { timestamp: u64, median: u64 },
    #[error("timestamp {timestamp} is more than 2 minutes ahead of our clock (limit {limit})")]
    TimestampTooFarAhead { timestamp: u64, limit: u64 },
    #[error("transaction {index} is invalid: {error}")]
    Tx { index: usize, error: TxError },
    #[error("total fees overflow")]
    FeesOverflow,
    #[error("miner reward {reward} is above subsidy plus fees {allowed}")]
    RewardTooHigh { reward: Amount, allowed: Amount },
    #[error("miner reward {reward} is below subsidy plus fees {required}")]
    RewardTooLow { reward: Amount, required: Amount },
    #[error("miner balance would overflow")]
    MinerBalanceOverflow,
    #[error("block was already found invalid")]
    KnownInvalid,
    #[error("block descends from an invalid block")]
    InvalidAncestor,
    #[error("block is not a valid genesis block of this chain")]
    BadGenesis,
}

impl BlockError {
    /// True when the sender must have known the block is invalid (every
    /// rule a node checks before relaying), so it may be disconnected and
    /// banned. False for clock-dependent rules.
    pub fn is_misbehaviour(&self) -> bool {
        // Stateful tx errors count too: the sender checked the block against
        // the same parent state before relaying it.
        !matches!(self, BlockError::TimestampTooFarAhead { .. })
    }

    /// A stable, low-cardinality name for the rule that failed, for metric
    /// labels: the variant's name in snake_case.
    pub fn reason(&self) -> &'static str {
        match self {
            BlockError::BadVersion(_) => "bad_version",
            BlockError::TooBig { .. } => "too_big",
            BlockError::BadCompactTarget(_) => "bad_compact_target",
            BlockError::TargetTooEasy => "target_too_easy",
            BlockError::BadProofOfWork => "bad_proof_of_work",
            BlockError::BadMerkleRoot => "bad_merkle_root",
            BlockError::DuplicateTx { .. } => "duplicate_tx",
            BlockError::BadHeight { .. } => "bad_height",
            BlockError::WrongTarget { .. } => "wrong_target",
            BlockError::TimestampTooOld { .. } => "timestamp_too_old",
            BlockError::TimestampTooFarAhead { .. } => "timestamp_too_far_ahead",
            BlockError::Tx { .. } => "tx",
            BlockError::FeesOverflow => "fees_overflow",
            BlockError::RewardTooHigh { .. } => "reward_too_high",
            BlockError::RewardTooLow { .. } => "reward_too_low",
            BlockError::MinerBalanceOverflow => "miner_balance_overflow",
            BlockError::KnownInvalid => "known_invalid",
            BlockError::InvalidAncestor => "invalid_ancestor",
            BlockError::BadGenesis => "bad_genesis",
        }
    }
}

/// Checks a transaction against its sender's account: fee at least the
/// minimum, nonce exactly the next one, balance covering amount plus fee.
pub fn check_tx_against_account(
    tx: &Transaction,
    sender: &Account,
    spec: &ChainSpec,
) -> Result<(), TxError> {
    if tx.fee < spec.min_fee {
        return Err(TxError::FeeTooLow {
            fee: tx.fee,
            min_fee: spec.min_fee,
        });
    }
    if tx.nonce < sender.nonce {
        return Err(TxError::NonceTooLow {
            expected: sender.nonce,
            got: tx.nonce,
        });
    }
    if tx.nonce > sender.nonce {
        return Err(TxError::NonceGap {
            expected: sender.nonce,
            got: tx.nonce,
        });
    }
    let needed = tx.total_cost().ok_or(TxError::AmountOverflow)?;
    if sender.balance < needed {
        return Err(TxError::InsufficientFunds {
            balance: sender.balance,
            needed,
        });
    }
    Ok(())
}

/// Strict signature check of one transaction, with the failure classified.
pub fn check_tx_signature(tx: &Transaction, genesis: &BlockHash) -> Result<(), TxError> {
    match tx.verify_signature(genesis) {
        Ok(()) => Ok(()),
        Err(_) => Err(classify_signature_failure(tx, genesis)),
    }
}

/// Names why a signature that failed strict verification failed: a
/// small-order key or `R`, or a non-canonical `s`; a signature that verifies
/// for another known chain; otherwise plainly bad.
pub fn classify_signature_failure(tx: &Transaction, genesis: &BlockHash) -> TxError {
    if is_weak_key_or_signature(&tx.from, &tx.signature) {
        return TxError::WeakKeyOrSignature;
    }
    for other in other_known_genesis_hashes() {
        if other != genesis && tx.verify_signature(other).is_ok() {
            return TxError::WrongChain;
        }
    }
    TxError::BadSignature
}

/// Whether the key or signature breaks one of the strictness rules that
/// only `verify_strict` enforces: small-order public key, small-order `R`,
/// or `s` not reduced modulo the group order.
pub fn is_weak_key_or_signature(key: &PublicKey, signature: &Signature) -> bool {
    let small_order = |bytes: &[u8; 32]| {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(|point| point.is_weak())
            .unwrap_or(false)
    };
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature.0[..32]);
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature.0[32..]);
    small_order(&key.0) || small_order(&r) || !is_canonical_scalar(&s)
}

/// The ed25519 group order L, little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

fn is_canonical_scalar(scalar: &[u8; 32]) -> bool {
    // Compare as little-endian numbers: scalar < L.
    for index in (0..32).rev() {
        if scalar[index] != GROUP_ORDER[index] {
            return scalar[index] < GROUP_ORDER[index];
        }
    }
    false
}

/// Genesis hashes of the built-in chains, used only to explain a failed
/// signature ("made for another chain"); they never make one valid.
fn other_known_genesis_hashes() -> &'static [BlockHash] {
    static HASHES: OnceLock<Vec<BlockHash>> = OnceLock::new();
    HASHES.get_or_init(|| {
        ["dev", "regtest"]
            .iter()
            .filter_map(|name| ChainSpec::builtin(name))
            .map(|spec| spec.genesis_hash())
            .collect()
    })
}

/// Decodes a header's bits and checks the proof-of-work and that the target
/// is not easier than the chain allows.
pub fn check_header_pow(header: &Header, spec: &ChainSpec) -> Result<Target, BlockError> {
    if header.version != BLOCK_VERSION {
        return Err(BlockError::BadVersion(header.version));
    }
    let target = Target::from_compact(header.bits)
        .map_err(|_| BlockError::BadCompactTarget(header.bits.0))?;
    if target > spec.easiest_target {
        return Err(BlockError::TargetTooEasy);
    }
    if !meets_target(header, &target) {
        return Err(BlockError::BadProofOfWork);
    }
    Ok(target)
}

/// Whether the header's hash meets `target`. In fuzz builds only
/// (`cfg(fuzzing)`, see `keys`) every header does, so a fuzzer gets past
/// proof-of-work.
fn meets_target(header: &Header, target: &Target) -> bool {
    #[cfg(fuzzing)]
    return {
        let _ = (header, target);
        true
    };
    #[cfg(not(fuzzing))]
    target.is_met_by(&header.hash())
}

/// Cheap structural checks that need no signature work: version, size,
/// proof-of-work, transaction formats, merkle root and duplicates. Returns
/// the txids in block order.
pub fn check_block_structure(block: &Block, spec: &ChainSpec) -> Result<Vec<TxId>, BlockError> {
    check_block_structure_with(block, spec, None)
}

/// [`check_block_structure`] with the txids already worked out by the
/// caller from these very txs (a block rebuilt from the mempool, whose
/// txids were computed when each tx was admitted): they are not hashed
/// again, but the merkle root and duplicates are still checked against
/// them. A list of the wrong length is ignored and the txids computed.
pub fn check_block_structure_with(
    block: &Block,
    spec: &ChainSpec,
    known_txids: Option<Vec<TxId>>,
) -> Result<Vec<TxId>, BlockError> {
    let size = block.encoded_len();
    if size as u64 > spec.max_block_bytes {
        return Err(BlockError::TooBig {
            size,
            max: spec.max_block_bytes,
        });
    }
    check_header_pow(&block.header, spec)?;
    for (index, tx) in block.txs.iter().enumerate() {
        tx.check_format().map_err(|error| BlockError::Tx {
            index,
            error: error.into(),
        })?;
    }
    let txids = match known_txids {
        Some(txids) if txids.len() == block.txs.len() => txids,
        _ => block.txids(),
    };
    if merkle_root(&txids) != block.header.merkle_root {
        return Err(BlockError::BadMerkleRoot);
    }
    let mut seen = HashSet::with_capacity(txids.len());
    for txid in &txids {
        if !seen.insert(*txid) {
            return Err(BlockError::DuplicateTx { txid: *txid });
        }
    }
    Ok(txids)
}

/// All stateless checks: [`check_block_structure`], then the signatures of
/// every transaction not already in `cache`, in parallel. Verified txids
/// are added to the cache. Returns the txids in block order.
pub fn check_block_stateless(
    block: &Block,
    spec: &ChainSpec,
    genesis: &BlockHash,
    cache: &SignatureCache,
) -> Result<Vec<TxId>, BlockError> {
    check_block_stateless_with(block, spec, genesis, cache, None)
}

/// [`check_block_stateless`] with txids the caller already knows (see
/// [`check_block_structure_with`]).
pub fn check_block_stateless_with(
    block: &Block,
    spec: &ChainSpec,
    genesis: &BlockHash,
    cache: &SignatureCache,
    known_txids: Option<Vec<TxId>>,
) -> Result<Vec<TxId>, BlockError> {
    let txids = check_block_structure_with(block, spec, known_txids)?;
    check_signatures(&block.txs, &txids, genesis, cache)?;
    Ok(txids)
}

/// Verifies the signatures of `txs` (whose txids are `txids`) that are not
/// in the cache; on success caches them.
pub fn check_signatures(
    txs: &[Transaction],
    txids: &[TxId],
    genesis: &BlockHash,
    cache: &SignatureCache,
) -> Result<(), BlockError> {
    let pending = cache.unchecked(txids);
    if pending.is_empty() {
        return Ok(());
    }
    let items: Vec<(PublicKey, Vec<u8>, Signature)> = pending
        .iter()
        .map(|&index| {
            let tx = &txs[index];
            (tx.from, tx.signing_message(genesis), tx.signature)
        })
        .collect();
    match keys::verify_many(&items) {
        Ok(()) => {
            cache.insert_many(pending.iter().map(|&index| txids[index]));
            Ok(())
        }
        Err(position) => {
            let index = pending.get(position).copied().unwrap_or(0);
            let error = match txs.get(index) {
                Some(tx) => classify_signature_failure(tx, genesis),
                None => TxError::BadSignature,
            };
            Err(BlockError::Tx { index, error })
        }
    }
}

/// Checks a header against its ancestry: height follows the parent, bits
/// equal the retarget result, timestamp after the median of the last 11
/// blocks and at most 2 minutes ahead of `now_ms`.
///
/// `recent` holds the parent and its ancestors, oldest first, ending with
/// the parent (at least `RETARGET_WINDOW + 1` entries when available).
pub fn check_header_context(
    header: &Header,
    parent_height: Height,
    recent: &[BlockTiming],
    spec: &ChainSpec,
    now_ms: u64,
) -> Result<(), BlockError> {
    let expected_height = parent_height.saturating_add(1);
    if header.height != expected_height {
        return Err(BlockError::BadHeight {
            expected: expected_height,
            got: header.height,
        });
    }
    let expected: CompactTarget = difficulty::next_required_bits(spec, recent);
    if header.bits != expected {
        return Err(BlockError::WrongTarget {
            expected: expected.0,
            got: header.bits.0,
        });
    }
    let median = difficulty::median_time_past(recent);
    if header.timestamp <= median {
        return Err(BlockError::TimestampTooOld {
            timestamp: header.timestamp,
            median,
        });
    }
    let limit = difficulty::max_timestamp(now_ms);
    if header.timestamp > limit {
        return Err(BlockError::TimestampTooFarAhead {
            timestamp: header.timestamp,
            limit,
        });
    }
    Ok(())
}

/// The reward a block must carry: subsidy plus fees, exactly.
pub fn required_reward(block: &Block, spec: &ChainSpec) -> Result<Amount, BlockError> {
    let fees = block.total_fees().ok_or(BlockError::FeesOverflow)?;
    spec.block_subsidy
        .checked_add(fees)
        .ok_or(BlockError::FeesOverflow)
}

/// Checks `header.reward` against subsidy plus fees.
pub fn check_reward(block: &Block, spec: &ChainSpec) -> Result<Amount, BlockError> {
    let required = required_reward(block, spec)?;
    let reward = block.header.reward;
    if reward > required {
        return Err(BlockError::RewardTooHigh {
            reward,
            allowed: required,
        });
    }
    if reward < required {
        return Err(BlockError::RewardTooLow { reward, required });
    }
    Ok(required)
}

/// The address a transaction debits. Kept here so validation and state agree.
pub fn sender_of(tx: &Transaction) -> Address {
    tx.sender()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_canonicity() {
        assert!(!is_canonical_scalar(&GROUP_ORDER));
        let mut below = GROUP_ORDER;
        below[0] -= 1;
        assert!(is_canonical_scalar(&below));
        assert!(is_canonical_scalar(&[0; 32]));
        assert!(!is_canonical_scalar(&[0xff; 32]));
    }

    #[test]
    fn block_error_reasons_are_distinct_snake_case_labels() {
        let errors = [
            BlockError::BadVersion(2),
            BlockError::TooBig { size: 2, max: 1 },
            BlockError::BadCompactTarget(0),
            BlockError::TargetTooEasy,
            BlockError::BadProofOfWork,
            BlockError::BadMerkleRoot,
            BlockError::DuplicateTx { txid: TxId::ZERO },
            BlockError::BadHeight {
                expected: Height(1),
                got: Height(2),
            },
            BlockError::WrongTarget {
                expected: 1,
                got: 2,
            },
            BlockError::TimestampTooOld {
                timestamp: 1,
                median: 2,
            },
            BlockError::TimestampTooFarAhead {
                timestamp: 2,
                limit: 1,
            },
            BlockError::Tx {
                index: 0,
                error: TxError::BadSignature,
            },
            BlockError::FeesOverflow,
            BlockError::RewardTooHigh {
                reward: Amount::ZERO,
                allowed: Amount::ZERO,
            },
            BlockError::RewardTooLow {
                reward: Amount::ZERO,
                required: Amount::ZERO,
            },
            BlockError::MinerBalanceOverflow,
            BlockError::KnownInvalid,
            BlockError::InvalidAncestor,
            BlockError::BadGenesis,
        ];
        let reasons: HashSet<&str> = errors.iter().map(BlockError::reason).collect();
        assert_eq!(reasons.len(), errors.len());
        for reason in reasons {
            assert!(
                reason.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{reason}"
            );
        }
        assert_eq!(BlockError::BadProofOfWork.reason(), "bad_proof_of_work");
    }
}
