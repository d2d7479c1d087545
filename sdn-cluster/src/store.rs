//! Typed reads and transactions on the cluster's etcd keys.
//!
//! Every write that must not collide compares before it puts, so concurrent
//! writers (several masters, agents and admins) can never store two nodes with
//! one IP or lose an update. Services and endpoints are in `store/services.rs`.

mod access;
mod services;

use std::net::IpAddr;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::etcd::{EtcdConfig, EtcdError};
use crate::informer::Informer;
use crate::keys::Keys;
use crate::network::ClusterNetwork;
use crate::records::{Node, PodRecord, RecordError};

pub use self::services::{ServiceStoreError, claim_owner};

/// How often a compare-and-put is retried when other writers keep winning.
const ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Invalid(#[from] RecordError),
    #[error("ip: {ip} is already registered by node {owner}")]
    DuplicateIp { ip: IpAddr, owner: String },
    #[error("node {0} not found")]
    NodeNotFound(String),
    #[error("etcd key {key} holds a record that is not valid: {source}")]
    Corrupt { key: String, source: serde_json::Error },
    #[error("{what}: other writers kept changing the same keys; gave up after {ATTEMPTS} attempts")]
    Contention { what: String },
    /// etcd's auth API refused or failed (the client needs etcd's root role for it).
    #[error("etcd auth, {what}: {}", crate::etcd::concise(source))]
    Auth { what: String, source: etcd_client::Error },
}

/// What a registration changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Created,
    Unchanged,
    IpChanged { old: IpAddr },
}

/// Decodes one stored JSON record, naming the key when it is not valid.
pub fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt { key: key.to_owned(), source })
}

pub fn encode<T: Serialize>(record: &T) -> String {
    // The records are plain structs of strings and numbers; serializing them
    // cannot fail.
    serde_json::to_string(record).unwrap_or_default()
}

/// The etcd client with the cluster's key layout.
#[derive(Clone)]
pub struct Store {
    client: Client,
    keys: Keys,
    endpoints: String,
    /// How often a request that never reached etcd is sent: each endpoint a try, and one more.
    tries: usize,
}

impl Store {
    /// A store whose connection is made on first use: fails only on bad
    /// configuration, never because etcd is down. Callers retry their calls.
    pub async fn open(config: &EtcdConfig) -> Result<Self, EtcdError> {
        let client = config.client().await?;
        let tries = config.endpoints.len() + 1;
        Ok(Self { client, keys: Keys::new(&config.prefix), endpoints: config.endpoints_display(), tries })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A list+watch cache of everything under the prefix.
    pub fn informer(&self) -> Informer {
        Informer::start(self.client.clone(), self.keys.root())
    }

    /// A list+watch cache of what a node agent reads ([`Keys::agent_dirs`]).
    pub fn agent_informer(&self) -> Informer {
        Informer::start_dirs(self.client.clone(), self.keys.agent_dirs())
    }

    pub fn etcd_error(&self, source: etcd_client::Error) -> StoreError {
        StoreError::Etcd(EtcdError::Client { endpoints: self.endpoints.clone(), source })
    }

    pub async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.retrying(|mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// A read of `key` (with `options`), linearizable.
    pub async fn get(&self, key: &str, options: Option<GetOptions>) -> Result<etcd_client::GetResponse, StoreError> {
        self.retrying(|mut kv| {
            let options = options.clone();
            async move { kv.get(key, options).await }
        })
        .await
    }

    /// Runs `call` again when it never reached etcd: the client spreads requests over every
    /// endpoint, and one that went to a member that is down fails to connect. Such a request
    /// changed nothing, so sending it again (to another member, most likely) is always safe.
    async fn retrying<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: Fn(etcd_client::KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempts = 0;
        loop {
            match call(self.client.kv_client()).await {
                Err(err) if attempts < self.tries && crate::etcd::never_sent(&err) => attempts += 1,
                done => return done.map_err(|e| self.etcd_error(e)),
            }
        }
    }

    /// The stored `ClusterNetwork` and its mod revision.
    pub async fn network(&self) -> Result<Option<(ClusterNetwork, i64)>, StoreError> {
        let key = self.keys.network();
        let resp = self.get(key.as_str(), None).await?;
        resp.kvs().first().map(|kv| Ok((decode(&key, kv.value())?, kv.mod_revision()))).transpose()
    }

    /// Every record directly under `dir` (one of the `Keys` directories).
    pub async fn list<T: DeserializeOwned>(&self, dir: &str) -> Result<Vec<T>, StoreError> {
        let resp = self.get(dir, Some(GetOptions::new().with_prefix())).await?;
        resp.kvs().iter().map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value())).collect()
    }

