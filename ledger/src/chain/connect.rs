//! Moving the tip one block at a time: `connect_tip` applies a block's
//! state transition and writes it (or holds it), `disconnect_tip` undoes
//! the tip with its undo record, and `commit_held` writes held connects in
//! one sled transaction. A failing disk is never mistaken for an invalid
//! block: account reads go through `StrictAccounts`, which remembers the
//! first storage error, and `connect_tip` returns that apart from the
//! block's own verdict.

use super::cache::CachedBlock;
use super::{missing, Chain, Node, ProcessError, ProcessOutcome};
use crate::address::Address;
use crate::block::Block;
use crate::hash::BlockHash;
use crate::state::{self, Account, AccountSource, BlockUndo};
use crate::storage::{ConnectRecord, IndexEntry, StorageError, Store};
use crate::validation::BlockError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Reads accounts from the store for the writer, remembering the first
/// storage error so a failing disk is never mistaken for an invalid block.
struct StrictAccounts<'a> {
    store: &'a Store,
    /// Values left by connects not committed yet (see `HeldConnects`).
    held: &'a HashMap<Address, Account>,
    error: RefCell<Option<StorageError>>,
}

impl AccountSource for StrictAccounts<'_> {
    fn account(&self, address: &Address) -> Account {
        if let Some(account) = self.held.get(address) {
            return *account;
        }
        match self.store.account(address) {
            Ok(account) => account,
            Err(error) => {
                self.error.borrow_mut().get_or_insert(error);
                Account::default()
            }
        }
    }
}

/// Connects held back for one group commit: a syncing node commits several
/// blocks per sled transaction, because every transaction seals and syncs a
/// log buffer. Held blocks are the newest part of the best chain and of
/// `unindexed`; readers (`ChainReader`) do not see them until the commit.
#[derive(Default)]
pub(super) struct HeldConnects {
    /// Account values as the held blocks left them.
    pub(super) accounts: HashMap<Address, Account>,
    pub(super) blocks: Vec<HeldConnect>,
}

impl HeldConnects {
    pub(super) fn get(&self, hash: &BlockHash) -> Option<&Arc<CachedBlock>> {
        self.blocks
            .iter()
            .find(|connect| connect.hash == *hash)
            .map(|connect| &connect.cached)
    }
}

pub(super) struct HeldConnect {
    hash: BlockHash,
    cached: Arc<CachedBlock>,
    undo: BlockUndo,
    /// The index entry of a block that has just arrived, whose body goes
    /// out with the commit.
    new_body: Option<IndexEntry>,
}

impl Chain {
    /// Whether some connects wait for [`Chain::commit_held`].
    pub fn has_held(&self) -> bool {
        !self.held.blocks.is_empty()
    }

    /// Commits the held connects in one sled transaction. On failure the
    /// chain goes back to the last committed tip (the held blocks stay
    /// known and valid, and connect again with a later block).
    pub fn commit_held(&mut self) -> Result<(), StorageError> {
        if self.held.blocks.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let records: Vec<ConnectRecord<'_>> = held
            .blocks
            .iter()
            .map(|connect| ConnectRecord {
                hash: &connect.hash,
                block: &connect.cached.block,
                undo: &connect.undo,
                new_body: connect.new_body.as_ref(),
            })
            .collect();
        let accounts: Vec<(Address, Account)> = held.accounts.into_iter().collect();
        let result = self.store.connect_blocks(&records, &accounts);
        drop(records);
        if let Err(error) = result {
            tracing::error!(%error, blocks = held.blocks.len(), "committing connected blocks failed; back to the last committed tip");
            if let Some(first) = held.blocks.first() {
                self.tip = first.cached.block.header.prev_hash;
            }
            let keep = self.unindexed.len().saturating_sub(held.blocks.len());
            self.unindexed.truncate(keep);
            for connect in held.blocks {
                let height = connect.cached.block.header.height;
                self.side.insert((height, connect.hash), height);
                if connect.new_body.is_some() {
                    self.unstored.push((connect.hash, connect.cached));
                }
            }
            // Best effort: the bodies are still needed to connect again.
            let _ = self.store_unstored();
            return Err(error);
        }
        Ok(())
    }

