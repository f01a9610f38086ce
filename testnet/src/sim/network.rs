//! The network model: node addresses, the topology of who dials whom,
//! connections and their latency, each node's upload bandwidth, loss and
//! reachability (partitions, nodes that left). A frame's arrival time is
//! when the sender's uplink is free, plus its size over the bandwidth,
//! plus the connection's latency, so frames on one connection arrive in
//! order, as on TCP.

use super::options::{Latency, SimOptions, Topology};
use super::scheduler::{SimTime, SECOND};
use node::p2p::protocol::ConnId;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The port every simulated node listens on.
pub const LISTEN_PORT: u16 = 7070;

/// The listen address of node `index`: 10.x.y.z, one per node.
pub fn node_addr(index: usize) -> SocketAddr {
    let index = index as u32 + 1;
    let ip = Ipv4Addr::new(10, (index >> 16) as u8, (index >> 8) as u8, index as u8);
    SocketAddr::new(IpAddr::V4(ip), LISTEN_PORT)
}

/// Who node `index` dials, per the topology.
pub fn dial_targets(options: &SimOptions, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let n = options.nodes;
    let degree = options.degree;
    (0..n)
        .map(|index| match options.topology {
            Topology::Random => {
                let mut others: Vec<usize> = (0..n).filter(|&other| other != index).collect();
                // The drawn elements are the returned slice (rand puts
                // them at the end of the vector, not the start).
                let (chosen, _) = others.partial_shuffle(rng, degree);
                let mut chosen = chosen.to_vec();
                chosen.sort_unstable();
                chosen
            }
            Topology::Ring => (1..=degree).map(|step| (index + step) % n).collect(),
            Topology::Line => (1..=degree)
                .map(|step| index + step)
                .filter(|&other| other < n)
                .collect(),
            Topology::Clusters => {
                let clusters = (n / 20).clamp(1, 10);
                let size = n.div_ceil(clusters);
                let cluster = index / size;
                let start = cluster * size;
                let end = (start + size).min(n);
                let mut members: Vec<usize> =
                    (start..end).filter(|&other| other != index).collect();
                let (chosen, _) = members.partial_shuffle(rng, degree.saturating_sub(1));
                let mut members = chosen.to_vec();
                if clusters > 1 {
                    let other_cluster = (cluster + 1 + rng.gen_range(0..clusters - 1)) % clusters;
                    let other_start = other_cluster * size;
                    let other_end = (other_start + size).min(n);
                    members.push(rng.gen_range(other_start..other_end));
                }
                members.sort_unstable();
                members.dedup();
                members
            }
        })
        .collect()
}

/// One end of an established connection.
#[derive(Clone, Copy, Debug)]
pub struct End {
    pub peer: usize,
    pub peer_conn: ConnId,
    pub latency: SimTime,
}

/// One node's connection ends, indexed by its own `ConnId` (a core numbers
/// its connections from 1 up, so the list stays short): one read finds an
/// end, where a search tree took a few cache misses on every frame.
#[derive(Clone, Default)]
struct Ends {
    by_conn: Vec<Option<End>>,
    len: usize,
}

impl Ends {
    fn get(&self, conn: ConnId) -> Option<End> {
        let index = usize::try_from(conn.0).ok()?;
        self.by_conn.get(index).copied().flatten()
    }

    fn insert(&mut self, conn: ConnId, end: End) {
        let index = usize::try_from(conn.0).expect("a connection id fits in memory");
        if index >= self.by_conn.len() {
            self.by_conn.resize(index + 1, None);
        }
        if self.by_conn[index].replace(end).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, conn: ConnId) -> Option<End> {
        let index = usize::try_from(conn.0).ok()?;
        let end = self.by_conn.get_mut(index)?.take();
        self.len -= usize::from(end.is_some());
        end
    }

    /// In `ConnId` order.
    fn iter(&self) -> impl Iterator<Item = (ConnId, End)> + '_ {
        self.by_conn
            .iter()
            .enumerate()
            .filter_map(|(index, end)| end.map(|end| (ConnId(index as u64), end)))
    }
}

/// A dial on its way to the listener.
struct PendingDial {
    from: usize,
    conn: ConnId,
    latency: SimTime,
}

