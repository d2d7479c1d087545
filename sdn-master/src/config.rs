//! The master's configuration: a TOML file, overridden by flags (and their
//! environment variables), then validated as a whole. Every refusal names the
//! field and where it came from.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ipnetwork::{IpNetwork, Ipv4Network};
use sdn_cluster::etcd::{EtcdArgs, EtcdConfig, EtcdConfigError, EtcdFile};
use sdn_cluster::{ClusterNetwork, NetworkError};
use serde::Deserialize;

pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8440));
pub const DEFAULT_TOKEN_FILE: &str = "/etc/sdn/admin-token";
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{file} (--{flag}): {source}", file = file_key(.source.field()), flag = flag(.source.field()))]
    Network {
        #[from]
        source: NetworkError,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Etcd(#[from] EtcdConfigError),
}

/// The config-file key of a `ClusterNetwork` field.
fn file_key(field: &str) -> String {
    format!("network.{}", flag(field))
}

/// The flag of a `ClusterNetwork` field (`hostSubnetLength` → `host-subnet-length`).
fn flag(field: &str) -> String {
    let kebab: String = field
        .chars()
        .flat_map(|c| if c.is_ascii_uppercase() { vec!['-', c.to_ascii_lowercase()] } else { vec![c] })
        .collect();
    if kebab == "network" { "cluster-network".into() } else { kebab }
}

/// Flags of `sdn-master`; each overrides the same setting of the file.
#[derive(Debug, Clone, Default, Args)]
pub struct MasterArgs {
    /// TOML configuration file (see docs/master.md).
    #[arg(long, env = "SDN_MASTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Name of this master in the leader election [default: host name and pid].
    #[arg(long)]
    pub name: Option<String>,
    /// Pod network, carved into one subnet per node [default: 10.1.0.0/16].
    #[arg(long, value_name = "CIDR")]
    pub cluster_network: Option<Ipv4Network>,
    /// Host bits of each node subnet [default: 8, a /24 per node].
    #[arg(long, value_name = "BITS")]
    pub host_subnet_length: Option<u8>,
    /// Service (cluster IP) network [default: 172.30.0.0/16].
    #[arg(long, value_name = "CIDR")]
    pub service_network: Option<IpNetwork>,
    /// VXLAN UDP port [default: 4789].
    #[arg(long, value_name = "PORT")]
    pub vxlan_port: Option<u16>,
    /// Pod MTU [default: each node's underlay MTU less 50].
    #[arg(long)]
    pub mtu: Option<u32>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Address of the admin API [default: 127.0.0.1:8440].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// File holding the admin API's bearer token [default: /etc/sdn/admin-token].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve the admin API over TLS with this certificate (with --tls-key-file).
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Key of --tls-cert-file.
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Seconds a dead leader blocks the standbys [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub lease_ttl: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    name: Option<String>,
    lease_ttl: Option<u64>,
    #[serde(default)]
    network: FileNetwork,
    #[serde(default)]
    etcd: EtcdFile,
    #[serde(default)]
    api: FileApi,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileNetwork {
    cluster_network: Option<Ipv4Network>,
    host_subnet_length: Option<u8>,
    service_network: Option<IpNetwork>,
    vxlan_port: Option<u16>,
    mtu: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileApi {
    listen: Option<SocketAddr>,
    token_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

/// The admin API's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    /// Certificate and key for TLS; plain HTTP without.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// The validated configuration of one master.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub name: String,
    pub network: ClusterNetwork,
    pub etcd: EtcdConfig,
    pub api: ApiConfig,
    pub lease_ttl: Duration,
}

fn pair(
    (cert_field, cert): (&'static str, Option<PathBuf>),
    (key_field, key): (&'static str, Option<PathBuf>),
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Invalid { field: key_field, reason: format!("needed with {cert_field}") }),
        (None, Some(_)) => Err(ConfigError::Invalid { field: cert_field, reason: format!("needed with {key_field}") }),
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

impl MasterConfig {
    pub fn load(args: MasterArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = ClusterNetwork::default();
        let network = ClusterNetwork {
            network: args.cluster_network.or(file.network.cluster_network).unwrap_or(defaults.network),
            host_subnet_length: args
                .host_subnet_length
                .or(file.network.host_subnet_length)
                .unwrap_or(defaults.host_subnet_length),
            service_network: args.service_network.or(file.network.service_network).unwrap_or(defaults.service_network),
            vxlan_port: args.vxlan_port.or(file.network.vxlan_port).unwrap_or(defaults.vxlan_port),
            mtu: args.mtu.or(file.network.mtu),
        };
        network.validate()?;

        let etcd = args.etcd.resolve(file.etcd)?;

        let api = ApiConfig {
            listen: args.listen.or(file.api.listen).unwrap_or(DEFAULT_LISTEN),
            token_file: args.token_file.or(file.api.token_file).unwrap_or_else(|| DEFAULT_TOKEN_FILE.into()),
            tls: pair(
                ("api.tls-cert-file", args.tls_cert_file.or(file.api.tls_cert_file)),
                ("api.tls-key-file", args.tls_key_file.or(file.api.tls_key_file)),
            )?,
        };
        let lease_ttl = args.lease_ttl.or(file.lease_ttl).map_or(DEFAULT_LEASE_TTL, Duration::from_secs);
        if !(Duration::from_secs(2)..=Duration::from_secs(300)).contains(&lease_ttl) {
            return Err(ConfigError::Invalid { field: "lease-ttl", reason: "must be 2 to 300 seconds".into() });
        }
        let name = args.name.or(file.name).unwrap_or_else(default_name);
        if name.is_empty() {
            return Err(ConfigError::Invalid { field: "name", reason: "must not be empty".into() });
        }
        Ok(Self { name, network, etcd, api, lease_ttl })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })
}

/// Reads the admin token: the file's content less surrounding white space.
/// A token file others may read is taken, with a warning.
pub fn read_token(path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!("token file {} is readable by other users; chmod 600 it", path.display());
    }
    let token = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let token = token.trim().to_owned();
    if token.len() < 16 {
        return Err(ConfigError::Invalid {
            field: "api.token-file",
            reason: format!("{} holds {} characters; a token needs at least 16", path.display(), token.len()),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn defaults() {
        let c = MasterConfig::load(MasterArgs::default()).expect("defaults load");
        assert_eq!(c.network, ClusterNetwork::default());
        assert_eq!(c.etcd.prefix, "/sdn");
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:8440");
        assert_eq!(c.lease_ttl, DEFAULT_LEASE_TTL);
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            "[network]\ncluster-network = \"10.128.0.0/14\"\nhost-subnet-length = 9\n[etcd]\nendpoints = [\"http://192.0.2.1:2379\"]\n",
        );
        let args = MasterArgs { config: Some(f.path().into()), host_subnet_length: Some(10), ..Default::default() };
        let c = MasterConfig::load(args).expect("loads");
        assert_eq!(c.network.network.to_string(), "10.128.0.0/14");
        assert_eq!(c.network.host_subnet_length, 10);
        assert_eq!(c.etcd.endpoints, ["http://192.0.2.1:2379"]);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: [(&str, &str); 9] = [
            (
                "[network]\nhost-subnet-length = 20\n",
                "network.host-subnet-length (--host-subnet-length): hostSubnetLength",
            ),
            ("[network]\ncluster-network = \"10.1.0.1/16\"\n", "network.cluster-network (--cluster-network)"),
            ("[etcd]\nprefix = \"//\"\n", "etcd.prefix"),
            ("[network]\ncluster-network = \"10.1.0.0/16\"\nservice-network = \"10.1.0.0/20\"\n", "serviceNetwork"),
            ("[network]\ncluster-network = \"not-a-cidr\"\n", "cluster-network"),
            ("[network]\nclustr-network = \"10.1.0.0/16\"\n", "unknown field `clustr-network`"),
            ("[etcd]\nendpoints = [\"127.0.0.1:2379\"]\n", "etcd.endpoints"),
            ("[etcd]\ncert-file = \"/c.pem\"\n", "etcd.key-file"),
            ("[etcd]\nendpoints = [\"https://127.0.0.1:2379\"]\n", "etcd.endpoints"),
        ];
        for (text, field) in cases {
            let f = file(text);
            let err = MasterConfig::load(MasterArgs { config: Some(f.path().into()), ..Default::default() })
                .expect_err(text)
                .to_string();
            assert!(err.contains(field), "{err:?} should name {field}");
        }
        let err = MasterConfig::load(MasterArgs { config: Some("/nonexistent.toml".into()), ..Default::default() })
            .expect_err("missing file");
        assert!(err.to_string().starts_with("config file /nonexistent.toml"), "{err}");
    }

    #[test]
    fn short_token_refused() {
        let f = file("short\n");
        assert!(read_token(f.path()).expect_err("short").to_string().contains("at least 16"));
        let f = file("  0123456789abcdef0123  \n");
        assert_eq!(read_token(f.path()).expect("token"), "0123456789abcdef0123");
    }
}
