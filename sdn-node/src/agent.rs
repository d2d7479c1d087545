//! The agent's life: register the node, wait for its `HostSubnet`, build
//! the devices, NAT and programs, then keep the tunnel map in step with the
//! cluster's subnets until told to stop.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use sdn_cluster::etcd::Backoff;
use sdn_cluster::informer::Informer;
use sdn_cluster::store::{Store, StoreError, decode};
use sdn_cluster::{ClusterNetwork, HostSubnet, Keys, Node};
use tokio::sync::watch;

use crate::bpf::{self, BpfError, Dataplane, Program};
use crate::config::NodeConfig;
use crate::dns::{ClusterDns, DnsError};
use crate::install::{self, Conflist, InstallError};
use crate::ipam::{IpamError, IpamStore};
use crate::nat::{self, NatError};
use crate::net::layout::{LayoutError, NodeLayout, TUN0_BR, VXLAN0};
use crate::net::netlink::{Link, NetError, Netlink};
use crate::net::{self, NodeDevices};
use crate::netns::{NetnsError, NodeNamespace};
use crate::podapi::Dns;
use crate::pods::{Pods, ipam_dir};
use crate::remotes;
use crate::status::Status;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Etcd(#[from] sdn_cluster::etcd::EtcdError),
    #[error("registering the node: {0}")]
    Register(StoreError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Nat(#[from] NatError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("no underlay: give --node-ip, or give this namespace a default route")]
    NoUnderlay,
    #[error("--node-ip {0} is not an address of any interface here")]
    AddressNotHere(Ipv4Addr),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Bpffs(#[from] crate::bpffs::BpffsError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("state {path}: {source}")]
    State { path: std::path::PathBuf, source: std::io::Error },
    #[error("the pod API stopped: {0}")]
    PodApi(String),
    #[error(transparent)]
    Dns(#[from] DnsError),
}

/// The node's underlay address and the link that holds it.
async fn underlay(nl: &Netlink, configured: Option<Ipv4Addr>) -> Result<(Ipv4Addr, Link), AgentError> {
    if let Some(ip) = configured {
        let link = nl.link_with_address(ip).await?.ok_or(AgentError::AddressNotHere(ip))?;
        return Ok((ip, link));
    }
    let link = nl.default_route_link().await?.ok_or(AgentError::NoUnderlay)?;
    let ip = nl.ipv4_addresses(&link).await?.into_iter().next().ok_or(AgentError::NoUnderlay)?.ip();
    Ok((ip, link))
}

/// Registers the node, waiting out an unreachable etcd. Refusals (a name or
/// IP conflict) are errors: retrying cannot fix them.
async fn register(store: &Store, node: &Node) -> Result<(), AgentError> {
    let mut backoff = Backoff::default();
    loop {
        match store.register_node(node).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Etcd(err)) => {
                let delay = backoff.next_delay();
                tracing::warn!("registering node {}: {err}; retrying in {delay:?}", node.name);
                tokio::time::sleep(delay).await;
            }
            Err(err) => return Err(AgentError::Register(err)),
        }
    }
}

/// The cluster network and this node's subnet, as the cache holds them.
fn own_subnet(informer: &Informer, keys: &Keys, name: &str) -> Option<(ClusterNetwork, HostSubnet)> {
    let cache = informer.read();
    let network_key = keys.network();
    let network: ClusterNetwork = decode(&network_key, &cache.get(&network_key)?.value).ok()?;
    let subnet_key = keys.subnet(name);
    let subnet: HostSubnet = decode(&subnet_key, &cache.get(&subnet_key)?.value).ok()?;
    Some((network, subnet))
}

/// Every readable `HostSubnet` in the cache.
fn all_subnets(informer: &Informer, keys: &Keys) -> Vec<HostSubnet> {
    let cache = informer.read();
    cache.range(&keys.subnets()).filter_map(|(key, entry)| decode(key, &entry.value).ok()).collect()
}

/// Brings the tunnel map in line with the cluster's subnets.
fn sync_remotes(dataplane: &Mutex<Dataplane>, own: &str, subnets: &[HostSubnet]) -> Result<usize, BpfError> {
    let mut dp = crate::locked(&dataplane);
    let current: Vec<_> =
        dp.remotes()?.into_iter().map(|(subnet, remote)| (subnet, bpf::key_ip(remote.node_ip))).collect();
    let changes = remotes::diff(own, subnets, &current);
    for node in &changes.skipped {
        tracing::warn!("node {node} has an IPv6 address; the VXLAN underlay is IPv4 only, so it is not reachable");
    }
    for (subnet, ip) in &changes.upsert {
        dp.upsert_remote(*subnet, *ip)?;
        tracing::info!("remote subnet {subnet} via {ip}");
    }
    for subnet in &changes.remove {
        dp.remove_remote(*subnet)?;
        tracing::info!("remote subnet {subnet} withdrawn");
    }
    Ok(dp.remotes()?.len())
}

/// What the built node holds, for the pod API and metrics.
pub struct BuiltNode {
    pub layout: NodeLayout,
    pub devices: NodeDevices,
    pub dataplane: Arc<Mutex<Dataplane>>,
}

/// Builds (or adopts) the node for `network` and `subnet`, inside the
/// node's namespace.
pub async fn build_node(
    ns: &NodeNamespace,
    config: &NodeConfig,
    network: &ClusterNetwork,
    subnet: &HostSubnet,
    underlay: &Link,
    node_ip: Ipv4Addr,
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
    let tunnel = Underlay { link: underlay.clone(), node_ip, native: fits && !config.kernel_vxlan };
    ns.run(move || async move { build_in_namespace(&in_ns, &pin_dir, &state_dir, tunnel).await }).await?
}

/// The interface VXLAN goes out of, and whether the programs wrap it themselves (the default)
/// or leave it to `vxlan0` (`--kernel-vxlan`).
struct Underlay {
    link: Link,
    node_ip: Ipv4Addr,
    native: bool,
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
            .and_then(|()| std::fs::write(&record, found))
            .map_err(|source| AgentError::State { path: record.clone(), source })?;
    }
    let nl = Netlink::connect()?;
    let devices = net::build(&nl, layout).await?;
    nat::apply(layout.cluster_network, layout.vxlan_port)?;
    let mut dataplane = Dataplane::load(pin_dir)?;
    dataplane.set_config(bpf::node_config(
        layout.gateway,
        layout.cluster_network,
        devices.vxlan0.index,
        devices.tun0_br.index,
        devices.tun0.mac,
    ))?;
    dataplane.attach(Program::FromTunnel, VXLAN0)?;
    dataplane.attach(Program::FromHost, TUN0_BR)?;
    let Underlay { link, node_ip, native } = underlay;
    if native {
        // Other nodes may send this one VXLAN from any moment on; what the program leaves
        // (and everything before it is attached) goes to vxlan0.
        dataplane.attach(Program::FromUnderlay, &link.name)?;
        dataplane.set_tunnel(Some(link.index), node_ip, layout.vxlan_port)?;
    } else {
        dataplane.set_tunnel(None, node_ip, layout.vxlan_port)?;
        dataplane.detach(&link.name)?;
    }
    Ok(BuiltNode { layout: layout.clone(), devices, dataplane: Arc::new(Mutex::new(dataplane)) })
}

/// On a stop, lets the pod API finish the requests it is working on, then runs the veth
/// deletions its DELs queued, so a stop loses nothing it has answered. Bounded: a stop must
/// stop, and the next agent deletes what is left (see `Pods::adopt`).
async fn drain(api_done: impl Future<Output = ()>, ns: &NodeNamespace) {
    let drained = async {
        api_done.await;
        ns.run(|| async {}).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), drained).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!("stopping: the queued veth deletions did not run: {err}"),
        Err(_) => tracing::warn!("stopping: pod requests still running after 5 s are left to the next agent"),
    }
}

