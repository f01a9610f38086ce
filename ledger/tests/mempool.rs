//! Mempool admission, replacement, eviction, expiry, chain following and
//! block templates, against in-memory account state; and the miner.

use ledger::address::Address;
use ledger::amount::{Amount, COIN};
use ledger::block::merkle_root;
use ledger::hash::{BlockHash, Hash256};
use ledger::keys::Signature;
use ledger::mempool::{DropReason, Mempool, MempoolConfig, MempoolError};
use ledger::miner::{self, PreparedHeader};
use ledger::sigcache::SignatureCache;
use ledger::state::{self, Account};
use ledger::target::{Target, U256};
use ledger::Height;
use ledger::{Block, ChainSpec, SecretKey, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NOW: u64 = 1_800_000_000_000;
const MIN_FEE: u64 = 1_000;

use ledger::testing::regtest;

fn key(index: u64) -> SecretKey {
    SecretKey::from_seed(&format!("mempool test key {index}"))
}

fn address(key: &SecretKey) -> Address {
    Address::from_public_key(&key.public_key())
}

fn recipient() -> Address {
    Address([0x42; 20])
}

struct Fixture {
    spec: ChainSpec,
    genesis: BlockHash,
    cache: SignatureCache,
    pool: Mempool,
    accounts: HashMap<Address, Account>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_config(MempoolConfig::default())
    }

    fn with_config(config: MempoolConfig) -> Fixture {
        let spec = regtest();
        let cache = SignatureCache::new(10_000);
        Fixture {
            genesis: spec.genesis_hash(),
            pool: Mempool::new(spec.clone(), config, cache.clone()),
            spec,
            cache,
            accounts: HashMap::new(),
        }
    }

    fn fund(&mut self, key: &SecretKey, balance: u64, nonce: u64) {
        self.accounts.insert(
            address(key),
            Account {
                balance: Amount::from_base_units(balance),
                nonce,
            },
        );
    }

    fn tx(&self, key: &SecretKey, nonce: u64, fee: u64, amount: u64) -> Transaction {
        Transaction::new_signed(
            key,
            &self.genesis,
            recipient(),
            Amount::from_base_units(amount),
            Amount::from_base_units(fee),
            nonce,
            String::new(),
        )
    }

    fn submit(&mut self, tx: Transaction) -> Result<ledger::TxId, MempoolError> {
        Mempool::precheck(&self.spec.genesis_hash(), &self.cache, &tx)?;
        self.pool.add(tx, &self.accounts, NOW)
    }

    fn code_of(&mut self, tx: Transaction) -> &'static str {
        match self.submit(tx) {
            Ok(_) => "ok",
            Err(error) => error.code(),
        }
    }
}

#[test]
fn error_codes_are_exactly_specs() {
    let errors = [
        MempoolError::Malformed("x".into()),
        MempoolError::BadSignature,
        MempoolError::WrongChain,
        MempoolError::Duplicate,
        MempoolError::NonceTooLow,
        MempoolError::NonceTooHigh,
        MempoolError::ReplacementUnderpriced,
        MempoolError::InsufficientFunds,
        MempoolError::FeeTooLow,
        MempoolError::MempoolFull,
    ];
    let mut codes: Vec<&str> = errors.iter().map(MempoolError::code).collect();
    codes.sort_unstable();
    let mut spec_codes = vec![
        "duplicate",
        "nonce_too_low",
        "nonce_too_high",
        "replacement_underpriced",
        "insufficient_funds",
        "fee_too_low",
        "mempool_full",
        "bad_signature",
        "wrong_chain",
        "malformed",
    ];
    spec_codes.sort_unstable();
    assert_eq!(codes, spec_codes);
}

#[test]
fn admits_a_valid_tx_and_caches_its_signature() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let tx = fixture.tx(&alice, 0, MIN_FEE, 5);
    let txid = Mempool::precheck(&fixture.spec.genesis_hash(), &fixture.cache, &tx).unwrap();
    assert!(fixture.cache.contains(&txid));
    assert_eq!(
        fixture.pool.add(tx.clone(), &fixture.accounts, NOW),
        Ok(txid)
    );
    assert!(fixture.pool.contains(&txid));
    assert_eq!(fixture.pool.get(&txid), Some(&tx));
    assert_eq!(fixture.pool.len(), 1);
    assert_eq!(fixture.pool.bytes(), tx.encoded_len());
    assert_eq!(fixture.pool.txids_newest_first(10), vec![txid]);
    assert_eq!(
        fixture.pool.next_nonce(&address(&alice), &fixture.accounts),
        1
    );
    assert_eq!(fixture.pool.pending_for(&address(&alice)), vec![&tx]);
    assert_eq!(fixture.pool.pending_for(&recipient()), vec![&tx]);
}

#[test]
fn signature_is_checked_once_through_the_cache() {
    // A txid in the cache was verified on this chain, so `add` trusts it.
    // Proof that it does not verify again: a tx with a broken signature
    // whose txid is (artificially) cached is accepted.
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let mut tx = fixture.tx(&alice, 0, MIN_FEE, 5);
    tx.signature.0[5] ^= 1;
    assert_eq!(
        fixture.pool.add(tx.clone(), &fixture.accounts, NOW),
        Err(MempoolError::BadSignature)
    );
    fixture.cache.insert(tx.txid());
    assert!(fixture.pool.add(tx, &fixture.accounts, NOW).is_ok());
}

