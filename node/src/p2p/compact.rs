//! Rebuilding a block from a `CompactBlock`: matching its short ids against
//! the mempool, then filling what was missing from the peer's `BlockTxs`,
//! and checking the result against the header's merkle root before anyone
//! validates it. Pure functions over a mempool snapshot, run off the
//! network task by the driver (and directly by a simulation); the protocol
//! core decides what to ask for and what to do with the outcome.

use super::message::{CompactBlock, ShortId, ShortIdKey};
use super::protocol::ChainView;
use ledger::block::merkle_root;
use ledger::{Block, Transaction, TxId};
use std::collections::HashMap;

/// What rebuilding gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebuilt {
    /// Every tx found, and the merkle root matches.
    Complete(Block),
    /// Some txs are not in our mempool: `found` has the block's txs in
    /// order with `None` where one is missing, `missing` their indexes
    /// (ascending), to ask the peer for.
    Missing {
        found: Vec<Option<Transaction>>,
        missing: Vec<u32>,
    },
    /// The compact block cannot be rebuilt (duplicate short ids, bad
    /// prefilled indexes, a merkle root that does not match what we put
    /// together): fetch the full block instead. Not misbehaviour by
    /// itself, since a short id can collide by accident.
    Failed(&'static str),
}

/// A rebuild for the driver to run: from the mempool (`found` is `None`),
/// or finishing one with the txs the peer sent (`found` from the earlier
/// `Rebuilt::Missing`, `fill` the peer's `BlockTxs`).
#[derive(Clone, Debug)]
pub struct RebuildJob {
    pub compact: CompactBlock,
    pub found: Option<Vec<Option<Transaction>>>,
    pub fill: Vec<Transaction>,
}

/// The most txs a rebuild may touch (mempool txs matched, or block txs
/// hashed into the merkle root) and still run on the caller's task: below
/// it, handing the job to a blocking thread and back costs more than the
/// job (a few hundred microseconds at this size).
pub const INLINE_REBUILD_TXS: usize = 4_096;

impl RebuildJob {
    /// Runs the job at once if it is small (see `INLINE_REBUILD_TXS`);
    /// otherwise hands it back for a blocking thread.
    pub fn run_if_small(
        self,
        view: &impl ChainView,
    ) -> Result<(CompactBlock, Rebuilt), Box<RebuildJob>> {
        if self.compact.tx_count() > INLINE_REBUILD_TXS {
            return Err(Box::new(self));
        }
        if self.found.is_some() {
            return Ok(self.run(view));
        }
        let txids = view.mempool_txids(INLINE_REBUILD_TXS + 1);
        if txids.len() > INLINE_REBUILD_TXS {
            return Err(Box::new(self));
        }
        let rebuilt = rebuild_from_mempool(&self.compact, &txids, |ids| view.mempool_txs(ids));
        Ok((self.compact, rebuilt))
    }

    /// Runs the job against the node's mempool; hands the compact block
    /// back with the outcome.
    pub fn run(self, view: &impl ChainView) -> (CompactBlock, Rebuilt) {
        let (compact, rebuilt, _) = self.run_keeping_txids(view);
        (compact, rebuilt)
    }

    /// `run`, also handing back the txids of a complete block (worked out
    /// for its merkle root), so that its validation need not hash every tx
    /// again.
    pub fn run_keeping_txids(
        self,
        view: &impl ChainView,
    ) -> (CompactBlock, Rebuilt, Option<Vec<TxId>>) {
        let (rebuilt, txids) = match self.found {
            None => rebuild_keeping_txids(&self.compact, &view.mempool_txids(usize::MAX), |ids| {
                view.mempool_txs(ids)
            }),
            Some(found) => finish_keeping_txids(&self.compact, found, self.fill),
        };
        (self.compact, rebuilt, txids)
    }
}

/// Places the prefilled txs and looks every short id up among
/// `mempool_txids` (the matches fetched with one call of `get`).
pub fn rebuild_from_mempool(
    compact: &CompactBlock,
    mempool_txids: &[TxId],
    get: impl FnOnce(&[TxId]) -> Vec<Option<Transaction>>,
) -> Rebuilt {
    rebuild_keeping_txids(compact, mempool_txids, get).0
}

