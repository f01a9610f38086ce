//! Inbound slots against an attacker that opens many connections. A
//! connection still in its handshake takes one of a few handshake slots
//! (`MAX_HANDSHAKING`), not a peer slot; outside loopback, one network
//! group holds at most `MAX_INBOUND_PER_GROUP` inbound connections; and
//! when every peer slot is taken, an authenticated newcomer gets in by
//! evicting one inbound peer that nothing protects. Protected are the
//! peers useful to us in ways an attacker must pay for: those that
//! delivered the blocks and txs we took most recently, those with the
//! lowest ping, one in each of the rarest network groups, then the
//! longest-connected half of what is left. The victim is the youngest peer
//! of the group with most remaining candidates, so many cheap connections
//! from one place evict each other first.

use super::netgroup::NetGroup;
use super::time::Mono;
use super::{Action, ChainView, CloseReason, ConnId, NetworkState};
use core::net::SocketAddr;
use ledger::json::Direction;
use std::collections::{BTreeMap, BTreeSet};

/// Inbound connections in their handshake at once.
pub const MAX_HANDSHAKING: usize = 8;
/// Inbound connections from one network group (not applied on loopback,
/// where a whole local testnet shares one IP).
pub const MAX_INBOUND_PER_GROUP: usize = 4;
const PROTECT_BY_BLOCKS: usize = 4;
const PROTECT_BY_TXS: usize = 4;
const PROTECT_BY_PING: usize = 8;
const PROTECT_BY_GROUP: usize = 4;

/// What eviction weighs about one inbound peer.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub conn: ConnId,
    pub group: NetGroup,
    pub connected_at: Mono,
    pub ping_ms: Option<u64>,
    pub last_block_at: Option<Mono>,
    pub last_tx_at: Option<Mono>,
}

/// Removes from `candidates` up to `n` of those that sort first by `key`
/// (a `None` key never protects).
fn protect<K: Ord>(
    candidates: &mut Vec<Candidate>,
    n: usize,
    key: impl Fn(&Candidate) -> Option<K>,
) {
    let mut keyed: Vec<(K, ConnId)> = candidates
        .iter()
        .filter_map(|c| key(c).map(|k| (k, c.conn)))
        .collect();
    keyed.sort();
    let protected: BTreeSet<ConnId> = keyed.into_iter().take(n).map(|(_, id)| id).collect();
    candidates.retain(|c| !protected.contains(&c.conn));
}

/// The peer to evict, if any is left unprotected.
pub fn select_victim(mut candidates: Vec<Candidate>) -> Option<ConnId> {
    candidates.sort_by_key(|c| c.conn);
    protect(&mut candidates, PROTECT_BY_BLOCKS, |c| {
        c.last_block_at.map(std::cmp::Reverse)
    });
    protect(&mut candidates, PROTECT_BY_TXS, |c| {
        c.last_tx_at.map(std::cmp::Reverse)
    });
    protect(&mut candidates, PROTECT_BY_PING, |c| c.ping_ms);
    // One peer (the longest connected) in each of the rarest groups.
    let mut per_group: BTreeMap<NetGroup, usize> = BTreeMap::new();
    for c in &candidates {
        *per_group.entry(c.group).or_default() += 1;
    }
    let mut oldest_of_group: BTreeMap<NetGroup, (Mono, ConnId)> = BTreeMap::new();
    for c in &candidates {
        let entry = oldest_of_group
            .entry(c.group)
            .or_insert((c.connected_at, c.conn));
        *entry = (*entry).min((c.connected_at, c.conn));
    }
    let rare: BTreeMap<ConnId, (usize, ConnId)> = oldest_of_group
        .iter()
        .map(|(group, (_, conn))| (*conn, (per_group[group], *conn)))
        .collect();
    protect(&mut candidates, PROTECT_BY_GROUP, |c| {
        rare.get(&c.conn).copied()
    });
    let half = candidates.len() / 2;
    protect(&mut candidates, half, |c| Some((c.connected_at, c.conn)));
    if candidates.is_empty() {
        return None;
    }
    let mut per_group: BTreeMap<NetGroup, Vec<&Candidate>> = BTreeMap::new();
    for c in &candidates {
        per_group.entry(c.group).or_default().push(c);
    }
    let biggest = per_group.values().max_by_key(|members| {
        let youngest = members.iter().map(|c| (c.connected_at, c.conn)).max();
        (members.len(), youngest)
    })?;
    biggest
        .iter()
        .max_by_key(|c| (c.connected_at, c.conn))
        .map(|c| c.conn)
}

