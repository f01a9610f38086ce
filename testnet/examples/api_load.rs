//! Issue 16's load test of the HTTP API, for BENCHMARKS.md: heavy public
//! reads from 20 clients against one node, while that node's resident
//! memory, a second node's block arrival and `/v1/state` are watched.
//!
//! It starts two `ledger-node` processes (the binary given, so an old and a
//! new build can be compared) on loopback ports of its own, on a chain file
//! it writes: regtest's rules with `--block-bytes` blocks and, in genesis,
//! the ten dev accounts, the filler senders and `--accounts` more accounts.
//! Node B dials node A. It then builds `--blocks` blocks on A, each filled
//! with transfers and each holding one transfer to dev account 9 (the
//! address whose history is read), and waits until B has them. Then, for
//! `--duration` seconds: half the clients read
//! `/v1/accounts/{dev9}/txs?limit=1000`, the other half `/v1/blocks?limit=100`;
//! A mines a block every second and the delay until B announces it on its
//! event stream is recorded; A's RSS is sampled every 100 ms; `/v1/state`
//! is timed every 100 ms (from a thread and connection of its own). At
//! the end it prints PASS or FAIL for issue 16's three targets (A's RSS
//! within `--rss-bound-mb`, every block at B within 1 s, `/v1/state` p99
//! under 5 ms) and exits 1 on a FAIL. Everything stops by itself: fixed counts, fixed
//! durations, and both nodes killed and their data deleted at the end
//! (kept instead with `--data DIR`, and reused by the next run: then the
//! chain is built once and several runs, e.g. with different
//! `LEDGER_DB_CACHE_MB`, measure the same chain).
//!
//! ```sh
//! cargo build --release -p node --bin ledger-node
//! cargo run --release -p testnet --example api_load -- --node-bin target/release/ledger-node
//! ```

use clap::Parser;
use futures::StreamExt;
use ledger::chainspec::{dev_accounts, Allocation};
use ledger::Height;
use ledger::{Address, Amount, BlockHash, ChainSpec, SecretKey, Transaction};
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testnet::api::{Api, TxFormat};
use testnet::sse::SseParser;

