//! Chain operation sequences: blocks made on any known block (so branches
//! compete), some of them broken (wrong nonce, unaffordable, bad bits, an
//! old timestamp, a wrong reward), delivered in any order, as a peer's
//! gossip, a sync's block, or one held for a batched commit. After each
//! step the tip must be a block of the most work among those the chain
//! holds with every ancestor, and the stored state must equal a replay of
//! the tip's branch from genesis.

use crate::dev;
use arbitrary::{Arbitrary, Unstructured};
use ledger::block::{merkle_root, BLOCK_VERSION};
use ledger::chain::Chain;
use ledger::difficulty::{self, BlockTiming};
use ledger::state::{apply_block, digest_of, genesis_state, Account};
use ledger::storage::MemoryArena;
use ledger::{Address, Amount, Block, BlockHash, ChainSpec, Header, Target, Transaction, Work};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Make a block on known block `parent`.
    Make {
        parent: u8,
        gap_ms: u16,
        txs: Vec<TxChoice>,
        flaw: u8,
    },
    /// Hand made block `which` to the chain, as `how` says.
    Deliver { which: u8, how: u8 },
}

#[derive(Arbitrary, Debug)]
struct TxChoice {
    sender: u8,
    amount: u16,
    nonce_off: u8,
}

struct Made {
    block: Block,
    /// Timings of the block's branch, oldest first, ending with itself.
    timings: Vec<BlockTiming>,
    /// Nonces per dev account after the block, as the maker counted them.
    nonces: BTreeMap<usize, u64>,
}

fn spec() -> &'static (ChainSpec, BlockHash) {
    static SPEC: OnceLock<(ChainSpec, BlockHash)> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut spec = dev::regtest().clone();
        // Every hash meets the first target; retargeting makes quick blocks
        // harder (more work each), so branches of one length differ in work.
        spec.name = "fuzz".into();
        spec.initial_target = Target::MAX;
        spec.easiest_target = Target::MAX;
        spec.retarget = true;
        let genesis = spec.genesis_hash();
        (spec, genesis)
    })
}

/// Grinds the nonce until the header meets its target. Fuzz builds
/// (`cfg(fuzzing)`) let every header pass proof-of-work, so there the
/// grinding (thousands of hashes once retargeting makes blocks harder)
/// would only cost time.
fn solve(header: &mut Header) {
    if cfg!(fuzzing) {
        return;
    }
    let Ok(target) = Target::from_compact(header.bits) else {
        return;
    };
    while !target.is_met_by(&header.hash()) {
        header.nonce += 1;
    }
}

/// `chain_ops`: up to 40 steps on a fresh chain in an in-memory store (a
/// sled store per input cost more than the steps themselves).
pub fn ops(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let (spec, genesis_hash) = spec();
    let arena = MemoryArena::new();
    let mut chain = Chain::open_in_memory(spec.clone(), &arena, "fuzz").expect("opens");
    let now_ms = spec.genesis_timestamp + 1_000_000_000;
    let genesis = spec.genesis_block();
    let mut made = vec![Made {
        timings: vec![BlockTiming {
            timestamp: genesis.header.timestamp,
            bits: genesis.header.bits,
        }],
        block: genesis,
        nonces: BTreeMap::new(),
    }];
    let mut by_hash: BTreeMap<BlockHash, usize> = BTreeMap::new();
    by_hash.insert(made[0].block.hash(), 0);
    let mut delivered: BTreeSet<usize> = BTreeSet::from([0]);
    for _ in 0..40 {
        let Ok(op) = Op::arbitrary(&mut input) else {
            break;
        };
        match op {
            Op::Make {
                parent,
                gap_ms,
                txs,
                flaw,
            } => {
                if made.len() >= 48 {
                    continue;
                }
                let parent = &made[usize::from(parent) % made.len()];
                let block = make_block(spec, genesis_hash, parent, gap_ms, &txs, flaw);
                let mut timings = parent.timings.clone();
                timings.push(BlockTiming {
                    timestamp: block.header.timestamp,
                    bits: block.header.bits,
                });
                let mut nonces = parent.nonces.clone();
                for tx in &block.txs {
                    let sender = (0..4)
                        .find(|i| dev::address(*i) == tx.sender())
                        .expect("a dev sender");
                    nonces.insert(sender, tx.nonce + 1);
                }
                if by_hash.contains_key(&block.hash()) {
                    continue;
                }
                by_hash.insert(block.hash(), made.len());
                made.push(Made {
                    block,
                    timings,
                    nonces,
                });
            }
            Op::Deliver { which, how } => {
                let index = usize::from(which) % made.len();
                let block = made[index].block.clone();
                let _ = match how % 3 {
                    0 => chain.process_block(block, now_ms),
                    1 => chain.process_block_unrequested(block, now_ms),
                    _ => chain.process_block_held(block, now_ms, 4),
                };
                delivered.insert(index);
            }
        }
        if chain.has_held() {
            chain.commit_held().expect("commits");
        }
        check(&chain, spec, &made, &by_hash, &delivered);
    }
}

