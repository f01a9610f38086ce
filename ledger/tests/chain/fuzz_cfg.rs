//! The fuzz build's weakened crypto (`cfg(fuzzing)`: stand-in signatures,
//! no proof-of-work) never reaches a normal build: here, built as every
//! node is, a block whose transaction carries the stand-in signature is
//! refused by the stateless checks and by the chain itself.

use crate::common::*;
use ledger::amount::Amount;
use ledger::chain::Chain;
use ledger::keys::fuzz_stand_in_signature;
use ledger::sigcache::SignatureCache;
use ledger::validation::{check_block_stateless, check_tx_signature, BlockError, TxError};
use ledger::Transaction;

fn stand_in_transfer(spec: &ledger::ChainSpec) -> Transaction {
    let genesis = spec.genesis_hash();
    let mut tx = transfer(&genesis, 0, dev_address(1), 5_000, 1_000, 0);
    tx.signature = fuzz_stand_in_signature(&tx.from, &tx.signing_message(&genesis));
    tx
}

#[test]
fn a_normal_build_refuses_a_block_with_a_stand_in_signature() {
    let spec = regtest();
    let genesis = spec.genesis_hash();
    let tx = stand_in_transfer(&spec);
    assert_eq!(
        check_tx_signature(&tx, &genesis),
        Err(TxError::BadSignature)
    );
    let parent = spec.genesis_block().header;
    let block = block_on(
        &spec,
        &parent,
        spec.genesis_timestamp + 1_000,
        dev_address(2),
        vec![tx],
    );
    let cache = SignatureCache::default();
    assert_eq!(
        check_block_stateless(&block, &spec, &genesis, &cache),
        Err(BlockError::Tx {
            index: 0,
            error: TxError::BadSignature
        })
    );

    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::open(spec.clone(), dir.path()).unwrap();
    let now = spec.genesis_timestamp + 10_000;
    assert_eq!(
        verdict(chain.process_block(block.clone(), now)).err(),
        Some(BlockError::Tx {
            index: 0,
            error: TxError::BadSignature
        })
    );
    assert_eq!(chain.tip().hash, genesis);
    // The same block signed for real is taken: only the signature differed.
    let real = transfer(&genesis, 0, dev_address(1), 5_000, 1_000, 0);
    let good = block_on(
        &spec,
        &parent,
        spec.genesis_timestamp + 1_000,
        dev_address(2),
        vec![real],
    );
    chain.process_block(good.clone(), now).unwrap();
    assert_eq!(chain.tip().hash, good.hash());
    assert_eq!(
        chain.reader().account(&dev_address(1)).balance,
        Amount::from_coins(1_000_000)
            .unwrap()
            .checked_add(Amount::from_base_units(5_000))
            .unwrap()
    );
}