/// Connections, addresses and the links' physics.
pub struct Network {
    latency: Latency,
    /// Each node's region, with `Latency::Regions`.
    region: Vec<u8>,
    /// Nanoseconds per byte of upload.
    nanos_per_byte: f64,
    pub loss: f64,
    by_addr: HashMap<SocketAddr, usize>,
    /// Each node's connection ends, by its own `ConnId`.
    ends: Vec<Ends>,
    /// When each node's uplink is next free.
    uplink_free: Vec<SimTime>,
    pending: HashMap<(usize, SocketAddr), PendingDial>,
    next_port: Vec<u16>,
    /// `Some(k)`: nodes below k cannot reach the others.
    pub partition: Option<usize>,
    pub offline: Vec<bool>,
}

impl Network {
    pub fn new(options: &SimOptions) -> Network {
        let n = options.nodes;
        Network {
            region: match &options.latency {
                Latency::Regions(matrix) => matrix.assign(n),
                _ => Vec::new(),
            },
            latency: options.latency.clone(),
            nanos_per_byte: SECOND as f64 / options.bandwidth as f64,
            loss: options.loss,
            by_addr: (0..n).map(|index| (node_addr(index), index)).collect(),
            ends: vec![Ends::default(); n],
            uplink_free: vec![0; n],
            pending: HashMap::new(),
            next_port: vec![40_000; n],
            partition: None,
            offline: vec![false; n],
        }
    }

    /// The node listening at `target` (`ip:port`).
    pub fn resolve(&self, target: &str) -> Option<usize> {
        let addr: SocketAddr = target.parse().ok()?;
        self.by_addr.get(&addr).copied()
    }

