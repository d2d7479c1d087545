//! The cluster DNS of the node agents, asked with `dig` from pods, the node and an outside host:
//! services and endpoints created through the master's API, every record kind, the negative
//! answers, truncation and the TCP retry, updates, forwarding to an upstream of the test's,
//! refusal of outsiders, a pod resolving a short name through its CNI `resolv.conf`, and the
//! limits that keep one pod from starving the others: TCP connections and forwards per client,
//! UDP response rate limiting, clients that never read.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sdn_tests::cni::{Attachment, Runtime};
use sdn_tests::dns::{Dig, FakeUpstream, dig, hold_tcp, never_reading, still_open, udp_flood};
use sdn_tests::netns::Netns;
use sdn_tests::node::Cluster;
use serde_json::{Value, json};

async fn cluster(tag: &str) -> Cluster {
    match Cluster::start(tag, 1).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster: {err}"),
    }
}

/// The node's gateway: `<subnet>.1`, from one of its pods.
fn gateway(pod_ip: Ipv4Addr) -> String {
    let [a, b, c, _] = pod_ip.octets();
    Ipv4Addr::new(a, b, c, 1).to_string()
}

async fn post(c: &Cluster, path: &str, body: Value) -> Value {
    let client = c.cp.masters[0].client();
    client.post(path, &body).await.unwrap_or_else(|e| panic!("POST {path} {body}: {e}"))
}

async fn put(c: &Cluster, path: &str, body: Value) -> Value {
    let client = c.cp.masters[0].client();
    client.put(path, &body).await.unwrap_or_else(|e| panic!("PUT {path} {body}: {e}"))
}

fn address(ip: &str, hostname: Option<&str>, ready: bool) -> Value {
    match hostname {
        Some(h) => json!({ "ip": ip, "hostname": h, "ready": ready }),
        None => json!({ "ip": ip, "ready": ready }),
    }
}

