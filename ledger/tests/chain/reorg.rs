//! Reorganisations: what `ChainUpdate` reports, returning to the best valid
//! chain when a branch turns out invalid, ties, and orphans.

use crate::common::*;
use ledger::amount::COIN;
use ledger::block::Block;
use ledger::chain::ProcessOutcome;
use ledger::validation::{BlockError, TxError};
use ledger::Height;

/// A branch of `length` blocks on `parent`, each paying `miner`, with the
/// transactions `txs(i)` in block i.
fn branch(
    fixture: &Fixture,
    parent: &Block,
    length: usize,
    miner: usize,
    txs: impl Fn(usize) -> Vec<ledger::Transaction>,
) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut header = parent.header.clone();
    for i in 0..length {
        let block = block_on(
            &fixture.spec,
            &header,
            header.timestamp + 1000 + miner as u64,
            dev_address(miner),
            txs(i),
        );
        header = block.header.clone();
        blocks.push(block);
    }
    blocks
}

#[test]
fn longer_branch_reorganises_and_reports_blocks() {
    let mut fixture = Fixture::new();
    let genesis = fixture.spec.genesis_block();
    let main = branch(&fixture, &genesis, 3, 1, |i| {
        vec![fixture.transfer(0, 1, COIN, i as u64)]
    });
    for block in &main {
        fixture.submit(block.clone()).unwrap();
    }
    let before = fixture.chain.reader().state_summary();
    let side = branch(&fixture, &main[0], 3, 2, |i| {
        vec![fixture.transfer(3, 4, COIN, i as u64)]
    });
    assert_eq!(
        fixture.submit(side[0].clone()).unwrap(),
        ProcessOutcome::SideChain
    );
    // Equal work: the first seen stays.
    assert_eq!(
        fixture.submit(side[1].clone()).unwrap(),
        ProcessOutcome::SideChain
    );
    assert_eq!(fixture.chain.reader().state_summary(), before);
    let update = match fixture.submit(side[2].clone()).unwrap() {
        ProcessOutcome::Connected(update) => update,
        other => panic!("{other:?}"),
    };
    assert_eq!(update.old_tip, main[2].hash());
    assert_eq!(update.new_tip, side[2].hash());
    assert_eq!(update.fork_height, Height(1));
    assert_eq!(update.disconnected, shared(&[&main[2], &main[1]]));
    assert_eq!(update.connected, shared(&side.iter().collect::<Vec<_>>()));
    assert!(update.is_reorg());
    let reader = fixture.chain.reader();
    // The disconnected txs left the indexes; the account of 0 rolled back.
    assert!(reader.tx(&main[2].txs[0].txid()).is_none());
    assert_eq!(reader.account(&dev_address(0)).nonce, 1);
    assert_eq!(reader.account(&dev_address(3)).nonce, 3);
    assert_eq!(reader.address_txs(&dev_address(0), 10, None).len(), 1);
    assert!(reader.has_block(&main[2].hash()));
}

/// `GET /v1/state` reads the summary the store keeps in memory; after
/// connects and the disconnects of a reorg it must be what the store holds
/// on disk, as a fresh process reads it.
#[test]
fn the_state_summary_in_memory_matches_the_store_after_a_reorg() {
    let mut fixture = Fixture::new();
    let genesis = fixture.spec.genesis_block();
    let main = branch(&fixture, &genesis, 2, 1, |i| {
        vec![fixture.transfer(0, 1, COIN, i as u64)]
    });
    let side = branch(&fixture, &genesis, 3, 2, |i| {
        vec![fixture.transfer(3, 4, COIN, i as u64)]
    });
    for block in main.iter().chain(&side) {
        fixture.submit(block.clone()).unwrap();
    }
    let reader = fixture.chain.reader();
    let in_memory = reader.state_summary();
    assert_eq!(in_memory.tip, side[2].hash());
    assert_eq!(in_memory.height, Height(3));

    let Fixture { chain, dir, .. } = fixture;
    drop((chain, reader));
    let reopened = ledger::chain::Chain::open(regtest(), dir.path()).unwrap();

    assert_eq!(reopened.reader().state_summary(), in_memory);
}

