//! Network groups and routability: which addresses one operator is likely
//! to control together, so that limits and choices can be spread across
//! groups rather than across addresses (which are cheap). A public IPv4
//! address groups by its /16, IPv6 by its /32. Loopback and private
//! (RFC 1918, unique-local, link-local) addresses are "local": each IP is
//! its own group, and a local peer may tell us about local addresses
//! (one-machine testnets, compose networks on a private bridge), while a
//! public peer may not. Limits that would cut a one-machine testnet in
//! pieces (per-group inbound caps, outbound spread) do not apply to
//! loopback, where every node shares one IP; eviction still does.

use core::net::{IpAddr, SocketAddr};

/// A network group. Ordered so that maps keyed by it are deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetGroup {
    /// A loopback or private IP: the IP itself.
    Local(IpAddr),
    /// The first two bytes of a public IPv4 address.
    V4([u8; 2]),
    /// The first four bytes of a public IPv6 address.
    V6([u8; 4]),
}

impl NetGroup {
    pub fn of(ip: IpAddr) -> NetGroup {
        let ip = canonical(ip);
        if is_local(ip) {
            return NetGroup::Local(ip);
        }
        match ip {
            IpAddr::V4(v4) => {
                let octets = v4.octets();
                NetGroup::V4([octets[0], octets[1]])
            }
            IpAddr::V6(v6) => {
                let octets = v6.octets();
                NetGroup::V6([octets[0], octets[1], octets[2], octets[3]])
            }
        }
    }

    pub fn is_loopback(&self) -> bool {
        matches!(self, NetGroup::Local(ip) if ip.is_loopback())
    }

    /// Bytes that identify the group, for keyed hashing.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            NetGroup::Local(IpAddr::V4(ip)) => [&[1u8][..], &ip.octets()].concat(),
            NetGroup::Local(IpAddr::V6(ip)) => [&[2u8][..], &ip.octets()].concat(),
            NetGroup::V4(prefix) => [&[3u8][..], prefix].concat(),
            NetGroup::V6(prefix) => [&[4u8][..], prefix].concat(),
        }
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local or unique-local: reachable only inside a
/// machine or a private network.
pub fn is_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Whether an address a peer at `source` told us about may enter the book:
/// a public peer may not send us into a private network or to ourselves.
pub fn acceptable_from(addr: &SocketAddr, source: IpAddr) -> bool {
    !is_local(addr.ip()) || is_local(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn groups_and_locality() {
        assert_eq!(NetGroup::of(ip("8.8.4.4")), NetGroup::of(ip("8.8.200.1")));
        assert_ne!(NetGroup::of(ip("8.8.4.4")), NetGroup::of(ip("8.9.4.4")));
        assert_eq!(
            NetGroup::of(ip("::ffff:8.8.1.1")),
            NetGroup::of(ip("8.8.9.9"))
        );
        assert_ne!(NetGroup::of(ip("127.0.0.1")), NetGroup::of(ip("127.0.0.2")));
        assert!(NetGroup::of(ip("127.0.0.1")).is_loopback());
        assert!(!NetGroup::of(ip("10.0.0.1")).is_loopback());
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "172.20.0.2",
            "::1",
            "fd00::1",
        ] {
            assert!(is_local(ip(local)), "{local}");
        }
        let private: SocketAddr = "10.0.0.5:9000".parse().expect("addr");
        assert!(!acceptable_from(&private, ip("8.8.8.8")));
        assert!(acceptable_from(&private, ip("172.18.0.3")));
        let public: SocketAddr = "8.8.8.8:9000".parse().expect("addr");
        assert!(acceptable_from(&public, ip("8.8.8.8")));
    }
}
