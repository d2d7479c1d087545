//! NAT for traffic leaving the cluster network, in an nftables table of the
//! agent's own (`inet sdn`). The ruleset is generated as text (pure) and
//! applied with `nft -f -` in one transaction, which replaces the whole
//! table atomically; this is how Kubernetes' nftables proxy (knftables)
//! drives nftables too. Rules of other tables are never read or touched.

use std::io::Write;
use std::net::Ipv4Addr;
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

/// The `inet sdn` table: masquerade what leaves the cluster network, accept VXLAN only from the
/// registered nodes (the `nodes` set, which the agent keeps with the registry, see
/// [`set_nodes`]) and keep it out of conntrack (a tunnel packet is never NATed or filtered by
/// state, so tracking it only costs a lookup per packet and a table entry per node pair, on both
/// nodes). A pod may not send to a node's VXLAN port: such a datagram could carry a frame with
/// any source inside. Both drops are counted (`nft list table inet sdn`). Declaring the table first and deleting it in the same transaction makes
/// the load replace any earlier version whole.
pub fn ruleset(cluster: Ipv4Network, vxlan_port: u16, nodes: &[Ipv4Addr]) -> String {
    format!(
        "table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
  set nodes {{
    type ipv4_addr
{}  }}
  chain tunnel-in {{
    type filter hook prerouting priority raw; policy accept;
    udp dport {vxlan_port} ip saddr @nodes notrack
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
    udp dport {vxlan_port} ip saddr @nodes accept
    udp dport {vxlan_port} counter drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr {cluster} ip daddr @nodes udp dport {vxlan_port} counter drop
    ip saddr {cluster} accept
    ip daddr {cluster} accept
  }}
}}
",
        elements(nodes, "    ")
    )
}

/// `elements = { ... }` for a set declaration (nothing for no elements: nft refuses `{ }`).
fn elements(nodes: &[Ipv4Addr], indent: &str) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    let list: Vec<String> = nodes.iter().map(Ipv4Addr::to_string).collect();
    format!("{indent}elements = {{ {} }}\n", list.join(", "))
}

/// The script that makes the `nodes` set hold exactly `nodes`, in one transaction.
pub fn nodes_script(nodes: &[Ipv4Addr]) -> String {
    let mut script = format!("flush set inet {TABLE} nodes\n");
    if !nodes.is_empty() {
        let list: Vec<String> = nodes.iter().map(Ipv4Addr::to_string).collect();
        script += &format!("add element inet {TABLE} nodes {{ {} }}\n", list.join(", "));
    }
    script
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

/// Installs (or replaces) the agent's table in the current network namespace, accepting VXLAN
/// from `nodes`.
pub fn apply(cluster: Ipv4Network, vxlan_port: u16, nodes: &[Ipv4Addr]) -> Result<(), NatError> {
    nft(&ruleset(cluster, vxlan_port, nodes))
}

/// Makes the table accept VXLAN from exactly `nodes`, in the current network namespace.
pub fn set_nodes(nodes: &[Ipv4Addr]) -> Result<(), NatError> {
    nft(&nodes_script(nodes))
}

/// Deletes the agent's table if it exists.
pub fn remove() -> Result<(), NatError> {
    nft(&format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_only_what_leaves_the_cluster_and_takes_vxlan_only_from_nodes() {
        let nodes = ["192.0.2.2".parse().expect("ip"), "192.0.2.3".parse().expect("ip")];
        let text = ruleset("10.1.0.0/16".parse().expect("cidr"), 4789, &nodes);
        assert!(text.starts_with("table inet sdn {}\ndelete table inet sdn\n"), "replaces atomically");
        assert!(text.contains("ip saddr 10.1.0.0/16 ip daddr != 10.1.0.0/16 masquerade"));
        assert!(text.contains("elements = { 192.0.2.2, 192.0.2.3 }"));
        assert!(text.contains("udp dport 4789 ip saddr @nodes accept\n    udp dport 4789 counter drop"));
        assert!(text.contains("udp dport 4789 ip saddr @nodes notrack"));
        assert!(text.contains(
            "ip saddr 10.1.0.0/16 ip daddr @nodes udp dport 4789 counter drop\n    ip saddr 10.1.0.0/16 accept"
        ));
        assert_eq!(text.matches("table inet").count(), 3, "only our table");
        assert!(!ruleset("10.1.0.0/16".parse().expect("cidr"), 4789, &[]).contains("elements"));
    }

    #[test]
    fn the_node_set_is_replaced_in_one_transaction() {
        assert_eq!(nodes_script(&[]), "flush set inet sdn nodes\n");
        let script = nodes_script(&["192.0.2.2".parse().expect("ip")]);
        assert_eq!(script, "flush set inet sdn nodes\nadd element inet sdn nodes { 192.0.2.2 }\n");
    }
}
