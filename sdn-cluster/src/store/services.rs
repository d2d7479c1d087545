//! Services and their endpoints in etcd: create (with a cluster IP claimed in the same
//! transaction), read, delete, and replace the endpoints.
//!
//! A cluster IP is unique because `service-ips/<ip>` is created only by a transaction that finds
//! it absent, together with the service; every write also compares the mod revision of the
//! `ClusterNetwork` it was validated against, so nothing lands under a replaced service network.

use std::collections::BTreeSet;
use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
use serde::de::DeserializeOwned;

use super::{ATTEMPTS, Store, StoreError, decode, encode};
use crate::keys::Keys;
use crate::network::ClusterNetwork;
use crate::service_ips::lowest_free;
use crate::services::{ClusterIp, Endpoints, Service, ServiceError, ServiceSpec};

/// Attempts of a create that allocates. Each failed attempt means another create took the
/// address it chose, so the cluster makes progress; the bound only stops a pathological loop.
const ALLOCATION_ATTEMPTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ServiceStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] ServiceError),
    #[error("etcd holds no cluster network yet")]
    NoNetwork,
    #[error("service {0} already exists")]
    Exists(String),
    #[error("service {0} not found")]
    NotFound(String),
    #[error("clusterIP: {ip} is already held by service {owner}")]
    IpTaken { ip: IpAddr, owner: String },
    #[error("clusterIP: the service network {network} has no free address")]
    Exhausted { network: String },
    #[error("{what}: other writers kept changing the same keys; gave up after {attempts} attempts")]
    Contention { what: String, attempts: usize },
}

/// What a claim key holds: the service that owns the address.
pub fn claim_owner(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The first key of the `i`-th get of a transaction response: value and mod revision.
fn kv_of(resp: &TxnResponse, i: usize) -> Option<(Vec<u8>, i64)> {
    match resp.op_responses().get(i) {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())),
        _ => None,
    }
}

/// Every key of the `i`-th (prefix) get of a transaction response, with its value.
fn kvs_of(resp: &TxnResponse, i: usize) -> Vec<(String, Vec<u8>, i64)> {
    match resp.op_responses().get(i) {
        Some(TxnOpResponse::Get(get)) => get
            .kvs()
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec(), kv.mod_revision()))
            .collect(),
        _ => Vec::new(),
    }
}

