//! Golden vectors: pin the canonical encoding, hashing and address format.
//! If one of these changes, every existing chain and signed transaction
//! changes with it, so a failure here is a consensus break, not a test to
//! update casually.

use crate::common::*;
use ledger::amount::{Amount, COIN};
use ledger::chainspec::{dev_secret_key, ChainSpec};
use ledger::{encoding, Transaction};

fn golden_tx() -> Transaction {
    let dev = ChainSpec::builtin("dev").unwrap();
    Transaction::new_signed(
        &dev_secret_key(0),
        &dev.genesis_hash(),
        dev_address(1),
        Amount::from_base_units(COIN),
        Amount::from_base_units(1000),
        0,
        String::new(),
    )
}

const DEV_GENESIS: &str = "119a44ee4cdb636a9d19ce792d238ea56df05a328ec74f0c02a9ba0ba6d28cb1";
const REGTEST_GENESIS: &str = "cf4c0ef2f150d72fcb590045fa7470c9e2fdfebe448a065a71cc349ca7110f6a";
/// Dev account 0 -> dev account 1, 1 coin, fee 1000, nonce 0, empty memo,
/// signed for the dev chain.
const TX_BYTES: &str = "9c1ab1373695aaaa86aba8a16d05309e03f6752778abaf631ce54bedc0ffc71d0d9daf3d034cec2a6a2a33a3164ac87015ef16c900e1f50500000000e80300000000000000000000000000000000000000000000fae4498dcd4ac36933ce3e9b943ed097f52f04e389dae79269b4b6190c140a666e3c64e44d05383926e0b65433c8fdb10f13d7aff5359e2183e5ae725397a302";
const TXID: &str = "7218c544b4b48da34df7b4ea1a829d1dabecdb0d037afa1c19cd5a5e61c92451";
const DEV_ADDRESS_0: &str = "dev1q8h5u5rqvuj7kjwnrawd5g4vepwayf0f7xgu4kw";

#[test]
fn genesis_hashes_are_pinned() {
    assert_eq!(
        ChainSpec::builtin("dev").unwrap().genesis_hash().to_hex(),
        DEV_GENESIS
    );
    assert_eq!(
        ChainSpec::builtin("regtest")
            .unwrap()
            .genesis_hash()
            .to_hex(),
        REGTEST_GENESIS
    );
}

#[test]
fn signed_transaction_bytes_and_txid_are_pinned() {
    let tx = golden_tx();
    let bytes = encoding::encode(&tx);
    assert_eq!(hex::encode(&bytes), TX_BYTES);
    assert_eq!(tx.txid().to_hex(), TXID);
    // ed25519 signing is deterministic, and decoding gives the same value.
    let decoded: Transaction = encoding::decode(&hex::decode(TX_BYTES).unwrap()).unwrap();
    assert_eq!(decoded, tx);
    let dev = ChainSpec::builtin("dev").unwrap();
    assert!(decoded.verify_signature(&dev.genesis_hash()).is_ok());
}

#[test]
fn dev_address_is_pinned() {
    let dev = ChainSpec::builtin("dev").unwrap();
    assert_eq!(dev.format_address(&dev_address(0)), DEV_ADDRESS_0);
    assert_eq!(dev.parse_address(DEV_ADDRESS_0).unwrap(), dev_address(0));
}
