//! Account state: a balance and a nonce per address. This module owns the
//! `Account` record and the `AccountSource` view that validation and the
//! mempool read through; applying blocks and undoing them lives here too.

use crate::address::Address;
use crate::amount::Amount;
use crate::encoding::{Decode, Encode};
use std::collections::HashMap;

/// One account. An address never seen has the default: zero and zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Account {
    pub balance: Amount,
    /// The number of transactions this account has had confirmed, which is
    /// also the nonce its next transaction must carry.
    pub nonce: u64,
}

/// Read access to account state, whatever holds it (sled, a map, an overlay).
pub trait AccountSource {
    fn account(&self, address: &Address) -> Account;
}

impl AccountSource for HashMap<Address, Account> {
    fn account(&self, address: &Address) -> Account {
        self.get(address).copied().unwrap_or_default()
    }
}

impl AccountSource for std::collections::BTreeMap<Address, Account> {
    fn account(&self, address: &Address) -> Account {
        self.get(address).copied().unwrap_or_default()
    }
}

/// What undoing one block needs: the value every touched account had
/// before the block (the default account for one that did not exist), in
/// address order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct BlockUndo {
    pub previous: Vec<(Address, Account)>,
}

/// The effect of a block on account state: the new value of every touched
/// account (in address order) and the undo record that reverses it.
///
/// An account equal to the default (zero balance, zero nonce) is the same
/// as an absent one: stores delete it instead of writing it, so the state
/// and its digest depend only on the accounts that hold something.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockStateChange {
    pub updates: Vec<(Address, Account)>,
    pub undo: BlockUndo,
    /// Subsidy plus fees credited to the miner.
    pub reward: Amount,
}

/// Applies `block` to the state seen through `accounts` (the parent's
/// state) without writing anything: checks every transaction in order
/// against the accounts as the earlier transactions left them, then credits
/// the miner exactly subsidy plus fees.
pub fn apply_block(
    block: &crate::block::Block,
    spec: &crate::chainspec::ChainSpec,
    accounts: &impl AccountSource,
) -> Result<BlockStateChange, crate::validation::BlockError> {
    use crate::validation::{self, BlockError, TxError};
    let reward = validation::check_reward(block, spec)?;
    // (value before the block, current value)
    let mut overlay: HashMap<Address, (Account, Account)> =
        HashMap::with_capacity(block.txs.len() * 2 + 1);
    let load = |address: Address, overlay: &mut HashMap<Address, (Account, Account)>| {
        overlay
            .entry(address)
            .or_insert_with(|| {
                let account = accounts.account(&address);
                (account, account)
            })
            .1
    };
    for (index, tx) in block.txs.iter().enumerate() {
        let tx_error = |error: TxError| BlockError::Tx { index, error };
        let sender_address = tx.sender();
        let sender = load(sender_address, &mut overlay);
        validation::check_tx_against_account(tx, &sender, spec).map_err(tx_error)?;
        let cost = tx.total_cost().ok_or(tx_error(TxError::AmountOverflow))?;
        let debited = Account {
            balance: sender.balance.checked_sub(cost).ok_or(tx_error(
                TxError::InsufficientFunds {
                    balance: sender.balance,
                    needed: cost,
                },
            ))?,
            nonce: sender
                .nonce
                .checked_add(1)
                .ok_or(tx_error(TxError::AmountOverflow))?,
        };
        overlay.entry(sender_address).or_default().1 = debited;
        let recipient = load(tx.to, &mut overlay);
        let credited = Account {
            balance: recipient
                .balance
                .checked_add(tx.amount)
                .ok_or(tx_error(TxError::BalanceOverflow))?,
            nonce: recipient.nonce,
        };
        overlay.entry(tx.to).or_default().1 = credited;
    }
    let miner = load(block.header.miner, &mut overlay);
    let paid = Account {
        balance: miner
            .balance
            .checked_add(reward)
            .ok_or(BlockError::MinerBalanceOverflow)?,
        nonce: miner.nonce,
    };
    overlay.entry(block.header.miner).or_default().1 = paid;

    let mut touched: Vec<(Address, (Account, Account))> = overlay.into_iter().collect();
    touched.sort_unstable_by_key(|entry| entry.0);
    let mut change = BlockStateChange {
        updates: Vec::with_capacity(touched.len()),
        undo: BlockUndo {
            previous: Vec::with_capacity(touched.len()),
        },
        reward,
    };
    for (address, (before, after)) in touched {
        change.updates.push((address, after));
        change.undo.previous.push((address, before));
    }
    Ok(change)
}

/// Writes account values into an in-memory state, dropping default ones.
pub fn write_accounts(
    state: &mut std::collections::BTreeMap<Address, Account>,
    values: &[(Address, Account)],
) {
    for (address, account) in values {
        if *account == Account::default() {
            state.remove(address);
        } else {
            state.insert(*address, *account);
        }
    }
}

