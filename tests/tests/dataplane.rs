//! The dataplane with real packets: three nodes in network namespaces on an
//! underlay switch, pods as further namespaces, an external host.

use sdn_tests::node::Cluster;

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
    assert!(a1.ns.ping(b1.ip, 3, 1400, true), "1,400 bytes with DF across nodes");
    assert!(c.nodes[0].ns.ping(a1.ip, 2, 56, false), "node stack to a local pod through tun0");
    assert!(c.nodes[0].ns.ping(b1.ip, 2, 56, false), "node stack to a remote pod through tun0");

    // Out of the cluster: the external host sees the node's address.
    let capture = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            c.external.name(),
            "timeout",
            "10",
            "tcpdump",
            "-n",
            "-l",
            "-c",
            "1",
            "-i",
            "ul0",
            "icmp",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump (Debian package tcpdump)");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(a1.ns.ping(Cluster::EXTERNAL_IP, 2, 56, false), "pod to the external host\n{}", c.logs());
    let seen = String::from_utf8_lossy(&capture.wait_with_output().expect("tcpdump output").stdout).into_owned();
    assert!(seen.contains(&format!("{} > {}", c.nodes[0].ip, Cluster::EXTERNAL_IP)), "not masqueraded: {seen}");

    let flows = c.nodes[0].command("flows").expect("flows");
    assert!(flows.contains(&format!("nw_dst={}", a2.ip)), "{flows}");
    assert!(flows.contains("table=remote") && flows.contains("tun_dst"), "{flows}");
}
