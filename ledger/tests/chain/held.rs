//! Held connects: synced blocks applied in memory and committed several per
//! sled transaction (`Chain::process_block_held`, `Chain::commit_held`).

use crate::common::*;
use ledger::amount::COIN;
use ledger::chain::{Chain, ProcessOutcome};
use ledger::Height;
use ledger::{Block, Header};

/// `count` blocks on `parent`, each with one transfer from `from` (nonces
/// from `first_nonce`) to dev account 1, mined by `miner`.
fn blocks_on(
    fixture: &Fixture,
    parent: &Header,
    count: usize,
    from: usize,
    first_nonce: u64,
    miner: usize,
) -> Vec<Block> {
    let mut parent = parent.clone();
    (0..count)
        .map(|index| {
            let txs = vec![fixture.transfer(from, 1, COIN, first_nonce + index as u64)];
            let block = block_on(
                &fixture.spec,
                &parent,
                parent.timestamp + 2000,
                dev_address(miner),
                txs,
            );
            parent = block.header.clone();
            block
        })
        .collect()
}

fn process_held(fixture: &mut Fixture, block: Block, limit: usize) -> ProcessOutcome {
    let now = block.header.timestamp;
    fixture
        .chain
        .process_block_held(block, now, limit)
        .expect("valid block")
}

#[test]
fn held_connects_are_invisible_until_committed_then_equal_to_one_by_one() {
    let mut held = Fixture::new();
    let mut plain = Fixture::new();
    let genesis = held.tip_header();
    let blocks = blocks_on(&held, &genesis, 5, 0, 0, 9);
    let txids: Vec<_> = blocks.iter().map(|block| block.txs[0].txid()).collect();
    let before = held.chain.reader().account(&dev_address(1)).balance;
    for block in &blocks {
        plain.submit(block.clone()).expect("valid");
        let outcome = process_held(&mut held, block.clone(), 8);
        assert!(
            matches!(outcome, ProcessOutcome::Connected(_)),
            "{outcome:?}"
        );
    }
    let reader = held.chain.reader();
    assert!(held.chain.has_held());
    assert_eq!(
        held.chain.tip().height,
        Height(5),
        "the writer builds on them"
    );
    assert_eq!(
        reader.tip().height,
        Height::ZERO,
        "readers see the committed tip"
    );
    assert_eq!(reader.account(&dev_address(1)).balance, before);
    held.chain.write_indexes().unwrap();
    assert!(
        reader.tx(&txids[0]).is_none(),
        "no index entry before the body"
    );

    held.chain.commit_held().unwrap();
    assert!(!held.chain.has_held());
    assert_eq!(reader.tip().hash, blocks[4].hash());
    assert_eq!(reader.state_summary(), plain.chain.reader().state_summary());
    assert_eq!(reader.block(&blocks[2].hash()), Some(blocks[2].clone()));
    held.chain.write_indexes().unwrap();
    for (height, txid) in txids.iter().enumerate() {
        assert_eq!(
            reader.tx(txid).expect("indexed").1.height,
            Height(height as u64 + 1)
        );
    }

    let Fixture { chain, dir, .. } = held;
    let summary = reader.state_summary();
    drop((chain, reader));
    let reopened = Chain::open(regtest(), dir.path()).unwrap();
    assert_eq!(reopened.reader().state_summary(), summary);
}

#[test]
fn the_limit_and_an_ordinary_block_commit_what_is_held() {
    let mut fixture = Fixture::new();
    let genesis = fixture.tip_header();
    let mut blocks = blocks_on(&fixture, &genesis, 11, 0, 0, 9);
    let last = blocks.pop().unwrap();
    let reader = fixture.chain.reader();
    let mut committed = Vec::new();
    for block in blocks {
        process_held(&mut fixture, block, 4);
        committed.push(reader.tip().height);
    }
    assert_eq!(committed, vec![0, 0, 0, 4, 4, 4, 4, 8, 8, 8]);
    assert!(fixture.chain.has_held());
    fixture.submit(last.clone()).expect("valid");
    assert!(!fixture.chain.has_held());
    assert_eq!(reader.tip().hash, last.hash());
}

#[test]
fn a_stop_before_the_commit_loses_only_the_held_blocks() {
    let mut fixture = Fixture::new();
    let genesis = fixture.tip_header();
    let blocks = blocks_on(&fixture, &genesis, 5, 0, 0, 9);
    fixture.submit(blocks[0].clone()).expect("valid");
    for block in &blocks[1..] {
        process_held(&mut fixture, block.clone(), 8);
    }
    // Dropped as a crash would leave it: the held connects never reached
    // sled, and the store is consistent at the last commit.
    let Fixture { chain, dir, .. } = fixture;
    drop(chain);
    let mut reopened = Chain::open(regtest(), dir.path()).unwrap();
    assert_eq!(reopened.reader().tip().hash, blocks[0].hash());
    for block in &blocks[1..] {
        let now = block.header.timestamp;
        let outcome = reopened.process_block(block.clone(), now);
        assert!(
            matches!(outcome, Ok(ProcessOutcome::Connected(_))),
            "{outcome:?}"
        );
    }
    assert_eq!(reopened.reader().tip().hash, blocks[4].hash());
}

#[test]
fn a_reorg_while_holding_commits_first_and_ends_where_a_replay_does() {
    let mut fixture = Fixture::new();
    let genesis = fixture.tip_header();
    let short = blocks_on(&fixture, &genesis, 3, 0, 0, 8);
    let long = blocks_on(&fixture, &genesis, 5, 2, 0, 9);
    for block in &short {
        process_held(&mut fixture, block.clone(), 8);
    }
    assert_eq!(fixture.chain.tip().hash, short[2].hash());
    let mut reorged = false;
    for block in &long {
        if let ProcessOutcome::Connected(update) = process_held(&mut fixture, block.clone(), 8) {
            reorged |= !update.disconnected.is_empty();
        }
    }
    assert!(reorged, "the longer branch took over");
    fixture.chain.commit_held().unwrap();
    fixture.chain.write_indexes().unwrap();
    let reader = fixture.chain.reader();
    assert_eq!(reader.tip().hash, long[4].hash());

    let mut replay = Fixture::new();
    for block in &long {
        replay.submit(block.clone()).expect("valid");
    }
    assert_eq!(
        reader.state_summary(),
        replay.chain.reader().state_summary()
    );
    // The short branch's txs are not in the index; the long branch's are.
    assert!(reader.tx(&short[0].txs[0].txid()).is_none());
    assert_eq!(
        reader.tx(&long[4].txs[0].txid()).unwrap().1.height,
        Height(5)
    );
}
