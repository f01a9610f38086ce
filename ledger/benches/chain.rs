//! Chain benchmarks (issue 2):
//! - transaction signature checking: one raw `verify_strict`, 2,000 tx
//!   signatures one by one, and the same 2,000 through `verify_many`
//!   (parallel strict checks, as block validation does);
//! - validation plus connection of a 2,000-tx block into sled, with a cold
//!   signature cache (every signature checked) and a warm one (the txs came
//!   through the mempool first);
//! - a 100-block reorg (100 blocks of 20 txs disconnected, 101 connected);
//! - `phases_2000_tx`: where the time of a signature-cached 2,000-tx block
//!   goes (stateless checks, state application, the one sled transaction
//!   of a connect or disconnect, the tx and address index inserts after a
//!   connect), next to plain sled batches for scale.
//!
//! Targets on the 2-core reference machine: >= 20,000 tx/s validate and
//! connect, 100-block reorg < 1 s. Compare the tx/s figures with the raw
//! `verify_strict` rate of the same run.
//!
//! Run: `cargo bench -p ledger --bench chain`. It allocates with mimalloc,
//! as every program linking the node does.

use criterion::{BatchSize, Criterion, Throughput};
use ledger::amount::{Amount, COIN};
use ledger::block::{merkle_root, Block, Header, BLOCK_VERSION};
use ledger::chain::{Chain, ProcessOutcome};
use ledger::sigcache::SignatureCache;
use ledger::target::Target;
use ledger::testing::dev_address;
use ledger::validation;
use ledger::{BlockHash, ChainSpec, Transaction};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A transfer of one coin between dev accounts.
fn transfer(genesis: &BlockHash, from: usize, to: usize, nonce: u64) -> Transaction {
    ledger::testing::transfer(genesis, from, dev_address(to), COIN, 1000, nonce)
}

/// `count` valid transfers on the genesis state, from dev accounts in
/// `senders`, round-robin, starting at nonce `first_nonce`.
fn transfers(
    genesis: &BlockHash,
    senders: std::ops::Range<usize>,
    count: usize,
    first_nonce: u64,
) -> Vec<Transaction> {
    let width = senders.len();
    (0..count)
        .map(|i| {
            let sender = senders.start + i % width;
            transfer(
                genesis,
                sender,
                (sender + 1) % 10,
                first_nonce + (i / width) as u64,
            )
        })
        .collect()
}

fn block_on(spec: &ChainSpec, parent: &Header, miner: usize, txs: Vec<Transaction>) -> Block {
    let fees = Amount::checked_sum(txs.iter().map(|tx| tx.fee)).expect("fees fit");
    let mut header = Header {
        version: BLOCK_VERSION,
        height: parent.height + 1,
        prev_hash: parent.hash(),
        merkle_root: merkle_root(&txs.iter().map(Transaction::txid).collect::<Vec<_>>()),
        timestamp: parent.timestamp + 1000 + miner as u64,
        bits: spec.initial_target.to_compact(),
        nonce: 0,
        miner: dev_address(miner),
        reward: spec.block_subsidy.checked_add(fees).expect("fits"),
    };
    let target = Target::from_compact(header.bits).expect("valid bits");
    while !target.is_met_by(&header.hash()) {
        header.nonce += 1;
    }
    Block { header, txs }
}

