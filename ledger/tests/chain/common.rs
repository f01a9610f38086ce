//! Helpers shared by the chain tests: specs, signed transfers, block
//! building and mining on the trivially easy regtest target.
#![allow(dead_code)]

use ledger::amount::Amount;
use ledger::block::{merkle_root, Block, Header, BLOCK_VERSION};
use ledger::chainspec::ChainSpec;
use ledger::target::Target;
use ledger::{Address, BlockHash, Transaction};

pub use ledger::testing::{dev_address, now_ms, regtest, transfer};

/// Increments the nonce until the header meets its own target.
pub fn solve(header: &mut Header) {
    let target = Target::from_compact(header.bits).expect("valid bits");
    while !target.is_met_by(&header.hash()) {
        header.nonce += 1;
    }
}

/// A solved block on `parent` with the given fields; reward = subsidy +
/// fees, merkle root set.
pub fn block_on(
    spec: &ChainSpec,
    parent: &Header,
    timestamp: u64,
    miner: Address,
    txs: Vec<Transaction>,
) -> Block {
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

/// A chain in a temp dir plus helpers to build blocks on its tip.
pub struct Fixture {
    pub spec: ChainSpec,
    pub genesis: BlockHash,
    pub chain: ledger::chain::Chain,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_spec(regtest())
    }

    pub fn with_spec(spec: ChainSpec) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let chain = ledger::chain::Chain::open(spec.clone(), dir.path()).expect("open chain");
        Fixture {
            genesis: spec.genesis_hash(),
            spec,
            chain,
            dir,
        }
    }

    pub fn tip_header(&self) -> Header {
        let reader = self.chain.reader();
        reader.header(&reader.tip().hash).expect("tip header")
    }

    /// A valid block on the tip carrying `txs`, 2 s after the tip.
    pub fn next_block(&self, txs: Vec<Transaction>) -> Block {
        let parent = self.tip_header();
        block_on(
            &self.spec,
            &parent,
            parent.timestamp + 2000,
            dev_address(9),
            txs,
        )
    }

    /// Processes `block` with the clock reading its own timestamp. The
    /// error is the verdict on the block: a failing test store panics.
    pub fn submit(
        &mut self,
        block: Block,
    ) -> Result<ledger::chain::ProcessOutcome, ledger::validation::BlockError> {
        let now = block.header.timestamp;
        verdict(self.chain.process_block(block, now))
    }

    pub fn transfer(&self, from: usize, to: usize, amount: u64, nonce: u64) -> Transaction {
        transfer(&self.genesis, from, dev_address(to), amount, 1000, nonce)
    }
}

/// The verdict of a `process_block` call: its outcome or the block's error.
/// A storage failure is the test's own trouble, so it panics.
pub fn verdict(
    result: Result<ledger::chain::ProcessOutcome, ledger::chain::ProcessError>,
) -> Result<ledger::chain::ProcessOutcome, ledger::validation::BlockError> {
    result.map_err(|error| match error {
        ledger::chain::ProcessError::Invalid(error) => error,
        ledger::chain::ProcessError::Storage(error) => panic!("test store failed: {error}"),
    })
}
