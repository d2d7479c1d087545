//! The master's configuration: a TOML file, overridden by flags (and their
//! environment variables), then validated as a whole. Every refusal names the
//! field and where it came from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
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
/// Time a client has to send a request's header (and, with TLS, to finish
/// the handshake before that). Nothing is authenticated until the header is
/// in, so this bounds how long an unknown client holds a connection.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from a complete header to the complete response: a slow body, or a
/// handler stuck on etcd, ends with 408.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; further ones wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// A header timeout of minutes no longer stops a slow client.
const HEADER_READ_TIMEOUT_SECS: RangeInclusive<u64> = 1..=300;
/// At least 3 s: a node registration waits up to 2 s for its subnet, and a
/// shorter timeout would cut it off.
const REQUEST_TIMEOUT_SECS: RangeInclusive<u64> = 3..=3600;
/// Up to the kernel's default `fs.nr_open`: no process gets more descriptors.
const MAX_CONNECTIONS: RangeInclusive<usize> = 1..=1_048_576;

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
    #[error(
        "token file {path} has mode {mode:04o}: group or others may read or change it; \
         make it the owner's alone with `chmod 600 {path}`"
    )]
    TokenMode { path: PathBuf, mode: u32 },
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
    /// Send pod traffic to nodes on the same underlay segment without VXLAN
    /// (`true` or `false`) [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub direct_routing: Option<bool>,
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
    /// Serve plain HTTP on an address that is not loopback (the token then
    /// crosses the network in clear text).
    #[arg(long)]
    pub insecure_listen: bool,
    /// Seconds a client has to send a request header [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub header_read_timeout: Option<u64>,
    /// Seconds from a request's header to its response [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
    /// Connections the admin API serves at once [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
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
    direct_routing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileApi {
    listen: Option<SocketAddr>,
    token_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    insecure_listen: Option<bool>,
    header_read_timeout: Option<u64>,
    request_timeout: Option<u64>,
    max_connections: Option<usize>,
}

/// The admin API's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    /// Certificate and key for TLS; plain HTTP without.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP on an address that is not loopback was asked for.
    pub insecure_listen: bool,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            token_file: DEFAULT_TOKEN_FILE.into(),
            tls: None,
            insecure_listen: false,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ApiConfig {
    /// Checks the settings that do not need the files they name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let seconds = |field, value: Duration, range: RangeInclusive<u64>| {
            if range.contains(&value.as_secs()) {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    field,
                    reason: format!("{} s; must be {} to {} seconds", value.as_secs(), range.start(), range.end()),
                })
            }
        };
        seconds("api.header-read-timeout (--header-read-timeout)", self.header_read_timeout, HEADER_READ_TIMEOUT_SECS)?;
        seconds("api.request-timeout (--request-timeout)", self.request_timeout, REQUEST_TIMEOUT_SECS)?;
        if !MAX_CONNECTIONS.contains(&self.max_connections) {
            return Err(ConfigError::Invalid {
                field: "api.max-connections (--max-connections)",
                reason: format!(
                    "{}; must be {} to {}",
                    self.max_connections,
                    MAX_CONNECTIONS.start(),
                    MAX_CONNECTIONS.end()
                ),
            });
        }
        // The bearer token travels in every request: in clear text it may only
        // stay on this host, unless the operator says the network is trusted.
        if self.tls.is_none() && !is_loopback(self.listen.ip()) && !self.insecure_listen {
            return Err(ConfigError::Invalid {
                field: "api.listen (--listen)",
                reason: format!(
                    "{} is not a loopback address, and without TLS the admin token would cross the network in \
                     clear text; give api.tls-cert-file and api.tls-key-file (--tls-cert-file, --tls-key-file), \
                     or set api.insecure-listen = true (--insecure-listen) on a network you trust",
                    self.listen
                ),
            });
        }
        Ok(())
    }
}

/// Loopback, also as an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
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
            direct_routing: args.direct_routing.or(file.network.direct_routing).unwrap_or(defaults.direct_routing),
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
            // A bare flag can only switch it on; the file may say either.
            insecure_listen: args.insecure_listen || file.api.insecure_listen.unwrap_or(false),
            header_read_timeout: args
                .header_read_timeout
                .or(file.api.header_read_timeout)
                .map_or(DEFAULT_HEADER_READ_TIMEOUT, Duration::from_secs),
            request_timeout: args
                .request_timeout
                .or(file.api.request_timeout)
                .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::from_secs),
            max_connections: args.max_connections.or(file.api.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
        };
        api.validate()?;
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

