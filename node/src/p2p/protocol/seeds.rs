//! DNS seeds and the advertised address. A DNS seed is a name (Swarm's
//! `tasks.<service>`, a Kubernetes headless Service) that resolves to every
//! member of a group. Resolving is I/O, so the driver does it, once per
//! seed round, and hands the core every address it got
//! (`Input::SeedsResolved`). The core dials those addresses while outbound
//! slots are free, skipping ones it is already connected to, its own, and
//! banned ones. Only a fresh resolution triggers seed dials, so a seed
//! address that does not answer is retried at the driver's pace, not at
//! every maintenance round. Seeds are dialed with or without discovery: the
//! operator named them, as with `--peer`.
//!
//! `--external-addr` is the address other nodes should dial us at, when it
//! is not the one our listener is bound to (NAT, port mapping). The core
//! announces its port in `Hello` and offers the whole address first in
//! every `Addr` answer, with our node id, so peers learn it as a listen
//! address of ours.

use super::{ChainView, DialKind, NetworkState};
use crate::p2p::message::PeerAddr;
use core::net::SocketAddr;
use ledger::json::Direction;
use ledger::PublicKey;
use std::collections::BTreeSet;

impl<V: ChainView> NetworkState<V> {
    /// A new resolution of the DNS seeds: dial the addresses not in use.
    pub(super) fn on_seeds_resolved(&mut self, addrs: Vec<SocketAddr>) {
        let fresh: BTreeSet<SocketAddr> = addrs.into_iter().collect();
        if fresh != self.seed_addrs {
            tracing::debug!(n_addrs = fresh.len(), "DNS seeds resolved to a new set");
        }
        self.seed_addrs = fresh;
        self.dial_seeds();
    }

    /// Dials seed addresses while outbound slots are free.
    fn dial_seeds(&mut self) {
        let outbound = self
            .conns
            .values()
            .filter(|conn| conn.direction == Direction::Outbound)
            .filter(|conn| conn.peer.is_some() || matches!(conn.dial, Some(DialKind::Book(_))))
            .count();
        let free = self.config.max_outbound.saturating_sub(outbound);
        if free == 0 {
            return;
        }
        let now = self.now.mono;
        let mut busy: BTreeSet<SocketAddr> = BTreeSet::new();
        let mut connected_nodes: BTreeSet<PublicKey> = BTreeSet::new();
        for conn in self.conns.values() {
            busy.extend(conn.remote);
            if let Some(DialKind::Book(addr)) = conn.dial {
                busy.insert(addr);
            }
            if let Some(peer) = &conn.peer {
                busy.extend(peer.listen_addr);
                connected_nodes.insert(peer.node_id);
            }
        }
        let our_id = self.identity.node_id;
        let to_dial: Vec<SocketAddr> = self
            .seed_addrs
            .iter()
            .copied()
            .filter(|addr| {
                !busy.contains(addr)
                    && !self.self_addrs.contains(addr)
                    && *addr != self.config.listen_addr
                    && Some(*addr) != self.config.external_addr
                    && super::addrbook::is_dialable(addr)
                    && !self.bans.is_addr_banned(*addr, now)
                    // An address the book ties to a node we already have.
                    && !self.book.get(addr).and_then(|entry| entry.node_id).is_some_and(|node_id| {
                        node_id == our_id || connected_nodes.contains(&node_id)
                    })
            })
            .take(free)
            .collect();
        for addr in to_dial {
            self.dial(DialKind::Book(addr), addr.to_string());
        }
    }