#[test]
fn invalid_block_in_new_branch_returns_to_the_best_valid_chain() {
    let mut fixture = Fixture::new();
    let genesis = fixture.spec.genesis_block();
    let main = branch(&fixture, &genesis, 2, 1, |i| {
        vec![fixture.transfer(0, 1, COIN, i as u64)]
    });
    for block in &main {
        fixture.submit(block.clone()).unwrap();
    }
    let before = fixture.chain.reader().state_summary();
    // Side branch: valid, valid, then a nonce gap, then one more on top.
    let side = branch(&fixture, &genesis, 4, 2, |i| match i {
        2 => vec![fixture.transfer(5, 1, COIN, 7)],
        _ => vec![fixture.transfer(5, 1, COIN, i as u64)],
    });
    // Deliver the top first (orphans), then the rest.
    assert_eq!(
        fixture.submit(side[3].clone()).unwrap(),
        ProcessOutcome::Orphan
    );
    assert_eq!(
        fixture.submit(side[2].clone()).unwrap(),
        ProcessOutcome::Orphan
    );
    assert_eq!(
        fixture.submit(side[1].clone()).unwrap(),
        ProcessOutcome::Orphan
    );
    let error = fixture.submit(side[0].clone());
    // side[0] itself is valid; the branch fails at side[2]: the chain is
    // back on main, with the same state, and the bad blocks are marked.
    assert!(matches!(error, Ok(ProcessOutcome::SideChain)), "{error:?}");
    assert_eq!(fixture.chain.tip().hash, main[1].hash());
    assert_eq!(fixture.chain.reader().state_summary(), before);
    assert!(fixture.chain.is_invalid(&side[2].hash()));
    assert!(fixture.chain.is_invalid(&side[3].hash()));
    assert_eq!(
        fixture.chain.reader().block_status(&side[2].hash()),
        Some(ledger::chain::BlockStatus::Invalid)
    );
    assert!(!fixture.chain.is_invalid(&side[1].hash()));
    assert_eq!(fixture.chain.orphan_count(), 0);
    assert_eq!(
        fixture.submit(side[3].clone()),
        Err(BlockError::KnownInvalid)
    );
    // A valid block on side[1] with more work than main still wins.
    let more = branch(&fixture, &side[1], 1, 3, |_| vec![]);
    match fixture.submit(more[0].clone()).unwrap() {
        ProcessOutcome::Connected(update) => {
            assert_eq!(update.fork_height, Height::ZERO);
            assert_eq!(update.disconnected, shared(&[&main[1], &main[0]]));
            assert_eq!(update.connected, shared(&[&side[0], &side[1], &more[0]]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_tip_extension_reports_its_error() {
    let mut fixture = Fixture::new();
    let block = fixture.next_block(vec![fixture.transfer(0, 1, 2_000_000 * COIN, 0)]);
    let error = fixture.submit(block).unwrap_err();
    assert!(matches!(
        error,
        BlockError::Tx {
            index: 0,
            error: TxError::InsufficientFunds { .. }
        }
    ));
    assert!(error.is_misbehaviour());
    assert_eq!(fixture.chain.tip().height, Height::ZERO);
}

#[test]
fn orphan_pool_is_bounded() {
    let mut fixture = Fixture::new();
    let genesis = fixture.spec.genesis_block();
    let blocks = branch(
        &fixture,
        &genesis,
        ledger::chain::MAX_ORPHANS + 12,
        1,
        |_| vec![],
    );
    for block in blocks.iter().skip(1) {
        assert_eq!(
            fixture.submit(block.clone()).unwrap(),
            ProcessOutcome::Orphan
        );
    }
    assert_eq!(fixture.chain.orphan_count(), ledger::chain::MAX_ORPHANS);
    // The oldest orphans were evicted, so the parent connects only a prefix
    // ... of nothing: block 1's child was evicted first.
    match fixture.submit(blocks[0].clone()).unwrap() {
        ProcessOutcome::Connected(update) => assert_eq!(update.connected.len(), 1),
        other => panic!("{other:?}"),
    }
    // Expiry: far in the future every orphan is gone.
    let late =
        blocks.last().unwrap().header.timestamp + ledger::chain::ORPHAN_EXPIRY_MS + 10_000_000;
    let next = fixture.next_block(vec![]);
    fixture.chain.process_block(next, late).unwrap();
    assert_eq!(fixture.chain.orphan_count(), 0);
}

/// The blocks as a `ChainUpdate` holds them.
fn shared(blocks: &[&ledger::Block]) -> Vec<std::sync::Arc<ledger::Block>> {
    blocks
        .iter()
        .map(|block| std::sync::Arc::new((*block).clone()))
        .collect()
}
