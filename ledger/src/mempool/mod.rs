//! The mempool: transactions waiting for a block, keyed by (sender, nonce).
//! It owns admission (format, signature once, chain, nonce window, balance,
//! fee, replacement, caps), eviction at the caps, expiry, following the
//! chain through connected blocks and reorgs, and the fee-ordered block
//! template. Like geth, each sender has a queue split into an *executable*
//! run (the consecutive nonces starting at its confirmed nonce, which a
//! block could include now) and a *future* part (nonces after a gap, which
//! wait until the gap is filled). A tx admitted into the future part is
//! *held*: it pays nothing until its gap fills, so held txs live in a side
//! pool bounded per sender and in total, go first when the pool is full,
//! and are reported for relay ([`Mempool::take_promoted`]) only once they
//! can execute. Like Bitcoin Core, templates and eviction are otherwise
//! ordered by fee. The pool is a plain single-threaded structure: the
//! node wraps it in a `std::sync::Mutex` and does the expensive signature
//! check ([`Mempool::precheck`]) before taking that lock.
//!
//! One concept a file: `queue` (a sender's nonce-ordered queue and the
//! indexes over all queues), `admit` (the checks and caps of admission,
//! eviction included), `follow` (following blocks, reorgs and expiry),
//! `template` (choosing a block's transactions), `drops` (what the pool
//! let go, and why) and `known` (the txids relay counts as known: pending
//! or recently confirmed).

mod admit;
mod drops;
mod follow;
mod known;
mod queue;
mod template;

use crate::address::Address;
use crate::chainspec::ChainSpec;
use crate::hash::{BlockHash, TxId};
use crate::sigcache::SignatureCache;
use crate::state::AccountSource;
use crate::tx::Transaction;
use drops::DropLog;
pub use drops::DropReason;
pub use known::DEFAULT_RECENT_CONFIRMED;
use queue::{PoolIndex, SenderQueue};
use std::cmp::Reverse;
use std::collections::HashMap;

/// Default cap on the number of pending transactions.
pub const DEFAULT_MAX_TXS: usize = 50_000;
/// Default cap on the encoded bytes of pending transactions.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Default age after which a pending transaction is dropped: 3 hours.
pub const DEFAULT_EXPIRY_MS: u64 = 3 * 60 * 60 * 1000;
/// Default distance a nonce may run ahead of the sender's next nonce.
pub const DEFAULT_MAX_NONCE_GAP: u64 = 64;
/// A replacement must pay at least this many percent more fee.
pub const REPLACEMENT_FEE_BUMP_PERCENT: u64 = 10;
/// Transactions let go that are remembered (with why) for lookups.
pub const DEFAULT_MAX_DROPPED_RECORDS: usize = 20_000;
/// Default cap on held transactions (admitted behind a nonce gap), in
/// total: a tenth of the pool, so txs that cannot pay yet never crowd out
/// those that can.
pub const DEFAULT_MAX_FUTURE_TXS: usize = DEFAULT_MAX_TXS / 10;
/// Default cap on one sender's held transactions: room for a burst that
/// arrived out of order, not for a sender's whole nonce window.
pub const DEFAULT_MAX_FUTURE_PER_SENDER: usize = 32;

