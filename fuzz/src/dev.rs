//! The built-in chains and dev accounts, computed once per process: a
//! dev key costs a scalar multiplication and a spec's genesis hash a JSON
//! serialization, far more than one fuzz input should spend on them.

use ledger::chainspec::{dev_accounts, DevAccount};
use ledger::{Address, BlockHash, ChainSpec, Header, SecretKey};
use std::sync::OnceLock;

struct Dev {
    accounts: Vec<DevAccount>,
    regtest: ChainSpec,
    regtest_genesis: BlockHash,
    regtest_header: Header,
    dev: ChainSpec,
    dev_genesis: BlockHash,
}

fn get() -> &'static Dev {
    static DEV: OnceLock<Dev> = OnceLock::new();
    DEV.get_or_init(|| {
        let regtest = ChainSpec::builtin("regtest").expect("built-in");
        let dev = ChainSpec::builtin("dev").expect("built-in");
        Dev {
            accounts: dev_accounts(),
            regtest_genesis: regtest.genesis_hash(),
            regtest_header: regtest.genesis_block().header,
            dev_genesis: dev.genesis_hash(),
            regtest,
            dev,
        }
    })
}

/// The secret key of dev account `index` (0..10).
pub fn key(index: usize) -> &'static SecretKey {
    &get().accounts[index].secret_key
}

/// The address of dev account `index` (0..10).
pub fn address(index: usize) -> Address {
    get().accounts[index].address
}

pub fn regtest() -> &'static ChainSpec {
    &get().regtest
}

pub fn regtest_genesis() -> BlockHash {
    get().regtest_genesis
}

/// The regtest genesis header.
pub fn regtest_header() -> &'static Header {
    &get().regtest_header
}

/// The regtest network magic (the genesis hash's first four bytes).
pub fn regtest_magic() -> [u8; 4] {
    let hash = get().regtest_genesis;
    let bytes = hash.as_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

pub fn dev() -> &'static ChainSpec {
    &get().dev
}

pub fn dev_genesis() -> BlockHash {
    get().dev_genesis
}
