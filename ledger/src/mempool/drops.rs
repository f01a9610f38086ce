//! What the pool let go without a block confirming it: `DropReason`, and a
//! bounded log of recent drops that the API reads (`GET /v1/txs/{txid}`
//! says why a tx is gone) and that the node drains for events and metrics.

use super::queue::PoolTx;
use super::Mempool;
use crate::hash::TxId;
use crate::tx::Transaction;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

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
pub(super) struct DropLog {
    order: VecDeque<TxId>,
    entries: HashMap<TxId, (Transaction, DropReason)>,
    unreported: Vec<(TxId, DropReason)>,
}

impl DropLog {
    pub(super) fn record(
        &mut self,
        txid: TxId,
        tx: Transaction,
        reason: DropReason,
        capacity: usize,
    ) {
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
    pub(super) fn forget(&mut self, txid: &TxId) {
        self.entries.remove(txid);
    }
}
impl Mempool {
    pub(super) fn record_drop(&mut self, entry: PoolTx, reason: DropReason) {
        let capacity = self.config.max_dropped_records;
        // The txid index let go of its share when the entry was removed.
        let tx = Arc::unwrap_or_clone(entry.tx);
        self.dropped.record(entry.txid, tx, reason, capacity);
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
}
