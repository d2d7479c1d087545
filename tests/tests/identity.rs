//! Pods and nodes keep to their identities. A VXLAN datagram is an ordinary UDP payload, so
//! anyone who can send UDP to a node could wrap a frame with any source in it: from a pod, to its
//! own node, another node or its gateway; from a host on the underlay that is no node; or from
//! a node's address, carrying another node's sources. None of it is delivered, and each is
//! counted under its reason. A `HostSubnet` written by someone else than the master (outside the
//! cluster network, overlapping another node's, with another node's address) is refused.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sdn_tests::forge::{arrives, send_udp, vxlan_payload};
use sdn_tests::netns::Netns;
use sdn_tests::node::{Cluster, NodeAgent};

const VXLAN_PORT: u16 = 4789;

async fn cluster(tag: &str, nodes: usize) -> Cluster {
    match Cluster::start(tag, nodes).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster: {err}"),
    }
}

/// Sends a VXLAN datagram from `from` to `node_ip`, claiming `source`, for `target` (a pod in
/// `target_ns`); asserts it is not delivered and that `counted` on `counter` counts it under
/// `reason`.
#[allow(clippy::too_many_arguments)]
async fn refused(
    what: &str,
    from: &Netns,
    node_ip: Ipv4Addr,
    source: Ipv4Addr,
    target: (&Netns, Ipv4Addr),
    counter: &NodeAgent,
    reason: &str,
    c: &Cluster,
) {
    let before = counter.dropped(reason).await;
    let payload = vxlan_payload(source, target.1, what.as_bytes());
    let to = SocketAddrV4::new(node_ip, VXLAN_PORT);
    let got = arrives(target.0, || send_udp(from, to, &payload)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, None, "{what}: the forged packet was delivered\n{}", c.logs());
    let counted = sdn_tests::wait::until(Duration::from_secs(3), || async {
        let after = counter.dropped(reason).await;
        if after > before { Ok(()) } else { Err(format!("{reason}: {before} -> {after}")) }
    })
    .await;
    assert!(counted.is_ok(), "{what}: not counted: {counted:?}\n{}", counter.command("flows").unwrap_or_default());
}

