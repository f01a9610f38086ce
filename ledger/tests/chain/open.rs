//! Opening a store: another chain's data dir, corruption, leftover
//! half-written snapshots, and the reader's view.

use crate::common::*;
use ledger::amount::COIN;
use ledger::chain::{Chain, ChainError};
use ledger::ChainSpec;
use ledger::Height;

/// The store's sled database itself, to damage it. sled lets go of its
/// directory lock a moment after the last handle is dropped (its flusher
/// thread ends first), so the lock is waited for, as `Store::open` does.
fn raw_db(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(error) if std::time::Instant::now() < deadline => {
                assert!(error.to_string().contains("lock"), "{error}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("cannot open the store's database: {error}"),
        }
    }
}

#[test]
fn data_dir_of_another_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Chain::open(regtest(), dir.path()).unwrap());
    let error = Chain::open(ChainSpec::builtin("dev").unwrap(), dir.path())
        .err()
        .expect("must refuse");
    assert!(matches!(error, ChainError::WrongChain { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        !message.contains('\n') && message.contains("regtest"),
        "{message}"
    );
}

#[test]
fn corrupt_tip_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut fixture_chain = Chain::open(regtest(), dir.path()).unwrap();
        let spec = regtest();
        let genesis = spec.genesis_block();
        let block = block_on(
            &spec,
            &genesis.header,
            genesis.header.timestamp + 1000,
            dev_address(1),
            vec![],
        );
        fixture_chain
            .process_block(block, genesis.header.timestamp + 1000)
            .unwrap();
    }
    {
        // Point the tip at a block that is not in the index.
        let db = raw_db(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("tip", &[7u8; 32][..])
            .unwrap();
        db.flush().unwrap();
    }
    let error = Chain::open(regtest(), dir.path())
        .err()
        .expect("must refuse");
    assert!(matches!(error, ChainError::Corrupt { .. }), "{error:?}");
    {
        let db = raw_db(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("tip", &[1u8; 5][..])
            .unwrap();
        // And an undecodable index entry.
        db.open_tree("block_index")
            .unwrap()
            .insert([9u8; 32], &[1u8, 2, 3][..])
            .unwrap();
        db.flush().unwrap();
    }
    let error = Chain::open(regtest(), dir.path())
        .err()
        .expect("must refuse");
    assert!(matches!(error, ChainError::Corrupt { .. }), "{error:?}");
}

#[test]
fn missing_height_entry_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut chain = Chain::open(regtest(), dir.path()).unwrap();
        let spec = regtest();
        let mut parent = spec.genesis_block().header;
        for _ in 0..3 {
            let block = block_on(
                &spec,
                &parent,
                parent.timestamp + 1000,
                dev_address(1),
                vec![],
            );
            parent = block.header.clone();
            chain.process_block(block, parent.timestamp).unwrap();
        }
    }
    {
        let db = raw_db(dir.path());
        db.open_tree("best_chain")
            .unwrap()
            .remove(1u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let error = Chain::open(regtest(), dir.path())
        .err()
        .expect("must refuse");
    assert!(matches!(error, ChainError::Corrupt { .. }), "{error:?}");
}

#[test]
fn half_written_snapshot_is_removed_before_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Chain::open(regtest(), dir.path()).unwrap());
    // What a kill during snapshot generation leaves behind.
    let leftover = dir.path().join("snap.00000000000abcde.generating");
    std::fs::write(&leftover, b"half a snapshot").unwrap();
    let chain = Chain::open(regtest(), dir.path()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(chain.tip().height, Height::ZERO);
}

#[test]
fn reader_views_follow_the_chain() {
    let mut fixture = Fixture::new();
    for nonce in 0..3 {
        let block = fixture.next_block(vec![
            fixture.transfer(0, 1, COIN, nonce),
            fixture.transfer(2, 0, COIN, nonce),
        ]);
        fixture.submit(block).unwrap();
    }
    let reader = fixture.chain.reader();
    let tip = reader.tip();
    assert_eq!(tip, fixture.chain.tip());
    assert_eq!(tip.height, Height(3));
    let history = reader.address_txs(&dev_address(0), 10, None);
    assert_eq!(history.len(), 6);
    assert!(history
        .windows(2)
        .all(|pair| (pair[0].1.height, pair[0].1.index) > (pair[1].1.height, pair[1].1.index)));
    assert_eq!(reader.address_txs(&dev_address(0), 2, None).len(), 2);
    // Pages after a cursor (inside a block and across blocks) join up to
    // the whole history.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = reader.address_txs(&dev_address(0), 4, cursor);
        let Some(last) = page.last() else { break };
        cursor = Some((last.1.height, last.1.index));
        paged.extend(page);
    }
    assert_eq!(paged, history);
    let page = reader.address_txs(&dev_address(0), 1, Some((Height(3), 1)));
    assert_eq!(page, history[1..2]);
    let (tx, location) = reader.tx(&history[0].0.txid()).unwrap();
    assert_eq!(tx, history[0].0);
    assert_eq!(location.height, Height(3));
    let locator = reader.locator();
    assert_eq!(locator.first(), Some(&tip.hash));
    assert_eq!(locator.last(), Some(&fixture.genesis));
    let headers = reader.headers_after(&[fixture.genesis], 10);
    assert_eq!(headers.len(), 3);
    assert_eq!(headers[2].hash(), tip.hash);
    assert!(reader.headers_after(&locator, 10).is_empty());
    let context = fixture.chain.next_block_context(0);
    assert_eq!(context.height, Height(4));
    assert_eq!(context.prev_hash, tip.hash);
    assert!(context.min_timestamp > fixture.spec.genesis_timestamp);
    let aux = fixture.chain.aux_tree("peers").unwrap();
    aux.insert(b"a", b"1").unwrap();
    assert_eq!(aux.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(aux.iter().unwrap().len(), 1);
    aux.remove(b"a").unwrap();
    assert_eq!(aux.get(b"a").unwrap(), None);
}