#[test]
fn malformed_is_rejected() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let long_memo = Transaction::new_signed(
        &alice,
        &fixture.genesis,
        recipient(),
        Amount::from_base_units(5),
        Amount::from_base_units(MIN_FEE),
        0,
        "m".repeat(65),
    );
    assert_eq!(fixture.code_of(long_memo.clone()), "malformed");
    assert!(matches!(
        fixture.pool.add(long_memo, &fixture.accounts, NOW),
        Err(MempoolError::Malformed(_))
    ));
    let zero_amount = fixture.tx(&alice, 0, MIN_FEE, 0);
    assert_eq!(fixture.code_of(zero_amount), "malformed");
    let overflowing = fixture.tx(&alice, 0, u64::MAX, 1);
    assert_eq!(fixture.code_of(overflowing), "malformed");
    assert!(fixture.pool.is_empty());
}

#[test]
fn bad_signature_is_rejected() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let mut tx = fixture.tx(&alice, 0, MIN_FEE, 5);
    tx.signature.0[40] ^= 0x10;
    assert_eq!(fixture.code_of(tx.clone()), "bad_signature");
    let mut unsigned = tx;
    unsigned.signature = Signature::default();
    assert_eq!(fixture.code_of(unsigned), "bad_signature");
    // Signed for a chain we do not know: plainly bad, not "wrong chain".
    let elsewhere = Transaction::new_signed(
        &alice,
        &BlockHash(Hash256::digest(b"some other chain")),
        recipient(),
        Amount::from_base_units(5),
        Amount::from_base_units(MIN_FEE),
        0,
        String::new(),
    );
    assert_eq!(fixture.code_of(elsewhere), "bad_signature");
    assert!(!fixture
        .cache
        .contains(&fixture.tx(&alice, 0, MIN_FEE, 5).txid()));
}

#[test]
fn wrong_chain_is_rejected() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let dev_genesis = ChainSpec::builtin("dev").unwrap().genesis_hash();
    let for_dev = Transaction::new_signed(
        &alice,
        &dev_genesis,
        recipient(),
        Amount::from_base_units(5),
        Amount::from_base_units(MIN_FEE),
        0,
        String::new(),
    );
    assert_eq!(fixture.code_of(for_dev.clone()), "wrong_chain");
    // And on the dev chain, the same tx is fine.
    let dev = ChainSpec::builtin("dev").unwrap();
    let cache = SignatureCache::new(10);
    assert!(Mempool::precheck(&dev.genesis_hash(), &cache, &for_dev).is_ok());
}

#[test]
fn duplicate_is_rejected() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let tx = fixture.tx(&alice, 0, MIN_FEE, 5);
    assert_eq!(fixture.code_of(tx.clone()), "ok");
    assert_eq!(fixture.code_of(tx), "duplicate");
    assert_eq!(fixture.pool.len(), 1);
}

#[test]
fn nonce_too_low_is_rejected() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 5);
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 4, MIN_FEE, 5)),
        "nonce_too_low"
    );
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 0, MIN_FEE, 5)),
        "nonce_too_low"
    );
    assert_eq!(fixture.code_of(fixture.tx(&alice, 5, MIN_FEE, 5)), "ok");
}

#[test]
fn nonce_window_is_64_past_next_nonce() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 65, MIN_FEE, 5)),
        "nonce_too_high"
    );
    assert_eq!(fixture.code_of(fixture.tx(&alice, 64, MIN_FEE, 5)), "ok");
    // Three consecutive pending txs move the next nonce, and the window.
    for nonce in 0..3 {
        assert_eq!(fixture.code_of(fixture.tx(&alice, nonce, MIN_FEE, 5)), "ok");
    }
    let sender = address(&alice);
    assert_eq!(fixture.pool.next_nonce(&sender, &fixture.accounts), 3);
    assert_eq!(fixture.pool.queue_lengths(&sender), (3, 1));
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 68, MIN_FEE, 5)),
        "nonce_too_high"
    );
    assert_eq!(fixture.code_of(fixture.tx(&alice, 67, MIN_FEE, 5)), "ok");
}

#[test]
fn a_sender_may_queue_any_number_of_consecutive_txs() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    for nonce in 0..300 {
        assert_eq!(
            fixture.code_of(fixture.tx(&alice, nonce, MIN_FEE, 5)),
            "ok",
            "nonce {nonce}"
        );
    }
    let sender = address(&alice);
    assert_eq!(fixture.pool.next_nonce(&sender, &fixture.accounts), 300);
    assert_eq!(fixture.pool.queue_lengths(&sender), (300, 0));
}

#[test]
fn future_txs_wait_for_the_gap_to_fill() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let sender = address(&alice);
    for nonce in [2, 3, 5] {
        assert_eq!(fixture.code_of(fixture.tx(&alice, nonce, MIN_FEE, 5)), "ok");
    }
    assert_eq!(fixture.pool.queue_lengths(&sender), (0, 3));
    assert_eq!(fixture.pool.next_nonce(&sender, &fixture.accounts), 0);
    assert!(fixture
        .pool
        .select_for_block(&fixture.accounts, 1 << 20)
        .is_empty());
    assert_eq!(fixture.code_of(fixture.tx(&alice, 0, MIN_FEE, 5)), "ok");
    assert_eq!(fixture.code_of(fixture.tx(&alice, 1, MIN_FEE, 5)), "ok");
    assert_eq!(fixture.pool.queue_lengths(&sender), (4, 1));
    assert_eq!(fixture.pool.next_nonce(&sender, &fixture.accounts), 4);
    let template = fixture.pool.select_for_block(&fixture.accounts, 1 << 20);
    assert_eq!(
        template.iter().map(|tx| tx.nonce).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn balance_must_cover_all_pending_txs() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    // Enough for a tx of 600 and one of 400 (plus fees), not two of 600.
    fixture.fund(&alice, 2 * MIN_FEE + 600 + 400 + 100, 0);
    assert_eq!(fixture.code_of(fixture.tx(&alice, 0, MIN_FEE, 600)), "ok");
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 1, MIN_FEE, 600)),
        "insufficient_funds"
    );
    assert_eq!(fixture.code_of(fixture.tx(&alice, 1, MIN_FEE, 400)), "ok");
    let broke = key(2);
    assert_eq!(
        fixture.code_of(fixture.tx(&broke, 0, MIN_FEE, 1)),
        "insufficient_funds"
    );
}

