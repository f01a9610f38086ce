//! The address book and the ban list. The book holds dialable listen
//! addresses (learned in handshakes or from `Addr` messages, never a
//! connection's ephemeral source port) with last-seen times and failure
//! counts; addresses that keep failing age out. Learned addresses live in
//! source-keyed buckets (`addrbuckets`), addresses we connected to in a
//! separate "tried" set that learned ones never displace, and dial
//! candidates are drawn from both (two tried for one learned). Bans are by node id and by
//! address: by IP for public addresses, but by exact socket address on
//! loopback, where every local node shares one IP and banning it would cut
//! off honest neighbours too. Neither touches storage: each change is
//! queued as a `BookChange` that `NetworkState` hands to its driver as an
//! action (the node persists them, with bans' wall-clock expiry, so
//! a restart neither loses the network nor pardons anyone).

use super::addrbuckets::{NewTable, BUCKET_SIZE, NEW_BUCKETS};
use super::netgroup::{acceptable_from, NetGroup};
use super::time::{Mono, Time};
use crate::p2p::message::PeerAddr;
use core::net::{IpAddr, SocketAddr};
use ledger::encoding::{Decode, Encode};
use ledger::PublicKey;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Most addresses remembered: the learned ones' buckets, plus the tried.
pub const MAX_BOOK_ENTRIES: usize = 10_000;
/// Addresses we connected to, kept apart; the one we saw working longest
/// ago goes first (our own clock, never a peer's).
const MAX_TRIED: usize = MAX_BOOK_ENTRIES - NEW_BUCKETS as usize * BUCKET_SIZE;
/// A learned address's time is at most now, minus this: one we only heard
/// of never looks fresher than one we reached ourselves.
const LEARNED_PENALTY_MS: u64 = 2 * 60 * 60 * 1000;
/// An address that failed this many dials in a row and has not worked for
/// `FAILED_AGE_OUT` is forgotten.
const MAX_FAILURES: u32 = 5;
const FAILED_AGE_OUT: Duration = Duration::from_secs(60 * 60);
/// Any address not seen working for this long is forgotten.
const STALE_AGE_OUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Reconnect delay after `failures` failed attempts: exponential from 1 s to
/// 60 s, jittered down by up to a quarter so that nodes restarted together
/// do not dial in lockstep (never below 1 s).
pub fn backoff(failures: u32, rng: &mut impl Rng) -> Duration {
    let base_secs = 1u64 << failures.min(6);
    let base = Duration::from_secs(base_secs.min(60));
    let factor = rng.gen_range(0.75..=1.0);
    base.mul_f64(factor).max(Duration::from_secs(1))
}

/// What we know about one address.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AddrEntry {
    pub node_id: Option<PublicKey>,
    /// Unix ms of the last working connection (or as reported by a peer).
    pub last_seen_ms: u64,
    /// Failed dials since the last success.
    pub failures: u32,
    /// Unix ms before which we do not dial it again.
    pub retry_after_ms: u64,
    /// We connected to it ourselves (the "tried" set). Persisted, so a
    /// restart keeps what our own connections proved; it is the last field,
    /// so a record written before it existed is one byte shorter and reads
    /// as learned (`AddrEntry::decode_record`).
    pub tried: bool,
}

/// `AddrEntry` as records were written before `tried` was persisted.
#[derive(Decode)]
struct LegacyAddrEntry {
    node_id: Option<PublicKey>,
    last_seen_ms: u64,
    failures: u32,
    retry_after_ms: u64,
}

impl AddrEntry {
    /// Reads a stored record: the current layout, or the one before
    /// `tried` existed (read as learned).
    pub fn decode_record(bytes: &[u8]) -> Result<AddrEntry, ledger::encoding::DecodeError> {
        const LIMIT: usize = 256;
        ledger::encoding::decode_with_limit::<AddrEntry>(bytes, LIMIT).or_else(|error| {
            let legacy = ledger::encoding::decode_with_limit::<LegacyAddrEntry>(bytes, LIMIT)
                .map_err(|_| error)?;
            Ok(AddrEntry {
                node_id: legacy.node_id,
                last_seen_ms: legacy.last_seen_ms,
                failures: legacy.failures,
                retry_after_ms: legacy.retry_after_ms,
                tried: false,
            })
        })
    }
}

/// A change to persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookChange {
    PutAddr(SocketAddr, AddrEntry),
    RemoveAddr(SocketAddr),
    /// `until` on the monotonic clock (for the handle's view), `until_ms`
    /// on the wall clock (for storage).
    PutBan {
        key: BanKey,
        until: Mono,
        until_ms: u64,
    },
    RemoveBan(BanKey),
}

