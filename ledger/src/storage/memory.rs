//! The in-memory backend: a `MemoryArena` holds any number of stores (its
//! members) and nothing survives the last handle. It exists for
//! simulations and tests, where a thousand nodes each keep the same chain:
//! every tree is held once for the whole arena, each key maps to the
//! distinct values members hold under it, and each value to the set of
//! members holding it. A block, its index entries and the accounts it
//! leaves are stored once however many nodes connect it; a node that
//! holds another value (another branch, another tip) adds a variant.
//!
//! One lock covers the arena, so a `commit` over several trees is atomic
//! for every reader. Reads copy the key and share the value (`Arc`);
//! scans copy their entries out before returning, so no lock is held while
//! the caller reads on.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Stores that live in memory only, sharing equal data (see the module
/// doc). Cloning is cheap and gives a handle to the same arena.
#[derive(Clone, Default)]
pub struct MemoryArena {
    shared: Arc<RwLock<ArenaData>>,
}

#[derive(Default)]
struct ArenaData {
    trees: Vec<SharedTree>,
    by_name: HashMap<String, usize>,
    next_member: u32,
}

/// Every member's entries of one tree.
#[derive(Default)]
struct SharedTree {
    entries: BTreeMap<Box<[u8]>, Vec<Variant>>,
}

/// One value held under a key, and which members hold it.
struct Variant {
    value: Arc<[u8]>,
    members: Members,
}

/// A set of member ids (a bitset).
#[derive(Default)]
struct Members(Vec<u64>);

impl Members {
    fn of(member: u32) -> Members {
        let mut members = Members::default();
        members.insert(member);
        members
    }

    fn contains(&self, member: u32) -> bool {
        let (word, bit) = (member as usize / 64, member % 64);
        self.0.get(word).is_some_and(|bits| bits & (1 << bit) != 0)
    }

    fn insert(&mut self, member: u32) {
        let (word, bit) = (member as usize / 64, member % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    fn remove(&mut self, member: u32) {
        let (word, bit) = (member as usize / 64, member % 64);
        if let Some(bits) = self.0.get_mut(word) {
            *bits &= !(1 << bit);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|bits| *bits == 0)
    }
}

fn read(shared: &RwLock<ArenaData>) -> RwLockReadGuard<'_, ArenaData> {
    // A panic while holding the lock leaves whole entries behind (every
    // write replaces a variant list in one step), so the data is usable.
    shared
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(shared: &RwLock<ArenaData>) -> RwLockWriteGuard<'_, ArenaData> {
    shared
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryArena {
    pub fn new() -> MemoryArena {
        MemoryArena::default()
    }

    /// A new member id: the key of one store's view of every tree.
    pub(crate) fn add_member(&self) -> u32 {
        let mut data = write(&self.shared);
        let member = data.next_member;
        data.next_member += 1;
        member
    }

    /// `member`'s handle on the tree `name` (created on first use).
    pub(crate) fn tree(&self, name: &str, member: u32) -> MemoryTree {
        let mut data = write(&self.shared);
        let tree = match data.by_name.get(name) {
            Some(tree) => *tree,
            None => {
                let tree = data.trees.len();
                data.trees.push(SharedTree::default());
                data.by_name.insert(name.to_string(), tree);
                tree
            }
        };
        MemoryTree {
            shared: Arc::clone(&self.shared),
            tree,
            member,
        }
    }

    /// (entries, distinct values, bytes of distinct values) over every
    /// tree: what the sharing saves, for reports.
    pub fn footprint(&self) -> (usize, usize, usize) {
        let data = read(&self.shared);
        let (mut entries, mut values, mut bytes) = (0, 0, 0);
        for tree in &data.trees {
            for variants in tree.entries.values() {
                entries += 1;
                values += variants.len();
                bytes += variants
                    .iter()
                    .map(|variant| variant.value.len())
                    .sum::<usize>();
            }
        }
        (entries, values, bytes)
    }
}

impl SharedTree {
    fn get(&self, key: &[u8], member: u32) -> Option<&Arc<[u8]>> {
        self.entries
            .get(key)?
            .iter()
            .find(|variant| variant.members.contains(member))
            .map(|variant| &variant.value)
    }

    /// Sets (`Some`) or removes (`None`) `member`'s value under `key`.
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, member: u32) {
        let Some(variants) = self.entries.get_mut(key) else {
            if let Some(value) = value {
                let variant = Variant {
                    value: Arc::from(value),
                    members: Members::of(member),
                };
                self.entries.insert(Box::from(key), vec![variant]);
            }
            return;
        };
        if let Some(current) = variants
            .iter_mut()
            .find(|variant| variant.members.contains(member))
        {
            if Some(&*current.value) == value {
                return;
            }
            current.members.remove(member);
        }
        if let Some(value) = value {
            match variants.iter_mut().find(|variant| &*variant.value == value) {
                Some(same) => same.members.insert(member),
                None => variants.push(Variant {
                    value: Arc::from(value),
                    members: Members::of(member),
                }),
            }
        }
        variants.retain(|variant| !variant.members.is_empty());
        if variants.is_empty() {
            self.entries.remove(key);
        }
    }

    /// `member`'s entries with `start <= key` (and `key <= end` when
    /// given), ascending.
    fn range<'a>(
        &'a self,
        start: &'a [u8],
        end: Option<&'a [u8]>,
        member: u32,
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a Arc<[u8]>)> + 'a {
        let end = end.map_or(Bound::Unbounded, Bound::Included);
        self.entries
            .range::<[u8], _>((Bound::Included(start), end))
            .filter_map(move |(key, variants)| {
                variants
                    .iter()
                    .find(|variant| variant.members.contains(member))
                    .map(|variant| (&**key, &variant.value))
            })
    }
}

