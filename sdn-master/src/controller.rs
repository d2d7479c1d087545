//! The allocation loop of the leading master: read the informer's snapshot,
//! plan with the pure [`allocator`](crate::allocator), write the plan as etcd
//! transactions that each also check leadership, wait for the writes to come
//! back through the watch, repeat. Standby masters only wait.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use ipnetwork::Ipv4Network;
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
    /// The stored network, if it is there and valid.
    pub network: Option<ClusterNetwork>,
    /// Mod revision of the network key: allocations compare it, so none can
    /// land under a layout that was replaced after the plan.
    pub network_revision: i64,
    pub nodes: Vec<NodeState>,
    pub subnets: Vec<SubnetState>,
    /// Subnets with a claim key.
    pub claimed: Vec<Ipv4Network>,
    /// Records that could not be used, with the reason.
    pub corrupt: Vec<String>,
    /// Index into `subnets` by node name.
    by_host: HashMap<String, usize>,
}

impl Snapshot {
    pub fn from_cache(cache: &Cache, keys: &Keys) -> Self {
        let mut snapshot = Snapshot::default();
        let network_key = keys.network();
        if let Some(entry) = cache.get(&network_key) {
            snapshot.network_revision = entry.mod_revision;
            match decode::<ClusterNetwork>(&network_key, &entry.value) {
                Ok(network) => match network.validate() {
                    Ok(()) => snapshot.network = Some(network),
                    Err(err) => snapshot.corrupt.push(format!("{network_key}: {err}")),
                },
                Err(err) => snapshot.corrupt.push(err.to_string()),
            }
        }
        // Names come from the keys, so a record that cannot be read still
        // marks its node as present and its subnet as taken.
        let nodes_dir = keys.nodes();
        for (key, entry) in cache.range(&nodes_dir) {
            let Some(name) = Keys::name_in(&nodes_dir, key) else { continue };
            let ip = match decode::<Node>(key, &entry.value) {
                Ok(node) if node.name == name => Some(node.ip),
                Ok(node) => {
                    snapshot.corrupt.push(format!("{key}: names node {:?}", node.name));
                    None
                }
                Err(err) => {
                    snapshot.corrupt.push(err.to_string());
                    None
                }
            };
            snapshot.nodes.push(NodeState {
                name: name.to_owned(),
                ip,
                create_revision: entry.create_revision,
                mod_revision: entry.mod_revision,
            });
        }
        let subnets_dir = keys.subnets();
        for (key, entry) in cache.range(&subnets_dir) {
            let Some(name) = Keys::name_in(&subnets_dir, key) else { continue };
            let record = match decode::<HostSubnet>(key, &entry.value) {
                Ok(record) if record.host == name => Some(record),
                Ok(record) => {
                    snapshot.corrupt.push(format!("{key}: names host {:?}", record.host));
                    None
                }
                Err(err) => {
                    snapshot.corrupt.push(err.to_string());
                    None
                }
            };
            snapshot.by_host.insert(name.to_owned(), snapshot.subnets.len());
            snapshot.subnets.push(SubnetState { node: name.to_owned(), record, mod_revision: entry.mod_revision });
        }
        let claims_dir = keys.subnet_claims();
        snapshot.claimed = cache
            .range(&claims_dir)
            .filter_map(|(key, _)| Keys::name_in(&claims_dir, key).and_then(Keys::claimed_subnet))
            .collect();
        snapshot
    }

    /// The subnet of `node`, if it has a readable one.
    pub fn subnet_of(&self, node: &str) -> Option<&HostSubnet> {
        self.by_host.get(node).and_then(|&i| self.subnets.get(i)).and_then(|s| s.record.as_ref())
    }

    /// The allocator's plan for this snapshot; empty without a valid network.
    pub fn plan(&self) -> Plan {
        match &self.network {
            Some(network) => allocator::plan(network, &self.nodes, &self.subnets, &self.claimed),
            None => Plan::default(),
        }
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
                vec![
                    Compare::mod_revision(keys.subnet(node), CompareOp::Equal, *mod_revision),
                    // A node re-registered since the plan keeps its subnet.
                    Compare::create_revision(keys.node(node), CompareOp::Equal, 0),
                ],
                vec![TxnOp::delete(keys.subnet(node), None), TxnOp::txn(release_claim)],
            )
        }
        Action::UpdateHostIp { record, mod_revision } => (
            vec![Compare::mod_revision(keys.subnet(&record.host), CompareOp::Equal, *mod_revision)],
            vec![TxnOp::put(keys.subnet(&record.host), encode(record), None)],
        ),
    }
}

/// What every transaction of a plan compares besides its own keys: the
/// writer still leads, and the network is the one the plan was made for.
#[derive(Debug, Clone, Copy)]
struct Guard {
    leadership: Leadership,
    network_revision: i64,
}

