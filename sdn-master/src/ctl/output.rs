//! Tables in the style of kubectl (no borders, upper-case headers) and JSON.

use comfy_table::presets::NOTHING;
use comfy_table::{Table, TableComponent};
use sdn_cluster::records::PodRecord;
use sdn_cluster::{ClusterNetwork, HostSubnet};
use serde::Serialize;

use crate::api::types::{NodeView, Phase};

fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(header.to_vec());
    table.remove_style(TableComponent::HeaderLines);
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut out: String = table.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    // Values that came from JSON serialize back without error.
    serde_json::to_string_pretty(value).map(|s| s + "\n").unwrap_or_default()
}

/// One node: a JSON object, or a one-row table.
pub fn node(node: &NodeView, as_json: bool) -> String {
    if as_json { json(node) } else { nodes(std::slice::from_ref(node), false) }
}

pub fn nodes(nodes: &[NodeView], as_json: bool) -> String {
    if as_json {
        return json(nodes);
    }
    table(
        &["NAME", "IP", "SUBNET", "PHASE"],
        nodes.iter().map(|n| {
            vec![
                n.name.clone(),
                n.ip.to_string(),
                n.subnet.map_or_else(|| "<none>".into(), |s| s.to_string()),
                match n.phase {
                    Phase::Allocated => "Allocated".into(),
                    Phase::Pending => "Pending".into(),
                },
            ]
        }),
    )
}

pub fn subnets(subnets: &[HostSubnet], as_json: bool) -> String {
    if as_json {
        return json(subnets);
    }
    table(
        &["HOST", "HOST IP", "SUBNET"],
        subnets.iter().map(|s| vec![s.host.clone(), s.host_ip.to_string(), s.subnet.to_string()]),
    )
}

pub fn pods(pods: &[PodRecord], as_json: bool) -> String {
    if as_json {
        return json(pods);
    }
    let none = || "<none>".to_owned();
    table(
        &["NAMESPACE", "NAME", "NODE", "IP", "CONTAINER", "INTERFACE"],
        pods.iter().map(|p| {
            vec![
                p.namespace.clone().unwrap_or_else(none),
                p.name.clone().unwrap_or_else(none),
                p.node.clone(),
                p.ip.to_string(),
                p.container_id.chars().take(13).collect(),
                p.ifname.clone(),
            ]
        }),
    )
}

pub fn network(network: &ClusterNetwork, as_json: bool) -> String {
    if as_json {
        return json(network);
    }
    table(
        &["NETWORK", "HOST SUBNET LENGTH", "SERVICE NETWORK", "VXLAN PORT", "MTU"],
        [vec![
            network.network.to_string(),
            network.host_subnet_length.to_string(),
            network.service_network.to_string(),
            network.vxlan_port.to_string(),
            network.mtu.map_or_else(|| "auto".into(), |m| m.to_string()),
        ]],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_table() {
        let rows = [
            NodeView {
                name: "node-1".into(),
                ip: "192.0.2.1".parse().expect("ip"),
                subnet: Some("10.1.0.0/24".parse().expect("cidr")),
                phase: Phase::Allocated,
            },
            NodeView { name: "n2".into(), ip: "192.0.2.2".parse().expect("ip"), subnet: None, phase: Phase::Pending },
        ];
        let out = nodes(&rows, false);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].split_whitespace().eq(["NAME", "IP", "SUBNET", "PHASE"]));
        assert!(lines[2].split_whitespace().eq(["n2", "192.0.2.2", "<none>", "Pending"]));
        let parsed: Vec<NodeView> = serde_json::from_str(&nodes(&rows, true)).expect("json");
        assert_eq!(parsed, rows);
    }
}