/// One member's handle on one tree of an arena.
#[derive(Clone)]
pub(crate) struct MemoryTree {
    shared: Arc<RwLock<ArenaData>>,
    tree: usize,
    member: u32,
}

/// One write of a `commit`: (position of the tree in the list, key,
/// value or `None` to remove).
pub(crate) type Write = (usize, Vec<u8>, Option<Vec<u8>>);

/// Scanned entries, copied out of the arena.
type Owned = Vec<(Vec<u8>, Arc<[u8]>)>;

impl MemoryTree {
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        read(&self.shared).trees[self.tree]
            .get(key, self.member)
            .cloned()
    }

    /// Sets or removes entries of this tree, under one hold of the lock.
    pub(crate) fn write(&self, writes: &[(&[u8], Option<&[u8]>)]) {
        let mut data = write(&self.shared);
        let tree = &mut data.trees[self.tree];
        for (key, value) in writes {
            tree.put(key, *value, self.member);
        }
    }

    /// Applies `writes` (tree position in `trees`, key, value or removal)
    /// under one hold of the lock. Every tree is of the same arena.
    pub(crate) fn commit(trees: &[&MemoryTree], writes: &[Write]) {
        let Some(first) = trees.first() else {
            return;
        };
        debug_assert!(trees
            .iter()
            .all(|tree| Arc::ptr_eq(&tree.shared, &first.shared)));
        let mut data = write(&first.shared);
        for (position, key, value) in writes {
            let handle = trees[*position];
            data.trees[handle.tree].put(key, value.as_deref(), handle.member);
        }
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.shared).trees[self.tree]
            .range(&[], None, self.member)
            .count()
    }

    pub(crate) fn clear(&self) {
        let mut data = write(&self.shared);
        let tree = &mut data.trees[self.tree];
        let keys: Vec<Box<[u8]>> = tree
            .range(&[], None, self.member)
            .map(|(key, _)| Box::from(key))
            .collect();
        for key in keys {
            tree.put(&key, None, self.member);
        }
    }

    pub(crate) fn last(&self) -> Option<(Vec<u8>, Arc<[u8]>)> {
        read(&self.shared).trees[self.tree]
            .range(&[], None, self.member)
            .next_back()
            .map(|(key, value)| (key.to_vec(), Arc::clone(value)))
    }

    /// Entries from `start` (to `end`, inclusive, when given), ascending.
    pub(crate) fn range(&self, start: &[u8], end: Option<&[u8]>) -> Owned {
        read(&self.shared).trees[self.tree]
            .range(start, end, self.member)
            .map(|(key, value)| (key.to_vec(), Arc::clone(value)))
            .collect()
    }

    /// As `range`, highest key first.
    pub(crate) fn range_rev(&self, start: &[u8], end: Option<&[u8]>) -> Owned {
        read(&self.shared).trees[self.tree]
            .range(start, end, self.member)
            .rev()
            .map(|(key, value)| (key.to_vec(), Arc::clone(value)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_see_only_their_own_entries_and_equal_values_are_held_once() {
        let arena = MemoryArena::new();
        let (a, b) = (arena.add_member(), arena.add_member());
        let tree_a = arena.tree("blocks", a);
        let tree_b = arena.tree("blocks", b);
        tree_a.write(&[(b"k1", Some(b"block")), (b"k2", Some(b"only a"))]);
        tree_b.write(&[(b"k1", Some(b"block"))]);
        assert_eq!(tree_b.get(b"k2"), None);
        assert_eq!(tree_a.len(), 2);
        assert_eq!(tree_b.len(), 1);
        // Two entries (k1, k2), two distinct values: k1's is shared.
        assert_eq!(arena.footprint(), (2, 2, 11));
        let shared_a = tree_a.get(b"k1").expect("a holds k1");
        let shared_b = tree_b.get(b"k1").expect("b holds k1");
        assert!(Arc::ptr_eq(&shared_a, &shared_b));
    }

    #[test]
    fn a_member_that_changes_its_value_leaves_the_others_alone() {
        let arena = MemoryArena::new();
        let (a, b) = (arena.add_member(), arena.add_member());
        let (tree_a, tree_b) = (arena.tree("meta", a), arena.tree("meta", b));
        tree_a.write(&[(b"tip", Some(b"one"))]);
        tree_b.write(&[(b"tip", Some(b"one"))]);
        tree_a.write(&[(b"tip", Some(b"two"))]);
        assert_eq!(tree_a.get(b"tip").as_deref(), Some(&b"two"[..]));
        assert_eq!(tree_b.get(b"tip").as_deref(), Some(&b"one"[..]));
        tree_b.write(&[(b"tip", Some(b"two"))]);
        // "one" is held by nobody now and is gone.
        assert_eq!(arena.footprint(), (1, 1, 3));
        tree_a.write(&[(b"tip", None)]);
        assert_eq!(tree_a.get(b"tip"), None);
        assert_eq!(tree_b.get(b"tip").as_deref(), Some(&b"two"[..]));
        tree_b.clear();
        assert_eq!(arena.footprint(), (0, 0, 0));
    }

    #[test]
    fn scans_are_in_key_order_per_member_and_commit_spans_trees() {
        let arena = MemoryArena::new();
        let (a, b) = (arena.add_member(), arena.add_member());
        let heights = arena.tree("best_chain", a);
        let meta = arena.tree("meta", a);
        let other = arena.tree("best_chain", b);
        other.write(&[(&[9], Some(b"b's"))]);
        MemoryTree::commit(
            &[&heights, &meta],
            &[
                (0, vec![2], Some(b"h2".to_vec())),
                (0, vec![1], Some(b"h1".to_vec())),
                (1, b"tip".to_vec(), Some(b"h2".to_vec())),
                (0, vec![3], Some(b"h3".to_vec())),
                (0, vec![3], None),
            ],
        );
        let keys =
            |entries: Owned| -> Vec<Vec<u8>> { entries.into_iter().map(|(key, _)| key).collect() };
        assert_eq!(keys(heights.range(&[], None)), vec![vec![1], vec![2]]);
        assert_eq!(
            keys(heights.range_rev(&[1], Some(&[2]))),
            vec![vec![2], vec![1]]
        );
        assert_eq!(heights.last().map(|(key, _)| key), Some(vec![2]));
        assert_eq!(other.last().map(|(key, _)| key), Some(vec![9]));
        assert_eq!(meta.get(b"tip").as_deref(), Some(&b"h2"[..]));
    }
}
