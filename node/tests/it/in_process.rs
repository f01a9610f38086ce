//! In-process nodes (`Node::start`), as the `testnet` crate runs them: the
//! background miner and graceful shutdown.

use ledger::{Amount, ChainSpec};
use node::test_utils::{dev_address, wait_for as wait_until};
use node::{Node, NodeConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regtest_miner_paces_blocks_and_confirms_txs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ChainSpec::builtin("regtest").unwrap();
    let mut config = NodeConfig::for_tests(spec.clone(), dir.path());
    config.mine = true;
    let running = Node::start(config).await.unwrap();
    let node = running.handle.clone();
    assert!(node.status().mining);

    let tx = node::test_utils::transfer(&spec.genesis_hash(), 5, dev_address(6), 77, 1_000, 0);
    node.submit_tx(tx.clone()).await.unwrap();
    let reader = node.reader().clone();
    wait_until("the tx to confirm", Duration::from_secs(20), || {
        reader.tx(&tx.txid()).is_some()
    })
    .await;
    let confirmed_at = reader.tx(&tx.txid()).unwrap().1.height;
    wait_until("one more block", Duration::from_secs(20), || {
        reader.tip().height > confirmed_at
    })
    .await;

    // One block per block time (2 s) on regtest, not as fast as possible.
    let tip = reader.tip();
    let parent = reader
        .header(&reader.hash_at(tip.height - 1).unwrap())
        .unwrap();
    assert!(
        tip.timestamp - parent.timestamp >= spec.block_time_ms - 50,
        "blocks {} ms apart",
        tip.timestamp - parent.timestamp
    );

    let started = Instant::now();
    running.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// `NodeHandle` as the P2P layer sees it (`p2p::Backend`): verdicts for
/// blocks and txs, with misbehaviour only for what no honest peer sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_verdicts() {
    use node::p2p::{Backend, BlockVerdict, ChainView, TxVerdict};
    let spec = ChainSpec::builtin("regtest").unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(NodeConfig::for_tests(spec.clone(), dir_a.path()))
        .await
        .unwrap();
    let b = Node::start(NodeConfig::for_tests(spec.clone(), dir_b.path()))
        .await
        .unwrap();
    let transfer = |amount: u64, fee: u64| {
        node::test_utils::transfer(&spec.genesis_hash(), 1, dev_address(2), amount, fee, 0)
    };
    let tx = transfer(10, 1_000);
    a.handle.submit_tx(tx.clone()).await.unwrap();
    let hashes = a.handle.mine_blocks(2).await.unwrap();
    let first = a.handle.reader().block(&hashes[0]).unwrap();
    let second = a.handle.reader().block(&hashes[1]).unwrap();

    let node_b = b.handle.clone();
    assert_eq!(
        Backend::submit_block(&node_b, second.clone()).await,
        BlockVerdict::Orphan
    );
    let first = node_b.precheck_block(first).await;
    assert_eq!(
        Backend::submit_block(&node_b, first.clone()).await,
        BlockVerdict::Accepted
    );
    assert_eq!(
        Backend::submit_block(&node_b, first.clone()).await,
        BlockVerdict::Known
    );
    assert_eq!(
        ChainView::tip(&node_b).hash,
        hashes[1],
        "the orphan connected after its parent"
    );
    assert!(node_b.has_tx(&tx.txid()));

    let mut tampered = second;
    tampered.header.reward = Amount::from_base_units(tampered.header.reward.base_units() + 1);
    tampered.header.height += 1;
    tampered.header.prev_hash = hashes[1];
    match Backend::submit_block(&node_b, tampered).await {
        BlockVerdict::Rejected { .. } => {}
        other => panic!("tampered block: {other:?}"),
    }

    assert_eq!(
        Backend::submit_tx(&node_b, transfer(10, 1_000)).await,
        TxVerdict::Rejected {
            reason: "nonce_too_low".into(),
            misbehaving: false
        }
    );
    let fresh = node::test_utils::transfer(&spec.genesis_hash(), 3, dev_address(2), 5, 1_000, 0);
    assert_eq!(
        Backend::submit_tx(&node_b, fresh.clone()).await,
        TxVerdict::Accepted
    );
    assert_eq!(
        Backend::submit_tx(&node_b, fresh.clone()).await,
        TxVerdict::Known
    );
    assert_eq!(
        ChainView::mempool_tx(&node_b, &fresh.txid()),
        Some(fresh.clone())
    );
    let mut forged = fresh;
    forged.nonce = 1;
    match Backend::submit_tx(&node_b, forged).await {
        TxVerdict::Rejected {
            misbehaving: true,
            reason,
        } => assert_eq!(reason, "bad_signature"),
        other => panic!("forged tx: {other:?}"),
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Issue 14, attack 1: the node answers "do we have this tx" for peers
/// (`ChainView::has_tx`) from its indexes alone. Before, every confirmed
/// txid announced cost a read of the block that holds it, on the P2P task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_the_network_task_with_known_txids_reads_no_block() {
    use node::p2p::ChainView;
    let spec = ChainSpec::builtin("regtest").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = Node::start(NodeConfig::for_tests(spec.clone(), dir.path()))
        .await
        .unwrap();
    let node = running.handle.clone();
    let mut txids = Vec::new();
    for round in 0..3u64 {
        for sender in 0..10 {
            for nonce in round * 20..(round + 1) * 20 {
                let tx = node::test_utils::transfer(
                    &spec.genesis_hash(),
                    sender,
                    dev_address((sender + 1) % 10),
                    1_000,
                    1_000,
                    nonce,
                );
                txids.push(node.submit_tx(tx).await.unwrap());
            }
        }
        node.mine_blocks(1).await.unwrap();
    }
    let reader = node.reader().clone();
    assert!(
        txids.iter().all(|txid| reader.tx(txid).is_some()),
        "all confirmed"
    );
    let before = reader.block_reads();
    for _ in 0..10 {
        for txid in &txids {
            assert!(ChainView::has_tx(&node, txid));
        }
    }
    let unknown = ledger::TxId(ledger::Hash256::digest(b"never sent"));
    assert!(!ChainView::has_tx(&node, &unknown));
    assert_eq!(
        reader.block_reads() - before,
        0,
        "answering {} announcements of confirmed txs read blocks",
        txids.len() * 10
    );
    running.shutdown().await;
}