fn revision(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

impl Store {
    /// The stored network and its mod revision, refusing to go on without one.
    fn network_of(&self, resp: &TxnResponse, i: usize) -> Result<(ClusterNetwork, i64), ServiceStoreError> {
        let (value, mod_revision) = kv_of(resp, i).ok_or(ServiceStoreError::NoNetwork)?;
        Ok((decode(&self.keys.network(), &value)?, mod_revision))
    }

    /// Creates a service: validated against the stored network, with the cluster IP `spec` asks
    /// for (absent: the lowest free one). Returns the stored record and the revision it has.
    pub async fn create_service(&self, spec: &ServiceSpec) -> Result<(Service, i64), ServiceStoreError> {
        let owner = claim_owner(&spec.namespace, &spec.name);
        let service_key = self.keys.service(&spec.namespace, &spec.name);
        let network_key = self.keys.network();
        let claims = self.keys.service_ip_claims();
        let allocate = spec.cluster_ip.is_none();
        let attempts = if allocate { ALLOCATION_ATTEMPTS } else { ATTEMPTS };
        for _ in 0..attempts {
            let mut read = vec![TxnOp::get(network_key.as_str(), None)];
            if allocate {
                read.push(TxnOp::get(claims.as_str(), Some(GetOptions::new().with_prefix().with_keys_only())));
            }
            let resp = self.txn(Txn::new().and_then(read)).await?;
            let (network, network_revision) = self.network_of(&resp, 0)?;
            let cluster_ip = match spec.cluster_ip {
                Some(requested) => requested.ip(),
                None => {
                    // Names and ports first, so a bad request is refused as such, not as exhaustion.
                    spec.to_service(None).validate(&network)?;
                    let claimed: BTreeSet<IpAddr> = kvs_of(&resp, 1)
                        .iter()
                        .filter_map(|(key, _, _)| Keys::name_in(&claims, key)?.parse().ok())
                        .collect();
                    let ip = lowest_free(network.service_network, &claimed)
                        .ok_or_else(|| ServiceStoreError::Exhausted { network: network.service_network.to_string() })?;
                    Some(ip)
                }
            };
            let service = spec.to_service(cluster_ip);
            service.validate(&network)?;
            let mut when = vec![
                Compare::mod_revision(network_key.as_str(), CompareOp::Equal, network_revision),
                Compare::version(service_key.as_str(), CompareOp::Equal, 0),
            ];
            let mut then = vec![TxnOp::put(service_key.as_str(), encode(&service), None)];
            let mut otherwise = vec![TxnOp::get(service_key.as_str(), None)];
            if let Some(ip) = cluster_ip {
                let claim = self.keys.service_ip_claim(ip);
                when.push(Compare::version(claim.as_str(), CompareOp::Equal, 0));
                then.push(TxnOp::put(claim.as_str(), owner.as_str(), None));
                otherwise.push(TxnOp::get(claim.as_str(), None));
            }
            let resp = self.txn(Txn::new().when(when).and_then(then).or_else(otherwise)).await?;
            if resp.succeeded() {
                return Ok((service, revision(&resp)));
            }
            if kv_of(&resp, 0).is_some() {
                return Err(ServiceStoreError::Exists(owner));
            }
            if let (Some(ClusterIp::Ip(ip)), Some((holder, _))) = (spec.cluster_ip, kv_of(&resp, 1)) {
                return Err(ServiceStoreError::IpTaken { ip, owner: String::from_utf8_lossy(&holder).into_owned() });
            }
            // Another create took the chosen address, or the network changed: choose again.
        }
        Err(ServiceStoreError::Contention { what: format!("creating service {owner}"), attempts })
    }

    /// Deletes a service, the claim on its cluster IP and its endpoints, in one transaction.
    /// Returns the revision of the deletion.
    pub async fn delete_service(&self, namespace: &str, name: &str) -> Result<i64, ServiceStoreError> {
        let owner = claim_owner(namespace, name);
        let service_key = self.keys.service(namespace, name);
        let claims = self.keys.service_ip_claims();
        for _ in 0..ATTEMPTS {
            let read = Txn::new().and_then([
                TxnOp::get(service_key.as_str(), None),
                TxnOp::get(claims.as_str(), Some(GetOptions::new().with_prefix())),
            ]);
            let resp = self.txn(read).await?;
            let (_, service_revision) = kv_of(&resp, 0).ok_or_else(|| ServiceStoreError::NotFound(owner.clone()))?;
            // The claims are found by owner, not through the record, so a record that cannot be
            // decoded still gives its address back.
            let owned: Vec<(String, i64)> = kvs_of(&resp, 1)
                .into_iter()
                .filter(|(_, value, _)| value.as_slice() == owner.as_bytes())
                .map(|(key, _, mod_revision)| (key, mod_revision))
                .collect();
            let mut when = vec![Compare::mod_revision(service_key.as_str(), CompareOp::Equal, service_revision)];
            let mut then = vec![
                TxnOp::delete(service_key.as_str(), None),
                TxnOp::delete(self.keys.endpoints_of(namespace, name), None),
            ];
            for (claim, mod_revision) in &owned {
                when.push(Compare::mod_revision(claim.as_str(), CompareOp::Equal, *mod_revision));
                then.push(TxnOp::delete(claim.as_str(), None));
            }
            let resp = self.txn(Txn::new().when(when).and_then(then)).await?;
            if resp.succeeded() {
                return Ok(revision(&resp));
            }
        }
        Err(ServiceStoreError::Contention { what: format!("deleting service {owner}"), attempts: ATTEMPTS })
    }

    /// Replaces the endpoints of an existing service with `endpoints`. Returns the revision.
    pub async fn set_endpoints(&self, endpoints: &Endpoints) -> Result<i64, ServiceStoreError> {
        let owner = claim_owner(&endpoints.namespace, &endpoints.name);
        let service_key = self.keys.service(&endpoints.namespace, &endpoints.name);
        let network_key = self.keys.network();
        for _ in 0..ATTEMPTS {
            let resp = self.txn(Txn::new().and_then([TxnOp::get(network_key.as_str(), None)])).await?;
            let (network, network_revision) = self.network_of(&resp, 0)?;
            endpoints.validate(&network)?;
            let write = Txn::new()
                .when([
                    Compare::mod_revision(network_key.as_str(), CompareOp::Equal, network_revision),
                    Compare::version(service_key.as_str(), CompareOp::Greater, 0),
                ])
                .and_then([TxnOp::put(
                    self.keys.endpoints_of(&endpoints.namespace, &endpoints.name),
                    encode(endpoints),
                    None,
                )])
                .or_else([TxnOp::get(service_key.as_str(), None)]);
            let resp = self.txn(write).await?;
            if resp.succeeded() {
                return Ok(revision(&resp));
            }
            if kv_of(&resp, 0).is_none() {
                return Err(ServiceStoreError::NotFound(owner));
            }
        }
        Err(ServiceStoreError::Contention { what: format!("setting the endpoints of {owner}"), attempts: ATTEMPTS })
    }

    /// One record, or `None` if the key is absent.
    async fn get_record<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let resp = self.get(key, None).await?;
        resp.kvs().first().map(|kv| decode(key, kv.value())).transpose()
    }

    pub async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>, StoreError> {
        self.get_record(&self.keys.service(namespace, name)).await
    }

    /// Every service, or those of one namespace.
    pub async fn services(&self, namespace: Option<&str>) -> Result<Vec<Service>, StoreError> {
        self.list(&namespace.map_or_else(|| self.keys.services(), |ns| self.keys.services_in(ns))).await
    }

    pub async fn endpoints(&self, namespace: &str, name: &str) -> Result<Option<Endpoints>, StoreError> {
        self.get_record(&self.keys.endpoints_of(namespace, name)).await
    }

    /// The owner named by each service-IP claim.
    pub async fn service_ip_claims(&self) -> Result<Vec<(IpAddr, String)>, StoreError> {
        let dir = self.keys.service_ip_claims();
        let resp = self.get(dir.as_str(), Some(GetOptions::new().with_prefix())).await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let ip = Keys::name_in(&dir, &String::from_utf8_lossy(kv.key()))?.parse().ok()?;
                Some((ip, String::from_utf8_lossy(kv.value()).into_owned()))
            })
            .collect())
    }
}
