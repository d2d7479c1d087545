//! How the maps hold addresses, subnets and entries: pure conversions between the agent's
//! types and the `#[repr(C)]` values of `sdn-ebpf-common`.

use std::net::Ipv4Addr;

use aya::maps::lpm_trie::Key;
use ipnetwork::Ipv4Network;
use sdn_ebpf_common::{ENDPOINT_STRIP_GSO, Endpoint, NodeConfig, PeerNode, REMOTE_DIRECT, Remote};

use crate::net::layout::NodeLayout;
use crate::remotes::Transport;

/// The devices the programs send to, by ifindex, as the node's namespace numbers them.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub vxlan0: u32,
    pub tun0_br: u32,
    pub underlay: u32,
}

/// Builds the node configuration the programs read, converting addresses to network order.
pub fn node_config(layout: &NodeLayout, ports: Ports, gateway_mac: [u8; 6], node_ip: Ipv4Addr) -> NodeConfig {
    let config = NodeConfig {
        gateway_ip: ip_key(layout.gateway),
        vxlan_ifindex: ports.vxlan0,
        tun_br_ifindex: ports.tun0_br,
        gateway_mac,
        vxlan_port: layout.vxlan_port.to_be(),
        node_ip: ip_key(node_ip),
        underlay_ifindex: ports.underlay,
        service_network: 0,
        service_mask: 0,
    };
    with_service_network(config, layout.service_network)
}

/// `config` with the IPv4 service network `network` (`None`: the cluster's is IPv6).
pub fn with_service_network(config: NodeConfig, network: Option<Ipv4Network>) -> NodeConfig {
    // An IPv6 service network has no IPv4 cluster IPs: a mask no destination but 0.0.0.0
    // passes, and that one is no cluster IP either.
    let (service_network, service_mask) = match network {
        Some(network) => (ip_key(network.network()), ip_key(network.mask())),
        None => (0, u32::MAX),
    };
    NodeConfig { service_network, service_mask, ..config }
}

/// A tunnel sender's entry: its subnet as network address and mask, in network order.
pub fn peer_node(subnet: Ipv4Network) -> PeerNode {
    PeerNode { subnet: ip_key(subnet.network()), mask: ip_key(subnet.mask()) }
}

/// The subnet of a tunnel sender's entry, if its mask is one.
pub fn peer_subnet(node: PeerNode) -> Option<Ipv4Network> {
    let mask = Ipv4Addr::from(node.mask.to_ne_bytes());
    let prefix = ipnetwork::ipv4_mask_to_prefix(mask).ok()?;
    Ipv4Network::new(key_ip(node.subnet), prefix).ok()
}

/// An address as the maps store it: a `u32` whose memory holds the octets in network order.
pub fn ip_key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// The inverse of [`ip_key`].
pub fn key_ip(key: u32) -> Ipv4Addr {
    Ipv4Addr::from(key.to_ne_bytes())
}

/// The LPM key of a subnet (its network address, so host bits never reach the map).
pub fn remote_key(subnet: Ipv4Network) -> Key<u32> {
    Key::new(u32::from(subnet.prefix()), ip_key(subnet.network()))
}

/// The subnet of an LPM key, if its prefix length is one of IPv4.
pub fn key_network(key: &Key<u32>) -> Option<Ipv4Network> {
    let prefix = u8::try_from(key.prefix_len()).ok()?;
    Ipv4Network::new(key_ip(key.data()), prefix).ok()
}

/// The value to write for an endpoint, or `None` when the existing one already says this. Keeps
/// the counters of an existing entry.
pub(super) fn endpoint_update(existing: Option<Endpoint>, ifindex: u32, mac: [u8; 6]) -> Option<Endpoint> {
    let current = existing.unwrap_or_default();
    if existing.is_some() && current.ifindex == ifindex && current.mac == mac {
        return None;
    }
    Some(Endpoint { ifindex, mac, _pad: [0; 5], ..current })
}

/// An endpoint with super-packets from the tunnel stripped in eBPF (`strip`) or left to
/// `vxlan0`, or `None` when it already says so.
pub(super) fn strip_gso_update(existing: Endpoint, strip: bool) -> Option<Endpoint> {
    let flags = if strip { existing.flags | ENDPOINT_STRIP_GSO } else { existing.flags & !ENDPOINT_STRIP_GSO };
    (flags != existing.flags).then_some(Endpoint { flags, ..existing })
}

/// The value to write for a remote subnet, or `None` when the existing one already says this.
/// Keeps the counters of an existing entry.
pub(super) fn remote_update(existing: Option<Remote>, node_ip: Ipv4Addr, path: Transport) -> Option<Remote> {
    let current = existing.unwrap_or_default();
    let node_ip = ip_key(node_ip);
    let flags = match path {
        Transport::Tunnel => 0,
        Transport::Direct => REMOTE_DIRECT,
    };
    if existing.is_some() && current.node_ip == node_ip && current.flags == flags {
        return None;
    }
    Some(Remote { node_ip, flags, ..current })
}

