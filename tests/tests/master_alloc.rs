//! Subnet allocation by real masters against a real etcd: races, leader
//! failover, restarts, reuse, exhaustion, IP changes and watch recovery.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sdn_cluster::ClusterNetwork;
use sdn_master::api::types::{NodeView, Phase, RegisterNode};
use sdn_tests::cluster::ControlPlane;
use sdn_tests::master::{Master, MasterOptions};
use sdn_tests::proxy::Proxy;
use sdn_tests::wait;

fn ip(i: usize) -> IpAddr {
    IpAddr::from([192, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8])
}

fn network(cidr: &str, host_bits: u8) -> ClusterNetwork {
    let network =
        ClusterNetwork { network: cidr.parse().expect("cidr"), host_subnet_length: host_bits, ..Default::default() };
    network.validate().expect("valid test network");
    network
}

/// Four /24s: small enough to exhaust.
fn tiny() -> ClusterNetwork {
    network("10.1.0.0/22", 8)
}

async fn start(name: &str, network: ClusterNetwork, masters: usize) -> ControlPlane {
    match ControlPlane::start(name, network, masters).await {
        Ok(cp) => cp,
        Err(err) => panic!("starting the control plane: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_and_300_concurrent_registrations() {
    let cp = Arc::new(start("race", network("10.128.0.0/14", 9), 3).await);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let cp = cp.clone();
        tasks.push(tokio::spawn(async move {
            // Registrations reach all three masters' APIs at once.
            let client = cp.masters[i % 3].client();
            let body = RegisterNode { name: format!("node-{i}"), ip: ip(i) };
            client.post::<_, NodeView>("/api/v1/nodes", &body).await.map_err(|e| format!("node-{i}: {e}"))
        }));
    }
    for task in tasks {
        task.await.expect("registration task").expect("registration accepted");
    }
    let allocations = cp.wait_allocated(300, Duration::from_secs(60)).await;
    allocations.assert_consistent(&cp.network);
    let names: BTreeSet<_> = allocations.subnets.keys().cloned().collect();
    assert_eq!(names, (0..300).map(|i| format!("node-{i}")).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_allocation_hands_over_without_duplicates() {
    let mut cp = start("failover", network("10.128.0.0/14", 9), 3).await;
    let leader = wait::until(Duration::from_secs(10), || async { cp.leader().await.ok_or("no leader".to_string()) })
        .await
        .expect("a leader is elected");
    let store = cp.store.clone();
    let registering = tokio::spawn(async move {
        for i in 0..200 {
            let node = sdn_cluster::Node { name: format!("node-{i}"), ip: ip(i) };
            store.register_node(&node).await.expect("register");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    cp.wait_allocated_at_least(40, Duration::from_secs(30)).await;
    let killed_at = Instant::now();
    let index = cp.masters.iter().position(|m| m.name() == leader).expect("leader is one of ours");
    cp.masters[index].process().kill();
    let new_leader = wait::until(Duration::from_secs(20), || async {
        match cp.leader().await {
            Some(name) if name != leader => Ok(name),
            other => Err(format!("leader {other:?}")),
        }
    })
    .await
    .expect("a standby takes over");
    // The lease (3 s in tests) must expire first; a standby then wins within
    // a tick. The bound is loose for a loaded machine; "seconds" is the point.
    assert!(killed_at.elapsed() < Duration::from_secs(15), "takeover by {new_leader} took {:?}", killed_at.elapsed());
    registering.await.expect("registrations finish");
    let allocations = cp.wait_allocated(200, Duration::from_secs(60)).await;
    allocations.assert_consistent(&cp.network);
}

/// A leader frozen past its lease wakes up believing it still leads, with a
/// stale cache, while the new leader allocates: only the leadership compare
/// in every transaction keeps the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_leader_cannot_write() {
    let mut cp = start("stale", network("10.128.0.0/14", 9), 2).await;
    let leader = wait::until(Duration::from_secs(10), || async { cp.leader().await.ok_or("no leader".to_string()) })
        .await
        .expect("a leader is elected");
    let index = cp.masters.iter().position(|m| m.name() == leader).expect("leader is one of ours");
    cp.masters[index].process().signal(libc::SIGSTOP);
    wait::until(Duration::from_secs(20), || async {
        match cp.leader().await {
            Some(name) if name != leader => Ok(()),
            other => Err(format!("leader {other:?}")),
        }
    })
    .await
    .expect("the standby takes over");
    for i in 0..50 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    cp.wait_allocated(50, Duration::from_secs(30)).await;
    // Wake the old leader while more nodes arrive: its first plan comes from a
    // cache without the 50 allocations above.
    cp.masters[index].process().signal(libc::SIGCONT);
    for i in 50..100 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    let allocations = cp.wait_allocated(100, Duration::from_secs(30)).await;
    allocations.assert_consistent(&cp.network);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cp.allocations().await, allocations, "nothing changed after the dust settled");
    let woken = cp.masters[index].log();
    assert!(!woken.contains("allocated 10."), "the stale leader allocated nothing:\n{woken}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_master_and_etcd_restarts() {
    let mut cp = start("restart", ClusterNetwork::default(), 1).await;
    for i in 0..20 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    let before = cp.wait_allocated(20, Duration::from_secs(20)).await;
    before.assert_consistent(&cp.network);

    cp.masters[0].restart().await.expect("master restarts");
    // The new process leads once the old one's lease has expired; only then
    // could it have changed anything.
    cp.masters[0].wait_leading(Duration::from_secs(20)).await.expect("the restarted master leads");
    assert_eq!(cp.allocations().await, before, "a master restart changes nothing");

    cp.etcd.stop();
    let master = &cp.masters[0];
    let body = master.wait_unready(Duration::from_secs(20)).await.expect("not ready while etcd is down");
    assert!(body.contains("etcd is unreachable"), "{body}");
    cp.etcd.resume().await.expect("etcd restarts");
    master.wait_ready(Duration::from_secs(30)).await.expect("ready again");
    assert_eq!(cp.allocations().await, before, "an etcd restart changes nothing");

    // The master's watch resumed: a node registered now is served.
    cp.register("node-late", ip(99)).await;
    let after = cp.wait_allocated(21, Duration::from_secs(20)).await;
    after.assert_consistent(&cp.network);
    for (node, subnet) in &before.subnets {
        assert_eq!(after.subnets.get(node), Some(subnet));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_node_subnet_is_reused() {
    let cp = start("reuse", tiny(), 1).await;
    for i in 0..4 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    let before = cp.wait_allocated(4, Duration::from_secs(20)).await;
    let freed = before.subnets["node-2"];
    cp.masters[0].client().delete("/api/v1/nodes/node-2").await.expect("delete");
    cp.wait_allocated(3, Duration::from_secs(20)).await.assert_consistent(&cp.network);
    cp.register("node-new", ip(50)).await;
    let after = cp.wait_allocated(4, Duration::from_secs(20)).await;
    after.assert_consistent(&cp.network);
    assert_eq!(after.subnets["node-new"], freed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_waits_quietly_and_recovers() {
    let cp = start("exhaust", tiny(), 1).await;
    for i in 0..6 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    cp.wait_allocated(4, Duration::from_secs(20)).await.assert_consistent(&cp.network);
    let master = &cp.masters[0];
    let nodes: Vec<NodeView> = master.client().get("/api/v1/nodes").await.expect("list");
    let pending: Vec<_> = nodes.iter().filter(|n| n.phase == Phase::Pending).map(|n| n.name.as_str()).collect();
    assert_eq!(pending, ["node-4", "node-5"], "the last two registered wait");
    // Registered through the API: answered as pending, not held until the read-your-write wait
    // runs out; a node that has its subnet is answered with it.
    let asked = Instant::now();
    let late: NodeView = master
        .client()
        .post("/api/v1/nodes", &RegisterNode { name: "node-6".into(), ip: ip(6) })
        .await
        .expect("register");
    assert_eq!((late.phase, late.subnet), (Phase::Pending, None), "{late:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "an exhausted network is answered at once: {:?}",
        asked.elapsed()
    );
    let again: NodeView = master
        .client()
        .post("/api/v1/nodes", &RegisterNode { name: "node-0".into(), ip: ip(0) })
        .await
        .expect("register");
    assert_eq!(again.phase, Phase::Allocated, "{again:?}");
    assert_eq!(
        again.subnet.map(|s| s.to_string()),
        nodes.iter().find(|n| n.name == "node-0").and_then(|n| n.subnet).map(|s| s.to_string())
    );

    // Waiting nodes cause no writes and no retries: no retry storm.
    let r0 = cp.revision().await;
    let attempts = |log: &str| log.matches("allocation:").count();
    let a0 = attempts(&master.log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cp.revision().await, r0, "nothing is written while the network is exhausted");
    assert_eq!(attempts(&master.log()), a0, "nothing is retried while nothing changes");

    let metrics = master.metrics().await.expect("metrics");
    for line in ["sdn_master_nodes_pending 3", "sdn_master_subnets_free 0", "sdn_master_etcd_errors_total 0"] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing:\n{metrics}");
    }
    let log = master.log();
    assert_eq!(log.matches("node node-4 waits for a subnet").count(), 1, "logged once:\n{log}");

    for gone in ["node-0", "node-1"] {
        master.client().delete(&format!("/api/v1/nodes/{gone}")).await.expect("delete");
    }
    let after = cp
        .wait_allocations("node-4 and node-5 served", Duration::from_secs(20), |a| {
            a.subnets.len() == 4 && a.subnets.contains_key("node-4") && a.subnets.contains_key("node-5")
        })
        .await;
    after.assert_consistent(&cp.network);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ip_change_keeps_its_subnet() {
    let cp = start("ipchange", ClusterNetwork::default(), 1).await;
    let client = cp.masters[0].client();
    let _: NodeView =
        client.post("/api/v1/nodes", &RegisterNode { name: "node-a".into(), ip: ip(1) }).await.expect("register");
    let first = cp.wait_allocated(1, Duration::from_secs(20)).await.subnets["node-a"];
    let moved: NodeView =
        client.post("/api/v1/nodes", &RegisterNode { name: "node-a".into(), ip: ip(2) }).await.expect("move");
    assert_eq!(moved.subnet, Some(first));
    let subnet = wait::until(Duration::from_secs(10), || async {
        let s: sdn_cluster::HostSubnet = client.get("/api/v1/subnets/node-a").await.map_err(|e| e.to_string())?;
        if s.host_ip == ip(2) { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await
    .expect("the HostSubnet follows the new IP");
    assert_eq!(subnet.subnet, first);
    // The old IP is free for another node.
    let _: NodeView =
        client.post("/api/v1/nodes", &RegisterNode { name: "node-b".into(), ip: ip(1) }).await.expect("reuse ip");
    let both = cp.wait_allocated(2, Duration::from_secs(20)).await;
    both.assert_consistent(&cp.network);
    assert_eq!(both.subnets["node-a"], first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_disconnect_and_relists_after_compaction() {
    let mut cp = start("watch", ClusterNetwork::default(), 0).await;
    let target = format!("127.0.0.1:{}", cp.etcd.port()).parse().expect("addr");
    let proxy = Proxy::start(target).await.expect("proxy");
    let mut options = cp.master_options("watch-m0");
    options.etcd_endpoint = proxy.endpoint();
    let master = Master::start(cp.dir.clone(), options).await.expect("master via proxy");
    cp.masters.push(master);
    for i in 0..3 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    cp.wait_allocated(3, Duration::from_secs(20)).await;

    // Disconnect: nodes registered meanwhile arrive through the resumed watch.
    proxy.cut();
    let master = &cp.masters[0];
    master.wait_unready(Duration::from_secs(20)).await.expect("the master notices etcd is gone");
    cp.register("node-3", ip(3)).await;
    cp.register("node-4", ip(4)).await;
    proxy.restore();
    cp.wait_allocated(5, Duration::from_secs(30)).await;
    let log = master.log();
    assert!(log.contains("resuming") && !log.contains("listing again"), "resumed, not re-listed:\n{log}");

    // Disconnect again and compact past the master's revision: it must list again.
    proxy.cut();
    master.wait_unready(Duration::from_secs(20)).await.expect("the master notices etcd is gone again");
    cp.register("node-5", ip(5)).await;
    // One more revision after node-5, so compaction removes node-5's event.
    let mut client = cp.store.client();
    let revision = client.put("/unrelated", "x", None).await.expect("put").header().expect("header").revision();
    client.compact(revision, None).await.expect("compact");
    proxy.restore();
    cp.wait_allocated(6, Duration::from_secs(30)).await.assert_consistent(&cp.network);
    assert!(master.log().contains("was compacted"), "the informer re-listed:\n{}", master.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_at_start_is_waited_for() {
    let cp = start("noetcd", ClusterNetwork::default(), 0).await;
    let target = format!("127.0.0.1:{}", cp.etcd.port()).parse().expect("addr");
    let proxy = Proxy::start(target).await.expect("proxy");
    proxy.cut();
    let mut options: MasterOptions = cp.master_options("noetcd-m0");
    options.etcd_endpoint = proxy.endpoint();
    let mut master = Master::spawn(cp.dir.clone(), options).expect("spawn");
    let probe = wait::until(Duration::from_secs(10), || async {
        match (master.probe("/healthz").await, master.probe("/readyz").await) {
            (Ok((200, _)), Ok((503, _))) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    probe.expect("alive but not ready");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(master.process().is_running(), "no exit loop:\n{}", master.log());
    let log = master.log();
    assert!(log.contains(&format!("etcd at {}", proxy.endpoint())) && log.contains("retrying in"), "{log}");
    proxy.restore();
    master.wait_ready(Duration::from_secs(30)).await.expect("ready once etcd is reachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_change_that_orphans_subnets_is_refused() {
    let mut cp = start("layout", ClusterNetwork::default(), 1).await;
    cp.register("node-0", ip(0)).await;
    cp.wait_allocated(1, Duration::from_secs(20)).await;
    cp.masters[0].process().kill();

    let mut moved = cp.master_options("layout-moved");
    moved.network = network("10.2.0.0/16", 8);
    let mut refused = Master::spawn(cp.dir.clone(), moved).expect("spawn");
    let status = refused.process().wait_exit(Duration::from_secs(20)).await.expect("the master exits");
    assert!(!status.success());
    let log = refused.log();
    assert!(log.contains("network differs") && log.contains("10.1.0.0/24 would be orphaned"), "{log}");

    // A change that orphans nothing (the MTU) is taken.
    let mut mtu = cp.master_options("layout-mtu");
    mtu.network.mtu = Some(1400);
    let master = Master::start(cp.dir.clone(), mtu).await.expect("starts");
    let stored: ClusterNetwork = master.client().get("/api/v1/network").await.expect("network");
    assert_eq!(stored.mtu, Some(1400));
    assert_eq!(cp.allocations().await.subnets.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_records_lose_nothing_and_stall_nothing() {
    let cp = start("corrupt", tiny(), 1).await;
    for i in 0..2 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    let before = cp.wait_allocated(2, Duration::from_secs(20)).await;
    let keys = cp.store.keys().clone();
    let mut client = cp.store.client();
    // node-0's record becomes unreadable, node-1's gains a field from a newer
    // writer, and a stray record that is not JSON appears.
    client.put(keys.node("node-0"), "{not json", None).await.expect("put");
    client.put(keys.node("node-1"), r#"{"name":"node-1","ip":"192.0.2.2","zone":"b"}"#, None).await.expect("put");
    client.put(keys.node("node-x"), "\u{0}garbage", None).await.expect("put");
    for i in 2..5 {
        cp.register(&format!("node-{i}"), ip(i)).await;
    }
    // Four subnets: node-0 and node-1 keep theirs, two of the three new nodes
    // get one, and nothing is retried while the third waits.
    let after = cp.wait_allocated(4, Duration::from_secs(20)).await;
    after.assert_consistent(&cp.network);
    assert_eq!(after.subnets["node-0"], before.subnets["node-0"]);
    assert_eq!(after.subnets["node-1"], before.subnets["node-1"]);
    let master = &cp.masters[0];
    let a0 = master.log().matches("allocation:").count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(master.log().matches("allocation:").count(), a0, "no retries");
    let log = master.log();
    assert_eq!(log.matches("skipping etcd key /sdn/nodes/node-0").count(), 1, "logged once:\n{log}");
    let nodes: Vec<NodeView> = master.client().get("/api/v1/nodes").await.expect("list");
    assert!(nodes.iter().any(|n| n.name == "node-1" && n.phase == Phase::Allocated), "{nodes:?}");
}