/// What became of an address a peer told us about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    Added,
    Known,
    /// Refused, for this reason (a metric label).
    Refused(&'static str),
}

/// Dialable addresses.
#[derive(Default)]
pub struct AddrBook {
    entries: BTreeMap<SocketAddr, AddrEntry>,
    new: NewTable,
    tried: BTreeSet<SocketAddr>,
    changes: Vec<BookChange>,
}

/// Asked after every input: when nothing changed, the list is only read,
/// so its cache line stays clean.
fn take_changes(changes: &mut Vec<BookChange>) -> Vec<BookChange> {
    if changes.is_empty() {
        return Vec::new();
    }
    std::mem::take(changes)
}

impl AddrBook {
    /// A book holding what was persisted before. Tried addresses go back
    /// to the tried set (up to `MAX_TRIED`); learned ones are placed as
    /// learned from their own group (the source is not persisted, so they
    /// spread over buckets), and ones that find their bucket full are
    /// dropped.
    pub fn restore(
        entries: impl IntoIterator<Item = (SocketAddr, AddrEntry)>,
        key: [u8; 32],
    ) -> AddrBook {
        let mut book = AddrBook {
            new: NewTable::new(key),
            ..AddrBook::default()
        };
        for (addr, mut entry) in entries {
            if entry.tried && book.tried.len() < MAX_TRIED {
                book.tried.insert(addr);
                book.entries.insert(addr, entry);
                continue;
            }
            if entry.tried {
                // Over the tried cap (a smaller cap than when written):
                // learned from now on, and stored so.
                entry.tried = false;
                book.changes.push(BookChange::PutAddr(addr, entry.clone()));
            }
            let bucket = book.new.bucket_for(&addr, NetGroup::of(addr.ip()));
            if book.new.is_full(bucket) {
                book.changes.push(BookChange::RemoveAddr(addr));
                continue;
            }
            book.new.insert(addr, bucket);
            book.entries.insert(addr, entry);
        }
        book
    }

    /// Addresses we connected to (and still hold).
    pub fn n_tried(&self) -> usize {
        self.tried.len()
    }

    /// Whether we connected to `addr` and hold it apart from learned ones.
    pub fn is_tried(&self, addr: &SocketAddr) -> bool {
        self.tried.contains(addr)
    }

