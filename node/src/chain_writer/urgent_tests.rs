//! The writer's urgent jobs and deferred bookkeeping, on a running node.

use crate::p2p::codec::encode_message;
use crate::p2p::message::{CompactBlock, Message};
use crate::p2p::{BlockVerdict, ConnId, JudgeNow};
use crate::test_utils::regtest_node;
use futures::FutureExt;
use ledger::testing::transfer;
use ledger::{Address, ChainSpec};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// A solved block of `txs` on the writer's tip.
async fn solved_block(
    spec: &ChainSpec,
    writer: &crate::chain_writer::ChainWriter,
    txs: Vec<ledger::Transaction>,
) -> ledger::Block {
    let context = writer.next_block_context().await.unwrap();
    let mut block = ledger::miner::build_block(spec, &context, Address([7; 20]), txs);
    assert!(ledger::miner::solve(
        &mut block.header,
        &AtomicBool::new(false),
        1
    ));
    block
}

/// A peer's block is the tip as soon as it is processed, while its tx
/// still reads as pending: an urgent job queued behind the block runs on
/// the writer's thread before the block's bookkeeping. The block is relayed
/// in the compact form it was rebuilt from, not one of the writer's own.
/// Once idle, the writer settles the block: the tx is indexed and out of
/// the mempool.
#[tokio::test]
async fn an_urgent_job_runs_on_the_writer_before_a_blocks_bookkeeping() {
    let (_dir, spec, node) = regtest_node().await;
    let genesis = spec.genesis_hash();
    let tx = transfer(&genesis, 0, Address([9; 20]), 5, 1_000, 0);
    let txid = node.handle.submit_tx(tx.clone()).await.unwrap();
    let writer = node.handle.writer().clone();
    let block = solved_block(&spec, &writer, vec![tx]).await;
    let hash = block.hash();
    // As the peer sent it: everything prefilled (the writer's own choice
    // would send the tx, long in our mempool, as a short id).
    let txids: Vec<ledger::TxId> = block.txs.iter().map(|tx| tx.txid()).collect();
    let received = CompactBlock::prefilling(&block, &txids, |_| true);
    node.handle.shared.relay_cache.note_received(&received);

    // Hold the writer on a first job, so the block and the second job are
    // both queued when it goes on: nothing here depends on timing.
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let held = writer.run_urgent(Box::new(move || {
        let _ = gate.recv();
        None
    }));
    assert!(held.is_ok(), "the writer is running");
    assert!(writer.submit_peer_block(block).now_or_never().is_none());
    let reader = node.handle.reader().clone();
    let (seen, look) = std::sync::mpsc::channel();
    let queued = writer.run_urgent(Box::new(move || {
        let name = std::thread::current().name().map(str::to_owned);
        let _ = seen.send((name, reader.tip().hash, reader.tx(&txid).is_some()));
        None
    }));
    assert!(queued.is_ok(), "the writer is running");
    open.send(()).unwrap();
    let (name, tip, indexed) = tokio::task::spawn_blocking(move || look.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("chain-writer"));
    assert_eq!(tip, hash, "the block was processed first");
    assert!(!indexed, "its bookkeeping waits for an idle writer");
    assert_eq!(
        node.handle.shared.relay_cache.compact(&hash),
        Some(encode_message(&Message::CompactBlock(Box::new(received)))),
        "relayed as received"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    while node.handle.reader().tx(&txid).is_none() || node.handle.mempool().contains(&txid) {
        assert!(Instant::now() < deadline, "the block was never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await;
}

/// A job that panics (a bug hit by what a peer sent) costs that job only:
/// the writer runs the next one and still takes blocks.
#[tokio::test]
async fn a_panicking_urgent_job_leaves_the_writer_running() {
    let (_dir, _, node) = regtest_node().await;
    let writer = node.handle.writer().clone();
    let queued = writer.run_urgent(Box::new(|| panic!("a bug in a rebuild")));
    assert!(queued.is_ok(), "the writer is running");
    let (done, ran) = std::sync::mpsc::channel();
    let queued = writer.run_urgent(Box::new(move || {
        let _ = done.send(());
        None
    }));
    assert!(queued.is_ok(), "the writer is still running");
    tokio::task::spawn_blocking(move || ran.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the next job ran");
    assert!(writer.next_block_context().await.is_ok());
    node.shutdown().await;
}

/// A block an urgent job rebuilt is judged on the writer's thread right
/// after the job, as a peer's block would be: it is the tip when the
/// verdict comes, and the job's txids spared hashing its txs again. One
/// whose parent the chain lacks comes back to the caller unjudged.
#[tokio::test]
async fn a_block_an_urgent_job_rebuilt_is_judged_on_the_writer_at_once() {
    let (_dir, spec, node) = regtest_node().await;
    let genesis = spec.genesis_hash();
    let tx = transfer(&genesis, 0, Address([9; 20]), 5, 1_000, 0);
    node.handle.submit_tx(tx.clone()).await.unwrap();
    let writer = node.handle.writer().clone();
    let block = solved_block(&spec, &writer, vec![tx]).await;
    let hash = block.hash();
    let mut orphan = block.clone();
    orphan.header.prev_hash = ledger::BlockHash(ledger::Hash256([3; 32]));

    let judged = |block: ledger::Block| {
        let (tell, told) = std::sync::mpsc::channel();
        let txids = block.txids();
        let queued = writer.run_urgent(Box::new(move || {
            Some(JudgeNow {
                from: ConnId(7),
                block,
                txids,
                then: Box::new(move |outcome| {
                    let name = std::thread::current().name().map(str::to_owned);
                    let _ = tell.send((name, outcome));
                }),
            })
        }));
        assert!(queued.is_ok(), "the writer is running");
        told
    };
    let told = judged(orphan.clone());
    let (name, outcome) = tokio::task::spawn_blocking(move || told.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("chain-writer"));
    assert_eq!(outcome, Err(orphan), "an orphan goes back unjudged");

    let told = judged(block);
    let (name, outcome) = tokio::task::spawn_blocking(move || told.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("chain-writer"));
    assert_eq!(outcome, Ok(BlockVerdict::Accepted));
    assert_eq!(node.handle.reader().tip().hash, hash);
    node.shutdown().await;
}