/// Limits of a mempool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// At most this many pending transactions.
    pub max_txs: usize,
    /// At most this many encoded bytes of pending transactions.
    pub max_bytes: usize,
    /// A transaction is dropped this long after it was admitted.
    pub expiry_ms: u64,
    /// A nonce may be at most this far past the sender's next nonce.
    pub max_nonce_gap: u64,
    /// How many dropped transactions are remembered, oldest forgotten first.
    pub max_dropped_records: usize,
    /// At most this many held transactions (behind a nonce gap) in total...
    pub max_future_txs: usize,
    /// ...and per sender.
    pub max_future_per_sender: usize,
    /// How many txids of recent blocks are remembered for
    /// [`Mempool::knows`] (relay's "do we have it?").
    pub recent_confirmed: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: DEFAULT_MAX_TXS,
            max_bytes: DEFAULT_MAX_BYTES,
            expiry_ms: DEFAULT_EXPIRY_MS,
            max_nonce_gap: DEFAULT_MAX_NONCE_GAP,
            max_dropped_records: DEFAULT_MAX_DROPPED_RECORDS,
            max_future_txs: DEFAULT_MAX_FUTURE_TXS,
            max_future_per_sender: DEFAULT_MAX_FUTURE_PER_SENDER,
            recent_confirmed: DEFAULT_RECENT_CONFIRMED,
        }
    }
}
/// Why a transaction was not admitted. Each variant is exactly one of the
/// error codes of `POST /v1/txs` in SPEC.md (see [`MempoolError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MempoolError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("signature was made for another chain")]
    WrongChain,
    #[error("transaction is already pending")]
    Duplicate,
    #[error("nonce is below the sender's confirmed nonce")]
    NonceTooLow,
    #[error("nonce is too far past the sender's next nonce")]
    NonceTooHigh,
    #[error("a pending transaction has the same sender and nonce; a replacement must pay at least 10% more fee")]
    ReplacementUnderpriced,
    #[error("balance does not cover this and the sender's other pending transactions")]
    InsufficientFunds,
    #[error("fee is below the chain's minimum fee")]
    FeeTooLow,
    #[error("mempool is full and the fee is too low to evict a pending transaction")]
    MempoolFull,
}

impl MempoolError {
    /// The SPEC.md error code, one per variant.
    pub fn code(&self) -> &'static str {
        match self {
            MempoolError::Malformed(_) => "malformed",
            MempoolError::BadSignature => "bad_signature",
            MempoolError::WrongChain => "wrong_chain",
            MempoolError::Duplicate => "duplicate",
            MempoolError::NonceTooLow => "nonce_too_low",
            MempoolError::NonceTooHigh => "nonce_too_high",
            MempoolError::ReplacementUnderpriced => "replacement_underpriced",
            MempoolError::InsufficientFunds => "insufficient_funds",
            MempoolError::FeeTooLow => "fee_too_low",
            MempoolError::MempoolFull => "mempool_full",
        }
    }
}

/// Pending transactions. Not thread-safe by itself: wrap it in a mutex.
pub struct Mempool {
    spec: ChainSpec,
    genesis: BlockHash,
    config: MempoolConfig,
    cache: SignatureCache,
    senders: HashMap<Address, SenderQueue>,
    index: PoolIndex,
    dropped: DropLog,
}

impl Mempool {
    pub fn new(spec: ChainSpec, config: MempoolConfig, cache: SignatureCache) -> Mempool {
        let genesis = spec.genesis_hash();
        Mempool {
            spec,
            genesis,
            cache,
            senders: HashMap::new(),
            index: PoolIndex::new(config.recent_confirmed),
            dropped: DropLog::default(),
            config,
        }
    }

    /// The held txs that became executable since the last call (their
    /// gap filled, by a tx or a block), still pending: the node relays
    /// them now, having held them back until they could pay.
    pub fn take_promoted(&mut self) -> Vec<Transaction> {
        std::mem::take(&mut self.index.promoted)
            .into_iter()
            .filter_map(|txid| self.get(&txid).cloned())
            .collect()
    }

    /// Whether a pending tx was admitted behind a nonce gap and is still
    /// waiting for it (held: not to be relayed yet).
    pub fn is_held(&self, txid: &TxId) -> bool {
        let Some(slot) = self.index.by_txid.get(txid) else {
            return false;
        };
        self.senders
            .get(&slot.sender)
            .and_then(|queue| queue.txs.get(&slot.nonce))
            .is_some_and(|entry| entry.held)
    }

    /// Held txs in the side pool now.
    pub fn future_len(&self) -> usize {
        self.index.held
    }

