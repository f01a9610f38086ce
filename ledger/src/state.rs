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
