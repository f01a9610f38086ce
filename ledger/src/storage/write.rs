//! The store's writes: genesis, block bodies, connecting and
//! disconnecting blocks (each one atomic `commit` over the consensus
//! trees) and the deferred tx and address indexes. The module doc of
//! `storage` says what each write must leave behind after a crash.

use super::tree::{commit, Batch};
use super::{
    address_tx_key, positions_by_address, ConnectRecord, IndexEntry, StateRecord, StorageError,
    Store, TxIndexEntry, TxLocation, ADDRESS_ENTRY_WITH_SPANS, META_CHAIN_NAME, META_GENESIS,
    META_INDEXED, META_STATE, META_TIP,
};
use crate::address::Address;
use crate::block::Block;
use crate::encoding;
use crate::hash::{BlockHash, TxId};
use crate::state::{Account, BlockStateChange, BlockUndo, StateDigester};

impl Store {
    /// Writes the allocations, then genesis, its index entry, height 0 and
    /// the chain identity in one transaction whose last write is the
    /// genesis record: a store without that record is uninitialised, and a
    /// crash before it leaves accounts that the next `init_genesis` clears
    /// and writes again.
    ///
    /// The allocations are not part of the transaction: a large genesis
    /// (100,000 accounts) written as one sled transaction or batch holds
    /// one epoch guard across every insert, so every node copy an insert
    /// replaces stays allocated until well after the write, about 400 MB
    /// for 100,000 accounts (BENCHMARKS.md, "Issue 16's 20-client read load"). One insert at a
    /// time lets sled free them as it goes.
    pub fn init_genesis(
        &self,
        chain_name: &str,
        genesis: &Block,
        entry: &IndexEntry,
        allocations: &[(Address, Account)],
    ) -> Result<(), StorageError> {
        let hash = genesis.hash();
        let block_bytes = encoding::encode(genesis);
        let entry_bytes = encoding::encode(entry);
        if !self.accounts.is_empty() {
            self.accounts.clear()?;
        }
        let mut digest = StateDigester::new();
        for (address, account) in allocations {
            if *account != Account::default() {
                self.accounts
                    .insert(&address.0[..], &encoding::encode(account))?;
                digest.add(address, account);
            }
        }
        let state = StateRecord {
            tip: hash,
            height: genesis.header.height,
            digest,
        };
        let state_bytes = encoding::encode(&state);
        let hash = hash.as_bytes();
        let mut batch = Batch::default();
        batch.insert(0, hash, block_bytes);
        batch.insert(1, hash, entry_bytes);
        batch.insert(2, &0u64.to_be_bytes(), &hash[..]);
        batch.insert(3, META_CHAIN_NAME, chain_name.as_bytes());
        batch.insert(3, META_TIP, &hash[..]);
        batch.insert(3, META_INDEXED, &hash[..]);
        batch.insert(3, META_STATE, state_bytes);
        // Written last inside the same transaction: a store with a
        // genesis record is a fully initialised store.
        batch.insert(3, META_GENESIS, &hash[..]);
        commit(
            &[&self.blocks, &self.index, &self.best_chain, &self.meta],
            &batch,
        )?;
        self.publish_state(state);
        Ok(())
    }