impl<V: ChainView> NetworkState<V> {
    /// Whether a new inbound connection from `remote` may start its
    /// handshake; refuses (counted and logged with the rule) when not.
    pub(super) fn inbound_admissible(&mut self, remote: SocketAddr) -> bool {
        let group = NetGroup::of(remote.ip());
        let (mut handshaking, mut same_group) = (0, 0);
        for conn in self.conns.values() {
            if conn.direction != Direction::Inbound {
                continue;
            }
            if conn.peer.is_none() {
                handshaking += 1;
            }
            if conn.remote.map(|r| NetGroup::of(r.ip())) == Some(group) {
                same_group += 1;
            }
        }
        let rule = if self.config.max_inbound == 0 {
            Some("inbound_full")
        } else if handshaking >= MAX_HANDSHAKING {
            Some("handshake_full")
        } else if !group.is_loopback() && same_group >= MAX_INBOUND_PER_GROUP {
            Some("group_full")
        } else {
            None
        };
        match rule {
            Some(rule) => {
                tracing::debug!(peer = %remote, rule, handshaking, same_group, "inbound connection refused");
                self.metric_inc("p2p_disconnects_total", ("reason", rule));
                self.push(Action::Refuse { remote });
                false
            }
            None => true,
        }
    }

    /// An inbound peer `newcomer` finished its handshake: when the peer
    /// slots are full, evict one unprotected inbound peer for it, or
    /// refuse it when every one is protected. Returns whether it stays.
    pub(super) fn make_room_for_inbound(&mut self, newcomer: ConnId) -> bool {
        let mut candidates = Vec::new();
        let mut ready_inbound = 0;
        for (id, conn) in &self.conns {
            let (Some(peer), Some(remote)) = (&conn.peer, conn.remote) else {
                continue;
            };
            if conn.direction != Direction::Inbound || *id == newcomer {
                continue;
            }
            ready_inbound += 1;
            candidates.push(Candidate {
                conn: *id,
                group: NetGroup::of(remote.ip()),
                connected_at: peer.connected_at,
                ping_ms: peer.ping_ms,
                last_block_at: peer.behaviour.last_block_at,
                last_tx_at: peer.behaviour.last_tx_at,
            });
        }
        if ready_inbound < self.config.max_inbound {
            return true;
        }
        let newcomer_addr = self.conns.get(&newcomer).and_then(|conn| conn.remote);
        match select_victim(candidates) {
            Some(victim) => {
                let victim_addr = self.conns.get(&victim).and_then(|conn| conn.remote);
                tracing::info!(peer = ?victim_addr, conn = %victim, newcomer = ?newcomer_addr, rule = "inbound_eviction", "inbound slots full: evicted an unprotected peer");
                self.metric_inc("p2p_evictions_total", ("rule", "inbound"));
                self.close(victim, CloseReason::Refused("evicted"));
                true
            }
            None => {
                tracing::info!(peer = ?newcomer_addr, rule = "inbound_full", "inbound slots full and every peer protected: newcomer refused");
                self.close(newcomer, CloseReason::Refused("inbound_full"));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn candidate(n: u64, ip: [u8; 4]) -> Candidate {
        Candidate {
            conn: ConnId(n),
            group: NetGroup::of(core::net::IpAddr::from(ip)),
            connected_at: Mono(Duration::from_secs(n)),
            ping_ms: None,
            last_block_at: None,
            last_tx_at: None,
        }
    }

    #[test]
    fn the_crowded_group_loses_its_youngest() {
        let mut all: Vec<Candidate> = (1..=20).map(|n| candidate(n, [9, 9, 0, n as u8])).collect();
        all.push(candidate(21, [8, 8, 0, 1]));
        all.push(candidate(22, [7, 7, 0, 1]));
        // The youngest of all, but alone in its group.
        all.push(candidate(23, [6, 6, 0, 1]));
        assert_eq!(select_victim(all), Some(ConnId(20)));
    }

    #[test]
    fn deliverers_are_protected() {
        let mut all: Vec<Candidate> = (1..=4).map(|n| candidate(n, [9, 9, 0, n as u8])).collect();
        for c in &mut all {
            c.last_block_at = Some(Mono(Duration::from_secs(100)));
        }
        // Only deliverers: nobody may go.
        assert_eq!(select_victim(all.clone()), None);
        all.extend((5..=20).map(|n| candidate(n, [9, 9, 1, n as u8])));
        assert_eq!(select_victim(all), Some(ConnId(20)));
    }
}
