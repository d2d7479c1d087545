//! The allocation loop of the leading master: read the informer's snapshot,
//! plan with the pure [`allocator`](crate::allocator), write the plan as etcd
//! transactions that each also check leadership, wait for the writes to come
//! back through the watch, repeat. Standby masters only wait.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use sdn_cluster::informer::{Cache, Informer};
use sdn_cluster::store::{Store, StoreError, decode, encode};
use sdn_cluster::{ClusterNetwork, HostSubnet, Keys, Node};
use tokio::sync::watch;

use crate::allocator::{self, Action, NodeState, Plan, SubnetState};
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// etcd refuses transactions with more than 128 compares or operations
/// (`--max-txn-ops`); each action needs at most 3 of either.
const MAX_TXN_PARTS: usize = 120;

/// The cluster as the allocator needs it, decoded from one cache revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub network: Option<ClusterNetwork>,
    pub nodes: Vec<NodeState>,
    pub subnets: Vec<SubnetState>,
    /// Keys whose records could not be decoded, with the reason.
    pub corrupt: Vec<String>,
    /// Index into `subnets` by node name.
    by_host: HashMap<String, usize>,
}

impl Snapshot {
    pub fn from_cache(cache: &Cache, keys: &Keys) -> Self {
        let mut snapshot = Snapshot::default();
        let network_key = keys.network();
        if let Some(entry) = cache.get(&network_key) {
            match decode(&network_key, &entry.value) {
                Ok(network) => snapshot.network = Some(network),
                Err(err) => snapshot.corrupt.push(err.to_string()),
            }
        }
        let nodes_dir = keys.nodes();
        for (key, entry) in cache.range(&nodes_dir) {
            if Keys::name_in(&nodes_dir, key).is_none() {
                continue;
            }
            match decode::<Node>(key, &entry.value) {
                Ok(node) => snapshot.nodes.push(NodeState {
                    name: node.name,
                    ip: node.ip,
                    create_revision: entry.create_revision,
                    mod_revision: entry.mod_revision,
                }),
                Err(err) => snapshot.corrupt.push(err.to_string()),
            }
        }
        let subnets_dir = keys.subnets();
        for (key, entry) in cache.range(&subnets_dir) {
            if Keys::name_in(&subnets_dir, key).is_none() {
                continue;
            }
            match decode::<HostSubnet>(key, &entry.value) {
                Ok(record) => {
                    snapshot.by_host.insert(record.host.clone(), snapshot.subnets.len());
                    snapshot.subnets.push(SubnetState { record, mod_revision: entry.mod_revision });
                }
                Err(err) => snapshot.corrupt.push(err.to_string()),
            }
        }
        snapshot
    }

    /// The subnet of `node`, if it has one.
    pub fn subnet_of(&self, node: &str) -> Option<&HostSubnet> {
        self.by_host.get(node).and_then(|&i| self.subnets.get(i)).map(|s| &s.record)
    }
}

/// The compares and operations that make one action safe to apply: it only
/// happens if what the plan saw is still what etcd holds.
fn txn_parts(keys: &Keys, action: &Action) -> (Vec<Compare>, Vec<TxnOp>) {
    match action {
        Action::Allocate { node, node_ip, node_mod_revision, subnet } => {
            let claim = keys.subnet_claim(*subnet);
            let record = HostSubnet { host: node.clone(), host_ip: *node_ip, subnet: *subnet };
            (
                vec![
                    Compare::create_revision(claim.as_str(), CompareOp::Equal, 0),
                    Compare::create_revision(keys.subnet(node), CompareOp::Equal, 0),
                    Compare::mod_revision(keys.node(node), CompareOp::Equal, *node_mod_revision),
                ],
                vec![TxnOp::put(claim, node.as_str(), None), TxnOp::put(keys.subnet(node), encode(&record), None)],
            )
        }
        Action::Release { node, subnet, mod_revision } => {
            let claim = keys.subnet_claim(*subnet);
            // The claim goes only if it still names this node.
            let release_claim = Txn::new()
                .when([Compare::value(claim.as_str(), CompareOp::Equal, node.as_str())])
                .and_then([TxnOp::delete(claim, None)]);
            (
                vec![Compare::mod_revision(keys.subnet(node), CompareOp::Equal, *mod_revision)],
                vec![TxnOp::delete(keys.subnet(node), None), TxnOp::txn(release_claim)],
            )
        }
        Action::UpdateHostIp { record, mod_revision } => (
            vec![Compare::mod_revision(keys.subnet(&record.host), CompareOp::Equal, *mod_revision)],
            vec![TxnOp::put(keys.subnet(&record.host), encode(record), None)],
        ),
    }
}

