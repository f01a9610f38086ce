//! Attack 2 of the threat model (ARCHITECTURE.md): side branches with
//! less work than the tip, sent unrequested, are not stored, and those a
//! sync stores are bounded in depth and number, so a peer cannot fill the
//! disk and the block index with cheap blocks; a branch that overtakes
//! still wins.

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

/// The same attack through a sync: a peer that claims more work feeds a
/// fork from genesis block by block, and a sync stores what it asked for.
/// Side branches are bounded instead: past the cap on side blocks the side
/// leaf with the least work is forgotten, from the index and the store.
/// (Regtest's target cannot ease, so the fork is kept shorter than the
/// chain, and the cap is set below its length; the depth rule is off.)
#[test]
fn low_work_side_branches_filling_disk_and_memory_through_a_sync() {
    use ledger::chain::SideBranchLimits;
    const CAP: usize = 16;
    let mut fixture = Fixture::new();
    fixture
        .chain
        .set_side_branch_limits(SideBranchLimits {
            depth: 10_000,
            max_blocks: CAP,
        })
        .unwrap();
    let genesis = fixture.spec.genesis_block();
    let main = branch(&fixture, &genesis, 80, 2_000);
    for block in &main {
        fixture.submit(block.clone()).unwrap();
    }
    let now = main[79].header.timestamp;
    let reader = fixture.chain.reader();
    let (stored_before, index_before) = (reader.stored_block_count(), fixture.chain.index_len());
    let fed = 70;
    let fork = branch(&fixture, &genesis, fed, 60_000);
    let (mut stored_as_side, mut orphaned) = (0, 0);
    let mut most_indexed = 0;
    for block in &fork {
        let now = now.max(block.header.timestamp);
        match fixture.chain.process_block(block.clone(), now).unwrap() {
            ProcessOutcome::SideChain => stored_as_side += 1,
            // Its parent, the fork's weakest leaf, was forgotten.
            ProcessOutcome::Orphan => orphaned += 1,
            other => panic!("low-work block taken: {other:?}"),
        }
        most_indexed = most_indexed.max(fixture.chain.index_len() - index_before);
    }
    let stored = reader.stored_block_count() - stored_before;
    let indexed = fixture.chain.index_len() - index_before;
    println!(
        "FIGURE attack 2 (through a sync): of {fed} fork blocks {stored_as_side} stored as side \
         blocks, {orphaned} orphaned; store grew by {stored} blocks, index by {indexed} \
         (at most {most_indexed}); {} pruned",
        fixture.chain.pruned_side_blocks()
    );
    assert!(most_indexed <= CAP, "index grew by {most_indexed}");
    assert!(stored <= CAP, "store grew by {stored}");
    assert!(fixture.chain.side_block_count() <= CAP);
    assert!(fixture.chain.orphan_count() <= ledger::chain::MAX_ORPHANS);
    assert_eq!(reader.tip().hash, main[79].hash());
}

/// A side branch forking deeper than the depth below the tip, and not
/// grown while the tip advanced as many blocks, is forgotten with its
/// descendants, from memory and from the store.
#[test]
fn stale_side_branches_deeper_than_the_limit_are_pruned_from_memory_and_disk() {
    use ledger::chain::SideBranchLimits;
    let mut fixture = Fixture::new();
    fixture
        .chain
        .set_side_branch_limits(SideBranchLimits {
            depth: 20,
            ..SideBranchLimits::default()
        })
        .unwrap();
    let genesis = fixture.spec.genesis_block();
    let main = branch(&fixture, &genesis, 30, 2_000);
    for block in &main[..10] {
        fixture.submit(block.clone()).unwrap();
    }
    // A three-block side branch forking at height 5 (equal work at first).
    let side = branch(&fixture, &main[4], 3, 1_900);
    for block in &side {
        fixture.submit(block.clone()).unwrap();
    }
    let reader = fixture.chain.reader();
    assert_eq!(fixture.chain.side_block_count(), 3);
    let stored_with_side = reader.stored_block_count();
    // The branch arrived with the tip at 10; up to 29 it is deep (its fork
    // point more than 20 below) but has not been stale for 20 blocks.
    for block in &main[10..29] {
        fixture.submit(block.clone()).unwrap();
    }
    assert!(side
        .iter()
        .all(|block| fixture.chain.contains(&block.hash())));
    // At 30 it is: the whole branch goes, from memory and from the store.
    fixture.submit(main[29].clone()).unwrap();
    assert!(side
        .iter()
        .all(|block| !fixture.chain.contains(&block.hash())));
    assert!(side
        .iter()
        .all(|block| reader.block_status(&block.hash()).is_none()));
    assert_eq!(fixture.chain.side_block_count(), 0);
    assert_eq!(reader.stored_block_count(), stored_with_side + 20 - 3);
    // Reopened, the store holds no trace of it.
    let dir = fixture.dir.path().to_path_buf();
    fixture.chain.flush().unwrap();
    drop(reader);
    let Fixture {
        chain, dir: _dir, ..
    } = fixture;
    drop(chain);
    let reopened = ledger::chain::Chain::open(regtest(), &dir).unwrap();
    assert_eq!(reopened.side_block_count(), 0);
    assert_eq!(reopened.index_len(), 31);
    assert_eq!(reopened.tip().hash, main[29].hash());
}
