//! One test per consensus rule, each expecting its own error variant, and
//! each checking that the rejected block left the tip where it was.

use crate::common::*;
use ledger::amount::{Amount, COIN};
use ledger::block::Block;
use ledger::chain::ProcessOutcome;
use ledger::keys::PublicKey;
use ledger::target::{Target, U256};
use ledger::validation::{BlockError, TxError};
use ledger::ChainSpec;

/// Submits `block` to a fixture and expects `check` to accept the error;
/// the tip must not move.
fn expect_rejected(fixture: &mut Fixture, block: Block, check: impl Fn(&BlockError) -> bool) {
    let tip = fixture.chain.tip();
    match fixture.submit(block) {
        Err(error) => assert!(check(&error), "unexpected error: {error:?}"),
        Ok(outcome) => panic!("block was accepted: {outcome:?}"),
    }
    assert_eq!(fixture.chain.tip(), tip);
}

fn tx_error(error: &BlockError) -> Option<&TxError> {
    match error {
        BlockError::Tx { error, .. } => Some(error),
        _ => None,
    }
}

#[test]
fn valid_block_is_accepted() {
    let mut fixture = Fixture::new();
    let block = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 0)]);
    assert!(matches!(
        fixture.submit(block),
        Ok(ProcessOutcome::Connected(_))
    ));
}

#[test]
fn bad_proof_of_work() {
    let mut fixture = Fixture::new();
    let mut block = fixture.next_block(vec![]);
    let target = Target::from_compact(block.header.bits).unwrap();
    while target.is_met_by(&block.header.hash()) {
        block.header.nonce += 1;
    }
    expect_rejected(&mut fixture, block, |error| {
        *error == BlockError::BadProofOfWork
    });
}

#[test]
fn wrong_target() {
    let mut fixture = Fixture::new();
    let mut block = fixture.next_block(vec![]);
    // Harder than required: the proof-of-work is fine, the bits are not.
    block.header.bits = Target(U256::MAX.div_u64(4)).rounded().to_compact();
    resolve(&mut block);
    expect_rejected(&mut fixture, block, |error| {
        matches!(error, BlockError::WrongTarget { .. })
    });
}

#[test]
fn timestamp_too_old() {
    let mut fixture = Fixture::new();
    let mut block = fixture.next_block(vec![]);
    // Equal to the median of the last 11 (here: genesis) is too old.
    block.header.timestamp = fixture.tip_header().timestamp;
    resolve(&mut block);
    expect_rejected(&mut fixture, block, |error| {
        matches!(error, BlockError::TimestampTooOld { .. })
    });
}

#[test]
fn timestamp_too_far_ahead() {
    let mut fixture = Fixture::new();
    let block = fixture.next_block(vec![]);
    let now = block.header.timestamp - 2 * 60 * 1000 - 1;
    let tip = fixture.chain.tip();
    let error = verdict(fixture.chain.process_block(block.clone(), now)).unwrap_err();
    assert!(
        matches!(error, BlockError::TimestampTooFarAhead { .. }),
        "{error:?}"
    );
    assert!(!error.is_misbehaviour(), "clock skew is not misbehaviour");
    assert_eq!(fixture.chain.tip(), tip);
    // Not marked invalid: once our clock catches up it is fine.
    assert!(matches!(
        fixture.submit(block),
        Ok(ProcessOutcome::Connected(_))
    ));
}

#[test]
fn bad_merkle_root() {
    let mut fixture = Fixture::new();
    let mut block = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 0)]);
    block.header.merkle_root.0[0] ^= 1;
    resolve(&mut block);
    expect_rejected(&mut fixture, block, |error| {
        *error == BlockError::BadMerkleRoot
    });
}

#[test]
fn same_tx_twice() {
    let mut fixture = Fixture::new();
    let tx = fixture.transfer(0, 1, COIN, 0);
    let block = fixture.next_block(vec![tx.clone(), tx]);
    expect_rejected(&mut fixture, block, |error| {
        matches!(error, BlockError::DuplicateTx { .. })
    });
}

#[test]
fn block_too_big() {
    let spec = ChainSpec {
        max_block_bytes: 2048,
        ..regtest()
    };
    let mut fixture = Fixture::with_spec(spec);
    let txs: Vec<_> = (0..20)
        .map(|nonce| fixture.transfer(0, 1, COIN, nonce))
        .collect();
    let block = fixture.next_block(txs);
    assert!(block.encoded_len() > 2048);
    expect_rejected(&mut fixture, block, |error| {
        matches!(error, BlockError::TooBig { .. })
    });
}

#[test]
fn bad_signature() {
    let mut fixture = Fixture::new();
    let mut tx = fixture.transfer(0, 1, COIN, 0);
    tx.amount = Amount::from_base_units(2 * COIN);
    let block = fixture.next_block(vec![tx]);
    expect_rejected(&mut fixture, block, |error| {
        tx_error(error) == Some(&TxError::BadSignature) && error.is_misbehaviour()
    });
}

