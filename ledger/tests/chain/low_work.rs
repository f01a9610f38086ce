//! Issue 14, attack 2: side branches with less work than the tip, sent
//! unrequested, are not stored, so a peer cannot fill the disk and the
//! block index with cheap blocks; a branch that overtakes still wins.

use crate::common::*;
use ledger::block::Block;
use ledger::chain::ProcessOutcome;

/// A branch of `length` blocks on `parent`, `spacing_ms` apart.
fn branch(fixture: &Fixture, parent: &Block, length: usize, spacing_ms: u64) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut header = parent.header.clone();
    for _ in 0..length {
        let block = block_on(
            &fixture.spec,
            &header,
            header.timestamp + spacing_ms,
            dev_address(7),
            Vec::new(),
        );
        header = block.header.clone();
        blocks.push(block);
    }
    blocks
}

#[test]
fn low_work_side_branches_filling_disk_and_memory() {
    let mut fixture = Fixture::new();
    let genesis = fixture.spec.genesis_block();
    let main = branch(&fixture, &genesis, 40, 2_000);
    for block in &main {
        fixture.submit(block.clone()).unwrap();
    }
    let now = main[39].header.timestamp;
    let reader = fixture.chain.reader();
    let (stored_before, index_before) = (reader.stored_block_count(), fixture.chain.index_len());
    // A fork from genesis, its timestamps spread out (on a retargeting
    // chain that eases its target; here each block has the same work, and
    // the fork never catches up).
    let fork = branch(&fixture, &genesis, 39, 60_000);
    let (mut refused, mut orphaned) = (0, 0);
    for block in &fork {
        let now = now.max(block.header.timestamp);
        match fixture
            .chain
            .process_block_unrequested(block.clone(), now)
            .unwrap()
        {
            ProcessOutcome::LowWork => refused += 1,
            // Its parent was refused: it waits in the bounded orphan pool
            // (memory only), never stored.
            ProcessOutcome::Orphan => orphaned += 1,
            other => panic!("low-work block taken: {other:?}"),
        }
    }
    let stored = reader.stored_block_count() - stored_before;
    let indexed = fixture.chain.index_len() - index_before;
    println!(
        "FIGURE attack 2: of 39 fork blocks {refused} refused, {orphaned} orphaned; \
         store grew by {stored} blocks, index by {indexed}"
    );
    assert_eq!(refused + orphaned, 39);
    assert!(refused >= 1);
    assert!(fixture.chain.orphan_count() <= ledger::chain::MAX_ORPHANS);
    assert_eq!(stored, 0, "no low-work block stored");
    assert_eq!(indexed, 0, "no low-work block indexed");
    assert_eq!(reader.tip().hash, main[39].hash());

    // A competitor with as much work as the tip is still stored...
    let rival = branch(&fixture, &main[38], 2, 1_000);
    assert_eq!(
        fixture
            .chain
            .process_block_unrequested(rival[0].clone(), now + 1_000)
            .unwrap(),
        ProcessOutcome::SideChain
    );
    // ...and its next block, with more work, takes over.
    assert!(matches!(
        fixture
            .chain
            .process_block_unrequested(rival[1].clone(), now + 2_000)
            .unwrap(),
        ProcessOutcome::Connected(_)
    ));
    // A deeper branch that overtakes comes through a sync (requested).
    let deep = branch(&fixture, &main[30], 12, 1_500);
    for block in &deep {
        let now = now.max(block.header.timestamp);
        fixture.chain.process_block(block.clone(), now).unwrap();
    }
    assert_eq!(reader.tip().hash, deep[11].hash());
}
