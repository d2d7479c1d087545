//! The dataplane with real packets: three nodes in network namespaces on an
//! underlay switch, pods as further namespaces, an external host.

use sdn_tests::node::{Cluster, tcp_transfer};

/// The first packet matching `filter` on `ns`'s underlay port while `traffic` runs, as
/// `tcpdump -vv` prints it; `traffic` must succeed.
fn capture(ns: &sdn_tests::netns::Netns, filter: &str, traffic: impl FnOnce() -> bool) -> String {
    let capture = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "timeout", "10", "tcpdump", "-n", "-l", "-vv", "-c", "1", "-i", "ul0"])
        .arg(filter)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump (Debian package tcpdump)");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(traffic(), "traffic during the capture of {filter} on {}", ns.name());
    String::from_utf8_lossy(&capture.wait_with_output().expect("tcpdump output").stdout).into_owned()
}

/// Packets `vxlan0` of `node` has received and sent.
fn vxlan0_packets(node: &sdn_tests::node::NodeAgent) -> (u64, u64) {
    let out = node.ns.exec(&["ip", "-s", "-j", "link", "show", "vxlan0"]);
    let link: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let stats = &link[0]["stats64"];
    let count = |dir: &str| stats[dir]["packets"].as_u64().unwrap_or_else(|| panic!("vxlan0 stats: {link}"));
    (count("rx"), count("tx"))
}