#[test]
fn fee_below_minimum_is_rejected() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 0, MIN_FEE - 1, 5)),
        "fee_too_low"
    );
    assert_eq!(fixture.code_of(fixture.tx(&alice, 0, MIN_FEE, 5)), "ok");
}

#[test]
fn replacement_needs_ten_percent_more_fee() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let original = fixture.tx(&alice, 0, 10_000, 5);
    let original_id = fixture.submit(original.clone()).unwrap();
    // +9%: refused, the original stays.
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 0, 10_900, 5)),
        "replacement_underpriced"
    );
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 0, 10_999, 6)),
        "replacement_underpriced"
    );
    assert!(fixture.pool.contains(&original_id));
    // The same tx again is a duplicate, not a replacement.
    assert_eq!(fixture.code_of(original), "duplicate");
    // +10%: accepted, the original is gone.
    let replacement = fixture.tx(&alice, 0, 11_000, 5);
    let replacement_id = fixture.submit(replacement).unwrap();
    assert!(!fixture.pool.contains(&original_id));
    assert!(fixture.pool.contains(&replacement_id));
    assert_eq!(fixture.pool.len(), 1);
    assert_eq!(
        fixture.pool.next_nonce(&address(&alice), &fixture.accounts),
        1
    );
}

#[test]
fn replacement_counts_only_the_new_cost() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 100_000, 0);
    fixture
        .submit(fixture.tx(&alice, 0, 10_000, 80_000))
        .unwrap();
    // Replacing frees the old cost: 11_000 + 85_000 fits in 100_000.
    assert_eq!(fixture.code_of(fixture.tx(&alice, 0, 11_000, 85_000)), "ok");
    // But not more than the balance.
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 0, 20_000, 85_000)),
        "insufficient_funds"
    );
}

#[test]
fn eviction_takes_the_cheapest_tail_and_never_a_parent() {
    let config = MempoolConfig {
        max_txs: 4,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let keys: Vec<SecretKey> = (0..8).map(key).collect();
    for key in &keys {
        fixture.fund(key, 10 * COIN, 0);
    }
    // A's nonce 0 pays the least of all, but A's nonce 1 (paying the most)
    // builds on it, so it is protected.
    let a0 = fixture.submit(fixture.tx(&keys[0], 0, 1_000, 5)).unwrap();
    let a1 = fixture.submit(fixture.tx(&keys[0], 1, 9_000, 5)).unwrap();
    let b0 = fixture.submit(fixture.tx(&keys[1], 0, 5_000, 5)).unwrap();
    let c0 = fixture.submit(fixture.tx(&keys[2], 0, 3_000, 5)).unwrap();
    assert_eq!(fixture.pool.len(), 4);

    let d0 = fixture.submit(fixture.tx(&keys[3], 0, 4_000, 5)).unwrap();
    assert!(!fixture.pool.contains(&c0), "the cheapest tail goes first");
    let e0 = fixture.submit(fixture.tx(&keys[4], 0, 4_500, 5)).unwrap();
    assert!(!fixture.pool.contains(&d0));
    // Paying less than the cheapest tail, or the same: refused, pool unchanged.
    assert_eq!(
        fixture.code_of(fixture.tx(&keys[5], 0, 2_000, 5)),
        "mempool_full"
    );
    assert_eq!(
        fixture.code_of(fixture.tx(&keys[6], 0, 4_500, 5)),
        "mempool_full"
    );
    for txid in [a0, a1, b0, e0] {
        assert!(fixture.pool.contains(&txid));
    }
    assert_eq!(fixture.pool.len(), 4);

    // Once A's expensive tail is the cheapest tail left... it is not: the
    // next eviction takes E (4,500), then B (5,000), and A's nonce 0 stays.
    fixture.submit(fixture.tx(&keys[5], 0, 20_000, 5)).unwrap();
    assert!(!fixture.pool.contains(&e0));
    fixture.submit(fixture.tx(&keys[6], 0, 20_000, 5)).unwrap();
    assert!(!fixture.pool.contains(&b0));
    // Now the cheapest tail is A's nonce 1 (9,000): it goes before A's 0.
    fixture.submit(fixture.tx(&keys[7], 0, 20_000, 5)).unwrap();
    assert!(!fixture.pool.contains(&a1));
    assert!(fixture.pool.contains(&a0));
    assert_eq!(fixture.pool.len(), 4);
}

#[test]
fn a_newcomer_never_evicts_its_own_parent() {
    let config = MempoolConfig {
        max_txs: 2,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let alice = key(1);
    let bob = key(2);
    fixture.fund(&alice, 10 * COIN, 0);
    fixture.fund(&bob, 10 * COIN, 0);
    let a0 = fixture.submit(fixture.tx(&alice, 0, 1_000, 5)).unwrap();
    let b0 = fixture.submit(fixture.tx(&bob, 0, 2_000, 5)).unwrap();
    // Alice's nonce 1 builds on her nonce 0 (the cheapest tx): Bob's goes.
    let a1 = fixture.submit(fixture.tx(&alice, 1, 3_000, 5)).unwrap();
    assert!(fixture.pool.contains(&a0) && fixture.pool.contains(&a1));
    assert!(!fixture.pool.contains(&b0));
}

#[test]
fn byte_cap_evicts_too() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    let bob = key(2);
    fixture.fund(&alice, 10 * COIN, 0);
    fixture.fund(&bob, 10 * COIN, 0);
    let size = fixture.tx(&alice, 0, 1_000, 5).encoded_len();
    let config = MempoolConfig {
        max_bytes: 2 * size,
        ..MempoolConfig::default()
    };
    fixture.pool = Mempool::new(fixture.spec.clone(), config, fixture.cache.clone());
    let a0 = fixture.submit(fixture.tx(&alice, 0, 1_000, 5)).unwrap();
    fixture.submit(fixture.tx(&alice, 1, 2_000, 5)).unwrap();
    assert_eq!(
        fixture.code_of(fixture.tx(&bob, 0, 1_500, 5)),
        "mempool_full"
    );
    fixture.submit(fixture.tx(&bob, 0, 2_500, 5)).unwrap();
    assert_eq!(fixture.pool.len(), 2);
    assert!(fixture.pool.contains(&a0));
    assert!(fixture.pool.bytes() <= 2 * size);
}

#[test]
fn template_keeps_nonce_order_even_when_a_later_nonce_pays_more() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    let bob = key(2);
    fixture.fund(&alice, 10 * COIN, 0);
    fixture.fund(&bob, 10 * COIN, 0);
    // Submitted out of order on purpose.
    fixture.submit(fixture.tx(&alice, 1, 100_000, 5)).unwrap();
    fixture.submit(fixture.tx(&alice, 0, 1_000, 5)).unwrap();
    fixture.submit(fixture.tx(&bob, 0, 50_000, 5)).unwrap();
    fixture.submit(fixture.tx(&alice, 2, 2_000, 5)).unwrap();
    let template = fixture.pool.select_for_block(&fixture.accounts, 1 << 20);
    let order: Vec<(Address, u64)> = template.iter().map(|tx| (tx.sender(), tx.nonce)).collect();
    assert_eq!(
        order,
        vec![
            (address(&bob), 0),
            (address(&alice), 0),
            (address(&alice), 1),
            (address(&alice), 2)
        ]
    );
}