/// Makes `thief` (on the underlay, holding the address `as_ip` too) send to `victim` from
/// `as_ip`, without asking the underlay for the victim's MAC (which would teach the victim that
/// the address moved, and break the real node's traffic).
fn impersonate(thief: &Netns, as_ip: Ipv4Addr, victim: &NodeAgent) {
    let shown = victim.ns.exec(&["ip", "-o", "link", "show", "ul0"]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let mac = shown.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("the victim's MAC").to_owned();
    let victim_ip = victim.ip.to_string();
    for args in [
        vec!["neigh", "replace", &victim_ip, "lladdr", &mac, "dev", "ul0", "nud", "permanent"],
        vec!["route", "replace", &format!("{victim_ip}/32"), "dev", "ul0", "src", &as_ip.to_string()],
    ] {
        thief.ip(&args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_wrapped_packets_from_pods_and_strangers_are_not_delivered_and_are_counted() {
    let mut c = cluster("vxlan-inject", 2).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let a2 = c.nodes[0].attach_pod("a2").await.expect("pod a2");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    assert!(a1.ns.ping(b1.ip, 1, 56, false), "the honest path works");
    let (n0, n1) = (c.nodes[0].ip, c.nodes[1].ip);
    let gateway0 = Ipv4Addr::new(a1.ip.octets()[0], a1.ip.octets()[1], a1.ip.octets()[2], 1);

    // A pod's IPv6 (neighbour discovery too) is dropped as such, never counted as a spoof.
    let _ = a1.ns.exec(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", "ff02::1%eth0"]);
    let ipv6 = sdn_tests::wait::until(Duration::from_secs(3), || async {
        let counted = c.nodes[0].dropped("ipv6").await;
        if counted > 0 { Ok(()) } else { Err("no IPv6 drop counted".to_owned()) }
    })
    .await;
    assert!(ipv6.is_ok(), "{ipv6:?}");
    for spoof in ["spoofed-ip", "spoofed-mac", "spoofed-arp"] {
        assert_eq!(c.nodes[0].dropped(spoof).await, 0, "honest pods counted as {spoof}");
    }

    // The control: the same datagram sent straight to the pod arrives.
    let direct = arrives(&a2.ns, || send_udp(&a1.ns, SocketAddrV4::new(a2.ip, 7777), b"hello"));
    assert_eq!(direct, Ok(Some(b"hello".to_vec())), "the listener works");

    // From a pod, with its own address, to its node, its gateway and the other node.
    let pod = "pod-to-tunnel-port";
    refused("pod a1 to its node", &a1.ns, n0, b1.ip, (&a2.ns, a2.ip), &c.nodes[0], pod, &c).await;
    refused("pod a1 to its gateway", &a1.ns, gateway0, b1.ip, (&a2.ns, a2.ip), &c.nodes[0], pod, &c).await;
    refused("pod a1 to node 1", &a1.ns, n1, a2.ip, (&b1.ns, b1.ip), &c.nodes[0], pod, &c).await;

    // `sdn-node drops` shows such a drop as it happens, with its reason and inner packet.
    let mut follow = c.nodes[0]
        .command_line("drops", &["--reason", "pod-to-tunnel-port", "--count", "1", "--seconds", "10"])
        .expect("sdn-node");
    let follower = follow.stdout(std::process::Stdio::piped()).spawn().expect("sdn-node drops");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payload = vxlan_payload(b1.ip, a2.ip, b"watched");
    send_udp(&a1.ns, SocketAddrV4::new(n0, VXLAN_PORT), &payload).expect("send");
    let shown = follower.wait_with_output().expect("sdn-node drops ran");
    let shown = String::from_utf8_lossy(&shown.stdout);
    let inner = format!("vxlan [02:00:00:00:00:02 {}:40000 > {}:7777 udp]", b1.ip, a2.ip);
    assert!(shown.starts_with("pod-to-tunnel-port in=veth") && shown.contains(&inner), "sdn-node drops: {shown:?}");

    // From a host on the underlay that is no node: to the eBPF path of node 0.
    let ext = &c.external;
    let unknown = "tunnel-unknown-node";
    refused("a stranger to node 0", ext, n0, b1.ip, (&a2.ns, a2.ip), &c.nodes[0], unknown, &c).await;

    // From node 1's address (taken over on the underlay), carrying a source of node 0's subnet:
    // node 1 may only speak for its own.
    let thief = Netns::create(c.cp.dir.clone(), &format!("vxlan-inject-{}-thief", std::process::id())).expect("ns");
    c.underlay.plug(&thief, Ipv4Addr::new(192, 0, 2, 200)).expect("plug");
    // It answers no ARP: the nodes keep reaching each other, not the thief.
    let quiet = thief.exec(&["sysctl", "-qw", "net.ipv4.conf.ul0.arp_ignore=8"]);
    assert!(quiet.status.success(), "{}", String::from_utf8_lossy(&quiet.stderr));
    thief.ip(&["addr", "add", &format!("{n1}/32"), "dev", "ul0"]).expect("node 1's address");
    let foreign = "tunnel-foreign-source";
    impersonate(&thief, n1, &c.nodes[0]);
    refused("node 1's address, node 0's source", &thief, n0, a1.ip, (&a2.ns, a2.ip), &c.nodes[0], foreign, &c).await;

    // The same against a node tunnelling through the kernel's vxlan0: the stranger is dropped by
    // the nftables table (counted there), the foreign source by sdn_from_tunnel.
    c.nodes[1].extra_args = vec!["--kernel-vxlan".into()];
    c.nodes[1].restart().await.expect("restart with --kernel-vxlan");
    assert!(a1.ns.ping(b1.ip, 1, 56, false), "the honest path works with vxlan0\n{}", c.logs());
    let payload = vxlan_payload(a1.ip, b1.ip, b"stranger");
    let to_n1 = SocketAddrV4::new(n1, VXLAN_PORT);
    let got = arrives(&b1.ns, || send_udp(ext, to_n1, &payload)).expect("send");
    assert_eq!(got, None, "a stranger's VXLAN reached a pod through vxlan0");
    let table = c.nodes[1].ns.exec(&["nft", "list", "chain", "inet", "sdn", "input"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let counted = table.contains("udp dport 4789 counter packets ") && !table.contains("counter packets 0 ");
    assert!(counted, "counted by nftables: {table}");
    thief.ip(&["addr", "del", &format!("{n1}/32"), "dev", "ul0"]).expect("give node 1's address back");
    thief.ip(&["addr", "add", &format!("{n0}/32"), "dev", "ul0"]).expect("node 0's address");
    impersonate(&thief, n0, &c.nodes[1]);
    let node1 = &c.nodes[1];
    refused("node 0's address, node 1's source, via vxlan0", &thief, n1, b1.ip, (&b1.ns, b1.ip), node1, foreign, &c)
        .await;
}

/// A node's count of `HostSubnet`s it refuses, from its metrics.
async fn refused_subnets(node: &NodeAgent) -> u64 {
    let metrics = node.metrics().await;
    metrics.lines().find_map(|l| l.strip_prefix("sdn_node_refused_subnets ")).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_host_subnets_are_refused_by_every_agent() {
    let mut c = cluster("forged-subnet", 2).await;
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    let subnet1 = c.cp.allocations().await.subnets[&c.nodes[1].name];
    // Only agents read what follows: the master would release the subnets of unknown nodes.
    c.cp.masters[0].process().kill();
    let mut kv = c.cp.etcd.client().await.expect("etcd").kv_client();
    let n1 = c.nodes[1].ip;
    let forged = [
        // Would pull every pod's egress into a tunnel to a stranger.
        ("everything", "192.0.2.99".to_owned(), "0.0.0.0/0".to_owned()),
        // Would take node 1's pods.
        ("thief", "192.0.2.98".to_owned(), subnet1.to_string()),
        // Would take node 1's tunnel address for another subnet.
        ("twin", n1.to_string(), "10.1.200.0/24".to_owned()),
    ];
    for (host, ip, subnet) in &forged {
        let record = serde_json::json!({ "host": host, "hostIP": ip, "subnet": subnet });
        kv.put(format!("/sdn/subnets/{host}"), record.to_string(), None).await.expect("put");
    }
    for node in &c.nodes {
        let all = sdn_tests::wait::until(Duration::from_secs(5), || async {
            let refused = refused_subnets(node).await;
            if refused == 3 { Ok(()) } else { Err(format!("{refused} refused")) }
        })
        .await;
        assert!(all.is_ok(), "{}: {all:?}\n{}", node.name, node.log());
        let log = node.log();
        for reason in [
            "refusing node everything: HostSubnet 0.0.0.0/0 is outside the cluster network 10.1.0.0/16",
            &format!("refusing node thief: HostSubnet {subnet1} overlaps"),
            &format!("refusing node twin: host IP {n1} is"),
        ] {
            assert!(log.contains(reason), "{}: {reason:?} not logged:\n{log}", node.name);
        }
        let flows = node.command("flows").expect("flows");
        assert!(!flows.contains("0.0.0.0/0") && !flows.contains("10.1.200.0/24"), "{flows}");
    }
    // Nothing moved: pods reach each other and the outside.
    assert!(a1.ns.ping(b1.ip, 1, 56, false), "pod to pod after the forgeries\n{}", c.logs());
    assert!(a1.ns.ping(Cluster::EXTERNAL_IP, 1, 56, false), "egress after the forgeries\n{}", c.logs());
    // A node that starts now refuses them too, and still comes up.
    c.nodes[0].restart().await.expect("restart");
    assert!(a1.ns.ping(b1.ip, 1, 56, false), "after a restart\n{}", c.logs());
    assert_eq!(refused_subnets(&c.nodes[0]).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_veth_name_is_taken_gets_an_error_and_the_owner_keeps_its_veth() {
    let c = cluster("veth-taken", 1).await;
    let node = &c.nodes[0];
    let first = node.attach_pod("x").await.expect("pod x");
    let attached = node.attachments().await;
    let veth = attached[0]["hostVeth"].as_str().expect("a host veth").to_owned();
    assert_eq!(veth.len(), 15, "a 44-bit name: {veth}");
    node.detach_pod(&first).await.expect("detach");
    node.wait_pod_veths(0).await;
    // Another pod's veth under the name pod x will get (as a colliding hash would make it).
    let owner_mac = "02:00:00:00:be:ef";
    node.ns
        .ip(&["link", "add", &veth, "address", owner_mac, "type", "veth", "peer", "name", "owner-peer"])
        .expect("veth");
    let ns = Netns::create(c.cp.dir.clone(), &format!("{}-x2", node.name)).expect("ns");
    let body = format!(r#"{{"id":"x","netns":"{}"}}"#, ns.path().display());
    let (status, text) =
        sdn_tests::node::unix_http(&node.socket, "POST", "/v1/pods", Some(&body)).await.expect("pod API");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains(&format!("the host veth {veth} that pod x would get belongs to another pod")), "{text}");
    let shown = node.ns.exec(&["ip", "-o", "link", "show", &veth]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(owner_mac) && !shown.contains("master br0"), "the owner's veth is untouched: {shown}");
    assert!(node.attachments().await.is_empty(), "no address kept for the refused pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_veth_named_by_an_earlier_build_is_renamed_and_stays_connected() {
    let mut c = cluster("veth-legacy", 1).await;
    let pod = c.nodes[0].attach_pod("old").await.expect("pod");
    let peer = c.nodes[0].attach_pod("peer").await.expect("peer");
    let attached = c.nodes[0].attachments().await;
    let veth = attached.iter().find(|a| a["id"] == "old").and_then(|a| a["hostVeth"].as_str()).expect("veth");
    let veth = veth.to_owned();
    // The name earlier builds gave: the low 32 bits of FNV-1a over "<id>/<ifname>".
    let hash =
        b"old/eth0".iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    let legacy = format!("veth{:08x}", hash as u32);
    c.nodes[0].kill();
    for args in [
        vec!["link", "set", veth.as_str(), "down"],
        vec!["link", "set", veth.as_str(), "name", legacy.as_str()],
        vec!["link", "set", legacy.as_str(), "up"],
    ] {
        c.nodes[0].ns.ip(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    c.nodes[0].restart().await.expect("restart");
    let shown = |name: &str| c.nodes[0].ns.exec(&["ip", "link", "show", name]).status.success();
    assert!(shown(&veth) && !shown(&legacy), "{legacy} took this build's name {veth}\n{}", c.logs());
    assert!(pod.ns.ping(peer.ip, 1, 56, false), "the pod stays connected\n{}", c.logs());
}