/// Refuses a token file whose mode gives group or others any access: who can
/// read the token administers the cluster, and who can write it can lock the
/// operators out at the next start.
pub fn check_token_mode(path: &Path, mode: u32) -> Result<(), ConfigError> {
    if mode & 0o077 == 0 { Ok(()) } else { Err(ConfigError::TokenMode { path: path.to_owned(), mode: mode & 0o7777 }) }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })
}

/// Reads the admin token: the file's content less surrounding white space.
/// A token file group or others may read is refused (see [`check_token_mode`]).
pub fn read_token(path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    // metadata follows a symbolic link, so the mode is that of the file read.
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    check_token_mode(path, meta.permissions().mode())?;
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
        assert_eq!(c.api, ApiConfig::default());
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:8440");
        assert_eq!(c.api.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.api.request_timeout, Duration::from_secs(30));
        assert_eq!(c.api.max_connections, 1024);
        assert_eq!(c.lease_ttl, DEFAULT_LEASE_TTL);
    }

    #[test]
    fn api_limits_from_the_file_and_flags() {
        let f = file(
            "[api]\nlisten = \"0.0.0.0:8440\"\ninsecure-listen = true\nheader-read-timeout = 5\nrequest-timeout = 60\nmax-connections = 64\n",
        );
        let args = MasterArgs { config: Some(f.path().into()), request_timeout: Some(20), ..Default::default() };
        let api = MasterConfig::load(args).expect("loads").api;
        assert!(api.insecure_listen);
        assert_eq!(api.header_read_timeout, Duration::from_secs(5));
        assert_eq!(api.request_timeout, Duration::from_secs(20), "the flag wins");
        assert_eq!(api.max_connections, 64);

        let args = MasterArgs {
            listen: Some("[::]:8440".parse().expect("addr")),
            insecure_listen: true,
            ..Default::default()
        };
        assert!(MasterConfig::load(args).expect("the flag allows it").api.insecure_listen);
    }

    fn api(listen: &str) -> ApiConfig {
        ApiConfig { listen: listen.parse().expect("addr"), ..Default::default() }
    }

    fn refusal(api: &ApiConfig) -> String {
        api.validate().expect_err("refused").to_string()
    }

    #[test]
    fn api_limits_out_of_range_name_the_field() {
        let secs = Duration::from_secs;
        let cases = [
            (
                ApiConfig { header_read_timeout: secs(0), ..Default::default() },
                "api.header-read-timeout (--header-read-timeout): 0 s; must be 1 to 300",
            ),
            (ApiConfig { header_read_timeout: secs(301), ..Default::default() }, "api.header-read-timeout"),
            (
                ApiConfig { request_timeout: secs(2), ..Default::default() },
                "api.request-timeout (--request-timeout): 2 s; must be 3 to 3600",
            ),
            (ApiConfig { request_timeout: secs(3601), ..Default::default() }, "api.request-timeout"),
            (
                ApiConfig { max_connections: 0, ..Default::default() },
                "api.max-connections (--max-connections): 0; must be 1 to",
            ),
            (ApiConfig { max_connections: 1 << 21, ..Default::default() }, "api.max-connections"),
        ];
        for (api, expected) in cases {
            let err = refusal(&api);
            assert!(err.starts_with(expected), "{err:?} should start with {expected:?}");
        }
        for api in [
            ApiConfig {
                header_read_timeout: secs(1),
                request_timeout: secs(3),
                max_connections: 1,
                ..Default::default()
            },
            ApiConfig {
                header_read_timeout: secs(300),
                request_timeout: secs(3600),
                max_connections: 1_048_576,
                ..Default::default()
            },
        ] {
            api.validate().expect("the bounds are allowed");
        }
    }

    #[test]
    fn plain_http_off_loopback_needs_the_flag() {
        for listen in ["0.0.0.0:8440", "192.0.2.1:8440", "[::]:8440", "[2001:db8::1]:8440", "[::ffff:192.0.2.1]:8440"] {
            let err = refusal(&api(listen));
            assert!(err.starts_with("api.listen (--listen): "), "{err}");
            assert!(
                err.contains(listen) && err.contains("--tls-cert-file") && err.contains("--insecure-listen"),
                "{err}"
            );
            ApiConfig { insecure_listen: true, ..api(listen) }.validate().expect("allowed with the flag");
            ApiConfig { tls: Some(("/c.pem".into(), "/k.pem".into())), ..api(listen) }
                .validate()
                .expect("allowed with TLS");
        }
        for listen in ["127.0.0.1:8440", "127.1.2.3:8440", "[::1]:8440", "[::ffff:127.0.0.1]:8440"] {
            api(listen).validate().expect("loopback needs neither");
        }
    }

    #[test]
    fn token_file_others_may_access_is_refused() {
        let path = Path::new("/etc/sdn/admin-token");
        for mode in [0o100600, 0o100400, 0o100700] {
            check_token_mode(path, mode).expect("owner only");
        }
        for (mode, shown) in [(0o100640, "0640"), (0o100604, "0604"), (0o100620, "0620"), (0o104644, "4644")] {
            let err = check_token_mode(path, mode).expect_err("refused").to_string();
            assert!(err.contains("/etc/sdn/admin-token") && err.contains(shown), "{err}");
            assert!(err.contains("chmod 600 /etc/sdn/admin-token"), "{err}");
        }
    }

    #[test]
    fn read_token_checks_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let f = file("0123456789abcdef0123\n");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = read_token(f.path()).expect_err("group-readable");
        assert!(matches!(err, ConfigError::TokenMode { mode: 0o640, .. }), "{err}");
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
        assert!(!c.network.direct_routing, "off unless set");
    }

    #[test]
    fn direct_routing_from_the_file_or_a_flag() {
        let f = file("[network]\ndirect-routing = true\n");
        let from_file = MasterArgs { config: Some(f.path().into()), ..Default::default() };
        assert!(MasterConfig::load(from_file).expect("loads").network.direct_routing);
        let overridden =
            MasterArgs { config: Some(f.path().into()), direct_routing: Some(false), ..Default::default() };
        assert!(!MasterConfig::load(overridden).expect("loads").network.direct_routing);
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: MasterArgs,
        }
        use clap::Parser;
        let bare = Cli::try_parse_from(["sdn-master", "--direct-routing"]).expect("a bare flag parses");
        assert_eq!(bare.args.direct_routing, Some(true));
        let err = Cli::try_parse_from(["sdn-master", "--direct-routing=maybe"]).err().expect("not a bool");
        assert!(err.to_string().contains("--direct-routing"), "{err}");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: [(&str, &str); 13] = [
            (
                "[network]\nhost-subnet-length = 20\n",
                "network.host-subnet-length (--host-subnet-length): hostSubnetLength",
            ),
            ("[network]\ncluster-network = \"10.1.0.1/16\"\n", "network.cluster-network (--cluster-network)"),
            ("[etcd]\nprefix = \"//\"\n", "etcd.prefix"),
            ("[network]\ncluster-network = \"10.1.0.0/16\"\nservice-network = \"10.1.0.0/20\"\n", "serviceNetwork"),
            ("[network]\ncluster-network = \"not-a-cidr\"\n", "cluster-network"),
            ("[network]\nclustr-network = \"10.1.0.0/16\"\n", "unknown field `clustr-network`"),
            ("[network]\ndirect-routing = \"yes\"\n", "direct-routing"),
            ("[etcd]\nendpoints = [\"127.0.0.1:2379\"]\n", "etcd.endpoints"),
            ("[etcd]\ncert-file = \"/c.pem\"\n", "etcd.key-file"),
            ("[etcd]\nendpoints = [\"https://127.0.0.1:2379\"]\n", "etcd.endpoints"),
            ("[api]\nlisten = \"0.0.0.0:8440\"\n", "api.listen (--listen)"),
            ("[api]\nmax-connections = 0\n", "api.max-connections (--max-connections)"),
            ("[api]\nheader-read-timeout = 0\n", "api.header-read-timeout (--header-read-timeout)"),
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
