//! The agent's flags. Paths are per node, so several agents (one per
//! network namespace) can share a machine in tests and labs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use sdn_cluster::etcd::{EtcdArgs, EtcdConfig, EtcdConfigError, EtcdFile};
use sdn_cluster::records::validate_label;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// This node's name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's underlay address [default: the address of the interface holding the default route].
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// The node's network namespace (e.g. /run/netns/node1), for labs and tests: devices, NAT
    /// and programs go there, while etcd, the pod API and the status endpoint stay where the
    /// agent started [default: the agent's own].
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Where a bpffs is (or is mounted by the agent); pins go under <bpffs>/sdn/<node>.
    #[arg(long, default_value = "/sys/fs/bpf", value_name = "DIR")]
    pub bpffs: PathBuf,
    /// State (pod address records) is kept under <state-dir>/<node>.
    #[arg(long, default_value = "/var/lib/sdn", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The pod API's unix socket (root only).
    #[arg(long, default_value = "/run/sdn/sdn-node.sock", value_name = "PATH")]
    pub socket: PathBuf,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9441", value_name = "ADDR")]
    pub metrics_listen: SocketAddr,
    /// The cluster DNS domain, for the search list pods get.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// Tunnel through the kernel's vxlan0 only, instead of wrapping and unwrapping VXLAN in the
    /// eBPF programs on the underlay interface (for kernels or NICs where that misbehaves; both
    /// kinds of node talk to each other).
    #[arg(long)]
    pub kernel_vxlan: bool,
    #[command(flatten)]
    pub cni: CniArgs,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// The node's cluster DNS server.
#[derive(Debug, Clone, Args)]
pub struct DnsArgs {
    /// Serve no cluster DNS on this node.
    #[arg(long)]
    pub no_dns: bool,
    /// Another address the cluster DNS listens on, besides the node's gateway address
    /// (repeatable).
    #[arg(long = "dns-address", value_name = "IP")]
    pub dns_addresses: Vec<IpAddr>,
    /// The cluster DNS port (UDP and TCP).
    #[arg(long, default_value_t = 53, value_name = "PORT")]
    pub dns_port: u16,
    /// An upstream resolver for names outside the cluster, IP or IP:PORT (repeatable)
    /// [default: the nameservers of --dns-resolv-conf].
    #[arg(long = "dns-upstream", value_name = "ADDR", value_parser = parse_upstream)]
    pub dns_upstreams: Vec<SocketAddr>,
    /// Where the default upstream resolvers are read from.
    #[arg(long, default_value = "/etc/resolv.conf", value_name = "PATH")]
    pub dns_resolv_conf: PathBuf,
    /// Forward nothing: names outside the cluster are refused.
    #[arg(long, conflicts_with = "dns_upstreams")]
    pub no_dns_upstream: bool,
    /// A network whose clients get answers, besides the cluster network, this node and
    /// loopback (repeatable). Everyone else is refused.
    #[arg(long = "dns-allow", value_name = "CIDR")]
    pub dns_allow: Vec<ipnetwork::IpNetwork>,
    /// TTL of positive answers, in seconds.
    #[arg(long, default_value_t = sdn_dns::DEFAULT_TTL, value_name = "SECONDS")]
    pub dns_ttl: u32,
    /// TTL of negative answers (NXDOMAIN, NODATA), in seconds.
    #[arg(long, default_value_t = sdn_dns::DEFAULT_NEGATIVE_TTL, value_name = "SECONDS")]
    pub dns_negative_ttl: u32,
    /// TCP connections one client address may hold open at once (1 to 256, the server's
    /// total); more are closed at once.
    #[arg(long, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=crate::dns::server::TCP_CONNECTIONS as i64))]
    pub dns_tcp_connections_per_client: u32,
    /// Queries of one client address that may be upstream at once (1 to 512, the server's
    /// total); more get SERVFAIL at once.
    #[arg(long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=crate::dns::server::FORWARDS as i64))]
    pub dns_forwards_per_client: u32,
    /// UDP response rate limiting: identical responses a second to one client network (/24,
    /// /56); 0 turns it off.
    #[arg(long, default_value_t = sdn_dns::rrl::DEFAULT_RESPONSES_PER_SECOND, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(sdn_dns::rrl::MAX_RESPONSES_PER_SECOND)))]
    pub dns_rrl_responses_per_second: u32,
    /// How long a client network that went over the rate stays limited after it stopped, at
    /// most (1 to 3600 seconds).
    #[arg(long, default_value_t = sdn_dns::rrl::DEFAULT_WINDOW_SECONDS, value_name = "SECONDS",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(sdn_dns::rrl::MAX_WINDOW_SECONDS)))]
    pub dns_rrl_window: u32,
    /// Every N-th response over the rate is sent truncated (the client retries over TCP), the
    /// others dropped; 0 drops all, 1 truncates all (0 to 10).
    #[arg(long, default_value_t = sdn_dns::rrl::DEFAULT_SLIP, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(sdn_dns::rrl::MAX_SLIP)))]
    pub dns_rrl_slip: u32,
}

