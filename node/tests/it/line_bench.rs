//! Issue 4's P2P benchmarks against real `ledger-node` processes: each node
//! its own process (its own sled, its own runtime), linked in a line on
//! loopback with `--no-discovery`, driven only through the HTTP API and
//! timed through `GET /v1/events`, as an operator would see them. They
//! print figures and assert nothing about speed:
//!
//! ```text
//! cargo test --release -p node --test it line_bench -- --ignored --nocapture --test-threads 1
//! ```

use super::NodeProcess;
use node::test_utils::{percentile, regtest};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

/// `count` transfers spread over the ten dev accounts, nonces in order from
/// `first_nonce`, as raw hex for `POST /v1/txs`.
fn raw_transfers(count: usize, first_nonce: u64) -> Vec<String> {
    let genesis = regtest().genesis_hash();
    (0..count)
        .map(|index| {
            let from = index % 10;
            let tx = node::test_utils::transfer(
                &genesis,
                from,
                dev_address((from + 1) % 10),
                1_000 + index as u64,
                1_000,
                first_nonce + (index / 10) as u64,
            );
            hex::encode(ledger::encoding::encode(&tx))
        })
        .collect()
}

fn submit_all(node: &NodeProcess, raws: &[String]) {
    for raw in raws {
        let (status, body) = node.post("/v1/txs", json!({ "raw": raw }).to_string());
        assert!(
            status == 202 || status == 409,
            "tx refused: {status} {body}"
        );
    }
}

use node::test_utils::{dev_address, wait_for_blocking as wait_until};

fn mempool_count(node: &NodeProcess) -> u64 {
    node.get("/v1/status").1["mempool"].as_u64().unwrap_or(0)
}

fn p2p_addr(node: &NodeProcess) -> String {
    node.banner
        .iter()
        .find_map(|line| line.strip_prefix("p2p address:"))
        .expect("banner has the p2p address")
        .trim()
        .to_string()
}

/// Starts `n` nodes, each dialing the previous one, and waits for every
/// link to be up.
fn line(dirs: &[tempfile::TempDir]) -> Vec<NodeProcess> {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for dir in dirs {
        let peer = nodes.last().map(p2p_addr);
        let mut extra = vec!["--log", "error"];
        if let Some(peer) = &peer {
            extra.extend(["--peer", peer.as_str()]);
        }
        nodes.push(NodeProcess::start(dir.path(), &extra));
    }
    for (index, node) in nodes.iter().enumerate() {
        let links = if index == 0 || index == nodes.len() - 1 {
            1
        } else {
            2
        };
        wait_until("links up", LONG, || {
            node.get("/v1/peers").1.as_array().map_or(0, Vec::len) >= links
        });
    }
    nodes
}