/// `rebuild_from_mempool`, with the txids of a complete block.
fn rebuild_keeping_txids(
    compact: &CompactBlock,
    mempool_txids: &[TxId],
    get: impl FnOnce(&[TxId]) -> Vec<Option<Transaction>>,
) -> (Rebuilt, Option<Vec<TxId>>) {
    let key = ShortIdKey::for_block(&compact.header.hash());
    let count = compact.tx_count();
    let mut slots: Vec<Option<Transaction>> = vec![None; count];
    let mut prefilled_at = vec![false; count];
    let mut last: Option<u32> = None;
    for prefilled in &compact.prefilled {
        let index = prefilled.index as usize;
        if index >= count || last.is_some_and(|last| prefilled.index <= last) {
            return (Rebuilt::Failed("bad_prefilled_index"), None);
        }
        last = Some(prefilled.index);
        slots[index] = Some(prefilled.tx.clone());
        prefilled_at[index] = true;
    }
    // Where each short id goes in the block; a short id that appears twice
    // cannot be placed.
    let mut wanted: HashMap<ShortId, usize> = HashMap::with_capacity(compact.short_ids.len());
    let mut positions = (0..count).filter(|index| !prefilled_at[*index]);
    for short_id in &compact.short_ids {
        let Some(position) = positions.next() else {
            return (Rebuilt::Failed("bad_prefilled_index"), None);
        };
        if wanted.insert(*short_id, position).is_some() {
            return (Rebuilt::Failed("duplicate_short_id"), None);
        }
    }
    // A mempool tx whose short id matches two of ours is ambiguous: leave
    // the slot empty and ask for it.
    let mut matched: HashMap<usize, Option<TxId>> = HashMap::with_capacity(wanted.len());
    for txid in mempool_txids {
        if let Some(position) = wanted.get(&key.short_id(txid)) {
            matched
                .entry(*position)
                .and_modify(|seen| *seen = None)
                .or_insert(Some(*txid));
        }
    }
    let (positions, txids): (Vec<usize>, Vec<TxId>) = matched
        .into_iter()
        .filter_map(|(position, txid)| Some((position, txid?)))
        .unzip();
    // The txids of the slots filled from the mempool, so that checking the
    // merkle root hashes only the prefilled txs again.
    let mut ids: Vec<Option<TxId>> = vec![None; count];
    for ((position, tx), txid) in positions.into_iter().zip(get(&txids)).zip(&txids) {
        if tx.is_some() {
            ids[position] = Some(*txid);
        }
        slots[position] = tx;
    }
    let missing: Vec<u32> = slots
        .iter()
        .enumerate()
        .filter(|(_, slot)| slot.is_none())
        .map(|(index, _)| index as u32)
        .collect();
    if missing.is_empty() {
        // Nothing is missing, so every slot holds a tx.
        let txs: Vec<Transaction> = slots.into_iter().flatten().collect();
        let txids = ids
            .into_iter()
            .zip(&txs)
            .map(|(id, tx)| id.unwrap_or_else(|| tx.txid()))
            .collect();
        assemble(compact, txs, txids)
    } else {
        (
            Rebuilt::Missing {
                found: slots,
                missing,
            },
            None,
        )
    }
}

/// Fills the empty slots of `found`, in order, with `fill`.
pub fn finish(
    compact: &CompactBlock,
    found: Vec<Option<Transaction>>,
    fill: Vec<Transaction>,
) -> Rebuilt {
    finish_keeping_txids(compact, found, fill).0
}

/// `finish`, with the txids of a complete block.
fn finish_keeping_txids(
    compact: &CompactBlock,
    mut found: Vec<Option<Transaction>>,
    fill: Vec<Transaction>,
) -> (Rebuilt, Option<Vec<TxId>>) {
    let empty = found.iter().filter(|slot| slot.is_none()).count();
    if empty != fill.len() {
        return (Rebuilt::Failed("wrong_tx_count"), None);
    }
    let mut fill = fill.into_iter();
    for slot in found.iter_mut().filter(|slot| slot.is_none()) {
        *slot = fill.next();
    }
    let txs: Vec<Transaction> = found.into_iter().flatten().collect();
    let txids = txs.iter().map(Transaction::txid).collect();
    assemble(compact, txs, txids)
}

