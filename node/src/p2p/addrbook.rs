//! The address book and the ban list. The book holds dialable listen
//! addresses (learned in handshakes or from `Addr` messages, never a
//! connection's ephemeral source port) with last-seen times and failure
//! counts, persisted in a sled tree so a restarted node finds its network
//! again; addresses that keep failing age out. Bans are by node id and by
//! address: by IP for public addresses, but by exact socket address on
//! loopback, where every local node shares one IP and banning it would cut
//! off honest neighbours too. Bans persist in their own tree with their
//! wall-clock expiry, so a restart does not pardon anyone.

use super::message::PeerAddr;
use ledger::chain::AuxTree;
use ledger::encoding::{self, Decode, Encode};
use ledger::PublicKey;
use rand::Rng;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Most addresses remembered; the least recently seen go first.
pub const MAX_BOOK_ENTRIES: usize = 10_000;
/// An address that failed this many dials in a row and has not worked for
/// `FAILED_AGE_OUT` is forgotten.
const MAX_FAILURES: u32 = 5;
const FAILED_AGE_OUT: Duration = Duration::from_secs(60 * 60);
/// Any address not seen working for this long is forgotten.
const STALE_AGE_OUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Reconnect delay after `failures` failed attempts: exponential from 1 s to
/// 60 s, jittered down by up to a quarter so that nodes restarted together
/// do not dial in lockstep (never below 1 s).
pub fn backoff(failures: u32) -> Duration {
    let base_secs = 1u64 << failures.min(6);
    let base = Duration::from_secs(base_secs.min(60));
    let factor = rand::thread_rng().gen_range(0.75..=1.0);
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
}

/// Dialable addresses, persisted when a store is given.
pub struct AddrBook {
    entries: HashMap<SocketAddr, AddrEntry>,
    store: Option<AuxTree>,
}

fn key_of(addr: &SocketAddr) -> Vec<u8> {
    encoding::encode(addr)
}

