//! The in-memory backend (`MemoryArena`) against the sled one: the same
//! blocks, a reorg included, leave the same chain, state and indexes; and
//! two chains in one arena keep apart while sharing their equal data.

use crate::common::*;
use ledger::chain::{Chain, MemoryArena, ProcessOutcome};
use ledger::Height;
use ledger::{Block, Header, Transaction};

/// Three blocks on genesis, then a four-block branch from the first of
/// them that takes over (a reorg of depth two).
fn blocks_with_a_reorg() -> Vec<Block> {
    let spec = regtest();
    let genesis = spec.genesis_hash();
    let tx = |from: usize, to: usize, nonce: u64| -> Transaction {
        transfer(&genesis, from, dev_address(to), 100_000, 1000, nonce)
    };
    let build = |parent: &Header, txs: Vec<Transaction>, miner: usize| -> Block {
        block_on(
            &spec,
            parent,
            parent.timestamp + 2000,
            dev_address(miner),
            txs,
        )
    };
    let first = build(&spec.genesis_block().header, vec![tx(0, 1, 0)], 2);
    let a2 = build(&first.header, vec![tx(0, 1, 1), tx(1, 3, 0)], 2);
    let a3 = build(&a2.header, vec![tx(0, 4, 2)], 2);
    let b2 = build(&first.header, vec![tx(1, 5, 0)], 6);
    let b3 = build(&b2.header, vec![tx(0, 5, 1)], 6);
    let b4 = build(&b3.header, vec![], 6);
    let b5 = build(&b4.header, vec![tx(0, 1, 2)], 6);
    vec![first, a2, a3, b2, b3, b4, b5]
}

fn apply(chain: &mut Chain, blocks: &[Block]) -> usize {
    let mut reorgs = 0;
    for block in blocks {
        let now = block.header.timestamp;
        if let ProcessOutcome::Connected(update) = chain.process_block(block.clone(), now).unwrap()
        {
            reorgs += usize::from(update.is_reorg());
        }
    }
    reorgs
}

#[test]
fn a_chain_in_memory_ends_where_the_same_chain_on_sled_ends() {
    let blocks = blocks_with_a_reorg();
    let dir = tempfile::tempdir().unwrap();
    let mut on_disk = Chain::open(regtest(), dir.path()).unwrap();
    let arena = MemoryArena::new();
    let mut in_memory = Chain::open_in_memory(regtest(), &arena, "one").unwrap();
    assert_eq!(apply(&mut on_disk, &blocks), 1);
    assert_eq!(apply(&mut in_memory, &blocks), 1);
    on_disk.flush().unwrap();
    in_memory.flush().unwrap();
    let (disk, memory) = (on_disk.reader(), in_memory.reader());
    assert_eq!(memory.tip(), disk.tip());
    assert_eq!(memory.tip().height, Height(5));
    assert_eq!(memory.state_summary(), disk.state_summary());
    for block in &blocks {
        let hash = block.hash();
        assert_eq!(
            memory.hash_at(block.header.height),
            disk.hash_at(block.header.height)
        );
        assert_eq!(memory.has_block(&hash), disk.has_block(&hash));
        for tx in &block.txs {
            let txid = tx.txid();
            assert_eq!(memory.tx(&txid), disk.tx(&txid), "tx {txid}");
        }
    }
    for address in 0..7 {
        let address = dev_address(address);
        assert_eq!(
            memory.address_txs(&address, 10, None),
            disk.address_txs(&address, 10, None)
        );
        assert_eq!(memory.account(&address), disk.account(&address));
    }
    // The reorged-out txs are not indexed on either.
    let gone = blocks[2].txs[0].txid();
    assert!(memory.tx(&gone).is_none());
}

#[test]
fn chains_in_one_arena_keep_apart_and_hold_shared_blocks_once() {
    let blocks = blocks_with_a_reorg();
    let arena = MemoryArena::new();
    let mut ahead = Chain::open_in_memory(regtest(), &arena, "ahead").unwrap();
    let mut behind = Chain::open_in_memory(regtest(), &arena, "behind").unwrap();
    apply(&mut behind, &blocks[..3]);
    apply(&mut ahead, &blocks[..3]);
    behind.flush().unwrap();
    ahead.flush().unwrap();
    let (_, _, bytes_both) = arena.footprint();
    // The same blocks on one chain alone, in an arena of its own.
    let solo_arena = MemoryArena::new();
    let mut solo = Chain::open_in_memory(regtest(), &solo_arena, "solo").unwrap();
    apply(&mut solo, &blocks[..3]);
    solo.flush().unwrap();
    let (_, _, bytes_one) = solo_arena.footprint();
    // The second chain of the same blocks adds only what differs (none).
    assert_eq!(bytes_both, bytes_one);
    apply(&mut ahead, &blocks[3..]);
    ahead.flush().unwrap();
    behind.flush().unwrap();
    assert_eq!(ahead.reader().tip().height, Height(5));
    assert_eq!(behind.reader().tip().height, Height(3));
    assert_eq!(behind.reader().tip().hash, blocks[2].hash());
    let branch_tx = blocks[3].txs[0].txid();
    assert!(ahead.reader().tx(&branch_tx).is_some());
    assert!(behind.reader().tx(&branch_tx).is_none());
    assert!(!behind.reader().has_block(&blocks[6].hash()));
}
