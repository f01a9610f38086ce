//! P2P benchmarks on a line of four regtest nodes on loopback. They print
//! figures and assert nothing about speed; they are `#[ignore]` so the
//! normal suite stays fast. Run them in release:
//!
//! ```text
//! cargo test --release -p node --test p2p_bench -- --ignored --nocapture --test-threads 1
//! ```

use node::test_utils::p2p_net;

use ledger::{BlockHash, TxId};
use node::p2p::Backend;
use p2p_net::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

/// User plus system CPU time of this process, in seconds.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of those, in clock ticks (100 per second on Linux).
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// `count` signed transfers from the ten dev accounts, nonces in order.
fn make_txs(genesis: &BlockHash, count: usize, first_nonce: u64) -> Vec<ledger::Transaction> {
    (0..count)
        .map(|index| {
            let sender = index % 10;
            let nonce = first_nonce + (index / 10) as u64;
            transfer(genesis, sender, nonce, "")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn bench_tx_propagation_500_txs_line_of_4() {
    let dirs = temp_dirs(4);
    let nodes = line(&dirs[..4], LONG).await;
    let genesis = nodes[0].backend.genesis();
    let txs = make_txs(&genesis, 500, 0);
    let wanted: HashSet<TxId> = txs.iter().map(ledger::Transaction::txid).collect();
    let mut last_events = nodes[3].backend.subscribe();
    let origin = nodes[0].backend.clone();
    let started = Instant::now();
    let submitted = tokio::task::spawn_blocking(move || {
        for tx in txs {
            origin.add_tx(tx).expect("admitted");
        }
        Instant::now()
    })
    .await
    .expect("submitter");
    txs_accepted(&mut last_events, &wanted, LONG).await;
    let elapsed = started.elapsed();
    for node in &nodes {
        assert!(wanted.iter().all(|txid| node.backend.mempool_has(txid)));
    }
    println!(
        "FIGURE tx propagation: 500 txs submitted at node 1 in all 4 mempools after {:.1} ms (submitting took {:.1} ms)",
        elapsed.as_secs_f64() * 1e3,
        submitted.duration_since(started).as_secs_f64() * 1e3
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn bench_block_propagation_500_tx_blocks_line_of_4() {
    const BLOCKS: usize = 50;
    const TXS_PER_BLOCK: usize = 500;
    let dirs = temp_dirs(4);
    let nodes = line(&dirs[..4], LONG).await;
    let genesis = nodes[0].backend.genesis();
    let mut second_events = nodes[1].backend.subscribe();
    let mut last_events = nodes[3].backend.subscribe();
    let mut times = Vec::new();
    let mut mine_times = Vec::new();
    let mut first_hop_times = Vec::new();
    for block_index in 0..BLOCKS {
        // Each round puts 500 new txs in every mempool first (each node
        // admits them itself; not timed), as a real miner would find them.
        let txs = make_txs(
            &genesis,
            TXS_PER_BLOCK,
            (block_index * TXS_PER_BLOCK / 10) as u64,
        );
        let backends: Vec<TestBackend> = nodes.iter().map(|node| node.backend.clone()).collect();
        tokio::task::spawn_blocking(move || {
            for tx in txs {
                for backend in &backends {
                    let _ = backend.add_tx(tx.clone());
                }
            }
        })
        .await
        .expect("filling mempools");
        wait_for("mempools full", LONG, || {
            nodes
                .iter()
                .all(|node| node.backend.mempool_len() == TXS_PER_BLOCK)
        })
        .await;
        let origin = nodes[0].backend.clone();
        let started = Instant::now();
        let hash = tokio::task::spawn_blocking(move || origin.mine(TXS_PER_BLOCK))
            .await
            .expect("mining");
        mine_times.push(started.elapsed());
        block_connected(&mut second_events, hash, LONG).await;
        first_hop_times.push(started.elapsed());
        block_connected(&mut last_events, hash, LONG).await;
        times.push(started.elapsed());
        wait_for("block on every node", LONG, || {
            nodes.iter().all(|node| node.backend.tip_hash() == hash)
        })
        .await;
    }
    assert_eq!(nodes[3].backend.height(), BLOCKS as u64);
    times.sort();
    println!(
        "FIGURE block propagation (mine call on node 1 -> tip of node 4, {TXS_PER_BLOCK} txs/block, {BLOCKS} blocks): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    for (index, node) in nodes.iter().enumerate() {
        let mut processing = node.backend.process_times();
        processing.sort();
        if !processing.is_empty() {
            println!(
                "  node {}: chain process_block p50 {:.2} ms",
                index + 1,
                percentile(&processing, 0.5).as_secs_f64() * 1e3
            );
        }
    }
    mine_times.sort();
    first_hop_times.sort();
    println!(
        "  of which the mine call itself (build, solve, validate, store on node 1): p50 {:.2} ms; node 2 has it after p50 {:.2} ms",
        percentile(&mine_times, 0.5).as_secs_f64() * 1e3,
        percentile(&first_hop_times, 0.5).as_secs_f64() * 1e3
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn bench_fresh_node_syncs_2000_blocks_of_20_txs() {
    const BLOCKS: u64 = 2_000;
    const TXS_PER_BLOCK: usize = 20;
    let dirs = temp_dirs(2);
    let source = TestNode::start(dirs[0].path(), NodeOptions::default()).await;
    let genesis = source.backend.genesis();
    let miner = source.backend.clone();
    let prepared = Instant::now();
    let tip = tokio::task::spawn_blocking(move || {
        for height in 0..BLOCKS {
            for tx in make_txs(
                &genesis,
                TXS_PER_BLOCK,
                height * (TXS_PER_BLOCK as u64 / 10),
            ) {
                miner.add_tx(tx).expect("admitted");
            }
            miner.mine(TXS_PER_BLOCK);
        }
        miner.tip_hash()
    })
    .await
    .expect("mining");
    println!(
        "(built {BLOCKS} blocks in {:.1} s)",
        prepared.elapsed().as_secs_f64()
    );

    // The fresh node has an empty signature cache: it checks every one.
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let fresh = TestNode::start(
        dirs[1].path(),
        NodeOptions {
            peers: vec![source.addr()],
            ..NodeOptions::default()
        },
    )
    .await;
    let mut marks: Vec<(u64, Duration)> = Vec::new();
    wait_for("fresh node synced", LONG, || {
        let height = fresh.backend.height();
        if marks.last().is_none_or(|(last, _)| height >= last + 250) {
            marks.push((height, started.elapsed()));
        }
        fresh.backend.tip_hash() == tip
    })
    .await;
    let marks: Vec<String> = marks
        .iter()
        .map(|(height, at)| format!("{height}@{:.0}ms", at.as_secs_f64() * 1e3))
        .collect();
    println!("  progress: {}", marks.join(" "));
    let elapsed = started.elapsed();
    let cpu = process_cpu_seconds() - cpu_before;
    println!(
        "  CPU used by the whole test process (both nodes) during the sync: {cpu:.2} s over {:.2} s of wall time",
        elapsed.as_secs_f64()
    );
    println!(
        "FIGURE sync: fresh node took {:.3} s for {BLOCKS} blocks of {TXS_PER_BLOCK} txs = {:.0} blocks/s",
        elapsed.as_secs_f64(),
        BLOCKS as f64 / elapsed.as_secs_f64()
    );
    let mut processing = fresh.backend.process_times();
    let total: Duration = processing.iter().sum();
    processing.sort();
    println!(
        "  fresh node's chain process_block: p50 {:.3} ms, total {:.3} s (signatures prechecked in parallel ahead of it)",
        percentile(&processing, 0.5).as_secs_f64() * 1e3,
        total.as_secs_f64()
    );
    assert_eq!(
        fresh.backend.reader().state_summary().digest,
        source.backend.reader().state_summary().digest
    );
    fresh.stop().await;
    source.stop().await;
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn bench_signature_check_cost() {
    let genesis = regtest().genesis_hash();
    let txs = make_txs(&genesis, 4_000, 0);
    let started = Instant::now();
    for tx in &txs {
        tx.verify_signature(&genesis).expect("valid");
    }
    let per_sig = started.elapsed() / txs.len() as u32;
    println!(
        "FIGURE one strict ed25519 check (one core): {:.1} us",
        per_sig.as_secs_f64() * 1e6
    );
}
