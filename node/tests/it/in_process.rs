//! In-process nodes (`Node::start`), as the `testnet` crate runs them: the
//! background miner and graceful shutdown.

use ledger::chainspec::{dev_accounts, dev_secret_key};
use ledger::{Amount, ChainSpec, Transaction};
use node::{Node, NodeConfig};
use std::time::{Duration, Instant};

/// Waits for `condition` with a deadline, checking every 20 ms.
async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regtest_miner_paces_blocks_and_confirms_txs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ChainSpec::builtin("regtest").unwrap();
    let mut config = NodeConfig::for_tests(spec.clone(), dir.path());
    config.mine = true;
    let running = Node::start(config).await.unwrap();
    let node = running.handle.clone();
    assert!(node.status().mining);

    let tx = Transaction::new_signed(
        &dev_secret_key(5),
        &spec.genesis_hash(),
        dev_accounts()[6].address,
        Amount::from_base_units(77),
        Amount::from_base_units(1_000),
        0,
        String::new(),
    );
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
