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

/// The state digest: SHA-256 over the concatenation, for every account in
/// ascending order of its 20 address bytes, of `address (20 bytes) ||
/// balance (u64, 8 bytes little-endian) || nonce (u64, 8 bytes
/// little-endian)`. Only accounts that differ from the default appear (the
/// stores never hold default accounts). The empty state hashes the empty
/// string.
#[derive(Clone, Default)]
pub struct StateDigester {
    hasher: sha2::Sha256,
    accounts: u64,
    supply: u128,
}

impl StateDigester {
    pub fn new() -> Self {
        StateDigester::default()
    }

    /// Adds one account; callers feed them in ascending address order.
    pub fn add(&mut self, address: &Address, account: &Account) {
        use sha2::Digest;
        self.hasher.update(address.0);
        self.hasher
            .update(account.balance.base_units().to_le_bytes());
        self.hasher.update(account.nonce.to_le_bytes());
        self.accounts += 1;
        self.supply += u128::from(account.balance.base_units());
    }

    /// `(digest, number of accounts, total supply)`; the supply saturates,
    /// which cannot happen on a valid chain.
    pub fn finish(self) -> (crate::hash::Hash256, u64, Amount) {
        use sha2::Digest;
        let supply = Amount::from_base_units(u64::try_from(self.supply).unwrap_or(u64::MAX));
        (
            crate::hash::Hash256(self.hasher.finalize().into()),
            self.accounts,
            supply,
        )
    }
}

/// Digest, account count and supply of an in-memory state.
pub fn digest_of(
    state: &std::collections::BTreeMap<Address, Account>,
) -> (crate::hash::Hash256, u64, Amount) {
    let mut digester = StateDigester::new();
    for (address, account) in state {
        if *account != Account::default() {
            digester.add(address, account);
        }
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