    /// [`Chain::process_block`] for a block of a sync: the connects it
    /// makes may be held, up to `limit` in all, and committed together by
    /// [`Chain::commit_held`] (which the caller calls when no such block
    /// follows), or by the connect that reaches `limit`, a disconnect, or
    /// `flush`. Until then readers see the last committed tip.
    pub fn process_block_held(
        &mut self,
        block: Block,
        now_ms: u64,
        limit: usize,
    ) -> Result<ProcessOutcome, ProcessError> {
        self.hold_limit = limit;
        let result = self.process_block_inner(block, now_ms);
        self.hold_limit = 0;
        result
    }

    /// Connects `block` on the tip. The outer error is a storage failure;
    /// the inner one says the block is invalid.
    pub(super) fn connect_tip(
        &mut self,
        hash: &BlockHash,
        cached: &Arc<CachedBlock>,
    ) -> Result<Result<(), BlockError>, StorageError> {
        let block = &cached.block;
        let accounts = StrictAccounts {
            store: &self.store,
            held: &self.held.accounts,
            error: RefCell::new(None),
        };
        let result = state::apply_block(block, &self.spec, &accounts);
        if let Some(error) = accounts.error.into_inner() {
            return Err(error);
        }
        let change = match result {
            Ok(change) => change,
            Err(error) => return Ok(Err(error)),
        };
        if let Some(hook) = self.validated_hook.as_mut() {
            hook(hash, block, &cached.txids);
        }
        // A block accepted by this `process_block` goes to sled in the same
        // transaction as its connect: one sled commit per new tip.
        let new_body = match self.unstored.iter().position(|(known, _)| known == hash) {
            Some(position) => {
                self.unstored.swap_remove(position);
                self.nodes.get(hash).map(Node::entry)
            }
            None => None,
        };
        if self.hold_limit > 1 {
            self.held.accounts.extend(change.updates.iter().copied());
            self.held.blocks.push(HeldConnect {
                hash: *hash,
                cached: Arc::clone(cached),
                undo: change.undo,
                new_body,
            });
            self.unindexed.push((*hash, Arc::clone(cached)));
            self.tip = *hash;
            self.side.remove(&(block.header.height, *hash));
            if self.held.blocks.len() >= self.hold_limit {
                self.commit_held()?;
            }
            return Ok(Ok(()));
        }
        self.store
            .connect_block(hash, block, &change, new_body.as_ref())?;
        self.unindexed.push((*hash, Arc::clone(cached)));
        self.tip = *hash;
        self.side.remove(&(block.header.height, *hash));
        Ok(Ok(()))
    }

    /// A block body with its txids, from the recent-block cache or sled.
    pub(super) fn load_block(
        &mut self,
        hash: &BlockHash,
    ) -> Result<Option<Arc<CachedBlock>>, StorageError> {
        if let Some(cached) = self.recent_blocks.get(hash) {
            return Ok(Some(cached));
        }
        if let Some((_, cached)) = self.unstored.iter().find(|(known, _)| known == hash) {
            return Ok(Some(Arc::clone(cached)));
        }
        if let Some(cached) = self.held.get(hash) {
            return Ok(Some(Arc::clone(cached)));
        }
        let Some(block) = self.store.block(hash)? else {
            return Ok(None);
        };
        let txids = block.txids();
        let cached = Arc::new(CachedBlock {
            block: Arc::new(block),
            txids,
        });
        self.recent_blocks.insert(*hash, Arc::clone(&cached));
        Ok(Some(cached))
    }