async fn cluster(tag: &str, nodes: usize) -> Cluster {
    match Cluster::start(tag, nodes).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_the_nodes_and_the_outside() {
    let c = cluster("dp", 3).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let a2 = c.nodes[0].attach_pod("a2").await.expect("pod a2");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    let gateway0 = a1.ip.octets();
    let gateway0 = std::net::Ipv4Addr::new(gateway0[0], gateway0[1], gateway0[2], 1);

    assert!(a1.ns.ping(a2.ip, 3, 56, false), "same node, pod to pod\n{}", c.logs());
    assert!(a1.ns.ping(b1.ip, 3, 56, false), "across nodes, pod to pod\n{}", c.logs());
    assert!(b1.ns.ping(a1.ip, 3, 56, false), "across nodes, back\n{}", c.logs());
    assert!(a1.ns.ping(gateway0, 2, 56, false), "pod to its gateway");
    for (from, to, what) in [(&a1, &a2, "same node"), (&a1, &b1, "across nodes")] {
        assert!(tcp_transfer(from, to), "TCP {what}\n{}", c.logs());
    }
    assert!(a1.ns.ping(b1.ip, 3, 1400, true), "1,400 bytes with DF across nodes");
    // The programs wrap and strip VXLAN themselves: vxlan0 sees none of a ping's packets.
    let before = [vxlan0_packets(&c.nodes[0]), vxlan0_packets(&c.nodes[1])];
    assert!(a1.ns.ping(b1.ip, 5, 56, false), "across nodes, pod to pod");
    let after = [vxlan0_packets(&c.nodes[0]), vxlan0_packets(&c.nodes[1])];
    assert_eq!(before, after, "vxlan0 (rx, tx) on the two nodes moved: the eBPF VXLAN path was not taken");
    assert!(c.nodes[0].ns.ping(a1.ip, 2, 56, false), "node stack to a local pod through tun0");
    assert!(c.nodes[0].ns.ping(b1.ip, 2, 56, false), "node stack to a remote pod through tun0");

    // Tunnel packets: no outer UDP checksum, no conntrack entry on either node.
    let seen = capture(&c.nodes[1].ns, "udp port 4789", || a1.ns.ping(b1.ip, 2, 56, false));
    assert!(seen.contains("VXLAN") && seen.contains("[no cksum]"), "outer UDP checksum set: {seen}");
    for node in &c.nodes[..2] {
        let tracked = node.ns.exec(&["cat", "/proc/net/nf_conntrack"]);
        let tracked = String::from_utf8_lossy(&tracked.stdout);
        assert!(!tracked.contains("dport=4789"), "{}: VXLAN in conntrack:\n{tracked}", node.ns.name());
    }

    // Out of the cluster: the external host sees the node's address.
    let seen = capture(&c.external, "icmp", || a1.ns.ping(Cluster::EXTERNAL_IP, 2, 56, false));
    assert!(seen.contains(&format!("{} > {}", c.nodes[0].ip, Cluster::EXTERNAL_IP)), "not masqueraded: {seen}");

    let flows = c.nodes[0].command("flows").expect("flows");
    assert!(flows.contains(&format!("nw_dst={}", a2.ip)), "{flows}");
    assert!(flows.contains("table=remote") && flows.contains("tun_dst,output:ul0"), "{flows}");
    // Pod ports by the names the node's namespace gives them.
    let veths = c.nodes[0].pod_veths();
    assert!(veths.iter().any(|veth| flows.contains(&format!("output:{veth}"))), "{veths:?} in {flows}");
    // Read from another namespace, where the indexes would name other interfaces: refused.
    let bin = sdn_tests::bins::project("sdn-node").expect("sdn-node");
    let elsewhere = std::process::Command::new(bin)
        .args(["flows", &format!("--node-name={}", c.nodes[0].name)])
        .output()
        .expect("sdn-node flows");
    let said = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(!elsewhere.status.success() && said.contains("--netns"), "flows outside the node's namespace: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_tunnelling_through_vxlan0_and_through_ebpf_talk_to_each_other() {
    let mut c = cluster("kvx", 2).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    assert!(a1.ns.ping(b1.ip, 1, 56, false), "both nodes on the eBPF path");
    // Node 1 switches to the kernel's vxlan0 on restart. Its underlay program stays (it takes
    // what nodes on its segment route to it directly), but leaves VXLAN alone.
    c.nodes[1].extra_args = vec!["--kernel-vxlan".into()];
    c.nodes[1].restart().await.expect("restart with --kernel-vxlan");

    let counters = || [vxlan0_packets(&c.nodes[0]), vxlan0_packets(&c.nodes[1])];
    let delta = |before: [(u64, u64); 2], after: [(u64, u64); 2]| {
        [0, 1].map(|i| (after[i].0 - before[i].0, after[i].1 - before[i].1))
    };
    let start = counters();
    assert!(a1.ns.ping(b1.ip, 5, 56, false), "eBPF node to vxlan0 node\n{}", c.logs());
    assert!(b1.ns.ping(a1.ip, 5, 56, false), "vxlan0 node to eBPF node\n{}", c.logs());
    assert!(a1.ns.ping(b1.ip, 3, 1400, true), "1,400 bytes with DF, mixed nodes");
    let pinged = counters();
    // Echo packets are never coalesced, so node 0 strips every one of them in eBPF.
    let [(rx0, tx0), (rx1, tx1)] = delta(start, pinged);
    assert_eq!(tx0, 0, "the eBPF node sent pings through vxlan0");
    assert_eq!(rx0, 0, "the eBPF node received pings through vxlan0\n{}", c.logs());
    assert!(tx1 >= 10 && rx1 >= 10, "the --kernel-vxlan node bypassed vxlan0: rx {rx1}, tx {tx1}");
    for (from, to) in [(&a1, &b1), (&b1, &a1)] {
        assert!(tcp_transfer(from, to), "TCP between mixed nodes\n{}", c.logs());
    }
    // TCP super-packets from the tunnel may take vxlan0 on node 0 (see docs/dataplane.md),
    // but nothing node 0 sends does.
    let [(_, tx0), (rx1, tx1)] = delta(pinged, counters());
    assert_eq!(tx0, 0, "the eBPF node sent TCP through vxlan0");
    assert!(tx1 > 0 && rx1 > 0, "the --kernel-vxlan node bypassed vxlan0 for TCP: rx {rx1}, tx {tx1}");
    let flows = c.nodes[1].command("flows").expect("flows");
    assert!(flows.contains("tun_dst,output:vxlan0"), "{flows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_cannot_send_with_another_address() {
    let c = cluster("spoof", 2).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    assert!(a1.ns.ping(b1.ip, 1, 56, false), "the honest path works");
    // a1 claims an address of another pod's subnet range and uses it.
    let spoofed = std::net::Ipv4Addr::new(a1.ip.octets()[0], a1.ip.octets()[1], a1.ip.octets()[2], 200);
    a1.ns.ip(&["addr", "add", &format!("{spoofed}/32"), "dev", "eth0"]).expect("add address");
    let before = c.nodes[0].decision_packets("SpoofedIp").await;
    let out = a1.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", &spoofed.to_string(), &b1.ip.to_string()]);
    assert!(!out.status.success(), "a spoofed source got through");
    let after = c.nodes[0].decision_packets("SpoofedIp").await;
    assert!(after >= before + 3, "spoofed packets counted: {before} -> {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_is_withdrawn_and_comes_back_when_readded() {
    let c = cluster("withdraw", 2).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    assert!(a1.ns.ping(b1.ip, 1, 56, false));
    let subnet = c.cp.allocations().await.subnets[&c.nodes[1].name];
    let master = c.cp.masters[0].client();
    master.delete(&format!("/api/v1/nodes/{}", c.nodes[1].name)).await.expect("delete node");
    let withdrawn = sdn_tests::wait::until(std::time::Duration::from_secs(20), || async {
        let flows = c.nodes[0].command("flows").map_err(|e| e.to_string())?;
        if flows.contains(&subnet.to_string()) { Err(flows) } else { Ok(()) }
    })
    .await;
    withdrawn.expect("the other node withdraws the subnet");
    assert!(!a1.ns.ping(b1.ip, 1, 56, false), "no route to a deleted node's pods");

    let body = sdn_master::api::types::RegisterNode { name: c.nodes[1].name.clone(), ip: c.nodes[1].ip.into() };
    let _: sdn_master::api::types::NodeView = master.post("/api/v1/nodes", &body).await.expect("re-add");
    let back = sdn_tests::wait::until(std::time::Duration::from_secs(20), || async {
        if a1.ns.ping(b1.ip, 1, 56, false) { Ok(()) } else { Err(c.nodes[0].command("flows").unwrap_or_default()) }
    })
    .await;
    back.expect("re-added: reachable again");
    assert_eq!(c.cp.allocations().await.subnets[&c.nodes[1].name], subnet, "the freed subnet came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flows_while_the_agent_is_killed_and_restarted() {
    let mut c = cluster("restart", 2).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    // Index and name of every link: a rebuild would make new ones; flags and state may change.
    let links = |node: &sdn_tests::node::NodeAgent| -> Vec<String> {
        let shown = node.ns.exec(&["ip", "-o", "link", "show"]).stdout;
        String::from_utf8_lossy(&shown).lines().map(|l| l.split(':').take(2).collect::<Vec<_>>().join(":")).collect()
    };
    let links_before = links(&c.nodes[0]);
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", b1.ns.name(), "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 (Debian package iperf3)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ping = std::process::Command::new("ip")
        .args(["netns", "exec", a1.ns.name(), "ping", "-q", "-c", "300", "-i", "0.02", "-W", "1", &b1.ip.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    let stream = std::process::Command::new("ip")
        .args(["netns", "exec", a1.ns.name(), "iperf3", "-c", &b1.ip.to_string(), "-t", "6", "-i", "1", "-J"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("iperf3 client");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    for node in c.nodes.iter_mut() {
        node.kill();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        node.restart().await.expect("agent restarts");
    }
    let pinged = String::from_utf8_lossy(&ping.wait_with_output().expect("ping output").stdout).into_owned();
    assert!(pinged.contains(" 0% packet loss"), "replies were lost:\n{pinged}");
    let report: serde_json::Value =
        serde_json::from_slice(&stream.wait_with_output().expect("iperf3 output").stdout).expect("iperf3 JSON");
    let _ = server.wait_with_output();
    let intervals = report["intervals"].as_array().cloned().unwrap_or_default();
    assert!(intervals.len() >= 5, "{report}");
    for interval in &intervals {
        assert!(interval["sum"]["bytes"].as_u64().unwrap_or(0) > 0, "the stream stalled: {interval}");
    }
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 10_000_000, "a multi-megabyte transfer across nodes: {received} bytes");
    assert_eq!(links(&c.nodes[0]), links_before, "adopted, not rebuilt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_leaves_the_namespace_as_it_was() {
    let mut c = cluster("cleanup", 1).await;
    let _pod = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    c.nodes[0].kill();
    let out = c.nodes[0].command("cleanup").expect("cleanup");
    assert!(out.contains("deleted br0") && out.contains("removed pins"), "{out}");
    assert_eq!(c.nodes[0].snapshot(), c.nodes[0].before, "cleanup output:\n{out}");
    let pins = std::path::PathBuf::from(format!("/sys/fs/bpf/sdn/{}", c.nodes[0].name));
    assert!(!pins.exists(), "pins removed");
    c.nodes[0].command("cleanup").expect("a second cleanup finds nothing and succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_flags_registers_the_default_route_address() {
    let c = cluster("autoip", 0).await;
    let node = sdn_tests::node::NodeAgent::start_with(
        c.cp.dir.clone(),
        &c.cp,
        &c.underlay,
        &format!("autoip-{}-n9", std::process::id()),
        std::net::Ipv4Addr::new(192, 0, 2, 77),
        false,
    )
    .await
    .expect("agent without --node-ip");
    let view: sdn_master::api::types::NodeView =
        c.cp.masters[0].client().get(&format!("/api/v1/nodes/{}", node.name)).await.expect("registered");
    assert_eq!(view.ip.to_string(), "192.0.2.77", "the address of the default route's interface");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_addresses_survive_restarts_and_bad_requests_change_nothing() {
    let mut c = cluster("podapi", 1).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    c.nodes[0].kill();
    c.nodes[0].restart().await.expect("restart");
    // The same pod again gets the same address; a new one a new address.
    let again = format!(r#"{{"id":"a1","netns":"{}"}}"#, a1.ns.path().display());
    let (status, body) =
        sdn_tests::node::unix_http(&c.nodes[0].socket, "POST", "/v1/pods", Some(&again)).await.expect("api");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"ip\":\"{}\"", a1.ip)), "{body}");
    let a2 = c.nodes[0].attach_pod("a2").await.expect("pod a2");
    assert_ne!(a1.ip, a2.ip);
    assert!(a1.ns.ping(a2.ip, 1, 56, false));

    let socket = &c.nodes[0].socket;
    let records = || async { sdn_tests::node::unix_http(socket, "GET", "/v1/pods", None).await.expect("list").1 };
    let before = records().await;
    for (body, expected) in [
        ("{not json", "invalid request body"),
        (r#"{"id":"a/b","netns":"/run/netns/x"}"#, "id:"),
        (r#"{"id":"p9","netns":"/run/netns/does-not-exist"}"#, "netns: /run/netns/does-not-exist"),
        (r#"{"id":"p9","netns":"/run/netns/x","extra":1}"#, "unknown field"),
        (r#"{"id":"p9","netns":"/run/netns/x","ifname":"a-name-far-too-long"}"#, "ifname:"),
    ] {
        let (status, text) = sdn_tests::node::unix_http(socket, "POST", "/v1/pods", Some(body)).await.expect("api");
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(expected), "{body}: {text}");
    }
    assert_eq!(records().await, before, "nothing was allocated by a refused request");
    let (status, _) = sdn_tests::node::unix_http(socket, "DELETE", "/v1/pods/never-attached", None).await.expect("api");
    assert_eq!(status, 200, "detaching what is not there succeeds");
    c.nodes[0].detach_pod(&a2).await.expect("detach");
    assert!(!records().await.contains(&a2.ip.to_string()), "released");
    let mode = std::fs::metadata(socket).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.expect("socket"), 0o600, "only root may use the pod API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_from_etcd_catches_up_on_what_it_missed() {
    let mut c = cluster("etcdcut", 2).await;
    let target = format!("127.0.0.1:{}", c.cp.etcd.port()).parse().expect("addr");
    let proxy = sdn_tests::proxy::Proxy::start(target).await.expect("proxy");
    c.nodes[0].kill();
    c.nodes[0].set_etcd_endpoint(proxy.endpoint());
    c.nodes[0].restart().await.expect("agent via the proxy");
    let gone = c.cp.allocations().await.subnets[&c.nodes[1].name];

    proxy.cut();
    let master = c.cp.masters[0].client();
    let ghost = sdn_master::api::types::RegisterNode { name: "ghost".into(), ip: [192, 0, 2, 99].into() };
    let _: sdn_master::api::types::NodeView = master.post("/api/v1/nodes", &ghost).await.expect("a node appears");
    master.delete(&format!("/api/v1/nodes/{}", c.nodes[1].name)).await.expect("a node goes");
    let new = c
        .cp
        .wait_allocations("ghost allocated", std::time::Duration::from_secs(20), |a| a.subnets.contains_key("ghost"))
        .await;
    let ghost_subnet = new.subnets["ghost"];
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    proxy.restore();

    let caught_up = sdn_tests::wait::until(std::time::Duration::from_secs(30), || async {
        let flows = c.nodes[0].command("flows").map_err(|e| e.to_string())?;
        let has_new = flows.contains(&format!("nw_dst={ghost_subnet} actions=set_field:192.0.2.99->tun_dst"));
        let has_gone = flows.contains(&format!("nw_dst={gone} "));
        if has_new && !has_gone { Ok(()) } else { Err(flows) }
    })
    .await;
    caught_up.unwrap_or_else(|flows| panic!("the agent missed an event:\n{flows}\n{}", c.nodes[0].log()));
}