#[test]
fn template_takes_highest_fees_within_the_byte_limit() {
    let mut fixture = Fixture::new();
    let keys: Vec<SecretKey> = (0..5).map(key).collect();
    for (index, key) in keys.iter().enumerate() {
        fixture.fund(key, 10 * COIN, 0);
        fixture
            .submit(fixture.tx(key, 0, 1_000 * (index as u64 + 1), 5))
            .unwrap();
    }
    let size = fixture.tx(&keys[0], 0, 1_000, 5).encoded_len();
    let template = fixture
        .pool
        .select_for_block(&fixture.accounts, 2 * size + size / 2);
    let fees: Vec<u64> = template.iter().map(|tx| tx.fee.base_units()).collect();
    assert_eq!(fees, vec![5_000, 4_000]);
}

#[test]
fn template_is_valid_against_the_state_it_is_given() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    let bob = key(2);
    fixture.fund(&alice, 10 * COIN, 0);
    fixture.fund(&bob, 10 * COIN, 0);
    for nonce in 0..4 {
        fixture
            .submit(fixture.tx(&alice, nonce, 2_000, COIN))
            .unwrap();
    }
    fixture.submit(fixture.tx(&bob, 0, 1_500, COIN)).unwrap();
    // The state the block builds on moved: Alice's nonce 0 is confirmed and
    // she can afford only one more transfer of 1 coin.
    let mut state: BTreeMap<Address, Account> =
        fixture.accounts.iter().map(|(a, b)| (*a, *b)).collect();
    state.insert(
        address(&alice),
        Account {
            balance: Amount::from_base_units(COIN + 2_000 + 500),
            nonce: 1,
        },
    );
    let template = fixture.pool.select_for_block(&state, 1 << 20);
    let order: Vec<(Address, u64)> = template.iter().map(|tx| (tx.sender(), tx.nonce)).collect();
    assert_eq!(order, vec![(address(&alice), 1), (address(&bob), 0)]);
    let block = miner::assemble_block(
        &fixture.spec,
        Height(1),
        fixture.genesis,
        fixture.spec.initial_target,
        NOW,
        recipient(),
        template,
    );
    state::apply_block(&block, &fixture.spec, &state).expect("the template applies");
}

#[test]
fn template_lets_a_recipient_spend_what_the_block_paid_it() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    let bob = key(2);
    fixture.fund(&alice, 10 * COIN, 0);
    fixture.fund(&bob, 2 * COIN, 0);
    let to_bob = Transaction::new_signed(
        &alice,
        &fixture.genesis,
        address(&bob),
        Amount::from_base_units(COIN),
        Amount::from_base_units(5_000),
        0,
        String::new(),
    );
    fixture.submit(to_bob).unwrap();
    fixture
        .submit(fixture.tx(&bob, 0, MIN_FEE, COIN / 2))
        .unwrap();
    // In the state the block builds on, Bob has nothing yet: his transfer
    // is valid only after Alice's (which pays more, so comes first).
    let mut state: BTreeMap<Address, Account> =
        fixture.accounts.iter().map(|(a, b)| (*a, *b)).collect();
    state.remove(&address(&bob));
    let template = fixture.pool.select_for_block(&state, 1 << 20);
    assert_eq!(template.len(), 2);
    let block = miner::assemble_block(
        &fixture.spec,
        Height(1),
        fixture.genesis,
        fixture.spec.initial_target,
        NOW,
        recipient(),
        template,
    );
    state::apply_block(&block, &fixture.spec, &state).expect("valid in sequence");
}

