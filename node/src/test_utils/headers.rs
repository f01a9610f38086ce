//! Header chains and blocks made up for tests. Easy headers carry the
//! easiest bits, so each meets its own target after a nonce or two: what
//! a peer can make up for free, and what the cheap header checks alone
//! cannot tell from real ones. Empty blocks on a real chain spec are
//! solved at its initial target, so a node's chain takes them. Everything
//! here is deterministic: the same arguments give the same hashes.

use ledger::target::CompactTarget;
use ledger::{Address, Amount, Block, BlockHash, ChainSpec, Hash256, Header, Height, Target, U256};
use std::sync::atomic::AtomicBool;

/// The easiest bits a header may carry: about half of all hashes meet
/// them.
pub fn easiest_bits() -> CompactTarget {
    Target(U256::MAX.div_u64(2)).rounded().to_compact()
}

/// `n` headers after `prev` (which is at `height`), with the easiest bits
/// and each meeting its own target. `miner` tells branches with the same
/// parent apart; a header's timestamp is its height.
pub fn easy_headers(prev: BlockHash, height: u64, n: usize, miner: u8) -> Vec<Header> {
    let bits = easiest_bits();
    let target = Target::from_compact(bits).expect("valid bits");
    let mut headers: Vec<Header> = Vec::with_capacity(n);
    let mut prev = prev;
    for k in 1..=n as u64 {
        let mut header = Header {
            version: 1,
            height: Height(height + k),
            prev_hash: prev,
            merkle_root: Hash256::ZERO,
            timestamp: height + k,
            bits,
            nonce: 0,
            miner: Address([miner; 20]),
            reward: Amount::ZERO,
        };
        while !target.is_met_by(&header.hash()) {
            header.nonce += 1;
        }
        prev = header.hash();
        headers.push(header);
    }
    headers
}

/// [`easy_headers`] as blocks without transactions.
pub fn easy_blocks(prev: BlockHash, height: u64, n: usize, miner: u8) -> Vec<Block> {
    easy_headers(prev, height, n, miner)
        .into_iter()
        .map(|header| Block {
            header,
            txs: Vec::new(),
        })
        .collect()
}

/// A solved block without transactions on `parent`, `spacing_ms` after
/// it, at `spec`'s initial target.
pub fn empty_block_on(spec: &ChainSpec, parent: &Header, spacing_ms: u64) -> Block {
    let mut header = Header {
        version: ledger::block::BLOCK_VERSION,
        height: parent.height + 1,
        prev_hash: parent.hash(),
        merkle_root: ledger::block::merkle_root(&[]),
        timestamp: parent.timestamp + spacing_ms,
        bits: spec.initial_target.to_compact(),
        nonce: 0,
        miner: Address([9; 20]),
        reward: spec.block_subsidy,
    };
    assert!(ledger::miner::solve(
        &mut header,
        &AtomicBool::new(false),
        1
    ));
    Block {
        header,
        txs: Vec::new(),
    }
}

/// `n` blocks from [`empty_block_on`], the first on `parent` and each
/// next one on the one before.
pub fn empty_blocks_on(spec: &ChainSpec, parent: &Header, n: usize, spacing_ms: u64) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::with_capacity(n);
    let mut parent = parent.clone();
    for _ in 0..n {
        let block = empty_block_on(spec, &parent, spacing_ms);
        parent = block.header.clone();
        blocks.push(block);
    }
    blocks
}
