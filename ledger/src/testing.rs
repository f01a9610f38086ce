//! What the tests and benchmarks of this crate and the crates above it
//! share, built only for tests (`cfg(test)` or the `test-utils` feature,
//! which this crate's own integration tests and benchmarks turn on): the
//! regtest spec, a wall clock, and signed transfers between the built-in
//! dev accounts. Nothing here is used by a node.

use crate::address::Address;
use crate::amount::Amount;
use crate::chainspec::{dev_secret_key, ChainSpec};
use crate::hash::BlockHash;
use crate::tx::Transaction;

/// The built-in `regtest` chain.
pub fn regtest() -> ChainSpec {
    ChainSpec::builtin("regtest").expect("built-in chain")
}

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The address of dev account `index` (see `chainspec::dev_secret_key`).
pub fn dev_address(index: usize) -> Address {
    Address::from_public_key(&dev_secret_key(index).public_key())
}

/// A transfer signed by dev account `from` for the chain with `genesis`,
/// with an empty memo.
pub fn transfer(
    genesis: &BlockHash,
    from: usize,
    to: Address,
    amount: u64,
    fee: u64,
    nonce: u64,
) -> Transaction {
    transfer_with_memo(genesis, from, to, amount, fee, nonce, "")
}

/// [`transfer`] carrying `memo`.
pub fn transfer_with_memo(
    genesis: &BlockHash,
    from: usize,
    to: Address,
    amount: u64,
    fee: u64,
    nonce: u64,
    memo: &str,
) -> Transaction {
    Transaction::new_signed(
        &dev_secret_key(from),
        genesis,
        to,
        Amount::from_base_units(amount),
        Amount::from_base_units(fee),
        nonce,
        memo.to_string(),
    )
}
