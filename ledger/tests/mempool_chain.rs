//! The mempool and miner against a real `Chain` on a temp dir: re-admission
//! after a reorg, and a property test that every template, whatever came
//! before it (submissions, blocks from elsewhere, reorgs, a pool that
//! missed a block), connects as a valid block on the state it was built on.
#![cfg(feature = "storage")]

use ledger::address::Address;
use ledger::amount::{Amount, COIN};
use ledger::chain::{Chain, ChainUpdate, NextBlockContext, ProcessOutcome};
use ledger::chainspec::dev_secret_key;
use ledger::mempool::{Mempool, MempoolConfig};
use ledger::miner;
use ledger::sigcache::SignatureCache;
use ledger::Height;
use ledger::{Block, BlockHash, ChainSpec, SecretKey, Transaction};
use proptest::prelude::*;
use std::sync::atomic::AtomicBool;

use ledger::testing::now_ms;

struct Node {
    _dir: tempfile::TempDir,
    chain: Chain,
    pool: Mempool,
    spec: ChainSpec,
    genesis: BlockHash,
}

impl Node {
    fn new() -> Node {
        let spec = ChainSpec::builtin("regtest").expect("built in");
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = SignatureCache::new(100_000);
        let mut chain = Chain::open(spec.clone(), dir.path()).expect("open chain");
        chain.set_signature_cache(cache.clone());
        Node {
            genesis: spec.genesis_hash(),
            pool: Mempool::new(spec.clone(), MempoolConfig::default(), cache),
            chain,
            spec,
            _dir: dir,
        }
    }

    fn tx(&self, key: &SecretKey, nonce: u64, fee: u64, amount: u64) -> Transaction {
        Transaction::new_signed(
            key,
            &self.genesis,
            Address([0x77; 20]),
            Amount::from_base_units(amount),
            Amount::from_base_units(fee),
            nonce,
            String::new(),
        )
    }

    fn submit(&mut self, tx: Transaction) -> Result<ledger::TxId, ledger::mempool::MempoolError> {
        Mempool::precheck(&self.spec.genesis_hash(), self.chain.signature_cache(), &tx)?;
        let reader = self.chain.reader();
        self.pool.add(tx, &reader, now_ms())
    }

    /// A solved block at `ctx` with `txs`.
    fn mine(&self, ctx: &NextBlockContext, txs: Vec<Transaction>) -> Block {
        let mut block = miner::build_block(&self.spec, ctx, Address([0x11; 20]), txs);
        assert!(miner::solve(&mut block.header, &AtomicBool::new(false), 1));
        block
    }

    /// Mines a template from the pool on the tip; it must connect.
    fn mine_template(&mut self, max_tx_bytes: usize) -> ChainUpdate {
        let reader = self.chain.reader();
        let txs = self.pool.select_for_block(&reader, max_tx_bytes);
        let ctx = self.chain.next_block_context(now_ms());
        let block = self.mine(&ctx, txs);
        match self.chain.process_block(block, now_ms()) {
            Ok(ProcessOutcome::Connected(update)) => update,
            other => panic!("template did not connect: {other:?}"),
        }
    }

    fn follow(&mut self, update: &ChainUpdate) {
        let reader = self.chain.reader();
        self.pool.apply_update(update, &reader, now_ms());
    }

    /// An empty-or-not block on an explicit parent (for side branches). It
    /// pays another miner than the templates do, so it is never the same
    /// block as one of them: an empty template mined `time_offset` ms after
    /// its parent would otherwise have the very same header.
    fn mine_on(&self, parent: &Block, txs: Vec<Transaction>, time_offset: u64) -> Block {
        let ctx = NextBlockContext {
            height: parent.header.height + 1,
            prev_hash: parent.hash(),
            target: self.spec.initial_target,
            min_timestamp: parent.header.timestamp + 1,
            timestamp: parent.header.timestamp + time_offset,
        };
        let mut block = miner::build_block(&self.spec, &ctx, Address([0x22; 20]), txs);
        assert!(miner::solve(&mut block.header, &AtomicBool::new(false), 1));
        block
    }
}