/// Asks until `check` holds for the answer (at most 5 s); the answer and how long it took.
async fn answered(ns: &Netns, args: &[&str], check: impl Fn(&Dig) -> bool) -> (Dig, Duration) {
    let started = Instant::now();
    loop {
        let answer = dig(ns, args);
        if check(&answer) {
            return (answer, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(5) {
            panic!("dig {args:?}: no matching answer within 5 s; last:\n{}", answer.raw);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_each_negative_answer_and_updates() {
    let c = cluster("dns-rr").await;
    let pod = c.nodes[0].attach_pod("p").await.expect("pod");
    let at = format!("@{}", gateway(pod.ip));
    let q = |args: &[&str]| dig(&pod.ns, &[&[at.as_str()][..], args].concat());

    let web = post(
        &c,
        "/api/v1/services",
        json!({ "namespace": "shop", "name": "web",
                "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }, { "name": "dns", "port": 53, "protocol": "UDP" }] }),
    )
    .await;
    let web_ip = web["clusterIP"].as_str().expect("allocated cluster IP").to_owned();
    post(
        &c,
        "/api/v1/services",
        json!({ "namespace": "shop", "name": "db", "clusterIP": "None",
        "ports": [{ "name": "pg", "port": 5432 }] }),
    )
    .await;
    put(&c, "/api/v1/endpoints/shop/db", json!({
        "addresses": [address("10.1.0.50", Some("db-0"), true), address("10.1.0.51", None, true), address("10.1.0.52", Some("db-2"), false)],
        "ports": [{ "name": "pg", "port": 5432 }] }))
    .await;
    post(&c, "/api/v1/services", json!({ "namespace": "shop", "name": "idle", "clusterIP": "None" })).await;
    put(&c, "/api/v1/endpoints/shop/idle", json!({ "addresses": [address("10.1.0.60", None, false)] })).await;

    // A for a service, answered once the agent has it; case does not matter.
    let (answer, took) = answered(&pod.ns, &[&at, "web.shop.svc.cluster.local"], |d| !d.answer.is_empty()).await;
    println!("a new service answered {took:?} after the API call returned");
    assert_eq!(answer.data("A"), [web_ip.as_str()]);
    assert!(answer.has_flag("aa"), "authoritative: {}", answer.raw);
    assert_eq!(answer.answer[0].ttl, 30, "default TTL");
    assert_eq!(q(&["WeB.ShOp.SvC.cluster.LOCAL"]).data("A"), [web_ip.as_str()]);
    // Headless: the ready endpoints; an endpoint's own name; SRV with the targets' addresses.
    assert_eq!(q(&["db.shop.svc.cluster.local"]).data("A"), ["10.1.0.50", "10.1.0.51"]);
    // Wildcards as the seed's SkyDNS answered them: every service of the namespace.
    assert_eq!(q(&["*.shop.svc.cluster.local"]).data("A"), ["10.1.0.50", "10.1.0.51", web_ip.as_str()]);
    assert_eq!(q(&["db-0.db.shop.svc.cluster.local"]).data("A"), ["10.1.0.50"]);
    let srv = q(&["_pg._tcp.db.shop.svc.cluster.local", "SRV"]);
    let targets: Vec<String> =
        srv.data("SRV").iter().map(|d| d.rsplit(' ').next().unwrap_or_default().to_owned()).collect();
    assert_eq!(targets, ["10-1-0-51.db.shop.svc.cluster.local.", "db-0.db.shop.svc.cluster.local."], "{}", srv.raw);
    assert_eq!(srv.additional.iter().filter(|r| r.kind == "A").count(), 2, "target addresses: {}", srv.raw);
    let srv = q(&["_http._tcp.web.shop.svc.cluster.local", "SRV"]);
    assert_eq!(srv.data("SRV"), ["0 100 80 web.shop.svc.cluster.local."], "{}", srv.raw);
    assert!(srv.additional.iter().any(|r| r.kind == "A" && r.data == web_ip), "{}", srv.raw);
    assert_eq!(
        q(&["_dns._udp.web.shop.svc.cluster.local", "SRV"]).data("SRV"),
        ["0 100 53 web.shop.svc.cluster.local."]
    );
    // PTR for the service IP and for an endpoint; the endpoints name; the schema version.
    assert_eq!(q(&["-x", &web_ip]).data("PTR"), ["web.shop.svc.cluster.local."]);
    assert_eq!(q(&["-x", "10.1.0.50"]).data("PTR"), ["db-0.db.shop.svc.cluster.local."]);
    assert_eq!(q(&["db.shop.endpoints.cluster.local"]).data("A"), ["10.1.0.50", "10.1.0.51"]);
    assert_eq!(q(&["dns-version.cluster.local", "TXT"]).data("TXT"), ["\"1.1.0\""]);

    // Negative answers carry the SOA with the short negative TTL.
    for (name, kind, status) in [
        ("nope.shop.svc.cluster.local", "A", "NXDOMAIN"),
        ("idle.shop.svc.cluster.local", "A", "NXDOMAIN"),
        ("_nope._tcp.web.shop.svc.cluster.local", "SRV", "NXDOMAIN"),
        ("web.shop.svc.cluster.local", "AAAA", "NOERROR"),
        ("shop.svc.cluster.local", "A", "NOERROR"),
        ("svc.cluster.local", "A", "NOERROR"),
        ("shop.cluster.local", "A", "NOERROR"),
    ] {
        let answer = q(&[name, kind]);
        assert_eq!(answer.status, status, "{name} {kind}: {}", answer.raw);
        assert!(answer.answer.is_empty(), "{name} {kind}: {}", answer.raw);
        let soa = answer.authority.iter().find(|r| r.kind == "SOA");
        assert!(soa.is_some_and(|s| s.ttl == 5), "{name} {kind}: SOA with TTL 5 expected: {}", answer.raw);
    }

    // Truncation: 60 endpoints do not fit 512 bytes (no EDNS); dig retries over TCP and gets all.
    let many: Vec<Value> = (0..60).map(|i| address(&format!("10.1.0.{}", 100 + i), None, true)).collect();
    post(&c, "/api/v1/services", json!({ "namespace": "shop", "name": "many", "clusterIP": "None" })).await;
    put(&c, "/api/v1/endpoints/shop/many", json!({ "addresses": many })).await;
    let (cut, _) =
        answered(&pod.ns, &[&at, "+noedns", "+ignore", "many.shop.svc.cluster.local"], |d| d.has_flag("tc")).await;
    assert!(cut.answer.len() < 60, "cut to fit 512 bytes: {}", cut.raw);
    let whole = q(&["+noedns", "many.shop.svc.cluster.local"]);
    assert_eq!(whole.answer.len(), 60, "the TCP retry gets everything: {}", whole.raw);
    assert!(!whole.has_flag("tc"));
    let edns = q(&["+bufsize=1232", "+ignore", "many.shop.svc.cluster.local"]);
    assert!(edns.answer.len() > cut.answer.len(), "a larger EDNS size gets more: {}", edns.raw);

    // Updates: an endpoint added, made not ready, removed.
    let endpoints = |extra: Vec<Value>| {
        let mut addresses = vec![address("10.1.0.50", Some("db-0"), true), address("10.1.0.51", None, true)];
        addresses.extend(extra);
        json!({ "addresses": addresses, "ports": [{ "name": "pg", "port": 5432 }] })
    };
    put(&c, "/api/v1/endpoints/shop/db", endpoints(vec![address("10.1.0.53", Some("db-3"), true)])).await;
    let (_, took) = answered(&pod.ns, &[&at, "db.shop.svc.cluster.local"], |d| d.answer.len() == 3).await;
    println!("an added endpoint answered {took:?} after the API call returned");
    put(&c, "/api/v1/endpoints/shop/db", endpoints(vec![address("10.1.0.53", Some("db-3"), false)])).await;
    answered(&pod.ns, &[&at, "db.shop.svc.cluster.local"], |d| d.answer.len() == 2).await;
    answered(&pod.ns, &[&at, "db-3.db.shop.svc.cluster.local"], |d| d.status == "NXDOMAIN").await;
    put(&c, "/api/v1/endpoints/shop/db", json!({ "addresses": [] })).await;
    answered(&pod.ns, &[&at, "db.shop.svc.cluster.local"], |d| d.status == "NXDOMAIN").await;
    let client = c.cp.masters[0].client();
    client.delete("/api/v1/services/shop/web").await.expect("delete web");
    answered(&pod.ns, &[&at, "web.shop.svc.cluster.local"], |d| d.status == "NXDOMAIN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_go_upstream_and_outsiders_are_refused() {
    let mut c = cluster("dns-fwd").await;
    let upstream = FakeUpstream::start(&c.external, SocketAddr::from((Cluster::EXTERNAL_IP, 53)))
        .expect("a resolver on the external host");
    let node_ip = c.nodes[0].ip.to_string();
    c.nodes[0].extra_args =
        vec![format!("--dns-upstream={}", Cluster::EXTERNAL_IP), format!("--dns-address={node_ip}")];
    c.nodes[0].restart().await.expect("restart with an upstream");
    let pod = c.nodes[0].attach_pod("p").await.expect("pod");
    let at = format!("@{}", gateway(pod.ip));
    post(
        &c,
        "/api/v1/services",
        json!({ "namespace": "shop", "name": "web", "ports": [{ "name": "http", "port": 80 }] }),
    )
    .await;
    answered(&pod.ns, &[&at, "web.shop.svc.cluster.local"], |d| !d.answer.is_empty()).await;

    // A pod's name outside the cluster goes to the upstream; so does the node's own.
    let forwarded = dig(&pod.ns, &[&at, "example.test"]);
    assert_eq!(forwarded.data("A"), [FakeUpstream::ADDRESS.to_string()], "{}", forwarded.raw);
    let from_node = dig(&c.nodes[0].ns, &[&format!("@{node_ip}"), "example.test"]);
    assert_eq!(from_node.data("A"), [FakeUpstream::ADDRESS.to_string()], "{}", from_node.raw);
    let asked = upstream.queries.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(asked, 2, "the upstream saw both questions");

    // The external host is outside every allowed network: refused, in the zone and out of it,
    // over UDP and TCP, and nothing reaches the upstream on its behalf.
    for args in [["web.shop.svc.cluster.local", "+notcp"], ["example.test", "+notcp"], ["example.test", "+tcp"]] {
        let answer = dig(&c.external, &[&[format!("@{node_ip}").as_str()][..], &args].concat());
        assert_eq!(answer.status, "REFUSED", "{args:?}: {}", answer.raw);
        assert!(answer.answer.is_empty(), "{}", answer.raw);
    }
    assert_eq!(upstream.queries.load(std::sync::atomic::Ordering::Relaxed), asked, "no recursion for outsiders");

    // Garbage over UDP and TCP (a header and less, a question past the message's end, a TCP
    // length larger than what follows): no answer or FORMERR, and the server goes on answering.
    let gw = gateway(pod.ip);
    for bytes in ["\\x12", "\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x3fab", "\\xff\\xff\\xff"] {
        let udp = format!("printf '{bytes}' > /dev/udp/{gw}/53");
        let tcp = format!("printf '\\x00\\x40{bytes}' > /dev/tcp/{gw}/53");
        for script in [udp, tcp] {
            pod.ns.exec(&["timeout", "2", "bash", "-c", &script]);
        }
    }
    let still = dig(&pod.ns, &[&at, "web.shop.svc.cluster.local"]);
    assert_eq!(still.answer.len(), 1, "answers after malformed messages: {}", still.raw);

    // Without upstreams the server is nobody's resolver: other names are refused.
    c.nodes[0].extra_args = vec!["--no-dns-upstream".into()];
    c.nodes[0].restart().await.expect("restart without upstreams");
    let refused = dig(&pod.ns, &[&at, "example.test"]);
    assert_eq!(refused.status, "REFUSED", "{}", refused.raw);
    assert!(!refused.has_flag("ra"), "no recursion offered: {}", refused.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_resolves_a_service_by_its_short_name_through_its_cni_resolv_conf() {
    let c = cluster("dns-cni").await;
    let node = &c.nodes[0];
    let rt = Runtime::for_node(node);
    let ns = Netns::create(c.cp.dir.clone(), &format!("{}-web", node.name)).expect("pod namespace");
    let attachment = Attachment {
        container_id: "d15c0".into(),
        netns: ns.path(),
        ifname: "eth0".into(),
        args: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0".into(),
    };
    let conf = json!({ "cniVersion": "1.1.0", "name": "sdn", "type": "sdn-cni", "socket": node.socket });
    let added = rt.call("ADD", &attachment, &conf);
    assert!(added.success, "ADD: {added}");
    let result = added.json();
    let service = post(
        &c,
        "/api/v1/services",
        json!({ "namespace": "shop", "name": "web", "ports": [{ "name": "http", "port": 80 }] }),
    )
    .await;
    let web_ip = service["clusterIP"].as_str().expect("cluster IP").to_owned();

    // The resolv.conf a runtime writes from the result, seen by the pod alone (a private mount).
    let dns = &result["dns"];
    let mut resolv = String::new();
    for server in dns["nameservers"].as_array().expect("nameservers") {
        resolv += &format!("nameserver {}\n", server.as_str().unwrap_or_default());
    }
    let search: Vec<&str> = dns["search"].as_array().expect("search").iter().filter_map(Value::as_str).collect();
    resolv += &format!("search {}\noptions {}\n", search.join(" "), dns["options"][0].as_str().unwrap_or_default());
    let path = c.cp.dir.path().join("web-resolv.conf");
    std::fs::write(&path, &resolv).expect("writing resolv.conf");
    let script = format!("mount --bind {} /etc/resolv.conf && getent ahostsv4 web", path.display());
    let resolved = sdn_tests::wait::until(Duration::from_secs(5), || async {
        let out = ns.exec(&["unshare", "--mount", "sh", "-c", &script]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(&web_ip) { Ok(text) } else { Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))) }
    })
    .await;
    let resolved = resolved.unwrap_or_else(|e| panic!("`web` from the pod with\n{resolv}\ngave: {e}"));
    assert!(resolved.contains("web.shop.svc.cluster.local"), "found by the search list: {resolved}");
}

/// The gateway's DNS address, from one of its pods.
fn dns_at(pod_ip: Ipv4Addr) -> SocketAddr {
    let [a, b, c, _] = pod_ip.octets();
    SocketAddr::from((Ipv4Addr::new(a, b, c, 1), 53))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_flooding_tcp_and_slow_forwards_leaves_another_answered() {
    let mut c = cluster("dns-lim").await;
    // Names `slow*` take the upstream 3 s, past the agent's 2 s: each holds its forward slot
    // for the whole timeout.
    let upstream =
        FakeUpstream::start_slow(&c.external, SocketAddr::from((Cluster::EXTERNAL_IP, 53)), Duration::from_secs(3))
            .expect("a resolver on the external host");
    // Rate limiting off: this test is about the slots, not about how many replies get out.
    c.nodes[0].extra_args =
        vec![format!("--dns-upstream={}", Cluster::EXTERNAL_IP), "--dns-rrl-responses-per-second=0".into()];
    c.nodes[0].restart().await.expect("restart with an upstream");
    let flooder = c.nodes[0].attach_pod("flood").await.expect("pod");
    let other = c.nodes[0].attach_pod("other").await.expect("pod");
    let server = dns_at(flooder.ip);
    let at = format!("@{}", server.ip());
    let web = post(
        &c,
        "/api/v1/services",
        json!({ "namespace": "shop", "name": "web", "ports": [{ "name": "http", "port": 80 }] }),
    )
    .await;
    let web_ip = web["clusterIP"].as_str().expect("cluster IP").to_owned();
    answered(&other.ns, &[&at, "web.shop.svc.cluster.local"], |d| !d.answer.is_empty()).await;

    // 300 connections from one pod, more than the 256 the server holds: it keeps 16 of them
    // and closes the rest at once, and the other pod's TCP query is answered.
    let held = hold_tcp(&flooder.ns, server, 300).expect("connections");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = still_open(&held);
    assert_eq!(open, 16, "connections of the flooding pod left open");
    let tcp = dig(&other.ns, &[&at, "+tcp", "web.shop.svc.cluster.local"]);
    assert_eq!(tcp.data("A"), [web_ip.as_str()], "the other pod over TCP: {}", tcp.raw);
    drop(held);

    // 600 names the upstream is slow with, more than the 512 forwards the server holds: 32
    // go upstream, the others get SERVFAIL at once, and the other pod's name is forwarded.
    let names: Vec<String> = (0..600).map(|i| format!("{}-{i}.example.test", FakeUpstream::SLOW)).collect();
    let flood = udp_flood(&flooder.ns, server, &names, 10_000, Duration::from_millis(300)).expect("flood");
    let asked = upstream.queries.load(std::sync::atomic::Ordering::Relaxed);
    println!("600 slow names from one pod: {asked} forwarded, {flood:?}");
    let fast = dig(&other.ns, &[&at, "fast.example.test"]);
    assert_eq!(fast.data("A"), [FakeUpstream::ADDRESS.to_string()], "the other pod's name: {}", fast.raw);
    assert!((1..=32).contains(&asked), "{asked} of the flooding pod's queries went upstream");
    assert!(flood.servfail >= 500, "SERVFAIL at once for those over the pod's limit: {flood:?}");
    assert_eq!(flood.answered, 0, "nothing came back from the upstream within 2 s: {flood:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flood_is_rate_limited_while_other_clients_are_answered() {
    let mut c = cluster("dns-rrl").await;
    let node_ip = c.nodes[0].ip.to_string();
    // The node's own address: a client outside the cluster network, which rate limiting covers.
    c.nodes[0].extra_args = vec![format!("--dns-address={node_ip}")];
    c.nodes[0].restart().await.expect("restart with the node's address");
    let pod = c.nodes[0].attach_pod("pod").await.expect("pod");
    let gateway = dns_at(pod.ip);
    let at_gateway = format!("@{}", gateway.ip());
    let at_node = format!("@{node_ip}");
    let node_server = SocketAddr::from((c.nodes[0].ip, 53));
    for name in ["web", "db"] {
        post(
            &c,
            "/api/v1/services",
            json!({ "namespace": "shop", "name": name, "ports": [{ "name": "http", "port": 80 }] }),
        )
        .await;
    }
    answered(&pod.ns, &[&at_gateway, "db.shop.svc.cluster.local"], |d| !d.answer.is_empty()).await;
    answered(&c.nodes[0].ns, &[&at_node, "web.shop.svc.cluster.local"], |d| !d.answer.is_empty()).await;

    // 3,000 queries in a second for one name from the node, with the defaults (100/s, slip 2):
    // the first second's 100, then about half truncated and half dropped.
    let names = vec!["web.shop.svc.cluster.local".to_owned(); 3000];
    let (flood, from_pod, other_name) = std::thread::scope(|scope| {
        let flood = scope.spawn(|| udp_flood(&c.nodes[0].ns, node_server, &names, 3000, Duration::from_millis(500)));
        std::thread::sleep(Duration::from_millis(300));
        // Meanwhile: a pod asks the same name (pods are never limited), the node another name
        // (another account).
        let from_pod = dig(&pod.ns, &[&at_gateway, "+ignore", "web.shop.svc.cluster.local"]);
        let other_name = dig(&c.nodes[0].ns, &[&at_node, "+ignore", "db.shop.svc.cluster.local"]);
        (flood.join().expect("flood thread").expect("flood"), from_pod, other_name)
    });
    println!("3000 queries for one name: {flood:?}, {} missing", flood.missing());
    for (who, answer) in [("the pod", &from_pod), ("the node's other name", &other_name)] {
        assert_eq!(answer.answer.len(), 1, "{who} answered during the flood: {}", answer.raw);
        assert!(!answer.has_flag("tc"), "{who} not truncated: {}", answer.raw);
    }
    let seconds = flood.sending.as_secs_f64() + 0.5;
    assert!(flood.answered as f64 <= 100.0 + 100.0 * seconds, "at most the rate got answers: {flood:?}");
    assert!(flood.truncated >= 1000, "about half the rest truncated: {flood:?}");
    assert!(flood.missing() >= 1000, "and about half dropped: {flood:?}");
    assert!(flood.truncated.abs_diff(flood.missing()) <= 300, "slip 2: as many truncated as dropped: {flood:?}");
    // The flood's account is in debt for a while, but every second reply to it is truncated,
    // and dig (as any real client) asks again over TCP, which is not limited: of two tries
    // in a row one gets its answer.
    let tries: Vec<Dig> = (0..2).map(|_| dig(&c.nodes[0].ns, &[&at_node, "web.shop.svc.cluster.local"])).collect();
    assert!(tries.iter().any(|d| d.answer.len() == 1), "a client behind the flood is served over TCP: {tries:?}");

    // A pod cannot forge its source, so nothing is reflected through it: its flood is answered
    // whole (a node's pods share one /24, and would share its accounts).
    let from_pods = udp_flood(&pod.ns, gateway, &names, 3000, Duration::from_millis(500)).expect("pod flood");
    assert_eq!(from_pods.truncated, 0, "a pod's queries are not limited: {from_pods:?}");
    assert!(from_pods.answered >= 2900, "a pod's queries are answered: {from_pods:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_client_that_never_reads_is_hung_up_on() {
    let mut c = cluster("dns-tcpw").await;
    c.nodes[0].extra_args = vec!["--dns-tcp-connections-per-client=2".into()];
    c.nodes[0].restart().await.expect("restart with 2 connections per client");
    let pod = c.nodes[0].attach_pod("p").await.expect("pod");
    let server = dns_at(pod.ip);
    let at = format!("@{}", server.ip());
    // 1,000 endpoints: 16 KB a reply, so a few hundred fill what the kernel buffers.
    post(&c, "/api/v1/services", json!({ "namespace": "shop", "name": "big", "clusterIP": "None" })).await;
    let addresses: Vec<Value> =
        (0..1000).map(|i| address(&format!("10.1.{}.{}", 100 + i / 250, 1 + i % 250), None, true)).collect();
    put(&c, "/api/v1/endpoints/shop/big", json!({ "addresses": addresses })).await;
    let big = "big.shop.svc.cluster.local";
    answered(&pod.ns, &[&at, "+tcp", big], |d| d.answer.len() == 1000).await;

    let stuck: Vec<_> = (0..2).map(|_| never_reading(&pod.ns, server, big, 500).expect("a stuck client")).collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = dig(&pod.ns, &[&at, "+tcp", big]);
    assert!(refused.answer.is_empty(), "a third connection is over the pod's limit: {}", refused.raw);
    // The server hangs up on the stuck connections 5 s after their replies stopped moving,
    // before the 10 s idle timeout, and the pod's slots are its own again.
    let freed = loop {
        if dig(&pod.ns, &[&at, "+tcp", big]).answer.len() == 1000 {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the stuck connections still hold the slots");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("the slots of two clients that never read came back {freed:?} after they stopped");
    assert!(freed < Duration::from_secs(9), "the write timeout, not the idle one: {freed:?}");
    drop(stuck);
}