/// How a remote entry sends: what [`remote_update`] wrote.
pub fn remote_path(remote: &Remote) -> Transport {
    if remote.flags & REMOTE_DIRECT != 0 { Transport::Direct } else { Transport::Tunnel }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().expect("test network")
    }

    #[test]
    fn addresses_are_stored_in_network_order() {
        let ip = Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(ip_key(ip).to_ne_bytes(), [10, 1, 0, 2]);
        assert_eq!(key_ip(ip_key(ip)), ip);
    }

    #[test]
    fn remote_keys_drop_host_bits_and_round_trip() {
        let key = remote_key(net("10.1.1.7/24"));
        assert_eq!(key.prefix_len(), 24);
        assert_eq!(key.data().to_ne_bytes(), [10, 1, 1, 0]);
        assert_eq!(key_network(&key), Some(net("10.1.1.0/24")));
        assert_eq!(key_network(&Key::new(33, 0)), None);
    }

    #[test]
    fn node_config_is_in_network_order() {
        let subnet = sdn_cluster::HostSubnet {
            host: "n".into(),
            host_ip: "192.0.2.1".parse().expect("ip"),
            subnet: net("10.1.0.0/24"),
        };
        let mut layout = NodeLayout::new(&sdn_cluster::ClusterNetwork::default(), &subnet, 1500).expect("layout");
        let ports = Ports { vxlan0: 7, tun0_br: 8, underlay: 3 };
        let config = node_config(&layout, ports, [2, 0, 0, 0, 0, 1], Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(config.gateway_ip.to_ne_bytes(), [10, 1, 0, 1]);
        assert_eq!((config.vxlan_ifindex, config.tun_br_ifindex, config.underlay_ifindex), (7, 8, 3));
        assert_eq!((config.node_ip.to_ne_bytes(), config.vxlan_port.to_ne_bytes()), ([192, 0, 2, 1], [0x12, 0xb5]));
        let cluster_ip = |config: &NodeConfig, ip: [u8; 4]| config.in_service_network(ip_key(Ipv4Addr::from(ip)));
        assert!(cluster_ip(&config, [172, 30, 9, 1]) && !cluster_ip(&config, [172, 31, 0, 1]));
        assert!(!cluster_ip(&config, [10, 1, 0, 2]));
        // An IPv6 service network: no IPv4 destination is a cluster IP.
        layout.service_network = None;
        let six = node_config(&layout, ports, [2, 0, 0, 0, 0, 1], Ipv4Addr::new(192, 0, 2, 1));
        assert!(!cluster_ip(&six, [172, 30, 9, 1]) && !cluster_ip(&six, [10, 1, 0, 2]));
        // A wider service network, as the master may take one while nodes run.
        let wider = with_service_network(config, Some(net("172.28.0.0/14")));
        assert!(cluster_ip(&wider, [172, 31, 0, 1]) && cluster_ip(&wider, [172, 30, 9, 1]));
        assert_eq!(
            NodeConfig { service_network: 0, service_mask: 0, ..wider },
            NodeConfig { service_network: 0, service_mask: 0, ..config }
        );
        let subnet: Ipv4Network = "10.1.2.0/24".parse().expect("cidr");
        let node = peer_node(subnet);
        assert_eq!((node.subnet.to_ne_bytes(), node.mask.to_ne_bytes()), ([10, 1, 2, 0], [255, 255, 255, 0]));
        assert!(node.owns(ip_key(Ipv4Addr::new(10, 1, 2, 77))) && !node.owns(ip_key(Ipv4Addr::new(10, 1, 3, 1))));
        assert_eq!(peer_subnet(node), Some(subnet));
        assert_eq!(peer_subnet(PeerNode { subnet: 0, mask: ip_key(Ipv4Addr::new(255, 0, 255, 0)) }), None);
    }

    #[test]
    fn updates_keep_counters_and_skip_no_ops() {
        let mac = [2, 0, 0, 0, 0, 2];
        let fresh = endpoint_update(None, 5, mac).expect("a new entry is written");
        assert_eq!((fresh.ifindex, fresh.mac, fresh.packets), (5, mac, 0));
        let counted = Endpoint { packets: 3, bytes: 300, ..fresh };
        assert_eq!(endpoint_update(Some(counted), 5, mac), None);
        let moved = endpoint_update(Some(counted), 6, mac).expect("a changed entry is written");
        assert_eq!((moved.ifindex, moved.packets, moved.bytes), (6, 3, 300));
        let stripping = strip_gso_update(moved, true).expect("flag set");
        assert_eq!((stripping.flags, stripping.packets), (ENDPOINT_STRIP_GSO, 3));
        assert_eq!(strip_gso_update(stripping, true), None);
        assert_eq!(
            endpoint_update(Some(stripping), 7, mac).map(|e| e.flags),
            Some(ENDPOINT_STRIP_GSO),
            "kept on a move"
        );
        assert_eq!(strip_gso_update(stripping, false).map(|e| e.flags), Some(0));

        let node = Ipv4Addr::new(192, 0, 2, 12);
        let remote = Remote { packets: 4, bytes: 400, ..remote_update(None, node, Transport::Tunnel).expect("new") };
        assert_eq!(remote_update(Some(remote), node, Transport::Tunnel), None);
        let moved = remote_update(Some(remote), Ipv4Addr::new(192, 0, 2, 13), Transport::Tunnel).expect("changed");
        assert_eq!((key_ip(moved.node_ip), moved.packets, moved.bytes), (Ipv4Addr::new(192, 0, 2, 13), 4, 400));
        let direct = remote_update(Some(remote), node, Transport::Direct).expect("switched to direct");
        assert_eq!((direct.flags, remote_path(&direct), direct.packets), (REMOTE_DIRECT, Transport::Direct, 4));
        assert_eq!(
            remote_path(&remote_update(Some(direct), node, Transport::Tunnel).expect("back")),
            Transport::Tunnel
        );
    }
}