    /// The changes since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<BookChange> {
        take_changes(&mut self.changes)
    }

    /// Prefetches what `take_changes` reads.
    pub fn prefetch_changes(&self) {
        ledger::prefetch::prefetch(&self.changes);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&AddrEntry> {
        self.entries.get(addr)
    }

    fn persist(&mut self, addr: &SocketAddr) {
        let change = match self.entries.get(addr) {
            Some(entry) => BookChange::PutAddr(*addr, entry.clone()),
            None => BookChange::RemoveAddr(*addr),
        };
        self.changes.push(change);
    }

    /// Room for one more tried address: the one we saw working longest
    /// ago goes (tried times are only ever set by our own connections).
    fn make_tried_room(&mut self) {
        while self.tried.len() >= MAX_TRIED {
            let oldest = self
                .tried
                .iter()
                .filter_map(|addr| self.entries.get(addr).map(|e| (e.last_seen_ms, *addr)))
                .min()
                .map(|(_, addr)| addr);
            match oldest {
                Some(addr) => self.remove(&addr),
                None => break,
            }
        }
    }

    /// An address a peer told us about, from the peer's own address
    /// (`acceptable_from` and `addrbuckets` say what it may add).
    pub fn learned(&mut self, peer_addr: &PeerAddr, now_ms: u64) -> Learned {
        self.learned_from(peer_addr, now_ms, peer_addr.addr.ip())
    }

    /// An address a peer at `source` told us about. Reported times are
    /// capped below now (`LEARNED_PENALTY_MS`) and never overwrite what our
    /// own connections taught us.
    pub fn learned_from(&mut self, peer_addr: &PeerAddr, now_ms: u64, source: IpAddr) -> Learned {
        let addr = peer_addr.addr;
        if !is_dialable(&addr) {
            return Learned::Refused("undialable");
        }
        if !acceptable_from(&addr, source) {
            return Learned::Refused("non_routable");
        }
        let last_seen_ms = peer_addr
            .last_seen_ms
            .min(now_ms.saturating_sub(LEARNED_PENALTY_MS));
        if let Some(entry) = self.entries.get_mut(&addr) {
            if entry.node_id.is_none() && peer_addr.node_id.is_some() {
                entry.node_id = peer_addr.node_id;
                self.persist(&addr);
            }
            return Learned::Known;
        }
        let bucket = self.new.bucket_for(&addr, NetGroup::of(source));
        if self.new.is_full(bucket) {
            // Only a failing entry makes way; otherwise what the bucket
            // holds stays, whatever the newcomer's timestamp says.
            let failing = self
                .new
                .members(bucket)
                .filter_map(|member| self.entries.get(member).map(|e| (e.failures, *member)))
                .filter(|(failures, _)| *failures > 0)
                .max();
            match failing {
                Some((_, member)) => self.remove(&member),
                None => return Learned::Refused("bucket_full"),
            }
        }
        self.new.insert(addr, bucket);
        self.entries.insert(
            addr,
            AddrEntry {
                node_id: peer_addr.node_id,
                last_seen_ms,
                failures: 0,
                retry_after_ms: 0,
                tried: false,
            },
        );
        self.persist(&addr);
        Learned::Added
    }

    /// A handshake with `node_id` at `addr` succeeded: the address moves to
    /// the tried set.
    pub fn connected(&mut self, addr: SocketAddr, node_id: PublicKey, now_ms: u64) {
        if !is_dialable(&addr) {
            return;
        }
        self.new.remove(&addr);
        if !self.tried.contains(&addr) {
            self.make_tried_room();
            self.tried.insert(addr);
        }
        self.entries.insert(
            addr,
            AddrEntry {
                node_id: Some(node_id),
                last_seen_ms: now_ms,
                failures: 0,
                retry_after_ms: 0,
                tried: true,
            },
        );
        self.persist(&addr);
    }

    /// We are about to dial `addr`; it is not tried again before its backoff.
    pub fn attempted(&mut self, addr: &SocketAddr, now_ms: u64, rng: &mut impl Rng) {
        if let Some(entry) = self.entries.get_mut(addr) {
            entry.retry_after_ms =
                now_ms.saturating_add(backoff(entry.failures, rng).as_millis() as u64);
        }
    }

    /// A dial or handshake to `addr` failed.
    pub fn failed(&mut self, addr: &SocketAddr, now_ms: u64, rng: &mut impl Rng) {
        if let Some(entry) = self.entries.get_mut(addr) {
            entry.failures = entry.failures.saturating_add(1);
            entry.retry_after_ms =
                now_ms.saturating_add(backoff(entry.failures, rng).as_millis() as u64);
            self.persist(addr);
        }
    }

    pub fn remove(&mut self, addr: &SocketAddr) {
        self.new.remove(addr);
        self.tried.remove(addr);
        if self.entries.remove(addr).is_some() {
            self.persist(addr);
        }
    }

    /// Forgets addresses that keep failing or have not worked for a week.
    pub fn age_out(&mut self, now_ms: u64) -> usize {
        let failed_age = FAILED_AGE_OUT.as_millis() as u64;
        let stale_age = STALE_AGE_OUT.as_millis() as u64;
        let doomed: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                let unseen = now_ms.saturating_sub(entry.last_seen_ms);
                (entry.failures >= MAX_FAILURES && unseen > failed_age) || unseen > stale_age
            })
            .map(|(addr, _)| *addr)
            .collect();
        for addr in &doomed {
            self.remove(addr);
        }
        doomed.len()
    }

    /// Addresses worth dialing now, two tried ones for each learned one
    /// while both last. Tried ones: seen working within the hour first,
    /// then within the day, then the rest, in random order within each
    /// group. Learned ones: one from each bucket in random bucket order,
    /// then a second from each, and so on, so a source that filled its
    /// buckets gets its share of buckets, not of addresses.
    pub fn candidates(
        &self,
        now_ms: u64,
        rng: &mut impl Rng,
        skip: impl Fn(&SocketAddr, &AddrEntry) -> bool,
    ) -> Vec<SocketAddr> {
        let usable = |addr: &SocketAddr| {
            self.entries
                .get(addr)
                .is_some_and(|entry| entry.retry_after_ms <= now_ms && !skip(addr, entry))
        };
        let tried = self.tried_candidates(now_ms, rng, &usable);
        let mut buckets: Vec<Vec<SocketAddr>> = self
            .new
            .buckets()
            .map(|(_, members)| members.iter().copied().filter(|a| usable(a)).collect())
            .filter(|members: &Vec<SocketAddr>| !members.is_empty())
            .collect();
        buckets.shuffle(rng);
        for members in &mut buckets {
            members.shuffle(rng);
        }
        let mut learned = Vec::new();
        let deepest = buckets.iter().map(Vec::len).max().unwrap_or(0);
        for round in 0..deepest {
            learned.extend(buckets.iter().filter_map(|members| members.get(round)));
        }
        let mut order = Vec::with_capacity(tried.len() + learned.len());
        let (mut tried, mut learned) = (tried.into_iter(), learned.into_iter());
        loop {
            let picked: Vec<SocketAddr> = tried.by_ref().take(2).chain(learned.next()).collect();
            if picked.is_empty() {
                break;
            }
            order.extend(picked);
        }
        order
    }

    fn tried_candidates(
        &self,
        now_ms: u64,
        rng: &mut impl Rng,
        usable: &impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let mut ready: Vec<(&SocketAddr, &AddrEntry)> = self
            .tried
            .iter()
            .filter(|addr| usable(addr))
            .filter_map(|addr| self.entries.get(addr).map(|entry| (addr, entry)))
            .collect();
        ready.shuffle(rng);
        let recency = |entry: &AddrEntry| {
            let unseen = now_ms.saturating_sub(entry.last_seen_ms);
            match unseen {
                0..=3_600_000 => 0,
                3_600_001..=86_400_000 => 1,
                _ => 2,
            }
        };
        ready.sort_by_key(|(_, entry)| recency(entry));
        ready.into_iter().map(|(addr, _)| *addr).collect()
    }

    /// Up to `max` addresses to share, most recently seen first.
    pub fn share(&self, max: usize) -> Vec<PeerAddr> {
        let mut all: Vec<(&SocketAddr, &AddrEntry)> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.failures < MAX_FAILURES)
            .collect();
        all.sort_by_key(|(_, entry)| std::cmp::Reverse(entry.last_seen_ms));
        all.into_iter()
            .take(max)
            .map(|(addr, entry)| PeerAddr {
                addr: *addr,
                node_id: entry.node_id,
                last_seen_ms: entry.last_seen_ms,
                connected: false,
            })
            .collect()
    }
}

