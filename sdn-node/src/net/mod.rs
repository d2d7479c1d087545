//! The node's devices (seed 003 §4.2.3): the pure [`layout`] of what a node
//! needs, the [`netlink`] adapter that makes the kernel match it, and
//! [`build`] which wires the two together.

pub mod layout;
pub mod netlink;

use self::layout::{BR0, LBR0, NodeLayout, TUN0, TUN0_BR, VLINUXBR, VOVSBR, VXLAN0};
use self::netlink::{Link, NetError, Netlink, set_sysctl};

/// The links the dataplane programs and maps refer to.
#[derive(Debug, Clone)]
pub struct NodeDevices {
    pub br0: Link,
    pub tun0: Link,
    pub tun0_br: Link,
    pub vxlan0: Link,
}

/// Creates or adopts every device, address and route of the node. Safe to
/// run on a node that is already built: only what differs changes.
pub async fn build(nl: &Netlink, layout: &NodeLayout) -> Result<NodeDevices, NetError> {
    let mtu = layout.pod_mtu;
    let br0 = nl.ensure_bridge(BR0, mtu).await?;

    let (tun0, tun0_br) = nl.ensure_veth(TUN0, TUN0_BR, mtu, layout.tun0_macs()).await?;
    nl.attach(&tun0_br, &br0).await?;
    nl.ensure_address(&tun0, layout.gateway, layout.prefix(), true).await?;

    let vxlan0 = nl.ensure_vxlan(VXLAN0, layout.vxlan_port, mtu).await?;
    nl.attach(&vxlan0, &br0).await?;

    // lbr0 holds the gateway address for containers outside the SDN (IPAM
    // only); without a prefix route, so the subnet stays routed via tun0.
    let lbr0 = nl.ensure_bridge(LBR0, mtu).await?;
    nl.ensure_address(&lbr0, layout.gateway, layout.prefix(), false).await?;
    let (vlinuxbr, vovsbr) = nl.ensure_veth(VLINUXBR, VOVSBR, mtu, layout.vlinuxbr_macs()).await?;
    nl.attach(&vlinuxbr, &lbr0).await?;
    nl.attach(&vovsbr, &br0).await?;

    // Local pods are on-link (the subnet route of tun0's address) and answer
    // ARP through br0. Remote pods are not: their route goes via a fixed
    // next hop whose neighbour entry is tun0-br's MAC, so the host never ARPs
    // for them and from_host sends them into the tunnel (flannel's VXLAN
    // backend does the same with its VTEP next hops).
    nl.ensure_neighbour(layout.subnet.network(), tun0_br.mac, &tun0).await?;
    nl.ensure_route_via(layout.cluster_network, layout.subnet.network(), &tun0).await?;
    // The node's own connections to cluster IPs go the same way, to be translated in from_host.
    if let Some(services) = layout.service_network {
        nl.ensure_route_via(services, layout.subnet.network(), &tun0).await?;
    }
    set_sysctl("net.ipv4.ip_forward", "1")?;
    Ok(NodeDevices { br0, tun0, tun0_br, vxlan0 })
}
