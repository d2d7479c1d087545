//! The records stored in etcd, one JSON object per key, and their validation.

use std::net::IpAddr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::network::ClusterNetwork;

/// A node of the cluster: registered by its agent or by an admin.
///
/// Stored records ignore fields they do not know, so a newer agent that
/// writes more does not make an older master lose the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    /// The node's underlay address: VXLAN tunnels to its pods end here.
    pub ip: IpAddr,
}

/// The subnet the master allocated to a node (OpenShift's `HostSubnet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSubnet {
    pub host: String,
    #[serde(rename = "hostIP")]
    pub host_ip: IpAddr,
    pub subnet: Ipv4Network,
}

/// A pod attached on a node, recorded by that node's agent so the cluster
/// can list every pod with its node and IP (`sdnctl pods`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub node: String,
    /// The runtime's container (sandbox) ID.
    pub container_id: String,
    pub ifname: String,
    pub ip: std::net::Ipv4Addr,
    /// The Kubernetes namespace and name, when the runtime gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A record that may not be stored, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{field}: {value:?} is not a DNS-1123 label: {reason}")]
    InvalidName { field: &'static str, value: String, reason: &'static str },
    #[error("{field}: {value} is not a usable node address: {reason}")]
    InvalidIp { field: &'static str, value: IpAddr, reason: String },
}

/// Longest DNS-1123 label.
pub const MAX_LABEL_LEN: usize = 63;

/// Checks a name against the Kubernetes DNS-1123 label rule: lower-case
/// alphanumerics and '-', starting and ending alphanumeric, at most 63 bytes.
/// Names become etcd key segments and DNS labels, so nothing else is allowed.
pub fn validate_label(field: &'static str, value: &str) -> Result<(), RecordError> {
    let fail = |reason| Err(RecordError::InvalidName { field, value: value.to_owned(), reason });
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > MAX_LABEL_LEN {
        return fail("it is longer than 63 characters");
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return fail("only lower-case letters, digits and '-' are allowed");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return fail("it must start and end with a letter or digit");
    }
    Ok(())
}

impl Node {
    pub fn validate(&self) -> Result<(), RecordError> {
        validate_label("name", &self.name)?;
        let reason = match self.ip {
            ip if ip.is_unspecified() => Some("it is unspecified"),
            ip if ip.is_multicast() => Some("it is multicast"),
            ip if ip.is_loopback() => Some("it is a loopback address, which other nodes cannot reach"),
            IpAddr::V4(v4) if v4.is_broadcast() => Some("it is the broadcast address"),
            _ => None,
        };
        match reason {
            Some(reason) => Err(RecordError::InvalidIp { field: "ip", value: self.ip, reason: reason.into() }),
            None => Ok(()),
        }
    }

    /// Refuses an address inside the cluster or service network: tunnels to
    /// it would be routed into the overlay they are meant to carry.
    pub fn validate_outside(&self, network: &ClusterNetwork) -> Result<(), RecordError> {
        let inside = match self.ip {
            IpAddr::V4(v4) if network.network.contains(v4) => Some(("cluster", network.network.to_string())),
            ip if network.service_network.contains(ip) => Some(("service", network.service_network.to_string())),
            _ => None,
        };
        match inside {
            Some((which, cidr)) => Err(RecordError::InvalidIp {
                field: "ip",
                value: self.ip,
                reason: format!("it is inside the {which} network {cidr}"),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "node-1", "0node", &"x".repeat(63)] {
            validate_label("name", ok).expect(ok);
        }
        for bad in ["", "-a", "a-", "Node", "a.b", "a_b", "a b", "ü", &"x".repeat(64)] {
            let err = validate_label("name", bad).expect_err(bad);
            assert!(err.to_string().starts_with("name: "), "{err}");
        }
    }

    #[test]
    fn node_ip_must_be_unicast() {
        let node = |ip: &str| Node { name: "n".into(), ip: ip.parse().expect("ip") };
        node("192.0.2.10").validate().expect("unicast");
        node("2001:db8::1").validate().expect("v6");
        for bad in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "127.0.0.1"] {
            assert!(node(bad).validate().expect_err(bad).to_string().starts_with("ip: "));
        }
    }

    #[test]
    fn host_subnet_json_matches_openshift() {
        let hs = HostSubnet {
            host: "node-1".into(),
            host_ip: "192.0.2.10".parse().expect("ip"),
            subnet: "10.1.2.0/24".parse().expect("cidr"),
        };
        let json = serde_json::to_string(&hs).expect("json");
        assert_eq!(json, r#"{"host":"node-1","hostIP":"192.0.2.10","subnet":"10.1.2.0/24"}"#);
        assert_eq!(serde_json::from_str::<HostSubnet>(&json).expect("parse"), hs);
    }

    #[test]
    fn stored_records_from_newer_writers_still_decode() {
        let node: Node = serde_json::from_str(r#"{"name":"a","ip":"192.0.2.1","zone":"b"}"#).expect("decodes");
        assert_eq!(node.name, "a");
    }

    #[test]
    fn node_ip_inside_the_overlay_is_refused() {
        let network = ClusterNetwork::default();
        let node = |ip: &str| Node { name: "n".into(), ip: ip.parse().expect("ip") };
        node("192.0.2.1").validate_outside(&network).expect("underlay");
        for bad in ["10.1.3.4", "172.30.0.10"] {
            let err = node(bad).validate_outside(&network).expect_err(bad).to_string();
            assert!(err.starts_with("ip: ") && err.contains("inside the"), "{err}");
        }
    }
}
