//! The JSON bodies of the admin API, shared by the server and `sdnctl`.

use std::net::IpAddr;

use ipnetwork::Ipv4Network;
pub use sdn_cluster::{ClusterIp, EndpointAddress, Endpoints, Port, Protocol, ServiceSpec};
use serde::{Deserialize, Serialize};

/// Body of `POST /api/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterNode {
    pub name: String,
    pub ip: IpAddr,
}

/// Body of `PUT /api/v1/nodes/{name}/access`: the node's IP, whose claim key it may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAccessRequest {
    pub ip: IpAddr,
}

/// A node's etcd user and role, and the keys it may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAccessView {
    pub user: String,
    pub role: String,
    pub writes: Vec<String>,
}

/// Whether a node has its subnet yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The node has a `HostSubnet`.
    Allocated,
    /// The node waits for a subnet: just registered, or the cluster network
    /// is exhausted.
    Pending,
}

/// A node with its subnet, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub ip: IpAddr,
    pub subnet: Option<Ipv4Network>,
    pub phase: Phase,
}

/// Body of `PUT /api/v1/endpoints/{namespace}/{name}`: the whole new set. The namespace and name
/// come from the path; they may be repeated here (a shown `Endpoints` put back), but must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetEndpoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub addresses: Vec<EndpointAddress>,
    #[serde(default)]
    pub ports: Vec<Port>,
}

/// Every error body: what is wrong and, for a bad request, which field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
