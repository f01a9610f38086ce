//! Announce-then-fetch gossip bookkeeping: the keyed fingerprints that
//! name items in the known-inventory table (`known`), and which objects we
//! have asked for, from whom, since when, and who else offered them, so a
//! request that times out or comes back `NotFound` is asked again from
//! another peer, and no object is ever fetched from two peers at once.
//! `NetworkState` owns one `Requests`. Requests are kept in ordered maps,
//! so expiring them walks the same order for the same inputs.

use super::time::Mono;
use super::ConnId;
use crate::p2p::message::InvItem;
use siphasher::sip::SipHasher13;
use std::collections::BTreeMap;
use std::time::Duration;

/// Items the known-inventory table remembers, with which peers have each:
/// about 640 KB per node when full (32,768 cells of a fingerprint and a
/// mask of 64 peers, and the order), 256 KB more per further 64 peers.
pub const KNOWN_INVENTORY_CAPACITY: usize = 16_384;
/// Most outstanding requests to one peer; further announcements from it are
/// ignored until it answers (an announcer cannot make us queue unboundedly).
pub const MAX_REQUESTS_PER_PEER: usize = 2_000;
/// Most outstanding requests overall.
pub const MAX_REQUESTS: usize = 50_000;
/// Other announcers remembered per item, to re-ask after a timeout.
const MAX_ALTERNATES: usize = 8;

/// The secret key of a node's inventory fingerprints (see
/// `known::KnownByPeers`): drawn once per core, so no peer can make two items
/// share a fingerprint.
#[derive(Clone, Copy, Debug)]
pub struct InventoryKey {
    k0: u64,
    k1: u64,
}

impl InventoryKey {
    pub fn new(k0: u64, k1: u64) -> InventoryKey {
        InventoryKey { k0, k1 }
    }

    /// The 64-bit fingerprint of `item`: keyed SipHash-1-3 of its kind and
    /// hash.
    pub fn fingerprint(&self, item: &InvItem) -> u64 {
        let kind: u8 = match item {
            InvItem::Tx(_) => 0,
            InvItem::Block(_) => 1,
            InvItem::CompactBlock(_) => 2,
        };
        let mut bytes = [0u8; 33];
        bytes[0] = kind;
        bytes[1..].copy_from_slice(&item.hash().0);
        SipHasher13::new_with_keys(self.k0, self.k1).hash(&bytes)
    }
}

/// One outstanding request.
#[derive(Debug)]
struct Request {
    peer: ConnId,
    sent_at: Mono,
    /// Other peers that announced it, in announcement order.
    alternates: Vec<ConnId>,
    /// The object arrived and is being validated: not asked again, but kept
    /// so late announcements do not trigger another fetch.
    received: bool,
    /// Requested by the block sync, which has its own stall handling.
    for_sync: bool,
}

/// What to do about an announced item.
#[derive(Debug, PartialEq, Eq)]
pub enum Announced {
    /// Ask this peer for it now.
    Fetch,
    /// Already being fetched (the announcer is kept as an alternate).
    Ignore,
    /// Not fetched: this peer has `MAX_REQUESTS_PER_PEER` outstanding.
    OverPeerCap,
    /// Not fetched: `MAX_REQUESTS` are outstanding.
    OverTotalCap,
}

impl Announced {
    /// The metric label of an announcement the caps made us pass over.
    pub fn over_cap(&self) -> Option<&'static str> {
        match self {
            Announced::OverPeerCap => Some("peer_cap"),
            Announced::OverTotalCap => Some("total_cap"),
            Announced::Fetch | Announced::Ignore => None,
        }
    }
}

/// Outstanding `GetData` requests.
#[derive(Default)]
pub struct Requests {
    items: BTreeMap<InvItem, Request>,
    per_peer: BTreeMap<ConnId, usize>,
}

impl Requests {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_tracked(&self, item: &InvItem) -> bool {
        self.items.contains_key(item)
    }

