//! `make bench-master`: how fast the master hands out subnets.
//!
//! 1,000 nodes are written to etcd at once (a few batched transactions),
//! and the time until every one has a `HostSubnet` is measured. The
//! reference, measured in the same run against the same etcd, is etcd's own
//! rate of compare-and-put transactions of the shape one allocation needs,
//! issued one after another from one client, as a single allocator would
//! without batching. A second figure registers 1,000 nodes through the
//! admin API concurrently, as 1,000 agents starting at once would.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use sdn_cluster::ClusterNetwork;
use sdn_cluster::store::encode;
use sdn_master::api::types::{NodeView, RegisterNode};
use sdn_tests::cluster::ControlPlane;

const NODES: usize = 1000;
/// Issue 15: concurrent registrations through the API at no less than this share of etcd's
/// rate of single compare-and-put transactions.
const API_TARGET: f64 = 0.5;

fn ip(i: usize) -> IpAddr {
    IpAddr::from([198, 18, (i / 250) as u8, 1 + (i % 250) as u8])
}

fn network() -> ClusterNetwork {
    ClusterNetwork { network: "10.0.0.0/8".parse().expect("cidr"), host_subnet_length: 8, ..Default::default() }
}

/// etcd's own rate of allocation-shaped transactions: compare that a claim
/// key is absent, put the claim and a record.
async fn etcd_txn_rate(cp: &ControlPlane) -> f64 {
    let mut kv = cp.store.client().kv_client();
    let start = Instant::now();
    for i in 0..NODES {
        let claim = format!("/bench/claims/{i}");
        let txn = Txn::new()
            .when([Compare::create_revision(claim.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(claim.as_str(), "x", None), TxnOp::put(format!("/bench/records/{i}"), "y", None)]);
        let resp = kv.txn(txn).await.expect("reference txn");
        assert!(resp.succeeded());
    }
    NODES as f64 / start.elapsed().as_secs_f64()
}

/// Writes the node records in batches of 50 (two keys each) and returns
/// the time until all have subnets.
async fn batch_registration(cp: &ControlPlane, prefix: &str) -> Duration {
    let keys = cp.store.keys();
    let start = Instant::now();
    for chunk in (0..NODES).collect::<Vec<_>>().chunks(50) {
        let mut ops = Vec::new();
        for &i in chunk {
            let node = sdn_cluster::Node { name: format!("{prefix}-{i}"), ip: ip(i) };
            ops.push(TxnOp::put(keys.node(&node.name), encode(&node), None));
            ops.push(TxnOp::put(keys.node_ip(node.ip), node.name.as_str(), None));
        }
        cp.store.txn(Txn::new().and_then(ops)).await.expect("write nodes");
    }
    cp.wait_allocated(NODES, Duration::from_secs(300)).await.assert_consistent(&cp.network);
    start.elapsed()
}

async fn api_registration(cp: Arc<ControlPlane>) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..NODES)
        .map(|i| {
            let cp = cp.clone();
            tokio::spawn(async move {
                let body = RegisterNode { name: format!("api-{i}"), ip: ip(i) };
                cp.masters[0].client().post::<_, NodeView>("/api/v1/nodes", &body).await.expect("register");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("registration task");
    }
    cp.wait_allocated(NODES, Duration::from_secs(300)).await.assert_consistent(&cp.network);
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let cp = ControlPlane::start("bench-alloc", network(), 1).await.expect("control plane");
    println!("master allocation benchmark: {NODES} nodes, {} (/24 per node)", cp.network.network);
    let reference = etcd_txn_rate(&cp).await;
    let batch = batch_registration(&cp, "batch").await;
    let rate = NODES as f64 / batch.as_secs_f64();
    println!("  reference: etcd compare-and-put transactions, one at a time   {reference:>8.0} txn/s");
    println!(
        "  sdn-master: {NODES} nodes written at once, all allocated in {:>6.3} s = {rate:>8.0} allocations/s  ({:.2}x the reference)",
        batch.as_secs_f64(),
        rate / reference
    );

    // Delete them all (the master releases every subnet), then register
    // through the API as agents would.
    let mut client = cp.store.client();
    client
        .delete(cp.store.keys().nodes(), Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete nodes");
    client
        .delete(
            format!("{}/node-ips/", cp.store.keys().prefix()),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("delete node ips");
    cp.wait_allocated(0, Duration::from_secs(300)).await;
    let cp = Arc::new(cp);
    let api = api_registration(cp.clone()).await;
    let api_rate = NODES as f64 / api.as_secs_f64();
    println!(
        "  sdn-master: {NODES} concurrent API registrations, all allocated in {:>6.3} s = {api_rate:>8.0} nodes/s  ({:.2}x the reference)",
        api.as_secs_f64(),
        api_rate / reference
    );
    let verdict = if api_rate / reference >= API_TARGET { "met" } else { "MISSED" };
    println!("target: API registrations >= {API_TARGET:.1}x the reference: {:.2}x {verdict}", api_rate / reference);
}
