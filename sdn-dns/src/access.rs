//! Who may ask: the cluster DNS answers pods, nodes and configured networks, never the world
//! (an open resolver is a reflection amplifier). The shell asks [`AccessList::allows`] per
//! query and sends the others [`crate::refuse`]'s REFUSED.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

/// The networks whose clients are answered; loopback always is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessList {
    networks: Vec<IpNetwork>,
}

impl AccessList {
    /// From the cluster network, the node addresses (as /32 or /128 networks, e.g.
    /// `IpNetwork::from(ip)`) and any configured networks.
    pub fn new(networks: impl IntoIterator<Item = IpNetwork>) -> Self {
        let mut networks: Vec<IpNetwork> = networks.into_iter().collect();
        let loopback_v4 = Ipv4Network::new(Ipv4Addr::new(127, 0, 0, 0), 8).map(IpNetwork::V4);
        let loopback_v6 = Ipv6Network::new(Ipv6Addr::LOCALHOST, 128).map(IpNetwork::V6);
        networks.extend(loopback_v4.into_iter().chain(loopback_v6));
        Self { networks }
    }

    /// Whether to answer `client`. An IPv4 client seen on a dual-stack socket
    /// (`::ffff:10.1.0.5`) counts as its IPv4 address.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.networks.iter().any(|net| net.contains(client))
    }

    pub fn networks(&self) -> &[IpNetwork] {
        &self.networks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::ip;

    #[test]
    fn pods_nodes_and_loopback_are_allowed() {
        let list = AccessList::new([
            "10.1.0.0/16".parse().expect("cluster"),
            IpNetwork::from(ip("192.0.2.10")),
            "fd00:1::/64".parse().expect("configured"),
        ]);
        for allowed in ["10.1.3.4", "192.0.2.10", "127.0.0.1", "127.8.9.10", "::1", "::ffff:10.1.0.5", "fd00:1::9"] {
            assert!(list.allows(ip(allowed)), "{allowed}");
        }
        for refused in ["10.2.0.1", "192.0.2.11", "203.0.113.7", "::ffff:203.0.113.7", "fd00:2::1", "::2"] {
            assert!(!list.allows(ip(refused)), "{refused}");
        }
        assert!(AccessList::new([]).allows(ip("127.0.0.1")), "loopback without any network");
    }
}
