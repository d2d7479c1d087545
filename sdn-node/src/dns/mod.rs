//! The node's cluster DNS (seed 003 §4.1.1): the shell around `sdn-dns`, which holds the
//! answers. [`feed`] keeps its index level with the services and endpoints in etcd,
//! [`server`] listens on the gateway address (UDP and TCP), [`upstream`] forwards names
//! outside the cluster.

mod cache;
pub mod feed;
pub mod limits;
pub mod server;
pub mod upstream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ipnetwork::IpNetwork;
use sdn_cluster::informer::Informer;
use sdn_cluster::{ClusterNetwork, Keys};
use sdn_dns::{AccessList, Index};

use crate::config::DnsArgs;
use crate::netns::NodeNamespace;
use feed::Feed;
use limits::{PerClient, Rrl};
use server::Shared;
use upstream::Upstreams;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cluster DNS: {0}")]
    Config(#[from] sdn_dns::ConfigError),
    #[error(transparent)]
    Bind(#[from] server::BindError),
    #[error("--dns-rrl-*: {0}")]
    Rrl(#[from] sdn_dns::rrl::RrlError),
    #[error("reading the upstream resolvers from {path}: {source}")]
    ResolvConf { path: std::path::PathBuf, source: std::io::Error },
}

/// The running server: its listener tasks (stopped when this is dropped) and the feed of its
/// index.
pub struct ClusterDns {
    shared: Arc<Shared>,
    feed: Feed,
    /// Where the cache's change log stood when the index was last compared with it (not the
    /// cache's revision: a watch stream behind another adds events without raising it).
    synced_at: Option<u64>,
    /// The fingerprints of `services/` and `endpoints/` at the last sync.
    seen: Option<((usize, i64), (usize, i64))>,
    _listeners: server::Listeners,
}

impl ClusterDns {
    /// Opens the listeners on `gateway` and the configured addresses inside the node's
    /// namespace and starts answering (from an empty index until the first [`Self::sync`]).
    pub fn start(
        args: &DnsArgs,
        zone: &str,
        network: &ClusterNetwork,
        gateway: Ipv4Addr,
        node_ip: Ipv4Addr,
        ns: &NodeNamespace,
    ) -> Result<Self, DnsError> {
        let servers = if args.no_dns_upstream {
            Vec::new()
        } else if args.dns_upstreams.is_empty() {
            let path = &args.dns_resolv_conf;
            let text =
                std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf { path: path.clone(), source })?;
            upstream::from_resolv_conf(&text)
        } else {
            args.dns_upstreams.clone()
        };
        let config = sdn_dns::Config {
            zone: zone.to_owned(),
            ttl: args.dns_ttl,
            negative_ttl: args.dns_negative_ttl,
            recursion_available: !servers.is_empty(),
            ..sdn_dns::Config::for_network(network)
        };
        let index = Index::new(config)?;
        let allowed = [IpNetwork::V4(network.network), IpNetwork::from(IpAddr::V4(node_ip))]
            .into_iter()
            .chain(["127.0.0.0/8", "::1/128"].into_iter().filter_map(|net| net.parse().ok()))
            .chain(args.dns_allow.iter().copied());
        tracing::info!(
            "cluster DNS for {zone}: upstreams {}",
            if servers.is_empty() { "none (other names are refused)".to_owned() } else { format!("{servers:?}") }
        );
        let listen: Vec<SocketAddr> = std::iter::once(IpAddr::V4(gateway))
            .chain(args.dns_addresses.iter().copied())
            .map(|ip| SocketAddr::new(ip, args.dns_port))
            .collect();
        // Forwarding to itself would loop each outside name until the forward limit.
        let mut servers = servers;
        servers.retain(|server| !listen.contains(server));
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            generation: AtomicU64::new(0),
            allow: AccessList::new(allowed),
            upstreams: Upstreams { servers, netns: ns.path().map(ToOwned::to_owned) },
            udp_max: sdn_dns::DEFAULT_UDP_MAX,
            forwards: server::forward_permits(),
            client_forwards: PerClient::new(to_usize(args.dns_forwards_per_client)),
            client_connections: PerClient::new(to_usize(args.dns_tcp_connections_per_client)),
            rrl: Rrl::new(&args.rrl(), IpNetwork::V4(network.network))?,
        });
        tracing::info!(
            "cluster DNS limits per client: {} TCP connections, {} forwards; UDP rate limit {}",
            args.dns_tcp_connections_per_client,
            args.dns_forwards_per_client,
            if shared.rrl.is_some() {
                format!(
                    "{}/s per response and network, window {} s, slip {} (pods are not limited)",
                    args.dns_rrl_responses_per_second, args.dns_rrl_window, args.dns_rrl_slip
                )
            } else {
                "off".to_owned()
            }
        );
        let listeners = server::start(shared.clone(), &listen, ns.path())?;
        Ok(Self { shared, feed: Feed::default(), synced_at: None, seen: None, _listeners: listeners })
    }

    /// Brings the answers up to the informer's cache; logs records that cannot be served. The
    /// index is locked (and its cached replies dropped) only when a service or endpoints record
    /// changed, not for every change under the prefix (pods come and go far more often).
    pub fn sync(&mut self, informer: &Informer, keys: &Keys) {
        let cache = informer.read();
        if self.synced_at == Some(cache.position()) {
            return;
        }
        self.synced_at = Some(cache.position());
        let (services, endpoints) = (keys.services(), keys.endpoints());
        // Most changes are elsewhere under the prefix (pods, nodes): a look at the revisions.
        let seen = Some((cache.fingerprint(&services), cache.fingerprint(&endpoints)));
        if seen == self.seen
            || self.feed.is_current(&services, cache.range(&services), &endpoints, cache.range(&endpoints))
        {
            self.seen = seen;
            return;
        }
        self.seen = seen;
        let mut index = self.shared.index.write().unwrap_or_else(PoisonError::into_inner);
        let synced = self.feed.sync(&mut index, &services, cache.range(&services), &endpoints, cache.range(&endpoints));
        drop(index);
        for error in &synced.errors {
            tracing::warn!("cluster DNS skips a record: {error}");
        }
        if synced.changed > 0 {
            self.shared.generation.fetch_add(1, Ordering::Release);
            tracing::debug!("cluster DNS: {} records changed", synced.changed);
        }
    }
}

/// A count of the flags (u32) as the limits take it.
fn to_usize(count: u32) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX)
}
