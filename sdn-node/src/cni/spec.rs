//! The CNI 1.1.0 contract as sdn-cni speaks it: versions, commands, error
//! codes, the environment and the network configuration. Pure: it reads
//! nothing but its arguments.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::podapi::{AttachmentKey, DEFAULT_SOCKET};

/// A CNI specification version sdn-cni speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    pub const ALL: [Version; 5] = [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0, Version::V1_0_0, Version::V1_1_0];
    /// The version sdn-cni implements; errors raised before the configuration names one use it.
    pub const LATEST: Version = Version::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == value)
    }

    fn supported() -> String {
        Self::ALL.map(Version::as_str).join(", ")
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// The first CNI version that has the command.
    pub fn since(self) -> Version {
        match self {
            Command::Check => Version::V0_4_0,
            Command::Gc | Command::Status => Version::V1_1_0,
            Command::Add | Command::Del | Command::Version => Version::V0_3_0,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `code` of a CNI error result. sdn-cni exits with status 1 and prints
/// `{"cniVersion", "code", "msg", "details"}` on stdout; 1 to 99 are the
/// specification's, 100 and up are sdn-cni's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    /// The configuration's `cniVersion` is not one sdn-cni speaks (0.3.0, 0.3.1,
    /// 0.4.0, 1.0.0, 1.1.0), or the command is newer than it: CHECK needs 0.4.0,
    /// GC and STATUS need 1.1.0.
    IncompatibleVersion = 1,
    /// The configuration has a top-level field sdn-cni does not take; the message
    /// names the field and its value. `ipam` and `ipMasq` get a hint: the node agent
    /// hands out the addresses and masquerades traffic leaving the cluster.
    UnsupportedField = 2,
    /// The container is unknown: `CNI_NETNS` does not exist (ADD, CHECK), or the
    /// agent has no attachment for the container ID and interface. Nothing was
    /// made, so the runtime has nothing to clean up.
    UnknownContainer = 3,
    /// A CNI environment variable is missing or invalid (`CNI_COMMAND`,
    /// `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`); the message names
    /// which. Also when the agent refuses the request, as all its inputs come from
    /// the environment.
    InvalidEnvironment = 4,
    /// stdin could not be read (or sdn-cni could not start its event loop).
    IoFailure = 5,
    /// The network configuration is not a JSON object.
    DecodingFailure = 6,
    /// The network configuration is invalid: `cniVersion` is missing, or a known
    /// field has the wrong type or value (`name`, `socket`, `prevResult`,
    /// `cni.dev/valid-attachments`, ...); the message names the field.
    InvalidConfig = 7,
    /// The sdn-node agent is not reachable on its socket (not started yet, or
    /// restarting); the runtime should try again later.
    TryAgainLater = 11,
    /// STATUS: the sdn-node agent is not reachable or not ready to attach pods
    /// (e.g. the node has no subnet yet); the message says why.
    NotAvailable = 50,
    /// No free address left in the node's pod subnet.
    AddressesExhausted = 100,
    /// CHECK: the pod is not plumbed as the agent recorded it, or the runtime's
    /// `prevResult` differs from the agent's record; the message names what differs.
    Differs = 101,
    /// The sdn-node agent failed the request, or answered something sdn-cni does not
    /// understand (sdn-cni and sdn-node of different releases).
    AgentFailed = 102,
}

/// Why an invocation failed; [`CniError::code`] is its CNI error code.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("failed to decode the network configuration: {0}")]
    Decode(String),
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    #[error("CNI version {0:?} is not supported; sdn-cni supports {supported}", supported = Version::supported())]
    UnsupportedVersion(String),
    #[error("{command} needs CNI version {} or later; the network configuration has {version}", command.since())]
    CommandTooNew { command: Command, version: Version },
    #[error("{}", unsupported_fields(.0))]
    UnsupportedFields(Vec<(String, Value)>),
    /// Each entry names its variable.
    #[error("invalid CNI environment: {}", .0.join("; "))]
    Environment(Vec<String>),
    #[error("the network namespace {0} does not exist")]
    NoNetns(String),
    #[error("the sdn-node agent is not reachable on {}; try again once it runs", socket.display())]
    Unreachable { socket: PathBuf, reason: String },
    #[error("{0}")]
    NotAvailable(String),
    #[error("the sdn-node agent refused the request: {0}")]
    Refused(String),
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Differs(String),
    #[error("the sdn-node agent failed: {0}")]
    AgentFailed(String),
}

fn unsupported_fields(fields: &[(String, Value)]) -> String {
    let listed: Vec<String> = fields.iter().map(|(key, value)| format!("{key:?}: {value}")).collect();
    let noun = if fields.len() == 1 { "field" } else { "fields" };
    format!("unsupported {noun} {}", listed.join(", "))
}

impl CniError {
    pub fn code(&self) -> Code {
        match self {
            CniError::Io { .. } => Code::IoFailure,
            CniError::Decode(_) => Code::DecodingFailure,
            CniError::InvalidConfig(_) => Code::InvalidConfig,
            CniError::UnsupportedVersion(_) | CniError::CommandTooNew { .. } => Code::IncompatibleVersion,
            CniError::UnsupportedFields(_) => Code::UnsupportedField,
            CniError::Environment(_) | CniError::Refused(_) => Code::InvalidEnvironment,
            CniError::NoNetns(_) | CniError::Unknown(_) => Code::UnknownContainer,
            CniError::Unreachable { .. } => Code::TryAgainLater,
            CniError::NotAvailable(_) => Code::NotAvailable,
            CniError::Exhausted(_) => Code::AddressesExhausted,
            CniError::Differs(_) => Code::Differs,
            CniError::AgentFailed(_) => Code::AgentFailed,
        }
    }

    /// What the runtime's log should show beside the message, if anything.
    pub fn details(&self) -> Option<String> {
        match self {
            CniError::Unreachable { reason, .. } => Some(reason.clone()),
            CniError::UnsupportedFields(fields) => {
                let hints: Vec<&str> = fields.iter().filter_map(|(key, _)| hint(key)).collect();
                (!hints.is_empty()).then(|| hints.join("; "))
            }
            _ => None,
        }
    }
}

fn hint(field: &str) -> Option<&'static str> {
    match field {
        "ipam" => Some("sdn-cni takes pod addresses from the sdn-node agent (the node's subnet): remove \"ipam\""),
        "ipMasq" => Some("the sdn-node agent masquerades traffic leaving the cluster: remove \"ipMasq\""),
        _ => None,
    }
}

