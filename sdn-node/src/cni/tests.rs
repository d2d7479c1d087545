//! Every path of [`super::run`], against an in-memory pod API.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::spec::Code;
use super::{Outcome, PodApi, run};
use crate::podapi::client::ClientError;
use crate::podapi::{
    ApiError, AttachRequest, Attachment, AttachmentKey, DEFAULT_SOCKET, Detached, Dns, ErrorKind, GcRequest,
    GcResponse, Status,
};

/// A netns path that exists on any Linux host, and one that does not.
const NETNS: &str = "/proc/self/ns/net";
const GONE: &str = "/nonexistent/sdn-cni-test/netns";

#[derive(Clone, Copy)]
enum Fail {
    Unreachable,
    Api(ErrorKind),
    Protocol,
}

#[derive(Default)]
struct Fake {
    fail: Option<Fail>,
    status: Option<Status>,
    pods: Mutex<HashMap<(String, String), Attachment>>,
    calls: Mutex<Vec<String>>,
    attached: Mutex<Vec<AttachRequest>>,
    collected: Mutex<Vec<GcRequest>>,
    socket: Mutex<Option<PathBuf>>,
}

fn attachment(id: &str, ifname: &str, netns: &Path) -> Attachment {
    Attachment {
        id: id.into(),
        ifname: ifname.into(),
        netns: netns.into(),
        network: Some("sdn".into()),
        namespace: None,
        name: None,
        ip: Ipv4Addr::new(10, 1, 0, 5),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        mtu: 1450,
        mac: "0a:58:0a:01:00:05".into(),
        host_veth: "veth1a2b3c4d".into(),
        host_mac: "ee:ee:ee:00:00:01".into(),
        dns: Dns { nameservers: vec![Ipv4Addr::new(10, 96, 0, 10)], domain: "cluster.local".into() },
    }
}

impl Fake {
    fn failing(fail: Fail) -> Self {
        Self { fail: Some(fail), ..Self::default() }
    }

    fn with_pod(id: &str, ifname: &str) -> Self {
        let fake = Self::default();
        fake.pods.lock().unwrap().insert((id.into(), ifname.into()), attachment(id, ifname, Path::new(NETNS)));
        fake
    }