/// The state digest, an order-independent accumulator: the sum, modulo
/// 2^256, of SHA-256(`address (20 bytes) || balance (u64, 8 bytes
/// little-endian) || nonce (u64, 8 bytes little-endian)`) over every account,
/// each hash and the sum read as 256-bit big-endian numbers; the digest is
/// the sum's 32 big-endian bytes. Only accounts that differ from the default
/// count (the stores never hold default accounts); the empty state is 32
/// zero bytes. Because the sum does not depend on order, a store keeps it
/// up to date by subtracting the old hash and adding the new one of each
/// account a block changes, and `GET /v1/state` reads it in O(1).
///
/// It detects accidental divergence (what `testnet check` compares), not
/// an adversary: someone who can choose very many accounts could search
/// for two states with equal sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct StateDigester {
    sum: [u8; 32],
    accounts: u64,
    supply: u128,
}

/// The hash one account adds to the digest.
fn account_hash(address: &Address, account: &Account) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(address.0);
    hasher.update(account.balance.base_units().to_le_bytes());
    hasher.update(account.nonce.to_le_bytes());
    hasher.finalize().into()
}

fn add_mod_2_256(sum: &mut [u8; 32], term: &[u8; 32]) {
    let mut carry = 0u16;
    for (byte, add) in sum.iter_mut().zip(term).rev() {
        let total = u16::from(*byte) + u16::from(*add) + carry;
        *byte = total as u8;
        carry = total >> 8;
    }
}

fn sub_mod_2_256(sum: &mut [u8; 32], term: &[u8; 32]) {
    let mut borrow = 0i16;
    for (byte, sub) in sum.iter_mut().zip(term).rev() {
        let mut total = i16::from(*byte) - i16::from(*sub) - borrow;
        borrow = 0;
        if total < 0 {
            total += 256;
            borrow = 1;
        }
        *byte = total as u8;
    }
}

impl StateDigester {
    pub fn new() -> Self {
        StateDigester::default()
    }

    /// Adds one account, in any order. A default account adds nothing.
    pub fn add(&mut self, address: &Address, account: &Account) {
        if *account == Account::default() {
            return;
        }
        add_mod_2_256(&mut self.sum, &account_hash(address, account));
        self.accounts += 1;
        self.supply += u128::from(account.balance.base_units());
    }

    /// Takes out an account that was added before.
    pub fn remove(&mut self, address: &Address, account: &Account) {
        if *account == Account::default() {
            return;
        }
        sub_mod_2_256(&mut self.sum, &account_hash(address, account));
        self.accounts = self.accounts.saturating_sub(1);
        self.supply = self
            .supply
            .saturating_sub(u128::from(account.balance.base_units()));
    }

    /// Replaces `before` with `after` for one address.
    pub fn change(&mut self, address: &Address, before: &Account, after: &Account) {
        if before != after {
            self.remove(address, before);
            self.add(address, after);
        }
    }

    /// `(digest, number of accounts, total supply)`; the supply saturates,
    /// which cannot happen on a valid chain.
    pub fn finish(self) -> (crate::hash::Hash256, u64, Amount) {
        let supply = Amount::from_base_units(u64::try_from(self.supply).unwrap_or(u64::MAX));
        (crate::hash::Hash256(self.sum), self.accounts, supply)
    }
}

/// Digest, account count and supply of an in-memory state.
pub fn digest_of(
    state: &std::collections::BTreeMap<Address, Account>,
) -> (crate::hash::Hash256, u64, Amount) {
    let mut digester = StateDigester::new();
    for (address, account) in state {
        digester.add(address, account);
    }
    digester.finish()
}

/// The genesis state of `spec`: its allocations.
pub fn genesis_state(
    spec: &crate::chainspec::ChainSpec,
) -> std::collections::BTreeMap<Address, Account> {
    let mut state = std::collections::BTreeMap::new();
    for (address, balance) in spec.allocation_entries() {
        if balance != Amount::ZERO {
            state.insert(address, Account { balance, nonce: 0 });
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(balance: u64, nonce: u64) -> Account {
        Account {
            balance: Amount::from_base_units(balance),
            nonce,
        }
    }

    #[test]
    fn digest_is_order_independent_and_updates_exactly() {
        let accounts: Vec<(Address, Account)> = (0u8..50)
            .map(|i| {
                (
                    Address([i; 20]),
                    account(u64::from(i) * 1_000 + 1, u64::from(i)),
                )
            })
            .collect();
        let mut forward = StateDigester::new();
        accounts.iter().for_each(|(a, acc)| forward.add(a, acc));
        let mut backward = StateDigester::new();
        accounts
            .iter()
            .rev()
            .for_each(|(a, acc)| backward.add(a, acc));
        assert_eq!(forward, backward);
        // Changing one account and changing it back restores the digest.
        let mut changed = forward;
        changed.change(&accounts[7].0, &accounts[7].1, &account(5, 9));
        assert_ne!(changed.finish().0, forward.finish().0);
        changed.change(&accounts[7].0, &account(5, 9), &accounts[7].1);
        assert_eq!(changed, forward);
        // Removing everything gives the empty state.
        accounts.iter().for_each(|(a, acc)| changed.remove(a, acc));
        assert_eq!(changed, StateDigester::new());
        assert_eq!(StateDigester::new().finish().0 .0, [0u8; 32]);
    }

    #[test]
    fn sum_wraps_modulo_2_256() {
        let mut sum = [0xffu8; 32];
        let mut one = [0u8; 32];
        one[31] = 1;
        add_mod_2_256(&mut sum, &one);
        assert_eq!(sum, [0u8; 32]);
        sub_mod_2_256(&mut sum, &one);
        assert_eq!(sum, [0xffu8; 32]);
    }
}
