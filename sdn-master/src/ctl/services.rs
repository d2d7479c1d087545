//! `sdnctl services` and `sdnctl endpoints`: their arguments, parsed so that a bad one is a clap
//! error naming it, and what each command asks of the API.

use std::fmt;
use std::str::FromStr;

use clap::Subcommand;
use sdn_cluster::records::validate_label;
use sdn_cluster::services::{ClientIpConfig, SessionAffinity, SessionAffinityConfig};
use sdn_cluster::{ClusterIp, EndpointAddress, Endpoints, Port, Protocol, ServiceSpec};

use super::output::{self, ServiceDetail};
use super::{Client, CtlError};
use crate::api::types::SetEndpoints;

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Create a service; without --cluster-ip it gets the lowest free address.
    Create {
        /// The service's namespace and name.
        #[arg(value_name = "NAMESPACE/NAME")]
        service: ServiceRef,
        /// The cluster IP, or None for a headless service.
        #[arg(long, value_name = "IP|None")]
        cluster_ip: Option<ClusterIp>,
        /// A port, repeated for several (each then needs a name). PROTO is TCP, UDP or SCTP [TCP].
        #[arg(long = "port", value_name = "[NAME:]PORT[/PROTO]", value_parser = parse_port)]
        ports: Vec<Port>,
        /// Keep each client on one backend (Kubernetes' sessionAffinity).
        #[arg(long, value_name = "None|ClientIP", value_parser = parse_affinity)]
        session_affinity: Option<SessionAffinity>,
        /// How long a client stays on its backend after its last connection, in seconds (1 to
        /// 86400) [10800]; needs --session-affinity ClientIP.
        #[arg(long, value_name = "SECONDS", requires = "session_affinity")]
        session_affinity_timeout: Option<u32>,
    },
    /// List services.
    List {
        /// Only this namespace's.
        #[arg(long, short = 'n', value_parser = namespace)]
        namespace: Option<String>,
    },
    /// Show a service and its endpoints.
    Show {
        /// The service's namespace and name.
        #[arg(value_name = "NAMESPACE/NAME")]
        service: ServiceRef,
    },
    /// Delete a service, its cluster IP claim and its endpoints.
    Delete {
        /// The service's namespace and name.
        #[arg(value_name = "NAMESPACE/NAME")]
        service: ServiceRef,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Replace a service's endpoints with the given addresses and ports.
    Set {
        /// The service's namespace and name.
        #[arg(value_name = "NAMESPACE/NAME")]
        service: ServiceRef,
        /// An address, repeated for several.
        #[arg(long = "address", value_name = "IP[,hostname=H][,node=N][,not-ready]", value_parser = parse_address)]
        addresses: Vec<EndpointAddress>,
        /// A port, repeated for several (each then needs a name). PROTO is TCP, UDP or SCTP [TCP].
        #[arg(long = "port", value_name = "[NAME:]PORT[/PROTO]", value_parser = parse_port)]
        ports: Vec<Port>,
    },
    /// List every service's endpoints.
    List {
        /// Only this namespace's.
        #[arg(long, short = 'n', value_parser = namespace)]
        namespace: Option<String>,
    },
}

/// `NAMESPACE/NAME`, both DNS-1123 labels, so they are safe in a URL path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl FromStr for ServiceRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = s.split_once('/').ok_or("expected NAMESPACE/NAME")?;
        validate_label("namespace", namespace).map_err(|e| e.to_string())?;
        validate_label("name", name).map_err(|e| e.to_string())?;
        Ok(Self { namespace: namespace.into(), name: name.into() })
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn namespace(s: &str) -> Result<String, String> {
    validate_label("namespace", s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// `[NAME:]PORT[/PROTO]`: `http:80`, `53/UDP`, `sctp-x:9000/sctp`. The name is checked by the
/// master, which names the port at fault.
pub fn parse_port(s: &str) -> Result<Port, String> {
    let (name, rest) = s.split_once(':').unwrap_or(("", s));
    let (number, protocol) = match rest.split_once('/') {
        Some((number, protocol)) => (number, protocol_of(protocol)?),
        None => (rest, Protocol::Tcp),
    };
    let port = match number.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{number:?} is not a port (1-65535)")),
        Ok(port) => port,
    };
    Ok(Port { name: name.to_owned(), port, protocol })
}

fn protocol_of(s: &str) -> Result<Protocol, String> {
    match s.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(format!("protocol {s:?} is not TCP, UDP or SCTP")),
    }
}

