//! What one peer may cost us, and how it has behaved: token buckets on the
//! messages that make us work (announcement items, `GetHeaders`,
//! `GetSenderTxs`), counted on decoded frames whichever of the link's two
//! channels (urgent or bulk) they came through, so a peer cannot double
//! its allowance by splitting its traffic; a misbehaviour score for
//! breaches that are not worth a ban (rate limits, requests left to
//! expire), which disconnects at `MAX_SCORE`; the strikes that shrink a
//! peer's share of the request table while its requests keep expiring;
//! and when it last delivered a block or a tx we took, which protects it
//! from inbound eviction. `NetworkState` keeps one `PeerBehaviour` per
//! ready peer and shows its score and throttle through `GET /v1/peers`.

use super::time::Mono;
use super::{ChainView, ConnId, NetworkState};
use ledger::json::Direction;
use std::time::Duration;

/// A score at which the peer is disconnected (not banned: an overloaded
/// honest peer may get there too, and may come back).
pub const MAX_SCORE: u32 = 100;
/// Rounds in a row with expired requests (and no delivery between) after
/// which a peer is disconnected; each one halves its request share first.
pub const MAX_EXPIRY_STRIKES: u32 = 4;
/// Outstanding requests to one outbound peer (peers we chose)...
pub const OUTBOUND_FETCH_CAP: usize = 2_000;
/// ...to one inbound peer (peers that chose us, so possibly an attacker
/// with many connections)...
pub const INBOUND_FETCH_CAP: usize = 1_000;
/// ...and to all inbound peers together: at least half the request table
/// stays for the peers we picked.
pub const INBOUND_FETCH_TOTAL: usize = super::gossip::MAX_REQUESTS / 2;

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    at: Mono,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Mono) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            at: now,
            rate,
            burst,
        }
    }

    /// Takes `cost` tokens if there are that many.
    pub fn take(&mut self, now: Mono, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// The kinds of costly messages, with their buckets' sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Costly {
    /// Items of `Inv` (each one a lookup, maybe a request). The burst
    /// covers a whole mempool announced to a new peer.
    InvItems,
    /// `GetHeaders` (up to 2,000 headers read each).
    GetHeaders,
    /// `GetSenderTxs` (a mempool walk each).
    SenderTxs,
}

impl Costly {
    pub fn label(self) -> &'static str {
        match self {
            Costly::InvItems => "inv",
            Costly::GetHeaders => "get_headers",
            Costly::SenderTxs => "get_sender_txs",
        }
    }

    fn bucket(self, now: Mono) -> TokenBucket {
        match self {
            Costly::InvItems => TokenBucket::new(20_000.0, 60_000.0, now),
            Costly::GetHeaders => TokenBucket::new(20.0, 100.0, now),
            Costly::SenderTxs => TokenBucket::new(100.0, 500.0, now),
        }
    }
}

/// One peer's record.
#[derive(Clone, Debug)]
pub struct PeerBehaviour {
    inv: TokenBucket,
    headers: TokenBucket,
    sender_txs: TokenBucket,
    pub score: u32,
    /// The last rule that held the peer back, while it still does.
    pub throttled: Option<&'static str>,
    throttled_at: Mono,
    pub expiry_strikes: u32,
    pub last_block_at: Option<Mono>,
    pub last_tx_at: Option<Mono>,
}

impl PeerBehaviour {
    pub fn new(now: Mono) -> PeerBehaviour {
        PeerBehaviour {
            inv: Costly::InvItems.bucket(now),
            headers: Costly::GetHeaders.bucket(now),
            sender_txs: Costly::SenderTxs.bucket(now),
            score: 0,
            throttled: None,
            throttled_at: now,
            expiry_strikes: 0,
            last_block_at: None,
            last_tx_at: None,
        }
    }

    fn bucket_mut(&mut self, kind: Costly) -> &mut TokenBucket {
        match kind {
            Costly::InvItems => &mut self.inv,
            Costly::GetHeaders => &mut self.headers,
            Costly::SenderTxs => &mut self.sender_txs,
        }
    }

    /// The most this peer may have outstanding, out of `base`: halved
    /// per strike.
    pub fn fetch_cap(&self, base: usize) -> usize {
        base >> self.expiry_strikes.min(16)
    }
}

/// How long a throttle shows after the peer's last breach.
const THROTTLE_SHOWN: Duration = Duration::from_secs(10);

impl<V: ChainView> NetworkState<V> {
    /// Whether `id` may send a `kind` message costing `cost` now. A refusal
    /// is counted, logged (once per throttle), scored, and disconnects the
    /// peer at `MAX_SCORE`; the caller then drops the message unread.
    pub(super) fn allow(&mut self, id: ConnId, kind: Costly, cost: usize) -> bool {
        let now = self.now.mono;
        let Some(peer) = self.peer_mut(id) else {
            return false;
        };
        if peer.behaviour.bucket_mut(kind).take(now, cost as f64) {
            if peer.behaviour.throttled == Some(kind.label())
                && peer.behaviour.throttled_at + THROTTLE_SHOWN <= now
            {
                peer.behaviour.throttled = None;
            }
            return true;
        }
        let first = peer.behaviour.throttled != Some(kind.label());
        peer.behaviour.throttled = Some(kind.label());
        peer.behaviour.throttled_at = now;
        self.metric_inc("p2p_rate_limited_total", ("kind", kind.label()));
        if first {
            // Read only for the log: an allowed message (nearly every
            // one) needs nothing of the connection but the peer's bucket.
            let remote = self.conns.get(&id).and_then(|conn| conn.remote);
            tracing::info!(peer = ?remote, conn = %id, rule = kind.label(), "peer rate-limited: message dropped unread");
        }
        self.add_score(id, 1, kind.label());
        false
    }

