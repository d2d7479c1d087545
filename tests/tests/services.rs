//! Services at their cluster IPs, load-balanced by the agents' eBPF programs: two nodes, one
//! backend pod on each answering with its own name, clients in pods and in the node's own
//! namespace, real TCP and UDP sockets.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use sdn_tests::backend::{Connection, NameServer, udp_ask, udp_ask_from};
use sdn_tests::netns::Netns;
use sdn_tests::node::{Cluster, Pod};
use serde_json::{Value, json};

/// Two nodes, a backend pod on each (serving TCP and UDP 8080 with its name) and a client pod
/// on node 0; `default/web` with `http` 80/TCP and `dns` 53/UDP, both to the backends' 8080.
struct Setup {
    c: Cluster,
    backends: Vec<Pod>,
    client: Pod,
    web: Ipv4Addr,
    _servers: Vec<NameServer>,
}

async fn setup(tag: &str) -> Setup {
    let c = Cluster::start(tag, 2).await.unwrap_or_else(|e| panic!("starting the cluster: {e}"));
    let mut backends = Vec::new();
    let mut servers = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let pod = node.attach_pod(&format!("web{i}")).await.expect("backend pod");
        servers.push(NameServer::start(&pod.ns, 8080, &format!("web{i}")).expect("name server"));
        backends.push(pod);
    }
    let client = c.nodes[0].attach_pod("client").await.expect("client pod");
    let service = json!({ "namespace": "default", "name": "web",
        "ports": [{ "name": "http", "port": 80 }, { "name": "dns", "port": 53, "protocol": "UDP" }] });
    let created: Value = c.cp.masters[0].client().post("/api/v1/services", &service).await.expect("service");
    let web: Ipv4Addr = created["clusterIP"].as_str().and_then(|ip| ip.parse().ok()).expect("cluster IP");
    let setup = Setup { c, backends, client, web, _servers: servers };
    setup.set_endpoints(&[0, 1]).await;
    setup
}

impl Setup {
    async fn set_endpoints(&self, which: &[usize]) {
        let addresses: Vec<Value> = which.iter().map(|&i| json!({ "ip": self.backends[i].ip })).collect();
        let body = json!({ "addresses": addresses,
            "ports": [{ "name": "http", "port": 8080 }, { "name": "dns", "port": 8080, "protocol": "UDP" }] });
        let _: Value =
            self.c.cp.masters[0].client().put("/api/v1/endpoints/default/web", &body).await.expect("endpoints");
    }