/// Streams a node's `block` events: (block hash, when the event arrived).
fn block_events(node: &NodeProcess) -> mpsc::Receiver<(String, Instant)> {
    let response = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(format!("{}/v1/events", node.rpc_url))
        .send()
        .expect("event stream opens");
    assert_eq!(response.status().as_u16(), 200);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut is_block = false;
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            if let Some(name) = line.strip_prefix("event:") {
                is_block = name.trim() == "block";
            } else if let Some(data) = line.strip_prefix("data:") {
                if is_block {
                    let block: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    if let Some(hash) = block["hash"].as_str() {
                        if sender.send((hash.to_string(), now)).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    receiver
}

fn arrival(events: &mpsc::Receiver<(String, Instant)>, hash: &str) -> Instant {
    let deadline = Instant::now() + LONG;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (seen, at) = events
            .recv_timeout(remaining)
            .expect("block event arrives in time");
        if seen == hash {
            return at;
        }
    }
}

/// User plus system CPU time of a process so far, from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn line_bench_block_propagation_500_tx_blocks_4_processes() {
    const BLOCKS: usize = 50;
    const TXS: usize = 500;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = line(&dirs);
    let events: Vec<_> = nodes.iter().map(block_events).collect();
    let mut totals = Vec::new();
    let mut hops: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    for round in 0..BLOCKS {
        // Each round's 500 txs reach every mempool first (not timed).
        let raws = raw_transfers(TXS, (round * TXS / 10) as u64);
        for node in &nodes {
            submit_all(node, &raws);
        }
        wait_until("mempools full", LONG, || {
            nodes.iter().all(|node| mempool_count(node) == TXS as u64)
        });
        let started = Instant::now();
        let (status, mined) = nodes[0].post("/v1/dev/mine", json!({ "blocks": 1 }).to_string());
        assert_eq!(status, 200, "{mined}");
        let hash = mined["hashes"][0].as_str().expect("a hash").to_string();
        let mut previous = started;
        for (index, stream) in events.iter().enumerate() {
            let at = arrival(stream, &hash);
            hops[index].push(at.saturating_duration_since(previous));
            previous = at;
        }
        totals.push(previous - started);
        let (_, block) = nodes[3].get(&format!("/v1/blocks/{hash}"));
        let txs = block["txs"].as_array().map_or(0, Vec::len);
        assert_eq!(txs, TXS, "the block carries every mempool tx");
        wait_until("mempools drained", LONG, || {
            nodes.iter().all(|node| mempool_count(node) == 0)
        });
    }
    totals.sort();
    let all: Vec<String> = totals
        .iter()
        .map(|total| format!("{:.1}", ms(*total)))
        .collect();
    println!("(every block, sorted, ms: {})", all.join(" "));
    println!(
        "FIGURE processes, block propagation (POST /v1/dev/mine on node 1 -> `block` event of node 4, {TXS} txs/block, {BLOCKS} blocks): p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&totals, 0.5)),
        ms(percentile(&totals, 0.99))
    );
    for (index, hop) in hops.iter_mut().enumerate() {
        hop.sort();
        let what = if index == 0 {
            "mine call -> node 1's event".to_string()
        } else {
            format!("node {index}'s event -> node {}'s", index + 1)
        };
        println!(
            "FIGURE processes, hop {what}: p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(hop, 0.5)),
            ms(percentile(hop, 0.99))
        );
    }
    for node in nodes {
        node.terminate();
    }
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn line_bench_tx_propagation_500_txs_4_processes() {
    const TXS: usize = 500;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = line(&dirs);
    let raws = raw_transfers(TXS, 0);
    let started = Instant::now();
    // One client per sending account, as ten wallets would: each sender's
    // txs go in nonce order, the senders in parallel.
    std::thread::scope(|scope| {
        for sender in 0..10 {
            let own: Vec<String> = raws.iter().skip(sender).step_by(10).cloned().collect();
            let node = &nodes[0];
            scope.spawn(move || submit_all(node, &own));
        }
    });
    let submitted = started.elapsed();
    wait_until("txs in every mempool", LONG, || {
        nodes.iter().all(|node| mempool_count(node) == TXS as u64)
    });
    println!(
        "FIGURE processes, tx propagation: {TXS} txs POSTed to node 1 by 10 clients in all 4 mempools after {:.1} ms (the POSTs took {:.1} ms)",
        ms(started.elapsed()),
        ms(submitted)
    );
    for node in nodes {
        node.terminate();
    }
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn line_bench_fresh_sync_2000_blocks_of_20_txs_2_processes() {
    const BLOCKS: u64 = 2_000;
    const TXS: usize = 20;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    // LINE_BENCH_SYNC_SOURCE=DIR keeps the built chain in DIR and reuses it
    // on later runs, so repeated measurements skip the build.
    let kept = std::env::var_os("LINE_BENCH_SYNC_SOURCE").map(std::path::PathBuf::from);
    let source_dir = kept.clone().unwrap_or_else(|| dirs[0].path().to_path_buf());
    let source = NodeProcess::start(&source_dir, &["--log", "error"]);
    let built = Instant::now();
    let have = source.get("/v1/status").1["height"].as_u64().unwrap_or(0);
    for height in have..BLOCKS {
        submit_all(&source, &raw_transfers(TXS, height * 2));
        let (status, mined) = source.post("/v1/dev/mine", json!({ "blocks": 1 }).to_string());
        assert_eq!(status, 200, "{mined}");
    }
    let tip = source.get("/v1/status").1["tip"]
        .as_str()
        .expect("tip")
        .to_string();
    println!(
        "(built {BLOCKS} blocks in {:.1} s)",
        built.elapsed().as_secs_f64()
    );
    let source_cpu_before = cpu_seconds(source.child.id());
    let started = Instant::now();
    let peer = p2p_addr(&source);
    let fresh = NodeProcess::start(dirs[1].path(), &["--log", "error", "--peer", &peer]);
    wait_until("fresh node synced", LONG, || {
        fresh.get("/v1/status").1["tip"].as_str() == Some(tip.as_str())
    });
    let elapsed = started.elapsed();
    println!(
        "FIGURE processes, sync: a fresh node (process start included) took {:.3} s for {BLOCKS} blocks of {TXS} txs = {:.0} blocks/s",
        elapsed.as_secs_f64(),
        BLOCKS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "(CPU during the sync: fresh node {:.2} s, serving node {:.2} s)",
        cpu_seconds(fresh.child.id()),
        cpu_seconds(source.child.id()) - source_cpu_before
    );
    let metrics = reqwest::blocking::get(format!("{}/metrics", fresh.rpc_url))
        .and_then(|response| response.text())
        .unwrap_or_default();
    for line in metrics.lines() {
        if line.starts_with("ledger_block_validation_seconds_sum")
            || line.starts_with("ledger_block_validation_seconds_count")
        {
            println!("(fresh node: {line})");
        }
    }
    fresh.terminate();
    source.terminate();
}