fn signatures(criterion: &mut Criterion) {
    let spec = ChainSpec::builtin("regtest").expect("built-in");
    let genesis = spec.genesis_hash();
    let txs = transfers(&genesis, 0..10, 2_000, 0);
    let txids: Vec<_> = txs.iter().map(Transaction::txid).collect();
    let message = txs[0].signing_message(&genesis);

    let mut group = criterion.benchmark_group("signatures");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_verify_strict", |bench| {
        bench.iter(|| txs[0].from.verify(black_box(&message), &txs[0].signature))
    });
    group.throughput(Throughput::Elements(txs.len() as u64));
    group.bench_function("2000_tx_single", |bench| {
        bench.iter(|| {
            for tx in &txs {
                validation::check_tx_signature(black_box(tx), &genesis).expect("valid");
            }
        })
    });
    group.bench_function("2000_tx_verify_many", |bench| {
        bench.iter_batched(
            || SignatureCache::new(10_000),
            |cache| {
                validation::check_signatures(black_box(&txs), &txids, &genesis, &cache)
                    .expect("valid")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn validate_and_connect(criterion: &mut Criterion) {
    let spec = ChainSpec::builtin("regtest").expect("built-in");
    let genesis = spec.genesis_hash();
    let genesis_header = spec.genesis_block().header;
    let block = block_on(
        &spec,
        &genesis_header,
        9,
        transfers(&genesis, 0..10, 2_000, 0),
    );
    let now = block.header.timestamp;

    let mut group = criterion.benchmark_group("validate_connect");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(block.txs.len() as u64));
    for warm_cache in [false, true] {
        let name = if warm_cache {
            "2000_tx_block_sigs_cached"
        } else {
            "2000_tx_block"
        };
        group.bench_function(name, |bench| {
            bench.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let mut chain = Chain::open(spec.clone(), dir.path()).expect("open");
                    let cache = SignatureCache::default();
                    if warm_cache {
                        cache.insert_many(block.txs.iter().map(Transaction::txid));
                    }
                    chain.set_signature_cache(cache);
                    (dir, chain, block.clone())
                },
                |(dir, mut chain, block)| {
                    let outcome = chain.process_block(block, now).expect("valid");
                    assert!(matches!(outcome, ProcessOutcome::Connected(_)));
                    (dir, chain)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn reorg(criterion: &mut Criterion) {
    let spec = ChainSpec::builtin("regtest").expect("built-in");
    let genesis = spec.genesis_hash();
    let genesis_header = spec.genesis_block().header;
    let branch = |senders: std::ops::Range<usize>, length: usize, miner: usize| {
        let mut parent = genesis_header.clone();
        let mut blocks = Vec::new();
        for height in 0..length {
            let txs = transfers(&genesis, senders.clone(), 20, height as u64 * 4);
            let block = block_on(&spec, &parent, miner, txs);
            parent = block.header.clone();
            blocks.push(block);
        }
        blocks
    };
    let main = branch(0..5, 100, 1);
    let side = branch(5..10, 101, 2);
    let now = side.last().expect("blocks").header.timestamp;

    let mut group = criterion.benchmark_group("reorg");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("100_blocks", |bench| {
        bench.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut chain = Chain::open(spec.clone(), dir.path()).expect("open");
                for block in main.iter().chain(&side[..100]) {
                    chain.process_block(block.clone(), now).expect("valid");
                }
                (dir, chain, side[100].clone())
            },
            |(dir, mut chain, last)| {
                match chain.process_block(last, now).expect("valid") {
                    ProcessOutcome::Connected(update) => assert_eq!(update.disconnected.len(), 100),
                    other => panic!("expected a reorg, got {other:?}"),
                }
                (dir, chain)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Where the time of a (signature-cached) 2,000-tx block goes.
fn phases(criterion: &mut Criterion) {
    use ledger::state;
    use ledger::storage::{BlockStatus, IndexEntry, Store};
    let spec = ChainSpec::builtin("regtest").expect("built-in");
    let genesis = spec.genesis_hash();
    let genesis_block = spec.genesis_block();
    let block = block_on(
        &spec,
        &genesis_block.header,
        9,
        transfers(&genesis, 0..10, 2_000, 0),
    );
    let hash = block.hash();
    let txids = block.txids();
    let cache = SignatureCache::default();
    cache.insert_many(txids.iter().copied());
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let entry = IndexEntry {
        header: genesis_block.header.clone(),
        total_work: ledger::Work::ZERO,
        status: BlockStatus::Valid,
        seq: 0,
    };
    let allocations: Vec<_> = state::genesis_state(&spec).into_iter().collect();
    store
        .init_genesis(&spec.name, &genesis_block, &entry, &allocations)
        .expect("init");
    let change = state::apply_block(&block, &spec, &store).expect("valid");

    let mut group = criterion.benchmark_group("phases_2000_tx");
    group.sample_size(20);
    group.bench_function("stateless_sigs_cached", |bench| {
        bench.iter(|| {
            validation::check_block_stateless(&block, &spec, &genesis, &cache).expect("valid")
        })
    });
    group.bench_function("apply_block_sled_reads", |bench| {
        bench.iter(|| state::apply_block(&block, &spec, &store).expect("valid"))
    });
    group.bench_function("put_block", |bench| {
        let entry = IndexEntry {
            header: block.header.clone(),
            total_work: ledger::Work::ZERO,
            status: BlockStatus::Valid,
            seq: 1,
        };
        bench.iter(|| store.put_block(&hash, &block, &entry).expect("stored"))
    });
    // Each iteration connects, indexes and disconnects, timing one part.
    let cycle = |timed: usize, iterations: u64| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let started = std::time::Instant::now();
            store
                .connect_block(&hash, &block, &change, None)
                .expect("connect");
            let connected = std::time::Instant::now();
            store
                .index_blocks(&[(hash, &block, &txids)])
                .expect("index");
            let indexed = std::time::Instant::now();
            store
                .disconnect_block(&hash, &block, &txids, &change.undo, true)
                .expect("disconnect");
            total += match timed {
                0 => connected - started,
                1 => indexed - connected,
                _ => indexed.elapsed(),
            };
        }
        total
    };
    group.bench_function("connect_block_sled_transaction", |bench| {
        bench.iter_custom(|iterations| cycle(0, iterations))
    });
    group.bench_function("index_blocks_plain_inserts", |bench| {
        bench.iter_custom(|iterations| cycle(1, iterations))
    });
    group.bench_function("disconnect_block_sled_transaction", |bench| {
        bench.iter_custom(|iterations| cycle(2, iterations))
    });
    {
        use sled::Transactional;
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree_a = db.open_tree("a").expect("tree");
        let tree_b = db.open_tree("b").expect("tree");
        let keys: Vec<[u8; 32]> = (0..6000u32)
            .map(|i| ledger::Hash256::digest(&i.to_le_bytes()).0)
            .collect();
        group.bench_function("sled_6000_inserts_one_batch", |bench| {
            bench.iter(|| {
                let mut batch = sled::Batch::default();
                for key in &keys {
                    batch.insert(&key[..], &key[..16]);
                }
                tree_a.apply_batch(batch).expect("batch");
            })
        });
        group.bench_function("sled_6000_inserts_transaction_2_trees", |bench| {
            bench.iter(|| {
                let mut batch = sled::Batch::default();
                for key in &keys {
                    batch.insert(&key[..], &key[..16]);
                }
                (&tree_a, &tree_b)
                    .transaction(|(a, b)| {
                        a.apply_batch(&batch)?;
                        b.insert(&b"x"[..], &b"y"[..])?;
                        Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .expect("transaction");
            })
        });
    }
    group.bench_function("decode_block", |bench| {
        bench.iter(|| store.block(&hash).expect("read"))
    });
    group.finish();
}

criterion::criterion_group!(benches, signatures, validate_and_connect, reorg, phases);

/// `LEDGER_BENCH_CACHE_MB` sets the page cache of the stores the benches
/// open (`storage::set_cache_capacity`), to compare cache sizes with one
/// build; unset, they get `storage::DEFAULT_CACHE_BYTES` as a node does.
fn main() {
    if let Ok(megabytes) = std::env::var("LEDGER_BENCH_CACHE_MB") {
        let megabytes: u64 = megabytes
            .parse()
            .expect("LEDGER_BENCH_CACHE_MB: a whole number");
        ledger::storage::set_cache_capacity(megabytes << 20);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