/// `CNI_COMMAND`.
pub fn command(env: &HashMap<String, String>) -> Result<Command, CniError> {
    match env.get("CNI_COMMAND") {
        None => Err(CniError::Environment(vec!["CNI_COMMAND is missing".into()])),
        Some(value) => Command::parse(value).ok_or_else(|| {
            CniError::Environment(vec![format!(
                "CNI_COMMAND {value:?} is not one of ADD, DEL, CHECK, GC, STATUS, VERSION"
            )])
        }),
    }
}

/// The container an ADD, DEL or CHECK is about, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// `CNI_NETNS` as given; `None` only for a DEL without one.
    pub netns: Option<String>,
    pub ifname: String,
    pub args: PodArgs,
}

/// The keys of `CNI_ARGS` sdn-cni knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodArgs {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub infra_container_id: Option<String>,
    pub uid: Option<String>,
}

const NAME_CHARS: &str = "letters, digits, '-', '_' and '.'";

/// Checks `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and `CNI_ARGS` for
/// `command` (ADD, DEL or CHECK), reporting every problem at once. DEL
/// checks only what it uses: the container ID and the interface.
pub fn container(env: &HashMap<String, String>, command: Command) -> Result<Container, CniError> {
    let mut problems = Vec::new();
    let id = env.get("CNI_CONTAINERID").map(String::as_str).unwrap_or_default();
    if id.is_empty() {
        problems.push("CNI_CONTAINERID is missing".to_owned());
    } else if id.len() > 128 {
        problems.push(format!("CNI_CONTAINERID is {} bytes, more than 128", id.len()));
    } else if !crate::podapi::container_id_ok(id) {
        // The specification wants an alphanumeric first character; it also keeps "." and ".." out of the API's paths.
        problems.push(format!("CNI_CONTAINERID {id:?} must start with a letter or digit and hold only {NAME_CHARS}"));
    }
    let netns = env.get("CNI_NETNS").filter(|n| !n.is_empty());
    // DEL has no use for the namespace: it may be gone already, and the agent finds the pod by ID.
    if command != Command::Del {
        match netns {
            None => problems.push("CNI_NETNS is missing".to_owned()),
            // A value that was not UTF-8 arrives with U+FFFD; the agent could not be told the path.
            Some(n) if n.contains('\u{FFFD}') => problems.push(format!("CNI_NETNS {n:?} is not valid UTF-8")),
            Some(n) if !n.starts_with('/') => problems.push(format!("CNI_NETNS {n:?} is not an absolute path")),
            Some(_) => {}
        }
    }
    let ifname = env.get("CNI_IFNAME").map(String::as_str).unwrap_or_default();
    if ifname.is_empty() {
        problems.push("CNI_IFNAME is missing".to_owned());
    } else if ifname.len() > 15 {
        problems.push(format!("CNI_IFNAME {ifname:?} is {} bytes, more than 15", ifname.len()));
    } else if !crate::podapi::ifname_ok(ifname) {
        problems.push(format!("CNI_IFNAME {ifname:?} must hold only {NAME_CHARS}, and not be \".\" or \"..\""));
    }
    let args = match env.get("CNI_ARGS") {
        // DEL has no use for them either, and failing it over them would leave the runtime unable to tear
        // the sandbox down after an ADD that failed over the same arguments.
        Some(raw) if command != Command::Del => pod_args(raw).unwrap_or_else(|mut bad| {
            problems.append(&mut bad);
            PodArgs::default()
        }),
        _ => PodArgs::default(),
    };
    if !problems.is_empty() {
        return Err(CniError::Environment(problems));
    }
    Ok(Container { id: id.to_owned(), netns: netns.cloned(), ifname: ifname.to_owned(), args })
}

