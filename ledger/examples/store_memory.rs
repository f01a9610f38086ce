//! Where a writing node's memory goes (issue 16): connects full blocks
//! straight into a chain store, with no node, mempool or HTTP around it,
//! and prints the process's resident memory as it goes, then again after
//! reopening the same store. The chain is issue 16's load-test chain
//! (`testnet/examples/api_load.rs`): regtest's rules, 64 KiB blocks full of
//! transfers between about 880 filler senders, and 100,000 extra genesis
//! accounts.
//!
//! ```sh
//! cargo run --release -p ledger --example store_memory -- 1000
//! ```
//!
//! The first argument is the number of blocks (default 1,000), the second
//! the sled page cache in MiB (default: the store's default).

use ledger::chain::Chain;
use ledger::chainspec::Allocation;
use ledger::miner::{build_block, solve};
use ledger::{Address, Amount, ChainSpec, SecretKey, Transaction};
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info")
        .init();
    let mut args = std::env::args().skip(1);
    let blocks: u64 = args
        .next()
        .map_or(1_000, |arg| arg.parse().expect("blocks"));
    if let Some(cache_mib) = args.next() {
        let cache_mib: u64 = cache_mib.parse().expect("cache MiB");
        ledger::storage::set_cache_capacity(cache_mib << 20);
    }
    let block_bytes = 64 * 1024;
    let started = Instant::now();

    let mut spec = ChainSpec::builtin("regtest").expect("regtest");
    spec.max_block_bytes = block_bytes;
    let genesis_for_size = spec.genesis_hash();
    let sample = Transaction::new_signed(
        &SecretKey::from_seed("store_memory sample"),
        &genesis_for_size,
        Address([0; 20]),
        Amount::from_base_units(1),
        Amount::from_base_units(1_000),
        1_000,
        String::new(),
    );
    let per_block = block_bytes / ledger::encoding::encode(&sample).len() as u64 - 1;
    let fillers: Vec<SecretKey> = (0..per_block * 2)
        .map(|index| SecretKey::from_seed(&format!("api-load filler {index}")))
        .collect();
    for key in &fillers {
        spec.allocations.push(Allocation {
            address: spec.format_address(&Address::from_public_key(&key.public_key())),
            balance: Amount::from_coins(1_000).expect("amount"),
        });
    }
    for index in 0..100_000u32 {
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&index.to_be_bytes());
        bytes[19] = 0x16;
        spec.allocations.push(Allocation {
            address: spec.format_address(&Address(bytes)),
            balance: Amount::from_base_units(1),
        });
    }
    let genesis = spec.genesis_hash();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chain = Chain::open(spec.clone(), dir.path()).expect("open");
    chain.set_defer_indexing(true);
    println!(
        "[{:>6.1}s] genesis written: RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );

    let mut nonces = vec![0u64; fillers.len()];
    let mut turn = 0usize;
    let miner = Address([9; 20]);
    for round in 1..=blocks {
        let txs: Vec<Transaction> = (0..per_block)
            .map(|_| {
                let index = turn % fillers.len();
                turn += 1;
                nonces[index] += 1;
                Transaction::new_signed(
                    &fillers[index],
                    &genesis,
                    miner,
                    Amount::from_base_units(1),
                    spec.min_fee,
                    nonces[index] - 1,
                    String::new(),
                )
            })
            .collect();
        let context = chain.next_block_context(now_ms());
        let mut block = build_block(&spec, &context, miner, txs);
        assert_eq!(block.txs.len() as u64, per_block, "every tx fits");
        assert!(solve(&mut block.header, &AtomicBool::new(false), 1));
        chain.process_block(block, now_ms()).expect("valid block");
        chain.write_indexes().expect("index");
        if round % 100 == 0 {
            println!(
                "[{:>6.1}s] {round} blocks: RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                rss_mib()
            );
        }
    }
    chain.flush().expect("flush");
    drop(chain);
    println!(
        "[{:>6.1}s] store closed: RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );
    let store_bytes: u64 = std::fs::read_dir(dir.path())
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.metadata().ok())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0);
    println!("store files: {:.0} MB", store_bytes as f64 / 1e6);
    for attempt in 1..=2 {
        let opened = Instant::now();
        let chain = Chain::open(spec.clone(), dir.path()).expect("reopen");
        println!(
            "[{:>6.1}s] reopen {attempt} at height {} in {:.1} s: RSS {:.0} MiB",
            started.elapsed().as_secs_f64(),
            chain.tip().height,
            opened.elapsed().as_secs_f64(),
            rss_mib()
        );
        drop(chain);
    }
}
