//! What `GET /v1/state` costs at 100,000 accounts: the summary the store
//! keeps with every connect (one read) against the full scan it replaced.
//! Ignored by default (it builds a store of 100,000 accounts); run with
//! `cargo test -p ledger --test chain state_cost -- --ignored --nocapture`.

use ledger::state::{self, Account, StateDigester};
use ledger::storage::{BlockStatus, IndexEntry, Store};
use ledger::{Address, Amount, Work};
use std::time::{Duration, Instant};

use crate::common::regtest;

const ACCOUNTS: u32 = 100_000;
const ROUNDS: u32 = 200;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[test]
#[ignore = "a figure for BENCHMARKS.md, not a check"]
fn state_summary_cost_at_100k_accounts() {
    let spec = regtest();
    let genesis = spec.genesis_block();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = IndexEntry {
        header: genesis.header.clone(),
        total_work: Work::ZERO,
        status: BlockStatus::Valid,
        seq: 0,
    };
    let mut allocations: Vec<(Address, Account)> =
        state::genesis_state(&spec).into_iter().collect();
    for i in 0..ACCOUNTS {
        let mut address = [0u8; 20];
        address[..4].copy_from_slice(&i.to_be_bytes());
        address[19] = 0xa5;
        allocations.push((
            Address(address),
            Account {
                balance: Amount::from_base_units(u64::from(i) + 1),
                nonce: u64::from(i % 7),
            },
        ));
    }
    store
        .init_genesis(&spec.name, &genesis, &entry, &allocations)
        .unwrap();

    // Before: every request scanned and hashed every account.
    let scan = || {
        let mut digest = StateDigester::new();
        store
            .for_each_account(|address, account| digest.add(address, account))
            .unwrap();
        digest
    };
    let scanned = scan();
    let mut scan_times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        std::hint::black_box(scan());
        scan_times.push(start.elapsed());
    }
    // After: one read of the summary kept with every connect.
    let mut read_times = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let record = store.state_record().unwrap().unwrap();
        read_times.push(start.elapsed());
        assert_eq!(record.digest, scanned);
    }
    let accounts = scanned.finish().1;
    println!(
        "FIGURE /v1/state at {accounts} accounts: full scan (before) median {:.1} ms; kept summary (after) median {:.1} us, max {:.1} us",
        median(scan_times).as_secs_f64() * 1e3,
        median(read_times.clone()).as_secs_f64() * 1e6,
        read_times.iter().max().unwrap().as_secs_f64() * 1e6,
    );
    assert!(median(read_times) < Duration::from_millis(5));
}
