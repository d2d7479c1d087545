//! A three-member etcd cluster under failure: its leader killed while three masters allocate,
//! a member stopped for good, quorum lost and regained, a member wiped and re-added, and
//! compaction with defragmentation while nodes register. Masters and agents are given every
//! member's endpoint. Nothing may be allocated twice, nothing registered may be lost.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use sdn_cluster::store::Store;
use sdn_cluster::{ClusterNetwork, Node};
use sdn_tests::etcd_cluster::EtcdCluster;
use sdn_tests::master::{Allocations, Master, MasterOptions};
use sdn_tests::netns::Underlay;
use sdn_tests::node::NodeAgent;
use sdn_tests::rundir::RunDir;

/// Room for thousands of /24s.
fn wide() -> ClusterNetwork {
    ClusterNetwork { network: "10.0.0.0/8".parse().expect("cidr"), ..Default::default() }
}

async fn masters(dir: &Arc<RunDir>, etcd: &EtcdCluster, count: usize, tag: &str) -> Vec<Master> {
    let mut started = Vec::new();
    for i in 0..count {
        let mut options = MasterOptions::new(&format!("{tag}-m{i}"), &etcd.endpoints());
        options.network = wide();
        started.push(Master::start(dir.clone(), options).await.unwrap_or_else(|e| panic!("master {i}: {e}")));
    }
    started
}

async fn store(etcd: &EtcdCluster) -> Store {
    Store::open(&etcd.config("/sdn")).await.unwrap_or_else(|e| panic!("connecting to the etcd cluster: {e}"))
}

fn node(i: u32) -> Node {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
    Node { name: format!("node-{i}"), ip: IpAddr::V4(ip) }
}