/// `CNI_ARGS`: `K=V;K=V`. Unknown keys are refused unless `IgnoreUnknown` is
/// true, so that a typo does not go unnoticed.
pub fn pod_args(raw: &str) -> Result<PodArgs, Vec<String>> {
    let mut problems = Vec::new();
    let mut seen: HashMap<&str, &str> = HashMap::new();
    // An empty pair (a trailing ';') says nothing; refusing it would only break a sloppy runtime.
    for pair in raw.split(';').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            None => problems.push(format!("CNI_ARGS has {pair:?}, which is not KEY=VALUE")),
            Some((key, value)) => {
                if seen.insert(key, value).is_some() {
                    problems.push(format!("CNI_ARGS has {key} twice"));
                }
            }
        }
    }
    let ignore_unknown = match seen.get("IgnoreUnknown") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("1") || v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("0") || v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            problems.push(format!("CNI_ARGS IgnoreUnknown={v} is not 1, 0, true or false"));
            false
        }
    };
    let mut args = PodArgs::default();
    let mut unknown: Vec<&str> = Vec::new();
    for (key, value) in &seen {
        let value = (*value).to_owned();
        match *key {
            "K8S_POD_NAMESPACE" => args.namespace = Some(value),
            // An empty name names nothing: the pod simply has none.
            "K8S_POD_NAME" => args.name = (!value.is_empty()).then_some(value),
            "K8S_POD_INFRA_CONTAINER_ID" => args.infra_container_id = Some(value),
            "K8S_POD_UID" => args.uid = Some(value),
            "IgnoreUnknown" => {}
            other => unknown.push(other),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        unknown.sort_unstable();
        problems
            .push(format!("CNI_ARGS has unknown key(s) {} (set IgnoreUnknown=1 to allow them)", unknown.join(", ")));
    }
    // The namespace becomes a search domain of the pod's resolv.conf (`<ns>.svc.<zone>`), so it must be a DNS
    // label; only Kubernetes runtimes pass it, and Kubernetes namespaces are such labels.
    if let Some(ns) = args.namespace.as_deref().filter(|ns| !rfc1123_label(ns)) {
        problems.push(format!(
            "CNI_ARGS K8S_POD_NAMESPACE={ns:?} is not an RFC 1123 label (at most 63 lowercase letters, digits \
             and '-', starting and ending with a letter or digit)"
        ));
    }
    if let Some(problem) = args.name.as_deref().and_then(pod_name_problem) {
        problems.push(format!("CNI_ARGS K8S_POD_NAME={:?} {problem}", args.name.as_deref().unwrap_or_default()));
    }
    if problems.is_empty() { Ok(args) } else { Err(problems) }
}

/// The longest `K8S_POD_NAME` taken, as Kubernetes bounds object names.
pub const POD_NAME_MAX: usize = 253;