fn make_block(
    spec: &ChainSpec,
    genesis_hash: &BlockHash,
    parent: &Made,
    gap_ms: u16,
    choices: &[TxChoice],
    flaw: u8,
) -> Block {
    let mut nonces = parent.nonces.clone();
    let txs: Vec<Transaction> = choices
        .iter()
        .take(4)
        .map(|choice| {
            let sender = usize::from(choice.sender % 4);
            let next = nonces.get(&sender).copied().unwrap_or(0);
            // Mostly the right nonce; now and then one that is not.
            let nonce = match choice.nonce_off {
                0..=239 => next,
                off => next + u64::from(off % 3),
            };
            nonces.insert(sender, nonce + 1);
            let amount = match choice.amount {
                // More than a dev account holds: unaffordable.
                0 => Amount::from_coins(2_000_000).expect("fits"),
                units => Amount::from_base_units(u64::from(units)),
            };
            Transaction::new_signed(
                dev::key(sender),
                genesis_hash,
                dev::address(usize::from(choice.sender % 10)),
                amount,
                spec.min_fee,
                nonce,
                String::new(),
            )
        })
        .collect();
    let parent_header = &parent.block.header;
    let target = difficulty::next_required_target(spec, &parent.timings);
    let bits = if flaw == 1 {
        Target(target.0.div_u64(2)).rounded().to_compact()
    } else {
        target.to_compact()
    };
    let fees = Amount::checked_sum(txs.iter().map(|tx| tx.fee)).expect("small fees");
    let reward = spec
        .block_subsidy
        .checked_add(fees)
        .expect("fits")
        .checked_add(Amount::from_base_units(u64::from(flaw == 2)))
        .expect("fits");
    let timestamp = if flaw == 3 {
        difficulty::median_time_past(&parent.timings)
    } else {
        parent_header.timestamp + u64::from(gap_ms)
    };
    let txids: Vec<_> = txs.iter().map(Transaction::txid).collect();
    let mut header = Header {
        version: BLOCK_VERSION,
        height: parent_header.height + 1,
        prev_hash: parent_header.hash(),
        merkle_root: merkle_root(&txids),
        timestamp,
        bits,
        nonce: 0,
        miner: dev::address(9),
        reward,
    };
    solve(&mut header);
    Block { header, txs }
}

/// The blocks from genesis to `index`, oldest first, if all were handed
/// to the chain, none is invalid and the chain holds them all.
fn branch(
    chain: &Chain,
    made: &[Made],
    by_hash: &BTreeMap<BlockHash, usize>,
    delivered: &BTreeSet<usize>,
    mut index: usize,
) -> Option<Vec<usize>> {
    let mut path = vec![index];
    while index != 0 {
        let block = &made[index].block;
        let hash = block.hash();
        if !delivered.contains(&index) || !chain.contains(&hash) || chain.is_invalid(&hash) {
            return None;
        }
        index = *by_hash.get(&block.header.prev_hash)?;
        path.push(index);
    }
    path.reverse();
    Some(path)
}

fn work_of(made: &[Made], path: &[usize]) -> Work {
    path.iter().fold(Work::ZERO, |total, index| {
        let bits = made[*index].block.header.bits;
        let target = Target::from_compact(bits).expect("a held block has valid bits");
        total.saturating_add(&target.work())
    })
}

fn check(
    chain: &Chain,
    spec: &ChainSpec,
    made: &[Made],
    by_hash: &BTreeMap<BlockHash, usize>,
    delivered: &BTreeSet<usize>,
) {
    let tip = chain.tip();
    let tip_index = *by_hash.get(&tip.hash).expect("the tip is a block we made");
    let tip_path = branch(chain, made, by_hash, delivered, tip_index)
        .expect("the tip's branch is whole and valid");
    let tip_work = work_of(made, &tip_path);
    assert_eq!(
        tip.total_work, tip_work,
        "the tip's total work is not its blocks' work"
    );
    for index in delivered {
        if let Some(path) = branch(chain, made, by_hash, delivered, *index) {
            // Every block of it is held and not known invalid; it may still
            // be unvalidated (a side branch), but never with more work.
            assert!(
                work_of(made, &path) <= tip_work,
                "a branch with more work than the tip: {} blocks vs {}",
                path.len(),
                tip_path.len()
            );
        }
    }
    // The stored state is a replay of the tip's branch from genesis.
    let mut state: BTreeMap<Address, Account> = genesis_state(spec);
    for index in tip_path.iter().skip(1) {
        let change = apply_block(&made[*index].block, spec, &state)
            .expect("every block of the best chain applies");
        for (address, account) in change.updates {
            if account == Account::default() {
                state.remove(&address);
            } else {
                state.insert(address, account);
            }
        }
    }
    let (digest, accounts, supply) = digest_of(&state);
    let reader = chain.reader();
    let summary = reader.state_summary();
    assert_eq!(summary.tip, tip.hash);
    assert_eq!(summary.height, tip.height);
    assert_eq!(
        (summary.digest, summary.accounts, summary.total_supply),
        (digest, accounts, supply),
        "stored state differs from a replay from genesis"
    );
    for index in 0..10 {
        let address = dev::address(index);
        assert_eq!(
            reader.account(&address),
            state.get(&address).copied().unwrap_or_default()
        );
    }
}
