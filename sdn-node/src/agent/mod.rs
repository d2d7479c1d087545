//! The agent's life: register the node, wait for its `HostSubnet`, build
//! the devices, NAT and programs, then keep the tunnel map in step with the
//! cluster's subnets until told to stop.

mod build;
mod registry;
mod services;
pub mod sim;
mod subnets;

use std::net::Ipv4Addr;
use std::sync::Arc;

use sdn_cluster::Node;
use sdn_cluster::etcd::Backoff;
use sdn_cluster::store::{Store, StoreError};
use tokio::sync::watch;

pub use build::{BuiltNode, build_node, forwarding_record};
use registry::Registry;

use crate::bpf::BpfError;
use crate::config::NodeConfig;
use crate::dns::{ClusterDns, DnsError};
use crate::install::{self, Conflist, InstallError};
use crate::ipam::{IpamError, IpamStore};
use crate::nat::NatError;
use crate::net::layout::LayoutError;
use crate::net::netlink::{Link, NetError, Netlink};
use crate::netns::{NetnsError, NodeNamespace};
use crate::podapi::Dns;
use crate::pods::{Pods, ipam_dir};
use crate::status::Status;

/// The pod API's end: what it stopped with.
type PodApi = tokio::sync::oneshot::Receiver<std::io::Result<()>>;

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
    let (ip, underlay_link) = find_underlay(&ns, config.ip).await?;
    let store = Store::open(&config.etcd).await?;
    let node = Node { name: config.name.clone(), ip: ip.into() };
    tracing::info!(
        "node {} at {ip} (underlay {}, MTU {}), etcd at {}",
        node.name,
        underlay_link.name,
        underlay_link.mtu,
        config.etcd.endpoints_display()
    );
    // The registry is listed while the node registers, not after: when a whole cluster starts
    // at once, each list then holds the few subnets allocated so far instead of most of them,
    // and the rest arrive as watch events.
    let registry = Registry {
        informer: store.agent_informer(),
        keys: store.keys().clone(),
        node: node.name.clone(),
        node_ip: ip,
        status: status.clone(),
    };
    register(&store, &node).await?;
    let Some((network, subnet)) = registry.wait_for_subnet(&mut shutdown).await else { return Ok(()) };
    let senders = registry.peers(&subnet).map(|p| p.senders.into_keys().collect()).unwrap_or_default();
    let built = build_node(&ns, &config, &network, &subnet, &underlay_link, ip, senders).await?;
    tracing::info!(
        "node {} built: subnet {}, gateway {} on tun0, pod MTU {}",
        node.name,
        built.layout.subnet,
        built.layout.gateway,
        built.layout.pod_mtu
    );
    status.set_dataplane(built.dataplane.clone());
    let api = start_pods(&config, &ns, &built, &store, &status, &shutdown).await?;
    // Runtimes find the network only once the agent can serve it.
    install_cni(&config)?;
    // The cluster DNS answers on the gateway address, which exists now that the node is built.
    let dns = match &config.dns {
        Some(args) => Some(ClusterDns::start(args, &config.cluster_domain, &network, built.layout.gateway, ip, &ns)?),
        None => None,
    };
    registry.follow(&built, subnet, dns, api, &ns, shutdown).await
}

/// The node's underlay address and link, as found in the node's namespace.
async fn find_underlay(ns: &NodeNamespace, configured: Option<Ipv4Addr>) -> Result<(Ipv4Addr, Link), AgentError> {
    ns.run(move || async move {
        let nl = Netlink::connect()?;
        underlay(&nl, configured).await
    })
    .await?
}

/// The node's pods: their records, adopted from an earlier agent; their etcd records, the
/// collection of pods whose namespace is gone, and the pod API, started. Returns the pod API's
/// end.
async fn start_pods(
    config: &NodeConfig,
    ns: &NodeNamespace,
    built: &BuiltNode,
    store: &Store,
    status: &Status,
    shutdown: &watch::Receiver<bool>,
) -> Result<PodApi, AgentError> {
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
    tokio::spawn(crate::podsync::run(store.clone(), config.name.clone(), pods.clone(), shutdown.clone()));
    tokio::spawn(crate::pods::gone::run(pods.clone(), shutdown.clone()));
    tokio::spawn(crate::pods::offload::run(pods.clone(), shutdown.clone()));
    let state_error = |source| AgentError::State { path: config.socket.clone(), source };
    let listener = crate::podapi::server::bind(&config.socket).map_err(state_error)?;
    crate::podapi::server::spawn(listener, pods, shutdown.clone()).map_err(state_error)
}

/// The CNI plugin and configuration list, unless the runtime's files are managed otherwise.
fn install_cni(config: &NodeConfig) -> Result<(), AgentError> {
    let Some(cni) = &config.cni else { return Ok(()) };
    let conflist = Conflist {
        network: cni.cni_network.clone(),
        cni_version: cni.cni_version.clone(),
        socket: config.socket.clone(),
        chain: cni.cni_chain.clone(),
    };
    Ok(install::install(&install::bundled_plugin(), &cni.cni_bin_dir, &cni.cni_conflist, &conflist)?)
}
