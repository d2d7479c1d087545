//! The admin API and `sdnctl` against a real master: bad input is refused
//! with the field named and nothing written, tokens are required, TLS works
//! for the API and towards etcd, bad configuration stops the master.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sdn_cluster::ClusterNetwork;
use sdn_cluster::store::Store;
use sdn_master::api::types::{ErrorBody, NodeView, Phase};
use sdn_tests::bins;
use sdn_tests::cluster::ControlPlane;
use sdn_tests::etcd::Etcd;
use sdn_tests::master::{Master, MasterOptions, TOKEN};
use sdn_tests::pki::Pki;
use sdn_tests::rundir::RunDir;

async fn start(name: &str) -> ControlPlane {
    match ControlPlane::start(name, ClusterNetwork::default(), 1).await {
        Ok(cp) => cp,
        Err(err) => panic!("starting the control plane: {err}"),
    }
}

async fn raw(master: &Master, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", master.url());
    let mut request = match method {
        "POST" => client.post(url),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let resp = request.send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_write_nothing() {
    let cp = start("badinput").await;
    let master = &cp.masters[0];
    let (status, _) =
        raw(master, "POST", "/api/v1/nodes", Some(r#"{"name":"node-a","ip":"192.0.2.1"}"#), Some(TOKEN)).await;
    assert_eq!(status, 201);
    cp.wait_allocated(1, Duration::from_secs(10)).await;
    let before = cp.revision().await;

    // method, path, body, expected status, expected field
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, Option<&'a str>);
    let cases: &[Case] = &[
        ("POST", "/api/v1/nodes", Some("{not json"), 400, None),
        ("POST", "/api/v1/nodes", Some(""), 400, None),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b"}"#), 400, Some("ip")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b","ip":"300.1.1.1"}"#), 400, Some("ip")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b","ip":"10.0.0.0/8"}"#), 400, Some("ip")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"Node_B","ip":"192.0.2.2"}"#), 400, Some("name")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"","ip":"192.0.2.2"}"#), 400, Some("name")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b","ip":"0.0.0.0"}"#), 400, Some("ip")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b","ip":"224.0.0.1"}"#), 400, Some("ip")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b","ip":"192.0.2.2","zone":"a"}"#), 400, Some("zone")),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b","ip":"192.0.2.2"} trailing"#), 400, None),
        ("POST", "/api/v1/nodes", Some(r#"{"name":"node-b","ip":"192.0.2.1"}"#), 409, Some("ip")),
        ("GET", "/api/v1/nodes/Not_A_Label", None, 400, Some("name")),
        ("GET", "/api/v1/nodes/missing", None, 404, None),
        ("DELETE", "/api/v1/nodes/missing", None, 404, None),
        ("GET", "/api/v1/subnets/missing", None, 404, None),
        ("GET", "/api/v1/nowhere", None, 404, None),
    ];
    for (method, path, body, want, field) in cases {
        let (status, text) = raw(master, method, path, *body, Some(TOKEN)).await;
        assert_eq!(status, *want, "{method} {path} {body:?}: {text}");
        let error: ErrorBody =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not an error body: {e}"));
        assert!(!error.error.is_empty());
        assert_eq!(error.field.as_deref(), *field, "{method} {path} {body:?}: {text}");
    }
    let oversized = format!(r#"{{"name":"node-b","ip":"192.0.2.2","pad":"{}"}}"#, "x".repeat(100_000));
    let (status, _) = raw(master, "POST", "/api/v1/nodes", Some(&oversized), Some(TOKEN)).await;
    assert_eq!(status, 413, "bodies over the limit are refused");
    assert_eq!(cp.revision().await, before, "no refused request wrote anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_but_the_probes_needs_the_token() {
    let cp = start("auth").await;
    let master = &cp.masters[0];
    for path in ["/api/v1/nodes", "/api/v1/subnets", "/api/v1/network", "/metrics", "/api/v1/nowhere"] {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let (status, body) = raw(master, "GET", path, None, token).await;
            assert_eq!(status, 401, "{path} with {token:?}: {body}");
        }
        assert_eq!(
            raw(master, "GET", path, None, Some(TOKEN)).await.0 / 100 * 100,
            if path.ends_with("nowhere") { 400 } else { 200 }
        );
    }
    let before = cp.revision().await;
    let (status, _) = raw(master, "POST", "/api/v1/nodes", Some(r#"{"name":"n","ip":"192.0.2.9"}"#), None).await;
    assert_eq!(status, 401);
    assert_eq!(cp.revision().await, before);
    assert_eq!(master.probe("/healthz").await.expect("healthz").0, 200);
    assert_eq!(master.probe("/readyz").await.expect("readyz").0, 200);
}

fn sdnctl(master: &Master, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bins::project("sdnctl").expect("sdnctl built"))
        .env("SDN_SERVER", master.url())
        .env("SDN_TOKEN", TOKEN)
        .env_remove("SDN_TOKEN_FILE")
        .args(args)
        .output()
        .expect("run sdnctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdnctl_round_trip() {
    let cp = start("sdnctl").await;
    let master = &cp.masters[0];
    let (ok, out, err) = sdnctl(master, &["nodes", "add", "node-a", "--ip", "192.0.2.1"]);
    assert!(ok, "{err}");
    assert!(out.lines().next().is_some_and(|h| h.split_whitespace().eq(["NAME", "IP", "SUBNET", "PHASE"])), "{out}");
    assert!(out.contains("node-a"), "{out}");
    cp.wait_allocated(1, Duration::from_secs(20)).await;
    let (ok, out, _) = sdnctl(master, &["nodes", "get", "node-a"]);
    assert!(ok && out.contains("10.1.0.0/24") && out.contains("Allocated"), "{out}");

    let (ok, out, _) = sdnctl(master, &["nodes", "list", "-o", "json"]);
    assert!(ok);
    let nodes: Vec<NodeView> = serde_json::from_str(&out).expect("json list");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].phase, Phase::Allocated);

    let (ok, out, _) = sdnctl(master, &["nodes", "get", "node-a", "-o", "json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<NodeView>(&out).expect("json node").name, "node-a");
    let (ok, out, _) = sdnctl(master, &["subnets", "list"]);
    assert!(ok && out.contains("192.0.2.1") && out.contains("10.1.0.0/24"), "{out}");
    let (ok, out, _) = sdnctl(master, &["network", "show"]);
    assert!(ok && out.contains("10.1.0.0/16") && out.contains("172.30.0.0/16") && out.contains("4789"), "{out}");

    // Errors: one line on stderr, non-zero exit.
    let (ok, _, err) = sdnctl(master, &["nodes", "add", "node-b", "--ip", "192.0.2.1"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ip: 192.0.2.1 is already registered by node node-a"), "{err}");
    let (ok, _, err) = sdnctl(master, &["nodes", "get", "nobody"]);
    assert!(!ok && err.contains("node nobody not found"), "{err}");
    let (ok, _, err) = sdnctl(master, &["nodes", "get", "a/b"]);
    assert!(!ok && err.contains("not a DNS-1123 label"), "{err}");
    let (ok, _, err) = sdnctl(master, &["nodes", "add", "node-b", "--ip", "10.1.7.7"]);
    assert!(!ok && err.contains("inside the cluster network"), "{err}");
    let (ok, _, err) = sdnctl(master, &["nodes", "add", "node-c", "--ip", "not-an-ip"]);
    assert!(!ok && err.contains("--ip"), "{err}");
    let (ok, _, err) = sdnctl(master, &["--server", "http://127.0.0.1:1", "nodes", "list"]);
    assert!(!ok && err.contains("cannot reach the master at http://127.0.0.1:1"), "{err}");
    let out = Command::new(bins::project("sdnctl").expect("sdnctl built"))
        .env_remove("SDN_TOKEN")
        .env_remove("SDN_TOKEN_FILE")
        .env("SDN_SERVER", master.url())
        .args(["nodes", "list"])
        .output()
        .expect("run sdnctl");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no token"));
    let out = Command::new(bins::project("sdnctl").expect("sdnctl built"))
        .env("SDN_TOKEN", "wrong-token-0123456789")
        .env("SDN_SERVER", master.url())
        .args(["nodes", "list"])
        .output()
        .expect("run sdnctl");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bearer token"));

    let (ok, out, _) = sdnctl(master, &["nodes", "delete", "node-a"]);
    assert!(ok && out.contains("deleted"), "{out}");
    cp.wait_allocated(0, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_over_tls() {
    let cp = start("apitls").await;
    let pki = Pki::generate(cp.dir.path()).expect("pki");
    let mut options = cp.master_options("apitls-tls");
    options.extra_args = vec![
        format!("--tls-cert-file={}", pki.server_cert.display()),
        format!("--tls-key-file={}", pki.server_key.display()),
    ];
    let master = Master::spawn(cp.dir.clone(), options).expect("spawn");
    let https = master.url().replace("http://", "https://");
    let client = sdn_master::ctl::Client::new(&https, TOKEN.into(), Some(&pki.ca)).expect("client");
    let network = sdn_tests::wait::until(Duration::from_secs(20), || async {
        client.get::<ClusterNetwork>("/api/v1/network").await.map_err(|e| e.to_string())
    })
    .await
    .expect("the API answers over TLS");
    assert_eq!(network, ClusterNetwork::default());
    let untrusted = sdn_master::ctl::Client::new(&https, TOKEN.into(), None).expect("client");
    assert!(untrusted.get::<ClusterNetwork>("/api/v1/network").await.is_err(), "an unknown CA is refused");
    let plain = sdn_master::ctl::Client::new(&master.url(), TOKEN.into(), None).expect("client");
    assert!(plain.get::<ClusterNetwork>("/api/v1/network").await.is_err(), "no plain HTTP on a TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_uses_etcd_over_tls_with_client_certificates() {
    let dir = Arc::new(RunDir::new("etcdtls").expect("run dir"));
    let pki = Pki::generate(dir.path()).expect("pki");
    let etcd = Etcd::start_tls(dir.clone(), pki.clone()).await.expect("etcd over TLS");
    let mut options = MasterOptions::new("etcdtls-m0", &etcd.endpoint());
    options.extra_args = vec![
        format!("--etcd-ca-file={}", pki.ca.display()),
        format!("--etcd-cert-file={}", pki.client_cert.display()),
        format!("--etcd-key-file={}", pki.client_key.display()),
    ];
    let master = Master::start(dir.clone(), options).await.expect("master over TLS");
    let _: NodeView = master
        .client()
        .post("/api/v1/nodes", &sdn_master::api::types::RegisterNode { name: "n1".into(), ip: [192, 0, 2, 1].into() })
        .await
        .expect("register");
    let store = Store::open(&etcd.config("/sdn")).await.expect("store over TLS");
    let subnets = sdn_tests::wait::until(Duration::from_secs(20), || async {
        match store.list::<sdn_cluster::HostSubnet>(&store.keys().subnets()).await {
            Ok(subnets) if subnets.len() == 1 => Ok(subnets),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    subnets.expect("the node is allocated over TLS");

    // Without a client certificate etcd refuses the master, which keeps
    // retrying and says why.
    let mut options = MasterOptions::new("etcdtls-nocert", &etcd.endpoint());
    options.extra_args = vec![format!("--etcd-ca-file={}", pki.ca.display())];
    let mut refused = Master::spawn(dir.clone(), options).expect("spawn");
    let body = refused.wait_unready(Duration::from_secs(20)).await.expect("never ready");
    assert!(body.contains("not ready"), "{body}");
    let log = sdn_tests::wait::until(Duration::from_secs(20), || async {
        let log = refused.log();
        if log.contains("retrying in") { Ok(log) } else { Err(log) }
    })
    .await
    .expect("a retry is logged");
    assert!(log.contains(&format!("etcd at {}", etcd.endpoint())), "{log}");
    assert!(refused.process().is_running(), "it waits instead of exiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_stops_the_master_with_the_field_named() {
    let dir = Arc::new(RunDir::new("badconfig").expect("run dir"));
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let config = dir.path().join("master.toml");
    std::fs::write(&config, "[network]\ncluster-network = \"10.1.0.0/16\"\nhost-subnet-length = 17\n").expect("config");
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[network]\nclustr-network = \"10.1.0.0/16\"\n").expect("config");
    let token_arg = format!("--token-file={}", token.display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![format!("--config={}", config.display()), token_arg.clone()], "hostSubnetLength"),
        (vec![format!("--config={}", unknown.display()), token_arg.clone()], "unknown field `clustr-network`"),
        (vec!["--service-network=10.1.0.0/20".into(), token_arg.clone()], "serviceNetwork"),
        (vec!["--cluster-network=10.1.0.0/33".into(), token_arg.clone()], "--cluster-network"),
        (vec!["--vxlan-port=70000".into(), token_arg.clone()], "--vxlan-port"),
        (vec!["--etcd-endpoints=127.0.0.1:2379".into(), token_arg.clone()], "etcd.endpoints"),
        (vec!["--token-file=/nonexistent/token".into()], "/nonexistent/token"),
        (vec!["--tls-cert-file=/c.pem".into(), token_arg.clone()], "api.tls-key-file"),
    ];
    for (args, expected) in cases {
        let out = Command::new(bins::project("sdn-master").expect("sdn-master built"))
            .args(&args)
            .output()
            .expect("run sdn-master");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr:?} should name {expected}");
    }
}