/// The block, if its txs (whose txids are `txids`) match the header's
/// merkle root, with those txids.
fn assemble(
    compact: &CompactBlock,
    txs: Vec<Transaction>,
    txids: Vec<TxId>,
) -> (Rebuilt, Option<Vec<TxId>>) {
    if merkle_root(&txids) != compact.header.merkle_root {
        return (Rebuilt::Failed("merkle_mismatch"), None);
    }
    let block = Block {
        header: compact.header.clone(),
        txs,
    };
    (Rebuilt::Complete(block), Some(txids))
}

/// The txs at `indexes` of `block`, or `None` if any index is out of range
/// or the indexes are not strictly ascending (an honest peer never asks
/// that way).
pub fn block_txs(block: &Block, indexes: &[u32]) -> Option<Vec<Transaction>> {
    let mut last = None;
    let mut txs = Vec::with_capacity(indexes.len());
    for &index in indexes {
        if last.is_some_and(|last| index <= last) {
            return None;
        }
        last = Some(index);
        txs.push(block.txs.get(index as usize)?.clone());
    }
    Some(txs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::message::PrefilledTx;
    use ledger::Height;
    use ledger::{Address, Amount, BlockHash, Header, SecretKey};

    fn txs(n: u64) -> Vec<Transaction> {
        let key = SecretKey::from_seed("compact");
        let genesis = BlockHash::ZERO;
        (0..n)
            .map(|nonce| {
                Transaction::new_signed(
                    &key,
                    &genesis,
                    Address([1; 20]),
                    Amount::from_base_units(5),
                    Amount::from_base_units(1_000),
                    nonce,
                    String::new(),
                )
            })
            .collect()
    }

    fn block(txs: Vec<Transaction>) -> Block {
        Block {
            header: Header {
                version: 1,
                height: Height(3),
                prev_hash: BlockHash::ZERO,
                merkle_root: merkle_root(&txs.iter().map(Transaction::txid).collect::<Vec<_>>()),
                timestamp: 7,
                bits: ledger::target::CompactTarget(0x2000_ffff),
                nonce: 0,
                miner: Address([2; 20]),
                reward: Amount::ZERO,
            },
            txs,
        }
    }

    fn mempool(txs: &[Transaction]) -> (Vec<TxId>, HashMap<TxId, Transaction>) {
        let map: HashMap<TxId, Transaction> =
            txs.iter().map(|tx| (tx.txid(), tx.clone())).collect();
        (txs.iter().map(Transaction::txid).collect(), map)
    }

    #[test]
    fn a_block_whose_txs_we_hold_is_rebuilt_whole() {
        let all = txs(50);
        let block = block(all.clone());
        let compact = CompactBlock::from_block(&block);
        let (ids, map) = mempool(&all);
        let rebuilt = rebuild_from_mempool(&compact, &ids, |ids| {
            ids.iter().map(|id| map.get(id).cloned()).collect()
        });
        assert_eq!(rebuilt, Rebuilt::Complete(block));
    }

    #[test]
    fn missing_txs_are_named_by_index_and_filled_in_order() {
        let all = txs(20);
        let block = block(all.clone());
        let compact = CompactBlock::from_block(&block);
        let held: Vec<Transaction> = all
            .iter()
            .enumerate()
            .filter(|(index, _)| index % 7 != 3)
            .map(|(_, tx)| tx.clone())
            .collect();
        let (ids, map) = mempool(&held);
        let Rebuilt::Missing { found, missing } = rebuild_from_mempool(&compact, &ids, |ids| {
            ids.iter().map(|id| map.get(id).cloned()).collect()
        }) else {
            panic!("txs 3, 10 and 17 are missing");
        };
        assert_eq!(missing, vec![3, 10, 17]);
        let answer = block_txs(&block, &missing).expect("indexes in range");
        assert_eq!(
            finish(&compact, found.clone(), answer),
            Rebuilt::Complete(block)
        );
        assert_eq!(
            finish(&compact, found, Vec::new()),
            Rebuilt::Failed("wrong_tx_count")
        );
    }

    #[test]
    fn prefilled_txs_take_their_slots() {
        let all = txs(6);
        let block = block(all.clone());
        let mut compact = CompactBlock::from_block(&block);
        compact.short_ids.remove(2);
        compact.prefilled.push(PrefilledTx {
            index: 2,
            tx: all[2].clone(),
        });
        let (ids, map) = mempool(&all[..2]);
        let Rebuilt::Missing { missing, .. } = rebuild_from_mempool(&compact, &ids, |ids| {
            ids.iter().map(|id| map.get(id).cloned()).collect()
        }) else {
            panic!("three txs missing");
        };
        assert_eq!(missing, vec![3, 4, 5]);
        compact.prefilled[0].index = 9;
        assert_eq!(
            rebuild_from_mempool(&compact, &ids, |ids| ids
                .iter()
                .map(|id| map.get(id).cloned())
                .collect()),
            Rebuilt::Failed("bad_prefilled_index")
        );
    }

    #[test]
    fn duplicate_short_ids_and_wrong_txs_fall_back_to_the_full_block() {
        let all = txs(4);
        let block = block(all.clone());
        let mut compact = CompactBlock::from_block(&block);
        let (ids, map) = mempool(&all);
        compact.short_ids[1] = compact.short_ids[0];
        assert_eq!(
            rebuild_from_mempool(&compact, &ids, |ids| ids
                .iter()
                .map(|id| map.get(id).cloned())
                .collect()),
            Rebuilt::Failed("duplicate_short_id")
        );
        // A peer answering with other txs than the block's: the merkle
        // root catches it before validation.
        let compact = CompactBlock::from_block(&block);
        let found = vec![
            Some(all[0].clone()),
            None,
            Some(all[2].clone()),
            Some(all[3].clone()),
        ];
        assert_eq!(
            finish(&compact, found, vec![txs(9)[8].clone()]),
            Rebuilt::Failed("merkle_mismatch")
        );
    }

    #[test]
    fn block_txs_refuses_bad_indexes() {
        let block = block(txs(3));
        assert!(block_txs(&block, &[0, 2]).is_some());
        assert!(block_txs(&block, &[2, 1]).is_none());
        assert!(block_txs(&block, &[3]).is_none());
    }

    /// A mempool of `n` txids (no bodies) behind the view the rebuild
    /// reads; only the calls a rebuild makes answer.
    struct PoolOfSize(Vec<TxId>);

    impl ChainView for PoolOfSize {
        fn tip(&self) -> crate::p2p::TipSummary {
            unreachable!("a rebuild does not read the tip")
        }
        fn locator(&self) -> Vec<BlockHash> {
            Vec::new()
        }
        fn headers_after(&self, _: &[BlockHash], _: usize) -> Vec<Header> {
            Vec::new()
        }
        fn has_block(&self, _: &BlockHash) -> bool {
            false
        }
        fn mempool_tx(&self, _: &TxId) -> Option<Transaction> {
            None
        }
        fn mempool_txids(&self, limit: usize) -> Vec<TxId> {
            self.0.iter().take(limit).copied().collect()
        }
        fn has_tx(&self, _: &TxId) -> bool {
            false
        }
        fn oldest_pending_txids(&self, _: usize) -> Vec<TxId> {
            Vec::new()
        }
        fn next_nonce(&self, _: &Address) -> u64 {
            0
        }
        fn sender_txs(&self, _: &Address, _: u64, _: usize) -> Vec<Transaction> {
            Vec::new()
        }
    }

    fn pool(n: usize) -> PoolOfSize {
        PoolOfSize(
            (0..n)
                .map(|i| TxId(ledger::Hash256::digest(&(i as u64).to_le_bytes())))
                .collect(),
        )
    }

    #[test]
    fn small_rebuilds_run_inline_and_large_ones_are_handed_back() {
        let compact = CompactBlock::from_block(&block(txs(3)));
        let job = |found| RebuildJob {
            compact: compact.clone(),
            found,
            fill: Vec::new(),
        };
        // A mempool at the threshold is matched here and now.
        let (_, rebuilt) = job(None)
            .run_if_small(&pool(INLINE_REBUILD_TXS))
            .expect("ran inline");
        assert!(matches!(rebuilt, Rebuilt::Missing { ref missing, .. } if missing.len() == 3));
        // One more tx and it goes to a blocking thread, untouched.
        let handed_back = job(None)
            .run_if_small(&pool(INLINE_REBUILD_TXS + 1))
            .expect_err("too big to run inline");
        assert!(handed_back.found.is_none());
        // Finishing with the peer's txs reads no mempool: inline whatever
        // the mempool's size.
        let finish = job(Some(vec![None, None, None]));
        assert!(finish.run_if_small(&pool(INLINE_REBUILD_TXS + 1)).is_ok());
    }
}
