//! `Service` and `Endpoints`: what the cluster DNS answers from (seed 003 §4.1.1). Stored by the
//! master under `services/<ns>/<name>` and `endpoints/<ns>/<name>`, with Kubernetes' field names,
//! and validated here as plain data.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnetwork::IpNetwork;

use serde::{Deserialize, Serialize};

use crate::network::ClusterNetwork;
use crate::records::validate_label;

/// Longest port name (an IANA service name, as Kubernetes allows).
pub const MAX_PORT_NAME_LEN: usize = 15;

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// The label of SRV names: `_tcp`, `_udp`, `_sctp` without the underscore.
    pub const fn srv_label(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

/// A port of a service or of its endpoints. Only named ports get SRV records.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Empty for an unnamed port (allowed only as a service's single port).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: Protocol,
}

/// Longest `sessionAffinityConfig.clientIP.timeoutSeconds`, as Kubernetes allows (a day).
pub const MAX_AFFINITY_TIMEOUT: u32 = 86400;
/// The timeout of `ClientIP` affinity when the config gives none, as in Kubernetes (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// `sessionAffinity`: whether a client's connections stick to one backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAffinity {
    #[default]
    None,
    #[serde(rename = "ClientIP")]
    ClientIp,
}

impl SessionAffinity {
    pub fn is_none(&self) -> bool {
        *self == SessionAffinity::None
    }
}

/// `sessionAffinityConfig`, with Kubernetes' field names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinityConfig {
    #[serde(rename = "clientIP", default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

/// A service: a stable name (and, unless headless, a cluster IP) for a set of endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// The cluster IP; `None` for a headless service, whose name resolves to its endpoints.
    #[serde(rename = "clusterIP", default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<IpAddr>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "SessionAffinity::is_none")]
    pub session_affinity: SessionAffinity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
}

impl Service {
    /// How long a client stays on its backend, in seconds, if the service keeps clients on one.
    pub fn affinity_timeout(&self) -> Option<u32> {
        (self.session_affinity == SessionAffinity::ClientIp).then(|| {
            self.session_affinity_config
                .and_then(|config| config.client_ip)
                .and_then(|client| client.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        })
    }
}

/// A cluster IP as the admin API writes it: an address, or `"None"` for a headless service
/// (as Kubernetes spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClusterIp {
    Headless,
    Ip(IpAddr),
}

impl ClusterIp {
    pub const fn ip(self) -> Option<IpAddr> {
        match self {
            ClusterIp::Headless => None,
            ClusterIp::Ip(ip) => Some(ip),
        }
    }
}

impl From<Option<IpAddr>> for ClusterIp {
    fn from(ip: Option<IpAddr>) -> Self {
        ip.map_or(ClusterIp::Headless, ClusterIp::Ip)
    }
}

impl fmt::Display for ClusterIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterIp::Headless => f.write_str("None"),
            ClusterIp::Ip(ip) => ip.fmt(f),
        }
    }
}

impl FromStr for ClusterIp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "None" {
            return Ok(ClusterIp::Headless);
        }
        s.parse().map(ClusterIp::Ip).map_err(|_| format!("{s:?} is neither an IP address nor \"None\" (headless)"))
    }
}

impl TryFrom<String> for ClusterIp {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ClusterIp> for String {
    fn from(ip: ClusterIp) -> Self {
        ip.to_string()
    }
}

/// A service as the admin API takes and shows it. Unlike the stored [`Service`], the cluster IP
/// says what is asked for: absent to allocate one, `"None"` for headless, or a given address.
/// Shown, it is always present, so a shown service posted again asks for the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "clusterIP", default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<ClusterIp>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "SessionAffinity::is_none")]
    pub session_affinity: SessionAffinity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
}

impl ServiceSpec {
    /// The record to store once the cluster IP is settled (`None`: headless).
    pub fn to_service(&self, cluster_ip: Option<IpAddr>) -> Service {
        Service {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            cluster_ip,
            ports: self.ports.clone(),
            session_affinity: self.session_affinity,
            session_affinity_config: self.session_affinity_config,
        }
    }
}