impl Guard {
    fn compares(&self, keys: &Keys) -> Vec<Compare> {
        vec![
            Compare::create_revision(keys.leader(), CompareOp::Equal, self.leadership.create_revision),
            Compare::mod_revision(keys.network(), CompareOp::Equal, self.network_revision),
        ]
    }
}

/// Packs the plan's actions, releases first, into as few transactions as
/// etcd accepts, each carrying the guard.
fn batch<'a>(keys: &Keys, guard: Guard, actions: &'a [Action]) -> Vec<(Txn, Vec<&'a Action>)> {
    let mut batches = Vec::new();
    let (mut compares, mut ops, mut members) = (guard.compares(keys), Vec::new(), Vec::new());
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
            (compares, ops) = (guard.compares(keys), Vec::new());
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

/// What applying a plan achieved.
#[derive(Debug, Default)]
struct Applied {
    /// Highest revision written; 0 if nothing was.
    committed: i64,
    /// etcd's revision when a transaction's compares failed: the cache must
    /// reach it before the next plan can see what changed.
    conflict: Option<i64>,
}

/// How long the controller waits for its own writes to come back through
/// the watch. Bounded, because a re-listed cache can start below them.
const CATCH_UP: Duration = Duration::from_secs(5);

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
        let mut logged_corrupt: HashSet<String> = HashSet::new();
        let mut backoff = Duration::ZERO;
        loop {
            let Some(leadership) = *self.leadership.borrow_and_update() else {
                logged_pending.clear();
                if self.leadership.changed().await.is_err() {
                    return;
                }
                continue;
            };
            changes.borrow_and_update();
            let snapshot = Snapshot::from_cache(&self.informer.read(), self.store.keys());
            log_new(&mut logged_corrupt, snapshot.corrupt.iter().cloned(), |c| tracing::warn!("skipping {c}"));
            if snapshot.network.is_none() {
                tracing::error!("no valid ClusterNetwork at {}; not allocating", self.store.keys().network());
            }
            let plan = snapshot.plan();
            log_new(&mut logged_pending, plan.pending.iter().cloned(), |node| {
                tracing::warn!("node {node} waits for a subnet: the cluster network is exhausted");
            });
            if !plan.actions.is_empty() {
                let guard = Guard { leadership, network_revision: snapshot.network_revision };
                match self.apply(guard, &plan).await {
                    Ok(applied) => {
                        let caught_up = applied.committed.max(applied.conflict.unwrap_or(0));
                        let _ = tokio::time::timeout(CATCH_UP, self.informer.wait_for(caught_up)).await;
                        if applied.conflict.is_none() {
                            backoff = Duration::ZERO;
                            continue;
                        }
                        // The first conflict is normal (the cache was a step
                        // behind) and is retried at once; repeats back off.
                        if !backoff.is_zero() {
                            tracing::warn!("allocation: etcd keeps refusing the plan; again in {backoff:?}");
                            tokio::time::sleep(backoff).await;
                        }
                    }
                    Err(err) => {
                        self.metrics.etcd_errors.inc();
                        tracing::warn!("allocation: {err}; again in {:?}", backoff.max(Duration::from_millis(50)));
                        tokio::time::sleep(backoff.max(Duration::from_millis(50))).await;
                    }
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(2));
                continue;
            }
            backoff = Duration::ZERO;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                changed = self.leadership.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Applies the plan batch by batch, stopping at the first refused one.
    async fn apply(&self, guard: Guard, plan: &Plan) -> Result<Applied, StoreError> {
        let mut applied = Applied::default();
        for (txn, members) in batch(self.store.keys(), guard, &plan.actions) {
            let resp = self.store.txn(txn).await?;
            let revision = resp.header().map_or(0, |h| h.revision());
            if !resp.succeeded() {
                applied.conflict = Some(revision);
                break;
            }
            applied.committed = revision;
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
        Ok(applied)
    }
}

/// Logs each item of `now` not in `logged` once, and remembers `now`.
fn log_new(logged: &mut HashSet<String>, now: impl Iterator<Item = String>, log: impl Fn(&str)) {
    let now: HashSet<String> = now.collect();
    for item in now.difference(logged) {
        log(item);
    }
    *logged = now;
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
        let guard = Guard { leadership: Leadership { create_revision: 7 }, network_revision: 3 };
        let batches = batch(&keys, guard, &actions);
        assert!(matches!(batches[0].1[0], Action::Release { .. }));
        assert_eq!(batches[0].1.len(), 1, "a release never shares a txn with allocations");
        let total: usize = batches.iter().map(|(_, m)| m.len()).sum();
        assert_eq!(total, 101);
        for (_, members) in &batches[1..] {
            assert!(members.len() * 3 < MAX_TXN_PARTS);
        }
    }
}