/// Runs the agent until `shutdown` fires. The node is left as it is: pinned
/// programs and maps keep traffic flowing until the next agent adopts them.
pub async fn run(
    config: NodeConfig,
    ns: NodeNamespace,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let configured_ip = config.ip;
    let (ip, underlay_link) = ns
        .run(move || async move {
            let nl = Netlink::connect()?;
            underlay(&nl, configured_ip).await
        })
        .await??;
    let store = Store::open(&config.etcd).await?;
    let node = Node { name: config.name.clone(), ip: ip.into() };
    tracing::info!(
        "node {} at {ip} (underlay {}, MTU {}), etcd at {}",
        node.name,
        underlay_link.name,
        underlay_link.mtu,
        config.etcd.endpoints_display()
    );
    register(&store, &node).await?;

    let informer = store.informer();
    let keys = store.keys().clone();
    let mut changes = informer.subscribe();
    tracing::info!("node {} waits for its HostSubnet", node.name);
    let (network, subnet) = loop {
        if let Some(found) = own_subnet(&informer, &keys, &node.name) {
            break found;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(()) },
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        }
    };
    let built = build_node(&ns, &config, &network, &subnet, &underlay_link, ip).await?;
    tracing::info!(
        "node {} built: subnet {}, gateway {} on tun0, pod MTU {}",
        node.name,
        built.layout.subnet,
        built.layout.gateway,
        built.layout.pod_mtu
    );
    status.set_dataplane(built.dataplane.clone());
    let ipam = IpamStore::open(
        &ipam_dir(&config.state_dir),
        built.layout.subnet,
        built.layout.gateway,
        crate::pods::record::record_ipam_key,
    )?;
    // The cluster DNS of each node answers on its gateway address.
    let dns = Dns { nameservers: vec![built.layout.gateway], domain: config.cluster_domain.clone() };
    let pods = Arc::new(Pods::new(
        ns.clone(),
        built.layout.clone(),
        ipam,
        built.dataplane.clone(),
        dns,
        built.devices.br0.clone(),
    ));
    match pods.adopt().await {
        Ok((0, 0)) => {}
        Ok((adopted, stray)) => tracing::info!("adopted {adopted} pods, deleted {stray} veths of detached pods"),
        Err(err) => {
            status.reconcile_error();
            tracing::error!("adopting the pods of an earlier agent: {err}");
        }
    }
    tokio::spawn(crate::podsync::run(store.clone(), node.name.clone(), pods.clone(), shutdown.clone()));
    tokio::spawn(crate::pods::gone::run(pods.clone(), shutdown.clone()));
    let listener = crate::podapi::server::bind(&config.socket)
        .map_err(|source| AgentError::State { path: config.socket.clone(), source })?;
    let mut api = crate::podapi::server::spawn(listener, pods, shutdown.clone())
        .map_err(|source| AgentError::State { path: config.socket.clone(), source })?;
    // Runtimes find the network only once the agent can serve it.
    if let Some(cni) = &config.cni {
        let conflist = Conflist {
            network: cni.cni_network.clone(),
            cni_version: cni.cni_version.clone(),
            socket: config.socket.clone(),
            chain: cni.cni_chain.clone(),
        };
        install::install(&install::bundled_plugin(), &cni.cni_bin_dir, &cni.cni_conflist, &conflist)?;
    }
    // The cluster DNS answers on the gateway address, which exists now that the node is built.
    let mut dns = match &config.dns {
        Some(args) => Some(ClusterDns::start(args, &config.cluster_domain, &network, built.layout.gateway, ip, &ns)?),
        None => None,
    };
    let mut own_subnet_missing = false;
    loop {
        changes.borrow_and_update();
        if let Some(dns) = &mut dns {
            dns.sync(&informer, &keys);
        }
        match sync_remotes(&built.dataplane, &node.name, &all_subnets(&informer, &keys)) {
            Ok(count) => status.set_remotes(count),
            Err(err) => {
                status.reconcile_error();
                tracing::error!("updating the tunnel map: {err}");
            }
        }
        let missing = own_subnet(&informer, &keys, &node.name).is_none_or(|(_, s)| s.subnet != subnet.subnet);
        if missing && !own_subnet_missing {
            tracing::warn!("node {}: its HostSubnet {} is gone or changed in etcd", node.name, subnet.subnet);
        }
        own_subnet_missing = missing;
        status.set_ready(informer.is_connected());
        tokio::select! {
            served = &mut api => {
                let reason = match served {
                    Ok(Ok(())) => {
                        // The pod API saw the stop first.
                        drain(async {}, &ns).await;
                        return Ok(());
                    }
                    Ok(Err(err)) => err.to_string(),
                    Err(err) => err.to_string(),
                };
                return Err(AgentError::PodApi(reason));
            }
            changed = changes.changed() => if changed.is_err() { return Ok(()) },
            _ = shutdown.wait_for(|stop| *stop) => {
                drain(async { let _ = api.await; }, &ns).await;
                return Ok(());
            }
            // Readiness follows etcd reachability even without events.
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}
