//! The admin API and `sdnctl` against a real master: bad input is refused
//! with the field named and nothing written, tokens are required, TLS works
//! for the API and towards etcd, bad configuration stops the master, slow
//! clients are cut off and connections are bounded.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sdn_cluster::ClusterNetwork;
use sdn_cluster::store::Store;
use sdn_master::api::types::{ErrorBody, NodeView, Phase};
use sdn_tests::bins;
use sdn_tests::cluster::ControlPlane;
use sdn_tests::etcd::Etcd;
use sdn_tests::master::{Master, MasterOptions, TOKEN};
use sdn_tests::pki::Pki;
use sdn_tests::process::Process;
use sdn_tests::rundir::RunDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    write_with_mode(&token, TOKEN, 0o600);
    let readable = dir.path().join("readable-token");
    write_with_mode(&readable, TOKEN, 0o640);
    let config = dir.path().join("master.toml");
    std::fs::write(&config, "[network]\ncluster-network = \"10.1.0.0/16\"\nhost-subnet-length = 17\n").expect("config");
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[network]\nclustr-network = \"10.1.0.0/16\"\n").expect("config");
    let token_arg = format!("--token-file={}", token.display());
    let mode_refused = format!("token file {} has mode 0640", readable.display());
    let chmod_told = format!("chmod 600 {}", readable.display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![format!("--config={}", config.display()), token_arg.clone()], "hostSubnetLength"),
        (vec![format!("--config={}", unknown.display()), token_arg.clone()], "unknown field `clustr-network`"),
        (vec!["--service-network=10.1.0.0/20".into(), token_arg.clone()], "serviceNetwork"),
        (vec!["--cluster-network=10.1.0.0/33".into(), token_arg.clone()], "--cluster-network"),
        (vec!["--vxlan-port=70000".into(), token_arg.clone()], "--vxlan-port"),
        (vec!["--etcd-endpoints=127.0.0.1:2379".into(), token_arg.clone()], "etcd.endpoints"),
        (vec!["--token-file=/nonexistent/token".into()], "/nonexistent/token"),
        (vec!["--tls-cert-file=/c.pem".into(), token_arg.clone()], "api.tls-key-file"),
        (
            vec!["--listen=0.0.0.0:8440".into(), token_arg.clone()],
            "api.listen (--listen): 0.0.0.0:8440 is not a loopback",
        ),
        (vec!["--listen=[::]:8440".into(), token_arg.clone()], "--insecure-listen"),
        (vec!["--max-connections=0".into(), token_arg.clone()], "api.max-connections (--max-connections)"),
        (vec!["--header-read-timeout=0".into(), token_arg.clone()], "api.header-read-timeout (--header-read-timeout)"),
        (vec!["--request-timeout=1".into(), token_arg.clone()], "api.request-timeout (--request-timeout)"),
        (vec![format!("--token-file={}", readable.display())], &mode_refused),
        (vec![format!("--token-file={}", readable.display())], &chmod_told),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        // Bounded: a refusal that went missing leaves a master running, and
        // the test must fail rather than wait for it.
        let log = exit_log(&dir, &format!("badconfig-{i}"), args).await;
        assert!(log.contains(expected), "{args:?}: {log:?} should name {expected}");
    }
}

