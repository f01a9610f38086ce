//! Mempool operation sequences: adds (in and out of nonce order,
//! replacements, unaffordable ones), expiry, blocks built from the pool's
//! own template or spending a pending nonce elsewhere, and reorgs. After
//! every step the pool must respect its caps, its indexes must agree, its
//! template must be a valid block on the state it was given, and every tx
//! it admitted must still be pending, confirmed, or reported dropped: never
//! gone silently.

use crate::dev;
use arbitrary::{Arbitrary, Unstructured};
use ledger::chain::ChainUpdate;
use ledger::mempool::{Mempool, MempoolConfig};
use ledger::miner::assemble_block;
use ledger::sigcache::SignatureCache;
use ledger::state::{apply_block, Account};
use ledger::Height;
use ledger::{Address, Amount, Block, BlockHash, ChainSpec, Target, Transaction, TxId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

const SENDERS: usize = 4;
/// Verified txids the pool's signature cache keeps: a few steps' worth.
/// The default (tables for 65,536 txids) cost more per input than the
/// steps did.
const SIGNATURE_CACHE: usize = 256;

#[derive(Arbitrary, Debug)]
enum Op {
    Add {
        sender: u8,
        nonce_ahead: u8,
        fee: u16,
        amount: u16,
        to: u8,
        memo: u8,
    },
    Expire {
        seconds: u8,
    },
    Mine {
        room: u8,
    },
    Spend {
        sender: u8,
        amount: u16,
    },
    Reorg {
        depth: u8,
        with_spend: Option<u8>,
    },
}

struct Model {
    spec: ChainSpec,
    pool: Mempool,
    accounts: BTreeMap<Address, Account>,
    /// Blocks on the model's chain with the accounts before each.
    blocks: Vec<(Arc<Block>, BTreeMap<Address, Account>)>,
    /// Txs admitted and not yet confirmed or reported dropped.
    admitted: BTreeSet<TxId>,
    now_ms: u64,
}

fn address(index: usize) -> Address {
    dev::address(index)
}

impl Model {
    fn tip_hash(&self) -> BlockHash {
        self.blocks
            .last()
            .map_or(dev::regtest_genesis(), |(block, _)| block.hash())
    }

    fn height(&self) -> u64 {
        self.blocks.len() as u64 + 1
    }

    /// A block on the model's tip with `txs`; `None` when it is invalid.
    fn block(&self, txs: Vec<Transaction>) -> Option<(Block, BTreeMap<Address, Account>)> {
        let block = assemble_block(
            &self.spec,
            Height(self.height()),
            self.tip_hash(),
            Target::MAX,
            self.now_ms,
            address(9),
            txs,
        );
        let change = apply_block(&block, &self.spec, &self.accounts).ok()?;
        let mut after = self.accounts.clone();
        for (address, account) in change.updates {
            if account == Account::default() {
                after.remove(&address);
            } else {
                after.insert(address, account);
            }
        }
        Some((block, after))
    }

    fn connect(&mut self, block: Block, after: BTreeMap<Address, Account>) {
        for tx in &block.txs {
            self.admitted.remove(&tx.txid());
        }
        let before = std::mem::replace(&mut self.accounts, after);
        self.pool.block_connected(&block, &self.accounts);
        self.blocks.push((Arc::new(block), before));
    }

    fn spend(&self, sender: u8, amount: u16) -> Transaction {
        let index = usize::from(sender) % SENDERS;
        let nonce = self
            .accounts
            .get(&address(index))
            .map_or(0, |account| account.nonce);
        Transaction::new_signed(
            dev::key(index),
            &dev::regtest_genesis(),
            address(8),
            Amount::from_base_units(u64::from(amount) + 1),
            Amount::from_base_units(5_000),
            nonce,
            "elsewhere".into(),
        )
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Add {
                sender,
                nonce_ahead,
                fee,
                amount,
                to,
                memo,
            } => {
                let index = usize::from(sender) % SENDERS;
                let confirmed = self
                    .accounts
                    .get(&address(index))
                    .map_or(0, |account| account.nonce);
                let tx = Transaction::new_signed(
                    dev::key(index),
                    &dev::regtest_genesis(),
                    address(usize::from(to) % 10),
                    Amount::from_base_units(u64::from(amount) * 1_000),
                    Amount::from_base_units(u64::from(fee) * 10),
                    confirmed + u64::from(nonce_ahead % 12),
                    "x".repeat(usize::from(memo % 4) * 16),
                );
                if let Ok(txid) = self.pool.add(tx, &self.accounts, self.now_ms) {
                    self.admitted.insert(txid);
                }
            }
            Op::Expire { seconds } => {
                self.now_ms += u64::from(seconds) * 1_000;
                self.pool.expire(self.now_ms);
            }
            Op::Mine { room } => {
                let max = ledger::miner::max_tx_bytes(&self.spec).min(usize::from(room) * 40);
                let txs = self.pool.select_for_block(&self.accounts, max);
                let size: usize = txs.iter().map(Transaction::encoded_len).sum();
                assert!(size <= max, "template over its room");
                let count = txs.len();
                let (block, after) = self
                    .block(txs)
                    .expect("the pool's template is a valid block on its state");
                assert_eq!(block.txs.len(), count, "a template tx was left out");
                self.connect(block, after);
            }
            Op::Spend { sender, amount } => {
                let tx = self.spend(sender, amount);
                if let Some((block, after)) = self.block(vec![tx]) {
                    self.connect(block, after);
                }
            }
            Op::Reorg { depth, with_spend } => {
                let depth = usize::from(depth % 4).min(self.blocks.len());
                if depth == 0 {
                    return;
                }
                let mut disconnected = Vec::new();
                for _ in 0..depth {
                    let (block, before) = self.blocks.pop().expect("depth is within the chain");
                    self.accounts = before;
                    disconnected.push(block);
                }
                // The disconnected txs are the pool's again: re-admitted or
                // reported dropped.
                for block in &disconnected {
                    for tx in &block.txs {
                        self.admitted.insert(tx.txid());
                    }
                }
                let old_tip = disconnected[0].hash();
                let txs = with_spend
                    .map(|s| vec![self.spend(s, 1)])
                    .unwrap_or_default();
                let (block, after) = self
                    .block(txs)
                    .or_else(|| self.block(Vec::new()))
                    .expect("an empty block is valid");
                for tx in &block.txs {
                    self.admitted.remove(&tx.txid());
                }
                let block = Arc::new(block);
                let update = ChainUpdate {
                    old_tip,
                    new_tip: block.hash(),
                    fork_height: Height(self.height() - 1),
                    disconnected,
                    connected: vec![block.clone()],
                };
                let before = std::mem::replace(&mut self.accounts, after);
                self.pool.apply_update(&update, &self.accounts, self.now_ms);
                self.blocks.push((block, before));
            }
        }
        self.check();
    }

    fn check(&mut self) {
        for (txid, _) in self.pool.take_drops() {
            self.admitted.remove(&txid);
        }
        let _ = self.pool.take_promoted();
        let pool = &self.pool;
        let config = pool.config();
        assert!(pool.len() <= config.max_txs, "over max_txs");
        assert!(pool.bytes() <= config.max_bytes, "over max_bytes");
        assert!(
            pool.future_len() <= config.max_future_txs,
            "over max_future_txs"
        );
        let txids = pool.txids_oldest_first(usize::MAX);
        assert_eq!(txids.len(), pool.len());
        let mut bytes = 0;
        let mut held: HashMap<Address, usize> = HashMap::new();
        for txid in &txids {
            let tx = pool.get(txid).expect("a listed tx is held");
            assert_eq!(tx.txid(), *txid);
            bytes += tx.encoded_len();
            if pool.is_held(txid) {
                *held.entry(tx.sender()).or_default() += 1;
            }
        }
        assert_eq!(bytes, pool.bytes(), "byte count drifted");
        assert_eq!(held.values().sum::<usize>(), pool.future_len());
        for count in held.values() {
            assert!(*count <= config.max_future_per_sender);
        }
        for txid in &self.admitted {
            assert!(
                pool.contains(txid),
                "tx {txid:?} left the pool without being confirmed or reported dropped"
            );
        }
        for index in 0..SENDERS {
            let sender = address(index);
            let confirmed = self.accounts.get(&sender).map_or(0, |a| a.nonce);
            assert!(pool.next_nonce(&sender, &self.accounts) >= confirmed);
        }
    }
}

/// `mempool_ops`: balances for the four senders, then up to 48 steps.
pub fn ops(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let spec = dev::regtest().clone();
    let mut accounts = BTreeMap::new();
    for index in 0..SENDERS {
        let balance: u32 = input.arbitrary().unwrap_or(1_000_000);
        accounts.insert(
            address(index),
            Account {
                balance: Amount::from_base_units(u64::from(balance) * 100),
                nonce: 0,
            },
        );
    }
    let config = MempoolConfig {
        max_txs: 12,
        max_bytes: 1_800,
        expiry_ms: 120_000,
        max_nonce_gap: 6,
        max_dropped_records: 32,
        max_future_txs: 4,
        max_future_per_sender: 2,
        recent_confirmed: 64,
    };
    let pool = Mempool::new(spec.clone(), config, SignatureCache::new(SIGNATURE_CACHE));
    let mut model = Model {
        spec,
        pool,
        accounts,
        blocks: Vec::new(),
        admitted: BTreeSet::new(),
        now_ms: 1_800_000_000_000,
    };
    for _ in 0..48 {
        let Ok(op) = Op::arbitrary(&mut input) else {
            break;
        };
        model.step(op);
    }
}
