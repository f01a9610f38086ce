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
        let free = self
            .config
            .max_outbound
            .saturating_sub(self.outbound_in_use());
        if free == 0 {
            return;
        }
        let filter = self.dial_filter();
        let to_dial: Vec<SocketAddr> = self
            .seed_addrs
            .iter()
            .copied()
            .filter(|addr| filter.allows(addr, self.book.get(addr).and_then(|entry| entry.node_id)))
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