impl AddrBook {
    /// Loads what the store holds; undecodable records are dropped, never
    /// fatal (the book is only a cache of the network).
    pub fn load(store: Option<AuxTree>) -> AddrBook {
        let mut entries = HashMap::new();
        if let Some(tree) = &store {
            match tree.iter() {
                Ok(records) => {
                    for (key, value) in records {
                        match (
                            encoding::decode_with_limit::<SocketAddr>(&key, 64),
                            encoding::decode_with_limit::<AddrEntry>(&value, 256),
                        ) {
                            (Ok(addr), Ok(entry)) => {
                                entries.insert(addr, entry);
                            }
                            _ => {
                                let _ = tree.remove(&key);
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the address book; starting empty")
                }
            }
        }
        AddrBook { entries, store }
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

    fn persist(&self, addr: &SocketAddr) {
        let Some(tree) = &self.store else { return };
        let result = match self.entries.get(addr) {
            Some(entry) => tree
                .insert(&key_of(addr), &encoding::encode(entry))
                .map(|_| ()),
            None => tree.remove(&key_of(addr)).map(|_| ()),
        };
        if let Err(error) = result {
            tracing::warn!(%addr, %error, "cannot store address book entry");
        }
    }

    fn make_room(&mut self) {
        while self.entries.len() >= MAX_BOOK_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_seen_ms)
                .map(|(addr, _)| *addr);
            match oldest {
                Some(addr) => self.remove(&addr),
                None => break,
            }
        }
    }

    /// An address a peer told us about. Reported times are capped at now,
    /// and never overwrite what our own connections taught us.
    pub fn learned(&mut self, peer_addr: &PeerAddr, now_ms: u64) {
        let addr = peer_addr.addr;
        if !is_dialable(&addr) {
            return;
        }
        let last_seen_ms = peer_addr.last_seen_ms.min(now_ms);
        if let Some(entry) = self.entries.get_mut(&addr) {
            if entry.node_id.is_none() && peer_addr.node_id.is_some() {
                entry.node_id = peer_addr.node_id;
                self.persist(&addr);
            }
            return;
        }
        self.make_room();
        self.entries.insert(
            addr,
            AddrEntry {
                node_id: peer_addr.node_id,
                last_seen_ms,
                failures: 0,
                retry_after_ms: 0,
            },
        );
        self.persist(&addr);
    }

    /// A handshake with `node_id` at `addr` succeeded.
    pub fn connected(&mut self, addr: SocketAddr, node_id: PublicKey, now_ms: u64) {
        if !is_dialable(&addr) {
            return;
        }
        if !self.entries.contains_key(&addr) {
            self.make_room();
        }
        self.entries.insert(
            addr,
            AddrEntry {
                node_id: Some(node_id),
                last_seen_ms: now_ms,
                failures: 0,
                retry_after_ms: 0,
            },
        );
        self.persist(&addr);
    }

    /// We are about to dial `addr`; it is not tried again before its backoff.
    pub fn attempted(&mut self, addr: &SocketAddr, now_ms: u64) {
        if let Some(entry) = self.entries.get_mut(addr) {
            entry.retry_after_ms =
                now_ms.saturating_add(backoff(entry.failures).as_millis() as u64);
        }
    }

    /// A dial or handshake to `addr` failed.
    pub fn failed(&mut self, addr: &SocketAddr, now_ms: u64) {
        if let Some(entry) = self.entries.get_mut(addr) {
            entry.failures = entry.failures.saturating_add(1);
            entry.retry_after_ms =
                now_ms.saturating_add(backoff(entry.failures).as_millis() as u64);
            self.persist(addr);
        }
    }

    pub fn remove(&mut self, addr: &SocketAddr) {
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

    /// Addresses worth dialing now, most recently seen first.
    pub fn candidates(
        &self,
        now_ms: u64,
        skip: impl Fn(&SocketAddr, &AddrEntry) -> bool,
    ) -> Vec<SocketAddr> {
        let mut ready: Vec<(&SocketAddr, &AddrEntry)> = self
            .entries
            .iter()
            .filter(|(addr, entry)| entry.retry_after_ms <= now_ms && !skip(addr, entry))
            .collect();
        ready.sort_by_key(|(_, entry)| std::cmp::Reverse(entry.last_seen_ms));
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
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

/// Bans in force, each until an instant, mirrored (key -> expiry in Unix
/// ms) into a sled tree when one is given.
#[derive(Default)]
pub struct BanList {
    until: HashMap<BanKey, Instant>,
    store: Option<AuxTree>,
}

impl BanList {
    /// Loads the bans still in force from `store`; expired and undecodable
    /// records are deleted (a lost ban is a risk, never an outage).
    pub fn load(store: Option<AuxTree>, now: Instant, now_ms: u64) -> BanList {
        let mut until = HashMap::new();
        if let Some(tree) = &store {
            match tree.iter() {
                Ok(records) => {
                    for (key, value) in records {
                        let decoded = encoding::decode::<BanKey>(&key)
                            .ok()
                            .zip(encoding::decode::<u64>(&value).ok());
                        match decoded {
                            Some((ban, expiry_ms)) if expiry_ms > now_ms => {
                                until.insert(ban, now + Duration::from_millis(expiry_ms - now_ms));
                            }
                            Some(_) => {
                                let _ = tree.remove(&key);
                            }
                            None => {
                                tracing::warn!(
                                    key = %hex::encode(&key),
                                    "dropping an undecodable ban record"
                                );
                                let _ = tree.remove(&key);
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the ban list; starting without it")
                }
            }
        }
        if !until.is_empty() {
            tracing::info!(bans = until.len(), "bans still in force loaded");
        }
        BanList { until, store }
    }

    /// Bans `key` for `duration` from `now` (`now_ms` on the wall clock).
    pub fn ban(&mut self, key: BanKey, now: Instant, now_ms: u64, duration: Duration) {
        self.until.insert(key, now + duration);
        if let Some(tree) = &self.store {
            let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            let expiry_ms = now_ms.saturating_add(millis);
            if let Err(error) = tree.insert(&encoding::encode(&key), &encoding::encode(&expiry_ms))
            {
                tracing::warn!(%error, "cannot persist a ban; it holds until restart");
            }
        }
    }

    pub fn is_banned(&self, key: &BanKey, now: Instant) -> bool {
        self.until.get(key).is_some_and(|until| *until > now)
    }

    pub fn is_addr_banned(&self, addr: SocketAddr, now: Instant) -> bool {
        self.is_banned(&BanKey::for_addr(addr), now)
    }

    /// Drops expired bans; returns how many remain.
    pub fn expire(&mut self, now: Instant) -> usize {
        let store = &self.store;
        self.until.retain(|key, until| {
            let keep = *until > now;
            if !keep {
                if let Some(tree) = store {
                    let _ = tree.remove(&encoding::encode(key));
                }
            }
            keep
        });
        self.until.len()
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

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        for failures in 0..20 {
            let delay = backoff(failures);
            assert!(delay >= Duration::from_secs(1));
            assert!(delay <= Duration::from_secs(60));
        }
        assert!(backoff(10) >= Duration::from_secs(45));
    }

    #[test]
    fn failing_addresses_age_out_and_bans_expire() {
        let mut book = AddrBook::load(None);
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
            book.failed(&addr, 2_000);
        }
        assert!(book.candidates(2_000, |_, _| false).is_empty());
        assert_eq!(book.age_out(2_000), 0);
        assert_eq!(
            book.age_out(2_000 + FAILED_AGE_OUT.as_millis() as u64 + 1),
            1
        );

        let mut bans = BanList::default();
        let now = Instant::now();
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("literal");
        bans.ban(BanKey::for_addr(local), now, 0, Duration::from_secs(5));
        assert!(bans.is_addr_banned(local, now));
        assert!(!bans.is_addr_banned("127.0.0.1:5001".parse().expect("literal"), now));
        assert_eq!(bans.expire(now + Duration::from_secs(6)), 0);
    }

    #[test]
    fn bans_survive_a_restart_until_they_expire() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = ledger::ChainSpec::builtin("regtest").expect("built-in");
        let chain = ledger::chain::Chain::open(spec, dir.path()).expect("opens");
        let tree = chain.aux_tree("bans").expect("tree");
        let (now, now_ms) = (Instant::now(), 1_000_000);
        let node = BanKey::Node(PublicKey([7; 32]));
        let addr = BanKey::for_addr("10.0.0.1:7070".parse().expect("literal"));
        let mut bans = BanList::load(Some(tree.clone()), now, now_ms);
        bans.ban(node, now, now_ms, Duration::from_secs(60));
        bans.ban(addr, now, now_ms, Duration::from_secs(5));

        // Restarted 10 s later: the node ban holds, the address ban is over
        // and its record is gone.
        let later = Instant::now();
        let reloaded = BanList::load(Some(tree.clone()), later, now_ms + 10_000);
        assert!(reloaded.is_banned(&node, later));
        assert!(reloaded.is_banned(&node, later + Duration::from_secs(49)));
        assert!(!reloaded.is_banned(&node, later + Duration::from_secs(51)));
        assert!(!reloaded.is_banned(&addr, later));
        assert_eq!(tree.iter().expect("reads").len(), 1);
    }
}
