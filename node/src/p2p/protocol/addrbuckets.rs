//! Where learned addresses may live in the address book, so that no one
//! source can fill it. An address a peer told us about goes to one of
//! `NEW_BUCKETS` buckets of `BUCKET_SIZE`, chosen by a keyed hash of the
//! network group of the peer that told us and the group of the address;
//! the addresses of one source group land in at most `BUCKETS_PER_SOURCE`
//! buckets, so ten identities on ten groups reach at most a fifth of the
//! table, however often they reconnect. A full bucket keeps what it holds
//! and refuses the newcomer, unless one of its entries is failing: the
//! order of eviction never follows timestamps a peer chose. Addresses we
//! connected to ourselves are kept apart ("tried", see `AddrBook`) and
//! never displaced by learned ones. The key is drawn from the core's seed,
//! so placements differ between nodes but repeat for one seed.

use super::netgroup::NetGroup;
use core::net::SocketAddr;
use ledger::Hash256;
use std::collections::{BTreeMap, BTreeSet};

pub const NEW_BUCKETS: u64 = 256;
pub const BUCKET_SIZE: usize = 32;
pub const BUCKETS_PER_SOURCE: u64 = 16;

/// The buckets of learned ("new") addresses.
#[derive(Default)]
pub struct NewTable {
    key: [u8; 32],
    bucket_of: BTreeMap<SocketAddr, u64>,
    buckets: BTreeMap<u64, BTreeSet<SocketAddr>>,
}

impl NewTable {
    pub fn new(key: [u8; 32]) -> NewTable {
        NewTable {
            key,
            ..NewTable::default()
        }
    }

    fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut all: Vec<&[u8]> = vec![&self.key];
        all.extend_from_slice(parts);
        let digest = Hash256::digest_parts(&all);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    /// The bucket for `addr` told us by a peer in `source`.
    pub fn bucket_for(&self, addr: &SocketAddr, source: NetGroup) -> u64 {
        let group = NetGroup::of(addr.ip()).bytes();
        let source = source.bytes();
        let slot = self.hash(&[b"slot", &source, &group]) % BUCKETS_PER_SOURCE;
        self.hash(&[b"bucket", &source, &slot.to_le_bytes()]) % NEW_BUCKETS
    }

    /// The addresses sharing `bucket`.
    pub fn members(&self, bucket: u64) -> impl Iterator<Item = &SocketAddr> {
        self.buckets.get(&bucket).into_iter().flatten()
    }

    pub fn is_full(&self, bucket: u64) -> bool {
        self.buckets
            .get(&bucket)
            .is_some_and(|members| members.len() >= BUCKET_SIZE)
    }

    pub fn insert(&mut self, addr: SocketAddr, bucket: u64) {
        self.remove(&addr);
        self.bucket_of.insert(addr, bucket);
        self.buckets.entry(bucket).or_default().insert(addr);
    }

    pub fn remove(&mut self, addr: &SocketAddr) {
        if let Some(bucket) = self.bucket_of.remove(addr) {
            if let Some(members) = self.buckets.get_mut(&bucket) {
                members.remove(addr);
                if members.is_empty() {
                    self.buckets.remove(&bucket);
                }
            }
        }
    }

    /// Non-empty buckets, in order.
    pub fn buckets(&self) -> impl Iterator<Item = (&u64, &BTreeSet<SocketAddr>)> {
        self.buckets.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_reaches_few_buckets() {
        let table = NewTable::new([7; 32]);
        let source = NetGroup::of([203, 0, 113, 9].into());
        let mut seen = BTreeSet::new();
        for n in 0..5_000u32 {
            let b = n.to_le_bytes();
            let addr = SocketAddr::from(([b[0], b[1], b[2], 1], 7000));
            seen.insert(table.bucket_for(&addr, source));
        }
        assert!(seen.len() as u64 <= BUCKETS_PER_SOURCE, "{}", seen.len());
        let other = NetGroup::of([198, 51, 100, 1].into());
        let addr = SocketAddr::from(([1, 2, 3, 4], 7000));
        assert_eq!(
            table.bucket_for(&addr, source),
            table.bucket_for(&addr, source)
        );
        let _ = table.bucket_for(&addr, other);
    }
}
