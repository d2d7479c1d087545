//! Following the registry: this node's `HostSubnet`, every other node's (the tunnel map), and
//! the services the cluster DNS serves, from one informer of the prefix, until the agent stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::Ipv4Network;
use sdn_cluster::informer::Informer;
use sdn_cluster::store::decode;
use sdn_cluster::{ClusterNetwork, HostSubnet, Keys};
use tokio::sync::watch;

use super::build::BuiltNode;
use super::services::ServiceSync;
use super::subnets::{Change, SubnetCache};
use super::{AgentError, PodApi};
use crate::bpf::BpfError;
use crate::dns::ClusterDns;
use crate::maps::FlowMaps;
use crate::nat;
use crate::net::netlink::Netlink;
use crate::netns::NodeNamespace;
use crate::remotes::{self, Admission, Peers, Refusal, Touched, Transport};
use crate::status::Status;

/// The cluster as this node's informer holds it.
pub struct Registry {
    pub informer: Informer,
    pub keys: Keys,
    /// This node's name.
    pub node: String,
    /// This node's underlay address.
    pub node_ip: Ipv4Addr,
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
        let mut trust = Trust::default();
        let (mut seen, mut admitted) = (SubnetCache::default(), None);
        let mut services = match ServiceSync::adopt(&crate::locked(&built.dataplane), built.layout.service_network) {
            Ok(services) => Some(services),
            Err(err) => {
                status.reconcile_error();
                tracing::error!("reading the service maps: {err}; services are not load-balanced");
                None
            }
        };
        let mut service_network = ServiceNetwork { revision: None, in_use: built.layout.service_network };
        loop {
            changes.borrow_and_update();
            if let Some(services) = &mut services
                && let Err(err) = self.follow_service_network(built, services, &mut service_network)
            {
                status.reconcile_error();
                tracing::error!("taking the wider service network: {err}");
            }
            if let Some(dns) = &mut dns {
                dns.sync(&self.informer, &self.keys);
            }
            if let Some(services) = &mut services {
                match services.sync(&self.informer, &self.keys, &mut *crate::locked(&built.dataplane)) {
                    Ok((frontends, backends)) => status.set_services(frontends, backends),
                    Err(err) => {
                        status.reconcile_error();
                        tracing::error!("updating the service maps: {err}");
                    }
                }
            }
            // Unchanged peers are synced again (all of them) only when their on-link answers
            // are due.
            let touched = self
                .peers_changed(&subnet, &mut seen, &mut admitted)
                .or_else(|| admitted.as_ref().filter(|a| trust.links_due(a.peers())).map(|_| Touched::All));
            if let (Some(touched), Some(admission)) = (touched, admitted.as_ref()) {
                let peers = admission.peers();
                match trust.sync(built, ns, peers, &touched).await {
                    Ok((routes, senders)) => status.set_peers(routes, senders, peers.refused.len()),
                    Err(err) => {
                        seen.forget();
                        status.reconcile_error();
                        tracing::error!("updating the tunnel map: {err}");
                    }
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

/// The service network the programs and the service maps use, and the revision of the network
/// record it was last compared with.
struct ServiceNetwork {
    revision: Option<i64>,
    in_use: Option<Ipv4Network>,
}

/// The cluster network, as the cache holds it.
fn cluster_network(informer: &Informer, keys: &Keys) -> Option<ClusterNetwork> {
    let key = keys.network();
    decode(&key, &informer.read().get(&key)?.value).ok()
}

/// The cluster network and this node's subnet, as the cache holds them.
fn own_subnet(informer: &Informer, keys: &Keys, name: &str) -> Option<(ClusterNetwork, HostSubnet)> {
    let cache = informer.read();
    // The subnet first: a waiting node wakes for every other node's subnet, and a lookup that
    // misses is cheaper than decoding the network each time.
    let subnet_key = keys.subnet(name);
    let subnet_entry = cache.get(&subnet_key)?;
    let network_key = keys.network();
    let network: ClusterNetwork = decode(&network_key, &cache.get(&network_key)?.value).ok()?;
    let subnet: HostSubnet = decode(&subnet_key, &subnet_entry.value).ok()?;
    Some((network, subnet))
}

impl Registry {
    /// Takes the service network the cache holds if it is not the one in use (the master takes
    /// a wider one while nodes run): the programs look up its destinations first, then the
    /// service maps get the frontends it adds. The network record is decoded only when it
    /// changed, not on every registry event.
    fn follow_service_network(
        &self,
        built: &BuiltNode,
        services: &mut ServiceSync,
        followed: &mut ServiceNetwork,
    ) -> Result<(), BpfError> {
        let key = self.keys.network();
        let revision = self.informer.read().get(&key).map(|entry| entry.mod_revision);
        if revision.is_none() || revision == followed.revision {
            return Ok(());
        }
        let Some(network) = cluster_network(&self.informer, &self.keys) else {
            followed.revision = revision;
            return Ok(());
        };
        let wanted = network.ipv4_service_network();
        if wanted == followed.in_use {
            followed.revision = revision;
            return Ok(());
        }
        let mut dataplane = crate::locked(&built.dataplane);
        let config = dataplane.config()?;
        dataplane.set_config(crate::bpf::with_service_network(config, wanted))?;
        tracing::info!(
            "service network now {}",
            wanted.map_or_else(|| network.service_network.to_string(), |n| n.to_string())
        );
        services.set_network(wanted);
        *followed = ServiceNetwork { revision, in_use: wanted };
        Ok(())
    }

    /// The other nodes this one believes, checked against the cluster network and `own`; `None`
    /// while the cache lacks the network.
    pub fn peers(&self, own: &HostSubnet) -> Option<Peers> {
        let mut admitted = None;
        self.peers_changed(own, &mut SubnetCache::default(), &mut admitted)?;
        admitted.map(|admission| admission.peers().clone())
    }

    /// Brings `admitted` up to the registry and says what changed in it; `None` when no
    /// `HostSubnet` (nor the network) changed since `seen` last looked, or the cache lacks the
    /// network. A join or a leave updates `admitted`; anything else admits every record again.
    pub fn peers_changed(
        &self,
        own: &HostSubnet,
        seen: &mut SubnetCache,
        admitted: &mut Option<Admission>,
    ) -> Option<Touched> {
        let change = seen.changed(&self.informer.read(), &self.keys);
        let updated = match (change, admitted.as_mut()) {
            (Change::Unchanged, Some(_)) => return None,
            (Change::Added(records), Some(admission)) => records.iter().all(|(r, at)| admission.add(r, *at)),
            (Change::Removed(nodes), Some(admission)) => nodes.iter().all(|node| admission.remove(node)),
            _ => false,
        };
        if !updated {
            // Decoded only here: a join or a leave does not need it.
            let Some(network) = cluster_network(&self.informer, &self.keys) else {
                // Looked at again once the network is there.
                seen.forget();
                return None;
            };
            let mut admission = Admission::new(&network, own, self.node_ip);
            for (record, revision) in seen.records() {
                admission.add(&record, revision);
            }
            *admitted = Some(admission);
        }
        admitted.as_mut().map(Admission::take_touched)
    }
}

/// What the follow loop last made of the registry: refusals already logged, the tunnel
/// senders the nftables set holds, and which nodes the underlay reaches on-link.
#[derive(Default)]
struct Trust {
    logged: BTreeSet<Refusal>,
    in_nftables: Option<BTreeSet<Ipv4Addr>>,
    links: Links,
}

/// Which node addresses the underlay reaches on-link, looked up with the kernel's routes. Every
/// address is looked up again after [`Links::FRESH`]: a node whose route changed (a new router
/// between them, another segment) moves between direct and tunnelled that soon.
#[derive(Default)]
struct Links {
    on_link: BTreeMap<Ipv4Addr, bool>,
    looked_up: Option<Instant>,
}

impl Links {
    const FRESH: Duration = Duration::from_secs(30);

    /// Whether the answers are old enough to be looked up again.
    fn stale(&self) -> bool {
        self.looked_up.is_none_or(|at| at.elapsed() >= Self::FRESH)
    }

    /// The on-link ones among `nodes`, looking up those not known (or all, when stale) in the
    /// node's namespace.
    async fn on_link(
        &mut self,
        ns: &NodeNamespace,
        underlay: u32,
        nodes: impl Iterator<Item = Ipv4Addr>,
    ) -> Result<BTreeSet<Ipv4Addr>, AgentError> {
        let nodes: Vec<Ipv4Addr> = nodes.collect();
        if self.stale() {
            self.on_link.clear();
            self.looked_up = Some(Instant::now());
        }
        let unknown: Vec<Ipv4Addr> = nodes.iter().copied().filter(|ip| !self.on_link.contains_key(ip)).collect();
        if !unknown.is_empty() {
            let found = ns
                .run(move || async move {
                    let nl = Netlink::connect()?;
                    let mut found = Vec::with_capacity(unknown.len());
                    for ip in unknown {
                        found.push((ip, remotes::on_link(nl.route_to(ip).await?, underlay)));
                    }
                    Ok::<_, AgentError>(found)
                })
                .await??;
            self.on_link.extend(found);
        }
        Ok(nodes.into_iter().filter(|ip| self.on_link.get(ip) == Some(&true)).collect())
    }
}

impl Trust {
    /// Whether `peers` must be synced again though the registry did not change: direct routing
    /// is on and the on-link answers are stale.
    fn links_due(&self, peers: &Peers) -> bool {
        peers.direct_routing && self.links.stale()
    }

    /// Brings the route and sender maps and the nftables set in line with `peers`, where
    /// `touched` says they may differ; the routes and senders now in the maps.
    async fn sync(
        &mut self,
        built: &BuiltNode,
        ns: &NodeNamespace,
        peers: &Peers,
        touched: &Touched,
    ) -> Result<(usize, usize), AgentError> {
        for refusal in peers.refused.difference(&self.logged) {
            tracing::warn!("refusing {refusal}");
        }
        if self.logged != peers.refused {
            self.logged = peers.refused.clone();
        }
        // Without direct routing no route is looked up: the tunnel reaches every node.
        let on_link = match peers.direct_routing {
            true => self.links.on_link(ns, built.underlay_index, peers.senders.keys().copied()).await?,
            false => BTreeSet::new(),
        };
        let transport = |ip| remotes::transport(peers.direct_routing, &on_link, ip);
        let counts = sync_maps(&mut *crate::locked(&built.dataplane), peers, transport, touched)?;
        if touched.senders() {
            let senders: BTreeSet<Ipv4Addr> = peers.senders.keys().copied().collect();
            if self.in_nftables.as_ref() != Some(&senders) {
                let list: Vec<Ipv4Addr> = senders.iter().copied().collect();
                ns.run(move || async move { nat::set_nodes(&list) }).await??;
                self.in_nftables = Some(senders);
            }
        }
        Ok(counts)
    }
}

/// Brings the routes and tunnel senders in `maps` in line with `peers`, each route sent as
/// `transport` says: all of them, or only what `touched` names. The routes and senders the
/// maps then hold.
pub fn sync_maps(
    maps: &mut impl FlowMaps,
    peers: &Peers,
    transport: impl Fn(Ipv4Addr) -> Transport,
    touched: &Touched,
) -> Result<(usize, usize), BpfError> {
    let (routes, senders) = match touched {
        Touched::All => {
            let routes = peers.routes.iter().map(|(subnet, ip)| (*subnet, (*ip, transport(*ip)))).collect();
            let senders = remotes::diff(&peers.senders, &maps.nodes()?);
            (remotes::diff(&routes, &maps.remotes()?), senders)
        }
        Touched::Some { routes, senders } => {
            let wanted_route = |subnet: &Ipv4Network| peers.routes.get(subnet).map(|ip| (*ip, transport(*ip)));
            (
                remotes::Changes {
                    upsert: routes.iter().filter_map(|s| wanted_route(s).map(|route| (*s, route))).collect(),
                    remove: routes.iter().filter(|s| !peers.routes.contains_key(s)).copied().collect(),
                },
                remotes::Changes {
                    upsert: senders.iter().filter_map(|ip| peers.senders.get(ip).map(|s| (*ip, *s))).collect(),
                    remove: senders.iter().filter(|ip| !peers.senders.contains_key(ip)).copied().collect(),
                },
            )
        }
    };
    // Senders first: a new node's packets are accepted before this node sends it any.
    for (ip, subnet) in &senders.upsert {
        maps.upsert_node(*ip, *subnet)?;
    }
    for (subnet, (ip, path)) in &routes.upsert {
        maps.upsert_remote(*subnet, *ip, *path)?;
        match path {
            Transport::Tunnel => tracing::info!("remote subnet {subnet} via {ip} (VXLAN)"),
            Transport::Direct => tracing::info!("remote subnet {subnet} via {ip} (direct, on this segment)"),
        }
    }
    for subnet in &routes.remove {
        maps.remove_remote(*subnet)?;
        tracing::info!("remote subnet {subnet} withdrawn");
    }
    for ip in &senders.remove {
        maps.remove_node(*ip)?;
    }
    // Every write succeeded: the maps hold what was wanted.
    Ok((peers.routes.len(), peers.senders.len()))
}
