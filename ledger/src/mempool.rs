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

use crate::address::Address;
use crate::amount::Amount;
use crate::chainspec::ChainSpec;
use crate::hash::{BlockHash, TxId};
use crate::sigcache::SignatureCache;
use crate::state::{Account, AccountSource};
use crate::tx::Transaction;
use crate::validation::{self, TxError};
use crate::Block;
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

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

/// The smallest encoded transaction (empty memo). A template stops looking
/// for more once less room than this is left.
const MIN_TX_BYTES: usize = 32 + 20 + 8 + 8 + 8 + 8 + 64;

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
        }
    }
}

/// Why the mempool let go of a transaction it had admitted (or that was in
/// a block a reorg disconnected) without it being confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The pool was full and a transaction paying more took its place.
    Evicted,
    /// Pending for longer than the expiry.
    Expired,
    /// Another transaction with its sender and nonce paid a higher fee.
    Replaced,
    /// A confirmed transaction used its nonce.
    NonceUsed,
    /// Its sender's confirmed balance no longer covers it.
    Unaffordable,
    /// Its block was disconnected and it could not be admitted again.
    Reorg,
}

impl DropReason {
    /// The `reason` of a dropped tx in the API and of the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            DropReason::Evicted => "evicted",
            DropReason::Expired => "expired",
            DropReason::Replaced => "replaced",
            DropReason::NonceUsed => "nonce_used",
            DropReason::Unaffordable => "unaffordable",
            DropReason::Reorg => "reorg",
        }
    }
}

/// The transactions let go lately: bounded, oldest forgotten first, and a
/// queue of drops not yet reported (events, metrics).
#[derive(Default)]
struct DropLog {
    order: VecDeque<TxId>,
    entries: HashMap<TxId, (Transaction, DropReason)>,
    unreported: Vec<(TxId, DropReason)>,
}

