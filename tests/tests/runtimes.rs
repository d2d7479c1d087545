//! Real container runtimes attach containers through `sdn-cni` with their defaults, as a user on
//! a node runs them: podman 4.3 with its CNI backend and runc (`podman run --network sdn`), and
//! containerd 1.6 through `ctr run --cni`, each in a node namespace of the harness, with the
//! conflist and plugin the agent installed, running a busybox image made locally.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use sdn_tests::containerd::Containerd;
use sdn_tests::node::{Cluster, NodeAgent};
use sdn_tests::podman::Podman;
use serde_json::{Value, json};

async fn cluster(tag: &str, nodes: usize) -> Cluster {
    match Cluster::start(tag, nodes).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster: {err}"),
    }
}

/// `default/web` with one port; its cluster IP.
async fn web_service(c: &Cluster) -> String {
    let body = json!({ "namespace": "default", "name": "web", "ports": [{ "name": "http", "port": 80 }] });
    let created: Value = c.cp.masters[0].client().post("/api/v1/services", &body).await.expect("service created");
    created["clusterIP"].as_str().expect("a cluster IP").to_owned()
}

/// The IPv4 address of eth0 in `ip -o -4 addr show eth0` output.
fn eth0_address(shown: &str) -> Ipv4Addr {
    let cidr = shown.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or_default();
    cidr.split('/').next().unwrap_or_default().parse().unwrap_or_else(|_| panic!("no address in {shown:?}"))
}

fn in_subnet(ip: Ipv4Addr, node: usize) -> bool {
    ip.octets()[..3] == [10, 1, node as u8]
}

/// The resolv.conf the kubelet would write for a pod of `default` on node 0.
const RESOLV_CONF: &str =
    "nameserver 10.1.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

/// Waits until the node's pod records in etcd (`sdnctl pods list`) hold `want` and lack `gone`.
async fn records(c: &Cluster, node: &NodeAgent, want: &[&str], gone: &[&str]) {
    let listed = sdn_tests::wait::until(Duration::from_secs(10), || async {
        let (ok, out, err) =
            c.cp.masters[0].sdnctl(&["pods", "list", "--node", &node.name]).map_err(|e| e.to_string())?;
        let holds = want.iter().all(|w| out.contains(w)) && !gone.iter().any(|g| out.contains(g));
        if ok && holds { Ok(()) } else { Err(format!("{out}{err}")) }
    })
    .await;
    assert!(listed.is_ok(), "pod records want {want:?}, not {gone:?}: {listed:?}");
}

/// Asserts that `web` resolves, through the container's search list, to the service.
fn resolves_web(exec: impl Fn(&[&str]) -> Result<String, String>, service_ip: &str) {
    // busybox's nslookup asks every search domain and fails when the last ones are NXDOMAIN.
    let found = exec(&["sh", "-c", "nslookup web || true"]).unwrap_or_else(|e| panic!("nslookup web: {e}"));
    let answer = format!("Name:\tweb.default.svc.cluster.local\nAddress: {service_ip}");
    assert!(found.contains(&answer), "web is {service_ip} in default: {found}");
}