    /// Txs refused for the side pool's caps since the last call.
    pub fn take_future_refusals(&mut self) -> u64 {
        std::mem::take(&mut self.index.future_refused)
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    pub fn get(&self, txid: &TxId) -> Option<&Transaction> {
        self.index.by_txid.get(txid).map(|slot| &*slot.tx)
    }

    /// When a pending tx was admitted (wall-clock ms).
    pub fn added_ms(&self, txid: &TxId) -> Option<u64> {
        let slot = self.index.by_txid.get(txid)?;
        self.senders
            .get(&slot.sender)?
            .txs
            .get(&slot.nonce)
            .map(|entry| entry.added_ms)
    }

    pub fn contains(&self, txid: &TxId) -> bool {
        self.index.by_txid.contains_key(txid)
    }

    /// Whether `txid` is pending, or was confirmed by one of the blocks
    /// that recently took txs out of the pool (the last
    /// `MempoolConfig::recent_confirmed` txids; forgotten on a reorg). An
    /// answer from memory for relay, which asks for every txid a peer
    /// announces: a tx confirmed earlier than that is not known here.
    /// Answered from keyed fingerprints (see `known`), in one probe.
    pub fn knows(&self, txid: &TxId) -> bool {
        self.index.known.contains(txid)
    }

    /// Prefetch hints for a caller that knows which txids it will ask
    /// `knows` about soon (the simulator): first the table's header, then,
    /// once that is in the cache, the slot of `txid`. They change nothing.
    pub fn prefetch_known_table(&self) {
        crate::prefetch::prefetch(&self.index.known);
    }

    /// See `prefetch_known_table`.
    pub fn prefetch_knows(&self, txid: &TxId) {
        self.index.known.prefetch(txid);
    }

    pub fn len(&self) -> usize {
        self.index.by_txid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.by_txid.is_empty()
    }

    /// Encoded bytes of all pending transactions.
    pub fn bytes(&self) -> usize {
        self.index.bytes
    }

    /// Up to `limit` txids, the longest pending first.
    pub fn txids_oldest_first(&self, limit: usize) -> Vec<TxId> {
        self.index
            .by_seq
            .values()
            .take(limit)
            .map(|(txid, _)| *txid)
            .collect()
    }

    /// `sender`'s pending txs with nonces from `first_nonce`, in nonce
    /// order, at most `limit`.
    pub fn sender_txs_from(
        &self,
        sender: &Address,
        first_nonce: u64,
        limit: usize,
    ) -> Vec<&Transaction> {
        self.senders
            .get(sender)
            .map(|queue| {
                queue
                    .txs
                    .range(first_nonce..)
                    .take(limit)
                    .map(|(_, entry)| &*entry.tx)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn txids_newest_first(&self, limit: usize) -> Vec<TxId> {
        self.index
            .by_seq
            .values()
            .rev()
            .take(limit)
            .map(|(txid, _)| *txid)
            .collect()
    }

    /// The nonce a new transaction of `address` should carry: its confirmed
    /// nonce plus its consecutive pending transactions.
    pub fn next_nonce(&self, address: &Address, accounts: &impl AccountSource) -> u64 {
        let confirmed = accounts.account(address).nonce;
        let Some(queue) = self.senders.get(address) else {
            return confirmed;
        };
        if queue.confirmed_nonce == confirmed {
            return queue.executable_end;
        }
        // The pool has not seen the latest block yet: count from the state.
        let mut next = confirmed;
        while queue.txs.contains_key(&next) {
            match next.checked_add(1) {
                Some(after) => next = after,
                None => break,
            }
        }
        next
    }

    /// Pending transactions sent by or to `address`, newest first.
    pub fn pending_for(&self, address: &Address) -> Vec<&Transaction> {
        let mut seqs: Vec<(u64, &Transaction)> = Vec::new();
        if let Some(queue) = self.senders.get(address) {
            seqs.extend(queue.txs.values().map(|entry| (entry.seq, &*entry.tx)));
        }
        for (_, seq) in self
            .index
            .by_recipient
            .range((*address, 0)..=(*address, u64::MAX))
        {
            let Some((txid, _)) = self.index.by_seq.get(seq) else {
                continue;
            };
            let Some(tx) = self.get(txid) else {
                continue;
            };
            // A self-transfer is already listed as sent.
            if tx.to == *address && tx.sender() != *address {
                seqs.push((*seq, tx));
            }
        }
        seqs.sort_unstable_by_key(|(seq, _)| Reverse(*seq));
        seqs.into_iter().map(|(_, tx)| tx).collect()
    }

    /// The number of executable and future transactions of `address`, for
    /// diagnostics and tests.
    pub fn queue_lengths(&self, address: &Address) -> (usize, usize) {
        match self.senders.get(address) {
            Some(queue) => {
                let executable = queue
                    .txs
                    .range(queue.confirmed_nonce..queue.executable_end)
                    .count();
                (executable, queue.txs.len() - executable)
            }
            None => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::queue::cost_of;
    use super::*;
    use crate::amount::Amount;
    use crate::block::{Block, Header};
    use crate::keys::{PublicKey, Signature};
    use crate::state::Account;
    use crate::Height;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    impl Mempool {
        /// Every index agrees with the sender queues, and the caps hold.
        fn assert_consistent(&self) {
            let mut count = 0;
            let mut bytes = 0;
            let mut tails = BTreeSet::new();
            let mut held_total = 0;
            for (sender, queue) in &self.senders {
                assert!(!queue.txs.is_empty(), "empty queue kept");
                let mut expected_end = queue.confirmed_nonce;
                while queue.txs.contains_key(&expected_end) {
                    expected_end += 1;
                }
                assert_eq!(queue.executable_end, expected_end);
                assert!(queue
                    .txs
                    .keys()
                    .all(|nonce| *nonce >= queue.confirmed_nonce));
                let cost: u128 = queue.txs.values().map(|entry| cost_of(&entry.tx)).sum();
                assert_eq!(queue.total_cost, cost);
                for (nonce, entry) in &queue.txs {
                    let slot = self.index.by_txid.get(&entry.txid).expect("indexed");
                    assert_eq!((slot.sender, slot.nonce), (*sender, *nonce));
                    assert!(
                        std::sync::Arc::ptr_eq(&slot.tx, &entry.tx),
                        "the index shares the entry's tx"
                    );
                    assert_eq!(
                        self.index.by_seq.get(&entry.seq),
                        Some(&(entry.txid, entry.added_ms))
                    );
                    assert!(self.index.by_recipient.contains(&(entry.tx.to, entry.seq)));
                    assert!(self.knows(&entry.txid), "a pending tx is not known");
                    count += 1;
                    bytes += entry.size;
                }
                tails.insert(PoolIndex::tail_key(queue, *sender).expect("non-empty"));
                let held: Vec<u64> = queue
                    .txs
                    .iter()
                    .filter(|(_, entry)| entry.held)
                    .map(|(nonce, _)| *nonce)
                    .collect();
                assert_eq!(queue.held, held.len());
                assert!(
                    held.iter().all(|nonce| *nonce > queue.executable_end),
                    "an executable tx is still held"
                );
                assert!(held.len() <= self.config.max_future_per_sender);
                held_total += held.len();
            }
            assert_eq!(self.index.held, held_total);
            assert!(held_total <= self.config.max_future_txs);
            assert_eq!(self.index.by_txid.len(), count);
            assert_eq!(self.index.by_seq.len(), count);
            // Admission order is age order: expiry walks `by_seq`.
            assert!(self
                .index
                .by_seq
                .values()
                .zip(self.index.by_seq.values().skip(1))
                .all(|((_, earlier), (_, later))| earlier <= later));
            assert_eq!(self.index.by_recipient.len(), count);
            assert_eq!(self.index.bytes, bytes);
            assert_eq!(self.index.tails, tails);
            assert!(count <= self.config.max_txs);
            assert!(bytes <= self.config.max_bytes);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add {
            sender: u8,
            nonce: u64,
            fee: u64,
            amount: u64,
        },
        Block {
            sender: u8,
            spent: u64,
        },
        Expire {
            after_ms: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..5u8, 0..8u64, 1_000..4_000u64, 1..40_000u64)
                .prop_map(|(sender, nonce, fee, amount)| Op::Add { sender, nonce, fee, amount }),
            1 => (0..5u8, 0..60_000u64).prop_map(|(sender, spent)| Op::Block { sender, spent }),
            1 => (0..2_000u64).prop_map(|after_ms| Op::Expire { after_ms }),
        ]
    }

    /// An unsigned tx whose txid the cache vouches for, so the pool logic
    /// runs without signing costs.
    fn vouched_tx(
        cache: &SignatureCache,
        sender: u8,
        nonce: u64,
        fee: u64,
        amount: u64,
    ) -> Transaction {
        let tx = Transaction {
            from: PublicKey([sender; 32]),
            to: Address([sender.wrapping_add(1) % 5; 20]),
            amount: Amount::from_base_units(amount),
            fee: Amount::from_base_units(fee),
            nonce,
            memo: "m".repeat(usize::from(sender) * 10),
            signature: Signature::default(),
        };
        cache.insert(tx.txid());
        tx
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn indexes_stay_consistent(ops in prop::collection::vec(op(), 1..80), max_txs in 3..10usize) {
            let spec = ChainSpec::builtin("regtest").expect("built in");
            let cache = SignatureCache::new(10_000);
            let config = MempoolConfig { max_txs, max_bytes: 6 * 200, expiry_ms: 1_000, max_future_txs: max_txs / 2, max_future_per_sender: 2, ..MempoolConfig::default() };
            let mut pool = Mempool::new(spec.clone(), config, cache.clone());
            let mut accounts: HashMap<Address, Account> = (0..5u8)
                .map(|sender| {
                    let address = Address::from_public_key(&PublicKey([sender; 32]));
                    (address, Account { balance: Amount::from_base_units(100_000), nonce: 0 })
                })
                .collect();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Add { sender, nonce, fee, amount } => {
                        let confirmed = accounts[&Address::from_public_key(&PublicKey([sender; 32]))].nonce;
                        let tx = vouched_tx(&cache, sender, confirmed + nonce, fee, amount);
                        let _ = pool.add(tx, &accounts, now);
                    }
                    Op::Block { sender, spent } => {
                        let address = Address::from_public_key(&PublicKey([sender; 32]));
                        let account = accounts.get_mut(&address).expect("funded");
                        let spent = spent.min(account.balance.base_units());
                        let tx = vouched_tx(&cache, sender, account.nonce, 1_000, spent.max(1));
                        account.nonce += 1;
                        account.balance = Amount::from_base_units(account.balance.base_units() - spent);
                        let block = Block {
                            header: Header {
                                version: 1,
                                height: Height(1),
                                prev_hash: BlockHash::ZERO,
                                merkle_root: crate::hash::Hash256::ZERO,
                                timestamp: 0,
                                bits: spec.initial_target.to_compact(),
                                nonce: 0,
                                miner: Address::default(),
                                reward: Amount::ZERO,
                            },
                            txs: vec![tx],
                        };
                        pool.block_connected(&block, &accounts);
                    }
                    Op::Expire { after_ms } => {
                        now += after_ms;
                        pool.expire(now);
                    }
                }
                pool.assert_consistent();
                for tx in pool.take_promoted() {
                    prop_assert!(!pool.is_held(&tx.txid()), "a promoted tx is still held");
                }
                for (address, account) in &accounts {
                    if let Some(queue) = pool.senders.get(address) {
                        prop_assert!(queue.total_cost <= u128::from(account.balance.base_units()));
                    }
                }
            }
        }
    }
}