    fn http(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.web, 80)
    }

    /// Waits until a connection from `from` to the service reaches `backend`.
    async fn wait_reaches(&self, from: &Netns, backend: &str) {
        let reached = sdn_tests::wait::until(Duration::from_secs(5), || async {
            match Connection::open(from, self.http(), Duration::from_millis(500)) {
                Ok(conn) if conn.name == backend => Ok(()),
                Ok(conn) => Err(format!("reached {}", conn.name)),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        assert!(reached.is_ok(), "{backend} through {}: {reached:?}\n{}", self.web, self.c.logs());
    }
}

/// How many of `n` connections from `from` went to each backend; every peer must be the
/// cluster IP and port.
fn spread(s: &Setup, from: &Netns, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let conn = Connection::open(from, s.http(), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connection {i} to {}: {e}\n{}", s.web, s.c.logs()));
        assert_eq!(conn.peer, SocketAddr::V4(s.http()), "the client's peer is the cluster IP");
        *seen.entry(conn.name).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ip_reaches_every_backend_from_pods_the_node_and_itself() {
    let s = setup("svc-spread").await;
    s.wait_reaches(&s.client.ns, "web1").await;
    // 200 connections, each backend chosen with p = 1/2: fewer than 60 on either side has a
    // probability below 1e-8.
    let seen = spread(&s, &s.client.ns, 200);
    assert!(seen.len() == 2 && seen.values().all(|&n| n >= 60), "both backends, evenly: {seen:?}");
    // UDP: the answer comes from the cluster IP's port.
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (name, from) = udp_ask(&s.client.ns, SocketAddrV4::new(s.web, 53)).expect("UDP through the service");
        assert_eq!(from, SocketAddr::V4(SocketAddrV4::new(s.web, 53)), "recvfrom sees the cluster IP");
        names.insert(name);
    }
    assert_eq!(names.len(), 2, "UDP reaches both backends: {names:?}");
    // The same source port straight to the backend afterwards: its replies are its own.
    let dns = SocketAddrV4::new(s.web, 53);
    let port = (41000..41100)
        .find(|&port| udp_ask_from(&s.client.ns, port, dns).is_ok_and(|(name, _)| name == "web1"))
        .expect("a UDP flow to web1");
    let direct = SocketAddrV4::new(s.backends[1].ip, 8080);
    let (name, from) = udp_ask_from(&s.client.ns, port, direct).expect("straight to web1 from the same port");
    assert_eq!((name.as_str(), from), ("web1", SocketAddr::V4(direct)), "no stale translation");
    // The node's own namespace.
    let from_node = spread(&s, &s.c.nodes[0].ns, 40);
    assert_eq!(from_node.len(), 2, "the node reaches both: {from_node:?}");
    // Hairpin: a backend given itself gets its answer.
    let hairpin = spread(&s, &s.backends[0].ns, 40);
    assert!(hairpin.get("web0").is_some_and(|&n| n > 0), "web0 reached itself: {hairpin:?}");
    let flows = s.c.nodes[0].command("flows").expect("flows");
    assert!(flows.contains(&format!("tcp,nw_dst={},tp_dst=80 actions=group:", s.web)), "{flows}");
    assert!(flows.contains(&format!("udp,nw_dst={},tp_dst=53", s.web)), "{flows}");
    let metrics = s.c.nodes[0].metrics().await;
    assert!(metrics.contains("sdn_node_services 2") && metrics.contains("sdn_node_service_backends 4"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoints_refuses_at_once_and_a_port_the_service_lacks_is_dropped() {
    let s = setup("svc-refuse").await;
    s.wait_reaches(&s.client.ns, "web0").await;
    s.set_endpoints(&[]).await;
    let refused = sdn_tests::wait::until(Duration::from_secs(5), || async {
        let started = Instant::now();
        match Connection::open(&s.client.ns, s.http(), Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(started.elapsed()),
            other => Err(format!("{:?}", other.map(|c| c.name))),
        }
    })
    .await;
    let took = refused.unwrap_or_else(|e| panic!("a service without endpoints: {e}"));
    assert!(took < Duration::from_millis(500), "refused at once, not after a timeout: {took:?}");
    let from_node = Connection::open(&s.c.nodes[0].ns, s.http(), Duration::from_secs(2)).err().map(|e| e.kind());
    assert_eq!(from_node, Some(std::io::ErrorKind::ConnectionRefused), "from the node too");
    // UDP gets the ICMP port unreachable a closed port gives: ECONNREFUSED, not a timeout.
    let started = Instant::now();
    let udp = udp_ask(&s.client.ns, SocketAddrV4::new(s.web, 53)).expect_err("no UDP backend");
    assert!(udp.contains("refused") && started.elapsed() < Duration::from_secs(1), "{udp}");
    let flows = s.c.nodes[0].command("flows").expect("flows");
    assert!(flows.contains(&format!("tcp,nw_dst={},tp_dst=80 actions=reject", s.web)), "{flows}");
    // Port 81 is not the service's: dropped (a timeout) and counted.
    let other = Connection::open(&s.client.ns, SocketAddrV4::new(s.web, 81), Duration::from_millis(500));
    assert_eq!(other.err().map(|e| e.kind()), Some(std::io::ErrorKind::TimedOut), "port 81 is dropped");
    let flows = s.c.nodes[0].command("flows").expect("flows");
    let dropped = flows.lines().find(|l| l.contains("nw_dst=cluster-ip actions=drop")).unwrap_or_default();
    assert!(!dropped.contains("n_packets=0,"), "counted: {dropped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_gets_no_new_connections_while_its_stream_goes_on() {
    let s = setup("svc-remove").await;
    s.wait_reaches(&s.client.ns, "web1").await;
    let mut stream = loop {
        let conn = Connection::open(&s.client.ns, s.http(), Duration::from_secs(2)).expect("connection");
        if conn.name == "web1" {
            break conn;
        }
    };
    stream.echo(b"before").expect("echo before");
    // A UDP flow (one source port) that web1 answers.
    let dns = SocketAddrV4::new(s.web, 53);
    let flow_port = (40000..40100)
        .find(|&port| udp_ask_from(&s.client.ns, port, dns).is_ok_and(|(name, _)| name == "web1"))
        .expect("a UDP flow to web1");
    s.set_endpoints(&[0]).await;
    // The change reaches the maps within a fraction of a second; then only web0 is chosen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = spread(&s, &s.client.ns, 50);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["web0"], "no new connection to the removed web1: {seen:?}");
    stream.echo(b"after the removal").expect("the established stream to web1 goes on");
    let (name, _) = udp_ask_from(&s.client.ns, flow_port, dns).expect("the UDP flow after the removal");
    assert_eq!(name, "web0", "a UDP flow has no end to wait for: it moves to a backend that serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_through_a_cluster_ip_lives_through_kill_and_restart_of_both_agents() {
    let mut s = setup("svc-restart").await;
    s.wait_reaches(&s.client.ns, "web1").await;
    let mut stream = loop {
        let conn = Connection::open(&s.client.ns, s.http(), Duration::from_secs(2)).expect("connection");
        if conn.name == "web1" {
            break conn;
        }
    };
    for node in s.c.nodes.iter_mut() {
        node.kill();
    }
    stream.echo(b"while no agent runs").expect("the stream without agents");
    for node in s.c.nodes.iter_mut() {
        node.restart().await.expect("restart");
    }
    stream.echo(b"after the restarts").expect("the stream after the restarts");
    let seen = spread(&s, &s.client.ns, 20);
    assert_eq!(seen.values().sum::<usize>(), 20, "new connections after the restarts: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_in_etcd_are_skipped_and_a_thousand_services_load() {
    let s = setup("svc-many").await;
    s.wait_reaches(&s.client.ns, "web0").await;
    let mut kv = s.c.cp.etcd.client().await.expect("etcd client").kv_client();
    for (key, value) in [
        ("/sdn/services/default/broken", "{not json"),
        ("/sdn/endpoints/default/broken", "[]"),
        (
            "/sdn/services/default/odd",
            r#"{"namespace":"default","name":"odd","clusterIP":"172.30.9.9","ports":[{"port":"x"}]}"#,
        ),
    ] {
        kv.put(key, value, None).await.expect("put");
    }
    // A thousand services straight into etcd, each with the two backends.
    let endpoints = json!({ "addresses": [{ "ip": s.backends[0].ip }, { "ip": s.backends[1].ip }],
        "ports": [{ "name": "http", "port": 8080 }] });
    for i in 0..1000u32 {
        let ip = Ipv4Addr::new(172, 30, 100 + (i / 250) as u8, 1 + (i % 250) as u8);
        let name = format!("bulk{i}");
        let service =
            json!({ "namespace": "bulk", "name": name, "clusterIP": ip, "ports": [{ "name": "http", "port": 80 }] });
        let ep = json!({ "namespace": "bulk", "name": name, "addresses": endpoints["addresses"], "ports": endpoints["ports"] });
        kv.put(format!("/sdn/services/bulk/{name}"), service.to_string(), None).await.expect("put service");
        kv.put(format!("/sdn/endpoints/bulk/{name}"), ep.to_string(), None).await.expect("put endpoints");
    }
    for node in &s.c.nodes {
        // web's two ports and the bulk services, each with their two backends.
        let loaded = sdn_tests::wait::until(Duration::from_secs(20), || async {
            let metrics = node.metrics().await;
            let all = metrics.contains("sdn_node_services 1002") && metrics.contains("sdn_node_service_backends 2004");
            if all { Ok(()) } else { Err(metrics) }
        })
        .await;
        assert!(loaded.is_ok(), "1,000 more frontends on {}: {loaded:?}\n{}", node.name, node.log());
    }
    let last = SocketAddrV4::new(Ipv4Addr::new(172, 30, 103, 250), 80);
    let conn = Connection::open(&s.client.ns, last, Duration::from_secs(2)).expect("the last bulk service answers");
    assert!(conn.name.starts_with("web"), "{}", conn.name);
    assert!(s.c.nodes[0].pid().is_some(), "the agent still runs");
    assert!(s.c.nodes[0].log().contains("services skip a record"), "bad records are logged");
    s.wait_reaches(&s.client.ns, "web1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_a_client_on_one_backend() {
    let s = setup("svc-sticky").await;
    let (ok, out, err) = s.c.cp.masters[0]
        .sdnctl(&["services", "create", "default/sticky", "--port", "http:80", "--session-affinity", "ClientIP"])
        .expect("sdnctl");
    assert!(ok, "{out}{err}");
    let ip: Ipv4Addr = out.split_whitespace().find_map(|w| w.parse().ok()).expect("cluster IP in the output");
    let body = json!({ "addresses": [{ "ip": s.backends[0].ip }, { "ip": s.backends[1].ip }],
        "ports": [{ "name": "http", "port": 8080 }] });
    let _: Value = s.c.cp.masters[0].client().put("/api/v1/endpoints/default/sticky", &body).await.expect("endpoints");
    let sticky = SocketAddrV4::new(ip, 80);
    let first = sdn_tests::wait::until(Duration::from_secs(5), || async {
        Connection::open(&s.client.ns, sticky, Duration::from_millis(500)).map(|c| c.name).map_err(|e| e.to_string())
    })
    .await
    .expect("the sticky service answers");
    for i in 0..30 {
        let conn = Connection::open(&s.client.ns, sticky, Duration::from_secs(2)).expect("connection");
        assert_eq!(conn.name, first, "connection {i} stays on the client's backend");
    }
    // The same client to a service without affinity is still spread.
    let seen = spread(&s, &s.client.ns, 40);
    assert_eq!(seen.len(), 2, "without affinity both backends serve: {seen:?}");
    let (ok, _, err) = s.c.cp.masters[0]
        .sdnctl(&[
            "services",
            "create",
            "default/bad",
            "--port",
            "80",
            "--session-affinity",
            "ClientIP",
            "--session-affinity-timeout",
            "0",
        ])
        .expect("sdnctl");
    assert!(!ok && err.contains("timeoutSeconds"), "a zero timeout is refused naming the field: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_agents_follow_a_wider_service_network() {
    let s = setup("svc-widen").await;
    s.wait_reaches(&s.client.ns, "web0").await;
    let mut kv = s.c.cp.etcd.client().await.expect("etcd client").kv_client();
    // A service past the service network, straight into etcd: left out, and logged.
    let far = SocketAddrV4::new(Ipv4Addr::new(172, 31, 0, 5), 80);
    let service = json!({ "namespace": "default", "name": "far", "clusterIP": far.ip(), "ports": [{ "name": "http", "port": 80 }] });
    let endpoints = json!({ "namespace": "default", "name": "far", "addresses": [{ "ip": s.backends[1].ip }],
        "ports": [{ "name": "http", "port": 8080 }] });
    kv.put("/sdn/services/default/far", service.to_string(), None).await.expect("put service");
    kv.put("/sdn/endpoints/default/far", endpoints.to_string(), None).await.expect("put endpoints");
    let logged = sdn_tests::wait::until(Duration::from_secs(5), || async {
        let log = s.c.nodes[0].log();
        if log.contains("default/far 172.31.0.5 is not load-balanced") { Ok(()) } else { Err(log) }
    })
    .await;
    assert!(logged.is_ok(), "the stray cluster IP is logged: {logged:?}");
    assert!(Connection::open(&s.client.ns, far, Duration::from_millis(300)).is_err(), "not translated yet");
    // The master takes a wider network while the nodes run (docs/master.md); so do they.
    let stored = kv.get("/sdn/config/network", None).await.expect("get network");
    let mut network: Value = serde_json::from_slice(stored.kvs()[0].value()).expect("network JSON");
    network["serviceNetwork"] = json!("172.30.0.0/15");
    kv.put("/sdn/config/network", network.to_string(), None).await.expect("put network");
    let reached = sdn_tests::wait::until(Duration::from_secs(10), || async {
        Connection::open(&s.client.ns, far, Duration::from_millis(300)).map(|c| c.name).map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(reached.as_deref(), Ok("web1"), "the service in the wider network\n{}", s.c.logs());
    // Services of the old range still work.
    s.wait_reaches(&s.client.ns, "web1").await;
}
