//! Direct routing (`directRouting` in the `ClusterNetwork`): nodes on one underlay segment send
//! each other's pods' packets unencapsulated, nodes across a router keep VXLAN, and every pair
//! talks. An unencapsulated packet under a remote pod's source is taken only from that pod's
//! node: not from another host on the segment, not through a router. Switching the setting
//! moves the nodes between the two paths without losing a connection.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use sdn_cluster::ClusterNetwork;
use sdn_tests::backend::Connection;
use sdn_tests::cluster::ControlPlane;
use sdn_tests::forge::{INNER_PORT, arrives, send_udp_from};
use sdn_tests::netns::{Netns, Underlay};
use sdn_tests::node::{Cluster, NodeAgent, Pod, tcp_transfer};
use sdn_tests::rundir::RunDir;

const NEAR_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const FAR_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

/// Two nodes on the segment 192.0.2.0/24 (with a host that is no node), a third on
/// 198.51.100.0/24 behind a router between the two.
struct Mixed {
    cp: ControlPlane,
    nodes: Vec<NodeAgent>,
    router: Netns,
    outsider: Netns,
    _near: Underlay,
    _far: Underlay,
}

impl Mixed {
    async fn start(tag: &str, network: ClusterNetwork) -> Self {
        let dir = Arc::new(RunDir::new(tag).expect("run dir"));
        let prefix = format!("{tag}-{}", std::process::id());
        let cp = ControlPlane::start_in(dir.clone(), &prefix, network, 1).await.expect("control plane");
        let near = Underlay::new(dir.clone(), &format!("{prefix}-swa")).expect("near segment");
        let far = Underlay::new(dir.clone(), &format!("{prefix}-swb")).expect("far segment");
        let router = Netns::create(dir.clone(), &format!("{prefix}-rt")).expect("router");
        near.plug_as(&router, NEAR_ROUTER, "near").expect("router on the near segment");
        far.plug_as(&router, FAR_ROUTER, "far").expect("router on the far segment");
        let forwarding = router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(forwarding.status.success(), "router forwarding: {}", String::from_utf8_lossy(&forwarding.stderr));
        let outsider = Netns::create(dir.clone(), &format!("{prefix}-out")).expect("outsider");
        near.plug(&outsider, OUTSIDER).expect("outsider on the near segment");
        let mut nodes = Vec::new();
        for (i, (segment, ip, via, other)) in [
            (&near, Ipv4Addr::new(192, 0, 2, 11), NEAR_ROUTER, "198.51.100.0/24"),
            (&near, Ipv4Addr::new(192, 0, 2, 12), NEAR_ROUTER, "198.51.100.0/24"),
            (&far, Ipv4Addr::new(198, 51, 100, 11), FAR_ROUTER, "192.0.2.0/24"),
        ]
        .into_iter()
        .enumerate()
        {
            let node = NodeAgent::start(dir.clone(), &cp, segment, &format!("{prefix}-n{i}"), ip).await.expect("node");
            node.ns.ip(&["route", "add", other, "via", &via.to_string(), "dev", "ul0"]).expect("route via the router");
            nodes.push(node);
        }
        Self { cp, nodes, router, outsider, _near: near, _far: far }
    }

    fn logs(&self) -> String {
        let nodes: String = self.nodes.iter().map(|n| format!("--- {} ---\n{}", n.name, n.log())).collect();
        format!("{nodes}{}", self.cp.logs())
    }
}

/// The `/24` host subnet of a pod (the default host subnet length).
fn subnet_of(pod: &Pod) -> String {
    let [a, b, c, _] = pod.ip.octets();
    format!("{a}.{b}.{c}.0/24")
}

/// The `table=remote` line of `node`'s flows for `subnet`.
fn remote_flow(node: &NodeAgent, subnet: &str) -> String {
    let flows = node.command("flows").unwrap_or_else(|e| panic!("flows of {}: {e}", node.name));
    let needle = format!("nw_dst={subnet} ");
    flows.lines().find(|l| l.contains("table=remote") && l.contains(&needle)).unwrap_or_default().to_owned()
}

