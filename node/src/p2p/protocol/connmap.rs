//! `ConnMap`: the core's connections by `ConnId`, in `ConnId` order, as
//! two sorted lists (the ids, and the connections at the same positions).
//! A node has at most a few hundred connections and new ids only grow, so
//! an insert is a push and a lookup searches one short run of ids; a
//! search tree took a few cache misses per frame to find the connection
//! every input names. Iteration is in `ConnId` order, as the rest of the
//! core relies on.

use super::ConnId;

/// See the module docs.
pub struct ConnMap<V> {
    ids: Vec<ConnId>,
    values: Vec<V>,
}

impl<V> Default for ConnMap<V> {
    fn default() -> Self {
        ConnMap {
            ids: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<V> ConnMap<V> {
    fn position(&self, id: &ConnId) -> Result<usize, usize> {
        // Ids are handed out in order, so most lookups are of recent ones,
        // but a binary search is as quick on a list this short.
        self.ids.binary_search(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn contains_key(&self, id: &ConnId) -> bool {
        self.position(id).is_ok()
    }

    pub fn get(&self, id: &ConnId) -> Option<&V> {
        self.position(id).ok().map(|index| &self.values[index])
    }

    /// Prefetches the id list a lookup searches (two cache lines cover
    /// the sixteen connections of a typical node).
    pub fn prefetch_ids(&self) {
        if let Some(first) = self.ids.first() {
            ledger::prefetch::prefetch(first);
        }
        if let Some(last) = self.ids.last() {
            ledger::prefetch::prefetch(last);
        }
    }

    pub fn get_mut(&mut self, id: &ConnId) -> Option<&mut V> {
        self.position(id).ok().map(|index| &mut self.values[index])
    }

    /// Returns the value `id` had, if any.
    pub fn insert(&mut self, id: ConnId, value: V) -> Option<V> {
        match self.position(&id) {
            Ok(index) => Some(std::mem::replace(&mut self.values[index], value)),
            Err(index) => {
                self.ids.insert(index, id);
                self.values.insert(index, value);
                None
            }
        }
    }

    pub fn remove(&mut self, id: &ConnId) -> Option<V> {
        let index = self.position(id).ok()?;
        self.ids.remove(index);
        Some(self.values.remove(index))
    }

    pub fn keys(&self) -> impl Iterator<Item = &ConnId> + '_ {
        self.ids.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.values.iter()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.values.iter_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ConnId, &V)> + '_ {
        self.ids.iter().zip(self.values.iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&ConnId, &mut V)> + '_ {
        self.ids.iter().zip(self.values.iter_mut())
    }
}

impl<'a, V> IntoIterator for &'a ConnMap<V> {
    type Item = (&'a ConnId, &'a V);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, ConnId>, std::slice::Iter<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter().zip(self.values.iter())
    }
}

impl<V> std::ops::Index<&ConnId> for ConnMap<V> {
    type Output = V;

    fn index(&self, id: &ConnId) -> &V {
        self.get(id).expect("no connection with this id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_as_an_ordered_map() {
        let mut map = ConnMap::default();
        let mut model = BTreeMap::new();
        let mut state = 5u64;
        for _ in 0..5_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let id = ConnId((state >> 33) % 64);
            let value = state >> 50;
            if state.is_multiple_of(3) {
                assert_eq!(map.remove(&id), model.remove(&id));
            } else {
                assert_eq!(map.insert(id, value), model.insert(id, value));
            }
            if let (Some(value), Some(expected)) = (map.get_mut(&id), model.get_mut(&id)) {
                *value += 1;
                *expected += 1;
            }
            assert_eq!(map.len(), model.len());
            assert!(map.iter().eq(model.iter()));
            assert!((&map).into_iter().map(|(id, _)| id).eq(map.keys()));
            assert_eq!(map.contains_key(&id), model.contains_key(&id));
        }
    }
}
