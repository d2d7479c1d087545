//! The devices, addresses and routes a node needs, derived from its
//! `HostSubnet` and the `ClusterNetwork`. Pure: the netlink adapter makes the
//! kernel match this.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use sdn_cluster::{ClusterNetwork, HostSubnet};

/// Device names of seed 003 §4.2.3.
pub const BR0: &str = "br0";
pub const TUN0: &str = "tun0";
/// `tun0`'s peer, the gateway's port on `br0`.
pub const TUN0_BR: &str = "tun0-br";
pub const VXLAN0: &str = "vxlan0";
pub const LBR0: &str = "lbr0";
pub const VLINUXBR: &str = "vlinuxbr";
pub const VOVSBR: &str = "vovsbr";

/// Every device the agent owns, for cleanup (peers go with their veths).
pub const OWNED_DEVICES: [&str; 5] = [BR0, TUN0, VXLAN0, LBR0, VLINUXBR];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// This node's pod subnet.
    pub subnet: Ipv4Network,
    /// `10.1.x.1`: on `tun0` (with the subnet's prefix) and on `lbr0`.
    pub gateway: Ipv4Addr,
    /// Routed via `tun0` from the node's own stack.
    pub cluster_network: Ipv4Network,
    /// Cluster IPs, routed via `tun0` too, where the programs translate them; `None` when the
    /// service network is IPv6 (the programs translate IPv4 only).
    pub service_network: Option<Ipv4Network>,
    pub vxlan_port: u16,
    /// MTU of pods and of every device the agent makes.
    pub pod_mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("subnet {0} has no room for a gateway address")]
    NoGateway(Ipv4Network),
    #[error("pod MTU {pod_mtu} (underlay MTU {underlay_mtu} less VXLAN overhead) is below the IPv4 minimum of 576")]
    MtuTooSmall { pod_mtu: u32, underlay_mtu: u32 },
}

impl NodeLayout {
    pub fn new(network: &ClusterNetwork, subnet: &HostSubnet, underlay_mtu: u32) -> Result<Self, LayoutError> {
        let gateway = subnet.subnet.nth(1).ok_or(LayoutError::NoGateway(subnet.subnet))?;
        let pod_mtu = network.pod_mtu(underlay_mtu);
        if pod_mtu < 576 {
            return Err(LayoutError::MtuTooSmall { pod_mtu, underlay_mtu });
        }
        Ok(Self {
            subnet: subnet.subnet,
            gateway,
            cluster_network: network.network,
            service_network: network.ipv4_service_network(),
            vxlan_port: network.vxlan_port,
            pod_mtu,
        })
    }

    /// The subnet's prefix length, used for the gateway address.
    pub fn prefix(&self) -> u8 {
        self.subnet.prefix()
    }

    /// The MACs of `tun0` and `tun0-br`: a pod's pair's scheme (`0a:58:<ip>` inside,
    /// `0a:59:<ip>` on the bridge) for the gateway address, which no pod has. Fixed, not
    /// random, so that they stay what the agent wrote into the programs' configuration.
    pub fn tun0_macs(&self) -> [[u8; 6]; 2] {
        let [a, b, c, d] = self.gateway.octets();
        [[0x0a, 0x58, a, b, c, d], [0x0a, 0x59, a, b, c, d]]
    }

    /// The MACs of `vlinuxbr` and `vovsbr`, the link between `lbr0` and `br0`, in the same
    /// locally administered range as `tun0_macs`, one step further.
    pub fn vlinuxbr_macs(&self) -> [[u8; 6]; 2] {
        let [a, b, c, d] = self.gateway.octets();
        [[0x0a, 0x5a, a, b, c, d], [0x0a, 0x5b, a, b, c, d]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_subnet(cidr: &str) -> HostSubnet {
        HostSubnet { host: "n".into(), host_ip: "192.0.2.1".parse().expect("ip"), subnet: cidr.parse().expect("cidr") }
    }

    #[test]
    fn gateway_and_mtu_follow_the_seed_defaults() {
        let layout = NodeLayout::new(&ClusterNetwork::default(), &host_subnet("10.1.7.0/24"), 1500).expect("layout");
        assert_eq!(layout.gateway, Ipv4Addr::new(10, 1, 7, 1));
        assert_eq!(layout.prefix(), 24);
        assert_eq!(layout.pod_mtu, 1450);
        assert_eq!(layout.cluster_network.to_string(), "10.1.0.0/16");
        let fixed = ClusterNetwork { mtu: Some(1400), ..Default::default() };
        assert_eq!(NodeLayout::new(&fixed, &host_subnet("10.1.7.0/24"), 9000).expect("layout").pod_mtu, 1400);
    }

    #[test]
    fn node_veths_have_fixed_macs_from_the_gateway_address() {
        let layout = NodeLayout::new(&ClusterNetwork::default(), &host_subnet("10.1.7.0/24"), 1500).expect("layout");
        let [tun0, tun0_br] = layout.tun0_macs();
        assert_eq!((tun0, tun0_br), ([0x0a, 0x58, 10, 1, 7, 1], [0x0a, 0x59, 10, 1, 7, 1]));
        let [vlinuxbr, vovsbr] = layout.vlinuxbr_macs();
        let all = [tun0, tun0_br, vlinuxbr, vovsbr];
        for (i, mac) in all.iter().enumerate() {
            assert_eq!(mac[0] & 0b11, 0b10, "{mac:02x?} is locally administered unicast");
            assert!(all[i + 1..].iter().all(|other| other != mac), "{mac:02x?} is unique");
        }
    }

    #[test]
    fn an_underlay_too_small_for_vxlan_is_refused() {
        let err = NodeLayout::new(&ClusterNetwork::default(), &host_subnet("10.1.7.0/24"), 600).expect_err("small");
        assert!(err.to_string().contains("underlay MTU 600"), "{err}");
    }
}