impl DnsArgs {
    /// The rate limiting settings of the flags (checked again by `sdn_dns`).
    pub fn rrl(&self) -> sdn_dns::rrl::RrlConfig {
        sdn_dns::rrl::RrlConfig {
            responses_per_second: self.dns_rrl_responses_per_second,
            window_seconds: self.dns_rrl_window,
            slip: self.dns_rrl_slip,
            ..sdn_dns::rrl::RrlConfig::default()
        }
    }
}

/// An upstream resolver: `IP:PORT`, or an `IP` on port 53.
fn parse_upstream(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{value:?} is neither IP nor IP:PORT"))
}

/// The `cniVersion` of the installed list unless `--cni-version` says otherwise.
pub const DEFAULT_CNI_VERSION: &str = "1.0.0";

/// Where the agent installs the CNI plugin and its configuration on start.
#[derive(Debug, Clone, Args)]
pub struct CniArgs {
    /// The CNI network configuration list written on start.
    #[arg(long, default_value = "/etc/cni/net.d/10-sdn.conflist", value_name = "PATH")]
    pub cni_conflist: PathBuf,
    /// Where the sdn-cni binary (taken from beside sdn-node) is installed.
    #[arg(long, default_value = "/opt/cni/bin", value_name = "DIR")]
    pub cni_bin_dir: PathBuf,
    /// The network's name in the list, which runtimes show and GC by.
    #[arg(long, default_value = "sdn", value_name = "NAME")]
    pub cni_network: String,
    /// The list's cniVersion, which is also the version of the results runtimes get. 1.0.0 by
    /// default: the libcni of the runtimes people run (podman 4 and containerd 1.6 and 1.7, as
    /// Debian 12 ships them) refuses 1.1.0 results, and so do Debian 12's reference plugins in a
    /// chain. 1.1.0 (GC, STATUS, the pod MTU in the result) for runtimes that read it.
    #[arg(long, default_value = DEFAULT_CNI_VERSION, value_name = "VERSION",
          value_parser = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])]
    pub cni_version: String,
    /// A plugin to chain after sdn-cni (repeatable, in order), e.g. portmap, tuning, bandwidth.
    #[arg(long = "cni-chain", value_name = "PLUGIN")]
    pub cni_chain: Vec<String>,
    /// Install nothing (the runtime's CNI files are managed some other way).
    #[arg(long)]
    pub no_cni_install: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error(transparent)]
    Etcd(#[from] EtcdConfigError),
    #[error("--node-name: {0}")]
    Name(String),
    #[error("--cluster-domain: {0:?} is not a DNS domain (dot-separated DNS-1123 labels)")]
    Domain(String),
    #[error("--cni-network: {0:?} must start with a letter or digit, then letters, digits, '_', '.' or '-'")]
    Network(String),
    #[error("--cni-chain: {0:?} is not a plugin name (letters, digits, '_', '.' or '-')")]
    Chain(String),
}

/// The validated settings of one agent.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub etcd: EtcdConfig,
    /// The bpffs mount point.
    pub bpffs: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub metrics_listen: SocketAddr,
    pub cluster_domain: String,
    pub kernel_vxlan: bool,
    /// `None` when the agent installs no CNI files.
    pub cni: Option<CniArgs>,
    /// `None` when the node serves no cluster DNS.
    pub dns: Option<DnsArgs>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase()
}

