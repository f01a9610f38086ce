//! The layout of a local testnet: node i (1-based) listens for peers on
//! `p2p_base + i` and for RPC on `rpc_base + i` (7071.. and 8081.. by
//! default, as SPEC.md fixes), the first `miners` nodes mine, and each node
//! is first told to dial one neighbour so the initial links form a ring.
//!
//! A ring is the smallest connected topology that still makes the network
//! gossip: a block mined on node 1 reaches node 3 of a 4-node ring only
//! through node 2 or node 4. Discovery stays on by default, so nodes may
//! later find each other directly, as they would on a real network.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Why a layout cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    #[error("a testnet needs at least one node")]
    NoNodes,
    #[error("--miners {miners} is more than --nodes {nodes}")]
    TooManyMiners { miners: usize, nodes: usize },
    #[error("port base {base} + {nodes} nodes does not fit in a port number")]
    PortOverflow { base: u16, nodes: usize },
    #[error("P2P ports {p2p_first}..={p2p_last} overlap RPC ports {rpc_first}..={rpc_last}")]
    PortsOverlap {
        p2p_first: u32,
        p2p_last: u32,
        rpc_first: u32,
        rpc_last: u32,
    },
}

/// One node of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// 1-based, as in `node1`.
    pub index: usize,
    pub p2p_addr: SocketAddr,
    pub rpc_addr: SocketAddr,
    pub mining: bool,
    /// 1-based indexes of the nodes it dials at start.
    pub dials: Vec<usize>,
}

impl NodePlan {
    pub fn name(&self) -> String {
        format!("node{}", self.index)
    }

    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }
}

/// Which nodes node `index` (1-based) of `nodes` dials first: for three or
/// more nodes a ring (each node dials the one before it, node 1 dials the
/// last), for two a single link, for one nothing. Every undirected link is
/// configured once, from one side.
pub fn initial_dials(index: usize, nodes: usize) -> Vec<usize> {
    match nodes {
        0 | 1 => Vec::new(),
        2 => {
            if index == 2 {
                vec![1]
            } else {
                Vec::new()
            }
        }
        _ => {
            if index == 1 {
                vec![nodes]
            } else {
                vec![index - 1]
            }
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// The whole layout, validated.
pub fn plan(
    nodes: usize,
    miners: usize,
    p2p_base: u16,
    rpc_base: u16,
) -> Result<Vec<NodePlan>, TopologyError> {
    if nodes == 0 {
        return Err(TopologyError::NoNodes);
    }
    if miners > nodes {
        return Err(TopologyError::TooManyMiners { miners, nodes });
    }
    for base in [p2p_base, rpc_base] {
        if usize::from(base) + nodes > usize::from(u16::MAX) {
            return Err(TopologyError::PortOverflow { base, nodes });
        }
    }
    let range = |base: u16| (u32::from(base) + 1, u32::from(base) + nodes as u32);
    let (p2p_first, p2p_last) = range(p2p_base);
    let (rpc_first, rpc_last) = range(rpc_base);
    if p2p_first <= rpc_last && rpc_first <= p2p_last {
        return Err(TopologyError::PortsOverlap {
            p2p_first,
            p2p_last,
            rpc_first,
            rpc_last,
        });
    }
    Ok((1..=nodes)
        .map(|index| {
            // Checked above: base + index <= base + nodes <= u16::MAX.
            let offset = index as u16;
            NodePlan {
                index,
                p2p_addr: loopback(p2p_base + offset),
                rpc_addr: loopback(rpc_base + offset),
                mining: index <= miners,
                dials: initial_dials(index, nodes),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn undirected_links(plan: &[NodePlan]) -> BTreeSet<(usize, usize)> {
        plan.iter()
            .flat_map(|node| {
                node.dials
                    .iter()
                    .map(move |&other| (node.index.min(other), node.index.max(other)))
            })
            .collect()
    }

    fn connected(plan: &[NodePlan]) -> bool {
        let links = undirected_links(plan);
        let mut reached = BTreeSet::from([1usize]);
        loop {
            let before = reached.len();
            for &(a, b) in &links {
                if reached.contains(&a) || reached.contains(&b) {
                    reached.insert(a);
                    reached.insert(b);
                }
            }
            if reached.len() == before {
                return reached.len() == plan.len();
            }
        }
    }

    #[test]
    fn default_ports_follow_the_spec() {
        let plan = plan(4, 2, 7070, 8080).unwrap();
        assert_eq!(plan[0].p2p_addr.to_string(), "127.0.0.1:7071");
        assert_eq!(plan[3].rpc_addr.to_string(), "127.0.0.1:8084");
        assert_eq!(plan[3].rpc_url(), "http://127.0.0.1:8084");
        assert_eq!(
            plan.iter()
                .filter(|node| node.mining)
                .map(NodePlan::name)
                .collect::<Vec<_>>(),
            ["node1", "node2"]
        );
    }

    #[test]
    fn links_form_a_connected_ring_that_needs_gossip() {
        for nodes in 1..=12 {
            let plan = plan(nodes, 1, 7070, 8080).unwrap();
            assert!(connected(&plan), "{nodes} nodes");
            let links = undirected_links(&plan);
            for node in &plan {
                assert!(!node.dials.contains(&node.index), "no self-dial");
            }
            match nodes {
                1 => assert!(links.is_empty()),
                2 => assert_eq!(links.len(), 1),
                _ => {
                    // A ring: n links, every node has exactly two neighbours.
                    assert_eq!(links.len(), nodes, "{nodes} nodes");
                    for node in 1..=nodes {
                        assert_eq!(
                            links
                                .iter()
                                .filter(|(a, b)| *a == node || *b == node)
                                .count(),
                            2
                        );
                    }
                }
            }
            if nodes >= 4 {
                // Not everyone to everyone: node 1 and node 3 are not linked.
                assert!(!links.contains(&(1, 3)));
            }
        }
    }

    #[test]
    fn invalid_layouts_are_refused() {
        assert_eq!(plan(0, 0, 7070, 8080), Err(TopologyError::NoNodes));
        assert_eq!(
            plan(2, 3, 7070, 8080),
            Err(TopologyError::TooManyMiners {
                miners: 3,
                nodes: 2
            })
        );
        assert!(matches!(
            plan(4, 0, 65_533, 8080),
            Err(TopologyError::PortOverflow { .. })
        ));
        assert!(matches!(
            plan(4, 0, 7070, 7072),
            Err(TopologyError::PortsOverlap { .. })
        ));
        assert!(plan(4, 0, 7070, 7074).is_ok());
    }
}
