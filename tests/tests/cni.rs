//! `sdn-cni` through the real binary and the real agent, driven as a
//! container runtime drives CNI plugins (`sdn_tests::cni`).

use std::sync::Arc;

use sdn_tests::cni::{Attachment, Call, ConfList, Runtime};
use sdn_tests::netns::Netns;
use sdn_tests::node::{Cluster, NodeAgent, unix_http};
use sdn_tests::rundir::RunDir;
use serde_json::{Value, json};

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

async fn cluster(tag: &str, nodes: usize) -> Cluster {
    match Cluster::start(tag, nodes).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster: {err}"),
    }
}

/// The single-plugin configuration of `node`'s agent in CNI `version`.
fn conf(node: &NodeAgent, version: &str) -> Value {
    json!({ "cniVersion": version, "name": "sdn", "type": "sdn-cni", "socket": node.socket })
}

fn pod(dir: &Arc<RunDir>, name: &str) -> Netns {
    Netns::create(dir.clone(), name).unwrap_or_else(|e| panic!("pod namespace {name}: {e}"))
}

fn attachment(id: &str, ns: &Netns, args: &str) -> Attachment {
    Attachment { container_id: id.into(), netns: ns.path(), ifname: "eth0".into(), args: args.into() }
}

fn add(rt: &Runtime, node: &NodeAgent, version: &str, a: &Attachment) -> Result<Value, Call> {
    let call = rt.call("ADD", a, &conf(node, version));
    if call.success { Ok(call.json()) } else { Err(call) }
}