#[test]
fn connected_block_drops_included_and_invalidated_txs() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    let bob = key(2);
    let carol = key(3);
    fixture.fund(&alice, 10 * COIN, 0);
    fixture.fund(&bob, 10 * COIN, 0);
    fixture.fund(&carol, 3 * COIN, 0);
    let a: Vec<Transaction> = (0..3)
        .map(|nonce| fixture.tx(&alice, nonce, MIN_FEE, 5))
        .collect();
    for tx in &a {
        fixture.submit(tx.clone()).unwrap();
    }
    let bob_pending = fixture.submit(fixture.tx(&bob, 0, MIN_FEE, 5)).unwrap();
    let carol_pending = fixture
        .submit(fixture.tx(&carol, 0, MIN_FEE, 2 * COIN))
        .unwrap();
    // The block carries Alice's 0 and 1, a different nonce-0 tx of Bob, and
    // a tx of Carol (nonce 0, same as her pending one) that spends most of
    // her balance.
    let bob_other = fixture.tx(&bob, 0, 7_000, 9);
    let carol_other = fixture.tx(&carol, 0, 3_000, 2 * COIN);
    let txs = vec![a[0].clone(), a[1].clone(), bob_other, carol_other];
    let state: BTreeMap<Address, Account> =
        fixture.accounts.iter().map(|(a, b)| (*a, *b)).collect();
    let (block, after) = connect(&fixture, 1, fixture.genesis, txs, &state);

    fixture.pool.block_connected(&block, &after);
    assert_eq!(fixture.pool.len(), 1);
    assert!(fixture.pool.contains(&a[2].txid()));
    assert!(!fixture.pool.contains(&bob_pending));
    assert!(!fixture.pool.contains(&carol_pending));
    // Mined ones are not dropped; the two that lost their nonce are.
    // (Senders are settled in no particular order.)
    let mut drops = fixture.pool.take_drops();
    drops.sort_by_key(|(txid, _)| *txid);
    let mut expected = vec![
        (bob_pending, DropReason::NonceUsed),
        (carol_pending, DropReason::NonceUsed),
    ];
    expected.sort_by_key(|(txid, _)| *txid);
    assert_eq!(drops, expected);
    assert!(fixture.pool.dropped(&a[0].txid()).is_none());
    assert_eq!(fixture.pool.next_nonce(&address(&alice), &after), 3);
    assert_eq!(fixture.pool.queue_lengths(&address(&alice)), (1, 0));
}

#[test]
fn a_block_that_drains_a_balance_drops_the_unaffordable_tail() {
    let mut fixture = Fixture::new();
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let pending: Vec<_> = (1..4)
        .map(|nonce| {
            fixture
                .submit(fixture.tx(&alice, nonce, MIN_FEE, 2 * COIN))
                .unwrap()
        })
        .collect();
    // Nonce 0, mined elsewhere, spends 5 coins: 5 left covers two of the
    // three pending transfers of 2 coins.
    let spend = fixture.tx(&alice, 0, MIN_FEE, 5 * COIN);
    let state: BTreeMap<Address, Account> =
        fixture.accounts.iter().map(|(a, b)| (*a, *b)).collect();
    let (block, after) = connect(&fixture, 1, fixture.genesis, vec![spend], &state);
    fixture.pool.block_connected(&block, &after);
    assert!(fixture.pool.contains(&pending[0]) && fixture.pool.contains(&pending[1]));
    assert!(!fixture.pool.contains(&pending[2]));
    assert_eq!(
        fixture.pool.take_drops(),
        vec![(pending[2], DropReason::Unaffordable)]
    );
    let (tx, reason) = fixture.pool.dropped(&pending[2]).expect("remembered");
    assert_eq!((tx.txid(), reason.code()), (pending[2], "unaffordable"));
}

/// A block of `txs` on top of `parent` at `height`, and the accounts after it.
fn connect(
    fixture: &Fixture,
    height: u64,
    parent: BlockHash,
    txs: Vec<Transaction>,
    state: &BTreeMap<Address, Account>,
) -> (Block, BTreeMap<Address, Account>) {
    let block = miner::assemble_block(
        &fixture.spec,
        Height(height),
        parent,
        fixture.spec.initial_target,
        NOW,
        recipient(),
        txs,
    );
    let change = state::apply_block(&block, &fixture.spec, state).unwrap();
    let mut after = state.clone();
    state::write_accounts(&mut after, &change.updates);
    (block, after)
}