    /// Registers `node`, or moves a registered node to a new IP. Node IPs are
    /// unique: the `node-ips/<ip>` index is written in the same transaction.
    /// Returns what changed and the etcd revision of the change.
    pub async fn register_node(&self, node: &Node) -> Result<(Registered, i64), StoreError> {
        node.validate()?;
        let node_key = self.keys.node(&node.name);
        let ip_key = self.keys.node_ip(node.ip);
        let reads = || [TxnOp::get(node_key.as_str(), None), TxnOp::get(ip_key.as_str(), None)];
        // A new node is the common case (a thousand agents starting): created in one round
        // trip if neither key exists, and otherwise both read in that same round trip.
        let create = Txn::new()
            .when([
                Compare::create_revision(node_key.as_str(), CompareOp::Equal, 0),
                Compare::create_revision(ip_key.as_str(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(node_key.as_str(), encode(node), None),
                TxnOp::put(ip_key.as_str(), node.name.as_str(), None),
            ])
            .or_else(reads());
        let mut resp = self.txn(create).await?;
        if resp.succeeded() {
            return Ok((Registered::Created, resp.header().map_or(0, |h| h.revision())));
        }
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                resp = self.txn(Txn::new().and_then(reads())).await?;
            }
            let [node_kv, ip_kv] = first_kvs(&resp.op_responses());
            if let Some((owner, _)) = &ip_kv {
                let owner = String::from_utf8_lossy(owner).into_owned();
                if owner != node.name {
                    return Err(StoreError::DuplicateIp { ip: node.ip, owner });
                }
            }
            let existing: Option<Node> = node_kv.as_ref().map(|(v, _)| decode(&node_key, v)).transpose()?;
            let outcome = match &existing {
                None => Registered::Created,
                Some(old) if old == node && ip_kv.is_some() => {
                    return Ok((Registered::Unchanged, resp.header().map_or(0, |h| h.revision())));
                }
                Some(old) if old.ip == node.ip => Registered::Unchanged,
                Some(old) => Registered::IpChanged { old: old.ip },
            };
            let mut ops = vec![
                TxnOp::put(node_key.as_str(), encode(node), None),
                TxnOp::put(ip_key.as_str(), node.name.as_str(), None),
            ];
            if let Registered::IpChanged { old } = outcome {
                ops.push(self.release_ip_op(old, &node.name));
            }
            let write = Txn::new()
                .when([
                    Compare::mod_revision(node_key.as_str(), CompareOp::Equal, node_kv.map_or(0, |(_, rev)| rev)),
                    Compare::mod_revision(ip_key.as_str(), CompareOp::Equal, ip_kv.map_or(0, |(_, rev)| rev)),
                ])
                .and_then(ops);
            let resp = self.txn(write).await?;
            if resp.succeeded() {
                return Ok((outcome, resp.header().map_or(0, |h| h.revision())));
            }
        }
        Err(StoreError::Contention { what: format!("registering node {}", node.name) })
    }

    /// Deletes a node record and its IP index. Its subnet is released by the
    /// leading master, which watches for nodes that are gone.
    pub async fn delete_node(&self, name: &str) -> Result<i64, StoreError> {
        let node_key = self.keys.node(name);
        for _ in 0..ATTEMPTS {
            let resp = self.get(node_key.as_str(), None).await?;
            let Some(kv) = resp.kvs().first() else {
                return Err(StoreError::NodeNotFound(name.to_owned()));
            };
            let node: Node = decode(&node_key, kv.value())?;
            let txn = Txn::new()
                .when([Compare::mod_revision(node_key.as_str(), CompareOp::Equal, kv.mod_revision())])
                .and_then([
                    TxnOp::delete(node_key.as_str(), None),
                    self.release_ip_op(node.ip, name),
                    TxnOp::delete(self.keys.node_pods(name), Some(etcd_client::DeleteOptions::new().with_prefix())),
                ]);
            let resp = self.txn(txn).await?;
            if resp.succeeded() {
                return Ok(resp.header().map_or(0, |h| h.revision()));
            }
        }
        Err(StoreError::Contention { what: format!("deleting node {name}") })
    }

    /// Makes the pod records of `node` exactly `pods`: writes what is new or
    /// changed, deletes what is gone. Only while the node is registered, so
    /// an agent cannot bring back the records of a node an admin deleted.
    pub async fn replace_node_pods(&self, node: &str, pods: &[PodRecord]) -> Result<(), StoreError> {
        let dir = self.keys.node_pods(node);
        let stored: Vec<(String, PodRecord)> = self
            .get(dir.as_str(), Some(GetOptions::new().with_prefix()))
            .await?
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                // An unreadable record is replaced: this node is its only writer.
                let record = decode(&key, kv.value()).ok();
                Some((key, record?))
            })
            .collect();
        let desired: Vec<(String, &PodRecord)> =
            pods.iter().map(|p| (self.keys.pod(node, &p.container_id, &p.ifname), p)).collect();
        let mut ops: Vec<TxnOp> = desired
            .iter()
            .filter(|(key, pod)| !stored.iter().any(|(k, s)| k == key && s == *pod))
            .map(|(key, pod)| TxnOp::put(key.as_str(), encode(pod), None))
            .collect();
        ops.extend(
            stored
                .iter()
                .filter(|(key, _)| !desired.iter().any(|(k, _)| k == key))
                .map(|(key, _)| TxnOp::delete(key.as_str(), None)),
        );
        let registered = Compare::version(self.keys.node(node), CompareOp::Greater, 0);
        // etcd caps operations per transaction (128 by default).
        for batch in ops.chunks(120) {
            self.txn(Txn::new().when([registered.clone()]).and_then(batch.to_vec())).await?;
        }
        Ok(())
    }

    /// Deletes `node-ips/<ip>` only while it still names `owner`, so a stale
    /// release cannot take the IP from a node that registered it since.
    fn release_ip_op(&self, ip: IpAddr, owner: &str) -> TxnOp {
        let key = self.keys.node_ip(ip);
        TxnOp::txn(
            Txn::new()
                .when([Compare::value(key.as_str(), CompareOp::Equal, owner)])
                .and_then([TxnOp::delete(key.as_str(), None)]),
        )
    }
}

/// The value and mod revision of the first key of each of two get responses.
fn first_kvs(responses: &[TxnOpResponse]) -> [Option<(Vec<u8>, i64)>; 2] {
    let first = |i: usize| match responses.get(i) {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())),
        _ => None,
    };
    [first(0), first(1)]
}
