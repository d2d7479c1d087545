//! Startup of a master: make sure etcd holds the `ClusterNetwork` this master
//! was configured with, or refuse to start when the stored one differs in a
//! way that would orphan allocated subnets.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use sdn_cluster::etcd::Backoff;
use sdn_cluster::network::IncompatibleChange;
use sdn_cluster::store::{Store, StoreError, decode, encode};
use sdn_cluster::{ClusterNetwork, HostSubnet, Keys};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("refusing to start: the stored cluster network cannot change this way: {0}")]
    Incompatible(#[from] IncompatibleChange),
    #[error("refusing to start: other masters keep rewriting {key}")]
    Contention { key: String },
    #[error(
        "refusing to start: etcd holds no cluster network, but the allocated subnet {subnet} lies outside the configured {network}"
    )]
    OrphanedWithoutNetwork { subnet: ipnetwork::Ipv4Network, network: ipnetwork::Ipv4Network },
}

const ATTEMPTS: u32 = 8;

/// [`ensure_network`], waiting out an unreachable etcd with backoff. Only a
/// refusal (or a corrupt stored record) ends the wait.
pub async fn ensure_network_with_retry(
    store: &Store,
    configured: &ClusterNetwork,
) -> Result<ClusterNetwork, BootstrapError> {
    let mut backoff = Backoff::default();
    loop {
        match ensure_network(store, configured).await {
            Err(BootstrapError::Store(StoreError::Etcd(err))) => {
                let delay = backoff.next_delay();
                tracing::warn!("{err}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            done => return done,
        }
    }
}

/// Stores `configured` unless an equal one is stored; returns it.
pub async fn ensure_network(store: &Store, configured: &ClusterNetwork) -> Result<ClusterNetwork, BootstrapError> {
    let keys = store.keys();
    let key = keys.network();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Subnet writes by a running leader fail the write's compare; let them pass.
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        // One read gives the stored network and the subnets at one revision.
        let read = Txn::new().and_then([
            TxnOp::get(key.as_str(), None),
            TxnOp::get(keys.subnets(), Some(GetOptions::new().with_prefix())),
            TxnOp::get(keys.service_ip_claims(), Some(GetOptions::new().with_prefix().with_keys_only())),
        ]);
        let resp = store.txn(read).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let responses = resp.op_responses();
        let (Some(TxnOpResponse::Get(network)), Some(TxnOpResponse::Get(subnets)), Some(TxnOpResponse::Get(claims))) =
            (responses.first(), responses.get(1), responses.get(2))
        else {
            return Err(BootstrapError::Contention { key });
        };
        // A claim's name is its cluster IP.
        let claim_dir = keys.service_ip_claims();
        let cluster_ips: Vec<std::net::IpAddr> = claims
            .kvs()
            .iter()
            .filter_map(|kv| Keys::name_in(&claim_dir, &String::from_utf8_lossy(kv.key()))?.parse().ok())
            .collect();
        let stored = network.kvs().first();
        let stored_network: Option<ClusterNetwork> = stored.map(|kv| decode(&key, kv.value())).transpose()?;
        if stored_network.as_ref() == Some(configured) {
            tracing::info!("cluster network: {configured}");
            return Ok(configured.clone());
        }
        let allocated = subnets
            .kvs()
            .iter()
            .map(|kv| decode::<HostSubnet>(&String::from_utf8_lossy(kv.key()), kv.value()).map(|s| s.subnet))
            .collect::<Result<Vec<_>, _>>()?;
        configured.check_keeps_cluster_ips(stored_network.as_ref().map(|n| n.service_network), &cluster_ips)?;
        if let Some(stored_network) = &stored_network {
            configured.check_replaces(stored_network, &allocated)?;
            tracing::info!(
                "cluster network: replacing the stored one ({}) with the configured one ({configured}); changed: {}",
                stored_network,
                configured.differing_fields(stored_network).join(", ")
            );
        } else {
            if let Some(subnet) = allocated.iter().find(|s| configured.subnet_index(**s).is_none()) {
                return Err(BootstrapError::OrphanedWithoutNetwork { subnet: *subnet, network: configured.network });
            }
            tracing::info!("cluster network: storing {configured}");
        }
        // The write holds only if neither the network nor any subnet or cluster-IP claim
        // changed since the read, so nothing slips in under the old layout.
        let write = Txn::new()
            .when([
                Compare::mod_revision(key.as_str(), CompareOp::Equal, stored.map_or(0, |kv| kv.mod_revision())),
                Compare::mod_revision(keys.subnets(), CompareOp::Less, revision + 1).with_prefix(),
                Compare::mod_revision(claim_dir.as_str(), CompareOp::Less, revision + 1).with_prefix(),
            ])
            .and_then([TxnOp::put(key.as_str(), encode(configured), None)]);
        if store.txn(write).await?.succeeded() {
            return Ok(configured.clone());
        }
    }
    Err(BootstrapError::Contention { key })
}