#[test]
fn reorg_readmits_still_valid_txs_of_disconnected_blocks() {
    let mut node = Node::new();
    let dev0 = dev_secret_key(0);
    let dev1 = dev_secret_key(1);
    let dev2 = dev_secret_key(2);
    let genesis_block = node.spec.genesis_block();

    let a_first = node.tx(&dev0, 0, 2_000, COIN);
    let a_second = node.tx(&dev0, 1, 2_000, COIN);
    let b_only = node.tx(&dev1, 0, 3_000, COIN);
    for tx in [&a_first, &a_second, &b_only] {
        node.submit(tx.clone()).unwrap();
    }
    let update = node.mine_template(miner::max_tx_bytes(&node.spec));
    assert_eq!(update.connected.len(), 1);
    assert_eq!(update.connected[0].txs.len(), 3);
    let block_a = update.connected[0].clone();
    node.follow(&update);
    assert!(node.pool.is_empty());

    // A competing branch from genesis: its first block carries `b_only`
    // and a different nonce-0 tx of dev0 (so `a_first` can never be valid
    // again), its second a new tx of dev2. Two blocks beat one.
    let conflicting = node.tx(&dev0, 0, 5_000, 2 * COIN);
    let side_1 = node.mine_on(&genesis_block, vec![b_only.clone(), conflicting.clone()], 7);
    assert_eq!(
        node.chain.process_block(side_1.clone(), now_ms()).unwrap(),
        ProcessOutcome::SideChain
    );
    let side_2 = node.mine_on(&side_1, vec![node.tx(&dev2, 0, 1_000, COIN)], 1);
    let update = match node.chain.process_block(side_2, now_ms()) {
        Ok(ProcessOutcome::Connected(update)) => update,
        other => panic!("expected a reorg, got {other:?}"),
    };
    assert_eq!(update.disconnected, vec![block_a]);
    assert_eq!(update.connected.len(), 2);
    node.follow(&update);

    // `b_only` is in the new chain, `a_first` conflicts with it; only
    // `a_second` (dev0's nonce 1, valid after `conflicting`) comes back.
    assert_eq!(node.pool.len(), 1);
    assert!(node.pool.contains(&a_second.txid()));
    let reader = node.chain.reader();
    assert_eq!(node.pool.next_nonce(&dev_address(0), &reader), 2);

    // And it mines on the new tip.
    let update = node.mine_template(miner::max_tx_bytes(&node.spec));
    assert_eq!(update.connected[0].txs, vec![a_second]);
    node.follow(&update);
    assert!(node.pool.is_empty());
}

#[test]
fn reorg_readmits_everything_when_the_new_branch_is_empty() {
    let mut node = Node::new();
    let genesis_block = node.spec.genesis_block();
    let txs: Vec<Transaction> = (0..5)
        .map(|nonce| node.tx(&dev_secret_key(3), nonce, 1_000 + nonce, COIN))
        .collect();
    for tx in &txs {
        node.submit(tx.clone()).unwrap();
    }
    let update = node.mine_template(miner::max_tx_bytes(&node.spec));
    node.follow(&update);
    assert!(node.pool.is_empty());
    let side_1 = node.mine_on(&genesis_block, Vec::new(), 3);
    node.chain.process_block(side_1.clone(), now_ms()).unwrap();
    let side_2 = node.mine_on(&side_1, Vec::new(), 1);
    let Ok(ProcessOutcome::Connected(update)) = node.chain.process_block(side_2, now_ms()) else {
        panic!("expected a reorg");
    };
    node.follow(&update);
    assert_eq!(node.pool.len(), 5);
    for tx in &txs {
        assert!(node.pool.contains(&tx.txid()));
    }
    let reader = node.chain.reader();
    assert_eq!(node.pool.next_nonce(&dev_address(3), &reader), 5);
}

fn dev_address(index: usize) -> Address {
    Address::from_public_key(&dev_secret_key(index).public_key())
}

