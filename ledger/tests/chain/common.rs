//! Helpers shared by the chain tests: specs, signed transfers, block
//! building and mining on the trivially easy regtest target.

use ledger::amount::Amount;
use ledger::block::{merkle_root, Block, Header, BLOCK_VERSION};
use ledger::chainspec::{dev_secret_key, ChainSpec};
use ledger::target::Target;
use ledger::{Address, BlockHash, Transaction};

pub fn regtest() -> ChainSpec {
    ChainSpec::builtin("regtest").expect("built-in")
}

pub fn dev_address(index: usize) -> Address {
    Address::from_public_key(&dev_secret_key(index).public_key())
}

/// A signed transfer from dev account `from` on the chain with `genesis`.
pub fn transfer(genesis: &BlockHash, from: usize, to: Address, amount: u64, fee: u64, nonce: u64) -> Transaction {
    Transaction::new_signed(
        &dev_secret_key(from),
        genesis,
        to,
        Amount::from_base_units(amount),
        Amount::from_base_units(fee),
        nonce,
        String::new(),
    )
}

/// Increments the nonce until the header meets its own target.
pub fn solve(header: &mut Header) {
    let target = Target::from_compact(header.bits).expect("valid bits");
    while !target.is_met_by(&header.hash()) {
        header.nonce += 1;
    }
}

/// A solved block on `parent` with the given fields; reward = subsidy +
/// fees, merkle root set.
pub fn block_on(spec: &ChainSpec, parent: &Header, timestamp: u64, miner: Address, txs: Vec<Transaction>) -> Block {
    let fees = Amount::checked_sum(txs.iter().map(|tx| tx.fee)).expect("fees fit");
    let mut header = Header {
        version: BLOCK_VERSION,
        height: parent.height + 1,
        prev_hash: parent.hash(),
        merkle_root: merkle_root(&txs.iter().map(Transaction::txid).collect::<Vec<_>>()),
        timestamp,
        bits: spec.initial_target.to_compact(),
        nonce: 0,
        miner,
        reward: spec.block_subsidy.checked_add(fees).expect("fits"),
    };
    solve(&mut header);
    Block { header, txs }
}

/// Re-solves a block after its header was edited.
pub fn resolve(block: &mut Block) {
    block.header.nonce = 0;
    solve(&mut block.header);
}