/// Packs the plan's actions, releases first, into as few transactions as
/// etcd accepts, each guarded by the leadership compare.
fn batch<'a>(keys: &Keys, leadership: Leadership, actions: &'a [Action]) -> Vec<(Txn, Vec<&'a Action>)> {
    let leader = || Compare::create_revision(keys.leader(), CompareOp::Equal, leadership.create_revision);
    let mut batches = Vec::new();
    let (mut compares, mut ops, mut members) = (vec![leader()], Vec::new(), Vec::new());
    let mut ordered: Vec<&'a Action> = actions.iter().filter(|a| !matches!(a, Action::Allocate { .. })).collect();
    ordered.extend(actions.iter().filter(|a| matches!(a, Action::Allocate { .. })));
    let mut last_was_release = false;
    for action in ordered {
        let is_allocation = matches!(action, Action::Allocate { .. });
        let (c, o) = txn_parts(keys, action);
        // A release and the allocation that reuses its subnet cannot share a
        // transaction: etcd evaluates every compare before any operation.
        let boundary = last_was_release && is_allocation;
        if boundary || compares.len() + c.len() > MAX_TXN_PARTS || ops.len() + o.len() > MAX_TXN_PARTS {
            batches.push((Txn::new().when(compares).and_then(ops), std::mem::take(&mut members)));
            (compares, ops) = (vec![leader()], Vec::new());
        }
        last_was_release = !is_allocation;
        compares.extend(c);
        ops.extend(o);
        members.push(action);
    }
    if !members.is_empty() {
        batches.push((Txn::new().when(compares).and_then(ops), members));
    }
    batches
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("etcd changed since the plan was made (or leadership was lost); planning again")]
    Conflict,
}

pub struct Controller {
    pub store: Store,
    pub informer: Informer,
    pub leadership: watch::Receiver<Option<Leadership>>,
    pub metrics: Arc<Metrics>,
}

impl Controller {
    /// Runs for the life of the master.
    pub async fn run(mut self) {
        self.informer.synced().await;
        let mut changes = self.informer.subscribe();
        let mut logged_pending: HashSet<String> = HashSet::new();
        let mut retry = Duration::ZERO;
        loop {
            let Some(leadership) = *self.leadership.borrow_and_update() else {
                logged_pending.clear();
                if self.leadership.changed().await.is_err() {
                    return;
                }
                continue;
            };
            changes.borrow_and_update();
            let (plan, network) = self.plan();
            self.log_pending(&plan, &mut logged_pending);
            if network.is_none() {
                tracing::error!("no ClusterNetwork stored at {}; not allocating", self.store.keys().network());
            }
            let outcome = if plan.actions.is_empty() { Ok(0) } else { self.apply(leadership, &plan).await };
            match outcome {
                Ok(revision) if revision > 0 => {
                    retry = Duration::ZERO;
                    // Plan again only once our own writes are in the cache.
                    self.informer.wait_for(revision).await;
                    continue;
                }
                Ok(_) => retry = Duration::ZERO,
                Err(err) => {
                    if matches!(err, ApplyError::Store(_)) {
                        self.metrics.etcd_errors.inc();
                    }
                    retry = (retry * 2).clamp(Duration::from_millis(50), Duration::from_secs(2));
                    tracing::warn!("allocation: {err}; again in {retry:?}");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                changed = self.leadership.changed() => if changed.is_err() { return },
            }
        }
    }

    fn plan(&self) -> (Plan, Option<ClusterNetwork>) {
        let snapshot = Snapshot::from_cache(&self.informer.read(), self.store.keys());
        for corrupt in &snapshot.corrupt {
            tracing::warn!("skipping {corrupt}");
        }
        match &snapshot.network {
            Some(network) => (allocator::plan(network, &snapshot.nodes, &snapshot.subnets), snapshot.network.clone()),
            None => (Plan::default(), None),
        }
    }

    fn log_pending(&self, plan: &Plan, logged: &mut HashSet<String>) {
        let now: HashSet<String> = plan.pending.iter().cloned().collect();
        for node in now.difference(logged) {
            tracing::warn!("node {node} waits for a subnet: the cluster network is exhausted");
        }
        *logged = now;
    }

    /// Applies the plan; returns the highest revision written.
    async fn apply(&self, leadership: Leadership, plan: &Plan) -> Result<i64, ApplyError> {
        let mut revision = 0;
        for (txn, members) in batch(self.store.keys(), leadership, &plan.actions) {
            let resp = self.store.txn(txn).await?;
            if !resp.succeeded() {
                return Err(ApplyError::Conflict);
            }
            revision = resp.header().map_or(revision, |h| h.revision());
            for action in members {
                match action {
                    Action::Allocate { node, subnet, .. } => {
                        self.metrics.allocations.inc();
                        tracing::info!("allocated {subnet} to node {node}");
                    }
                    Action::Release { node, subnet, .. } => {
                        self.metrics.releases.inc();
                        tracing::info!("released {subnet} of deleted node {node}");
                    }
                    Action::UpdateHostIp { record, .. } => {
                        tracing::info!("node {} now at {}; keeps {}", record.host, record.host_ip, record.subnet);
                    }
                }
            }
        }
        Ok(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocate(i: u8) -> Action {
        Action::Allocate {
            node: format!("n{i}"),
            node_ip: [192, 0, 2, i].into(),
            node_mod_revision: 1,
            subnet: format!("10.1.{i}.0/24").parse().expect("cidr"),
        }
    }

    #[test]
    fn batches_respect_etcd_limits_and_put_releases_first() {
        let keys = Keys::default();
        let mut actions: Vec<Action> = (0..100).map(allocate).collect();
        actions.push(Action::Release {
            node: "gone".into(),
            subnet: "10.1.200.0/24".parse().expect("cidr"),
            mod_revision: 5,
        });
        let batches = batch(&keys, Leadership { create_revision: 7 }, &actions);
        assert!(matches!(batches[0].1[0], Action::Release { .. }));
        assert_eq!(batches[0].1.len(), 1, "a release never shares a txn with allocations");
        let total: usize = batches.iter().map(|(_, m)| m.len()).sum();
        assert_eq!(total, 101);
        for (_, members) in &batches[1..] {
            assert!(members.len() * 3 < MAX_TXN_PARTS);
        }
    }
}
