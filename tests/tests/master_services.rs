//! Services and endpoints through a real master and etcd: cluster IPs allocated without
//! collisions (also by concurrent creates on two masters), given or headless; bad bodies refused
//! with the field named and nothing written; delete takes the claim and the endpoints along;
//! `sdnctl services` and `sdnctl endpoints`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use sdn_cluster::{ClusterIp, ClusterNetwork, Endpoints, ServiceSpec};
use sdn_master::api::types::ErrorBody;
use sdn_master::ctl::ServiceDetail;
use sdn_tests::cluster::ControlPlane;
use sdn_tests::master::{Master, TOKEN};

async fn start(name: &str, masters: usize) -> ControlPlane {
    match ControlPlane::start(name, ClusterNetwork::default(), masters).await {
        Ok(cp) => cp,
        Err(err) => panic!("starting the control plane: {err}"),
    }
}

/// Status and body of one authenticated request.
async fn call(master: &Master, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    call_url(&master.url(), method, path, body).await
}

async fn call_url(base: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut request = match method {
        "POST" => client.post(url),
        "PUT" => client.put(url),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    request = request.bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let resp = request.send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// Creates a service from a JSON body, expecting 201.
async fn create(master: &Master, body: &str) -> ServiceSpec {
    create_at(&master.url(), body).await
}

async fn create_at(base: &str, body: &str) -> ServiceSpec {
    let (status, text) = call_url(base, "POST", "/api/v1/services", Some(body)).await;
    assert_eq!(status, 201, "{body}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn error(text: &str) -> ErrorBody {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not an error body: {e}"))
}

/// Every `service-ips/<ip>` claim and the service it names, straight from etcd.
async fn claims(cp: &ControlPlane) -> BTreeMap<IpAddr, String> {
    cp.store.service_ip_claims().await.expect("claims").into_iter().collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_allocated_given_or_headless() {
    let cp = start("svcalloc", 1).await;
    let master = &cp.masters[0];
    let web = create(master, r#"{"namespace":"default","name":"web","ports":[{"port":80}]}"#).await;
    assert_eq!(web.cluster_ip, Some(ClusterIp::Ip(ip("172.30.0.1"))), "the lowest address after the network's");
    let given = create(master, r#"{"namespace":"default","name":"db","clusterIP":"172.30.0.2"}"#).await;
    assert_eq!(given.cluster_ip, Some(ClusterIp::Ip(ip("172.30.0.2"))));
    let headless = create(
        master,
        r#"{"namespace":"other","name":"peers","clusterIP":"None",
            "ports":[{"name":"gossip","port":7946,"protocol":"UDP"},{"name":"raft","port":7947}]}"#,
    )
    .await;
    assert_eq!(headless.cluster_ip, Some(ClusterIp::Headless));
    let next = create(master, r#"{"namespace":"default","name":"cache"}"#).await;
    assert_eq!(next.cluster_ip, Some(ClusterIp::Ip(ip("172.30.0.3"))), "taken addresses are skipped");

    let expected: BTreeMap<IpAddr, String> = [
        (ip("172.30.0.1"), "default/web".to_owned()),
        (ip("172.30.0.2"), "default/db".to_owned()),
        (ip("172.30.0.3"), "default/cache".to_owned()),
    ]
    .into();
    assert_eq!(claims(&cp).await, expected, "one claim per cluster IP, none for the headless service");
    let stored = cp.store.service("other", "peers").await.expect("read").expect("stored");
    assert_eq!(stored.cluster_ip, None, "headless is stored without a clusterIP");

    // Reads: all, one namespace, one service; the shown form can be posted again as it is.
    let (status, text) = call(master, "GET", "/api/v1/services", None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Vec<ServiceSpec>>(&text).expect("list").len(), 4);
    let (_, text) = call(master, "GET", "/api/v1/services?namespace=other", None).await;
    assert_eq!(serde_json::from_str::<Vec<ServiceSpec>>(&text).expect("list"), vec![headless.clone()]);
    let (status, text) = call(master, "GET", "/api/v1/services/default/db", None).await;
    assert_eq!((status, serde_json::from_str::<ServiceSpec>(&text).expect("one")), (200, given));

    // Conflicts: the same service again, and a taken address, which names its holder.
    let before = cp.revision().await;
    let (status, text) =
        call(master, "POST", "/api/v1/services", Some(&serde_json::to_string(&headless).expect("json"))).await;
    assert_eq!(status, 409, "{text}");
    assert!(error(&text).error.contains("service other/peers already exists"), "{text}");
    let (status, text) =
        call(master, "POST", "/api/v1/services", Some(r#"{"namespace":"x","name":"y","clusterIP":"172.30.0.1"}"#))
            .await;
    assert_eq!(status, 409, "{text}");
    let body = error(&text);
    assert_eq!(body.field.as_deref(), Some("clusterIP"));
    assert_eq!(body.error, "clusterIP: 172.30.0.1 is already held by service default/web");
    assert_eq!(cp.revision().await, before, "a refused create writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_on_two_masters_get_distinct_ips() {
    let cp = start("svcrace", 2).await;
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..20 {
        let url = cp.masters[i % 2].url();
        creates.spawn(async move { create_at(&url, &format!(r#"{{"namespace":"race","name":"svc-{i}"}}"#)).await });
    }
    let created: Vec<ServiceSpec> = creates.join_all().await;
    let ips: BTreeSet<IpAddr> = created.iter().filter_map(|s| s.cluster_ip.and_then(ClusterIp::ip)).collect();
    assert_eq!(ips.len(), 20, "20 creates, 20 distinct addresses: {created:?}");
    let lowest: BTreeSet<IpAddr> = (1..=20).map(|i| IpAddr::from([172, 30, 0, i])).collect();
    assert_eq!(ips, lowest, "together they take the 20 lowest addresses");
    let claims = claims(&cp).await;
    assert_eq!(claims.len(), 20);
    for service in &created {
        let ip = service.cluster_ip.and_then(ClusterIp::ip).expect("allocated");
        assert_eq!(claims.get(&ip), Some(&format!("race/{}", service.name)), "the claim of {ip} names its service");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_write_nothing() {
    let cp = start("svcbad", 1).await;
    let master = &cp.masters[0];
    create(master, r#"{"namespace":"default","name":"web","ports":[{"port":80}]}"#).await;
    let before = cp.revision().await;

    // method, path, body, expected status, expected field
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, Option<&'a str>);
    let svc = "/api/v1/services";
    let ep = "/api/v1/endpoints/default/web";
    let cases: &[Case] = &[
        ("POST", svc, Some(r#"{"namespace":"default","name":"Web"}"#), 400, Some("name")),
        ("POST", svc, Some(r#"{"namespace":"a_b","name":"web2"}"#), 400, Some("namespace")),
        ("POST", svc, Some(r#"{"namespace":"default"}"#), 400, Some("name")),
        ("POST", svc, Some(r#"{"namespace":"default","name":"b","clusterIP":"10.1.0.5"}"#), 400, Some("clusterIP")),
        (
            "POST",
            svc,
            Some(r#"{"namespace":"default","name":"b","clusterIP":"172.30.255.255"}"#),
            400,
            Some("clusterIP"),
        ),
        ("POST", svc, Some(r#"{"namespace":"default","name":"b","clusterIP":"none"}"#), 400, Some("clusterIP")),
        ("POST", svc, Some(r#"{"namespace":"default","name":"b","ports":[{"port":0}]}"#), 400, Some("ports[0].port")),
        (
            "POST",
            svc,
            Some(r#"{"namespace":"default","name":"b","ports":[{"port":70000}]}"#),
            400,
            Some("ports[0].port"),
        ),
        (
            "POST",
            svc,
            Some(r#"{"namespace":"default","name":"b","ports":[{"port":80,"protocol":"ICMP"}]}"#),
            400,
            Some("ports[0].protocol"),
        ),
        (
            "POST",
            svc,
            Some(r#"{"namespace":"default","name":"b","ports":[{"name":"http","port":80},{"port":81}]}"#),
            400,
            Some("ports[1].name"),
        ),
        ("POST", svc, Some(r#"{"namespace":"default","name":"b","type":"NodePort"}"#), 400, Some("type")),
        (
            "POST",
            svc,
            Some(r#"{"namespace":"default","name":"b","ports":[{"port":80,"targetPort":8080}]}"#),
            400,
            Some("ports[0].targetPort"),
        ),
        ("POST", svc, Some(r#"{"namespace":"default","name":"b""#), 400, None),
        ("POST", svc, Some("not json"), 400, None),
        ("GET", "/api/v1/services?namespace=Bad", None, 400, Some("namespace")),
        ("GET", "/api/v1/services/default/Web", None, 400, Some("name")),
        ("GET", "/api/v1/services/default/missing", None, 404, None),
        ("DELETE", "/api/v1/services/default/missing", None, 404, None),
        ("PUT", ep, Some(r#"{"addresses":[{"ip":"172.30.0.9"}]}"#), 400, Some("addresses[0].ip")),
        (
            "PUT",
            ep,
            Some(r#"{"addresses":[{"ip":"10.1.0.2","hostname":"Web_0"}]}"#),
            400,
            Some("addresses[0].hostname"),
        ),
        ("PUT", ep, Some(r#"{"addresses":[{"ip":"10.1.0.2","zone":"a"}]}"#), 400, Some("addresses[0].zone")),
        ("PUT", ep, Some(r#"{"ports":[{"port":70000}]}"#), 400, Some("ports[0].port")),
        ("PUT", ep, Some(r#"{"namespace":"other","addresses":[]}"#), 400, Some("namespace")),
        ("PUT", ep, Some(r#"{"addresses":"#), 400, None),
        ("PUT", "/api/v1/endpoints/default/missing", Some(r#"{"addresses":[{"ip":"10.1.0.2"}]}"#), 404, None),
        ("GET", "/api/v1/endpoints/default/missing", None, 404, None),
    ];
    for (method, path, body, want, field) in cases {
        let (status, text) = call(master, method, path, *body).await;
        assert_eq!(status, *want, "{method} {path} {body:?}: {text}");
        let error = error(&text);
        assert!(!error.error.is_empty());
        assert_eq!(error.field.as_deref(), *field, "{method} {path} {body:?}: {text}");
        if let Some(field) = field {
            assert!(error.error.contains(field), "the message names {field}: {text}");
        }
    }
    assert_eq!(cp.revision().await, before, "no refused request wrote anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_their_service() {
    let mut cp = start("svcep", 1).await;
    let master = &cp.masters[0];
    create(master, r#"{"namespace":"default","name":"web","ports":[{"name":"http","port":80}]}"#).await;
    let (status, text) = call(master, "GET", "/api/v1/endpoints/default/web", None).await;
    assert_eq!(status, 200, "a service without endpoints has none: {text}");
    assert!(serde_json::from_str::<Endpoints>(&text).expect("endpoints").addresses.is_empty());

    let body = r#"{"addresses":[{"ip":"10.1.0.2","hostname":"web-0","nodeName":"node-a"},
        {"ip":"10.1.1.2","ready":false}],"ports":[{"name":"http","port":8080}]}"#;
    let (status, text) = call(master, "PUT", "/api/v1/endpoints/default/web", Some(body)).await;
    assert_eq!(status, 200, "{text}");
    let set: Endpoints = serde_json::from_str(&text).expect("endpoints");
    assert_eq!((set.namespace.as_str(), set.name.as_str(), set.addresses.len()), ("default", "web", 2));
    assert!(!set.addresses[1].ready);
    let (_, text) = call(master, "GET", "/api/v1/endpoints/default/web", None).await;
    assert_eq!(serde_json::from_str::<Endpoints>(&text).expect("endpoints"), set);
    assert_eq!(cp.store.endpoints("default", "web").await.expect("read"), Some(set.clone()));
    // The shown record can be put back as it is; a new set replaces the old one whole.
    let (status, text) =
        call(master, "PUT", "/api/v1/endpoints/default/web", Some(&serde_json::to_string(&set).expect("json"))).await;
    assert_eq!(status, 200, "{text}");
    let (status, _) =
        call(master, "PUT", "/api/v1/endpoints/default/web", Some(r#"{"addresses":[{"ip":"10.1.2.2"}]}"#)).await;
    assert_eq!(status, 200);
    let (_, text) = call(master, "GET", "/api/v1/endpoints?namespace=default", None).await;
    let listed: Vec<Endpoints> = serde_json::from_str(&text).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].addresses.iter().map(|a| a.ip).collect::<Vec<_>>(), vec![ip("10.1.2.2")]);
    assert!(listed[0].ports.is_empty());

    // Delete takes the service, its claim and its endpoints in one go; the address is free again.
    let (status, text) = call(master, "DELETE", "/api/v1/services/default/web", None).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(cp.store.service("default", "web").await.expect("read"), None);
    assert_eq!(cp.store.endpoints("default", "web").await.expect("read"), None);
    assert!(claims(&cp).await.is_empty());
    let (status, _) = call(master, "GET", "/api/v1/endpoints/default/web", None).await;
    assert_eq!(status, 404);
    let again = create(master, r#"{"namespace":"default","name":"web2"}"#).await;
    assert_eq!(again.cluster_ip, Some(ClusterIp::Ip(ip("172.30.0.1"))), "a deleted service's address is reused");

    // etcd unreachable: a valid write is answered 503 and nothing happens.
    cp.etcd.stop();
    let master = &cp.masters[0];
    let (status, text) = call(master, "POST", "/api/v1/services", Some(r#"{"namespace":"default","name":"x"}"#)).await;
    assert_eq!(status, 503, "{text}");
    let (status, text) = call(master, "PUT", "/api/v1/endpoints/default/web2", Some(r#"{"addresses":[]}"#)).await;
    assert_eq!(status, 503, "{text}");
    cp.etcd.resume().await.expect("etcd restarts");
    cp.masters[0].wait_ready(Duration::from_secs(30)).await.expect("ready again");
    assert_eq!(cp.store.service("default", "x").await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdnctl_services_and_endpoints() {
    let cp = start("svcctl", 1).await;
    let master = &cp.masters[0];
    let sdnctl = |args: &[&str]| master.sdnctl(args).expect("sdnctl runs");

    let (ok, out, err) = sdnctl(&["services", "create", "default/web", "--port", "http:80", "--port", "dns:53/udp"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].split_whitespace().eq(["NAMESPACE", "NAME", "CLUSTER-IP", "PORTS"]), "{out}");
    assert!(lines[1].split_whitespace().eq(["default", "web", "172.30.0.1", "http:80/TCP,dns:53/UDP"]), "{out}");
    let (ok, _, err) = sdnctl(&["services", "create", "other/peers", "--cluster-ip", "None"]);
    assert!(ok, "{err}");
    let (ok, _, err) = sdnctl(&["services", "create", "other/db", "--cluster-ip", "172.30.9.9", "--port", "5432"]);
    assert!(ok, "{err}");

    let (ok, out, _) = sdnctl(&["services", "list"]);
    assert!(ok && out.lines().count() == 4, "{out}");
    let (ok, out, _) = sdnctl(&["services", "list", "--namespace", "other", "-o", "json"]);
    assert!(ok, "{out}");
    let listed: Vec<ServiceSpec> = serde_json::from_str(&out).expect("json");
    assert_eq!(listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["db", "peers"]);
    assert_eq!(listed[1].cluster_ip, Some(ClusterIp::Headless));

    let (ok, out, err) = sdnctl(&[
        "endpoints",
        "set",
        "default/web",
        "--address",
        "10.1.0.2,hostname=web-0,node=node-a",
        "--address",
        "10.1.1.2,not-ready",
        "--port",
        "http:8080",
    ]);
    assert!(ok, "{err}");
    assert!(out.lines().nth(1).is_some_and(|l| l.split_whitespace().eq([
        "default",
        "web",
        "10.1.0.2",
        "10.1.1.2",
        "http:8080/TCP"
    ])));
    let (ok, out, _) = sdnctl(&["services", "show", "default/web"]);
    assert!(ok, "{out}");
    assert!(out.contains("172.30.0.1") && out.contains("web-0") && out.contains("node-a"), "{out}");
    let (ok, out, _) = sdnctl(&["services", "show", "default/web", "-o", "json"]);
    assert!(ok);
    let detail: ServiceDetail = serde_json::from_str(&out).expect("json");
    assert_eq!(detail.endpoints.addresses.len(), 2);
    let (ok, out, _) = sdnctl(&["endpoints", "list"]);
    assert!(ok && out.lines().count() == 2 && out.contains("10.1.0.2"), "{out}");

    // Errors from the master: one line, non-zero exit.
    let (ok, _, err) = sdnctl(&["services", "create", "x/y", "--cluster-ip", "172.30.0.1"]);
    assert!(!ok);
    assert_eq!(err.trim(), "error: clusterIP: 172.30.0.1 is already held by service default/web (409 Conflict)");
    let (ok, _, err) = sdnctl(&["endpoints", "set", "default/nobody", "--address", "10.1.0.9"]);
    assert!(!ok && err.contains("service default/nobody not found"), "{err}");
    let (ok, _, err) = sdnctl(&["services", "create", "x/z", "--port", "80", "--port", "81"]);
    assert!(!ok && err.contains("ports[0].name"), "{err}");

    // Bad arguments are clap's errors, naming the argument, before anything is sent.
    let before = cp.revision().await;
    for (args, expected) in [
        (&["services", "create", "web"][..], "expected NAMESPACE/NAME"),
        (&["services", "create", "default/Web"], "name: \"Web\" is not a DNS-1123 label"),
        (&["services", "create", "default/a", "--port", "0"], "--port"),
        (&["services", "create", "default/a", "--port", "70000"], "\"70000\" is not a port (1-65535)"),
        (&["services", "create", "default/a", "--port", "80/icmp"], "protocol \"icmp\" is not TCP, UDP or SCTP"),
        (&["services", "create", "default/a", "--cluster-ip", "bogus"], "--cluster-ip"),
        (&["endpoints", "set", "default/web", "--address", "10.1.0.2,zone=a"], "--address"),
        (&["services", "list", "--namespace", "Bad_NS"], "--namespace"),
    ] {
        let (ok, _, err) = sdnctl(args);
        assert!(!ok, "{args:?} must fail");
        assert!(err.contains(expected) && err.contains("invalid value"), "{args:?}: {err}");
    }
    assert_eq!(cp.revision().await, before, "refused arguments sent nothing");

    let (ok, out, _) = sdnctl(&["services", "delete", "default/web"]);
    assert!(ok && out == "service default/web deleted\n", "{out}");
    let (ok, _, err) = sdnctl(&["services", "show", "default/web"]);
    assert!(!ok && err.contains("service default/web not found"), "{err}");
    assert_eq!(cp.store.endpoints("default", "web").await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_network_change_that_strands_cluster_ips_is_refused() {
    let mut cp = start("svc-netchange", 1).await;
    let web = create(&cp.masters[0], r#"{"namespace":"default","name":"web","clusterIP":"172.30.4.5"}"#).await;
    assert_eq!(web.cluster_ip, Some(ClusterIp::Ip(ip("172.30.4.5"))));
    cp.masters[0].process().kill();

    let mut moved = cp.master_options("svc-netchange-moved");
    moved.network.service_network = "172.31.0.0/16".parse().expect("cidr");
    let mut refused = Master::spawn(cp.dir.clone(), moved).expect("spawn");
    let status = refused.process().wait_exit(Duration::from_secs(20)).await.expect("the master exits");
    assert!(!status.success());
    let log = refused.log();
    assert!(log.contains("serviceNetwork") && log.contains("cluster IP 172.30.4.5"), "{log}");

    // A wider service network keeps the IP and is taken.
    let mut wider = cp.master_options("svc-netchange-wider");
    wider.network.service_network = "172.30.0.0/15".parse().expect("cidr");
    let master = Master::start(cp.dir.clone(), wider).await.expect("starts");
    let stored: ClusterNetwork = master.client().get("/api/v1/network").await.expect("network");
    assert_eq!(stored.service_network.to_string(), "172.30.0.0/15");
}
