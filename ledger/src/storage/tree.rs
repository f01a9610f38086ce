//! One key-value tree of a store, whichever backend holds it: the handful
//! of operations `Store` needs (point reads and writes, ordered scans, the
//! last key) and `commit`, which writes to several trees of one store so
//! that all of the writes land or none do. `Store` is written against
//! this and never against a backend.

use super::memory::MemoryTree;
use super::StorageError;
use std::ops::Deref;
use std::sync::Arc;

/// A stored value, borrowed from the backend without copying: sled's
/// shared buffer or the memory arena's shared bytes.
pub(crate) enum Value {
    Sled(sled::IVec),
    Memory(Arc<[u8]>),
}

impl Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Value::Sled(bytes) => bytes,
            Value::Memory(bytes) => bytes,
        }
    }
}

/// A tree handle; cloning is cheap.
#[derive(Clone)]
pub(crate) enum Tree {
    Sled(sled::Tree),
    Memory(MemoryTree),
}

/// Entries of a scan, in the order asked for.
pub(crate) type Entries<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Value), StorageError>> + 'a>;

impl Tree {
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Value>, StorageError> {
        match self {
            Tree::Sled(tree) => Ok(tree.get(key)?.map(Value::Sled)),
            Tree::Memory(tree) => Ok(tree.get(key).map(Value::Memory)),
        }
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> Result<bool, StorageError> {
        match self {
            Tree::Sled(tree) => Ok(tree.contains_key(key)?),
            Tree::Memory(tree) => Ok(tree.get(key).is_some()),
        }
    }

    /// A write outside any transaction (see `commit` for atomic writes).
    pub(crate) fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        match self {
            Tree::Sled(tree) => {
                tree.insert(key, value)?;
            }
            Tree::Memory(tree) => tree.write(&[(key, Some(value))]),
        }
        Ok(())
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Result<(), StorageError> {
        match self {
            Tree::Sled(tree) => {
                tree.remove(key)?;
            }
            Tree::Memory(tree) => tree.write(&[(key, None)]),
        }
        Ok(())
    }

    /// Entries held (a full scan of the keys on either backend).
    pub(crate) fn len(&self) -> usize {
        match self {
            Tree::Sled(tree) => tree.len(),
            Tree::Memory(tree) => tree.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Tree::Sled(tree) => tree.is_empty(),
            Tree::Memory(tree) => tree.len() == 0,
        }
    }

    pub(crate) fn clear(&self) -> Result<(), StorageError> {
        match self {
            Tree::Sled(tree) => tree.clear()?,
            Tree::Memory(tree) => tree.clear(),
        }
        Ok(())
    }

    /// The entry with the highest key.
    pub(crate) fn last(&self) -> Result<Option<(Vec<u8>, Value)>, StorageError> {
        match self {
            Tree::Sled(tree) => Ok(tree
                .last()?
                .map(|(key, value)| (key.to_vec(), Value::Sled(value)))),
            Tree::Memory(tree) => Ok(tree.last().map(|(key, value)| (key, Value::Memory(value)))),
        }
    }

    /// Every entry in key order. sled reads lazily; the memory backend
    /// copies the keys out first, so no lock is held while the caller
    /// reads on.
    pub(crate) fn iter(&self) -> Entries<'_> {
        match self {
            Tree::Sled(tree) => Box::new(tree.iter().map(|item| {
                item.map(|(key, value)| (key.to_vec(), Value::Sled(value)))
                    .map_err(StorageError::from)
            })),
            Tree::Memory(tree) => Box::new(
                tree.range(&[], None)
                    .into_iter()
                    .map(|(key, value)| Ok((key, Value::Memory(value)))),
            ),
        }
    }

    /// Entries with `start <= key <= end`, highest key first.
    pub(crate) fn range_rev(&self, start: &[u8], end: &[u8]) -> Entries<'_> {
        match self {
            Tree::Sled(tree) => Box::new(tree.range(start..=end).rev().map(|item| {
                item.map(|(key, value)| (key.to_vec(), Value::Sled(value)))
                    .map_err(StorageError::from)
            })),
            Tree::Memory(tree) => Box::new(
                tree.range_rev(start, Some(end))
                    .into_iter()
                    .map(|(key, value)| Ok((key, Value::Memory(value)))),
            ),
        }
    }

    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        if let Tree::Sled(tree) = self {
            tree.flush()?;
        }
        Ok(())
    }
}

/// Writes to the trees given to `commit`, by their position in that list.
#[derive(Default)]
pub(crate) struct Batch {
    writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub(crate) fn insert(&mut self, tree: usize, key: &[u8], value: impl Into<Vec<u8>>) {
        self.writes.push((tree, key.to_vec(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, tree: usize, key: &[u8]) {
        self.writes.push((tree, key.to_vec(), None));
    }
}

/// Applies `batch` to `trees` (all of one store) atomically: one sled
/// transaction, or one hold of the memory arena's lock.
pub(crate) fn commit(trees: &[&Tree], batch: &Batch) -> Result<(), StorageError> {
    let sled_trees: Option<Vec<&sled::Tree>> = trees
        .iter()
        .map(|tree| match tree {
            Tree::Sled(tree) => Some(tree),
            Tree::Memory(_) => None,
        })
        .collect();
    if let Some(sled_trees) = sled_trees {
        use sled::Transactional;
        sled_trees[..].transaction(|handles| {
            for (tree, key, value) in &batch.writes {
                match value {
                    Some(value) => handles[*tree].insert(key.as_slice(), value.as_slice())?,
                    None => handles[*tree].remove(key.as_slice())?,
                };
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })?;
        return Ok(());
    }
    let memory_trees: Option<Vec<&MemoryTree>> = trees
        .iter()
        .map(|tree| match tree {
            Tree::Memory(tree) => Some(tree),
            Tree::Sled(_) => None,
        })
        .collect();
    match memory_trees {
        Some(memory_trees) => {
            MemoryTree::commit(&memory_trees, &batch.writes);
            Ok(())
        }
        None => Err(StorageError::Corrupt(
            "one commit over trees of two backends".into(),
        )),
    }
}