    /// Whether a packet from `a` reaches `b` now.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        if self.offline[a] || self.offline[b] {
            return false;
        }
        match self.partition {
            Some(split) => (a < split) == (b < split),
            None => true,
        }
    }

    /// The one-way latency of a new connection between `a` and `b`.
    pub fn draw_latency(&self, a: usize, b: usize, rng: &mut ChaCha8Rng) -> SimTime {
        let (low, high) = match &self.latency {
            Latency::Fixed(value) => return value.as_nanos() as SimTime,
            Latency::Uniform(low, high) => (*low, *high),
            Latency::Regions(matrix) => {
                matrix.ranges[usize::from(self.region[a])][usize::from(self.region[b])]
            }
        };
        rng.gen_range(low.as_nanos() as SimTime..=high.as_nanos() as SimTime)
    }

    /// The region of `node` (0 without `Latency::Regions`).
    pub fn region_of(&self, node: usize) -> usize {
        self.region.get(node).copied().map_or(0, usize::from)
    }

    /// Starts a dial from `from` to `to`: the address the listener sees.
    pub fn start_dial(
        &mut self,
        from: usize,
        conn: ConnId,
        to: usize,
        latency: SimTime,
    ) -> SocketAddr {
        let port = self.next_port[from];
        self.next_port[from] = if port == u16::MAX { 40_000 } else { port + 1 };
        let remote = SocketAddr::new(node_addr(from).ip(), port);
        self.pending.insert(
            (to, remote),
            PendingDial {
                from,
                conn,
                latency,
            },
        );
        remote
    }

    /// The listener `to` admitted the dial from `remote` as `conn`: both
    /// ends exist from now. Returns the dialer, its conn and the latency.
    pub fn admit(
        &mut self,
        to: usize,
        conn: ConnId,
        remote: SocketAddr,
    ) -> Option<(usize, ConnId, SimTime)> {
        let dial = self.pending.remove(&(to, remote))?;
        self.ends[to].insert(
            conn,
            End {
                peer: dial.from,
                peer_conn: dial.conn,
                latency: dial.latency,
            },
        );
        self.ends[dial.from].insert(
            dial.conn,
            End {
                peer: to,
                peer_conn: conn,
                latency: dial.latency,
            },
        );
        Some((dial.from, dial.conn, dial.latency))
    }

    /// The listener refused the dial: who dialed.
    pub fn refuse(&mut self, to: usize, remote: SocketAddr) -> Option<(usize, ConnId, SimTime)> {
        let dial = self.pending.remove(&(to, remote))?;
        Some((dial.from, dial.conn, dial.latency))
    }

    pub fn end(&self, node: usize, conn: ConnId) -> Option<End> {
        self.ends[node].get(conn)
    }

    /// Prefetches `node`'s list of connection ends (see `World::prefetch_ahead`).
    pub fn prefetch_ends(&self, node: usize) {
        if let Some(ends) = self.ends.get(node) {
            ledger::prefetch::prefetch(ends);
        }
    }

    /// Prefetches `node`'s end of `conn`, once its list is in the cache.
    pub fn prefetch_end(&self, node: usize, conn: ConnId) {
        let end = usize::try_from(conn.0)
            .ok()
            .and_then(|index| self.ends.get(node)?.by_conn.get(index));
        if let Some(end) = end {
            ledger::prefetch::prefetch(end);
        }
    }

    /// Removes `node`'s end of `conn` and returns it.
    pub fn remove_end(&mut self, node: usize, conn: ConnId) -> Option<End> {
        self.ends[node].remove(conn)
    }

    /// All of `node`'s connections, in `ConnId` order.
    pub fn conns_of(&self, node: usize) -> Vec<(ConnId, End)> {
        self.ends[node].iter().collect()
    }

    /// Connection count of `node`.
    pub fn degree_of(&self, node: usize) -> usize {
        self.ends[node].len
    }

    /// When a frame of `bytes` that `from` sends now over a connection of
    /// `latency` arrives; it occupies the sender's uplink meanwhile.
    pub fn transmit(
        &mut self,
        from: usize,
        now: SimTime,
        bytes: usize,
        latency: SimTime,
    ) -> SimTime {
        let start = self.uplink_free[from].max(now);
        let done = start + (bytes as f64 * self.nanos_per_byte).ceil() as SimTime;
        self.uplink_free[from] = done;
        done + latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn topologies_give_the_asked_degree_and_no_self_loops() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for topology in [Topology::Random, Topology::Ring, Topology::Clusters] {
            let options = SimOptions {
                nodes: 100,
                degree: 8,
                topology,
                ..SimOptions::default()
            };
            let targets = dial_targets(&options, &mut rng);
            for (index, list) in targets.iter().enumerate() {
                assert!(!list.contains(&index), "{topology:?}");
                assert!(!list.is_empty() && list.len() <= 8, "{topology:?}");
            }
        }
        // Random targets spread: no node is dialed by a large share.
        let options = SimOptions {
            nodes: 1000,
            degree: 8,
            ..SimOptions::default()
        };
        let mut inbound = vec![0usize; 1000];
        for list in dial_targets(&options, &mut rng) {
            for target in list {
                inbound[target] += 1;
            }
        }
        assert!(
            inbound.iter().max().copied().unwrap_or(0) < 40,
            "{inbound:?}"
        );
        let line = SimOptions {
            nodes: 10,
            degree: 1,
            topology: Topology::Line,
            ..SimOptions::default()
        };
        let targets = dial_targets(&line, &mut rng);
        assert_eq!(targets[0], vec![1]);
        assert!(targets[9].is_empty());
    }

    #[test]
    fn frames_queue_on_the_uplink_and_partitions_cut_across() {
        let options = SimOptions {
            nodes: 4,
            degree: 1,
            latency: Latency::Fixed(Duration::from_millis(10)),
            bandwidth: 1_000_000,
            ..SimOptions::default()
        };
        let mut network = Network::new(&options);
        // 1 MB/s: 1,000 bytes take 1 ms, then 10 ms of latency.
        let first = network.transmit(0, 0, 1_000, 10 * 1_000_000);
        let second = network.transmit(0, 0, 1_000, 10 * 1_000_000);
        assert_eq!(first, 11_000_000);
        assert_eq!(second, 12_000_000);
        assert_eq!(network.resolve("10.0.0.3:7070"), Some(2));
        network.partition = Some(2);
        assert!(network.reachable(0, 1));
        assert!(!network.reachable(1, 2));
    }

    #[test]
    fn region_latency_follows_the_matrix() {
        let options = SimOptions {
            nodes: 100,
            latency: Latency::Regions(super::super::regions::RegionMatrix::world()),
            ..SimOptions::default()
        };
        let network = Network::new(&options);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        // Node 0 is in North America, node 40 in Europe, node 99 in Africa.
        assert_eq!(
            (
                network.region_of(0),
                network.region_of(40),
                network.region_of(99)
            ),
            (0, 1, 5)
        );
        for _ in 0..100 {
            let within = network.draw_latency(0, 1, &mut rng);
            assert!((8_000_000..=40_000_000).contains(&within), "{within}");
            let across = network.draw_latency(0, 99, &mut rng);
            assert!((95_000_000..=140_000_000).contains(&across), "{across}");
        }
    }
}