    /// Adds to a peer's misbehaviour score; at `MAX_SCORE` it is dropped.
    pub(super) fn add_score(&mut self, id: ConnId, points: u32, rule: &'static str) {
        let remote = self.conns.get(&id).and_then(|conn| conn.remote);
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        peer.behaviour.score = peer.behaviour.score.saturating_add(points);
        if peer.behaviour.score >= MAX_SCORE {
            tracing::warn!(peer = ?remote, conn = %id, rule, "peer disconnected: misbehaviour score reached its limit");
            self.metric_inc("p2p_score_disconnects_total", ("rule", rule));
            self.close(
                id,
                super::CloseReason::Disconnected(format!("score: {rule}")),
            );
        }
    }

    /// How many more requests `id` may be given now: its own cap (outbound
    /// peers get more; an inbound peer at most its even share of the
    /// inbound half of the table, so a full set of inbound peers cannot
    /// crowd out one of them; strikes halve it) and, for inbound peers,
    /// what is left of the inbound half.
    pub(super) fn fetch_room(&self, id: ConnId) -> usize {
        let Some(conn) = self.conns.get(&id) else {
            return 0;
        };
        let Some(peer) = &conn.peer else { return 0 };
        let base = match conn.direction {
            Direction::Outbound => OUTBOUND_FETCH_CAP,
            Direction::Inbound => {
                INBOUND_FETCH_CAP.min(INBOUND_FETCH_TOTAL / self.config.max_inbound.max(1))
            }
        };
        let own = peer
            .behaviour
            .fetch_cap(base)
            .saturating_sub(self.requests.outstanding_for(id));
        // Every request counts towards the inbound total at most once, so
        // while they are few the total cannot cap `own`, and the sum
        // below (a lookup per peer with requests out) is not needed.
        debug_assert!(
            self.requests
                .outstanding_by_peer()
                .map(|(_, count)| count)
                .sum::<usize>()
                <= self.requests.len()
        );
        if conn.direction == Direction::Outbound
            || self.requests.len().saturating_add(own) <= INBOUND_FETCH_TOTAL
        {
            return own;
        }
        // Summed over the peers with requests outstanding (a few), not
        // over every connection: reading each connection's direction cost
        // a cache miss per connection on every announcement an inbound
        // peer made.
        let inbound_total: usize = self
            .requests
            .outstanding_by_peer()
            .filter(|(other, _)| {
                self.conns
                    .get(other)
                    .is_some_and(|conn| conn.direction == Direction::Inbound)
            })
            .map(|(_, count)| count)
            .sum();
        own.min(INBOUND_FETCH_TOTAL.saturating_sub(inbound_total))
    }

    /// Requests that expired this round: each peer that let some expire
    /// gets a strike (its share halves); `MAX_EXPIRY_STRIKES` in a row
    /// without a delivery disconnect it.
    pub(super) fn strike_expired(&mut self, expired: Vec<(ConnId, usize)>) {
        for (id, count) in expired {
            let remote = self.conns.get(&id).and_then(|conn| conn.remote);
            let Some(peer) = self.peer_mut(id) else {
                continue;
            };
            peer.behaviour.expiry_strikes += 1;
            peer.behaviour.throttled = Some("requests_expiring");
            let strikes = peer.behaviour.expiry_strikes;
            self.metric_add("p2p_requests_expired_total", ("by", "peer"), count as u64);
            if strikes >= MAX_EXPIRY_STRIKES {
                tracing::warn!(peer = ?remote, conn = %id, rule = "requests_expiring", strikes, "peer disconnected: it leaves our requests unanswered");
                self.metric_inc("p2p_score_disconnects_total", ("rule", "requests_expiring"));
                self.close(
                    id,
                    super::CloseReason::Disconnected("requests expiring".into()),
                );
            } else {
                tracing::info!(peer = ?remote, conn = %id, rule = "requests_expiring", strikes, expired = count, "peer's requests expired: its request share shrinks");
            }
        }
    }

    /// `id` delivered something we asked for: its strikes are forgiven.
    pub(super) fn delivered(&mut self, id: ConnId) {
        if let Some(peer) = self.peer_mut(id) {
            if peer.behaviour.expiry_strikes > 0 {
                peer.behaviour.expiry_strikes = 0;
                if peer.behaviour.throttled == Some("requests_expiring") {
                    peer.behaviour.throttled = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let start = Mono::ZERO;
        let mut bucket = TokenBucket::new(10.0, 20.0, start);
        assert!(bucket.take(start, 20.0));
        assert!(!bucket.take(start, 1.0));
        assert!(bucket.take(start + Duration::from_millis(500), 5.0));
        assert!(!bucket.take(start + Duration::from_millis(500), 1.0));
        // Never beyond the burst, however long it rested.
        assert!(!bucket.take(start + Duration::from_secs(100), 21.0));
        assert!(bucket.take(start + Duration::from_secs(100), 20.0));
    }

    #[test]
    fn strikes_halve_the_fetch_cap() {
        let mut behaviour = PeerBehaviour::new(Mono::ZERO);
        assert_eq!(behaviour.fetch_cap(INBOUND_FETCH_CAP), INBOUND_FETCH_CAP);
        behaviour.expiry_strikes = 2;
        assert_eq!(
            behaviour.fetch_cap(INBOUND_FETCH_CAP),
            INBOUND_FETCH_CAP / 4
        );
    }
}