/// Waits until `node` sends to `subnet` directly (`true`) or through the tunnel.
async fn wait_transport(node: &NodeAgent, subnet: &str, direct: bool) {
    let field = if direct { "->next_hop,output:ul0" } else { "->tun_dst" };
    let switched = sdn_tests::wait::until(Duration::from_secs(15), || async {
        let flow = remote_flow(node, subnet);
        if flow.contains(field) { Ok(()) } else { Err(flow) }
    })
    .await;
    if let Err(last) = switched {
        panic!("{} never sent to {subnet} with {field}: {last}\n{}", node.name, node.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_a_segment_route_directly_and_across_a_router_tunnel() {
    let m = Mixed::start("drt", ClusterNetwork { direct_routing: true, ..Default::default() }).await;
    let mut pods = Vec::new();
    for (node, name) in m.nodes.iter().zip(["a", "b", "c"]) {
        pods.push(node.attach_pod(name).await.unwrap_or_else(|e| panic!("pod {name}: {e}")));
    }
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    wait_transport(&m.nodes[0], &subnet_of(b), true).await;
    wait_transport(&m.nodes[1], &subnet_of(a), true).await;
    for (node, far) in [(&m.nodes[0], c), (&m.nodes[1], c), (&m.nodes[2], a), (&m.nodes[2], b)] {
        wait_transport(node, &subnet_of(far), false).await;
    }
    let direct_before =
        (m.nodes[0].decision_packets("ToDirect").await, m.nodes[1].decision_packets("FromDirect").await);
    for (from, to) in [(a, b), (b, a), (a, c), (c, a), (b, c), (c, b)] {
        assert!(from.ns.ping(to.ip, 2, 56, false), "{} to {}\n{}", from.ip, to.ip, m.logs());
        assert!(from.ns.ping(to.ip, 2, 1400, true), "{} to {}: 1,400 bytes with DF\n{}", from.ip, to.ip, m.logs());
    }
    assert!(tcp_transfer(a, b) && tcp_transfer(b, a), "TCP on the segment\n{}", m.logs());
    assert!(tcp_transfer(a, c) && tcp_transfer(c, b), "TCP across the router\n{}", m.logs());
    let sent = m.nodes[0].decision_packets("ToDirect").await - direct_before.0;
    let taken = m.nodes[1].decision_packets("FromDirect").await - direct_before.1;
    assert!(sent >= 4 && taken >= 4, "node 0 sent {sent} and node 1 took {taken} packets directly");
    // A node's own traffic to a pod on its segment goes directly too, and the answer reaches it.
    assert!(m.nodes[0].ns.ping(b.ip, 2, 56, false), "node 0 to pod b\n{}", m.logs());
    // Nothing between the two segment nodes went through VXLAN: the tunnel carried only the
    // far node's traffic.
    for node in &m.nodes[..2] {
        assert_eq!(node.dropped("direct-foreign-source").await, 0, "{}", node.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_node_itself_may_route_its_pods_packets_directly() {
    let m = Mixed::start("drs", ClusterNetwork { direct_routing: true, ..Default::default() }).await;
    let a = m.nodes[0].attach_pod("a").await.expect("pod a");
    let b = m.nodes[1].attach_pod("b").await.expect("pod b");
    let c = m.nodes[2].attach_pod("c").await.expect("pod c");
    wait_transport(&m.nodes[1], &subnet_of(&a), true).await;
    let target = SocketAddrV4::new(b.ip, INNER_PORT);
    // The honest path: a's own datagram arrives.
    let honest = arrives(&b.ns, || send_udp_from(&a.ns, a.ip, target, b"honest")).expect("listening in b");
    assert_eq!(honest.as_deref(), Some(&b"honest"[..]), "a's datagram to b\n{}", m.logs());
    // A host on the segment that is no node claims an address of node 0's subnet; the router
    // claims one of the far node's (which is not on this segment, so never sends directly).
    let [x, y, z, _] = a.ip.octets();
    let near_forged = Ipv4Addr::new(x, y, z, 99);
    let [x, y, z, _] = c.ip.octets();
    let far_forged = Ipv4Addr::new(x, y, z, 99);
    let node1 = Ipv4Addr::new(192, 0, 2, 12).to_string();
    for (who, ns, source, dev) in
        [("outsider", &m.outsider, near_forged, "ul0"), ("router", &m.router, far_forged, "near")]
    {
        ns.ip(&["addr", "add", &format!("{source}/32"), "dev", dev]).expect("forged address");
        ns.ip(&["route", "add", &format!("{}/32", b.ip), "via", &node1, "dev", dev]).expect("route to b via node 1");
        let before = m.nodes[1].dropped("direct-foreign-source").await;
        let got = arrives(&b.ns, || send_udp_from(ns, source, target, b"forged")).expect("listening in b");
        assert_eq!(got, None, "the {who}'s datagram from {source} reached b\n{}", m.logs());
        let counted = m.nodes[1].dropped("direct-foreign-source").await - before;
        assert!(counted >= 1, "the {who}'s datagram was not counted as direct-foreign-source\n{}", m.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_direct_routing_on_and_off_keeps_connections() {
    let mut c = match Cluster::start("dsw", 2).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster: {err}"),
    };
    let a = c.nodes[0].attach_pod("a").await.expect("pod a");
    let b = c.nodes[1].attach_pod("b").await.expect("pod b");
    wait_transport(&c.nodes[0], &subnet_of(&b), false).await;
    let server = sdn_tests::backend::NameServer::start(&b.ns, 8080, "b").expect("echo server in b");
    let mut connection =
        Connection::open(&a.ns, SocketAddrV4::new(b.ip, 8080), Duration::from_secs(3)).expect("connection a to b");
    connection.echo(b"tunnelled").expect("echo through the tunnel");
    for direct in [true, false] {
        let network = ClusterNetwork { direct_routing: direct, ..Default::default() };
        c.cp.masters[0].reconfigure(network).await.expect("master restarted with the new setting");
        wait_transport(&c.nodes[0], &subnet_of(&b), direct).await;
        wait_transport(&c.nodes[1], &subnet_of(&a), direct).await;
        connection.echo(b"still connected").unwrap_or_else(|e| panic!("direct {direct}: the connection broke: {e}"));
        assert!(a.ns.ping(b.ip, 2, 56, false) && b.ns.ping(a.ip, 2, 56, false), "direct {direct}\n{}", c.logs());
        assert!(tcp_transfer(&a, &b), "TCP with direct routing {direct}\n{}", c.logs());
    }
    drop(server);
}