    fn record(&self, call: String) -> Result<(), ClientError> {
        self.calls.lock().unwrap().push(call);
        match self.fail {
            None => Ok(()),
            Some(Fail::Unreachable) => Err(ClientError::Unreachable {
                socket: PathBuf::from("/run/test.sock"),
                reason: "No such file or directory (os error 2)".into(),
            }),
            Some(Fail::Api(code)) => Err(ClientError::Api(ApiError { error: format!("agent says {code:?}"), code })),
            Some(Fail::Protocol) => {
                Err(ClientError::Protocol { status: StatusCode::NOT_FOUND, detail: "no such route".into() })
            }
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl PodApi for Fake {
    fn attach(&self, request: &AttachRequest) -> impl Future<Output = Result<Attachment, ClientError>> + Send {
        let result = self.record(format!("attach {} {}", request.id, request.ifname)).map(|()| {
            self.attached.lock().unwrap().push(request.clone());
            attachment(&request.id, &request.ifname, &request.netns)
        });
        ready(result)
    }

    fn detach(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Detached, ClientError>> + Send {
        let result = self.record(format!("detach {id} {ifname}")).map(|()| {
            let released = self.pods.lock().unwrap().remove(&(id.into(), ifname.into())).map(|a| a.ip);
            Detached { id: id.into(), ifname: ifname.into(), released }
        });
        ready(result)
    }

    fn check(&self, id: &str, ifname: &str) -> impl Future<Output = Result<Attachment, ClientError>> + Send {
        let result = self.record(format!("check {id} {ifname}")).and_then(|()| {
            self.pods.lock().unwrap().get(&(id.into(), ifname.into())).cloned().ok_or_else(|| {
                ClientError::Api(ApiError { error: format!("no attachment {id}/{ifname}"), code: ErrorKind::Unknown })
            })
        });
        ready(result)
    }

    fn gc(&self, request: &GcRequest) -> impl Future<Output = Result<GcResponse, ClientError>> + Send {
        let result = self.record(format!("gc {}", request.network)).map(|()| {
            self.collected.lock().unwrap().push(request.clone());
            GcResponse { released: Vec::new() }
        });
        ready(result)
    }

    fn status(&self) -> impl Future<Output = Result<Status, ClientError>> + Send {
        let result =
            self.record("status".into()).map(|()| self.status.clone().unwrap_or(Status { ready: true, reason: None }));
        ready(result)
    }
}

/// The environment of a Kubernetes pod's `command`.
fn env(command: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn with(mut env: HashMap<String, String>, key: &str, value: Option<&str>) -> HashMap<String, String> {
    match value {
        Some(value) => env.insert(key.into(), value.into()),
        None => env.remove(key),
    };
    env
}

fn conf(version: &str) -> Value {
    json!({ "cniVersion": version, "name": "sdn", "type": "sdn-cni" })
}

fn conf_with(version: &str, key: &str, value: Value) -> Value {
    let mut conf = conf(version);
    conf[key] = value;
    conf
}

async fn invoke(fake: &Fake, env: &HashMap<String, String>, stdin: &[u8]) -> Outcome {
    run(env, Ok(stdin), |socket| {
        *fake.socket.lock().unwrap() = Some(socket.to_owned());
        fake
    })
    .await
}

async fn call(fake: &Fake, env: &HashMap<String, String>, conf: &Value) -> Outcome {
    invoke(fake, env, conf.to_string().as_bytes()).await
}

/// The error result of a failed outcome: its code, message and cniVersion.
fn error_of(outcome: &Outcome) -> (u64, String, String) {
    assert_eq!(outcome.code, 1, "expected a failure: {}", outcome.stdout);
    let value: Value = serde_json::from_str(&outcome.stdout).unwrap();
    (
        value["code"].as_u64().unwrap(),
        value["msg"].as_str().unwrap().to_owned(),
        value["cniVersion"].as_str().unwrap().to_owned(),
    )
}

fn success(outcome: &Outcome) -> Value {
    assert_eq!(outcome.code, 0, "expected success: {}", outcome.stdout);
    serde_json::from_str(&outcome.stdout).unwrap()
}

fn silent_success(outcome: &Outcome) {
    assert_eq!(outcome, &Outcome { code: 0, stdout: String::new() });
}

#[test]
fn codes_are_the_documented_numbers() {
    let table = [
        (Code::IncompatibleVersion, 1),
        (Code::UnsupportedField, 2),
        (Code::UnknownContainer, 3),
        (Code::InvalidEnvironment, 4),
        (Code::IoFailure, 5),
        (Code::DecodingFailure, 6),
        (Code::InvalidConfig, 7),
        (Code::TryAgainLater, 11),
        (Code::NotAvailable, 50),
        (Code::AddressesExhausted, 100),
        (Code::Differs, 101),
        (Code::AgentFailed, 102),
    ];
    for (code, number) in table {
        assert_eq!(code as u32, number, "{code:?}");
    }
}

#[tokio::test]
async fn version_answers_whatever_stdin_holds() {
    let fake = Fake::default();
    let expected = json!({ "cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
    for stdin in [&b""[..], br#"{"cniVersion": "0.3.1"}"#, b"not json"] {
        assert_eq!(success(&invoke(&fake, &env("VERSION"), stdin).await), expected);
    }
    let unreadable = run(&env("VERSION"), Err(std::io::Error::other("EIO")), |_| &fake).await;
    assert_eq!(success(&unreadable), expected);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn a_missing_or_unknown_command_is_code_4() {
    let fake = Fake::default();
    let (code, msg, version) = error_of(&call(&fake, &with(env("ADD"), "CNI_COMMAND", None), &conf("0.4.0")).await);
    assert_eq!((code, version.as_str()), (4, "0.4.0"));
    assert!(msg.contains("CNI_COMMAND is missing"), "{msg}");
    let (code, msg, version) = error_of(&invoke(&fake, &env("UPDATE"), b"").await);
    assert_eq!((code, version.as_str()), (4, "1.1.0"));
    assert!(msg.contains("CNI_COMMAND \"UPDATE\""), "{msg}");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn unreadable_stdin_is_code_5() {
    let fake = Fake::default();
    let outcome = run(&env("ADD"), Err(std::io::Error::other("EIO")), |_| &fake).await;
    let (code, msg, version) = error_of(&outcome);
    assert_eq!((code, version.as_str()), (5, "1.1.0"));
    assert!(msg.contains("stdin") && msg.contains("EIO"), "{msg}");
}

#[tokio::test]
async fn a_configuration_that_is_not_a_json_object_is_code_6() {
    let fake = Fake::default();
    for stdin in [&b""[..], b"{\"cniVersion\": ", b"[1, 2]"] {
        let (code, msg, version) = error_of(&invoke(&fake, &env("ADD"), stdin).await);
        assert_eq!((code, version.as_str()), (6, "1.1.0"));
        assert!(msg.starts_with("failed to decode the network configuration: "), "{msg}");
    }
}

#[tokio::test]
async fn cni_version_missing_is_7_and_unsupported_is_1() {
    let fake = Fake::default();
    let (code, msg, _) = error_of(&call(&fake, &env("ADD"), &json!({ "name": "sdn" })).await);
    assert_eq!(code, 7);
    assert!(msg.contains("cniVersion is missing"), "{msg}");
    let (code, _, _) = error_of(&call(&fake, &env("ADD"), &conf_with("1.0.0", "cniVersion", json!(1))).await);
    assert_eq!(code, 7);
    let (code, msg, version) = error_of(&call(&fake, &env("ADD"), &conf("0.2.0")).await);
    assert_eq!((code, version.as_str()), (1, "1.1.0"));
    assert!(msg.contains("\"0.2.0\"") && msg.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"), "{msg}");
}

#[tokio::test]
async fn unknown_fields_are_code_2_with_key_value_and_hint() {
    let fake = Fake::default();
    let ipam = conf_with("0.4.0", "ipam", json!({ "type": "host-local" }));
    let outcome = call(&fake, &env("ADD"), &ipam).await;
    let (code, msg, version) = error_of(&outcome);
    assert_eq!((code, version.as_str()), (2, "0.4.0"));
    assert_eq!(msg, r#"unsupported field "ipam": {"type":"host-local"}"#);
    let details: Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert!(details["details"].as_str().unwrap().contains("from the sdn-node agent"), "{}", outcome.stdout);

    let mut both = conf_with("1.1.0", "ipMasq", json!(true));
    both["bridge"] = json!("cni0");
    let outcome = call(&fake, &env("ADD"), &both).await;
    let (code, msg, _) = error_of(&outcome);
    assert_eq!(code, 2);
    assert_eq!(msg, r#"unsupported fields "bridge": "cni0", "ipMasq": true"#);
    assert!(outcome.stdout.contains("masquerades"), "{}", outcome.stdout);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn known_fields_of_the_wrong_type_or_value_are_code_7() {
    let fake = Fake::default();
    let cases = [
        (conf_with("1.0.0", "name", json!(5)), "\"name\""),
        (json!({ "cniVersion": "1.0.0", "type": "sdn-cni" }), "name is missing"),
        (conf_with("1.0.0", "name", json!("-sdn")), "\"-sdn\""),
        (conf_with("1.0.0", "name", json!("sdn net")), "\"sdn net\""),
        (conf_with("1.0.0", "socket", json!("run/sdn.sock")), "socket"),
        (conf_with("1.0.0", "socket", json!(["/run/sdn.sock"])), "\"socket\""),
        (conf_with("1.0.0", "prevResult", json!("x")), "\"prevResult\""),
        (conf_with("1.0.0", "runtimeConfig", json!([])), "\"runtimeConfig\""),
        (conf_with("1.0.0", "type", json!(false)), "\"type\""),
        (conf_with("1.1.0", "cni.dev/valid-attachments", json!([{ "ifname": "eth0" }])), "valid-attachments"),
    ];
    for (conf, named) in cases {
        let (code, msg, version) = error_of(&call(&fake, &env("ADD"), &conf).await);
        assert_eq!(code, 7, "{conf}: {msg}");
        assert!(msg.contains(named), "{conf}: {msg}");
        assert_eq!(version, conf["cniVersion"].as_str().unwrap());
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn nulls_are_absent_fields() {
    let fake = Fake::default();
    let mut conf = conf_with("1.1.0", "prevResult", Value::Null);
    conf["socket"] = Value::Null;
    success(&call(&fake, &env("ADD"), &conf).await);
    assert_eq!(fake.socket.lock().unwrap().as_deref(), Some(Path::new(DEFAULT_SOCKET)));
}

#[tokio::test]
async fn the_socket_comes_from_the_configuration() {
    let fake = Fake::default();
    silent_success(&call(&fake, &env("DEL"), &conf_with("1.0.0", "socket", json!("/run/other/node.sock"))).await);
    assert_eq!(fake.socket.lock().unwrap().as_deref(), Some(Path::new("/run/other/node.sock")));
}

#[tokio::test]
async fn add_attaches_and_prints_a_1_1_0_result() {
    let fake = Fake::default();
    let mut conf = conf_with("1.1.0", "prevResult", json!({ "cniVersion": "1.1.0", "interfaces": [] }));
    conf["runtimeConfig"] = json!({ "portMappings": [] });
    conf["capabilities"] = json!({ "portMappings": true });
    conf["args"] = json!({ "cni": {} });
    conf["dns"] = json!({ "nameservers": ["1.1.1.1"] });
    let result = success(&call(&fake, &env("ADD"), &conf).await);
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                { "name": "veth1a2b3c4d", "mac": "ee:ee:ee:00:00:01" },
                { "name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": NETNS, "mtu": 1450 },
            ],
            "ips": [{ "address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1 }],
            "routes": [{ "dst": "0.0.0.0/0", "gw": "10.1.0.1" }],
            "dns": {
                "nameservers": ["10.96.0.10"],
                "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
                "options": ["ndots:5"],
            },
        })
    );
    assert_eq!(
        *fake.attached.lock().unwrap(),
        [AttachRequest {
            id: "abc123".into(),
            netns: NETNS.into(),
            ifname: "eth0".into(),
            network: Some("sdn".into()),
            namespace: Some("default".into()),
            name: Some("web-0".into()),
        }]
    );
    assert_eq!(fake.socket.lock().unwrap().as_deref(), Some(Path::new(DEFAULT_SOCKET)));
}

#[tokio::test]
async fn add_results_follow_the_configuration_version() {
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let fake = Fake::default();
        let result = success(&call(&fake, &env("ADD"), &conf(version)).await);
        assert_eq!(result["cniVersion"], version);
        let ip = &result["ips"][0];
        let expected_version = if version.starts_with("0.") { json!("4") } else { Value::Null };
        assert_eq!(ip["version"], expected_version, "{version}");
        assert_eq!(ip["address"], "10.1.0.5/24");
        assert_eq!(result["interfaces"][1]["mtu"], Value::Null, "{version}: mtu is 1.1.0's");
        assert_eq!(result["interfaces"][1]["sandbox"], NETNS);
    }
}

#[tokio::test]
async fn add_without_a_namespace_gives_the_default_namespaces_search_list() {
    // podman passes only K8S_POD_NAME; ctr passes no CNI_ARGS at all.
    for args in [None, Some("IgnoreUnknown=1;K8S_POD_NAME=romantic_vaughan")] {
        let fake = Fake::default();
        let result = success(&call(&fake, &with(env("ADD"), "CNI_ARGS", args), &conf("1.0.0")).await);
        assert_eq!(
            result["dns"],
            json!({
                "nameservers": ["10.96.0.10"],
                "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
                "options": ["ndots:5"],
            }),
            "{args:?}"
        );
        let request = &fake.attached.lock().unwrap()[0];
        assert_eq!(request.namespace, None, "the record keeps what the runtime said");
        assert_eq!(request.name.as_deref(), args.map(|_| "romantic_vaughan"));
    }
}

#[tokio::test]
async fn add_with_a_missing_netns_is_code_3_and_asks_nothing() {
    let fake = Fake::default();
    let (code, msg, version) = error_of(&call(&fake, &with(env("ADD"), "CNI_NETNS", Some(GONE)), &conf("1.0.0")).await);
    assert_eq!((code, version.as_str()), (3, "1.0.0"));
    assert!(msg.contains(GONE), "{msg}");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn missing_environment_is_code_4_naming_every_variable() {
    let fake = Fake::default();
    let mut bare = env("ADD");
    for key in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        bare.remove(key);
    }
    let (code, msg, version) = error_of(&call(&fake, &bare, &conf("0.3.1")).await);
    assert_eq!((code, version.as_str()), (4, "0.3.1"));
    for key in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        assert!(msg.contains(key), "{msg}");
    }
    let (code, msg, _) = error_of(&call(&fake, &with(env("CHECK"), "CNI_NETNS", Some("")), &conf("1.0.0")).await);
    assert_eq!(code, 4);
    assert!(msg.contains("CNI_NETNS is missing"), "{msg}");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn invalid_environment_is_code_4_naming_the_variable() {
    let fake = Fake::default();
    let long_id = "a".repeat(129);
    let cases = [
        ("CNI_CONTAINERID", long_id.as_str()),
        ("CNI_CONTAINERID", "abc/123"),
        ("CNI_CONTAINERID", ".."),
        ("CNI_CONTAINERID", "-abc"),
        ("CNI_IFNAME", "eth0123456789012"),
        ("CNI_IFNAME", "eth 0"),
        ("CNI_IFNAME", ".."),
        ("CNI_NETNS", "proc/1/ns/net"),
        ("CNI_NETNS", "/run/netns/\u{FFFD}"),
    ];
    for (key, value) in cases {
        let (code, msg, _) = error_of(&call(&fake, &with(env("ADD"), key, Some(value)), &conf("1.0.0")).await);
        assert_eq!(code, 4, "{key}={value}: {msg}");
        assert!(msg.contains(key), "{key}={value}: {msg}");
    }
    // The limits themselves are fine.
    let id = "a".repeat(128);
    let fine = with(with(env("ADD"), "CNI_CONTAINERID", Some(&id)), "CNI_IFNAME", Some("eth_0.12345-789"));
    success(&call(&fake, &fine, &conf("1.0.0")).await);
}

#[tokio::test]
async fn cni_args_are_checked() {
    let fake = Fake::default();
    let refused = [
        ("K8S_POD_NAMESPACE=default;FOO=bar", "FOO"),
        ("IgnoreUnknown=0;FOO=bar", "FOO"),
        ("IgnoreUnknown=maybe", "IgnoreUnknown"),
        ("K8S_POD_NAMESPACE", "K8S_POD_NAMESPACE"),
        ("K8S_POD_NAMESPACE=Default", "K8S_POD_NAMESPACE"),
        ("K8S_POD_NAMESPACE=-default", "K8S_POD_NAMESPACE"),
        ("K8S_POD_NAMESPACE=default-", "K8S_POD_NAMESPACE"),
        ("K8S_POD_NAMESPACE=", "K8S_POD_NAMESPACE"),
        ("K8S_POD_NAMESPACE=my.ns", "K8S_POD_NAMESPACE"),
        ("K8S_POD_NAME=web\n0", "K8S_POD_NAME"),
        ("K8S_POD_NAME=web\u{1b}[2J", "K8S_POD_NAME"),
        ("K8S_POD_NAME=web\u{FFFD}", "K8S_POD_NAME"),
        ("K8S_POD_NAME=a;K8S_POD_NAME=b", "K8S_POD_NAME"),
    ];
    for (args, named) in refused {
        let (code, msg, _) = error_of(&call(&fake, &with(env("ADD"), "CNI_ARGS", Some(args)), &conf("1.0.0")).await);
        assert_eq!(code, 4, "{args}: {msg}");
        assert!(msg.contains("CNI_ARGS") && msg.contains(named), "{args}: {msg}");
    }
    let too_long_ns = format!("K8S_POD_NAMESPACE={}", "n".repeat(64));
    let too_long_name = format!("K8S_POD_NAME={}", "n".repeat(254));
    for args in [too_long_ns, too_long_name] {
        let (code, _, _) = error_of(&call(&fake, &with(env("ADD"), "CNI_ARGS", Some(&args)), &conf("1.0.0")).await);
        assert_eq!(code, 4, "{args}");
    }
    let accepted = [
        "FOO=bar;IgnoreUnknown=TRUE".to_owned(),
        "IgnoreUnknown=1;FOO=bar=baz;".to_owned(),
        "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-5d78c9869d-abc12.x;K8S_POD_UID=1-2".to_owned(),
        format!(
            "K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
            "n".repeat(63),
            vec!["a".repeat(63); 4].join(".")[..253].to_owned()
        ),
        String::new(),
        // What runtimes pass: podman's generated and given container names, ctr's IDs.
        "IgnoreUnknown=1;K8S_POD_NAME=romantic_vaughan".to_owned(),
        "IgnoreUnknown=1;K8S_POD_NAME=Web_0.Front-End".to_owned(),
        "K8S_POD_NAME=default/web".to_owned(),
        format!("K8S_POD_NAME={}", "é".repeat(126)),
    ];
    for args in accepted {
        success(&call(&fake, &with(env("ADD"), "CNI_ARGS", Some(&args)), &conf("1.0.0")).await);
    }
    async fn named(args: &str) -> Option<String> {
        let fake = Fake::default();
        success(&call(&fake, &with(env("ADD"), "CNI_ARGS", Some(args)), &conf("1.0.0")).await);
        fake.attached.lock().unwrap()[0].name.clone()
    }
    assert_eq!(named("K8S_POD_NAME=Web_0").await.as_deref(), Some("Web_0"), "passed on as given");
    assert_eq!(named("K8S_POD_NAME=").await, None, "an empty name is none");
}

#[tokio::test]
async fn agent_errors_map_to_cni_codes() {
    let cases = [
        (Fail::Api(ErrorKind::Invalid), 4),
        (Fail::Api(ErrorKind::Exhausted), 100),
        (Fail::Api(ErrorKind::Unknown), 3),
        (Fail::Api(ErrorKind::Differs), 101),
        (Fail::Api(ErrorKind::Internal), 102),
        (Fail::Protocol, 102),
        (Fail::Unreachable, 11),
    ];
    for (fail, expected) in cases {
        let fake = Fake::failing(fail);
        let (code, msg, version) = error_of(&call(&fake, &env("ADD"), &conf("0.4.0")).await);
        assert_eq!((code, version.as_str()), (expected, "0.4.0"), "{msg}");
        assert_eq!(fake.calls(), ["attach abc123 eth0"]);
    }
}

#[tokio::test]
async fn an_unreachable_agent_is_try_again_later() {
    let fake = Fake::failing(Fail::Unreachable);
    let gc_conf = conf_with("1.1.0", "cni.dev/valid-attachments", json!([]));
    for command in ["ADD", "DEL", "CHECK", "GC"] {
        let conf = if command == "GC" { gc_conf.clone() } else { conf("1.1.0") };
        let outcome = call(&fake, &env(command), &conf).await;
        let (code, msg, _) = error_of(&outcome);
        assert_eq!(code, 11, "{command}");
        assert!(msg.contains("not reachable on /run/test.sock") && msg.contains("try again"), "{msg}");
        let value: Value = serde_json::from_str(&outcome.stdout).unwrap();
        assert_eq!(value["details"], "No such file or directory (os error 2)");
    }
}

#[tokio::test]
async fn del_detaches_whatever_the_netns() {
    for netns in [Some(NETNS), Some(GONE), Some(""), None] {
        let fake = Fake::with_pod("abc123", "eth0");
        silent_success(&call(&fake, &with(env("DEL"), "CNI_NETNS", netns), &conf("0.3.1")).await);
        assert_eq!(fake.calls(), ["detach abc123 eth0"]);
        assert!(fake.pods.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn del_ignores_cni_args() {
    let fake = Fake::with_pod("abc123", "eth0");
    let env = with(env("DEL"), "CNI_ARGS", Some("FOO=bar;K8S_POD_NAMESPACE=Bad;junk"));
    silent_success(&call(&fake, &env, &conf("1.0.0")).await);
    assert_eq!(fake.calls(), ["detach abc123 eth0"]);
}

#[tokio::test]
async fn del_of_an_unknown_pod_succeeds() {
    let fake = Fake::failing(Fail::Api(ErrorKind::Unknown));
    silent_success(&call(&fake, &env("DEL"), &conf("1.0.0")).await);
    let fake = Fake::failing(Fail::Api(ErrorKind::Internal));
    assert_eq!(error_of(&call(&fake, &env("DEL"), &conf("1.0.0")).await).0, 102);
    let (code, msg, _) = error_of(&call(&fake, &with(env("DEL"), "CNI_IFNAME", None), &conf("1.0.0")).await);
    assert_eq!(code, 4);
    assert!(msg.contains("CNI_IFNAME"), "{msg}");
}

#[tokio::test]
async fn commands_newer_than_the_version_are_code_1() {
    let fake = Fake::default();
    for (command, version) in [("CHECK", "0.3.1"), ("CHECK", "0.3.0"), ("GC", "1.0.0"), ("STATUS", "0.4.0")] {
        let (code, msg, answered) = error_of(&call(&fake, &env(command), &conf(version)).await);
        assert_eq!((code, answered.as_str()), (1, version));
        assert!(msg.contains(command) && msg.contains(version), "{msg}");
    }
    assert!(fake.calls().is_empty());
}

fn prev_result(address: &str, sandbox: &str, mac: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            { "name": "veth1a2b3c4d", "mac": "ee:ee:ee:00:00:01" },
            { "name": "eth0", "mac": mac, "sandbox": sandbox },
        ],
        "ips": [{ "address": address, "gateway": "10.1.0.1", "interface": 1 }],
        "routes": [{ "dst": "0.0.0.0/0", "gw": "10.1.0.1" }],
        "dns": { "nameservers": ["10.96.0.10"] },
    })
}

#[tokio::test]
async fn check_asks_the_agent_and_compares_the_prev_result() {
    let fake = Fake::with_pod("abc123", "eth0");
    silent_success(&call(&fake, &env("CHECK"), &conf("0.4.0")).await);
    let prev = prev_result("10.1.0.5/24", NETNS, "0A:58:0A:01:00:05");
    silent_success(&call(&fake, &env("CHECK"), &conf_with("1.0.0", "prevResult", prev)).await);
    assert_eq!(fake.calls(), ["check abc123 eth0", "check abc123 eth0"]);
}

#[tokio::test]
async fn check_reports_what_the_prev_result_gets_wrong() {
    let fake = Fake::with_pod("abc123", "eth0");
    let cases = [
        (
            prev_result("10.1.0.7/24", NETNS, "0a:58:0a:01:00:05"),
            "prevResult has 10.1.0.7/24 for eth0, the pod has 10.1.0.5/24",
        ),
        (prev_result("10.1.0.5/16", NETNS, "0a:58:0a:01:00:05"), "prevResult has 10.1.0.5/16 for eth0"),
        (prev_result("10.1.0.5/24", "/run/netns/other", "0a:58:0a:01:00:05"), "eth0 in /run/netns/other"),
        (prev_result("10.1.0.5/24", NETNS, "0a:58:0a:01:00:06"), "MAC 0a:58:0a:01:00:06 for eth0"),
        (json!({ "cniVersion": "1.0.0" }), "no interface eth0; prevResult has no address for eth0"),
    ];
    for (prev, expected) in cases {
        let (code, msg, version) = error_of(&call(&fake, &env("CHECK"), &conf_with("1.0.0", "prevResult", prev)).await);
        assert_eq!((code, version.as_str()), (101, "1.0.0"));
        assert!(msg.contains(expected), "{msg}");
    }
    let malformed = json!({ "interfaces": [{ "mac": "x" }] });
    let (code, msg, _) = error_of(&call(&fake, &env("CHECK"), &conf_with("1.0.0", "prevResult", malformed)).await);
    assert_eq!(code, 7);
    assert!(msg.contains("prevResult"), "{msg}");
}

#[tokio::test]
async fn check_of_a_missing_netns_or_pod_is_code_3() {
    let fake = Fake::with_pod("abc123", "eth0");
    let (code, _, _) = error_of(&call(&fake, &with(env("CHECK"), "CNI_NETNS", Some(GONE)), &conf("1.0.0")).await);
    assert_eq!(code, 3);
    assert!(fake.calls().is_empty());
    let (code, msg, _) = error_of(&call(&fake, &with(env("CHECK"), "CNI_IFNAME", Some("net1")), &conf("1.0.0")).await);
    assert_eq!(code, 3);
    assert!(msg.contains("abc123/net1"), "{msg}");
    let fake = Fake::failing(Fail::Api(ErrorKind::Differs));
    assert_eq!(error_of(&call(&fake, &env("CHECK"), &conf("1.0.0")).await).0, 101);
}

#[tokio::test]
async fn gc_sends_the_valid_attachments_of_the_network() {
    let fake = Fake::default();
    let valid = json!([{ "containerID": "abc123", "ifname": "eth0" }, { "containerID": "def456", "ifname": "net1" }]);
    let conf = conf_with("1.1.0", "cni.dev/valid-attachments", valid);
    // GC needs no container environment.
    silent_success(&call(&fake, &HashMap::from([("CNI_COMMAND".into(), "GC".into())]), &conf).await);
    let none_kept = conf_with("1.1.0", "cni.dev/valid-attachments", json!([]));
    silent_success(&call(&fake, &env("GC"), &none_kept).await);
    // Without the field, GC changes nothing: it would otherwise release every pod.
    let (code, msg, _) = error_of(&call(&fake, &env("GC"), &self::conf("1.1.0")).await);
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("cni.dev/valid-attachments"), "{msg}");
    let key = |id: &str, ifname: &str| AttachmentKey { id: id.into(), ifname: ifname.into() };
    assert_eq!(
        *fake.collected.lock().unwrap(),
        [
            GcRequest { network: "sdn".into(), valid: vec![key("abc123", "eth0"), key("def456", "net1")] },
            GcRequest { network: "sdn".into(), valid: vec![] },
        ]
    );
    let fake = Fake::failing(Fail::Api(ErrorKind::Internal));
    assert_eq!(error_of(&call(&fake, &env("GC"), &none_kept).await).0, 102);
}

#[tokio::test]
async fn status_reports_the_agent_readiness() {
    let fake = Fake::default();
    silent_success(&call(&fake, &HashMap::from([("CNI_COMMAND".into(), "STATUS".into())]), &conf("1.1.0")).await);
    let not_ready =
        Fake { status: Some(Status { ready: false, reason: Some("no subnet yet".into()) }), ..Fake::default() };
    let (code, msg, _) = error_of(&call(&not_ready, &env("STATUS"), &conf("1.1.0")).await);
    assert_eq!(code, 50);
    assert!(msg.contains("no subnet yet"), "{msg}");
    let unreachable = Fake::failing(Fail::Unreachable);
    let (code, msg, _) = error_of(&call(&unreachable, &env("STATUS"), &conf("1.1.0")).await);
    assert_eq!(code, 50);
    assert!(msg.contains("not reachable on /run/test.sock"), "{msg}");
}