    /// Stores a block body and its index entry together.
    pub fn put_block(
        &self,
        hash: &BlockHash,
        block: &Block,
        entry: &IndexEntry,
    ) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        batch.insert(0, hash.as_bytes(), encoding::encode(block));
        batch.insert(1, hash.as_bytes(), encoding::encode(entry));
        commit(&[&self.blocks, &self.index], &batch)
    }

    /// Forgets side-branch blocks: their bodies and index entries go in
    /// one commit. Only for blocks off the best chain (they have no undo
    /// record, height entry or tx index entries to leave behind).
    pub fn remove_blocks(&self, hashes: &[BlockHash]) -> Result<(), StorageError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for hash in hashes {
            batch.remove(0, hash.as_bytes());
            batch.remove(1, hash.as_bytes());
        }
        commit(&[&self.blocks, &self.index], &batch)
    }

    /// Rewrites index entries (status changes) in one batch.
    pub fn put_index_entries(
        &self,
        entries: &[(BlockHash, IndexEntry)],
    ) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        for (hash, entry) in entries {
            batch.insert(0, hash.as_bytes(), encoding::encode(entry));
        }
        commit(&[&self.index], &batch)
    }

    /// Connects `block` (whose parent is the current tip) in one
    /// transaction: account values, undo record, height index and tip. Its
    /// tx and address index entries follow in [`Store::index_blocks`]:
    /// until then `meta/indexed` names an ancestor, so a crash in between
    /// is seen and repaired when the chain is opened.
    ///
    /// With `new_body`, the block's body and that index entry are written
    /// in the same transaction (a block connected as soon as it arrives):
    /// sled seals and syncs a log buffer for every transaction, so a
    /// syncing node saves one of those per block.
    pub fn connect_block(
        &self,
        hash: &BlockHash,
        block: &Block,
        change: &BlockStateChange,
        new_body: Option<&IndexEntry>,
    ) -> Result<(), StorageError> {
        let record = ConnectRecord {
            hash,
            block,
            undo: &change.undo,
            new_body,
        };
        self.connect_blocks(&[record], &change.updates)
    }

    /// Connects `blocks` (each the child of the one before, the first a
    /// child of the current tip) in one transaction, as
    /// [`Store::connect_block`] does for one: `accounts` are the values the
    /// last of them leaves. A syncing node commits a few blocks at a time
    /// like this, since each sled transaction seals and syncs a log buffer.
    pub fn connect_blocks(
        &self,
        blocks: &[ConnectRecord<'_>],
        accounts: &[(Address, Account)],
    ) -> Result<(), StorageError> {
        let Some(last) = blocks.last() else {
            return Ok(());
        };
        // Each account's value before the first of the blocks is in the
        // first undo record that names it.
        let mut before: std::collections::HashMap<Address, Account> =
            std::collections::HashMap::new();
        for record in blocks {
            for (address, account) in &record.undo.previous {
                before.entry(*address).or_insert(*account);
            }
        }
        let mut digest = self.state_for_update()?;
        for (address, account) in accounts {
            let old = before.get(address).copied().unwrap_or_default();
            digest.change(address, &old, account);
        }
        let state = StateRecord {
            tip: *last.hash,
            height: last.block.header.height,
            digest,
        };
        let state_bytes = encoding::encode(&state);
        let mut batch = Batch::default();
        account_writes(&mut batch, 0, accounts);
        for record in blocks {
            let hash = &record.hash.as_bytes()[..];
            let height = record.block.header.height;
            batch.insert(1, hash, encoding::encode(record.undo));
            batch.insert(2, &height.to_be_bytes(), hash);
            if let Some(entry) = record.new_body {
                batch.insert(4, hash, encoding::encode(record.block));
                batch.insert(5, hash, encoding::encode(entry));
            }
        }
        batch.insert(3, META_TIP, &last.hash.as_bytes()[..]);
        batch.insert(3, META_STATE, state_bytes);
        let trees = [
            &self.accounts,
            &self.undo,
            &self.best_chain,
            &self.meta,
            &self.blocks,
            &self.index,
        ];
        commit(&trees, &batch)?;
        self.publish_state(state);
        Ok(())
    }

    /// Writes the tx and address index entries of connected best-chain
    /// blocks, given in connect order with their txids, then moves
    /// `meta/indexed` to the last. Most of a block's sled writes are these
    /// (one key per tx), which is why they come after the connect: a node
    /// publishes the new tip first. They are plain inserts, not a batch or
    /// transaction: sled makes those exclude every reader in the process
    /// while they run, and an index entry is idempotent, so a crash part way
    /// is repaired by indexing the same blocks again from `meta/indexed`.
    pub fn index_blocks(
        &self,
        blocks: &[(BlockHash, &Block, &[TxId])],
    ) -> Result<(), StorageError> {
        let Some((last, _, _)) = blocks.last() else {
            return Ok(());
        };
        for (hash, block, txids) in blocks {
            let height = block.header.height;
            let spans = encoding::tx_spans(block);
            for ((position, txid), (offset, len)) in txids.iter().enumerate().zip(&spans) {
                let entry = TxIndexEntry {
                    location: TxLocation {
                        block_hash: *hash,
                        height,
                        index: position as u32,
                    },
                    offset: *offset,
                    len: *len,
                };
                self.tx_index
                    .insert(&txid.as_bytes()[..], &encoding::encode(&entry))?;
            }
            for (address, positions) in positions_by_address(block) {
                let mut value = Vec::with_capacity(33 + 12 * positions.len());
                value.extend_from_slice(hash.as_bytes());
                value.push(ADDRESS_ENTRY_WITH_SPANS);
                for position in positions {
                    let (offset, len) = spans.get(position as usize).copied().unwrap_or((0, 0));
                    value.extend_from_slice(&position.to_be_bytes());
                    value.extend_from_slice(&offset.to_be_bytes());
                    value.extend_from_slice(&len.to_be_bytes());
                }
                self.address_txs
                    .insert(&address_tx_key(&address, height)[..], &value)?;
            }
        }
        self.meta.insert(META_INDEXED, &last.as_bytes()[..])?;
        Ok(())
    }

    /// Disconnects the tip `block` in one transaction, restoring the
    /// accounts from `undo` and making `block`'s parent the tip. When the
    /// block was `indexed`, its tx and address index entries go in the same
    /// transaction and `meta/indexed` moves to the parent.
    pub fn disconnect_block(
        &self,
        hash: &BlockHash,
        block: &Block,
        txids: &[TxId],
        undo: &BlockUndo,
        indexed: bool,
    ) -> Result<(), StorageError> {
        let height = block.header.height;
        let mut digest = self.state_for_update()?;
        for (address, previous) in &undo.previous {
            let current = self.account(address)?;
            digest.change(address, &current, previous);
        }
        let state = StateRecord {
            tip: block.header.prev_hash,
            height: height.saturating_sub(1),
            digest,
        };
        let state_bytes = encoding::encode(&state);
        let parent = block.header.prev_hash;
        let mut batch = Batch::default();
        account_writes(&mut batch, 0, &undo.previous);
        batch.remove(1, hash.as_bytes());
        batch.remove(2, &height.to_be_bytes());
        batch.insert(3, META_TIP, &parent.as_bytes()[..]);
        batch.insert(3, META_STATE, state_bytes);
        if indexed {
            batch.insert(3, META_INDEXED, &parent.as_bytes()[..]);
            for txid in txids {
                batch.remove(4, txid.as_bytes());
            }
            for address in positions_by_address(block).into_keys() {
                batch.remove(5, &address_tx_key(&address, height));
            }
        }
        let trees = [
            &self.accounts,
            &self.undo,
            &self.best_chain,
            &self.meta,
            &self.tx_index,
            &self.address_txs,
        ];
        commit(&trees, &batch)?;
        self.publish_state(state);
        Ok(())
    }
}

/// The account writes of a connect or disconnect: an account back at the
/// default (zero balance, zero nonce) is removed, so the accounts tree holds
/// exactly the accounts the state digest counts.
fn account_writes<'a>(
    batch: &mut Batch,
    tree: usize,
    entries: impl IntoIterator<Item = &'a (Address, Account)>,
) {
    for (address, account) in entries {
        if *account == Account::default() {
            batch.remove(tree, &address.0);
        } else {
            batch.insert(tree, &address.0, encoding::encode(account));
        }
    }
}