/// `IP[,hostname=H][,node=N][,not-ready]`.
pub fn parse_address(s: &str) -> Result<EndpointAddress, String> {
    let mut parts = s.split(',');
    let ip = parts.next().unwrap_or_default();
    let ip = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
    let mut address = EndpointAddress { ip, hostname: None, node_name: None, ready: true };
    for part in parts {
        match part.split_once('=') {
            Some(("hostname", h)) => address.hostname = Some(h.to_owned()),
            Some(("node", n)) => address.node_name = Some(n.to_owned()),
            None if part == "not-ready" => address.ready = false,
            _ => return Err(format!("{part:?} is not hostname=H, node=N or not-ready")),
        }
    }
    Ok(address)
}

fn parse_affinity(value: &str) -> Result<SessionAffinity, String> {
    match value {
        "None" => Ok(SessionAffinity::None),
        "ClientIP" => Ok(SessionAffinity::ClientIp),
        other => Err(format!("{other:?} is neither None nor ClientIP")),
    }
}

fn list_path(what: &str, namespace: Option<String>) -> String {
    match namespace {
        Some(namespace) => format!("/api/v1/{what}?namespace={namespace}"),
        None => format!("/api/v1/{what}"),
    }
}

pub async fn services(client: &Client, command: ServicesCommand, json: bool) -> Result<String, CtlError> {
    Ok(match command {
        ServicesCommand::Create { service, cluster_ip, ports, session_affinity, session_affinity_timeout } => {
            let session_affinity_config = session_affinity_timeout.map(|seconds| SessionAffinityConfig {
                client_ip: Some(ClientIpConfig { timeout_seconds: Some(seconds) }),
            });
            let spec = ServiceSpec {
                namespace: service.namespace,
                name: service.name,
                cluster_ip,
                ports,
                session_affinity: session_affinity.unwrap_or_default(),
                session_affinity_config,
            };
            output::service(&client.post("/api/v1/services", &spec).await?, json)
        }
        ServicesCommand::List { namespace } => {
            output::services(&client.get::<Vec<_>>(&list_path("services", namespace)).await?, json)
        }
        ServicesCommand::Show { service: s } => {
            let service = client.get(&format!("/api/v1/services/{s}")).await?;
            let endpoints = client.get(&format!("/api/v1/endpoints/{s}")).await?;
            output::service_detail(&ServiceDetail { service, endpoints }, json)
        }
        ServicesCommand::Delete { service } => {
            client.delete(&format!("/api/v1/services/{service}")).await?;
            if json { String::new() } else { format!("service {service} deleted\n") }
        }
    })
}

pub async fn endpoints(client: &Client, command: EndpointsCommand, json: bool) -> Result<String, CtlError> {
    Ok(match command {
        EndpointsCommand::Set { service, addresses, ports } => {
            let body = SetEndpoints { namespace: None, name: None, addresses, ports };
            let endpoints: Endpoints = client.put(&format!("/api/v1/endpoints/{service}"), &body).await?;
            output::endpoints(std::slice::from_ref(&endpoints), json)
        }
        EndpointsCommand::List { namespace } => {
            output::endpoints(&client.get::<Vec<_>>(&list_path("endpoints", namespace)).await?, json)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let port = |name: &str, port, protocol| Port { name: name.into(), port, protocol };
        assert_eq!(parse_port("80"), Ok(port("", 80, Protocol::Tcp)));
        assert_eq!(parse_port("dns:53/udp"), Ok(port("dns", 53, Protocol::Udp)));
        assert_eq!(parse_port("x:9/SCTP"), Ok(port("x", 9, Protocol::Sctp)));
        for (bad, expected) in [
            ("0", "\"0\" is not a port (1-65535)"),
            ("70000", "\"70000\" is not a port (1-65535)"),
            ("http:", "\"\" is not a port (1-65535)"),
            ("80/icmp", "protocol \"icmp\" is not TCP, UDP or SCTP"),
        ] {
            assert_eq!(parse_port(bad).expect_err(bad), expected);
        }
    }

    #[test]
    fn addresses() {
        let a = parse_address("10.1.0.2,hostname=web-0,node=n1,not-ready").expect("full");
        assert_eq!(a.ip.to_string(), "10.1.0.2");
        assert_eq!((a.hostname.as_deref(), a.node_name.as_deref(), a.ready), (Some("web-0"), Some("n1"), false));
        assert!(parse_address("10.1.0.3").expect("bare").ready);
        assert_eq!(parse_address("web"), Err("\"web\" is not an IP address".into()));
        assert_eq!(parse_address("10.1.0.2,zone=a"), Err("\"zone=a\" is not hostname=H, node=N or not-ready".into()));
    }

    #[test]
    fn service_refs() {
        let r: ServiceRef = "default/web".parse().expect("ref");
        assert_eq!(r.to_string(), "default/web");
        assert_eq!("web".parse::<ServiceRef>(), Err("expected NAMESPACE/NAME".into()));
        assert!("default/Web".parse::<ServiceRef>().expect_err("label").starts_with("name: "));
        assert!("a/b/c".parse::<ServiceRef>().expect_err("slash").starts_with("name: "));
    }
}
