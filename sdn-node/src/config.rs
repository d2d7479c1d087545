//! The agent's flags. Paths are per node, so several agents (one per
//! network namespace) can share a machine in tests and labs.

use std::net::{Ipv4Addr, SocketAddr};
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
}

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error(transparent)]
    Etcd(#[from] EtcdConfigError),
    #[error("--node-name: {0}")]
    Name(String),
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
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase()
}

impl NodeArgs {
    pub fn resolve(self) -> Result<NodeConfig, NodeConfigError> {
        let name = self.node_name.unwrap_or_else(host_name);
        validate_label("name", &name).map_err(|e| NodeConfigError::Name(e.to_string()))?;
        Ok(NodeConfig {
            pin_dir: self.bpffs.join("sdn").join(&name),
            bpffs: self.bpffs,
            state_dir: self.state_dir.join(&name),
            name,
            ip: self.node_ip,
            etcd: self.etcd.resolve(EtcdFile::default())?,
            socket: self.socket,
            metrics_listen: self.metrics_listen,
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
    }
}
