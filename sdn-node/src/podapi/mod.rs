//! The local pod API: the agent serves it on a unix socket only root can
//! use ([`server`]); `sdn-cni` and tests call it ([`client`]). These are
//! its wire types, JSON in camelCase.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/pods` [`AttachRequest`] | [`Attachment`] (the same one again for a repeated request) |
//! | `DELETE /v1/pods/{id}?ifname=eth0` | [`Detached`]; nothing to remove is success |
//! | `GET /v1/pods` | every [`Attachment`] of the node |
//! | `GET /v1/pods/{id}/check?ifname=eth0` | [`Attachment`] if the pod is plumbed as recorded, else `differs` naming what |
//! | `POST /v1/gc` [`GcRequest`] | [`GcResponse`] |
//! | `GET /v1/status` | [`Status`] |
//!
//! Errors are [`ApiError`] bodies with an HTTP status to match.

pub mod client;
pub mod server;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the agent serves the pod API unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/sdn/sdn-node.sock";

/// A request to attach a pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachRequest {
    /// The runtime's container (sandbox) ID, CNI's `CNI_CONTAINERID`.
    pub id: String,
    /// The pod's network namespace, e.g. `/var/run/netns/<name>` or `/proc/<pid>/ns/net`.
    pub netns: PathBuf,
    /// The interface in the pod [default: eth0].
    #[serde(default = "default_ifname")]
    pub ifname: String,
    /// The CNI network name the pod was added through; GC only collects its own network's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The pod's Kubernetes namespace (`K8S_POD_NAMESPACE`), when the runtime knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name (`K8S_POD_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Whether `value` holds only the characters container IDs and interface
/// names may have here: letters, digits, '-', '_' and '.'. They go into URL
/// paths and device names unescaped, so every side checks the same set.
pub fn name_chars(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A container ID as the CNI specification has them: 1 to 128 of [`name_chars`], the first a
/// letter or digit (which also keeps "." and ".." out of paths made of it). `sdn-cni` and the
/// agent check the same.
pub fn container_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && name_chars(id) && id.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// An interface name Linux takes: 1 to 15 of [`name_chars`], not "." or "..".
pub fn ifname_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && name_chars(name) && name != "." && name != ".."
}

pub fn default_ifname() -> String {
    "eth0".into()
}

/// A pod's attachment: what it asked for and what it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    pub ifname: String,
    pub netns: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// The MAC address of the pod's interface.
    pub mac: String,
    /// The host side of the veth pair, on `br0`.
    pub host_veth: String,
    pub host_mac: String,
    /// The cluster DNS the pod should use.
    pub dns: Dns,
}

/// The cluster DNS server of the node and the cluster domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    pub nameservers: Vec<Ipv4Addr>,
    /// e.g. `cluster.local`.
    pub domain: String,
}

/// The answer to a detach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Detached {
    pub id: String,
    pub ifname: String,
    /// The address given back, if the pod had one.
    pub released: Option<Ipv4Addr>,
}

/// One attachment's identity, as CNI's `cni.dev/valid-attachments` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentKey {
    pub id: String,
    pub ifname: String,
}

/// Detach every pod of `network` that is not in `valid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcRequest {
    pub network: String,
    pub valid: Vec<AttachmentKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcResponse {
    pub released: Vec<AttachmentKey>,
}

/// Whether the agent can attach pods now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub ready: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What kind of failure an [`ApiError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// The request is wrong; fix it (HTTP 400).
    Invalid,
    /// No address left in the node's subnet (HTTP 409).
    Exhausted,
    /// No such attachment (HTTP 404).
    Unknown,
    /// The attachment is not plumbed as recorded (HTTP 409); the message names what differs.
    Differs,
    /// The node could not do it (HTTP 500).
    Internal,
}

/// An error body of the pod API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}")]
pub struct ApiError {
    pub error: String,
    pub code: ErrorKind,
}
