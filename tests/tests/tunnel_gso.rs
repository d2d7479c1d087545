//! Super-packets from the tunnel and pods that forward. On kernels that cannot clear a stripped
//! packet's UDP-tunnel segmentation state, the programs strip GRO/GSO super-packets only for
//! pods that do not forward (`sdn-node/src/pods/offload.rs`); a pod that turns forwarding on
//! gets them through `vxlan0` within the agent's recheck, and what it forwards arrives intact.

use std::time::Duration;

use sdn_tests::node::{Cluster, NodeAgent, Pod, iperf3};

/// The `tunnel_gso=` of `pod`'s `table=local` line in its node's flows.
fn tunnel_gso(node: &NodeAgent, pod: &Pod) -> String {
    let flows = node.command("flows").unwrap_or_else(|e| panic!("flows of {}: {e}", node.name));
    let needle = format!("nw_dst={} ", pod.ip);
    let line = flows.lines().find(|l| l.contains("table=local") && l.contains(&needle)).unwrap_or_default();
    line.split(", ").find_map(|f| f.strip_prefix("tunnel_gso=")).unwrap_or_default().to_owned()
}

async fn wait_tunnel_gso(node: &NodeAgent, pod: &Pod, wanted: &str) {
    let found = sdn_tests::wait::until(Duration::from_secs(15), || async {
        let found = tunnel_gso(node, pod);
        if found == wanted { Ok(()) } else { Err(found) }
    })
    .await;
    if let Err(last) = found {
        panic!("{}: tunnel_gso of {} is not {wanted}: {last}\n{}", node.name, pod.ip, node.log());
    }
}

/// A TCP counter of `nstat` in `pod` (absolute).
fn nstat(pod: &Pod, counter: &str) -> u64 {
    let out = pod.ns.exec(&["nstat", "-az", counter]);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text.lines().find_map(|l| l.strip_prefix(counter)).and_then(|v| v.split_whitespace().next());
    value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("nstat {counter} in {}: {text}", pod.ns.name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_starts_forwarding_leaves_the_fast_path_and_forwards_intact() {
    let c = match Cluster::start("gso", 2).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster: {err}"),
    };
    let a = c.nodes[0].attach_pod("a").await.expect("pod a");
    let target = c.nodes[0].attach_pod("t").await.expect("pod t");
    let router = c.nodes[1].attach_pod("r").await.expect("pod r");
    wait_tunnel_gso(&c.nodes[1], &router, "ebpf").await;

    // Bulk TCP into a pod that does not forward: every packet, super-packets too, is stripped
    // in eBPF, none goes through vxlan0.
    let vxlan0_rx = || {
        let out = c.nodes[1].ns.exec(&["ip", "-s", "-j", "link", "show", "vxlan0"]);
        let link: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        link[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or_else(|| panic!("vxlan0 stats: {link}"))
    };
    let (before, ofo_before) = (vxlan0_rx(), nstat(&router, "TcpExtTCPOFOQueue"));
    let moved = iperf3(&a, router.ip, &router, 2);
    let (through_vxlan0, ofo) = (vxlan0_rx() - before, nstat(&router, "TcpExtTCPOFOQueue") - ofo_before);
    assert!(moved > 10_000_000, "bulk TCP into r moved {moved} bytes\n{}", c.logs());
    assert_eq!(through_vxlan0, 0, "packets for a pod that does not forward went through vxlan0");
    eprintln!("bulk TCP into r: {moved} bytes, {ofo} segments queued out of order");

    // r becomes a router: forwarding on, TCP 5201 to it forwarded to t (back across the tunnel,
    // to a pod on a's node), masqueraded so the answers come back through it.
    for args in [
        vec!["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        vec!["nft", "add table ip hop"],
        vec!["nft", "add chain ip hop pre { type nat hook prerouting priority dstnat; }"],
        vec!["nft", &format!("add rule ip hop pre tcp dport 5201 dnat to {}", target.ip)],
        vec!["nft", "add chain ip hop post { type nat hook postrouting priority srcnat; }"],
        vec!["nft", "add rule ip hop post masquerade"],
    ] {
        let out = router.ns.exec(&args);
        assert!(out.status.success(), "{args:?} in r: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_tunnel_gso(&c.nodes[1], &router, "vxlan0").await;
    let moved = iperf3(&a, router.ip, &target, 2);
    assert!(moved > 10_000_000, "TCP forwarded by r moved {moved} bytes\n{}", c.logs());
    let (errors, drops) = (nstat(&target, "TcpInCsumErrors"), nstat(&target, "TcpExtTCPOFODrop"));
    assert_eq!((errors, drops), (0, 0), "segments forwarded by r arrived damaged at t\n{}", c.logs());

    // Forwarding off again, no other interface: back on the fast path.
    let out = router.ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    assert!(out.status.success(), "forwarding off in r");
    wait_tunnel_gso(&c.nodes[1], &router, "ebpf").await;
    // An interface of its own besides the agent's also takes it off.
    router
        .ns
        .ip(&["link", "add", "extra0", "type", "veth", "peer", "name", "extra1"])
        .expect("a second interface in r");
    wait_tunnel_gso(&c.nodes[1], &router, "vxlan0").await;
}