#[derive(Clone, Debug)]
enum Step {
    /// A transfer from dev account `sender`, at its next nonce plus `skip`
    /// (or a replacement of a pending nonce when `replace`).
    Submit {
        sender: usize,
        skip: u64,
        replace: bool,
        fee: u64,
        coins: u64,
    },
    /// A template mined and connected; the pool follows unless `missed`.
    Template { max_txs: usize, missed: bool },
    /// A block from elsewhere spending from `sender` directly.
    Foreign { sender: usize, coins: u64 },
    /// Two empty blocks on the tip's parent: a one-block reorg.
    Reorg,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..4usize, prop_oneof![3 => Just(0u64), 1 => 0..3u64], any::<bool>(), 1_000..20_000u64, 1..150_000u64)
            .prop_map(|(sender, skip, replace, fee, coins)| Step::Submit { sender, skip, replace, fee, coins }),
        2 => (1..12usize, prop::bool::weighted(0.2)).prop_map(|(max_txs, missed)| Step::Template { max_txs, missed }),
        1 => (0..4usize, 1..300_000u64).prop_map(|(sender, coins)| Step::Foreign { sender, coins }),
        1 => Just(Step::Reorg),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_template_is_a_valid_block_on_its_state(steps in prop::collection::vec(step(), 1..32)) {
        let mut node = Node::new();
        let keys: Vec<SecretKey> = (0..4).map(dev_secret_key).collect();
        let tx_size = node.tx(&keys[0], 0, 1_000, 1).encoded_len();
        for step in steps {
            match step {
                Step::Submit { sender, skip, replace, fee, coins } => {
                    let reader = node.chain.reader();
                    let next = node.pool.next_nonce(&dev_address(sender), &reader);
                    let nonce = if replace && next > reader.account(&dev_address(sender)).nonce {
                        next - 1
                    } else {
                        next + skip
                    };
                    // Rejections are fine here; validity is what is checked.
                    let _ = node.submit(node.tx(&keys[sender], nonce, fee, coins * COIN));
                }
                Step::Template { max_txs, missed } => {
                    let before = node.chain.tip().hash;
                    let update = node.mine_template(max_txs * tx_size);
                    prop_assert_eq!(update.connected.len(), 1);
                    prop_assert_eq!(update.connected[0].header.prev_hash, before);
                    prop_assert!(update.connected[0].txs.len() <= max_txs);
                    if !missed {
                        node.follow(&update);
                    }
                }
                Step::Foreign { sender, coins } => {
                    let reader = node.chain.reader();
                    let account = reader.account(&dev_address(sender));
                    let amount = (coins * COIN).min(account.balance.base_units().saturating_sub(10_000));
                    if amount == 0 {
                        continue;
                    }
                    let tx = node.tx(&keys[sender], account.nonce, 10_000, amount);
                    let ctx = node.chain.next_block_context(now_ms());
                    let block = node.mine(&ctx, vec![tx]);
                    let outcome = node.chain.process_block(block, now_ms());
                    let Ok(ProcessOutcome::Connected(update)) = outcome else {
                        return Err(TestCaseError::fail(format!("foreign block: {outcome:?}")));
                    };
                    node.follow(&update);
                }
                Step::Reorg => {
                    let tip = node.chain.tip();
                    if tip.height == Height::ZERO {
                        continue;
                    }
                    let reader = node.chain.reader();
                    let tip_block = reader.block(&tip.hash).expect("tip stored");
                    let parent = reader.block(&tip_block.header.prev_hash).expect("parent stored");
                    let side_1 = node.mine_on(&parent, Vec::new(), 2);
                    node.chain.process_block(side_1.clone(), now_ms()).expect("side block valid");
                    let side_2 = node.mine_on(&side_1, Vec::new(), 1);
                    let outcome = node.chain.process_block(side_2, now_ms());
                    let Ok(ProcessOutcome::Connected(update)) = outcome else {
                        return Err(TestCaseError::fail(format!("reorg: {outcome:?}")));
                    };
                    prop_assert_eq!(update.disconnected.len(), 1);
                    node.follow(&update);
                }
            }
        }
        // A final full template is valid too.
        let update = node.mine_template(miner::max_tx_bytes(&node.spec));
        node.follow(&update);
        let reader = node.chain.reader();
        // Whatever is left pending is not executable on the new tip, or
        // did not fit: a second template still connects.
        let _ = node.pool.select_for_block(&reader, miner::max_tx_bytes(&node.spec));
        node.mine_template(miner::max_tx_bytes(&node.spec));
    }
}
