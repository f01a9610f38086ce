//! Following the chain: a connected block takes its transactions out and
//! re-syncs its senders' queues with their confirmed accounts (nonces used,
//! balances that no longer cover the queue); a reorg also re-admits the
//! disconnected blocks' transactions; and pending txs expire. Connected
//! blocks' txids are remembered (`recent`) until a reorg.

use super::drops::DropReason;
use super::queue::{PoolIndex, PoolTx, SenderQueue};
use super::Mempool;
#[cfg(feature = "storage")]
use super::MempoolError;
use crate::address::Address;
use crate::hash::TxId;
use crate::state::{Account, AccountSource};
use crate::Block;
use std::collections::HashSet;

impl Mempool {
    /// Brings a sender's queue in line with its confirmed account: drops
    /// nonces now confirmed (or conflicting with confirmed ones), recomputes
    /// the executable run, then drops from the tail until the balance
    /// covers every pending transaction. Returns how many were dropped.
    /// `report_stale`: the block's own transactions are out of the pool
    /// already, so any left below the confirmed nonce lost to another.
    pub(super) fn sync_sender(
        &mut self,
        sender: Address,
        account: Account,
        report_stale: bool,
    ) -> usize {
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

    pub(super) fn drop_queue_if_empty(&mut self, sender: &Address) {
        if self
            .senders
            .get(sender)
            .is_some_and(|queue| queue.txs.is_empty())
        {
            self.senders.remove(sender);
        }
    }

    /// Removes one pending tx by txid.
    pub(super) fn remove_txid(&mut self, txid: &TxId) -> Option<PoolTx> {
        let slot = self.index.by_txid.get(txid)?;
        let (sender, nonce) = (slot.sender, slot.nonce);
        let queue = self.senders.get_mut(&sender)?;
        let entry = self.index.remove(queue, sender, nonce);
        self.drop_queue_if_empty(&sender);
        entry
    }

    /// Follows a block that extended the best chain: drops its
    /// transactions, and any pending tx of its senders that can no longer
    /// be valid (nonce now used, or no longer affordable). `accounts` is
    /// the state after the block.
    pub fn block_connected(&mut self, block: &Block, accounts: &impl AccountSource) {
        let mut senders = HashSet::new();
        let mut included = 0usize;
        for tx in &block.txs {
            let txid = tx.txid();
            if self.remove_txid(&txid).is_some() {
                included += 1;
            }
            self.index.known.confirmed(&txid);
            senders.insert(tx.sender());
        }
        let mut invalidated = 0usize;
        for sender in senders {
            if self.senders.contains_key(&sender) {
                invalidated += self.sync_sender(sender, accounts.account(&sender), true);
            }
        }
        tracing::debug!(
            height = block.header.height.0,
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
        while let Some((&seq, &(txid, added_ms))) = self.index.by_seq.first_key_value() {
            if added_ms.saturating_add(self.config.expiry_ms) > now_ms {
                break;
            }
            match self.remove_txid(&txid) {
                Some(entry) => self.record_drop(entry, DropReason::Expired),
                // Cannot happen (the indexes move together); never loop.
                None => {
                    self.index.by_seq.remove(&seq);
                }
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
        if !update.disconnected.is_empty() {
            self.index.known.forget_confirmed();
        }
        for block in &update.connected {
            touched.insert(block.header.miner);
            for tx in &block.txs {
                let txid = tx.txid();
                self.remove_txid(&txid);
                self.index.known.confirmed(&txid);
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