#[derive(Parser, Debug)]
struct Args {
    /// The ledger-node binary to measure
    #[arg(long)]
    node_bin: PathBuf,
    /// Full blocks to build, each with one transfer to the watched address
    #[arg(long, default_value_t = 1_000)]
    blocks: u64,
    /// The chain's max_block_bytes
    #[arg(long, default_value_t = 64 * 1024)]
    block_bytes: u64,
    /// Extra accounts in genesis (for /v1/state)
    #[arg(long, default_value_t = 100_000)]
    accounts: u32,
    /// Concurrent reading clients
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Seconds of load
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Keep both nodes' data here, and reuse it on the next run with the
    /// same arguments when A's chain there already has `--blocks` blocks
    /// (building 1,000 full blocks takes minutes); without it, a
    /// temporary directory is used and deleted
    #[arg(long)]
    data: Option<PathBuf>,
    /// The most resident memory node A may reach under the load, in MB;
    /// the run fails (exit 1) above it, as it does when a block reaches B
    /// after more than 1 s or `/v1/state`'s p99 under load is 5 ms or more
    #[arg(long, default_value_t = 600)]
    rss_bound_mb: u64,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

struct NodeProcess {
    child: Child,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(
    bin: &PathBuf,
    chain: &str,
    dir: &PathBuf,
    p2p: u16,
    rpc: u16,
    peer: Option<u16>,
) -> NodeProcess {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let mut command = Command::new(bin);
    command
        .args(["--chain", chain, "--data-dir"])
        .arg(dir)
        .args(["--p2p-addr", &format!("127.0.0.1:{p2p}")])
        .args(["--rpc-addr", &format!("127.0.0.1:{rpc}")])
        .args(["--log", "warn", "--no-discovery"]);
    if let Some(peer) = peer {
        command.args(["--peer", &format!("127.0.0.1:{peer}")]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the node");
    NodeProcess { child }
}

/// A number field of `/proc/PID/status` (`VmRSS` in KiB, `Threads`).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|line| line.split(':').next() == Some(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib(pid: u32) -> Option<u64> {
    proc_status(pid, "VmRSS")
}

/// The nearest-rank percentile of the load report (`testnet::stats`); NaN
/// for no samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    testnet::stats::percentile(sorted, p).unwrap_or(f64::NAN)
}

fn summary(name: &str, mut samples: Vec<f64>, unit: &str) -> String {
    samples.sort_by(f64::total_cmp);
    format!(
        "{name}: n {}  p50 {:.2} {unit}  p99 {:.2} {unit}  max {:.2} {unit}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN)
    )
}

async fn wait_ready(api: &Api, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !matches!(api.ready().await, Ok(true)) {
        assert!(Instant::now() < deadline, "{what} not ready in 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Timestamps of `block` events a node announces, by hash.
async fn watch_blocks(
    api: Api,
    seen: Arc<Mutex<HashMap<BlockHash, Instant>>>,
    stop: Arc<AtomicBool>,
) {
    let client = Api::stream_client().unwrap();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut response) = api.events(&client, "block").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut parser = SseParser::new(|name| name == "block", 1 << 20);
        while let Ok(Some(bytes)) = response.chunk().await {
            let now = Instant::now();
            let Ok(events) = parser.push(&bytes) else {
                break;
            };
            for event in events {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&event.data) {
                    if let Some(hash) = value["hash"].as_str().and_then(|hash| hash.parse().ok()) {
                        seen.lock().unwrap().entry(hash).or_insert(now);
                    }
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let keep = args.data.is_some();
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("api-load-{}", std::process::id())));
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).unwrap();

    // The chain: regtest's rules, smaller blocks, many accounts.
    // Twice as many filler senders as a block holds transfers, used in
    // turn, so none has many pending.
    let sample = Transaction::new_signed(
        &SecretKey::from_seed("api-load sample"),
        &ChainSpec::builtin("regtest").unwrap().genesis_hash(),
        Address([0; 20]),
        Amount::from_base_units(1),
        Amount::from_base_units(1_000),
        1_000,
        String::new(),
    );
    let per_block = args.block_bytes / ledger::encoding::encode(&sample).len() as u64;
    let fillers: Vec<SecretKey> = (0..per_block * 2)
        .map(|index| SecretKey::from_seed(&format!("api-load filler {index}")))
        .collect();
    let mut spec = ChainSpec::builtin("regtest").unwrap();
    spec.max_block_bytes = args.block_bytes;
    for key in &fillers {
        spec.allocations.push(Allocation {
            address: spec.format_address(&Address::from_public_key(&key.public_key())),
            balance: Amount::from_coins(1_000).unwrap(),
        });
    }
    for index in 0..args.accounts {
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&index.to_be_bytes());
        bytes[19] = 0x16;
        spec.allocations.push(Allocation {
            address: spec.format_address(&Address(bytes)),
            balance: Amount::from_base_units(1),
        });
    }
    let chain_file = dir.join("chain.json");
    std::fs::write(&chain_file, serde_json::to_string(&spec).unwrap()).unwrap();
    let chain = chain_file.to_str().unwrap().to_string();
    let genesis = spec.genesis_hash();

    let (p2p_a, rpc_a, p2p_b, rpc_b) = (free_port(), free_port(), free_port(), free_port());
    let node_a = start_node(&args.node_bin, &chain, &dir.join("a"), p2p_a, rpc_a, None);
    let node_b = start_node(
        &args.node_bin,
        &chain,
        &dir.join("b"),
        p2p_b,
        rpc_b,
        Some(p2p_a),
    );
    let client = Api::client(Duration::from_secs(60)).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let a = Api::new(client.clone(), &format!("http://127.0.0.1:{rpc_a}"));
    let b = Api::new(client.clone(), &format!("http://127.0.0.1:{rpc_b}"));
    wait_ready(&a, "node A").await;
    let a_ready = started.elapsed();
    wait_ready(&b, "node B").await;
    let pid_a = node_a.child.id();
    let rss_idle = rss_kib(pid_a).unwrap_or(0);
    eprintln!(
        "[{:>5.1}s] nodes ready (A after {:.1} s); A idle RSS {} KiB",
        started.elapsed().as_secs_f64(),
        a_ready.as_secs_f64(),
        rss_idle
    );

    // Build the chain: each block full of filler transfers plus one
    // transfer to dev9, which pays more so the block always takes it.
    let accounts = dev_accounts();
    let watched = accounts[9].address;
    let watched_text = spec.format_address(&watched);
    let min_fee = spec.min_fee;
    let mut nonces = vec![0u64; fillers.len()];
    let mut turn = 0usize;
    let reused = a.status().await.unwrap().height;
    if reused > Height::ZERO {
        assert!(
            reused >= Height(args.blocks),
            "{} holds a chain of {reused} blocks, fewer than --blocks; delete it",
            dir.display()
        );
        eprintln!("reusing the chain of {reused} blocks in {}", dir.display());
    }
    let to_build = if reused > Height::ZERO {
        0
    } else {
        args.blocks
    };
    let mut rss_build_max = 0;
    let mut threads_build_max = 0;
    for round in 0..to_build {
        rss_build_max = rss_build_max.max(rss_kib(pid_a).unwrap_or(0));
        threads_build_max = threads_build_max.max(proc_status(pid_a, "Threads").unwrap_or(0));
        // Top the mempool up to a little more than a block holds.
        let pending: serde_json::Value = http
            .get(format!("http://127.0.0.1:{rpc_a}/v1/mempool?limit=0"))
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .expect("mempool")
            .json()
            .await
            .expect("mempool json");
        let need = (per_block + 16).saturating_sub(pending["count"].as_u64().unwrap_or(0));
        let mut senders = Vec::new();
        let mut txs: Vec<Transaction> = Vec::new();
        for _ in 0..need {
            let index = turn % fillers.len();
            turn += 1;
            senders.push(Some(index));
            txs.push(Transaction::new_signed(
                &fillers[index],
                &genesis,
                accounts[0].address,
                Amount::from_base_units(1),
                min_fee,
                nonces[index],
                String::new(),
            ));
        }
        senders.push(None);
        txs.push(Transaction::new_signed(
            &accounts[1].secret_key,
            &genesis,
            watched,
            Amount::from_base_units(1_000),
            Amount::from_base_units(min_fee.base_units() * 10),
            round,
            String::new(),
        ));
        let spec_ref = &spec;
        let answers = futures::stream::iter(txs.iter().map(|tx| {
            let a = a.clone();
            async move { a.submit_tx(tx, spec_ref, TxFormat::Raw).await }
        }))
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
        for (answer, sender) in answers.iter().zip(&senders) {
            if let (Ok(_), Some(index)) = (answer, sender) {
                nonces[*index] += 1;
            }
        }
        if let Some(Err(error)) = answers.last() {
            panic!("round {round}: the transfer to the watched address was refused: {error}");
        }
        a.mine(1).await.expect("mine on A");
        if round % 100 == 99 {
            eprintln!(
                "[{:>5.1}s] built {} blocks",
                started.elapsed().as_secs_f64(),
                round + 1
            );
        }
    }
    let built = a.status().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while b.status().await.ok().map(|status| status.tip) != Some(built.tip) {
        assert!(
            Instant::now() < deadline,
            "B did not sync A's chain in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let block_sample = a.blocks(built.height.0 / 2, 1).await.unwrap();
    let rss_built = rss_kib(pid_a).unwrap_or(0);
    rss_build_max = rss_build_max.max(rss_built);
    let threads_built = proc_status(pid_a, "Threads").unwrap_or(0);
    eprintln!(
        "[{:>5.1}s] chain of {} blocks on A and B; block {} holds {} txs in {} bytes; A RSS {} KiB",
        started.elapsed().as_secs_f64(),
        built.height,
        block_sample[0].height,
        block_sample[0].tx_count,
        block_sample[0].size,
        rss_built
    );

    // /v1/state with no load.
    let mut state_idle = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        let state = a.state().await.expect("state");
        state_idle.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(state.accounts >= u64::from(args.accounts));
    }

    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let seen_a = Arc::new(Mutex::new(HashMap::new()));
    let seen_b = Arc::new(Mutex::new(HashMap::new()));
    tokio::spawn(watch_blocks(a.clone(), seen_a.clone(), stop.clone()));
    tokio::spawn(watch_blocks(b.clone(), seen_b.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let read_latency = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let end = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for index in 0..args.clients {
        let url = if index % 2 == 0 {
            format!("http://127.0.0.1:{rpc_a}/v1/accounts/{watched_text}/txs?limit=1000")
        } else {
            format!("http://127.0.0.1:{rpc_a}/v1/blocks?from=1&limit=100")
        };
        let (http, requests, failures, bytes, latency) = (
            http.clone(),
            requests.clone(),
            failures.clone(),
            bytes.clone(),
            read_latency.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let start = Instant::now();
                let ok = match http.get(&url).send().await {
                    Ok(response) if response.status().is_success() => {
                        match response.bytes().await {
                            Ok(body) => {
                                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    _ => false,
                };
                let ms = start.elapsed().as_secs_f64() * 1e3;
                requests.fetch_add(1, Ordering::Relaxed);
                if ok {
                    let mut latency = latency.lock().unwrap();
                    if index % 2 == 0 {
                        latency.0.push(ms)
                    } else {
                        latency.1.push(ms)
                    }
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let rss_max = Arc::new(AtomicU64::new(0));
    let threads_max = Arc::new(AtomicU64::new(0));
    {
        let (rss_max, threads_max) = (rss_max.clone(), threads_max.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                if let Some(kib) = rss_kib(pid_a) {
                    rss_max.fetch_max(kib, Ordering::Relaxed);
                }
                if let Some(threads) = proc_status(pid_a, "Threads") {
                    threads_max.fetch_max(threads, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // The `/v1/state` prober has a thread, a runtime and a connection of
    // its own: on the 20 clients' runtime its requests waited behind their
    // megabytes of answers, which is this program's delay, not the node's.
    let state_loaded = Arc::new(Mutex::new(Vec::new()));
    let prober = {
        let state_loaded = state_loaded.clone();
        let url = format!("http://127.0.0.1:{rpc_a}");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let a = Api::new(Api::client(Duration::from_secs(60)).unwrap(), &url);
                while Instant::now() < end {
                    let start = Instant::now();
                    if a.state().await.is_ok() {
                        state_loaded
                            .lock()
                            .unwrap()
                            .push(start.elapsed().as_secs_f64() * 1e3);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
    };
    let mut mined: Vec<(BlockHash, Instant)> = Vec::new();
    while Instant::now() < end {
        let tick = Instant::now();
        if let Ok(answer) = a.mine(1).await {
            for hash in answer.hashes {
                mined.push((hash, Instant::now()));
            }
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    for task in tasks {
        let _ = task.await;
    }
    let _ = prober.join();
    // Late arrivals at B count (with their real delay), up to 10 s.
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle
        && mined
            .iter()
            .any(|(hash, _)| !seen_b.lock().unwrap().contains_key(hash))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let seen_a = seen_a.lock().unwrap().clone();
    let seen_b = seen_b.lock().unwrap().clone();
    let mut arrival = Vec::new();
    let mut missing = 0;
    for (hash, mined_at) in &mined {
        // From A's own announcement (or the mine answer) to B's.
        let from = seen_a
            .get(hash)
            .copied()
            .unwrap_or(*mined_at)
            .min(*mined_at);
        match seen_b.get(hash) {
            Some(at) => arrival.push(at.saturating_duration_since(from).as_secs_f64() * 1e3),
            None => missing += 1,
        }
    }
    let over_1s = arrival.iter().filter(|ms| **ms > 1_000.0).count();
    let (history, pages) = read_latency.lock().unwrap().clone();
    println!(
        "api_load: {} with {} blocks of {} bytes, {} genesis accounts, {} clients for {} s",
        args.node_bin.display(),
        built.height,
        args.block_bytes,
        args.accounts,
        args.clients,
        args.duration
    );
    println!(
        "reads: {} requests, {} failed, {:.1} MB answered",
        requests.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) as f64 / 1e6
    );
    println!("{}", summary("  history ?limit=1000", history, "ms"));
    println!("{}", summary("  blocks ?limit=100", pages, "ms"));
    println!(
        "node A RSS: idle {:.1} MB, max while building {:.1} MB, with the chain built {:.1} MB, max under load {:.1} MB",
        rss_idle as f64 / 1024.0,
        rss_build_max as f64 / 1024.0,
        rss_built as f64 / 1024.0,
        rss_max.load(Ordering::Relaxed) as f64 / 1024.0
    );
    println!(
        "node A threads: max while building {threads_build_max}, with the chain built {threads_built}, max under load {}",
        threads_max.load(Ordering::Relaxed)
    );
    println!(
        "{}; {} of {} over 1 s, {} never arrived",
        summary("block arrival at B", arrival, "ms"),
        over_1s,
        mined.len(),
        missing
    );
    println!("{}", summary("/v1/state idle", state_idle, "ms"));
    let mut state_loaded = state_loaded.lock().unwrap().clone();
    println!(
        "{}",
        summary("/v1/state under load", state_loaded.clone(), "ms")
    );
    println!("node A ready {:.1} s after start", a_ready.as_secs_f64());
    state_loaded.sort_by(f64::total_cmp);
    let rss_max_mb = rss_max.load(Ordering::Relaxed) as f64 / 1024.0;
    let state_p99 = percentile(&state_loaded, 99.0);
    let checks = [
        (
            format!(
                "A's RSS under load {rss_max_mb:.0} MB <= {} MB",
                args.rss_bound_mb
            ),
            rss_max_mb <= args.rss_bound_mb as f64,
        ),
        (
            format!("every block at B within 1 s ({over_1s} over, {missing} missing)"),
            over_1s == 0 && missing == 0 && !mined.is_empty(),
        ),
        (
            format!("/v1/state p99 under load {state_p99:.2} ms < 5 ms"),
            state_p99 < 5.0,
        ),
    ];
    for (what, held) in &checks {
        println!("{} {what}", if *held { "PASS" } else { "FAIL" });
    }
    drop(node_a);
    drop(node_b);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if checks.iter().any(|(_, held)| !held) {
        std::process::exit(1);
    }
}
