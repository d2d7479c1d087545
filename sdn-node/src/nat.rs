//! NAT for traffic leaving the cluster network, in an nftables table of the
//! agent's own (`inet sdn`). The ruleset is generated as text (pure) and
//! applied with `nft -f -` in one transaction, which replaces the whole
//! table atomically; this is how Kubernetes' nftables proxy (knftables)
//! drives nftables too. Rules of other tables are never read or touched.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnetwork::Ipv4Network;

pub const TABLE: &str = "sdn";

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("running nft (Debian package nftables): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the {TABLE} table: {0}")]
    Refused(String),
}

/// The `inet sdn` table: masquerade what leaves the cluster network, accept
/// VXLAN between nodes and keep it out of conntrack (a tunnel packet is
/// never NATed or filtered by state, so tracking it only costs a lookup per
/// packet and a table entry per node pair, on both nodes). Declaring the table first and deleting it in the
/// same transaction makes the load replace any earlier version whole.
pub fn ruleset(cluster: Ipv4Network, vxlan_port: u16) -> String {
    format!(
        "table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
  chain tunnel-in {{
    type filter hook prerouting priority raw; policy accept;
    udp dport {vxlan_port} notrack
  }}
  chain tunnel-out {{
    type filter hook output priority raw; policy accept;
    udp dport {vxlan_port} notrack
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {cluster} ip daddr != {cluster} masquerade
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    udp dport {vxlan_port} accept
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr {cluster} accept
    ip daddr {cluster} accept
  }}
}}
"
    )
}

fn nft(script: &str) -> Result<(), NatError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NatError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(NatError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NatError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NatError::Refused(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// Installs (or replaces) the agent's table in the current network namespace.
pub fn apply(cluster: Ipv4Network, vxlan_port: u16) -> Result<(), NatError> {
    nft(&ruleset(cluster, vxlan_port))
}

/// Deletes the agent's table if it exists.
pub fn remove() -> Result<(), NatError> {
    nft(&format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_only_what_leaves_the_cluster() {
        let text = ruleset("10.1.0.0/16".parse().expect("cidr"), 4789);
        assert!(text.starts_with("table inet sdn {}\ndelete table inet sdn\n"), "replaces atomically");
        assert!(text.contains("ip saddr 10.1.0.0/16 ip daddr != 10.1.0.0/16 masquerade"));
        assert!(text.contains("udp dport 4789 accept"));
        assert_eq!(text.matches("udp dport 4789 notrack").count(), 2, "tunnel packets untracked both ways");
        assert_eq!(text.matches("table inet").count(), 3, "only our table");
    }
}