    pub(super) fn disconnect_tip(&mut self) -> Result<(), StorageError> {
        // Undo works on committed state.
        self.commit_held()?;
        let hash = self.tip;
        if hash == self.genesis {
            return Err(missing("cannot disconnect genesis".into()));
        }
        let lost = |what: &str| missing(format!("{what} of best-chain block {hash} is missing"));
        let cached = self.load_block(&hash)?.ok_or_else(|| lost("body"))?;
        let block = &cached.block;
        let undo = self.store.undo(&hash)?.ok_or_else(|| lost("undo record"))?;
        // Only the tip can still be unindexed here (blocks are indexed in
        // order and `unindexed` ends at the tip).
        let indexed = match self.unindexed.last() {
            Some((last, _)) if *last == hash => {
                self.unindexed.pop();
                false
            }
            _ => true,
        };
        self.store
            .disconnect_block(&hash, block, &cached.txids, &undo, indexed)?;
        self.tip = block.header.prev_hash;
        let height = block.header.height;
        self.side.insert((height, hash), height);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{block_on, now_ms, regtest_chain};
    use super::*;
    use crate::Height;

    #[test]
    fn held_connects_stay_invisible_to_readers_until_the_commit() {
        let (_arena, mut chain) = regtest_chain();
        let reader = chain.reader();
        let genesis = chain.genesis_hash();
        let now = now_ms(&chain);
        let first = block_on(&chain, &chain.spec().genesis_block().header, 1);
        let second = block_on(&chain, &first.header, 1);
        let second_hash = second.hash();

        chain.process_block_held(first, now, 8).expect("valid");
        chain.process_block_held(second, now, 8).expect("valid");

        assert!(chain.has_held());
        assert_eq!(chain.tip().hash, second_hash);
        assert_eq!(reader.tip().hash, genesis);
        assert!(!reader.has_block(&second_hash));

        chain.commit_held().expect("commit");

        assert!(!chain.has_held());
        assert_eq!(reader.tip().hash, second_hash);
        assert_eq!(reader.tip().height, Height(2));
    }

    #[test]
    fn the_connect_that_reaches_the_limit_commits_the_group() {
        let (_arena, mut chain) = regtest_chain();
        let now = now_ms(&chain);
        let first = block_on(&chain, &chain.spec().genesis_block().header, 1);
        let second = block_on(&chain, &first.header, 1);
        let second_hash = second.hash();

        chain.process_block_held(first, now, 2).expect("valid");
        assert!(chain.has_held());
        chain.process_block_held(second, now, 2).expect("valid");

        assert!(!chain.has_held());
        assert_eq!(chain.reader().tip().hash, second_hash);
    }

    #[test]
    fn held_account_values_are_read_before_the_store() {
        let (_arena, chain) = regtest_chain();
        let address = Address([7; 20]);
        let mut held = HashMap::new();
        let account = Account {
            balance: crate::Amount::from_base_units(5),
            nonce: 3,
        };
        held.insert(address, account);
        let accounts = StrictAccounts {
            store: &chain.store,
            held: &held,
            error: RefCell::new(None),
        };

        assert_eq!(accounts.account(&address), account);
        assert_eq!(accounts.account(&Address([8; 20])), Account::default());
        assert!(accounts.error.into_inner().is_none());
    }

    #[test]
    fn disconnecting_the_tip_restores_its_parent_and_its_accounts() {
        let (_arena, mut chain) = regtest_chain();
        let now = now_ms(&chain);
        let genesis = chain.genesis_hash();
        let block = block_on(&chain, &chain.spec().genesis_block().header, 9);
        let miner = block.header.miner;
        chain.process_block(block, now).expect("valid");
        assert_ne!(chain.reader().account(&miner), Account::default());

        chain.disconnect_tip().expect("disconnect");

        assert_eq!(chain.tip().hash, genesis);
        assert_eq!(chain.reader().tip().hash, genesis);
        assert_eq!(chain.reader().account(&miner), Account::default());
    }
}