/// Whether an address could be dialed at all.
pub fn is_dialable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}

/// What a ban applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum BanKey {
    Ip(IpAddr),
    Addr(SocketAddr),
    Node(PublicKey),
}

impl BanKey {
    /// The ban key of a network address: the IP, except on loopback (see
    /// the module docs).
    pub fn for_addr(addr: SocketAddr) -> BanKey {
        if addr.ip().is_loopback() {
            BanKey::Addr(addr)
        } else {
            BanKey::Ip(addr.ip())
        }
    }
}

/// Most bans kept at once. Identities cost nothing, so a peer could be
/// banned under endless new keys; past this the ban ending soonest goes.
pub const MAX_BANS: usize = 10_000;

/// Bans in force, each until an instant. Changes are queued as
/// `BookChange`s for the driver to persist.
#[derive(Default)]
pub struct BanList {
    until: BTreeMap<BanKey, Mono>,
    changes: Vec<BookChange>,
    /// Bans let go early for `MAX_BANS` since the last `take_evicted`.
    evicted: u64,
}

impl BanList {
    /// The bans persisted before (key, expiry in Unix ms) that are still in
    /// force at `now`.
    pub fn restore(records: impl IntoIterator<Item = (BanKey, u64)>, now: Time) -> BanList {
        let mut bans = BanList::default();
        for (key, expiry_ms) in records {
            if expiry_ms > now.unix_ms {
                let left = Duration::from_millis(expiry_ms - now.unix_ms);
                bans.until.insert(key, now.mono + left);
            } else {
                bans.changes.push(BookChange::RemoveBan(key));
            }
        }
        bans
    }

