//! The P2P layer inside real nodes (`node::Node::start`: chain writer
//! thread, mempool, miner, RPC), on loopback with temp dirs: a line of
//! three exchanges txs and blocks; and, `#[ignore]`d, the benchmarks of
//! `p2p_bench.rs` run against real nodes:
//!
//! ```text
//! cargo test --release -p node --test p2p_real_nodes -- --ignored --nocapture --test-threads 1
//! ```

use ledger::Height;
use node::test_utils::p2p_net;

use ledger::{BlockHash, Transaction, TxId};
use node::events::NodeEvent;
use node::{Node, NodeConfig};
use p2p_net::{
    block_connected, dev_address, percentile, regtest, temp_dirs, txs_accepted, wait_for,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

/// Dev account `from` pays 1,000 + `nonce` to the next dev account.
fn transfer(from: usize, nonce: u64) -> Transaction {
    let genesis = regtest().genesis_hash();
    let to = dev_address((from + 1) % 10);
    p2p_net::transfer_with_memo(&genesis, from, to, 1_000 + nonce, 1_000, nonce, "")
}

/// `count` transfers spread over the ten dev accounts, nonces in order.
fn transfers(count: usize, first_nonce: u64) -> Vec<Transaction> {
    (0..count)
        .map(|index| transfer(index % 10, first_nonce + (index / 10) as u64))
        .collect()
}

async fn start_line(n: usize, dirs: &[tempfile::TempDir]) -> Vec<node::RunningNode> {
    let mut nodes: Vec<node::RunningNode> = Vec::new();
    for dir in dirs.iter().take(n) {
        let mut config = NodeConfig::for_tests(regtest(), dir.path());
        if let Some(previous) = nodes.last() {
            config.peers = vec![previous.p2p_addr.to_string()];
        }
        nodes.push(Node::start(config).await.expect("node starts"));
    }
    for index in 1..nodes.len() {
        let left = nodes[index - 1].handle.clone();
        let right = nodes[index].handle.clone();
        let (left_id, right_id) = (left.node_id().to_string(), right.node_id().to_string());
        wait_for("link up", LONG, || {
            let left_sees = left
                .network()
                .is_some_and(|p2p| p2p.peers().iter().any(|peer| peer.node_id == right_id));
            let right_sees = right
                .network()
                .is_some_and(|p2p| p2p.peers().iter().any(|peer| peer.node_id == left_id));
            left_sees && right_sees
        })
        .await;
    }
    nodes
}

fn in_mempool(node: &node::RunningNode, txid: &TxId) -> bool {
    node.handle
        .lookup_tx(txid)
        .is_some_and(|lookup| lookup.block_hash.is_none())
}

fn tip(node: &node::RunningNode) -> BlockHash {
    node.handle.reader().tip().hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nodes_in_a_line_share_txs_and_blocks() {
    let dirs = temp_dirs(3);
    let nodes = start_line(3, &dirs).await;
    let tx = transfer(2, 0);
    let txid = nodes[2]
        .handle
        .submit_tx(tx)
        .await
        .expect("admitted at node 3");
    wait_for("tx at node 1", LONG, || in_mempool(&nodes[0], &txid)).await;
    let hashes = nodes[0].handle.mine_blocks(3).await.expect("mined");
    let last = *hashes.last().expect("three blocks");
    wait_for("blocks everywhere", LONG, || {
        nodes.iter().all(|node| tip(node) == last)
    })
    .await;
    for node in &nodes {
        assert!(
            node.handle.reader().tx(&txid).is_some(),
            "tx confirmed everywhere"
        );
    }
    for (index, node) in nodes.iter().enumerate() {
        let received = node
            .handle
            .metrics()
            .counter("p2p_messages_received_total", &[("kind", "tx")]);
        let expected = if index == 2 { 0 } else { 1 };
        assert_eq!(
            received,
            expected,
            "node {} received the tx {received} times",
            index + 1
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// A fresh node syncing through the real chain writer, which commits the
/// synced blocks a few at a time: every block is still published once, in
/// order, and indexed, and the state ends equal to the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synced_chain_is_published_indexed_and_equal_to_the_source() {
    const BLOCKS: u64 = 40;
    let dirs = temp_dirs(2);
    let source = Node::start(NodeConfig::for_tests(regtest(), dirs[0].path()))
        .await
        .expect("source starts");
    let mut txids = Vec::new();
    for height in 0..BLOCKS {
        for tx in transfers(3, height) {
            txids.push(source.handle.submit_tx(tx).await.expect("admitted"));
        }
        source.handle.mine_blocks(1).await.expect("mined");
    }
    let source_tip = tip(&source);
    let mut config = NodeConfig::for_tests(regtest(), dirs[1].path());
    config.peers = vec![source.p2p_addr.to_string()];
    let fresh = Node::start(config).await.expect("fresh starts");
    wait_for("fresh node synced", LONG, || tip(&fresh) == source_tip).await;
    let published = || {
        fresh
            .handle
            .metrics()
            .counter("blocks_accepted_total", &[("branch", "best")])
    };
    wait_for("every block published", LONG, || published() >= BLOCKS).await;
    wait_for("every tx indexed", LONG, || {
        txids
            .iter()
            .all(|txid| fresh.handle.reader().tx(txid).is_some())
    })
    .await;
    assert_eq!(published(), BLOCKS, "each block published once");
    for height in 1..=BLOCKS {
        assert_eq!(
            fresh.handle.reader().hash_at(Height(height)),
            source.handle.reader().hash_at(Height(height))
        );
    }
    assert_eq!(
        fresh.handle.reader().state_summary(),
        source.handle.reader().state_summary()
    );
    fresh.shutdown().await;
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn bench_real_nodes_tx_propagation_500_txs_line_of_4() {
    let dirs = temp_dirs(4);
    let nodes = start_line(4, &dirs).await;
    let txs = transfers(500, 0);
    let wanted: HashSet<TxId> = txs.iter().map(Transaction::txid).collect();
    let mut last_events = nodes[3].handle.subscribe_events();
    let origin = nodes[0].handle.clone();
    let started = Instant::now();
    for tx in txs {
        origin.submit_tx(tx).await.expect("admitted");
    }
    let submitted = started.elapsed();
    txs_accepted(&mut last_events, &wanted, LONG).await;
    let elapsed = started.elapsed();
    for node in &nodes {
        assert!(wanted.iter().all(|txid| in_mempool(node, txid)));
    }
    println!(
        "FIGURE real nodes, tx propagation: 500 txs submitted at node 1 in all 4 mempools after {:.1} ms (submitting took {:.1} ms)",
        elapsed.as_secs_f64() * 1e3,
        submitted.as_secs_f64() * 1e3
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn bench_real_nodes_block_propagation_500_tx_blocks_line_of_4() {
    const BLOCKS: usize = 50;
    const TXS_PER_BLOCK: usize = 500;
    let dirs = temp_dirs(4);
    let nodes = start_line(4, &dirs).await;
    let mut last_events = nodes[3].handle.subscribe_events();
    // When each node connected each block, to split the total into hops.
    let arrivals: Arc<Mutex<HashMap<(usize, BlockHash), Instant>>> = Arc::default();
    for (index, node) in nodes.iter().enumerate() {
        let mut events = node.handle.subscribe_events();
        let arrivals = Arc::clone(&arrivals);
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let NodeEvent::BlockConnected { block, .. } = event {
                    let now = Instant::now();
                    arrivals.lock().unwrap().insert((index, block.hash()), now);
                }
            }
        });
    }
    let mut hops: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    let mut times = Vec::new();
    let mut mine_times = Vec::new();
    for block_index in 0..BLOCKS {
        // A real node's mine call takes every tx that fits, so each round
        // puts exactly 500 new txs in every mempool first (each node admits
        // them itself; this is not timed).
        let txs = transfers(TXS_PER_BLOCK, (block_index * TXS_PER_BLOCK / 10) as u64);
        for node in &nodes {
            let handle = node.handle.clone();
            let batch = txs.clone();
            tokio::task::spawn_blocking(move || {
                for tx in batch {
                    let _ = handle.submit_tx_blocking(tx);
                }
            })
            .await
            .expect("filling");
        }
        wait_for("mempools full", LONG, || {
            nodes
                .iter()
                .all(|node| node.handle.mempool_summary(0).count == TXS_PER_BLOCK)
        })
        .await;
        let started = Instant::now();
        let hashes = nodes[0].handle.mine_blocks(1).await.expect("mined");
        mine_times.push(started.elapsed());
        let hash = hashes[0];
        block_connected(&mut last_events, hash, LONG).await;
        times.push(started.elapsed());
        wait_for("every node's arrival recorded", LONG, || {
            let arrivals = arrivals.lock().unwrap();
            (0..4).all(|index| arrivals.contains_key(&(index, hash)))
        })
        .await;
        {
            let arrivals = arrivals.lock().unwrap();
            let mut previous = started;
            for (index, hop) in hops.iter_mut().enumerate() {
                let at = arrivals[&(index, hash)];
                hop.push(at.saturating_duration_since(previous));
                previous = at;
            }
        }
        let txs_in_block = nodes[3]
            .handle
            .reader()
            .block(&hash)
            .map(|block| block.txs.len())
            .unwrap_or(0);
        assert_eq!(txs_in_block, TXS_PER_BLOCK, "block has {txs_in_block} txs");
        wait_for("mempools drained", LONG, || {
            nodes
                .iter()
                .all(|node| node.handle.mempool_summary(0).count == 0)
        })
        .await;
    }
    times.sort();
    mine_times.sort();
    println!(
        "FIGURE real nodes, of which the mine call itself (template, proof-of-work, connect on node 1): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mine_times, 0.5).as_secs_f64() * 1e3,
        percentile(&mine_times, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "FIGURE real nodes, block propagation (mine call on node 1 -> tip of node 4, {TXS_PER_BLOCK} txs/block, {BLOCKS} blocks): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
    for (index, hop) in hops.iter_mut().enumerate() {
        hop.sort();
        let what = if index == 0 {
            "mine call -> node 1 connected".to_string()
        } else {
            format!("node {index} connected -> node {} connected", index + 1)
        };
        println!(
            "FIGURE real nodes, block propagation hop {what}: p50 {:.2} ms, p99 {:.2} ms",
            percentile(hop, 0.5).as_secs_f64() * 1e3,
            percentile(hop, 0.99).as_secs_f64() * 1e3
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn bench_real_nodes_fresh_sync_2000_blocks_of_20_txs() {
    const BLOCKS: u64 = 2_000;
    let dirs = temp_dirs(2);
    let source = Node::start(NodeConfig::for_tests(regtest(), dirs[0].path()))
        .await
        .expect("source starts");
    let built = Instant::now();
    for height in 0..BLOCKS {
        for tx in transfers(20, height * 2) {
            source.handle.submit_tx(tx).await.expect("admitted");
        }
        source.handle.mine_blocks(1).await.expect("mined");
    }
    let source_tip = tip(&source);
    println!(
        "(built {BLOCKS} blocks in {:.1} s)",
        built.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut config = NodeConfig::for_tests(regtest(), dirs[1].path());
    config.peers = vec![source.p2p_addr.to_string()];
    let fresh = Node::start(config).await.expect("fresh starts");
    wait_for("fresh node synced", LONG, || tip(&fresh) == source_tip).await;
    let elapsed = started.elapsed();
    println!(
        "FIGURE real nodes, sync: fresh node took {:.3} s for {BLOCKS} blocks of 20 txs = {:.0} blocks/s",
        elapsed.as_secs_f64(),
        BLOCKS as f64 / elapsed.as_secs_f64()
    );
    fresh.shutdown().await;
    source.shutdown().await;
}
