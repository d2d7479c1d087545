//! Simulated agents: the agent's control-plane side (registration, the informer, the checked
//! registry and the routes it makes, the service maps, the DNS index) against [`MemoryMaps`],
//! a thousand to a process, each with its own etcd watch (`make bench-scale`). The registry,
//! route, service and DNS code is the real agent's; only the devices, programs and sockets are
//! left out.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sdn_cluster::Node;
use sdn_cluster::store::Store;
use sdn_dns::Index;
use tokio::sync::watch;

use super::registry::{Registry, sync_maps};
use super::services::ServiceSync;
use super::subnets::SubnetCache;
use super::{AgentError, register};
use crate::dns::feed::Feed;
use crate::maps::MemoryMaps;
use crate::remotes::Transport;
use crate::status::Status;

/// What a simulated agent holds, for the one who watches it.
#[derive(Default)]
pub struct Simulated {
    pub maps: MemoryMaps,
    /// The DNS index once the node has its subnet (the cluster network configures it).
    pub dns: Option<Index>,
    /// When the DNS index last changed.
    pub dns_changed: Option<Instant>,
    /// When the node found its own subnet.
    pub subnet_at: Option<Instant>,
    /// When the node's registration was written.
    pub registered_at: Option<Instant>,
}

/// Runs one simulated agent for `node` until `shutdown` fires.
pub async fn simulate(
    store: Store,
    node: Node,
    state: Arc<Mutex<Simulated>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let node_ip = match node.ip {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    // As the agent does: listed while it registers.
    let registry = Registry {
        informer: store.agent_informer(),
        keys: store.keys().clone(),
        node: node.name.clone(),
        node_ip,
        status: Arc::new(Status::default()),
    };
    register(&store, &node).await?;
    crate::locked(&state).registered_at = Some(Instant::now());
    let Some((network, subnet)) = registry.wait_for_subnet(&mut shutdown).await else { return Ok(()) };
    let config = sdn_dns::Config::for_network(&network);
    let index = Index::new(config).map_err(crate::dns::DnsError::from)?;
    {
        let mut held = crate::locked(&state);
        held.subnet_at = Some(Instant::now());
        held.dns = Some(index);
    }
    let (mut services, mut feed, mut seen) =
        (ServiceSync::new(network.ipv4_service_network()), Feed::default(), SubnetCache::default());
    let mut admitted = None;
    let mut dns_seen = None;
    let mut changes = registry.informer.subscribe();
    loop {
        changes.borrow_and_update();
        {
            let mut held = crate::locked(&state);
            let held = &mut *held;
            if let Some(touched) = registry.peers_changed(&subnet, &mut seen, &mut admitted)
                && let Some(admission) = &admitted
                && let Err(err) = sync_maps(&mut held.maps, admission.peers(), |_| Transport::Tunnel, &touched)
            {
                seen.forget();
                tracing::error!("node {}: the routes: {err}", node.name);
            }
            if let Err(err) = services.sync(&registry.informer, &registry.keys, &mut held.maps) {
                tracing::error!("node {}: the service maps: {err}", node.name);
            }
            let cache = registry.informer.read();
            let (service_dir, endpoints_dir) = (registry.keys.services(), registry.keys.endpoints());
            let fingerprint = Some((cache.fingerprint(&service_dir), cache.fingerprint(&endpoints_dir)));
            if let Some(index) = &mut held.dns
                && fingerprint != dns_seen
            {
                dns_seen = fingerprint;
                let (services, endpoints) = (cache.range(&service_dir), cache.range(&endpoints_dir));
                let synced = feed.sync(index, &service_dir, services, &endpoints_dir, endpoints);
                if synced.changed > 0 {
                    held.dns_changed = Some(Instant::now());
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(()) },
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        }
    }
}