/// Adds the group order L to the little-endian scalar `s`.
fn add_group_order(s: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (byte, l) in s.iter_mut().zip(L) {
        let sum = *byte as u16 + l as u16 + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}

#[test]
fn small_order_key_or_non_canonical_signature() {
    // s + L satisfies the loose verification equation but not the strict one.
    let mut fixture = Fixture::new();
    let mut tx = fixture.transfer(0, 1, COIN, 0);
    add_group_order(&mut tx.signature.0[32..]);
    let block = fixture.next_block(vec![tx]);
    expect_rejected(&mut fixture, block, |error| {
        tx_error(error) == Some(&TxError::WeakKeyOrSignature)
    });

    // The identity point as public key (small order).
    let mut tx = fixture.transfer(0, 1, COIN, 0);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    tx.from = PublicKey(identity);
    let block = fixture.next_block(vec![tx]);
    expect_rejected(&mut fixture, block, |error| {
        tx_error(error) == Some(&TxError::WeakKeyOrSignature)
    });
}

#[test]
fn signature_for_another_chain() {
    let mut fixture = Fixture::new();
    let dev_genesis = ChainSpec::builtin("dev").unwrap().genesis_hash();
    let tx = transfer(&dev_genesis, 0, dev_address(1), COIN, 1000, 0);
    let block = fixture.next_block(vec![tx]);
    expect_rejected(&mut fixture, block, |error| {
        tx_error(error) == Some(&TxError::WrongChain)
    });
}

#[test]
fn nonce_replay() {
    let mut fixture = Fixture::new();
    let first = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 0)]);
    fixture.submit(first).unwrap();
    let replay = fixture.next_block(vec![fixture.transfer(0, 1, 2 * COIN, 0)]);
    let replay_hash = replay.hash();
    expect_rejected(&mut fixture, replay, |error| {
        matches!(
            tx_error(error),
            Some(TxError::NonceTooLow {
                expected: 1,
                got: 0
            })
        )
    });
    // Stored and marked invalid: sending it again is refused at once.
    assert!(fixture.chain.is_invalid(&replay_hash));
}

#[test]
fn nonce_gap() {
    let mut fixture = Fixture::new();
    let block = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 1)]);
    expect_rejected(&mut fixture, block, |error| {
        matches!(
            tx_error(error),
            Some(TxError::NonceGap {
                expected: 0,
                got: 1
            })
        )
    });
}

#[test]
fn overdraft() {
    let mut fixture = Fixture::new();
    let block = fixture.next_block(vec![fixture.transfer(0, 1, 1_000_001 * COIN, 0)]);
    expect_rejected(&mut fixture, block, |error| {
        matches!(tx_error(error), Some(TxError::InsufficientFunds { .. }))
    });
}

#[test]
fn amount_plus_fee_overflow() {
    let mut fixture = Fixture::new();
    let tx = transfer(&fixture.genesis, 0, dev_address(1), u64::MAX - 10, 1000, 0);
    let block = fixture.next_block(vec![tx]);
    expect_rejected(&mut fixture, block, |error| {
        tx_error(error) == Some(&TxError::AmountOverflow)
    });
}

#[test]
fn reward_above_subsidy_plus_fees() {
    let mut fixture = Fixture::new();
    let mut block = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 0)]);
    block.header.reward = block
        .header
        .reward
        .checked_add(Amount::from_base_units(1))
        .unwrap();
    resolve(&mut block);
    expect_rejected(&mut fixture, block, |error| {
        matches!(error, BlockError::RewardTooHigh { .. })
    });
}

#[test]
fn reward_below_subsidy_plus_fees() {
    let mut fixture = Fixture::new();
    let mut block = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 0)]);
    block.header.reward = fixture.spec.block_subsidy;
    resolve(&mut block);
    expect_rejected(&mut fixture, block, |error| {
        matches!(error, BlockError::RewardTooLow { .. })
    });
}

#[test]
fn fee_below_minimum() {
    let mut fixture = Fixture::new();
    let tx = transfer(&fixture.genesis, 0, dev_address(1), COIN, 999, 0);
    let block = fixture.next_block(vec![tx]);
    expect_rejected(&mut fixture, block, |error| {
        matches!(tx_error(error), Some(TxError::FeeTooLow { .. }))
    });
}

#[test]
fn descendant_of_invalid_block() {
    let mut fixture = Fixture::new();
    let bad = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 5)]);
    let child = block_on(
        &fixture.spec,
        &bad.header,
        bad.header.timestamp + 2000,
        dev_address(9),
        vec![],
    );
    assert!(fixture.submit(bad.clone()).is_err());
    assert_eq!(fixture.submit(bad), Err(BlockError::KnownInvalid));
    expect_rejected(&mut fixture, child, |error| {
        *error == BlockError::InvalidAncestor
    });
}