    pub fn outstanding_for(&self, peer: ConnId) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    /// Every peer with requests outstanding, and how many: the few that
    /// count towards a total, without a lookup for every connection.
    pub fn outstanding_by_peer(&self) -> impl Iterator<Item = (ConnId, usize)> + '_ {
        self.per_peer.iter().map(|(peer, count)| (*peer, *count))
    }

    fn add_to_peer(&mut self, peer: ConnId) {
        *self.per_peer.entry(peer).or_default() += 1;
    }

    fn remove_from_peer(&mut self, peer: ConnId) {
        if let Some(count) = self.per_peer.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// `peer` announced `item`, which we lack.
    pub fn announced(&mut self, item: InvItem, peer: ConnId, now: Mono) -> Announced {
        if let Some(request) = self.items.get_mut(&item) {
            if request.peer != peer
                && !request.alternates.contains(&peer)
                && request.alternates.len() < MAX_ALTERNATES
            {
                request.alternates.push(peer);
            }
            return Announced::Ignore;
        }
        if self.items.len() >= MAX_REQUESTS {
            return Announced::OverTotalCap;
        }
        if self.outstanding_for(peer) >= MAX_REQUESTS_PER_PEER {
            return Announced::OverPeerCap;
        }
        self.insert(item, peer, now, false);
        Announced::Fetch
    }

    /// Records a request made outside announcements (block sync).
    pub fn insert(&mut self, item: InvItem, peer: ConnId, now: Mono, for_sync: bool) {
        if let Some(old) = self.items.insert(
            item,
            Request {
                peer,
                sent_at: now,
                alternates: Vec::new(),
                received: false,
                for_sync,
            },
        ) {
            if !old.received {
                self.remove_from_peer(old.peer);
            }
        }
        self.add_to_peer(peer);
    }

    /// The object arrived from `peer`. Returns whether we had asked anyone
    /// for it (unrequested objects are still validated, but an unrequested
    /// flood is dropped earlier by the caller).
    pub fn received(&mut self, item: &InvItem, now: Mono) -> bool {
        match self.items.get_mut(item) {
            Some(request) if !request.received => {
                request.received = true;
                request.sent_at = now;
                let peer = request.peer;
                self.remove_from_peer(peer);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Asks `peer` for `item` again as a fresh request (a compact block
    /// that could not be rebuilt is fetched whole), keeping the other
    /// peers that announced it for when this one fails too.
    pub fn again(&mut self, item: InvItem, peer: ConnId, now: Mono) {
        match self.items.get_mut(&item) {
            Some(request) => {
                let was_outstanding = !request.received;
                let old_peer = request.peer;
                request.peer = peer;
                request.sent_at = now;
                request.received = false;
                request.alternates.retain(|other| *other != peer);
                if was_outstanding {
                    self.remove_from_peer(old_peer);
                }
                self.add_to_peer(peer);
            }
            None => self.insert(item, peer, now, false),
        }
    }

    /// Moves `item` to the next peer that announced it (its sender went
    /// away before a compact block could be finished); forgets it when
    /// nobody else did.
    pub fn ask_next(
        &mut self,
        item: InvItem,
        now: Mono,
        usable: &impl Fn(ConnId) -> bool,
    ) -> Option<ConnId> {
        let request = self.items.get_mut(&item)?;
        if request.received {
            // Counted against its peer again, as `reassign` expects.
            request.received = false;
            let peer = request.peer;
            self.add_to_peer(peer);
        }
        self.reassign(item, now, usable)
    }

    /// Validation finished: forget the item.
    pub fn done(&mut self, item: &InvItem) {
        if let Some(request) = self.items.remove(item) {
            if !request.received {
                self.remove_from_peer(request.peer);
            }
        }
    }

    /// Moves a request to its next alternate; returns the peer to ask, or
    /// forgets the item when nobody else offered it.
    fn reassign(
        &mut self,
        item: InvItem,
        now: Mono,
        usable: &impl Fn(ConnId) -> bool,
    ) -> Option<ConnId> {
        let request = self.items.get_mut(&item)?;
        let old_peer = request.peer;
        let next = loop {
            if request.alternates.is_empty() {
                break None;
            }
            let candidate = request.alternates.remove(0);
            if usable(candidate) {
                break Some(candidate);
            }
        };
        match next {
            Some(peer) => {
                request.peer = peer;
                request.sent_at = now;
                self.remove_from_peer(old_peer);
                self.add_to_peer(peer);
                Some(peer)
            }
            None => {
                self.done(&item);
                None
            }
        }
    }

    /// `peer` answered `NotFound` for `item`.
    pub fn not_found(
        &mut self,
        item: InvItem,
        peer: ConnId,
        now: Mono,
        usable: &impl Fn(ConnId) -> bool,
    ) -> Option<ConnId> {
        match self.items.get(&item) {
            Some(request) if request.peer == peer && !request.received => {
                self.reassign(item, now, usable)
            }
            _ => None,
        }
    }

    /// Requests older than `timeout` (and received items stuck in validation
    /// for much longer) are reassigned or dropped. Returns the new requests
    /// to send, and the sync requests that timed out (the sync decides).
    pub fn expire(
        &mut self,
        now: Mono,
        timeout: Duration,
        usable: &impl Fn(ConnId) -> bool,
    ) -> (Vec<(InvItem, ConnId)>, Vec<InvItem>) {
        let mut expired = Vec::new();
        let mut stuck = Vec::new();
        let mut sync_expired = Vec::new();
        for (item, request) in &self.items {
            let age = now.saturating_duration_since(request.sent_at);
            if request.received {
                if age > timeout * 30 {
                    stuck.push(*item);
                }
            } else if age > timeout {
                if request.for_sync {
                    sync_expired.push(*item);
                } else {
                    expired.push(*item);
                }
            }
        }
        for item in stuck {
            self.done(&item);
        }
        let mut again = Vec::new();
        for item in expired {
            if let Some(peer) = self.reassign(item, now, usable) {
                again.push((item, peer));
            }
        }
        (again, sync_expired)
    }

    /// How many of each peer's announcement requests (not the sync's)
    /// are older than `timeout` at `now`: those `expire` will move away.
    pub fn expiring_by_peer(&self, now: Mono, timeout: Duration) -> BTreeMap<ConnId, usize> {
        let mut by_peer = BTreeMap::new();
        for request in self.items.values() {
            if !request.received
                && !request.for_sync
                && now.saturating_duration_since(request.sent_at) > timeout
            {
                *by_peer.entry(request.peer).or_default() += 1;
            }
        }
        by_peer
    }

    /// A peer disconnected: its requests go to alternates or are dropped.
    pub fn peer_gone(
        &mut self,
        peer: ConnId,
        now: Mono,
        usable: &impl Fn(ConnId) -> bool,
    ) -> Vec<(InvItem, ConnId)> {
        let mine: Vec<InvItem> = self
            .items
            .iter()
            .filter(|(_, request)| request.peer == peer && !request.received)
            .map(|(item, _)| *item)
            .collect();
        for request in self.items.values_mut() {
            request.alternates.retain(|other| *other != peer);
        }
        let mut again = Vec::new();
        for item in mine {
            let for_sync = self
                .items
                .get(&item)
                .is_some_and(|request| request.for_sync);
            if for_sync {
                self.done(&item);
            } else if let Some(next) = self.reassign(item, now, usable) {
                again.push((item, next));
            }
        }
        self.per_peer.remove(&peer);
        again
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{Hash256, TxId};

    const fn peer(n: u64) -> ConnId {
        ConnId(n)
    }

    fn tx(n: u8) -> InvItem {
        InvItem::Tx(TxId(Hash256::digest(&[n])))
    }

    #[test]
    fn one_fetch_per_item_and_reask_on_timeout() {
        let now = Mono::ZERO;
        let timeout = Duration::from_secs(2);
        let mut requests = Requests::default();
        assert_eq!(requests.announced(tx(1), peer(1), now), Announced::Fetch);
        assert_eq!(requests.announced(tx(1), peer(2), now), Announced::Ignore);
        assert_eq!(requests.outstanding_for(peer(1)), 1);
        let all = |_| true;
        let (again, _) = requests.expire(now + Duration::from_secs(3), timeout, &all);
        assert_eq!(again, vec![(tx(1), peer(2))]);
        assert_eq!(requests.outstanding_for(peer(1)), 0);
        assert_eq!(requests.outstanding_for(peer(2)), 1);
        // Peer 2 times out too and nobody else offered it: forgotten.
        let (again, _) = requests.expire(now + Duration::from_secs(6), timeout, &all);
        assert!(again.is_empty());
        assert!(requests.is_empty());
    }

    #[test]
    fn not_found_and_disconnect_move_requests() {
        let now = Mono::ZERO;
        let mut requests = Requests::default();
        requests.announced(tx(1), peer(1), now);
        requests.announced(tx(1), peer(2), now);
        requests.announced(tx(2), peer(1), now);
        requests.announced(tx(2), peer(3), now);
        let all = |_| true;
        assert_eq!(requests.not_found(tx(1), peer(1), now, &all), Some(peer(2)));
        let again = requests.peer_gone(peer(1), now, &all);
        assert_eq!(again, vec![(tx(2), peer(3))]);
        assert!(requests.received(&tx(2), now));
        assert_eq!(requests.outstanding_for(peer(3)), 0);
        requests.done(&tx(2));
        assert_eq!(requests.len(), 1);
    }

    #[test]
    fn a_flood_is_capped_per_peer() {
        let now = Mono::ZERO;
        let mut requests = Requests::default();
        let mut fetched = 0;
        for n in 0..(MAX_REQUESTS_PER_PEER + 500) {
            let item = InvItem::Tx(TxId(Hash256::digest(&(n as u64).to_le_bytes())));
            if requests.announced(item, peer(9), now) == Announced::Fetch {
                fetched += 1;
            }
        }
        assert_eq!(fetched, MAX_REQUESTS_PER_PEER);
    }
}