/// Writes `content` to a file created with `mode` (set again, as the umask
/// may have taken bits away).
fn write_with_mode(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs `sdn-master args`, which must exit with a failure within 10 s, and
/// returns its output.
async fn exit_log(dir: &RunDir, name: &str, args: &[String]) -> String {
    let mut command = Command::new(bins::project("sdn-master").expect("sdn-master built"));
    command.args(args);
    let mut process = Process::spawn(name, command, dir).expect("spawn sdn-master");
    let status = process.wait_exit(Duration::from_secs(10)).await;
    let log = process.log();
    match status {
        Some(status) => assert!(!status.success(), "{args:?} must fail: {log}"),
        None => panic!("{args:?}: still running after 10 s instead of refusing to start: {log}"),
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_listen_serves_plain_http_off_loopback_when_asked() {
    let dir = Arc::new(RunDir::new("insecurelisten").expect("run dir"));
    let token = dir.path().join("token");
    write_with_mode(&token, TOKEN, 0o600);
    let port = sdn_tests::free_port().expect("port");
    let mut command = Command::new(bins::project("sdn-master").expect("sdn-master built"));
    // No etcd is needed: /healthz answers while the master waits for one.
    command.args([
        format!("--listen=0.0.0.0:{port}"),
        "--insecure-listen".into(),
        format!("--token-file={}", token.display()),
        format!("--etcd-endpoints=http://127.0.0.1:{}", sdn_tests::free_port().expect("port")),
    ]);
    let process = Process::spawn("insecure", command, &dir).expect("spawn");
    let healthz = sdn_tests::wait::until(Duration::from_secs(20), || async {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.map_err(|e| e.to_string())?;
        if resp.status() == 200 { Ok(()) } else { Err(resp.status().to_string()) }
    })
    .await;
    assert!(healthz.is_ok(), "the master serves on 0.0.0.0 with --insecure-listen: {}", process.log());
}

/// The master's API address, `127.0.0.1:<port>`.
fn address(master: &Master) -> String {
    master.url().trim_start_matches("http://").to_owned()
}

/// A connection that sent half a request header and then nothing, as a
/// slowloris client does.
async fn half_header(master: &Master) -> TcpStream {
    let mut stream = TcpStream::connect(address(master)).await.expect("connect");
    stream.write_all(b"GET /api/v1/nodes HTTP/1.1\r\nHost: master\r\nAuthori").await.expect("write");
    stream
}

/// Everything the master sends on `stream` until it closes it, and when
/// that was; `None` if it is still open after `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Instant)> {
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            // A reset closes as much as an orderly end.
            Ok(Ok(0) | Err(_)) => return Some((String::from_utf8_lossy(&received).into_owned(), Instant::now())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let mut cp = ControlPlane::start("slowloris", ClusterNetwork::default(), 0).await.expect("control plane");
    let mut options = cp.master_options("slowloris-m");
    options.extra_args = vec!["--header-read-timeout=2".into(), "--request-timeout=3".into()];
    cp.masters.push(Master::start(cp.dir.clone(), options).await.expect("master"));
    let master = &cp.masters[0];

    // Half a header: the connection is closed at the header timeout, and
    // meanwhile another client is served.
    let started = Instant::now();
    let mut slow = half_header(master).await;
    let nodes = master.client().get::<Vec<NodeView>>("/api/v1/nodes").await;
    assert!(nodes.is_ok(), "served while a slow client holds a connection: {nodes:?}");
    let (sent, closed) = until_closed(&mut slow, Duration::from_secs(6)).await.expect("cut off within the timeout");
    assert!(sent.is_empty(), "nothing is answered to half a header: {sent:?}");
    let held = closed - started;
    assert!(held >= Duration::from_millis(1500), "cut at the timeout, not at once: {held:?}");

    // The wait for the next request on a kept-alive connection has the same bound.
    let mut idle = TcpStream::connect(address(master)).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: master\r\n\r\n").await.expect("write");
    let (sent, _) = until_closed(&mut idle, Duration::from_secs(6)).await.expect("an idle connection is closed");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent:?}");

    // A complete header with a body that never comes: 408 at the request timeout.
    let mut slow_body = TcpStream::connect(address(master)).await.expect("connect");
    let started = Instant::now();
    let head = format!(
        "POST /api/v1/nodes HTTP/1.1\r\nHost: master\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
    );
    slow_body.write_all(head.as_bytes()).await.expect("write");
    let (sent, closed) = until_closed(&mut slow_body, Duration::from_secs(8)).await.expect("cut off");
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent:?}");
    assert!(sent.contains(r#"{"error":"#), "a JSON error body: {sent:?}");
    assert!(closed - started >= Duration::from_millis(2500), "at the request timeout: {:?}", closed - started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_free_one() {
    let mut cp = ControlPlane::start("connlimit", ClusterNetwork::default(), 0).await.expect("control plane");
    let mut options = cp.master_options("connlimit-m");
    options.extra_args = vec!["--max-connections=2".into(), "--header-read-timeout=3".into()];
    cp.masters.push(Master::start(cp.dir.clone(), options).await.expect("master"));
    let master = &cp.masters[0];

    let mut holders = vec![half_header(master).await, half_header(master).await];
    // Both are accepted and hold their permits before the third comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut third = TcpStream::connect(address(master)).await.expect("connect: the backlog takes it");
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: master\r\nConnection: close\r\n\r\n").await.expect("write");
    let (sent, answered) = until_closed(&mut third, Duration::from_secs(10)).await.expect("answered in the end");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent:?}");
    let waited = answered - started;
    assert!(waited >= Duration::from_secs(2), "served only once a slow connection was cut: {waited:?}");
    for holder in &mut holders {
        assert!(until_closed(holder, Duration::from_secs(1)).await.is_some(), "the holders were cut off");
    }
}