#[test]
fn side_branch_with_a_missing_body_is_never_connected() {
    let spec = regtest();
    let genesis = spec.genesis_block();
    let dir = tempfile::tempdir().unwrap();
    let build = |parent: &ledger::block::Header, length: usize, miner: usize| {
        let mut parent = parent.clone();
        let mut blocks = Vec::new();
        for _ in 0..length {
            let block = block_on(
                &spec,
                &parent,
                parent.timestamp + 1000 + miner as u64,
                dev_address(miner),
                vec![],
            );
            parent = block.header.clone();
            blocks.push(block);
        }
        blocks
    };
    let main = build(&genesis.header, 2, 1);
    let side = build(&genesis.header, 3, 2);
    let now = side[2].header.timestamp;
    {
        let mut chain = Chain::open(spec.clone(), dir.path()).unwrap();
        for block in main.iter().chain(&side[..2]) {
            chain.process_block(block.clone(), now).unwrap();
        }
        assert_eq!(chain.tip().hash, main[1].hash());
    }
    {
        let db = raw_db(dir.path());
        db.open_tree("blocks")
            .unwrap()
            .remove(side[0].hash().as_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let mut chain = Chain::open(spec.clone(), dir.path()).unwrap();
    let outcome = chain.process_block(side[2].clone(), now).unwrap();
    assert_eq!(outcome, ledger::chain::ProcessOutcome::SideChain);
    assert_eq!(chain.tip().hash, main[1].hash());
    // A missing best-chain body, though, is corruption.
    drop(chain);
    {
        let db = raw_db(dir.path());
        db.open_tree("blocks")
            .unwrap()
            .remove(main[0].hash().as_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let error = Chain::open(spec, dir.path()).err().expect("must refuse");
    assert!(matches!(error, ChainError::Corrupt { .. }), "{error:?}");
}

#[test]
fn deferred_indexes_wait_for_write_indexes_and_survive_a_stop_before_it() {
    let mut fixture = Fixture::new();
    fixture.chain.set_defer_indexing(true);
    let first = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 0)]);
    let first_txid = first.txs[0].txid();
    fixture.submit(first).unwrap();
    let reader = fixture.chain.reader();
    assert_eq!(reader.tip().height, Height(1), "connected at once");
    assert!(reader.tx(&first_txid).is_none(), "not indexed yet");
    fixture.chain.write_indexes().unwrap();
    assert_eq!(reader.tx(&first_txid).unwrap().1.height, Height(1));

    // Processing the next block first indexes what is pending; a block
    // left unindexed by a stop (as by a crash) is indexed when reopened.
    let second = fixture.next_block(vec![fixture.transfer(0, 1, COIN, 1)]);
    let second_txid = second.txs[0].txid();
    let third = {
        fixture.submit(second).unwrap();
        fixture.next_block(vec![fixture.transfer(2, 1, COIN, 0)])
    };
    let third_txid = third.txs[0].txid();
    fixture.submit(third).unwrap();
    assert_eq!(reader.tx(&second_txid).unwrap().1.height, Height(2));
    assert!(reader.tx(&third_txid).is_none());
    let Fixture { chain, dir, .. } = fixture;
    drop((chain, reader));
    let reopened = Chain::open(regtest(), dir.path()).unwrap();
    let reader = reopened.reader();
    assert_eq!(reader.tip().height, Height(3));
    assert_eq!(reader.tx(&third_txid).unwrap().1.height, Height(3));
    assert_eq!(reader.address_txs(&dev_address(2), 10, None).len(), 1);
}

/// Genesis allocations are written before the transaction that records
/// genesis; a crash in between leaves accounts in a store with no genesis,
/// which the next open must clear, not keep beside the real allocations.
#[test]
fn accounts_left_by_an_interrupted_genesis_are_cleared() {
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = Chain::open(regtest(), fresh_dir.path())
        .unwrap()
        .reader()
        .state_summary();
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_db(dir.path());
        let accounts = db.open_tree("accounts").unwrap();
        accounts.insert([0x42u8; 20], vec![7u8; 16]).unwrap();
        db.flush().unwrap();
    }
    let reader = Chain::open(regtest(), dir.path()).unwrap().reader();
    assert_eq!(
        reader.account(&ledger::Address([0x42; 20])),
        ledger::state::Account::default()
    );
    let reopened = reader.state_summary();
    assert_eq!(reopened.digest, fresh.digest);
    assert_eq!(reopened.accounts, fresh.accounts);
    assert_eq!(reopened.total_supply, fresh.total_supply);
}
