//! The block template: the pending transactions a miner should include,
//! highest fee first within each sender's nonce order, checked in sequence
//! against the state the block builds on and within a byte budget.

use super::Mempool;
use crate::address::Address;
use crate::amount::Amount;
use crate::state::{Account, AccountSource};
use crate::tx::Transaction;
use crate::validation;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The smallest encoded transaction (empty memo). A template stops looking
/// for more once less room than this is left.
const MIN_TX_BYTES: usize = 32 + 20 + 8 + 8 + 8 + 8 + 64;
impl Mempool {
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
            selected.push(Transaction::clone(&entry.tx));
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
}