impl DropLog {
    fn record(&mut self, txid: TxId, tx: Transaction, reason: DropReason, capacity: usize) {
        if capacity == 0 {
            return;
        }
        if self.entries.insert(txid, (tx, reason)).is_none() {
            self.order.push_back(txid);
        }
        self.unreported.push((txid, reason));
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    /// Admitted again: no longer dropped. (Its slot in `order` ages out.)
    fn forget(&mut self, txid: &TxId) {
        self.entries.remove(txid);
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

/// One pending transaction and what the pool needs to know about it.
#[derive(Clone, Debug)]
struct PoolTx {
    tx: Transaction,
    txid: TxId,
    size: usize,
    added_ms: u64,
    /// Admission order; unique, never reused.
    seq: u64,
    /// Admitted behind a nonce gap and not executable since: in the side
    /// pool, and not yet reported for relay.
    held: bool,
}

/// The pending transactions of one sender, by nonce. Nonces in
/// `confirmed_nonce..executable_end` are all present (the executable
/// queue); anything at or after `executable_end` is the future queue.
#[derive(Debug)]
struct SenderQueue {
    confirmed_nonce: u64,
    executable_end: u64,
    txs: BTreeMap<u64, PoolTx>,
    /// Sum of amount plus fee of every pending tx; u128 so it cannot
    /// overflow however many transactions are queued.
    total_cost: u128,
    /// How many of `txs` are held.
    held: usize,
}

impl SenderQueue {
    fn new(confirmed_nonce: u64) -> Self {
        SenderQueue {
            confirmed_nonce,
            executable_end: confirmed_nonce,
            txs: BTreeMap::new(),
            total_cost: 0,
            held: 0,
        }
    }

    /// Moves `executable_end` forward over consecutive present nonces.
    fn extend_executable(&mut self) {
        // Nonces are u64: the run ends at u64::MAX at the latest.
        while self.txs.contains_key(&self.executable_end) {
            match self.executable_end.checked_add(1) {
                Some(next) => self.executable_end = next,
                None => break,
            }
        }
    }
}

/// Eviction candidate: the last tx of a sender's queue. Held ones first
/// (`false`: not executable), then lowest fee first, and among equal fees
/// the most recent arrival first, so an older transaction is never pushed
/// out by a newer one paying the same.
type TailKey = (bool, Amount, Reverse<u64>, Address);

fn cost_of(tx: &Transaction) -> u128 {
    u128::from(tx.amount.base_units()) + u128::from(tx.fee.base_units())
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

/// Every index over the pool besides the sender queues, kept apart so the
/// two can be borrowed mutably at once.
#[derive(Default)]
struct PoolIndex {
    by_txid: HashMap<TxId, (Address, u64)>,
    /// Admission order, oldest first.
    by_seq: BTreeMap<u64, TxId>,
    /// (admitted at, seq), oldest first, for expiry.
    by_age: BTreeSet<(u64, u64)>,
    by_recipient: BTreeSet<(Address, u64)>,
    tails: BTreeSet<TailKey>,
    bytes: usize,
    next_seq: u64,
    /// Held transactions in all queues (the side pool's size).
    held: usize,
    /// Held txs that became executable since the last `take_promoted`.
    promoted: Vec<TxId>,
    /// Txs refused for the side pool's caps since the last
    /// `take_future_refusals`.
    future_refused: u64,
}

impl PoolIndex {
    fn tail_key(queue: &SenderQueue, sender: Address) -> Option<TailKey> {
        queue
            .txs
            .last_key_value()
            .map(|(_, entry)| (!entry.held, entry.tx.fee, Reverse(entry.seq), sender))
    }

    /// Inserts `entry`, held when it lands past a gap in its sender's
    /// nonces; txs it makes executable are promoted.
    fn insert(&mut self, queue: &mut SenderQueue, sender: Address, mut entry: PoolTx) {
        if let Some(old_tail) = Self::tail_key(queue, sender) {
            self.tails.remove(&old_tail);
        }
        let nonce = entry.tx.nonce;
        entry.held = nonce > queue.executable_end;
        if entry.held {
            queue.held += 1;
            self.held += 1;
        }
        self.by_txid.insert(entry.txid, (sender, nonce));
        self.by_seq.insert(entry.seq, entry.txid);
        self.by_age.insert((entry.added_ms, entry.seq));
        self.by_recipient.insert((entry.tx.to, entry.seq));
        self.bytes += entry.size;
        queue.total_cost += cost_of(&entry.tx);
        queue.txs.insert(nonce, entry);
        if nonce == queue.executable_end {
            queue.extend_executable();
            self.promote(queue, nonce);
        }
        if let Some(new_tail) = Self::tail_key(queue, sender) {
            self.tails.insert(new_tail);
        }
    }

    /// Releases the held txs in `from..executable_end` (now executable)
    /// from the side pool. The caller refreshes the queue's tail key.
    fn promote(&mut self, queue: &mut SenderQueue, from: u64) {
        if queue.held == 0 || from >= queue.executable_end {
            return;
        }
        for entry in queue
            .txs
            .range_mut(from..queue.executable_end)
            .map(|(_, entry)| entry)
        {
            if entry.held {
                entry.held = false;
                queue.held -= 1;
                self.held -= 1;
                self.promoted.push(entry.txid);
            }
        }
    }

    fn remove(&mut self, queue: &mut SenderQueue, sender: Address, nonce: u64) -> Option<PoolTx> {
        let old_tail = Self::tail_key(queue, sender);
        let entry = queue.txs.remove(&nonce)?;
        if let Some(old_tail) = old_tail {
            self.tails.remove(&old_tail);
        }
        self.by_txid.remove(&entry.txid);
        self.by_seq.remove(&entry.seq);
        self.by_age.remove(&(entry.added_ms, entry.seq));
        self.by_recipient.remove(&(entry.tx.to, entry.seq));
        self.bytes -= entry.size;
        queue.total_cost -= cost_of(&entry.tx);
        if entry.held {
            queue.held -= 1;
            self.held -= 1;
        }
        if nonce >= queue.confirmed_nonce && nonce < queue.executable_end {
            // A hole in the executable run: everything after it waits.
            queue.executable_end = nonce;
        }
        if let Some(new_tail) = Self::tail_key(queue, sender) {
            self.tails.insert(new_tail);
        }
        Some(entry)
    }
}

thread_local! {
    /// The last spec whose genesis hash `precheck` computed on this thread.
    /// Hashing the genesis block serializes the whole spec, which would cost
    /// more than the rest of admission; specs never change in a process.
    static GENESIS_MEMO: RefCell<Option<(ChainSpec, BlockHash)>> = const { RefCell::new(None) };
}

fn genesis_of(spec: &ChainSpec) -> BlockHash {
    GENESIS_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some((known, hash)) = memo.as_ref() {
            if known == spec {
                return *hash;
            }
        }
        let hash = spec.genesis_hash();
        *memo = Some((spec.clone(), hash));
        hash
    })
}

/// Format and signature checks against the chain with `genesis`.
fn check_format_and_signature(
    genesis: &BlockHash,
    cache: &SignatureCache,
    tx: &Transaction,
) -> Result<TxId, MempoolError> {
    tx.check_format()
        .map_err(|error| MempoolError::Malformed(error.to_string()))?;
    let txid = tx.txid();
    if cache.contains(&txid) {
        return Ok(txid);
    }
    if tx.verify_signature(genesis).is_ok() {
        cache.insert(txid);
        return Ok(txid);
    }
    // Tries the other built-in chains' genesis hashes to tell a signature
    // for another chain (`wrong_chain`) from a bad one.
    match validation::classify_signature_failure(tx, genesis) {
        TxError::WrongChain => Err(MempoolError::WrongChain),
        _ => Err(MempoolError::BadSignature),
    }
}

impl Mempool {
    pub fn new(spec: ChainSpec, config: MempoolConfig, cache: SignatureCache) -> Mempool {
        let genesis = spec.genesis_hash();
        Mempool {
            spec,
            genesis,
            config,
            cache,
            senders: HashMap::new(),
            index: PoolIndex::default(),
            dropped: DropLog::default(),
        }
    }

    fn record_drop(&mut self, entry: PoolTx, reason: DropReason) {
        let capacity = self.config.max_dropped_records;
        self.dropped.record(entry.txid, entry.tx, reason, capacity);
    }

    /// A transaction this pool let go lately, and why.
    pub fn dropped(&self, txid: &TxId) -> Option<(&Transaction, DropReason)> {
        self.dropped
            .entries
            .get(txid)
            .map(|(tx, reason)| (tx, *reason))
    }

    /// The drops since the last call, in order, for events and metrics.
    pub fn take_drops(&mut self) -> Vec<(TxId, DropReason)> {
        std::mem::take(&mut self.dropped.unreported)
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
        let Some((sender, nonce)) = self.index.by_txid.get(txid) else {
            return false;
        };
        self.senders
            .get(sender)
            .and_then(|queue| queue.txs.get(nonce))
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

    /// The checks that need no pool state: format and the signature (for
    /// this chain). Meant to run before taking the pool's lock. A verified
    /// txid goes into `cache`, so neither [`Mempool::add`] nor block
    /// validation verifies it again.
    pub fn precheck(
        spec: &ChainSpec,
        cache: &SignatureCache,
        tx: &Transaction,
    ) -> Result<TxId, MempoolError> {
        check_format_and_signature(&genesis_of(spec), cache, tx)
    }

    /// Admits `tx` against the confirmed state in `accounts`. Checks, in
    /// order: format and signature (free when [`Mempool::precheck`] already
    /// cached the txid), duplicate, fee, nonce window, replacement price,
    /// balance, caps (evicting cheaper transactions if the newcomer pays
    /// more).
    pub fn add(
        &mut self,
        tx: Transaction,
        accounts: &impl AccountSource,
        now_ms: u64,
    ) -> Result<TxId, MempoolError> {
        let txid = check_format_and_signature(&self.genesis, &self.cache, &tx)?;
        if self.index.by_txid.contains_key(&txid) {
            return Err(MempoolError::Duplicate);
        }
        if tx.fee < self.spec.min_fee {
            return Err(MempoolError::FeeTooLow);
        }
        let sender = tx.sender();
        let account = accounts.account(&sender);
        // Nonces below the confirmed one are most likely in a block whose
        // settling has not reached the pool yet: not reported as dropped.
        self.sync_sender(sender, account, false);
        let result = self.admit(sender, account, txid, tx, now_ms);
        self.drop_queue_if_empty(&sender);
        if result.is_ok() {
            self.dropped.forget(&txid);
        }
        result
    }

    fn admit(
        &mut self,
        sender: Address,
        account: Account,
        txid: TxId,
        tx: Transaction,
        now_ms: u64,
    ) -> Result<TxId, MempoolError> {
        let balance = account.balance;
        let queue = self
            .senders
            .entry(sender)
            .or_insert_with(|| SenderQueue::new(account.nonce));
        if tx.nonce < queue.confirmed_nonce {
            return Err(MempoolError::NonceTooLow);
        }
        if tx.nonce
            > queue
                .executable_end
                .saturating_add(self.config.max_nonce_gap)
        {
            return Err(MempoolError::NonceTooHigh);
        }
        let replaced_cost = match queue.txs.get(&tx.nonce) {
            Some(old) => {
                // new >= old * 1.1, in integers.
                let new_fee = u128::from(tx.fee.base_units()) * 100;
                let needed = u128::from(old.tx.fee.base_units())
                    * u128::from(100 + REPLACEMENT_FEE_BUMP_PERCENT);
                if new_fee < needed {
                    return Err(MempoolError::ReplacementUnderpriced);
                }
                cost_of(&old.tx)
            }
            None => 0,
        };
        if queue.total_cost - replaced_cost + cost_of(&tx) > u128::from(balance.base_units()) {
            return Err(MempoolError::InsufficientFunds);
        }
        let replacing = queue.txs.get(&tx.nonce);
        let newcomer_held = match replacing {
            Some(old) => old.held,
            None => tx.nonce > queue.executable_end,
        };
        if newcomer_held && replacing.is_none() && queue.held >= self.config.max_future_per_sender {
            self.index.future_refused += 1;
            tracing::debug!(%txid, sender = %self.spec.format_address(&sender), held = queue.held, rule = "future_per_sender", "mempool: sender's held txs at their cap");
            return Err(MempoolError::MempoolFull);
        }

        let fee = tx.fee;
        let nonce = tx.nonce;
        let entry = PoolTx {
            size: tx.encoded_len(),
            tx,
            txid,
            added_ms: now_ms,
            seq: self.index.next_seq,
            held: false,
        };
        self.index.next_seq += 1;
        let replaced = self.index.remove(queue, sender, nonce);
        self.index.insert(queue, sender, entry);

        // Over a cap: evict sender tails, held ones first, then the
        // cheapest. Only tails, so no pending tx ever loses the tx it
        // builds on. A held newcomer never evicts an executable tx; if the
        // first tail ranks as high as the newcomer and pays as much (or is
        // the newcomer), undo it all.
        let mut evicted: Vec<(Address, PoolTx)> = Vec::new();
        while self.len() > self.config.max_txs
            || self.index.bytes > self.config.max_bytes
            || self.index.held > self.config.max_future_txs
        {
            let Some(&(tail_executable, tail_fee, Reverse(tail_seq), tail_sender)) =
                self.index.tails.first()
            else {
                break;
            };
            let outranked = (tail_executable, tail_fee) < (!newcomer_held, fee);
            if !outranked || tail_seq == self.index.next_seq - 1 {
                if newcomer_held {
                    self.index.future_refused += 1;
                    tracing::debug!(%txid, sender = %self.spec.format_address(&sender), rule = "future_total", "mempool: held txs at their cap");
                }
                self.roll_back(sender, nonce, replaced, evicted);
                return Err(MempoolError::MempoolFull);
            }
            let Some(tail_queue) = self.senders.get_mut(&tail_sender) else {
                break;
            };
            let Some(tail_nonce) = tail_queue.txs.last_key_value().map(|(nonce, _)| *nonce) else {
                break;
            };
            if let Some(entry) = self.index.remove(tail_queue, tail_sender, tail_nonce) {
                evicted.push((tail_sender, entry));
            }
        }
        for (evicted_sender, entry) in evicted {
            tracing::debug!(txid = %entry.txid, sender = %self.spec.format_address(&evicted_sender), fee = entry.tx.fee.base_units(), "mempool full: evicted");
            self.drop_queue_if_empty(&evicted_sender);
            self.record_drop(entry, DropReason::Evicted);
        }
        if let Some(old) = replaced {
            tracing::debug!(old = %old.txid, new = %txid, "replaced pending transaction");
            self.record_drop(old, DropReason::Replaced);
        }
        Ok(txid)
    }

    /// Undoes an admission that could not make room.
    fn roll_back(
        &mut self,
        sender: Address,
        nonce: u64,
        replaced: Option<PoolTx>,
        evicted: Vec<(Address, PoolTx)>,
    ) {
        if let Some(queue) = self.senders.get_mut(&sender) {
            self.index.remove(queue, sender, nonce);
            if let Some(old) = replaced {
                self.index.insert(queue, sender, old);
            }
        }
        for (evicted_sender, entry) in evicted.into_iter().rev() {
            if let Some(queue) = self.senders.get_mut(&evicted_sender) {
                self.index.insert(queue, evicted_sender, entry);
            }
        }
    }

    /// Brings a sender's queue in line with its confirmed account: drops
    /// nonces now confirmed (or conflicting with confirmed ones), recomputes
    /// the executable run, then drops from the tail until the balance
    /// covers every pending transaction. Returns how many were dropped.
    /// `report_stale`: the block's own transactions are out of the pool
    /// already, so any left below the confirmed nonce lost to another.
    fn sync_sender(&mut self, sender: Address, account: Account, report_stale: bool) -> usize {
        let queue = self
            .senders
            .entry(sender)
            .or_insert_with(|| SenderQueue::new(account.nonce));
        let mut gone = Vec::new();
        if queue.confirmed_nonce != account.nonce {
            let stale: Vec<u64> = queue
                .txs
                .range(..account.nonce)
                .map(|(nonce, _)| *nonce)
                .collect();
            for nonce in stale {
                if let Some(entry) = self.index.remove(queue, sender, nonce) {
                    if report_stale {
                        gone.push((entry, DropReason::NonceUsed));
                    }
                }
            }
            let old_tail = PoolIndex::tail_key(queue, sender);
            queue.confirmed_nonce = account.nonce;
            queue.executable_end = account.nonce;
            queue.extend_executable();
            self.index.promote(queue, account.nonce);
            if let Some(old_tail) = old_tail {
                self.index.tails.remove(&old_tail);
            }
            if let Some(new_tail) = PoolIndex::tail_key(queue, sender) {
                self.index.tails.insert(new_tail);
            }
        }
        let balance = u128::from(account.balance.base_units());
        while queue.total_cost > balance {
            let Some(last) = queue.txs.last_key_value().map(|(nonce, _)| *nonce) else {
                break;
            };
            if let Some(entry) = self.index.remove(queue, sender, last) {
                gone.push((entry, DropReason::Unaffordable));
            }
        }
        self.drop_queue_if_empty(&sender);
        let dropped = gone.len();
        for (entry, reason) in gone {
            self.record_drop(entry, reason);
        }
        dropped
    }

    fn drop_queue_if_empty(&mut self, sender: &Address) {
        if self
            .senders
            .get(sender)
            .is_some_and(|queue| queue.txs.is_empty())
        {
            self.senders.remove(sender);
        }
    }

    /// Removes one pending tx by txid.
    fn remove_txid(&mut self, txid: &TxId) -> Option<PoolTx> {
        let (sender, nonce) = *self.index.by_txid.get(txid)?;
        let queue = self.senders.get_mut(&sender)?;
        let entry = self.index.remove(queue, sender, nonce);
        self.drop_queue_if_empty(&sender);
        entry
    }

    pub fn get(&self, txid: &TxId) -> Option<&Transaction> {
        let (sender, nonce) = self.index.by_txid.get(txid)?;
        self.senders
            .get(sender)?
            .txs
            .get(nonce)
            .map(|entry| &entry.tx)
    }

    /// When a pending tx was admitted (wall-clock ms).
    pub fn added_ms(&self, txid: &TxId) -> Option<u64> {
        let (sender, nonce) = self.index.by_txid.get(txid)?;
        self.senders
            .get(sender)?
            .txs
            .get(nonce)
            .map(|entry| entry.added_ms)
    }

    pub fn contains(&self, txid: &TxId) -> bool {
        self.index.by_txid.contains_key(txid)
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
        self.index.by_seq.values().take(limit).copied().collect()
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
                    .map(|(_, entry)| &entry.tx)
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
            .copied()
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
            seqs.extend(queue.txs.values().map(|entry| (entry.seq, &entry.tx)));
        }
        for (_, seq) in self
            .index
            .by_recipient
            .range((*address, 0)..=(*address, u64::MAX))
        {
            let Some(txid) = self.index.by_seq.get(seq) else {
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

    /// Follows a block that extended the best chain: drops its
    /// transactions, and any pending tx of its senders that can no longer
    /// be valid (nonce now used, or no longer affordable). `accounts` is
    /// the state after the block.
    pub fn block_connected(&mut self, block: &Block, accounts: &impl AccountSource) {
        let mut senders = HashSet::new();
        let mut included = 0usize;
        for tx in &block.txs {
            if self.remove_txid(&tx.txid()).is_some() {
                included += 1;
            }
            senders.insert(tx.sender());
        }
        let mut invalidated = 0usize;
        for sender in senders {
            if self.senders.contains_key(&sender) {
                invalidated += self.sync_sender(sender, accounts.account(&sender), true);
            }
        }
        tracing::debug!(
            height = block.header.height,
            included,
            invalidated,
            pending = self.len(),
            "mempool followed block"
        );
    }

    /// Drops transactions admitted `expiry_ms` or longer before `now_ms`.
    /// Later nonces of the same sender stay, in its future queue.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut expired = 0;
        while let Some(&(added_ms, seq)) = self.index.by_age.first() {
            if added_ms.saturating_add(self.config.expiry_ms) > now_ms {
                break;
            }
            let Some(txid) = self.index.by_seq.get(&seq).copied() else {
                self.index.by_age.remove(&(added_ms, seq));
                continue;
            };
            if let Some(entry) = self.remove_txid(&txid) {
                self.record_drop(entry, DropReason::Expired);
            }
            expired += 1;
        }
        if expired > 0 {
            tracing::debug!(
                expired,
                pending = self.len(),
                "mempool expired transactions"
            );
        }
        expired
    }

    /// A block template's transactions: the highest fee first, but never a
    /// sender's nonce before its predecessor (a heap holds each sender's
    /// next executable tx, so a later nonce enters only after the earlier
    /// one, however much it pays). Every tx is checked in sequence against
    /// `accounts` (the state the block builds on) as the earlier ones left
    /// it, and the total encoded size stays within `max_tx_bytes`.
    pub fn select_for_block(
        &self,
        accounts: &impl AccountSource,
        max_tx_bytes: usize,
    ) -> Vec<Transaction> {
        #[derive(PartialEq, Eq)]
        struct Candidate {
            fee: Amount,
            seq: u64,
            sender: Address,
            nonce: u64,
        }
        impl Ord for Candidate {
            fn cmp(&self, other: &Self) -> Ordering {
                // Max-heap: higher fee first, then earlier arrival.
                self.fee
                    .cmp(&other.fee)
                    .then_with(|| other.seq.cmp(&self.seq))
            }
        }
        impl PartialOrd for Candidate {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        let mut overlay: HashMap<Address, Account> = HashMap::with_capacity(self.senders.len() * 2);
        let mut heap = BinaryHeap::with_capacity(self.senders.len());
        for (sender, queue) in &self.senders {
            let account = accounts.account(sender);
            overlay.insert(*sender, account);
            if let Some(entry) = queue.txs.get(&account.nonce) {
                heap.push(Candidate {
                    fee: entry.tx.fee,
                    seq: entry.seq,
                    sender: *sender,
                    nonce: account.nonce,
                });
            }
        }

        let mut selected = Vec::new();
        let mut used = 0usize;
        let mut reward = self.spec.block_subsidy;
        while let Some(candidate) = heap.pop() {
            if max_tx_bytes.saturating_sub(used) < MIN_TX_BYTES {
                break;
            }
            let Some(queue) = self.senders.get(&candidate.sender) else {
                continue;
            };
            let Some(entry) = queue.txs.get(&candidate.nonce) else {
                continue;
            };
            // Any failure below drops the sender for this template: its
            // later nonces cannot come before this one.
            if used + entry.size > max_tx_bytes {
                continue;
            }
            let sender_account = overlay.get(&candidate.sender).copied().unwrap_or_default();
            if validation::check_tx_against_account(&entry.tx, &sender_account, &self.spec).is_err()
            {
                continue;
            }
            let Some(new_reward) = reward.checked_add(entry.tx.fee) else {
                continue;
            };
            let Some(debited) = entry
                .tx
                .total_cost()
                .and_then(|cost| sender_account.balance.checked_sub(cost))
            else {
                continue;
            };
            let Some(nonce_after) = sender_account.nonce.checked_add(1) else {
                continue;
            };
            let debited = Account {
                balance: debited,
                nonce: nonce_after,
            };
            // Validation applies txs in order, so a recipient may spend
            // what an earlier tx of the same block paid it.
            let recipient = entry.tx.to;
            let recipient_before = if recipient == candidate.sender {
                debited
            } else {
                overlay
                    .get(&recipient)
                    .copied()
                    .unwrap_or_else(|| accounts.account(&recipient))
            };
            let Some(credited_balance) = recipient_before.balance.checked_add(entry.tx.amount)
            else {
                continue;
            };
            overlay.insert(candidate.sender, debited);
            overlay.insert(
                recipient,
                Account {
                    balance: credited_balance,
                    nonce: recipient_before.nonce,
                },
            );
            reward = new_reward;
            used += entry.size;
            selected.push(entry.tx.clone());
            if let Some(next) = queue.txs.get(&nonce_after) {
                heap.push(Candidate {
                    fee: next.tx.fee,
                    seq: next.seq,
                    sender: candidate.sender,
                    nonce: nonce_after,
                });
            }
        }
        selected
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

#[cfg(feature = "storage")]
impl Mempool {
    /// Follows a change of the best chain: drops the transactions of the
    /// connected blocks, re-syncs every account the change touched (nonces
    /// can move back in a reorg and balances either way), then re-admits
    /// the transactions of the disconnected blocks, oldest first, that are
    /// not in the connected blocks and are still valid. `accounts` is the
    /// state at the new tip.
    pub fn apply_update(
        &mut self,
        update: &crate::chain::ChainUpdate,
        accounts: &impl AccountSource,
        now_ms: u64,
    ) {
        let mut touched: HashSet<Address> = HashSet::new();
        let mut connected_txids: HashSet<TxId> = HashSet::new();
        for block in &update.connected {
            touched.insert(block.header.miner);
            for tx in &block.txs {
                let txid = tx.txid();
                self.remove_txid(&txid);
                connected_txids.insert(txid);
                touched.insert(tx.sender());
                touched.insert(tx.to);
            }
        }
        for block in &update.disconnected {
            touched.insert(block.header.miner);
            for tx in &block.txs {
                touched.insert(tx.sender());
                touched.insert(tx.to);
            }
        }
        let mut invalidated = 0usize;
        for address in touched {
            if self.senders.contains_key(&address) {
                invalidated += self.sync_sender(address, accounts.account(&address), true);
            }
        }
        let mut readmitted = 0usize;
        let mut refused = 0usize;
        // `disconnected` lists the old tip first; re-admit in height order
        // so each sender's nonces arrive in sequence.
        for block in update.disconnected.iter().rev() {
            for tx in &block.txs {
                if connected_txids.contains(&tx.txid()) {
                    continue;
                }
                match self.add(tx.clone(), accounts, now_ms) {
                    Ok(_) => readmitted += 1,
                    Err(MempoolError::Duplicate) => {}
                    Err(_) => {
                        refused += 1;
                        let capacity = self.config.max_dropped_records;
                        self.dropped
                            .record(tx.txid(), tx.clone(), DropReason::Reorg, capacity);
                    }
                }
            }
        }
        tracing::debug!(
            disconnected = update.disconnected.len(),
            connected = update.connected.len(),
            readmitted,
            refused,
            invalidated,
            pending = self.len(),
            "mempool followed chain update"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Block, Header};
    use crate::keys::{PublicKey, Signature};
    use proptest::prelude::*;

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
                    assert_eq!(
                        self.index.by_txid.get(&entry.txid),
                        Some(&(*sender, *nonce))
                    );
                    assert_eq!(self.index.by_seq.get(&entry.seq), Some(&entry.txid));
                    assert!(self.index.by_age.contains(&(entry.added_ms, entry.seq)));
                    assert!(self.index.by_recipient.contains(&(entry.tx.to, entry.seq)));
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
            assert_eq!(self.index.by_age.len(), count);
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
                                height: 1,
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