/// Registers `node` as an agent does: again after an etcd error (a registration whose answer
/// was lost is found done on the retry). How many times it had to try again.
async fn register(store: &Store, node: &Node) -> u32 {
    for attempt in 0..100 {
        match store.register_node(node).await {
            Ok(_) => return attempt,
            Err(err) if attempt < 99 => {
                eprintln!("registering {}: {err}; again", node.name);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("registering {}: {err}", node.name),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Waits until `count` nodes hold subnets, then checks every allocation is distinct and claimed.
async fn wait_all_allocated(store: &Store, count: usize, timeout: Duration, logs: impl Fn() -> String) -> Allocations {
    let reached = sdn_tests::wait::until(timeout, || async {
        let allocations = Allocations::try_read(store).await?;
        if allocations.subnets.len() >= count { Ok(allocations) } else { Err(allocations.subnets.len().to_string()) }
    })
    .await;
    let allocations = reached.unwrap_or_else(|last| panic!("not all {count} nodes allocated: {last}\n{}", logs()));
    allocations.assert_consistent(&wide());
    assert_eq!(allocations.subnets.len(), count, "more subnets than nodes");
    allocations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_killed_during_300_registrations_on_three_masters() {
    let dir = Arc::new(RunDir::new("etcd-leader").expect("run dir"));
    let mut etcd = EtcdCluster::start(dir.clone(), 3).await.expect("etcd cluster");
    let masters = masters(&dir, &etcd, 3, "el").await;
    let store = Arc::new(store(&etcd).await);
    let mut tasks = Vec::new();
    for worker in 0..10u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..300).step_by(10) {
                register(&store, &node(i)).await;
            }
        }));
    }
    // About a third in, the member that leads goes.
    let early = sdn_tests::wait::until(Duration::from_secs(30), || async {
        let count = Allocations::try_read(&store).await?.subnets.len();
        if count >= 100 { Ok(()) } else { Err(count.to_string()) }
    })
    .await;
    early.expect("100 nodes allocated before the leader is killed");
    let leader = etcd.leader().await.expect("a leader");
    etcd.kill(leader);
    for task in tasks {
        task.await.expect("registrations");
    }
    let logs = || masters.iter().map(|m| m.log()).collect::<String>();
    wait_all_allocated(&store, 300, Duration::from_secs(60), logs).await;
    assert_ne!(etcd.wait_leader(Duration::from_secs(10)).await.expect("a new leader"), leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stopped_for_good_and_one_wiped_and_readded_lose_nothing() {
    let dir = Arc::new(RunDir::new("etcd-member").expect("run dir"));
    let mut etcd = EtcdCluster::start(dir.clone(), 3).await.expect("etcd cluster");
    let masters = masters(&dir, &etcd, 2, "em").await;
    let store = store(&etcd).await;
    for i in 0..20 {
        register(&store, &node(i)).await;
    }
    let logs = || masters.iter().map(|m| m.log()).collect::<String>();
    wait_all_allocated(&store, 20, Duration::from_secs(30), logs).await;
    // One member goes for good, not the leader (its loss, an election, fails the requests in
    // flight; the test above covers it): two keep the quorum, and everything goes on.
    let leader = etcd.leader().await.expect("a leader");
    let gone = (0..3).find(|&i| i != leader).unwrap_or(2);
    etcd.kill(gone);
    let mut again = 0;
    for i in 20..40 {
        again += register(&store, &node(i)).await;
    }
    // A request the client gave the dead member is sent to another at once, unseen by callers.
    assert_eq!(again, 0, "registrations failed while one member of three was down");
    wait_all_allocated(&store, 40, Duration::from_secs(30), logs).await;
    for master in &masters {
        master.wait_ready(Duration::from_secs(10)).await.expect("masters ready with two members");
    }
    // Its disk is replaced: the member is removed, wiped, added again and catches up.
    etcd.wipe_and_readd(gone).await.expect("the member re-added empty");
    for i in 40..60 {
        register(&store, &node(i)).await;
    }
    wait_all_allocated(&store, 60, Duration::from_secs(30), logs).await;
    let alone = Store::open(&etcd.member_config(gone, "/sdn")).await.expect("a store on that member alone");
    let caught_up = sdn_tests::wait::until(Duration::from_secs(20), || async {
        let seen = Allocations::try_read(&alone).await?.subnets.len();
        if seen == 60 { Ok(()) } else { Err(seen.to_string()) }
    })
    .await;
    caught_up.expect("the re-added member holds every allocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_masters_wait_and_say_why_and_pods_keep_talking() {
    let dir = Arc::new(RunDir::new("etcd-quorum").expect("run dir"));
    let mut etcd = EtcdCluster::start(dir.clone(), 3).await.expect("etcd cluster");
    let masters = masters(&dir, &etcd, 1, "eq").await;
    let master = &masters[0];
    let prefix = format!("eq-{}", std::process::id());
    let underlay = Underlay::new(dir.clone(), &format!("{prefix}-sw")).expect("underlay");
    let mut agents = Vec::new();
    for i in 0..2u8 {
        let target = (etcd.endpoints(), Vec::new());
        let ip = Ipv4Addr::new(192, 0, 2, 11 + i);
        let name = format!("{prefix}-n{i}");
        agents.push(NodeAgent::start_on(dir.clone(), target, &underlay, &name, ip, true).await.expect("agent"));
    }
    let a = agents[0].attach_pod("a").await.expect("pod a");
    let b = agents[1].attach_pod("b").await.expect("pod b");
    assert!(a.ns.ping(b.ip, 2, 56, false), "pods talk with etcd whole");

    etcd.kill(0);
    etcd.kill(1);
    let said = sdn_tests::wait::until(Duration::from_secs(15), || async {
        match master.probe("/readyz").await? {
            (503, body) if body.contains("cannot commit") => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    let body = said.unwrap_or_else(|last| panic!("/readyz without quorum: {last}\n{}", master.log()));
    assert!(body.starts_with("not ready: etcd cannot commit"), "{body}");
    assert!(master.log().contains("etcd cannot commit"), "the log does not say why:\n{}", master.log());
    // The dataplane goes on with what it has, both ways, across nodes.
    assert!(a.ns.ping(b.ip, 3, 56, false) && b.ns.ping(a.ip, 3, 56, false), "pods without quorum");

    etcd.resume(0).expect("m0 back");
    etcd.resume(1).expect("m1 back");
    etcd.wait_leader(Duration::from_secs(20)).await.expect("quorum back");
    master.wait_ready(Duration::from_secs(20)).await.expect("master ready again");
    assert!(master.log().contains("etcd commits again"), "{}", master.log());
    let store = store(&etcd).await;
    register(&store, &node(7)).await;
    let logs = || master.log();
    wait_all_allocated(&store, 3, Duration::from_secs(20), logs).await;
    let c = agents[1].attach_pod("c").await.expect("pod c after quorum is back");
    assert!(a.ns.ping(c.ip, 2, 56, false), "a new pod reachable after quorum is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_defragmentation_under_registrations_lose_nothing() {
    let dir = Arc::new(RunDir::new("etcd-compact").expect("run dir"));
    let etcd = EtcdCluster::start(dir.clone(), 3).await.expect("etcd cluster");
    let masters = masters(&dir, &etcd, 2, "ec").await;
    let store = Arc::new(store(&etcd).await);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                register(&store, &node(i)).await;
            }
        })
    };
    let mut compactions = 0;
    while !writer.is_finished() {
        etcd.compact_and_defragment().await.expect("compaction and defragmentation");
        compactions += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writer.await.expect("registrations");
    assert!(compactions >= 2, "only {compactions} compactions ran during the registrations");
    let logs = || masters.iter().map(|m| m.log()).collect::<String>();
    wait_all_allocated(&store, 150, Duration::from_secs(30), logs).await;
    // The masters' caches followed: a registration after the last compaction is allocated too.
    etcd.compact_and_defragment().await.expect("a last compaction");
    register(&store, &node(1000)).await;
    wait_all_allocated(&store, 151, Duration::from_secs(20), logs).await;
}
