//! Admission: the checks a transaction passes to enter the pool (format
//! and signature, which `precheck` runs before the pool's lock; then
//! duplicate, fee, nonce window, replacement price, balance) and the caps,
//! enforced by evicting queue tails, held txs first, then the cheapest.
//! An admission that cannot make room is undone whole.

use super::drops::DropReason;
use super::queue::{cost_of, PoolTx, SenderQueue};
use super::{Mempool, MempoolError, REPLACEMENT_FEE_BUMP_PERCENT};
use crate::address::Address;
use crate::hash::{BlockHash, TxId};
use crate::sigcache::SignatureCache;
use crate::state::{Account, AccountSource};
use crate::tx::Transaction;
use crate::validation::{self, TxError};
use std::cmp::Reverse;
use std::sync::Arc;

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
    /// The checks that need no pool state: format and the signature (for
    /// the chain whose genesis hash is `genesis`). Meant to run before
    /// taking the pool's lock. A verified txid goes into `cache`, so
    /// neither [`Mempool::add`] nor block validation verifies it again.
    pub fn precheck(
        genesis: &BlockHash,
        cache: &SignatureCache,
        tx: &Transaction,
    ) -> Result<TxId, MempoolError> {
        check_format_and_signature(genesis, cache, tx)
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

    pub(super) fn admit(
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
            tx: Arc::new(tx),
            txid,
            added_ms: self.index.admitted_at(now_ms),
            seq: self.index.next_seq,
            held: newcomer_held,
        };
        self.index.next_seq += 1;
        let replaced = self.index.remove(queue, sender, nonce);
        if replaced.is_some() {
            // A replacement takes its predecessor's place as it was, held
            // or not: a tx that a later hole (expiry, a reorg) left behind
            // the executable run is not held, and its replacement must not
            // become held past the checks above (the side pool's caps).
            self.index.restore(queue, sender, entry);
        } else {
            self.index.insert(queue, sender, entry);
        }

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
    pub(super) fn roll_back(
        &mut self,
        sender: Address,
        nonce: u64,
        replaced: Option<PoolTx>,
        evicted: Vec<(Address, PoolTx)>,
    ) {
        if let Some(queue) = self.senders.get_mut(&sender) {
            self.index.remove(queue, sender, nonce);
            if let Some(old) = replaced {
                self.index.restore(queue, sender, old);
            }
        }
        for (evicted_sender, entry) in evicted.into_iter().rev() {
            if let Some(queue) = self.senders.get_mut(&evicted_sender) {
                self.index.restore(queue, evicted_sender, entry);
            }
        }
    }
}
