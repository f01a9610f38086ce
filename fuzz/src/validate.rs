//! Stateless validation of transactions and blocks: never a panic, and
//! the verdicts agree with each other (a block passes its structural
//! checks only if each of its transactions passes its format check, and
//! its signature check only if each transaction's own check passes).
//! Inputs are either raw bytes to decode or blocks built from a few
//! choices, whose merkle root and signatures are right unless a choice
//! breaks them, so the checks behind those are reached too.

use crate::dev;
use arbitrary::{Arbitrary, Unstructured};
use ledger::block::{merkle_root, BLOCK_VERSION};
use ledger::sigcache::SignatureCache;
use ledger::target::CompactTarget;
use ledger::validation::{
    check_block_stateless, check_block_structure, check_header_pow, check_reward,
    check_tx_signature, required_reward,
};
use ledger::Height;
use ledger::{
    encoding, Address, Amount, Block, BlockHash, ChainSpec, Header, Signature, Transaction,
};

fn specs() -> [(&'static ChainSpec, BlockHash); 2] {
    [
        (dev::regtest(), dev::regtest_genesis()),
        (dev::dev(), dev::dev_genesis()),
    ]
}

#[derive(Arbitrary, Debug)]
struct TxChoice {
    sender: u8,
    to: [u8; 2],
    amount: u64,
    fee: u64,
    nonce: u8,
    memo_len: u8,
    /// 0: signed for this chain; 1: for the other; 2: a flipped bit; else raw.
    signing: u8,
    raw_signature: [u8; 8],
}

#[derive(Arbitrary, Debug)]
struct BlockChoice {
    spec: bool,
    version_flaw: bool,
    height: u16,
    bits: Option<u32>,
    timestamp: u64,
    reward_delta: i8,
    merkle_flaw: bool,
    duplicate: bool,
    txs: Vec<TxChoice>,
}

fn build_tx(choice: &TxChoice, genesis: BlockHash, other: BlockHash) -> Transaction {
    let key = dev::key(usize::from(choice.sender % 10));
    let mut to = [0u8; 20];
    to[..2].copy_from_slice(&choice.to);
    let genesis = if choice.signing == 1 { other } else { genesis };
    let mut tx = Transaction::new_signed(
        key,
        &genesis,
        Address(to),
        Amount::from_base_units(choice.amount),
        Amount::from_base_units(choice.fee),
        u64::from(choice.nonce),
        "m".repeat(usize::from(choice.memo_len % 80)),
    );
    match choice.signing {
        0 | 1 => {}
        2 => tx.signature.0[usize::from(choice.raw_signature[0] % 64)] ^= 1,
        _ => {
            let mut raw = [0u8; 64];
            for (index, byte) in raw.iter_mut().enumerate() {
                *byte = choice.raw_signature[index % 8].wrapping_mul(index as u8 + 1);
            }
            tx.signature = Signature(raw);
        }
    }
    tx
}

fn build_block(choice: BlockChoice) -> (Block, usize) {
    let [regtest, dev] = specs();
    let ((spec, genesis), (_, other), index) = if choice.spec {
        (dev, regtest, 1)
    } else {
        (regtest, dev, 0)
    };
    let txs: Vec<Transaction> = choice
        .txs
        .iter()
        .take(16)
        .map(|tx| build_tx(tx, genesis, other))
        .collect();
    let mut txs = txs;
    if choice.duplicate {
        if let Some(first) = txs.first().cloned() {
            txs.push(first);
        }
    }
    let txids: Vec<_> = txs.iter().map(Transaction::txid).collect();
    let fees = Amount::checked_sum(txs.iter().map(|tx| tx.fee)).unwrap_or(Amount::ZERO);
    let reward = spec
        .block_subsidy
        .checked_add(fees)
        .unwrap_or(Amount::ZERO)
        .base_units()
        .saturating_add_signed(i64::from(choice.reward_delta));
    let mut root = merkle_root(&txids);
    if choice.merkle_flaw {
        root.0[0] ^= 1;
    }
    let header = Header {
        version: BLOCK_VERSION + u32::from(choice.version_flaw),
        height: Height(u64::from(choice.height)),
        prev_hash: genesis,
        merkle_root: root,
        timestamp: choice.timestamp,
        bits: choice
            .bits
            .map_or(spec.initial_target.to_compact(), CompactTarget),
        nonce: 0,
        miner: dev::address(0),
        reward: Amount::from_base_units(reward),
    };
    (Block { header, txs }, index)
}

/// `validate`: first byte even: the rest are the bytes of a block or a
/// transaction (whichever decodes), judged under both built-in chains;
/// odd: a block built from choices.
pub fn validate(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        for (index, (_, genesis)) in specs().iter().enumerate() {
            if let Ok(tx) = encoding::decode::<Transaction>(rest) {
                judge_tx(&tx, genesis);
            }
            if let Ok(block) = encoding::decode::<Block>(rest) {
                judge_block(&block, index);
            }
        }
    } else if let Ok(choice) = BlockChoice::arbitrary(&mut Unstructured::new(rest)) {
        let (block, index) = build_block(choice);
        judge_block(&block, index);
    }
}

fn judge_tx(tx: &Transaction, genesis: &BlockHash) {
    let _ = tx.check_format();
    let _ = check_tx_signature(tx, genesis);
}

fn judge_block(block: &Block, spec_index: usize) {
    let (spec, genesis) = specs()[spec_index];
    let _ = check_header_pow(&block.header, spec);
    let _ = required_reward(block, spec);
    let _ = check_reward(block, spec);
    let structure = check_block_structure(block, spec);
    let each_format_ok = block.txs.iter().all(|tx| tx.check_format().is_ok());
    if let Ok(txids) = &structure {
        assert!(each_format_ok, "a block passed with a malformed tx");
        assert_eq!(txids, &block.txids());
    }
    let cache = SignatureCache::new(64);
    let full = check_block_stateless(block, spec, &genesis, &cache);
    assert_eq!(
        full.is_ok(),
        structure.is_ok()
            && block
                .txs
                .iter()
                .all(|tx| check_tx_signature(tx, &genesis).is_ok()),
        "the block verdict disagrees with its txs' verdicts: {full:?}"
    );
    // Judged again with every signature cached: the same verdict.
    let again = check_block_stateless(block, spec, &genesis, &cache);
    assert_eq!(full, again);
}
