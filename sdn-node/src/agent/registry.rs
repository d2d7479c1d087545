//! Following the registry: this node's `HostSubnet`, every other node's (the tunnel map), and
//! the services the cluster DNS serves, from one informer of the prefix, until the agent stops.

use std::sync::{Arc, Mutex};

use sdn_cluster::informer::Informer;
use sdn_cluster::store::decode;
use sdn_cluster::{ClusterNetwork, HostSubnet, Keys};
use tokio::sync::watch;

use super::build::BuiltNode;
use super::services::ServiceSync;
use super::{AgentError, PodApi};
use crate::bpf::{self, BpfError, Dataplane};
use crate::dns::ClusterDns;
use crate::netns::NodeNamespace;
use crate::remotes;
use crate::status::Status;

/// The cluster as this node's informer holds it.
pub struct Registry {
    pub informer: Informer,
    pub keys: Keys,
    /// This node's name.
    pub node: String,
    pub status: Arc<Status>,
}

impl Registry {
    /// Waits until the cache holds the cluster network and this node's subnet; `None` if the
    /// agent is stopped (or the informer ends) first.
    pub async fn wait_for_subnet(&self, shutdown: &mut watch::Receiver<bool>) -> Option<(ClusterNetwork, HostSubnet)> {
        let mut changes = self.informer.subscribe();
        tracing::info!("node {} waits for its HostSubnet", self.node);
        loop {
            changes.borrow_and_update();
            if let Some(found) = own_subnet(&self.informer, &self.keys, &self.node) {
                return Some(found);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return None },
                _ = shutdown.wait_for(|stop| *stop) => return None,
            }
        }
    }

    /// Keeps the tunnel map and the cluster DNS in step with the registry, and readiness with
    /// etcd, until the agent stops; then lets the pod API drain.
    pub async fn follow(
        &self,
        built: &BuiltNode,
        subnet: HostSubnet,
        mut dns: Option<ClusterDns>,
        mut api: PodApi,
        ns: &NodeNamespace,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let mut changes = self.informer.subscribe();
        let status = &self.status;
        let mut own_subnet_missing = false;
        let mut services = match ServiceSync::adopt(&crate::locked(&built.dataplane)) {
            Ok(services) => Some(services),
            Err(err) => {
                status.reconcile_error();
                tracing::error!("reading the service maps: {err}; services are not load-balanced");
                None
            }
        };
        loop {
            changes.borrow_and_update();
            if let Some(dns) = &mut dns {
                dns.sync(&self.informer, &self.keys);
            }
            if let Some(services) = &mut services {
                match services.sync(&self.informer, &self.keys, &mut crate::locked(&built.dataplane)) {
                    Ok((frontends, backends)) => status.set_services(frontends, backends),
                    Err(err) => {
                        status.reconcile_error();
                        tracing::error!("updating the service maps: {err}");
                    }
                }
            }
            match sync_remotes(&built.dataplane, &self.node, &all_subnets(&self.informer, &self.keys)) {
                Ok(count) => status.set_remotes(count),
                Err(err) => {
                    status.reconcile_error();
                    tracing::error!("updating the tunnel map: {err}");
                }
            }
            let missing =
                own_subnet(&self.informer, &self.keys, &self.node).is_none_or(|(_, s)| s.subnet != subnet.subnet);
            if missing && !own_subnet_missing {
                tracing::warn!("node {}: its HostSubnet {} is gone or changed in etcd", self.node, subnet.subnet);
            }
            own_subnet_missing = missing;
            status.set_ready(self.informer.is_connected());
            tokio::select! {
                served = &mut api => {
                    let reason = match served {
                        Ok(Ok(())) => {
                            // The pod API saw the stop first.
                            super::drain(async {}, ns).await;
                            return Ok(());
                        }
                        Ok(Err(err)) => err.to_string(),
                        Err(err) => err.to_string(),
                    };
                    return Err(AgentError::PodApi(reason));
                }
                changed = changes.changed() => if changed.is_err() { return Ok(()) },
                _ = shutdown.wait_for(|stop| *stop) => {
                    super::drain(async { let _ = api.await; }, ns).await;
                    return Ok(());
                }
                // Readiness follows etcd reachability even without events.
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            }
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
    let mut dp = crate::locked(dataplane);
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