fn sh(ns: &Netns, args: &[&str]) -> String {
    String::from_utf8_lossy(&ns.exec(args).stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_lives_through_add_check_and_del_chained_with_portmap_and_tuning() {
    let mut c = cluster("cni-life", 2).await;
    let dir = c.cp.dir.clone();
    // As an operator whose reference plugins stop at CNI 1.0.0 would run the agent.
    c.nodes[0].extra_args =
        ["--cni-version=1.0.0", "--cni-chain=portmap", "--cni-chain=tuning"].map(String::from).into();
    c.nodes[0].restart().await.expect("restart with a chain");
    let node = &c.nodes[0];
    let rt = Runtime::for_node(node);

    // The agent installed the plugin and the list.
    let mut list = ConfList::read(&node.cni_conflist).expect("installed conflist");
    assert_eq!(list.value["cniVersion"], "1.0.0");
    let types: Vec<&str> =
        list.value["plugins"].as_array().expect("plugins").iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(types, ["sdn-cni", "portmap", "tuning"]);
    assert_eq!(list.value["plugins"][0]["socket"], node.socket.display().to_string());
    let version = rt.raw("sdn-cni", &[("CNI_COMMAND", "VERSION")], "");
    assert!(version.success, "{version}");
    assert_eq!(version.json()["supportedVersions"], json!(VERSIONS));
    // The tuning a cluster admin would add to the list.
    list.value["plugins"][2]["sysctl"] = json!({ "net.core.somaxconn": "512" });

    let web = pod(&dir, &format!("{}-web", node.name));
    let a = attachment("c0ffee01", &web, "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=u1");
    let ports = json!({ "portMappings": [{ "hostPort": 8080, "containerPort": 5201, "protocol": "tcp" }] });
    let result = list.add(&rt, &a, &ports).unwrap_or_else(|call| panic!("ADD: {call}\n{}", c.logs()));

    // The result, as portmap and tuning passed it on.
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    let eth0_mac = sh(&web, &["cat", "/sys/class/net/eth0/address"]);
    assert_eq!(result["interfaces"][1], json!({ "name": "eth0", "mac": eth0_mac, "sandbox": web.path() }), "{result}");
    assert!(result["interfaces"][0]["name"].as_str().is_some_and(|n| n.starts_with("veth")), "{result}");
    let ip = result["ips"][0]["address"].as_str().expect("address").to_owned();
    assert!(ip.starts_with("10.1.0.") && ip.ends_with("/24"), "{result}");
    assert_eq!(result["ips"][0]["gateway"], "10.1.0.1");
    assert_eq!(result["ips"][0]["interface"], 1);
    assert!(result["ips"][0].get("version").is_none(), "no version field after 0.4.0");
    assert_eq!(result["routes"], json!([{ "dst": "0.0.0.0/0", "gw": "10.1.0.1" }]));
    assert_eq!(
        result["dns"],
        json!({
            "nameservers": ["10.1.0.1"],
            "search": ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            "options": ["ndots:5"]
        })
    );
    let pod_ip: std::net::Ipv4Addr = ip.trim_end_matches("/24").parse().expect("ip");
    assert_eq!(sh(&web, &["sysctl", "-n", "net.core.somaxconn"]), "512", "tuning ran in the pod");

    // The same ADD again changes nothing.
    let again = list.add(&rt, &a, &ports).unwrap_or_else(|call| panic!("repeated ADD: {call}"));
    assert_eq!(again["ips"], result["ips"]);
    assert_eq!(again["interfaces"], result["interfaces"]);

    // The pod talks to a pod on the other node, and portmap's host port reaches it.
    let other = c.nodes[1].attach_pod("other").await.expect("pod on node 1");
    assert!(web.ping(other.ip, 2, 56, false), "pod to pod across nodes\n{}", c.logs());
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", web.name(), "iperf3", "-s", "-1", "-p", "5201"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 (Debian package iperf3)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = c.external.exec(&["iperf3", "-c", &node.ip.to_string(), "-p", "8080", "-t", "1", "-J"]);
    let _ = server.wait_with_output();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0) > 100_000,
        "host port 8080 to the pod: {report}"
    );

    // CHECK passes; a removed route makes it fail and say so. Debian 12's portmap (1.1.1) fails
    // CHECK for pods without IPv6 (containernetworking/plugins#819), so it sits this one out.
    let mut list_checked = list.clone();
    if let Some(plugins) = list_checked.value["plugins"].as_array_mut() {
        plugins.retain(|p| p["type"] != "portmap");
    }
    list_checked.check(&rt, &a, &result, &ports).unwrap_or_else(|call| panic!("CHECK: {call}"));
    web.ip(&["route", "del", "default"]).expect("break the pod");
    let broken = list_checked.check(&rt, &a, &result, &ports).expect_err("CHECK of a broken pod");
    assert_eq!(broken.code(), Some(101), "{broken}");
    assert!(broken.msg().contains("no default route via 10.1.0.1"), "{broken}");
    web.ip(&["route", "add", "default", "via", "10.1.0.1"]).expect("repair");

    // Every pod of the cluster, with its node and address.
    let listed = sdn_tests::wait::until(std::time::Duration::from_secs(10), || async {
        let (ok, out, err) = c.cp.masters[0].sdnctl(&["pods", "list"]).map_err(|e| e.to_string())?;
        let row = out.lines().find(|l| l.contains("web-0")).unwrap_or_default().to_owned();
        let want = ["shop", &node.name, &pod_ip.to_string(), "eth0"];
        if ok && want.iter().all(|w| row.contains(w)) && out.contains(&other.ip.to_string()) {
            Ok(out)
        } else {
            Err(format!("{out}{err}"))
        }
    })
    .await;
    assert!(listed.is_ok(), "sdnctl pods list: {listed:?}");

    // DEL undoes it all, and DEL again (or without the namespace) still succeeds.
    list.del(&rt, &a, Some(&result), &ports).unwrap_or_else(|call| panic!("DEL: {call}"));
    assert!(node.attachments().await.is_empty(), "address released");
    node.wait_pod_veths(0).await;
    list.del(&rt, &a, Some(&result), &ports).unwrap_or_else(|call| panic!("second DEL: {call}"));
    let gone = Attachment { netns: "/run/netns/never-was".into(), ..a.clone() };
    list.del(&rt, &gone, None, &ports).unwrap_or_else(|call| panic!("DEL without a namespace: {call}"));
    let unlisted = sdn_tests::wait::until(std::time::Duration::from_secs(10), || async {
        let (_, out, _) = c.cp.masters[0].sdnctl(&["pods", "list", "--node", &node.name]).map_err(|e| e.to_string())?;
        if out.contains("web-0") { Err(out) } else { Ok(()) }
    })
    .await;
    assert!(unlisted.is_ok(), "record left after DEL: {unlisted:?}");

    // Every supported version gets its own result format.
    for (i, version) in VERSIONS.iter().enumerate() {
        let ns = pod(&dir, &format!("{}-v{i}", node.name));
        let a = attachment(&format!("ver{i}"), &ns, "");
        let result = add(&rt, node, version, &a).unwrap_or_else(|call| panic!("ADD {version}: {call}"));
        assert_eq!(result["cniVersion"], *version);
        assert_eq!(result["ips"][0].get("version").is_some(), version.starts_with('0'), "{version}: {result}");
        assert_eq!(result["interfaces"][1].get("mtu").is_some(), *version == "1.1.0", "{version}: {result}");
        assert_eq!(result["dns"]["search"][0], "default.svc.cluster.local", "no namespace is default: {result}");
        let del = rt.call("DEL", &a, &conf(node, version));
        assert!(del.success, "DEL {version}: {del}");
    }

    // DEL and straight away ADD of the same pod, as a runtime recreating a sandbox under its ID
    // does: the ADD waits for the old pair's deletion rather than keep a pair about to go.
    let again = pod(&dir, &format!("{}-again", node.name));
    let b = attachment("again01", &again, "");
    for round in 0..5 {
        add(&rt, node, "1.1.0", &b).unwrap_or_else(|call| panic!("ADD {round}: {call}"));
        // A DEL the runtime repeats queues a second deletion of the same pair.
        for _ in 0..2 {
            let del = rt.call("DEL", &b, &conf(node, "1.1.0"));
            assert!(del.success, "DEL {round}: {del}");
        }
    }
    add(&rt, node, "1.1.0", &b).unwrap_or_else(|call| panic!("last ADD: {call}"));
    // Any deletion still queued would have run by now.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let checked = rt.call("CHECK", &b, &conf(node, "1.1.0"));
    assert!(checked.success, "CHECK after DEL and ADD: {checked}\n{}", c.logs());
    assert!(again.ping(other.ip, 2, 56, false), "the re-added pod reaches the other node\n{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_get_distinct_addresses_and_gc_keeps_only_valid_ones() {
    let c = cluster("cni-many", 1).await;
    let node = &c.nodes[0];
    let rt = Runtime::for_node(node);
    let status = rt.raw("sdn-cni", &[("CNI_COMMAND", "STATUS")], &conf(node, "1.1.0").to_string());
    assert!(status.success, "STATUS of a ready agent: {status}");
    // A pod attached without CNI is not GC's to collect.
    let direct = node.attach_pod("direct").await.expect("direct pod");

    let pods: Vec<(Attachment, Netns)> = (0..50)
        .map(|i| {
            let ns = pod(&c.cp.dir, &format!("{}-p{i}", node.name));
            (attachment(&format!("many{i:02}"), &ns, ""), ns)
        })
        .collect();
    let results: Vec<Result<Value, Call>> = std::thread::scope(|s| {
        let handles: Vec<_> = pods.iter().map(|(a, _)| s.spawn(|| add(&rt, node, "1.1.0", a))).collect();
        handles.into_iter().map(|h| h.join().expect("ADD thread")).collect()
    });
    let mut ips = std::collections::BTreeSet::new();
    for (result, (a, ns)) in results.iter().zip(&pods) {
        let result = result.as_ref().unwrap_or_else(|call| panic!("ADD {}: {call}\n{}", a.container_id, c.logs()));
        let ip = result["ips"][0]["address"].as_str().expect("address").to_owned();
        assert!(sh(ns, &["ip", "-o", "-4", "addr", "show", "eth0"]).contains(&ip), "{ip} on eth0");
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 50, "50 distinct addresses");
    assert!(pods[7].1.ping(direct.ip, 1, 56, false), "a CNI pod reaches another pod");

    // GC with ten valid attachments releases the other forty, and nothing else.
    let list = ConfList::new(
        json!({ "cniVersion": "1.1.0", "name": "sdn", "plugins": [{ "type": "sdn-cni", "socket": node.socket }] }),
    );
    let valid: Vec<(&str, &str)> = pods[..10].iter().map(|(a, _)| (a.container_id.as_str(), "eth0")).collect();
    list.gc(&rt, &valid).unwrap_or_else(|call| panic!("GC: {call}"));
    let left: Vec<String> =
        node.attachments().await.iter().filter_map(|p| p["id"].as_str().map(String::from)).collect();
    let mut expected: Vec<String> = pods[..10].iter().map(|(a, _)| a.container_id.clone()).collect();
    expected.push("direct".into());
    let mut left_sorted = left.clone();
    left_sorted.sort();
    expected.sort();
    assert_eq!(left_sorted, expected);
    node.wait_pod_veths(11).await;
    assert!(pods[3].1.ping(direct.ip, 1, 56, false), "a kept pod still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_an_absent_agent_and_a_restart_leave_nothing_half_made() {
    // /29 host subnets: five pod addresses besides the gateway.
    let network = sdn_cluster::ClusterNetwork { host_subnet_length: 3, ..Default::default() };
    let mut c = Cluster::start_with_network("cni-edge", 1, network).await.expect("cluster");
    let dir = c.cp.dir.clone();
    let rt = Runtime::for_node(&c.nodes[0]);
    let pods: Vec<(Attachment, Netns)> = (0..6)
        .map(|i| {
            let ns = pod(&dir, &format!("{}-e{i}", c.nodes[0].name));
            (attachment(&format!("edge{i}"), &ns, ""), ns)
        })
        .collect();
    for (a, _) in &pods[..5] {
        add(&rt, &c.nodes[0], "1.1.0", a).unwrap_or_else(|call| panic!("ADD {}: {call}", a.container_id));
    }
    let full = add(&rt, &c.nodes[0], "1.1.0", &pods[5].0).expect_err("a sixth pod in a /29");
    assert_eq!(full.code(), Some(100), "{full}");
    assert!(full.msg().contains("no free address"), "{full}");
    c.nodes[0].wait_pod_veths(5).await;
    assert_eq!(sh(&pods[5].1, &["ip", "-o", "link", "show"]).lines().count(), 1, "only lo in the refused pod");
    let del = rt.call("DEL", &pods[0].0, &conf(&c.nodes[0], "1.1.0"));
    assert!(del.success, "{del}");
    add(&rt, &c.nodes[0], "1.1.0", &pods[5].0).unwrap_or_else(|call| panic!("ADD after a DEL: {call}"));

    // The agent down: try again later, and nothing made.
    c.nodes[0].kill();
    let fresh = pod(&dir, &format!("{}-late", c.nodes[0].name));
    let late = attachment("late", &fresh, "");
    let refused = add(&rt, &c.nodes[0], "1.1.0", &late).expect_err("ADD with the agent down");
    assert_eq!(refused.code(), Some(11), "{refused}");
    assert!(refused.msg().contains("not reachable"), "{refused}");
    let status = rt.raw("sdn-cni", &[("CNI_COMMAND", "STATUS")], &conf(&c.nodes[0], "1.1.0").to_string());
    assert_eq!(status.code(), Some(50), "{status}");
    c.nodes[0].wait_pod_veths(5).await;
    assert_eq!(sh(&fresh, &["ip", "-o", "link", "show"]).lines().count(), 1, "nothing in the pod");

    // Restarted between ADD and DEL: CHECK and DEL find the pods it had. A pod veth on br0 that
    // no record names (its deletion lost to a crash after the DEL was answered) goes.
    for args in [
        &["ip", "link", "add", "veth0badf00d", "type", "veth", "peer", "name", "lost-peer"][..],
        &["ip", "link", "set", "veth0badf00d", "master", "br0"],
    ] {
        assert!(c.nodes[0].ns.exec(args).status.success(), "{args:?}");
    }
    c.nodes[0].restart().await.expect("restart");
    let node = &c.nodes[0];
    let left = node.wait_pod_veths(5).await;
    assert!(!left.contains(&"veth0badf00d".to_owned()), "a veth no pod owns survived the restart: {left:?}");
    let check = rt.call("CHECK", &pods[1].0, &conf(node, "1.1.0"));
    assert!(check.success, "CHECK after a restart: {check}");
    let del = rt.call("DEL", &pods[1].0, &conf(node, "1.1.0"));
    assert!(del.success, "DEL after a restart: {del}");
    assert_eq!(node.attachments().await.len(), 4);
    let unknown = rt.call("CHECK", &pods[1].0, &conf(node, "1.1.0"));
    assert_eq!(unknown.code(), Some(3), "CHECK of a deleted pod: {unknown}");
    add(&rt, node, "1.1.0", &late).unwrap_or_else(|call| panic!("ADD once the agent is back: {call}"));
}

/// The addresses of the node's pod records and of its local flow entries.
async fn records_and_flows(
    node: &NodeAgent,
) -> (std::collections::BTreeSet<String>, std::collections::BTreeSet<String>) {
    let records = node.attachments().await.iter().filter_map(|p| p["ip"].as_str().map(String::from)).collect();
    let flows = node.command("flows").unwrap_or_else(|err| panic!("flows: {err}"));
    let local = flows
        .lines()
        .filter(|l| l.contains("table=local"))
        .filter_map(|l| l.split("nw_dst=").nth(1)?.split_whitespace().next().map(String::from))
        .collect();
    (records, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_stay_whole_or_gone_through_racing_requests_hung_up_clients_and_a_stop() {
    let mut c = cluster("cni-race", 1).await;
    let node = &c.nodes[0];
    // ADD and DEL of one pod sent together: whichever the agent takes first, the pod ends up
    // either attached or gone, never with a flow entry for an address it no longer holds.
    // Their namespaces outlive the loop: a pod whose namespace goes is detached by the agent, which
    // would change the records between reading them and reading the flows.
    let mut namespaces = Vec::new();
    for i in 0..10 {
        let ns = pod(&c.cp.dir, &format!("{}-r{i}", node.name));
        let body = format!(r#"{{"id":"race{i}","netns":"{}"}}"#, ns.path().display());
        let path = format!("/v1/pods/race{i}");
        let (added, deleted) = tokio::join!(
            unix_http(&node.socket, "POST", "/v1/pods", Some(&body)),
            unix_http(&node.socket, "DELETE", &path, None),
        );
        assert_eq!(added.map(|(status, _)| status), Ok(200), "ADD race{i}");
        assert_eq!(deleted.map(|(status, _)| status), Ok(200), "DEL race{i}");
        let (records, local) = records_and_flows(node).await;
        assert_eq!(records, local, "race{i}: pod records and local flow entries differ\n{}", c.logs());
        let (checked, _) =
            unix_http(&node.socket, "GET", &format!("/v1/pods/race{i}/check"), None).await.expect("CHECK");
        assert!(matches!(checked, 200 | 404), "race{i}: CHECK of a pod attached or gone: {checked}");
        namespaces.push(ns);
    }

    // A client that hangs up right after sending its ADD (a runtime's timeout) does not cut the
    // ADD short: the pod comes up whole.
    let ns = pod(&c.cp.dir, &format!("{}-hangup", node.name));
    let body = format!(r#"{{"id":"hangup","netns":"{}"}}"#, ns.path().display());
    let request = format!(
        "POST /v1/pods HTTP/1.1\r\nHost: sdn\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::os::unix::net::UnixStream::connect(&node.socket).expect("pod API socket");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("sending ADD");
    drop(stream);
    let whole = sdn_tests::wait::until(std::time::Duration::from_secs(10), || async {
        match unix_http(&node.socket, "GET", "/v1/pods/hangup/check", None).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status}: {body}")),
        }
    })
    .await;
    whole.unwrap_or_else(|err| panic!("the ADD whose client hung up: {err}\n{}", c.logs()));
    let (records, local) = records_and_flows(node).await;
    assert_eq!(records, local, "pod records and local flow entries differ");

    // Stopped right after DELs were answered, the agent first runs the veth deletions they
    // queued (each waits out RCU grace periods, so eight DELs answer long before they are done).
    let before = node.pod_veths();
    let mut stopping = Vec::new();
    for i in 0..8 {
        let pod = node.attach_pod(&format!("stop{i}")).await.unwrap_or_else(|err| panic!("pod stop{i}: {err}"));
        stopping.push(pod);
    }
    for pod in &stopping {
        node.detach_pod(pod).await.unwrap_or_else(|err| panic!("DEL {}: {err}", pod.id));
    }
    let stopped = c.nodes[0].stop().await.unwrap_or_else(|err| panic!("stopping: {err}"));
    assert!(stopped.success(), "the agent's exit on SIGTERM: {stopped}\n{}", c.logs());
    assert_eq!(c.nodes[0].pod_veths(), before, "veths of answered DELs outlived the agent");
}

/// One malformed invocation: its expected code and a word the message must hold.
struct Bad {
    what: &'static str,
    env: Vec<(&'static str, String)>,
    stdin: String,
    code: u64,
    says: &'static str,
}

#[test]
fn malformed_input_gets_a_cni_error_naming_what_is_wrong() {
    let dir = Arc::new(RunDir::new("cni-bad").expect("run dir"));
    let host = Netns::create(dir.clone(), &format!("cni-bad-{}-host", std::process::id())).expect("namespace");
    let target = Netns::create(dir.clone(), &format!("cni-bad-{}-pod", std::process::id())).expect("namespace");
    let bin = sdn_tests::bins::project("sdn-cni").expect("sdn-cni built");
    let rt = Runtime::new(host.name(), vec![bin.parent().expect("bin dir").to_owned()]);
    let socket = dir.path().join("no-agent.sock");
    let good = json!({ "cniVersion": "1.1.0", "name": "sdn", "type": "sdn-cni", "socket": socket }).to_string();
    let netns = target.path().display().to_string();
    let env = |command: &str, skip: &str| -> Vec<(&'static str, String)> {
        [
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", "c1".into()),
            ("CNI_NETNS", netns.clone()),
            ("CNI_IFNAME", "eth0".into()),
        ]
        .into_iter()
        .filter(|(k, _)| *k != skip)
        .collect()
    };
    let with = |mut e: Vec<(&'static str, String)>, k: &'static str, v: &str| {
        e.retain(|(key, _)| *key != k);
        e.push((k, v.to_owned()));
        e
    };
    let conf_with = |key: &str, value: Value| {
        let mut c: Value = serde_json::from_str(&good).expect("json");
        c[key] = value;
        c.to_string()
    };
    let cases = vec![
        Bad { what: "not JSON", env: env("ADD", ""), stdin: "{\"cniVersion\":".into(), code: 6, says: "decode" },
        Bad {
            what: "unknown field",
            env: env("ADD", ""),
            stdin: conf_with("ipam", json!({ "type": "host-local" })),
            code: 2,
            says: "ipam",
        },
        Bad {
            what: "no cniVersion",
            env: env("ADD", ""),
            stdin: json!({ "name": "sdn", "type": "sdn-cni" }).to_string(),
            code: 7,
            says: "cniVersion",
        },
        Bad {
            what: "old version",
            env: env("ADD", ""),
            stdin: conf_with("cniVersion", json!("0.2.0")),
            code: 1,
            says: "0.2.0",
        },
        Bad { what: "bad name", env: env("ADD", ""), stdin: conf_with("name", json!("-x")), code: 7, says: "name" },
        Bad { what: "no command", env: env("ADD", "CNI_COMMAND"), stdin: good.clone(), code: 4, says: "CNI_COMMAND" },
        Bad { what: "unknown command", env: env("FROB", ""), stdin: good.clone(), code: 4, says: "FROB" },
        Bad {
            what: "no container",
            env: env("ADD", "CNI_CONTAINERID"),
            stdin: good.clone(),
            code: 4,
            says: "CNI_CONTAINERID",
        },
        Bad { what: "no netns", env: env("ADD", "CNI_NETNS"), stdin: good.clone(), code: 4, says: "CNI_NETNS" },
        Bad { what: "no ifname", env: env("ADD", "CNI_IFNAME"), stdin: good.clone(), code: 4, says: "CNI_IFNAME" },
        Bad {
            what: "bad ifname",
            env: with(env("ADD", ""), "CNI_IFNAME", "eth0/x"),
            stdin: good.clone(),
            code: 4,
            says: "CNI_IFNAME",
        },
        Bad {
            what: "missing netns",
            env: with(env("ADD", ""), "CNI_NETNS", "/run/netns/none-such"),
            stdin: good.clone(),
            code: 3,
            says: "none-such",
        },
        Bad {
            what: "unknown arg",
            env: with(env("ADD", ""), "CNI_ARGS", "FOO=1"),
            stdin: good.clone(),
            code: 4,
            says: "FOO",
        },
        Bad {
            what: "bad namespace",
            env: with(env("ADD", ""), "CNI_ARGS", "K8S_POD_NAMESPACE=Shop_1"),
            stdin: good.clone(),
            code: 4,
            says: "K8S_POD_NAMESPACE",
        },
        Bad {
            what: "CHECK too old",
            env: env("CHECK", ""),
            stdin: conf_with("cniVersion", json!("0.3.1")),
            code: 1,
            says: "CHECK",
        },
        Bad {
            what: "GC too old",
            env: env("GC", ""),
            stdin: conf_with("cniVersion", json!("1.0.0")),
            code: 1,
            says: "GC",
        },
        Bad {
            what: "GC without the attachments to keep",
            env: env("GC", ""),
            stdin: good.clone(),
            code: 7,
            says: "cni.dev/valid-attachments",
        },
        Bad { what: "no agent", env: env("ADD", ""), stdin: good.clone(), code: 11, says: "not reachable" },
        Bad { what: "no agent, STATUS", env: env("STATUS", ""), stdin: good.clone(), code: 50, says: "not reachable" },
    ];
    let mut failures = Vec::new();
    for bad in &cases {
        let env: Vec<(&str, &str)> = bad.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let call = rt.raw("sdn-cni", &env, &bad.stdin);
        let body = call.json();
        let ok = !call.success
            && body["code"].as_u64() == Some(bad.code)
            && body["cniVersion"].is_string()
            && body["msg"].as_str().is_some_and(|m| {
                m.contains(bad.says) || body["details"].as_str().is_some_and(|d| d.contains(bad.says))
            });
        if !ok {
            failures.push(format!("{}: wanted code {} naming {:?}, got {call}", bad.what, bad.code, bad.says));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(sh(&target, &["ip", "-o", "link", "show"]).lines().count(), 1, "nothing made in the pod");
}