impl From<Service> for ServiceSpec {
    fn from(service: Service) -> Self {
        Self {
            namespace: service.namespace,
            name: service.name,
            cluster_ip: Some(service.cluster_ip.into()),
            ports: service.ports,
            session_affinity: service.session_affinity,
            session_affinity_config: service.session_affinity_config,
        }
    }
}

/// One address behind a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointAddress {
    pub ip: IpAddr,
    /// Gives the endpoint the name `<hostname>.<svc>.<ns>.svc.<zone>` in a headless service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The node the endpoint runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Not-ready endpoints are kept but not answered.
    #[serde(default = "ready")]
    pub ready: bool,
}

fn ready() -> bool {
    true
}

/// The endpoints of the service of the same namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub addresses: Vec<EndpointAddress>,
    #[serde(default)]
    pub ports: Vec<Port>,
}

/// A service or endpoints record that may not be stored, naming the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Name(#[from] crate::records::RecordError),
    #[error("{field}: {value} is outside the {network_kind} network {network}")]
    Outside { field: String, value: IpAddr, network_kind: &'static str, network: String },
    #[error("{field}: {value} is not a usable address: {reason}")]
    BadAddress { field: String, value: IpAddr, reason: &'static str },
    #[error("{field}: port 0 is not a port (1-65535)")]
    PortZero { field: String },
    #[error("{field}: {value:?} is not a port name: {reason}")]
    PortName { field: String, value: String, reason: &'static str },
    #[error("{field}: {value:?} is not a DNS-1123 label: {reason}")]
    Label { field: String, value: String, reason: &'static str },
    #[error("{field}: {what} appears twice")]
    Duplicate { field: String, what: String },
    #[error("{field}: {reason}")]
    Affinity { field: String, reason: String },
}

impl ServiceError {
    /// The field at fault, as the API names it (`ports[1].name`).
    pub fn field(&self) -> &str {
        match self {
            ServiceError::Name(crate::records::RecordError::InvalidName { field, .. })
            | ServiceError::Name(crate::records::RecordError::InvalidIp { field, .. }) => field,
            ServiceError::Outside { field, .. }
            | ServiceError::BadAddress { field, .. }
            | ServiceError::PortZero { field }
            | ServiceError::PortName { field, .. }
            | ServiceError::Label { field, .. }
            | ServiceError::Duplicate { field, .. }
            | ServiceError::Affinity { field, .. } => field,
        }
    }
}

impl Service {
    /// Checks names, ports and the cluster IP (inside the service network) of `network`.
    pub fn validate(&self, network: &ClusterNetwork) -> Result<(), ServiceError> {
        validate_label("namespace", &self.namespace)?;
        validate_label("name", &self.name)?;
        if let Some(ip) = self.cluster_ip {
            usable("clusterIP".into(), ip)?;
            if !network.service_network.contains(ip) || reserved(network.service_network, ip) {
                return Err(ServiceError::Outside {
                    field: "clusterIP".into(),
                    value: ip,
                    network_kind: "service",
                    network: network.service_network.to_string(),
                });
            }
        }
        validate_ports(&self.ports, self.ports.len() > 1)?;
        self.validate_affinity()
    }

    fn validate_affinity(&self) -> Result<(), ServiceError> {
        let timeout = self.session_affinity_config.and_then(|c| c.client_ip).and_then(|c| c.timeout_seconds);
        if self.session_affinity_config.is_some() && self.session_affinity != SessionAffinity::ClientIp {
            return Err(ServiceError::Affinity {
                field: "sessionAffinityConfig".into(),
                reason: "only a service with sessionAffinity ClientIP takes it".into(),
            });
        }
        match timeout {
            Some(seconds) if seconds == 0 || seconds > MAX_AFFINITY_TIMEOUT => Err(ServiceError::Affinity {
                field: "sessionAffinityConfig.clientIP.timeoutSeconds".into(),
                reason: format!("{seconds} is not 1 to {MAX_AFFINITY_TIMEOUT}"),
            }),
            _ => Ok(()),
        }
    }
}

impl Endpoints {
    /// Checks names, ports, and that every address is a usable unicast address; pod addresses
    /// (inside the cluster network) and addresses outside the cluster are both allowed, service
    /// IPs are not.
    pub fn validate(&self, network: &ClusterNetwork) -> Result<(), ServiceError> {
        validate_label("namespace", &self.namespace)?;
        validate_label("name", &self.name)?;
        let mut seen = BTreeSet::new();
        for (i, address) in self.addresses.iter().enumerate() {
            let field = format!("addresses[{i}]");
            usable(format!("{field}.ip"), address.ip)?;
            if network.service_network.contains(address.ip) {
                return Err(ServiceError::BadAddress {
                    field: format!("{field}.ip"),
                    value: address.ip,
                    reason: "it is a service IP, not an endpoint",
                });
            }
            if let Some(hostname) = &address.hostname {
                validate_label("hostname", hostname).map_err(|e| prefixed(&field, e))?;
            }
            if let Some(node) = &address.node_name {
                validate_label("nodeName", node).map_err(|e| prefixed(&field, e))?;
            }
            if !seen.insert(address.ip) {
                return Err(ServiceError::Duplicate { field: "addresses".into(), what: address.ip.to_string() });
            }
        }
        validate_ports(&self.ports, self.ports.len() > 1)
    }
}

/// Whether `ip` is the network address of `network`, or the broadcast address of an IPv4 one:
/// neither can be a service's address.
pub fn reserved(network: IpNetwork, ip: IpAddr) -> bool {
    match network {
        IpNetwork::V4(v4) => ip == IpAddr::V4(v4.network()) || ip == IpAddr::V4(v4.broadcast()),
        IpNetwork::V6(v6) => ip == IpAddr::V6(v6.network()),
    }
}

/// Prefixes a name error's field with the list element it is in.
fn prefixed(field: &str, err: crate::records::RecordError) -> ServiceError {
    match err {
        crate::records::RecordError::InvalidName { field: inner, value, reason } => {
            ServiceError::Label { field: format!("{field}.{inner}"), value, reason }
        }
        other => ServiceError::Name(other),
    }
}

fn usable(field: String, ip: IpAddr) -> Result<(), ServiceError> {
    let reason = match ip {
        ip if ip.is_unspecified() => "it is unspecified",
        ip if ip.is_loopback() => "it is a loopback address",
        ip if ip.is_multicast() => "it is multicast",
        IpAddr::V4(v4) if v4.is_broadcast() => "it is the broadcast address",
        IpAddr::V4(v4) if v4.is_link_local() => "it is link-local",
        _ => return Ok(()),
    };
    Err(ServiceError::BadAddress { field, value: ip, reason })
}

/// Ports 1-65535, names as IANA service names (required when there are several), no name or
/// (port, protocol) twice.
fn validate_ports(ports: &[Port], names_required: bool) -> Result<(), ServiceError> {
    let (mut names, mut numbers) = (BTreeSet::new(), BTreeSet::new());
    for (i, port) in ports.iter().enumerate() {
        let field = format!("ports[{i}]");
        if port.port == 0 {
            return Err(ServiceError::PortZero { field: format!("{field}.port") });
        }
        if port.name.is_empty() {
            if names_required {
                return Err(ServiceError::PortName {
                    field: format!("{field}.name"),
                    value: String::new(),
                    reason: "every port needs a name when there are several",
                });
            }
        } else {
            port_name(&format!("{field}.name"), &port.name)?;
            if !names.insert(port.name.as_str()) {
                return Err(ServiceError::Duplicate { field: "ports".into(), what: format!("name {:?}", port.name) });
            }
        }
        if !numbers.insert((port.port, port.protocol)) {
            return Err(ServiceError::Duplicate {
                field: "ports".into(),
                what: format!("{}/{}", port.port, port.protocol.srv_label()),
            });
        }
    }
    Ok(())
}

/// An IANA service name: at most 15 lower-case letters, digits and '-', with a letter, no '-'
/// at either end and no "--".
fn port_name(field: &str, name: &str) -> Result<(), ServiceError> {
    let fail = |reason| Err(ServiceError::PortName { field: field.to_owned(), value: name.to_owned(), reason });
    if name.len() > MAX_PORT_NAME_LEN {
        return fail("it is longer than 15 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return fail("only lower-case letters, digits and '-' are allowed");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return fail("it needs at least one letter");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return fail("'-' may not start or end it, nor appear twice in a row");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, number: u16) -> Port {
        Port { name: name.into(), port: number, protocol: Protocol::Tcp }
    }

    fn service(ip: Option<&str>, ports: Vec<Port>) -> Service {
        Service {
            namespace: "default".into(),
            name: "web".into(),
            cluster_ip: ip.map(|ip| ip.parse().expect("ip")),
            ports,
            ..Service::default()
        }
    }

    #[test]
    fn json_uses_kubernetes_field_names() {
        let json = r#"{"namespace":"default","name":"web","clusterIP":"172.30.0.10",
            "ports":[{"name":"http","port":80,"protocol":"TCP"},{"name":"dns","port":53,"protocol":"UDP"}]}"#;
        let svc: Service = serde_json::from_str(json).expect("decodes");
        assert_eq!(svc.cluster_ip, Some("172.30.0.10".parse().expect("ip")));
        assert_eq!(svc.ports[1].protocol, Protocol::Udp);
        let headless: Service = serde_json::from_str(r#"{"namespace":"a","name":"b"}"#).expect("headless");
        assert_eq!(headless.cluster_ip, None);
        let ep: Endpoints = serde_json::from_str(
            r#"{"namespace":"a","name":"b","addresses":[{"ip":"10.1.0.2","hostname":"web-0","nodeName":"n1"}],
                "ports":[{"port":80}]}"#,
        )
        .expect("endpoints");
        assert!(ep.addresses[0].ready, "ready by default");
        assert_eq!(ep.ports[0].protocol, Protocol::Tcp, "TCP by default");
        let err = serde_json::from_str::<Port>(r#"{"port":80,"protocol":"ICMP"}"#).expect_err("protocol");
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn services_are_validated_against_the_service_network() {
        let network = ClusterNetwork::default();
        service(Some("172.30.0.10"), vec![port("http", 80)]).validate(&network).expect("valid");
        service(None, vec![port("", 80)]).validate(&network).expect("one unnamed port");
        let cases = [
            (service(Some("10.1.0.5"), vec![]), "clusterIP: 10.1.0.5 is outside the service network"),
            (service(Some("172.30.0.0"), vec![]), "clusterIP: 172.30.0.0 is outside"),
            (service(Some("172.30.255.255"), vec![]), "clusterIP: 172.30.255.255 is outside"),
            (service(Some("127.0.0.1"), vec![]), "clusterIP: 127.0.0.1 is not a usable address"),
            (service(None, vec![port("http", 0)]), "ports[0].port: port 0"),
            (service(None, vec![port("http", 80), port("", 81)]), "ports[1].name: \"\" is not a port name"),
            (service(None, vec![port("http", 80), port("http", 81)]), "ports: name \"http\" appears twice"),
            (service(None, vec![port("a", 80), port("b", 80)]), "ports: 80/tcp appears twice"),
            (service(None, vec![port("Http", 80)]), "ports[0].name: \"Http\""),
            (service(None, vec![port("a--b", 80)]), "ports[0].name: \"a--b\""),
            (service(None, vec![port("sixteen-letters-", 80)]), "ports[0].name: \"sixteen-letters-\""),
            (service(None, vec![port("8080", 80)]), "ports[0].name: \"8080\""),
        ];
        for (svc, expected) in cases {
            let err = svc.validate(&network).expect_err(expected).to_string();
            assert!(err.starts_with(expected), "{err:?} does not start with {expected:?}");
        }
        let bad_name = Service { name: "Web".into(), ..service(None, vec![]) };
        assert!(bad_name.validate(&network).expect_err("name").to_string().starts_with("name: "));
    }

    #[test]
    fn session_affinity_takes_kubernetes_fields_and_bounds() {
        let network = ClusterNetwork::default();
        let sticky: Service = serde_json::from_str(
            r#"{"namespace":"a","name":"b","clusterIP":"172.30.0.9","sessionAffinity":"ClientIP",
                "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":600}}}"#,
        )
        .expect("Kubernetes' fields");
        sticky.validate(&network).expect("valid");
        assert_eq!(sticky.affinity_timeout(), Some(600));
        let default = Service { session_affinity: SessionAffinity::ClientIp, ..service(None, vec![]) };
        assert_eq!(default.affinity_timeout(), Some(DEFAULT_AFFINITY_TIMEOUT));
        assert_eq!(service(None, vec![]).affinity_timeout(), None);
        for seconds in [0, MAX_AFFINITY_TIMEOUT + 1] {
            let config = SessionAffinityConfig { client_ip: Some(ClientIpConfig { timeout_seconds: Some(seconds) }) };
            let bad = Service { session_affinity_config: Some(config), ..sticky.clone() };
            let err = bad.validate(&network).expect_err("out of bounds");
            assert_eq!(err.field(), "sessionAffinityConfig.clientIP.timeoutSeconds", "{err}");
        }
        let without = Service { session_affinity: SessionAffinity::None, ..sticky.clone() };
        assert_eq!(without.validate(&network).expect_err("config without ClientIP").field(), "sessionAffinityConfig");
        let shown = serde_json::to_value(service(None, vec![])).expect("json");
        assert!(shown.get("sessionAffinity").is_none(), "None is not written: {shown}");
    }

    #[test]
    fn endpoints_are_validated() {
        let network = ClusterNetwork::default();
        let address =
            |ip: &str| EndpointAddress { ip: ip.parse().expect("ip"), hostname: None, node_name: None, ready: true };
        let endpoints = |addresses| Endpoints { namespace: "a".into(), name: "b".into(), addresses, ports: vec![] };
        endpoints(vec![address("10.1.0.2"), address("192.0.2.7")]).validate(&network).expect("valid");
        let named = EndpointAddress { hostname: Some("Web_0".into()), ..address("10.1.0.2") };
        let cases = [
            (endpoints(vec![address("172.30.0.9")]), "addresses[0].ip: 172.30.0.9 is not a usable address"),
            (endpoints(vec![address("0.0.0.0")]), "addresses[0].ip: 0.0.0.0"),
            (endpoints(vec![address("10.1.0.2"), address("10.1.0.2")]), "addresses: 10.1.0.2 appears twice"),
            (endpoints(vec![named]), "addresses[0].hostname: \"Web_0\" is not a DNS-1123 label"),
        ];
        for (ep, expected) in cases {
            let err = ep.validate(&network).expect_err(expected);
            assert!(err.to_string().starts_with(expected), "{err:?} does not start with {expected:?}");
            assert!(expected.starts_with(err.field()), "{:?} is not the field of {expected:?}", err.field());
        }
    }

    #[test]
    fn api_form_spells_headless_as_none() {
        let spec: ServiceSpec =
            serde_json::from_str(r#"{"namespace":"a","name":"b","clusterIP":"None"}"#).expect("headless");
        assert_eq!(spec.cluster_ip, Some(ClusterIp::Headless));
        assert_eq!(spec.to_service(None).cluster_ip, None);
        let allocate: ServiceSpec = serde_json::from_str(r#"{"namespace":"a","name":"b"}"#).expect("allocate");
        assert_eq!(allocate.cluster_ip, None);
        let shown = serde_json::to_value(ServiceSpec::from(spec.to_service(None))).expect("json");
        assert_eq!(shown["clusterIP"], "None");
        let given = ServiceSpec::from(spec.to_service(Some("172.30.0.9".parse().expect("ip"))));
        assert_eq!(given.cluster_ip, Some(ClusterIp::Ip("172.30.0.9".parse().expect("ip"))));
        for (body, expected) in [
            (r#"{"namespace":"a","name":"b","clusterIP":"none"}"#, "\"none\" is neither an IP address nor \"None\""),
            (r#"{"namespace":"a","name":"b","type":"ClusterIP"}"#, "unknown field `type`"),
        ] {
            let err = serde_json::from_str::<ServiceSpec>(body).expect_err(body).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