#[test]
fn relay_knows_the_txs_of_recent_blocks_boundedly_and_forgets_them_on_a_reorg() {
    let config = MempoolConfig {
        recent_confirmed: 2,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let txs: Vec<Transaction> = (0..3)
        .map(|nonce| fixture.tx(&alice, nonce, MIN_FEE, 5))
        .collect();
    let first = fixture.submit(txs[0].clone()).unwrap();
    assert!(fixture.pool.knows(&first), "pending");
    let mut state: BTreeMap<Address, Account> =
        fixture.accounts.iter().map(|(a, b)| (*a, *b)).collect();
    let mut parent = fixture.genesis;
    let mut blocks = Vec::new();
    for (height, tx) in (1..).zip(&txs) {
        let (block, after) = connect(&fixture, height, parent, vec![tx.clone()], &state);
        fixture.pool.block_connected(&block, &after);
        parent = block.hash();
        state = after;
        blocks.push(std::sync::Arc::new(block));
        // Confirmed: out of the pool, still known without a storage read.
        assert!(!fixture.pool.contains(&tx.txid()));
        assert!(fixture.pool.knows(&tx.txid()));
    }
    // Two remembered: the oldest confirmation aged out.
    assert!(!fixture.pool.knows(&first));
    assert!(fixture.pool.knows(&txs[1].txid()));
    // A reorg forgets them all (the disconnected tx is not readmitted: its
    // nonce is below the state this test hands over).
    let update = ledger::chain::ChainUpdate {
        old_tip: parent,
        new_tip: blocks[1].hash(),
        fork_height: Height(2),
        disconnected: vec![blocks[2].clone()],
        connected: Vec::new(),
    };
    fixture.pool.apply_update(&update, &state, NOW);
    assert!(!fixture.pool.knows(&txs[1].txid()));
    assert!(!fixture.pool.knows(&txs[2].txid()));
}

#[test]
fn every_tx_let_go_is_reported_with_its_reason_and_remembered_boundedly() {
    let config = MempoolConfig {
        max_txs: 2,
        max_dropped_records: 3,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let keys: Vec<SecretKey> = (0..6).map(key).collect();
    for key in &keys {
        fixture.fund(key, 10 * COIN, 0);
    }
    let cheap = fixture.submit(fixture.tx(&keys[0], 0, 1_000, 5)).unwrap();
    let first = fixture.submit(fixture.tx(&keys[1], 0, 2_000, 5)).unwrap();
    // Replaced by a higher fee, then evicted by a richer newcomer.
    let bumped = fixture.submit(fixture.tx(&keys[1], 0, 3_000, 5)).unwrap();
    fixture.submit(fixture.tx(&keys[2], 0, 9_000, 5)).unwrap();
    assert_eq!(
        fixture.pool.take_drops(),
        vec![(first, DropReason::Replaced), (cheap, DropReason::Evicted)]
    );
    assert!(fixture.pool.take_drops().is_empty(), "reported once");
    assert_eq!(
        fixture.pool.dropped(&cheap).map(|(_, r)| r),
        Some(DropReason::Evicted)
    );
    // Expiry reports too, and only the newest records are kept.
    fixture.pool.expire(u64::MAX);
    let expired: Vec<DropReason> = fixture
        .pool
        .take_drops()
        .into_iter()
        .map(|(_, reason)| reason)
        .collect();
    assert_eq!(expired, vec![DropReason::Expired; 2]);
    assert!(
        fixture.pool.dropped(&first).is_none(),
        "the oldest record is forgotten"
    );
    assert_eq!(
        fixture.pool.dropped(&bumped).map(|(_, r)| r),
        Some(DropReason::Expired)
    );
    // Sent again and admitted: no longer dropped.
    fixture.submit(fixture.tx(&keys[0], 0, 1_000, 5)).unwrap();
    assert!(fixture.pool.contains(&cheap));
    assert!(fixture.pool.dropped(&cheap).is_none());
}

#[test]
fn old_txs_expire() {
    let config = MempoolConfig {
        expiry_ms: 3 * 3_600_000,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let sender = address(&alice);
    let first = fixture.tx(&alice, 0, MIN_FEE, 5);
    let second = fixture.tx(&alice, 1, MIN_FEE, 5);
    fixture
        .pool
        .add(first.clone(), &fixture.accounts, NOW)
        .unwrap();
    fixture
        .pool
        .add(second.clone(), &fixture.accounts, NOW + 3_600_000)
        .unwrap();
    assert_eq!(fixture.pool.expire(NOW + 3 * 3_600_000 - 1), 0);
    assert_eq!(fixture.pool.expire(NOW + 3 * 3_600_000), 1);
    assert!(!fixture.pool.contains(&first.txid()));
    // The later nonce waits in the future queue until nonce 0 comes back.
    assert_eq!(fixture.pool.queue_lengths(&sender), (0, 1));
    assert_eq!(fixture.pool.next_nonce(&sender, &fixture.accounts), 0);
    fixture
        .pool
        .add(first, &fixture.accounts, NOW + 3 * 3_600_000)
        .unwrap();
    assert_eq!(fixture.pool.queue_lengths(&sender), (2, 0));
    assert_eq!(fixture.pool.expire(NOW + 4 * 3_600_000), 1);
    assert_eq!(fixture.pool.expire(u64::MAX), 1);
    assert!(fixture.pool.is_empty());
    assert_eq!(fixture.pool.bytes(), 0);
}

#[test]
fn a_clock_stepping_back_never_makes_txs_expire_early_or_out_of_order() {
    let config = MempoolConfig {
        expiry_ms: 1_000,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let (alice, bob) = (key(1), key(2));
    fixture.fund(&alice, 10 * COIN, 0);
    fixture.fund(&bob, 10 * COIN, 0);
    let first = fixture.tx(&alice, 0, MIN_FEE, 5);
    let second = fixture.tx(&bob, 0, MIN_FEE, 5);
    fixture
        .pool
        .add(first.clone(), &fixture.accounts, NOW + 500)
        .unwrap();
    // The wall clock steps back half a second before the next admission:
    // the newcomer counts as admitted at the latest time seen.
    fixture
        .pool
        .add(second.clone(), &fixture.accounts, NOW)
        .unwrap();
    assert_eq!(fixture.pool.added_ms(&second.txid()), Some(NOW + 500));
    assert_eq!(fixture.pool.expire(NOW + 1_499), 0);
    assert_eq!(fixture.pool.expire(NOW + 1_500), 2);
    assert!(fixture.pool.is_empty());
    assert_eq!(fixture.pool.bytes(), 0);
}

#[test]
fn default_config_matches_the_issue() {
    let config = MempoolConfig::default();
    assert_eq!(config.max_txs, 50_000);
    assert_eq!(config.max_bytes, 64 * 1024 * 1024);
    assert_eq!(config.expiry_ms, 3 * 3_600_000);
    assert_eq!(config.max_nonce_gap, 64);
}

// ---------------------------------------------------------------- miner

fn easy_header(bits_target: Target) -> ledger::Header {
    let spec = regtest();
    miner::assemble_block(
        &spec,
        Height(1),
        spec.genesis_hash(),
        bits_target,
        NOW,
        recipient(),
        Vec::new(),
    )
    .header
}

#[test]
fn assembled_block_pays_subsidy_plus_fees() {
    let fixture = Fixture::new();
    let alice = key(1);
    let txs = vec![
        fixture.tx(&alice, 0, 1_000, 5),
        fixture.tx(&alice, 1, 2_500, 5),
    ];
    let block = miner::assemble_block(
        &fixture.spec,
        Height(7),
        fixture.genesis,
        fixture.spec.initial_target,
        NOW,
        recipient(),
        txs.clone(),
    );
    assert_eq!(
        block.header.reward,
        fixture
            .spec
            .block_subsidy
            .checked_add(Amount::from_base_units(3_500))
            .unwrap()
    );
    assert_eq!(block.header.merkle_root, merkle_root(&block.txids()));
    assert_eq!(block.header.nonce, 0);
    assert_eq!(block.header.height, Height(7));
    assert_eq!(block.txs, txs);
    let budget = miner::max_tx_bytes(&fixture.spec);
    let empty = Block {
        header: block.header.clone(),
        txs: Vec::new(),
    };
    assert_eq!(
        budget as u64 + empty.encoded_len() as u64,
        fixture.spec.max_block_bytes
    );
}

#[test]
fn prepared_header_hashes_like_the_header() {
    let mut header = easy_header(regtest().initial_target);
    header.nonce = 0xdead_beef_0123_4567;
    header.reward = Amount::from_base_units(987_654_321);
    let prepared = PreparedHeader::new(&header, &regtest().initial_target);
    for nonce in [0, 1, 255, 256, 0x0102_0304_0506_0708, u64::MAX] {
        let mut expected = header.clone();
        expected.nonce = nonce;
        assert_eq!(
            prepared.hash_with_nonce(nonce),
            expected.hash(),
            "nonce {nonce}"
        );
    }
}

#[test]
fn solve_meets_the_regtest_target_deterministically() {
    let target = regtest().initial_target;
    let cancel = AtomicBool::new(false);
    let mut first = easy_header(target);
    assert!(miner::solve(&mut first, &cancel, 1));
    assert!(target.is_met_by(&first.hash()));
    let mut again = easy_header(target);
    assert!(miner::solve(&mut again, &cancel, 4));
    assert_eq!(first, again);
}

#[test]
fn threads_find_the_smallest_nonce() {
    // About one hash in 4,096 meets this target: enough work for the
    // threads to share, still fast.
    let target = Target(U256::MAX.div_u64(4_096)).rounded();
    let cancel = AtomicBool::new(false);
    let mut single = easy_header(target);
    let outcome = miner::search(&mut single, &cancel, 1);
    assert!(outcome.found);
    assert!(target.is_met_by(&single.hash()));
    for threads in [2, 3] {
        let mut multi = easy_header(target);
        assert!(miner::solve(&mut multi, &cancel, threads));
        assert_eq!(multi.nonce, single.nonce, "{threads} threads");
    }
    // No smaller nonce works.
    let prepared = PreparedHeader::new(&easy_header(target), &target);
    assert_eq!(prepared.scan(0, single.nonce + 1).0, Some(single.nonce));
    // Starting past a solution finds the next one.
    let mut later = easy_header(target);
    later.nonce = single.nonce + 1;
    assert!(miner::solve(&mut later, &cancel, 2));
    assert!(later.nonce > single.nonce);
    assert!(target.is_met_by(&later.hash()));
}

#[test]
fn solve_stops_when_cancelled() {
    // Only a hash of 0 or 1 meets this target: never, in practice.
    let impossible = Target(U256::ONE);
    let cancel = AtomicBool::new(true);
    let mut header = easy_header(impossible);
    let before = header.clone();
    assert!(!miner::solve(&mut header, &cancel, 2));
    assert_eq!(header, before);

    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            cancel.store(true, Ordering::Relaxed);
        });
        let outcome = miner::search(&mut header, &cancel, 2);
        assert!(!outcome.found);
        assert!(outcome.hashes > 0);
    });
    // Chunks are about 10 ms; allow a loaded machine plenty of slack.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

/// Issue 14, attack 7: 782 funded senders each queue nonces 1..=64 (their
/// nonce 0 never comes) at 10x the minimum fee, 50,048 txs that can never
/// pay, more than the 50,000 cap. They are held in the bounded side pool
/// (per sender and in total), so an executable tx at the minimum fee is
/// still accepted and goes into the next block; before, the pool filled
/// with them and refused it (`mempool_full`).
#[test]
fn free_mempool_space_from_transactions_that_can_never_be_mined() {
    let mut fixture = Fixture::new();
    let config = fixture.pool.config().clone();
    let mut held = 0usize;
    let mut refused = 0usize;
    for sender in 0..782u64 {
        let attacker = key(10_000 + sender);
        fixture.fund(&attacker, 10 * COIN, 0);
        for nonce in 1..=64 {
            match fixture.submit(fixture.tx(&attacker, nonce, 10 * MIN_FEE, 5)) {
                Ok(_) => held += 1,
                Err(MempoolError::MempoolFull) => refused += 1,
                Err(other) => panic!("unexpected refusal: {other}"),
            }
        }
    }
    println!(
        "FIGURE attack 7: {held} held, {refused} refused, pool {} txs / {} bytes",
        fixture.pool.len(),
        fixture.pool.bytes()
    );
    assert_eq!(held + refused, 782 * 64);
    assert!(fixture.pool.future_len() <= config.max_future_txs);
    assert!(fixture.pool.len() <= config.max_future_txs);
    assert_eq!(
        fixture.pool.take_future_refusals(),
        refused as u64,
        "every refusal counted"
    );
    assert!(
        fixture.pool.take_promoted().is_empty(),
        "nothing held was released for relay"
    );

    let honest = key(1);
    fixture.fund(&honest, 10 * COIN, 0);
    let txid = fixture
        .submit(fixture.tx(&honest, 0, MIN_FEE, 5))
        .expect("an executable min-fee tx is accepted");
    assert!(!fixture.pool.is_held(&txid));
    let template = fixture
        .pool
        .select_for_block(&fixture.accounts, miner::max_tx_bytes(&fixture.spec));
    assert_eq!(
        template.iter().map(|tx| tx.txid()).collect::<Vec<_>>(),
        vec![txid],
        "the template holds the executable tx and nothing held"
    );
}

/// Held txs are released for relay once their gap fills, whether by a tx
/// or by a block, and the side pool's per-sender cap holds.
#[test]
fn held_txs_are_released_when_their_gap_fills() {
    let config = MempoolConfig {
        max_future_per_sender: 3,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let later: Vec<ledger::TxId> = (2..5)
        .map(|nonce| {
            fixture
                .submit(fixture.tx(&alice, nonce, MIN_FEE, 5))
                .unwrap()
        })
        .collect();
    assert!(later.iter().all(|txid| fixture.pool.is_held(txid)));
    assert_eq!(
        fixture.code_of(fixture.tx(&alice, 5, MIN_FEE, 5)),
        "mempool_full",
        "the sender's held txs are at their cap"
    );
    assert_eq!(fixture.pool.take_future_refusals(), 1);
    assert!(fixture.pool.take_promoted().is_empty());
    // Nonces 0 and 1 arrive in a block: the state moves past them.
    fixture.fund(&alice, 10 * COIN, 2);
    let block_txs = vec![
        fixture.tx(&alice, 0, MIN_FEE, 5),
        fixture.tx(&alice, 1, MIN_FEE, 5),
    ];
    let txids: Vec<ledger::TxId> = block_txs.iter().map(|tx| tx.txid()).collect();
    let block = Block {
        header: ledger::block::Header {
            version: 1,
            height: Height(1),
            prev_hash: BlockHash(Hash256::ZERO),
            merkle_root: merkle_root(&txids),
            timestamp: NOW,
            bits: fixture.spec.initial_target.to_compact(),
            nonce: 0,
            miner: recipient(),
            reward: Amount::ZERO,
        },
        txs: block_txs,
    };
    fixture.pool.block_connected(&block, &fixture.accounts);
    let released: Vec<ledger::TxId> = fixture
        .pool
        .take_promoted()
        .iter()
        .map(|tx| tx.txid())
        .collect();
    assert_eq!(released, later);
    assert!(later.iter().all(|txid| !fixture.pool.is_held(txid)));
    assert_eq!(fixture.pool.future_len(), 0);
}

/// Found by the `mempool_ops` fuzz target: a tx left behind a hole in its
/// sender's executable run (here by expiry) is not held, so replacing it
/// passes the held cap's check; the replacement must then not be counted
/// as held, or the sender's held txs go past their cap.
#[test]
fn a_replacement_behind_a_hole_keeps_the_held_cap() {
    let config = MempoolConfig {
        expiry_ms: 3_600_000,
        max_future_per_sender: 2,
        ..MempoolConfig::default()
    };
    let mut fixture = Fixture::with_config(config);
    let alice = key(1);
    fixture.fund(&alice, 10 * COIN, 0);
    let sender = address(&alice);
    let add = |fixture: &mut Fixture, nonce: u64, fee: u64, at: u64| {
        let tx = fixture.tx(&alice, nonce, fee, 5);
        fixture.pool.add(tx, &fixture.accounts, at)
    };
    // Nonce 1 first (held), then 0, 2 and 3 an hour later: one run 0..4.
    add(&mut fixture, 1, MIN_FEE, NOW).unwrap();
    for nonce in [0, 2, 3] {
        add(&mut fixture, nonce, MIN_FEE, NOW + 3_600_000).unwrap();
    }
    assert_eq!(fixture.pool.future_len(), 0);
    // Nonce 1 expires: 2 and 3 now wait behind a hole, not held.
    assert_eq!(fixture.pool.expire(NOW + 3_600_000), 1);
    assert_eq!(fixture.pool.queue_lengths(&sender), (1, 2));
    assert_eq!(fixture.pool.future_len(), 0);
    // Two txs past the hole fill the sender's held cap.
    add(&mut fixture, 5, MIN_FEE, NOW + 3_600_000).unwrap();
    add(&mut fixture, 6, MIN_FEE, NOW + 3_600_000).unwrap();
    assert_eq!(fixture.pool.future_len(), 2);
    // Replacing nonce 2 keeps it as it was: the held count stays at its cap.
    let replacement = add(&mut fixture, 2, MIN_FEE * 2, NOW + 3_600_000).unwrap();
    assert!(!fixture.pool.is_held(&replacement));
    assert_eq!(fixture.pool.future_len(), 2);
    // A new tx past the hole is still refused at the cap.
    assert_eq!(
        add(&mut fixture, 7, MIN_FEE, NOW + 3_600_000),
        Err(MempoolError::MempoolFull)
    );
}
