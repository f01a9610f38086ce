//! A sender's pending transactions (`SenderQueue`: nonce order, an
//! executable run and a future part) and `PoolIndex`, every index over all
//! queues: by txid, admission order, age, recipient, the eviction order of
//! queue tails, and the side pool of held txs. `PoolIndex::insert` and
//! `remove` keep all of them and the queue in step, so nothing else edits
//! a queue's transactions.

use super::known::KnownTxids;
use crate::address::Address;
use crate::amount::Amount;
use crate::hash::TxId;
use crate::tx::Transaction;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// One pending transaction and what the pool needs to know about it.
#[derive(Clone, Debug)]
pub(super) struct PoolTx {
    /// Shared with the pool's txid index, which answers `Mempool::get`.
    pub(super) tx: Arc<Transaction>,
    pub(super) txid: TxId,
    pub(super) size: usize,
    pub(super) added_ms: u64,
    /// Admission order; unique, never reused.
    pub(super) seq: u64,
    /// Admitted behind a nonce gap and not executable since: in the side
    /// pool, and not yet reported for relay.
    pub(super) held: bool,
}

/// The pending transactions of one sender, by nonce. Nonces in
/// `confirmed_nonce..executable_end` are all present (the executable
/// queue); anything at or after `executable_end` is the future queue.
#[derive(Debug)]
pub(super) struct SenderQueue {
    pub(super) confirmed_nonce: u64,
    pub(super) executable_end: u64,
    /// Boxed: most queues hold a tx or two, and a B-tree leaf has room
    /// for eleven values, so unboxed every queue would cost some 3 KB.
    pub(super) txs: BTreeMap<u64, Box<PoolTx>>,
    /// Sum of amount plus fee of every pending tx; u128 so it cannot
    /// overflow however many transactions are queued.
    pub(super) total_cost: u128,
    /// How many of `txs` are held.
    pub(super) held: usize,
}

impl SenderQueue {
    pub(super) fn new(confirmed_nonce: u64) -> Self {
        SenderQueue {
            confirmed_nonce,
            executable_end: confirmed_nonce,
            txs: BTreeMap::new(),
            total_cost: 0,
            held: 0,
        }
    }

    /// Moves `executable_end` forward over consecutive present nonces.
    pub(super) fn extend_executable(&mut self) {
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
pub(super) type TailKey = (bool, Amount, Reverse<u64>, Address);

pub(super) fn cost_of(tx: &Transaction) -> u128 {
    u128::from(tx.amount.base_units()) + u128::from(tx.fee.base_units())
}

/// A pending tx as the txid index holds it: where its queue entry is,
/// and the tx itself, so a lookup by txid (relay's answers, block
/// rebuilds) is one probe instead of a walk through the sender's queue.
#[derive(Debug)]
pub(super) struct TxSlot {
    pub(super) sender: Address,
    pub(super) nonce: u64,
    pub(super) tx: Arc<Transaction>,
}

/// Every index over the pool besides the sender queues, kept apart so the
/// two can be borrowed mutably at once.
#[derive(Default)]
pub(super) struct PoolIndex {
    pub(super) by_txid: HashMap<TxId, TxSlot>,
    /// The pending txids again, with the recently confirmed ones, for
    /// relay's one-probe answers.
    pub(super) known: KnownTxids,
    /// Admission order, oldest first, with each tx's admission time:
    /// admission times never go back (see `admitted_at`), so this is
    /// also the order in which txs expire.
    pub(super) by_seq: BTreeMap<u64, (TxId, u64)>,
    pub(super) by_recipient: BTreeSet<(Address, u64)>,
    pub(super) tails: BTreeSet<TailKey>,
    pub(super) bytes: usize,
    pub(super) next_seq: u64,
    /// The latest admission time given out.
    pub(super) last_added_ms: u64,
    /// Held transactions in all queues (the side pool's size).
    pub(super) held: usize,
    /// Held txs that became executable since the last `take_promoted`.
    pub(super) promoted: Vec<TxId>,
    /// Txs refused for the side pool's caps since the last
    /// `take_future_refusals`.
    pub(super) future_refused: u64,
}

impl PoolIndex {
    /// An empty index that remembers up to `recent_confirmed` confirmed
    /// txids.
    pub(super) fn new(recent_confirmed: usize) -> PoolIndex {
        PoolIndex {
            known: KnownTxids::new(recent_confirmed),
            ..PoolIndex::default()
        }
    }

    /// The admission time of a tx admitted at wall-clock `now_ms`: never
    /// before the last one given out, so that admission order is also age
    /// order (after the clock steps back, newcomers count as admitted at
    /// the latest time seen, and expire a little later, never earlier).
    pub(super) fn admitted_at(&mut self, now_ms: u64) -> u64 {
        self.last_added_ms = self.last_added_ms.max(now_ms);
        self.last_added_ms
    }

    pub(super) fn tail_key(queue: &SenderQueue, sender: Address) -> Option<TailKey> {
        queue
            .txs
            .last_key_value()
            .map(|(_, entry)| (!entry.held, entry.tx.fee, Reverse(entry.seq), sender))
    }

    /// Inserts `entry`, held when it lands past a gap in its sender's
    /// nonces; txs it makes executable are promoted.
    pub(super) fn insert(&mut self, queue: &mut SenderQueue, sender: Address, mut entry: PoolTx) {
        entry.held = entry.tx.nonce > queue.executable_end;
        self.place(queue, sender, entry);
    }

    /// Places an entry held or not as it says: one that an admission being
    /// undone removed, or a replacement taking its predecessor's place. A
    /// tx behind a hole that expiry or a reorg left is not held, and must
    /// not come back held (past the side pool's cap).
    pub(super) fn restore(&mut self, queue: &mut SenderQueue, sender: Address, entry: PoolTx) {
        self.place(queue, sender, entry);
    }

    fn place(&mut self, queue: &mut SenderQueue, sender: Address, entry: PoolTx) {
        if let Some(old_tail) = Self::tail_key(queue, sender) {
            self.tails.remove(&old_tail);
        }
        let nonce = entry.tx.nonce;
        if entry.held {
            queue.held += 1;
            self.held += 1;
        }
        self.by_txid.insert(
            entry.txid,
            TxSlot {
                sender,
                nonce,
                tx: Arc::clone(&entry.tx),
            },
        );
        self.known.pending_added(&entry.txid);
        self.by_seq.insert(entry.seq, (entry.txid, entry.added_ms));
        self.by_recipient.insert((entry.tx.to, entry.seq));
        self.bytes += entry.size;
        queue.total_cost += cost_of(&entry.tx);
        queue.txs.insert(nonce, Box::new(entry));
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
    pub(super) fn promote(&mut self, queue: &mut SenderQueue, from: u64) {
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

    pub(super) fn remove(
        &mut self,
        queue: &mut SenderQueue,
        sender: Address,
        nonce: u64,
    ) -> Option<PoolTx> {
        let old_tail = Self::tail_key(queue, sender);
        let entry = queue.txs.remove(&nonce)?;
        if let Some(old_tail) = old_tail {
            self.tails.remove(&old_tail);
        }
        self.by_txid.remove(&entry.txid);
        self.known.pending_removed(&entry.txid);
        self.by_seq.remove(&entry.seq);
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
        Some(*entry)
    }
}