/// What is wrong with a pod name as a runtime passes it in `K8S_POD_NAME`, if
/// anything. Runtimes name containers their own way (podman passes the
/// container's name, and its generated names have '_'; neither the CNI
/// specification nor the reference plugins ask for a DNS name), and the name
/// is only a label on the pod's record: never a path, a key or a DNS name.
/// So only what could hurt whoever reads it is refused: a name past
/// [`POD_NAME_MAX`] bytes, control characters (a newline would forge a line
/// of a log or a table), and bytes that were not UTF-8.
pub fn pod_name_problem(name: &str) -> Option<String> {
    if name.len() > POD_NAME_MAX {
        Some(format!("is {} bytes, more than {POD_NAME_MAX}", name.len()))
    } else if name.chars().any(char::is_control) {
        Some("holds a control character".to_owned())
    } else if name.contains('\u{FFFD}') {
        Some("is not valid UTF-8".to_owned())
    } else {
        None
    }
}

fn rfc1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            value.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// The top-level keys sdn-cni takes; anything else is [`Code::UnsupportedField`].
const KNOWN_FIELDS: [&str; 10] = [
    "cniVersion",
    "name",
    "type",
    "socket",
    "args",
    "runtimeConfig",
    "capabilities",
    "prevResult",
    "dns",
    "cni.dev/valid-attachments",
];

/// The network configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub version: Version,
    pub name: String,
    /// The agent's pod API socket.
    pub socket: PathBuf,
    pub prev_result: Option<Map<String, Value>>,
    /// GC's `cni.dev/valid-attachments`; `None` when the configuration has none.
    pub valid_attachments: Option<Vec<AttachmentKey>>,
}

#[derive(Deserialize)]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The network configuration from stdin: a JSON object, then `cniVersion`,
/// then unknown fields, then the types and values of the known ones.
pub fn netconf(stdin: &[u8]) -> Result<NetConf, CniError> {
    let mut map = match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(map)) => map,
        Ok(other) => return Err(CniError::Decode(format!("expected a JSON object, got {other}"))),
        Err(err) => return Err(CniError::Decode(err.to_string())),
    };
    let version = match map.get("cniVersion") {
        None | Some(Value::Null) => return Err(CniError::InvalidConfig("cniVersion is missing".into())),
        Some(Value::String(v)) => Version::parse(v).ok_or_else(|| CniError::UnsupportedVersion(v.clone()))?,
        Some(other) => return Err(CniError::InvalidConfig(format!("cniVersion {other} is not a string"))),
    };
    let unknown: Vec<(String, Value)> = map
        .iter()
        .filter(|(key, _)| !KNOWN_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !unknown.is_empty() {
        return Err(CniError::UnsupportedFields(unknown));
    }
    let name: String = take(&mut map, "name")?.ok_or_else(|| CniError::InvalidConfig("name is missing".into()))?;
    if !network_name(&name) {
        return Err(CniError::InvalidConfig(format!(
            "name {name:?} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
        )));
    }
    // Checked for their type only: sdn-cni has no use for their content.
    take::<String>(&mut map, "type")?;
    for key in ["args", "runtimeConfig", "capabilities", "dns"] {
        take::<Map<String, Value>>(&mut map, key)?;
    }
    let socket = match take::<String>(&mut map, "socket")? {
        None => PathBuf::from(DEFAULT_SOCKET),
        Some(s) if s.starts_with('/') => PathBuf::from(s),
        Some(s) => return Err(CniError::InvalidConfig(format!("socket {s:?} is not an absolute path"))),
    };
    let prev_result = take(&mut map, "prevResult")?;
    let valid_attachments = take::<Vec<ValidAttachment>>(&mut map, "cni.dev/valid-attachments")?
        .map(|valid| valid.into_iter().map(|v| AttachmentKey { id: v.container_id, ifname: v.ifname }).collect());
    Ok(NetConf { version, name, socket, prev_result, valid_attachments })
}

/// The field's value, if present and not null (as Go's decoding, which
/// libcni and most plugins use, treats null).
fn take<T: DeserializeOwned>(map: &mut Map<String, Value>, key: &str) -> Result<Option<T>, CniError> {
    match map.remove(key) {
        None => Ok(None),
        Some(value) => serde_json::from_value::<Option<T>>(value)
            .map_err(|err| CniError::InvalidConfig(format!("field {key:?}: {err}"))),
    }
}

fn network_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The `cniVersion` an error should carry: the configuration's if stdin
/// names one sdn-cni speaks, else [`Version::LATEST`].
pub fn answer_version(stdin: &[u8]) -> Version {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "cniVersion")]
        cni_version: Option<String>,
    }
    serde_json::from_slice::<Peek>(stdin)
        .ok()
        .and_then(|peek| peek.cni_version)
        .and_then(|v| Version::parse(&v))
        .unwrap_or(Version::LATEST)
}