    /// The changes since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<BookChange> {
        take_changes(&mut self.changes)
    }

    /// Prefetches what `take_changes` reads.
    pub fn prefetch_changes(&self) {
        ledger::prefetch::prefetch(&self.changes);
    }

    /// Bans `key` for `duration` from `now`.
    pub fn ban(&mut self, key: BanKey, now: Time, duration: Duration) {
        let until = now.after(duration);
        self.until.insert(key, until.mono);
        self.changes.push(BookChange::PutBan {
            key,
            until: until.mono,
            until_ms: until.unix_ms,
        });
        while self.until.len() > MAX_BANS {
            // A scan, but only when a ban is added to a full list.
            let Some(soonest) = self
                .until
                .iter()
                .filter(|(other, _)| **other != key)
                .min_by_key(|(_, until)| **until)
                .map(|(other, _)| *other)
            else {
                break;
            };
            self.until.remove(&soonest);
            self.changes.push(BookChange::RemoveBan(soonest));
            self.evicted += 1;
            tracing::debug!(
                ?soonest,
                rule = "ban_list_bound",
                "ban list full: the ban ending soonest let go"
            );
        }
    }

    /// Bans let go early to keep the list bounded since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    pub fn is_banned(&self, key: &BanKey, now: Mono) -> bool {
        self.until.get(key).is_some_and(|until| *until > now)
    }

    pub fn is_addr_banned(&self, addr: SocketAddr, now: Mono) -> bool {
        self.is_banned(&BanKey::for_addr(addr), now)
    }

    /// Drops expired bans; returns how many remain.
    pub fn expire(&mut self, now: Mono) -> usize {
        let expired: Vec<BanKey> = self
            .until
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in expired {
            self.until.remove(&key);
            self.changes.push(BookChange::RemoveBan(key));
        }
        self.until.len()
    }

    /// Every ban in force with its expiry.
    pub fn iter(&self) -> impl Iterator<Item = (&BanKey, &Mono)> {
        self.until.iter()
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(1)
    }

    #[test]
    fn ban_lists_are_bounded() {
        let mut bans = BanList::default();
        let start = Time::new(Mono::ZERO, 1_000_000);
        for index in 0..MAX_BANS as u64 + 100 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&index.to_le_bytes());
            // Later bans end later, so the first ones are let go.
            bans.ban(
                BanKey::Node(PublicKey(key)),
                start,
                Duration::from_secs(60 + index),
            );
        }
        assert_eq!(bans.len(), MAX_BANS);
        assert_eq!(bans.take_evicted(), 100);
        let mut first = [0u8; 32];
        first[..8].copy_from_slice(&0u64.to_le_bytes());
        assert!(!bans.is_banned(&BanKey::Node(PublicKey(first)), start.mono));
        let mut last = [0u8; 32];
        last[..8].copy_from_slice(&(MAX_BANS as u64 + 99).to_le_bytes());
        assert!(bans.is_banned(&BanKey::Node(PublicKey(last)), start.mono));
        let removed = bans
            .take_changes()
            .iter()
            .filter(|change| matches!(change, BookChange::RemoveBan(_)))
            .count();
        assert_eq!(removed, 100, "every eviction is persisted");
    }

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        let mut rng = rng();
        for failures in 0..20 {
            let delay = backoff(failures, &mut rng);
            assert!(delay >= Duration::from_secs(1));
            assert!(delay <= Duration::from_secs(60));
        }
        assert!(backoff(10, &mut rng) >= Duration::from_secs(45));
    }

    #[test]
    fn failing_addresses_age_out_and_bans_expire() {
        let mut rng = rng();
        let mut book = AddrBook::default();
        let addr: SocketAddr = "10.0.0.1:7070".parse().expect("literal");
        book.learned(
            &PeerAddr {
                addr,
                node_id: None,
                last_seen_ms: 1_000,
                connected: false,
            },
            2_000,
        );
        book.learned(
            &PeerAddr {
                addr: "0.0.0.0:7070".parse().expect("literal"),
                node_id: None,
                last_seen_ms: 1_000,
                connected: false,
            },
            2_000,
        );
        assert_eq!(book.len(), 1);
        for _ in 0..MAX_FAILURES {
            book.failed(&addr, 2_000, &mut rng);
        }
        assert!(book.candidates(2_000, &mut rng, |_, _| false).is_empty());
        assert_eq!(book.age_out(2_000), 0);
        assert_eq!(
            book.age_out(2_000 + FAILED_AGE_OUT.as_millis() as u64 + 1),
            1
        );
        assert_eq!(
            book.take_changes().last(),
            Some(&BookChange::RemoveAddr(addr))
        );

        let mut bans = BanList::default();
        let now = Time::new(Mono::ZERO, 0);
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("literal");
        bans.ban(BanKey::for_addr(local), now, Duration::from_secs(5));
        assert!(bans.is_addr_banned(local, now.mono));
        assert!(!bans.is_addr_banned("127.0.0.1:5001".parse().expect("literal"), now.mono));
        assert_eq!(bans.expire(now.mono + Duration::from_secs(6)), 0);
    }

    #[test]
    fn restored_bans_hold_until_their_wall_clock_expiry() {
        let node = BanKey::Node(PublicKey([7; 32]));
        let addr = BanKey::for_addr("10.0.0.1:7070".parse().expect("literal"));
        let mut bans = BanList::default();
        bans.ban(
            node,
            Time::new(Mono::ZERO, 1_000_000),
            Duration::from_secs(60),
        );
        bans.ban(
            addr,
            Time::new(Mono::ZERO, 1_000_000),
            Duration::from_secs(5),
        );
        let stored: Vec<(BanKey, u64)> = bans
            .take_changes()
            .into_iter()
            .filter_map(|change| match change {
                BookChange::PutBan { key, until_ms, .. } => Some((key, until_ms)),
                _ => None,
            })
            .collect();
        // Restarted 10 s later (a new monotonic epoch): the node ban holds
        // for its remaining 50 s, the address ban is over and its record
        // is deleted.
        let later = Time::new(Mono(Duration::from_secs(3)), 1_010_000);
        let mut reloaded = BanList::restore(stored, later);
        assert!(reloaded.is_banned(&node, later.mono));
        assert!(reloaded.is_banned(&node, later.mono + Duration::from_secs(49)));
        assert!(!reloaded.is_banned(&node, later.mono + Duration::from_secs(51)));
        assert!(!reloaded.is_banned(&addr, later.mono));
        assert_eq!(reloaded.take_changes(), vec![BookChange::RemoveBan(addr)]);
    }

    #[test]
    fn candidate_order_depends_on_the_seed_within_a_recency_group() {
        let mut book = AddrBook::default();
        for port in 7000..7020 {
            let addr = SocketAddr::from(([10, 0, 0, 1], port));
            book.connected(addr, PublicKey([port as u8; 32]), 10_000_000);
        }
        let stale = SocketAddr::from(([10, 0, 0, 2], 7000));
        book.connected(stale, PublicKey([1; 32]), 1_000);
        let order = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            book.candidates(10_000_000, &mut rng, |_, _| false)
        };
        assert_eq!(order(1), order(1));
        assert_ne!(order(1), order(2));
        assert_eq!(order(1).last(), Some(&stale), "the stale address goes last");
    }

    #[test]
    fn tried_addresses_are_still_tried_after_a_restart() {
        let mut book = AddrBook::restore(Vec::new(), [3; 32]);
        let tried: SocketAddr = "10.0.0.1:7070".parse().expect("literal");
        let learned: SocketAddr = "10.0.0.2:7070".parse().expect("literal");
        book.connected(tried, PublicKey([1; 32]), 5_000_000);
        book.learned(
            &PeerAddr {
                addr: learned,
                node_id: None,
                last_seen_ms: 1_000,
                connected: false,
            },
            5_000_000,
        );
        // What the driver would store and read back, through the encoding.
        let mut stored = BTreeMap::new();
        for change in book.take_changes() {
            match change {
                BookChange::PutAddr(addr, entry) => {
                    stored.insert(addr, ledger::encoding::encode(&entry));
                }
                BookChange::RemoveAddr(addr) => {
                    stored.remove(&addr);
                }
                _ => {}
            }
        }
        let records = stored.iter().map(|(addr, bytes)| {
            let entry = AddrEntry::decode_record(bytes).expect("a record we wrote");
            (*addr, entry)
        });

        let restarted = AddrBook::restore(records, [3; 32]);

        assert!(restarted.is_tried(&tried));
        assert!(!restarted.is_tried(&learned));
        assert_eq!((restarted.len(), restarted.n_tried()), (2, 1));
    }

    #[test]
    fn a_record_written_before_tried_was_persisted_reads_as_learned() {
        #[derive(Encode)]
        struct Legacy {
            node_id: Option<PublicKey>,
            last_seen_ms: u64,
            failures: u32,
            retry_after_ms: u64,
        }
        let bytes = ledger::encoding::encode(&Legacy {
            node_id: Some(PublicKey([2; 32])),
            last_seen_ms: 7,
            failures: 1,
            retry_after_ms: 9,
        });

        let entry = AddrEntry::decode_record(&bytes).expect("legacy layout");

        assert_eq!(entry.node_id, Some(PublicKey([2; 32])));
        assert_eq!((entry.last_seen_ms, entry.failures), (7, 1));
        assert!(!entry.tried);
        assert!(AddrEntry::decode_record(&bytes[1..]).is_err());
    }
}