    /// Our `--external-addr` as an `Addr` entry, when one is set.
    pub(super) fn advertised_self(&self) -> Option<PeerAddr> {
        self.config.external_addr.map(|addr| PeerAddr {
            addr,
            node_id: Some(self.identity.node_id),
            last_seen_ms: self.now.unix_ms,
            // Not a connection of the sender's: keeps us out of the
            // receiver's picture of who we are connected to.
            connected: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Action, ChainView, CoreConfig, Input, Mono, NetworkState, Restored, Time};
    use crate::p2p::message::Message;
    use crate::p2p::{P2pTiming, TipSummary};
    use core::net::SocketAddr;
    use ledger::{BlockHash, Hash256, Header, SecretKey, Transaction, TxId, Work};

    /// A chain with only genesis and an empty mempool.
    struct EmptyChain;

    impl ChainView for EmptyChain {
        fn tip(&self) -> TipSummary {
            TipSummary {
                height: 0,
                hash: BlockHash(Hash256([1; 32])),
                total_work: Work::ZERO,
            }
        }
        fn locator(&self) -> Vec<BlockHash> {
            Vec::new()
        }
        fn headers_after(&self, _: &[BlockHash], _: usize) -> Vec<Header> {
            Vec::new()
        }
        fn has_block(&self, _: &BlockHash) -> bool {
            false
        }
        fn mempool_tx(&self, _: &TxId) -> Option<Transaction> {
            None
        }
        fn mempool_txids(&self, _: usize) -> Vec<TxId> {
            Vec::new()
        }
        fn has_tx(&self, _: &TxId) -> bool {
            false
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("literal address")
    }

    fn core(
        max_outbound: usize,
        no_discovery: bool,
        external_addr: Option<SocketAddr>,
    ) -> NetworkState<EmptyChain> {
        let config = CoreConfig {
            listen_addr: addr("10.0.0.1:7070"),
            peers: Vec::new(),
            dns_seeds: vec!["tasks.node:7070".into()],
            external_addr,
            no_discovery,
            max_inbound: 32,
            max_outbound,
            ban_duration: std::time::Duration::from_secs(60),
            network_magic: [1, 2, 3, 4].into(),
            genesis_hash: BlockHash(Hash256([1; 32])),
            node_key: SecretKey::from_bytes(&[7; 32]),
            timing: P2pTiming::default(),
        };
        NetworkState::new(config, EmptyChain, 7, at(0), Restored::default())
    }

    fn at(ms: u64) -> Time {
        Time::new(Mono(std::time::Duration::from_millis(ms)), 1_000_000 + ms)
    }

    /// Every `Dial` the core asks for, in order, as (conn, target).
    fn dials(core: &mut NetworkState<EmptyChain>) -> Vec<(super::super::ConnId, String)> {
        let mut out = Vec::new();
        while let Some(action) = core.poll_action() {
            if let Action::Dial { conn, target } = action {
                out.push((conn, target));
            }
        }
        out
    }

    #[test]
    fn every_resolved_address_is_dialed_within_the_slots() {
        let mut core = core(8, true, None);
        dials(&mut core);
        let resolved: Vec<SocketAddr> = (2..=5)
            .map(|host| addr(&format!("10.0.0.{host}:7070")))
            .collect();
        core.handle(
            at(10),
            Input::SeedsResolved {
                addrs: resolved.clone(),
            },
        );
        let targets: Vec<String> = dials(&mut core).into_iter().map(|(_, t)| t).collect();
        let expected: Vec<String> = resolved.iter().map(ToString::to_string).collect();
        assert_eq!(targets, expected, "all four, with discovery off too");

        // The same answer again: each is being dialed already, nothing new.
        core.handle(at(20), Input::SeedsResolved { addrs: resolved });
        assert!(dials(&mut core).is_empty());
    }

    #[test]
    fn seeds_respect_free_slots_and_skip_our_own_addresses() {
        let external = addr("203.0.113.9:17070");
        let mut core = core(2, false, Some(external));
        dials(&mut core);
        core.handle(
            at(10),
            Input::SeedsResolved {
                addrs: vec![
                    addr("10.0.0.1:7070"), // our listener
                    external,              // our advertised address
                    addr("10.0.0.3:7070"),
                    addr("10.0.0.4:7070"),
                    addr("10.0.0.5:7070"),
                ],
            },
        );
        let first = dials(&mut core);
        let targets: Vec<&str> = first.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(targets, ["10.0.0.3:7070", "10.0.0.4:7070"]);

        // One dial fails: its slot is free again, and the next resolution
        // tries the address not yet tried as well as the failed one.
        core.handle(
            at(20),
            Input::DialFailed {
                conn: first[0].0,
                error: "refused".into(),
            },
        );
        dials(&mut core);
        core.handle(
            at(5_000),
            Input::SeedsResolved {
                addrs: vec![addr("10.0.0.3:7070"), addr("10.0.0.5:7070")],
            },
        );
        let targets: Vec<String> = dials(&mut core).into_iter().map(|(_, t)| t).collect();
        assert_eq!(targets, ["10.0.0.3:7070"], "one slot was free");
    }

    #[test]
    fn external_address_is_announced_and_offered_first() {
        let external = addr("203.0.113.9:17070");
        let mut core = core(8, true, Some(external));
        dials(&mut core);
        core.handle(
            at(1),
            Input::Inbound {
                remote: addr("10.0.0.9:40000"),
            },
        );
        let mut hello_port = None;
        while let Some(action) = core.poll_action() {
            if let Action::Send {
                message: Message::Hello(hello),
                ..
            } = action
            {
                hello_port = Some(hello.listen_port);
            }
        }
        assert_eq!(hello_port, Some(17070), "Hello names the external port");
        let own = core.advertised_self().expect("an external address is set");
        assert_eq!(own.addr, external);
        assert_eq!(own.node_id, Some(core.node_id()));
        assert!(!own.connected);
    }
}