impl NodeArgs {
    pub fn resolve(self) -> Result<NodeConfig, NodeConfigError> {
        let name = self.node_name.unwrap_or_else(host_name);
        validate_label("name", &name).map_err(|e| NodeConfigError::Name(e.to_string()))?;
        let domain = self.cluster_domain.trim_end_matches('.').to_lowercase();
        if domain.is_empty() || domain.split('.').any(|label| validate_label("domain", label).is_err()) {
            return Err(NodeConfigError::Domain(self.cluster_domain));
        }
        let plugin_name =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        let network = &self.cni.cni_network;
        if !network.starts_with(|c: char| c.is_ascii_alphanumeric()) || !plugin_name(network) {
            return Err(NodeConfigError::Network(network.clone()));
        }
        if let Some(bad) = self.cni.cni_chain.iter().find(|p| !plugin_name(p)) {
            return Err(NodeConfigError::Chain(bad.clone()));
        }
        Ok(NodeConfig {
            pin_dir: self.bpffs.join("sdn").join(&name),
            bpffs: self.bpffs,
            state_dir: self.state_dir.join(&name),
            name,
            ip: self.node_ip,
            etcd: self.etcd.resolve(EtcdFile::default())?,
            socket: self.socket,
            metrics_listen: self.metrics_listen,
            cluster_domain: domain,
            kernel_vxlan: self.kernel_vxlan,
            cni: (!self.cni.no_cni_install).then_some(self.cni),
            dns: (!self.dns.no_dns).then_some(self.dns),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NodeArgs,
    }

    #[test]
    fn per_node_paths_and_named_errors() {
        let cli =
            Cli::try_parse_from(["sdn-node", "--node-name", "node-1", "--bpffs", "/sys/fs/bpf/t"]).expect("parse");
        let config = cli.args.resolve().expect("valid");
        assert_eq!(config.pin_dir, PathBuf::from("/sys/fs/bpf/t/sdn/node-1"));
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/sdn/node-1"));
        let cli = Cli::try_parse_from(["sdn-node", "--node-name", "Node_1"]).expect("parse");
        assert!(cli.args.resolve().expect_err("bad name").to_string().starts_with("--node-name: name:"));
        let err = Cli::try_parse_from(["sdn-node", "--node-ip", "10.0.0.300"]).err().expect("bad ip").to_string();
        assert!(err.contains("--node-ip"), "{err}");
        for (flag, value) in [("--cluster-domain", "cluster..local"), ("--cni-network", "_x"), ("--cni-chain", "a/b")] {
            let cli = Cli::try_parse_from(["sdn-node", "--node-name", "n", flag, value]).expect("parse");
            let err = cli.args.resolve().expect_err(flag).to_string();
            assert!(err.starts_with(flag), "{err}");
        }
        assert!(Cli::try_parse_from(["sdn-node", "--cni-version", "2.0.0"]).is_err(), "unknown CNI version");
        let cni = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["sdn-node", "--node-name", "n"], args].concat()).expect("parse");
            cli.args.resolve().expect("valid").cni.expect("installs").cni_version
        };
        assert_eq!(cni(&[]), "1.0.0", "the newest version Debian 12's podman and containerd read");
        assert_eq!(cni(&["--cni-version", "1.1.0"]), "1.1.0");
        let cli = Cli::try_parse_from(["sdn-node", "--node-name", "n", "--no-cni-install"]).expect("parse");
        assert!(cli.args.resolve().expect("valid").cni.is_none());
        let cli =
            Cli::try_parse_from(["sdn-node", "--dns-upstream", "192.0.2.53", "--dns-upstream", "[2001:db8::1]:5353"])
                .expect("parse");
        let upstreams: Vec<String> = cli.args.dns.dns_upstreams.iter().map(ToString::to_string).collect();
        assert_eq!(upstreams, ["192.0.2.53:53", "[2001:db8::1]:5353"]);
        let err = Cli::try_parse_from(["sdn-node", "--dns-upstream", "resolver"]).err().expect("bad upstream");
        assert!(err.to_string().contains("neither IP nor IP:PORT"), "{err}");
        let both = Cli::try_parse_from(["sdn-node", "--dns-upstream", "192.0.2.53", "--no-dns-upstream"]);
        assert!(both.is_err(), "an upstream and none at once");
    }

    #[test]
    fn dns_limits_default_and_bounds() {
        let dns = |args: &[&str]| Cli::try_parse_from([&["sdn-node"], args].concat()).map(|cli| cli.args.dns);
        let defaults = dns(&[]).expect("parse");
        assert_eq!((defaults.dns_tcp_connections_per_client, defaults.dns_forwards_per_client), (16, 32));
        assert_eq!(defaults.rrl(), sdn_dns::rrl::RrlConfig::default(), "100/s, 15 s window, slip 2");
        let off = dns(&["--dns-rrl-responses-per-second", "0"]).expect("0 is off");
        assert!(!off.rrl().enabled());
        let set = dns(&["--dns-rrl-window", "3600", "--dns-rrl-slip", "0", "--dns-forwards-per-client", "512"]);
        let set = set.expect("the bounds themselves");
        assert_eq!((set.rrl().window_seconds, set.rrl().slip, set.dns_forwards_per_client), (3600, 0, 512));
        for (flag, value) in [
            ("--dns-tcp-connections-per-client", "0"),
            ("--dns-tcp-connections-per-client", "257"),
            ("--dns-forwards-per-client", "0"),
            ("--dns-forwards-per-client", "513"),
            ("--dns-rrl-responses-per-second", "1000001"),
            ("--dns-rrl-responses-per-second", "-1"),
            ("--dns-rrl-window", "0"),
            ("--dns-rrl-window", "3601"),
            ("--dns-rrl-slip", "11"),
        ] {
            let arg = format!("{flag}={value}");
            let err = dns(&[&arg]).err().unwrap_or_else(|| panic!("{arg} accepted")).to_string();
            assert!(err.contains(flag), "{flag} {value}: {err}");
        }
    }
}
