//! What sdn-cni prints, in the configuration's CNI version: the ADD result,
//! the VERSION answer and error results; and the CHECK of a runtime's
//! `prevResult` against the agent's record.

use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::spec::{CniError, Version};
use crate::podapi::Attachment;

/// Pretty, as the reference plugins print, so that runtime logs stay readable.
pub fn render(value: &Value) -> String {
    format!("{value:#}\n")
}

/// The ADD result: the host veth, the pod's interface in `netns` (as
/// `CNI_NETNS` gave it), its address, the default route and the cluster DNS.
pub fn add(version: Version, attachment: &Attachment, netns: &str, namespace: Option<&str>) -> Value {
    let a = attachment;
    let mut pod_interface = json!({ "name": a.ifname, "mac": a.mac, "sandbox": netns });
    if version >= Version::V1_1_0 {
        pod_interface["mtu"] = json!(a.mtu);
    }
    let mut ip =
        json!({ "address": format!("{}/{}", a.ip, a.prefix), "gateway": a.gateway.to_string(), "interface": 1 });
    // 1.0.0 dropped the IP version: the address says it.
    if version < Version::V1_0_0 {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": version.as_str(),
        "interfaces": [{ "name": a.host_veth, "mac": a.host_mac }, pod_interface],
        "ips": [ip],
        "routes": [{ "dst": "0.0.0.0/0", "gw": a.gateway.to_string() }],
        "dns": dns(attachment, namespace),
    })
}

/// The kubelet's cluster-first layout: the pod's namespace's services first,
/// `ndots:5` so that short names try the search list before the outside
/// world. A pod of a runtime that passes no namespace (podman, `ctr`) is in
/// `default`, as Kubernetes puts a pod created without one, so `web` finds
/// `web.default.svc.<zone>` there too.
fn dns(attachment: &Attachment, namespace: Option<&str>) -> Value {
    let nameservers: Vec<String> = attachment.dns.nameservers.iter().map(Ipv4Addr::to_string).collect();
    let domain = &attachment.dns.domain;
    let ns = namespace.unwrap_or(DEFAULT_NAMESPACE);
    json!({
        "nameservers": nameservers,
        "search": [format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain],
        "options": ["ndots:5"],
    })
}

/// The namespace of a pod whose runtime names none.
const DEFAULT_NAMESPACE: &str = "default";

/// The VERSION answer.
pub fn version() -> Value {
    json!({
        "cniVersion": Version::LATEST.as_str(),
        "supportedVersions": Version::ALL.map(Version::as_str),
    })
}

pub fn error(version: Version, error: &CniError) -> Value {
    let mut result = json!({
        "cniVersion": version.as_str(),
        "code": error.code() as u32,
        "msg": error.to_string(),
    });
    if let Some(details) = error.details() {
        result["details"] = json!(details);
    }
    result
}

/// The parts of a previous result CHECK compares; the rest may be anything,
/// as later plugins of a chain add to it.
#[derive(Deserialize)]
struct PrevResult {
    #[serde(default)]
    interfaces: Option<Vec<PrevInterface>>,
    #[serde(default)]
    ips: Option<Vec<PrevIp>>,
}

#[derive(Deserialize)]
struct PrevInterface {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct PrevIp {
    address: String,
    #[serde(default)]
    interface: Option<usize>,
}

fn parse_cidr(address: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = address.split_once('/')?;
    Some((ip.parse().ok()?, prefix.parse().ok()?))
}

/// Whether the runtime's `prevResult` still describes the pod the agent
/// recorded: its address, and `ifname` in `netns` with its MAC.
pub fn check_prev_result(
    prev: Map<String, Value>,
    attachment: &Attachment,
    ifname: &str,
    netns: &str,
) -> Result<(), CniError> {
    let prev: PrevResult = serde_json::from_value(Value::Object(prev))
        .map_err(|err| CniError::InvalidConfig(format!("field \"prevResult\": {err}")))?;
    let a = attachment;
    let mut differs = Vec::new();
    let interfaces = prev.interfaces.unwrap_or_default();
    let found = interfaces.iter().enumerate().find(|(_, i)| i.name == ifname);
    match found {
        None => differs.push(format!("prevResult has no interface {ifname}")),
        Some((_, interface)) => {
            if interface.sandbox.as_deref() != Some(netns) {
                let sandbox = interface.sandbox.as_deref().unwrap_or("no sandbox");
                differs.push(format!("prevResult has {ifname} in {sandbox}, CNI_NETNS is {netns}"));
            }
            match &interface.mac {
                Some(mac) if mac.eq_ignore_ascii_case(&a.mac) => {}
                Some(mac) => differs.push(format!("prevResult has MAC {mac} for {ifname}, the pod has {}", a.mac)),
                None => differs.push(format!("prevResult has no MAC for {ifname}, the pod has {}", a.mac)),
            }
        }
    }
    let ips = prev.ips.unwrap_or_default();
    if !ips.iter().any(|ip| parse_cidr(&ip.address) == Some((a.ip, a.prefix))) {
        let index = found.map(|(index, _)| index);
        let theirs: Vec<&str> =
            ips.iter().filter(|ip| index.is_some() && ip.interface == index).map(|ip| ip.address.as_str()).collect();
        let has = if theirs.is_empty() { "no address".to_owned() } else { theirs.join(", ") };
        differs.push(format!("prevResult has {has} for {ifname}, the pod has {}/{}", a.ip, a.prefix));
    }
    if differs.is_empty() { Ok(()) } else { Err(CniError::Differs(differs.join("; "))) }
}
