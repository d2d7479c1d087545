//! Building (or adopting) the node: devices, NAT, programs and maps, inside the node's
//! namespace.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use sdn_cluster::{ClusterNetwork, HostSubnet};

use super::AgentError;
use crate::bpf::{self, Dataplane, Program};
use crate::config::NodeConfig;
use crate::nat;
use crate::net::layout::{NodeLayout, TUN0_BR, VXLAN0};
use crate::net::netlink::{Link, Netlink};
use crate::net::{self, NodeDevices};
use crate::netns::NodeNamespace;

/// What the built node holds, for the pod API and metrics.
pub struct BuiltNode {
    pub layout: NodeLayout,
    /// Ifindex of the underlay interface (in the node's namespace).
    pub underlay_index: u32,
    pub devices: NodeDevices,
    pub dataplane: Arc<Mutex<Dataplane>>,
}

/// Builds (or adopts) the node for `network` and `subnet`, inside the node's namespace,
/// accepting VXLAN from the nodes at `senders` (the registry keeps that set up to date later;
/// a restarted agent must not refuse its peers in between).
pub async fn build_node(
    ns: &NodeNamespace,
    config: &NodeConfig,
    network: &ClusterNetwork,
    subnet: &HostSubnet,
    underlay: &Link,
    node_ip: Ipv4Addr,
    senders: Vec<Ipv4Addr>,
) -> Result<BuiltNode, AgentError> {
    let layout = NodeLayout::new(network, subnet, underlay.mtu)?;
    crate::bpffs::ensure(&config.bpffs)?;
    let (pin_dir, state_dir) = (config.pin_dir.clone(), config.state_dir.clone());
    let in_ns = layout.clone();
    // The programs send with DF and do not fragment: a pod MTU (fixed in the ClusterNetwork)
    // that leaves no room for the outer headers on this underlay needs vxlan0, which fragments.
    let fits = layout.pod_mtu + sdn_cluster::network::VXLAN_OVERHEAD <= underlay.mtu;
    if !fits && !config.kernel_vxlan {
        tracing::warn!(
            "pod MTU {} leaves no room for VXLAN on {} (MTU {}): tunnelling through vxlan0",
            layout.pod_mtu,
            underlay.name,
            underlay.mtu
        );
    }
    let tunnel = Underlay { link: underlay.clone(), node_ip, native: fits && !config.kernel_vxlan, senders };
    ns.run(move || async move { build_in_namespace(&in_ns, &pin_dir, &state_dir, tunnel).await }).await?
}

/// The interface VXLAN goes out of, and whether the programs wrap it themselves (the default)
/// or leave it to `vxlan0` (`--kernel-vxlan`).
struct Underlay {
    link: Link,
    node_ip: Ipv4Addr,
    native: bool,
    senders: Vec<Ipv4Addr>,
}

/// Where the agent keeps the forwarding setting it found, so that cleanup
/// can put it back.
pub fn forwarding_record(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("ip_forward.orig")
}

async fn build_in_namespace(
    layout: &NodeLayout,
    pin_dir: &std::path::Path,
    state_dir: &std::path::Path,
    underlay: Underlay,
) -> Result<BuiltNode, AgentError> {
    let record = forwarding_record(state_dir);
    if !record.exists() {
        let found = crate::net::netlink::sysctl("net.ipv4.ip_forward")?;
        std::fs::create_dir_all(state_dir)
            .and_then(|()| crate::durable::replace(&record, found.as_bytes(), 0o600))
            .map_err(|source| AgentError::State { path: record.clone(), source })?;
    }
    let nl = Netlink::connect()?;
    let devices = net::build(&nl, layout).await?;
    let Underlay { link, node_ip, native, senders } = underlay;
    nat::apply(layout.cluster_network, layout.vxlan_port, &senders)?;
    let mut dataplane = Dataplane::load(pin_dir)?;
    let ports = bpf::Ports { vxlan0: devices.vxlan0.index, tun0_br: devices.tun0_br.index, underlay: link.index };
    dataplane.set_config(bpf::node_config(layout, ports, devices.tun0.mac, node_ip))?;
    dataplane.attach(Program::FromTunnel, VXLAN0)?;
    dataplane.attach(Program::FromHost, TUN0_BR)?;
    // Other nodes may send this one VXLAN from any moment on; what the program leaves (and
    // everything before it is attached) goes to vxlan0. Nodes on this segment may route to
    // its pods directly, whatever this node's own settings: the program takes those packets
    // in either mode.
    dataplane.attach(Program::FromUnderlay, &link.name)?;
    dataplane.set_tunnel(native.then_some(link.index), node_ip, layout.vxlan_port)?;
    Ok(BuiltNode {
        layout: layout.clone(),
        underlay_index: link.index,
        devices,
        dataplane: Arc::new(Mutex::new(dataplane)),
    })
}