/// Pings `to` from a container through `exec`.
fn pings(exec: impl Fn(&[&str]) -> Result<String, String>, to: Ipv4Addr) -> Result<String, String> {
    exec(&["ping", "-c", "2", "-W", "2", &to.to_string()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_with_its_defaults_attaches_a_container_that_reaches_the_cluster_and_leaves_nothing() {
    let mut c = cluster("podman", 2).await;
    let service_ip = web_service(&c).await;
    let remote = c.nodes[1].attach_pod("remote").await.expect("a pod on the other node");
    let podman = Podman::new(&c.cp.dir, &c.nodes[0]).unwrap_or_else(|e| panic!("podman: {e}"));

    // No --name: podman generates one with an underscore and passes it as K8S_POD_NAME.
    let id = podman.run(&[], &["sleep", "600"]).unwrap_or_else(|e| panic!("podman run: {e}\n{}", c.logs()));
    let name = podman.podman(&["inspect", "--format", "{{.Name}}", &id]).expect("inspect");
    assert!(name.contains('_'), "a generated name: {name}");
    let exec = |cmd: &[&str]| podman.exec(&id, cmd);
    let ip = eth0_address(&exec(&["ip", "-o", "-4", "addr", "show", "eth0"]).expect("eth0"));
    assert!(in_subnet(ip, 0), "{ip} in node 0's subnet");
    let attached = c.nodes[0].attachments().await;
    let record = attached.iter().find(|a| a["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} in {attached:?}"));
    assert_eq!((record["ip"].as_str(), record["name"].as_str()), (Some(ip.to_string().as_str()), Some(name.as_str())));
    records(&c, &c.nodes[0], &[&name, &ip.to_string()], &[]).await;

    // Across nodes, out of the cluster, and a service by its short name through the resolv.conf
    // podman wrote from the CNI result.
    pings(exec, remote.ip).unwrap_or_else(|e| panic!("to a pod on node 1: {e}\n{}", c.logs()));
    pings(exec, Cluster::EXTERNAL_IP).unwrap_or_else(|e| panic!("to the external host: {e}"));
    let resolv = exec(&["cat", "/etc/resolv.conf"]).expect("resolv.conf");
    assert!(resolv.contains("nameserver 10.1.0.1"), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    resolves_web(exec, &service_ip);

    // The agent killed and restarted under the running container: it stays connected.
    c.nodes[0].restart().await.expect("agent restart");
    pings(exec, remote.ip).unwrap_or_else(|e| panic!("after the agent restart: {e}\n{}", c.logs()));

    // podman rm runs DEL: no veth, address or record stays.
    podman.podman(&["rm", "--force", "--time", "0", &id]).expect("podman rm");
    c.nodes[0].wait_pod_veths(0).await;
    assert!(c.nodes[0].attachments().await.is_empty(), "address released");
    records(&c, &c.nodes[0], &[], &[&name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_podman_containers_started_at_once_get_distinct_addresses() {
    let c = cluster("podman-many", 1).await;
    let podman = Podman::new(&c.cp.dir, &c.nodes[0]).unwrap_or_else(|e| panic!("podman: {e}"));
    let ids: Vec<String> = std::thread::scope(|s| {
        let started: Vec<_> = (0..20).map(|_| s.spawn(|| podman.run(&[], &["sleep", "600"]))).collect();
        started.into_iter().map(|h| h.join().expect("thread").unwrap_or_else(|e| panic!("podman run: {e}"))).collect()
    });
    let ips: BTreeSet<Ipv4Addr> = ids
        .iter()
        .map(|id| eth0_address(&podman.exec(id, &["ip", "-o", "-4", "addr", "show", "eth0"]).expect("eth0")))
        .collect();
    assert_eq!(ips.len(), 20, "distinct addresses: {ips:?}");
    assert_eq!(c.nodes[0].attachments().await.len(), 20);
    podman.podman(&["rm", "--all", "--force", "--time", "0"]).expect("podman rm --all");
    c.nodes[0].wait_pod_veths(0).await;
    assert!(c.nodes[0].attachments().await.is_empty(), "every address released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_run_cni_attaches_a_container_that_reaches_the_cluster_and_kill_and_delete_leave_nothing() {
    let mut c = cluster("ctr", 2).await;
    let service_ip = web_service(&c).await;
    let remote = c.nodes[1].attach_pod("remote").await.expect("a pod on the other node");
    let podman = Podman::new(&c.cp.dir, &c.nodes[0]).unwrap_or_else(|e| panic!("podman: {e}"));
    let ctr = Containerd::start(&c.cp.dir, &c.nodes[0], &podman).await.unwrap_or_else(|e| panic!("containerd: {e}"));

    // ctr writes no resolv.conf: the container gets the one a kubelet would write.
    let resolv = c.cp.dir.path().join("ctr-resolv.conf");
    std::fs::write(&resolv, RESOLV_CONF).expect("resolv.conf");
    let mount = format!("type=bind,src={},dst=/etc/resolv.conf,options=rbind:ro", resolv.display());
    let id = "web_1";
    ctr.ctr(&["run", "--detach", "--cni", "--mount", &mount, sdn_tests::image::IMAGE, id, "sleep", "600"])
        .unwrap_or_else(|e| panic!("ctr run: {e}\n{}", c.logs()));
    let exec = |cmd: &[&str]| ctr.exec(id, cmd);
    let ip = eth0_address(&exec(&["ip", "-o", "-4", "addr", "show", "eth0"]).expect("eth0"));
    assert!(in_subnet(ip, 0), "{ip} in node 0's subnet");
    // ctr's CNI container ID is <namespace>-<id>; it passes no CNI_ARGS.
    let attached = c.nodes[0].attachments().await;
    assert!(attached.iter().any(|a| a["id"] == "default-web_1" && a["ip"] == ip.to_string().as_str()), "{attached:?}");
    records(&c, &c.nodes[0], &["default-web_1", &ip.to_string()], &[]).await;

    pings(exec, remote.ip).unwrap_or_else(|e| panic!("to a pod on node 1: {e}\n{}", c.logs()));
    pings(exec, Cluster::EXTERNAL_IP).unwrap_or_else(|e| panic!("to the external host: {e}"));
    resolves_web(exec, &service_ip);

    c.nodes[0].restart().await.expect("agent restart");
    pings(exec, remote.ip).unwrap_or_else(|e| panic!("after the agent restart: {e}\n{}", c.logs()));

    // ctr never runs DEL: the agent sees the pod's veth go with its namespace.
    ctr.remove(id).await.unwrap_or_else(|e| panic!("ctr task kill + delete: {e}"));
    c.nodes[0].wait_pod_veths(0).await;
    wait_attachments(&c.nodes[0], 0).await;
    records(&c, &c.nodes[0], &[], &["default-web_1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_ctr_containers_started_at_once_get_distinct_addresses_and_go_also_while_the_agent_is_down() {
    let mut c = cluster("ctr-many", 1).await;
    let podman = Podman::new(&c.cp.dir, &c.nodes[0]).unwrap_or_else(|e| panic!("podman: {e}"));
    let ctr = Containerd::start(&c.cp.dir, &c.nodes[0], &podman).await.unwrap_or_else(|e| panic!("containerd: {e}"));
    let ids: Vec<String> = (0..20).map(|i| format!("many-{i}")).collect();
    std::thread::scope(|s| {
        let started: Vec<_> = ids.iter().map(|id| s.spawn(|| ctr.run(id, &["sleep", "600"]))).collect();
        for handle in started {
            handle.join().expect("thread").unwrap_or_else(|e| panic!("ctr run: {e}"));
        }
    });
    let ips: BTreeSet<Ipv4Addr> = ids
        .iter()
        .map(|id| eth0_address(&ctr.exec(id, &["ip", "-o", "-4", "addr", "show", "eth0"]).expect("eth0")))
        .collect();
    assert_eq!(ips.len(), 20, "distinct addresses: {ips:?}");
    assert_eq!(c.nodes[0].attachments().await.len(), 20);
    // Ten end while no agent runs; the next one finds them gone as it starts.
    c.nodes[0].kill();
    for id in &ids[..10] {
        ctr.remove(id).await.unwrap_or_else(|e| panic!("removing {id}: {e}"));
    }
    c.nodes[0].wait_pod_veths(10).await;
    c.nodes[0].restart().await.expect("agent restart");
    wait_attachments(&c.nodes[0], 10).await;
    for id in &ids[10..] {
        ctr.remove(id).await.unwrap_or_else(|e| panic!("removing {id}: {e}"));
    }
    c.nodes[0].wait_pod_veths(0).await;
    wait_attachments(&c.nodes[0], 0).await;
}

/// Waits up to 10 s for the node to have `count` attachments.
async fn wait_attachments(node: &NodeAgent, count: usize) {
    let settled = sdn_tests::wait::until(Duration::from_secs(10), || async {
        let left = node.attachments().await.len();
        if left == count { Ok(()) } else { Err(format!("{left} attachments")) }
    })
    .await;
    assert!(settled.is_ok(), "wanted {count} attachments on {}: {settled:?}\n{}", node.name, node.log());
}
