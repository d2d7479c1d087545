//! Tables in the style of kubectl (no borders, upper-case headers) and JSON.

use comfy_table::presets::NOTHING;
use comfy_table::{Table, TableComponent};
use sdn_cluster::records::PodRecord;
use sdn_cluster::{ClusterIp, ClusterNetwork, EndpointAddress, Endpoints, HostSubnet, Port, ServiceSpec};
use serde::{Deserialize, Serialize};

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
        &["NETWORK", "HOST SUBNET LENGTH", "SERVICE NETWORK", "VXLAN PORT", "MTU", "DIRECT ROUTING"],
        [vec![
            network.network.to_string(),
            network.host_subnet_length.to_string(),
            network.service_network.to_string(),
            network.vxlan_port.to_string(),
            network.mtu.map_or_else(|| "auto".into(), |m| m.to_string()),
            if network.direct_routing { "on".into() } else { "off".into() },
        ]],
    )
}

/// `sdnctl services show`: a service with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDetail {
    pub service: ServiceSpec,
    pub endpoints: Endpoints,
}

/// Ports as `sdnctl` takes them: `http:80/TCP,53/UDP`.
fn ports(ports: &[Port]) -> String {
    if ports.is_empty() {
        return "<none>".into();
    }
    let port = |p: &Port| {
        let name = if p.name.is_empty() { String::new() } else { format!("{}:", p.name) };
        format!("{name}{}/{}", p.port, p.protocol.srv_label().to_uppercase())
    };
    ports.iter().map(port).collect::<Vec<_>>().join(",")
}

/// IPs of the addresses that are (or are not) ready, comma-separated.
fn addresses(addresses: &[EndpointAddress], ready: bool) -> String {
    let ips: Vec<String> = addresses.iter().filter(|a| a.ready == ready).map(|a| a.ip.to_string()).collect();
    if ips.is_empty() { "<none>".into() } else { ips.join(",") }
}

pub fn service(service: &ServiceSpec, as_json: bool) -> String {
    if as_json { json(service) } else { services(std::slice::from_ref(service), false) }
}

pub fn services(services: &[ServiceSpec], as_json: bool) -> String {
    if as_json {
        return json(services);
    }
    table(
        &["NAMESPACE", "NAME", "CLUSTER-IP", "PORTS"],
        services.iter().map(|s| {
            vec![
                s.namespace.clone(),
                s.name.clone(),
                s.cluster_ip.unwrap_or(ClusterIp::Headless).to_string(),
                ports(&s.ports),
            ]
        }),
    )
}

pub fn endpoints(endpoints: &[Endpoints], as_json: bool) -> String {
    if as_json {
        return json(endpoints);
    }
    table(
        &["NAMESPACE", "NAME", "READY", "NOT-READY", "PORTS"],
        endpoints.iter().map(|e| {
            vec![
                e.namespace.clone(),
                e.name.clone(),
                addresses(&e.addresses, true),
                addresses(&e.addresses, false),
                ports(&e.ports),
            ]
        }),
    )
}

/// The service's row, then one row per endpoint address.
pub fn service_detail(detail: &ServiceDetail, as_json: bool) -> String {
    if as_json {
        return json(detail);
    }
    let none = || "<none>".to_owned();
    let endpoint_ports = ports(&detail.endpoints.ports);
    let rows = detail.endpoints.addresses.iter().map(|a| {
        vec![
            a.ip.to_string(),
            a.hostname.clone().unwrap_or_else(none),
            a.node_name.clone().unwrap_or_else(none),
            if a.ready { "yes".into() } else { "no".into() },
            endpoint_ports.clone(),
        ]
    });
    let addresses = table(&["ENDPOINT", "HOSTNAME", "NODE", "READY", "PORTS"], rows);
    format!(
        "{}
{addresses}",
        service(&detail.service, false)
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

    #[test]
    fn service_tables() {
        let spec: ServiceSpec = serde_json::from_str(
            r#"{"namespace":"default","name":"web","clusterIP":"None",
                "ports":[{"name":"http","port":80},{"name":"dns","port":53,"protocol":"UDP"}]}"#,
        )
        .expect("spec");
        let out = service(&spec, false);
        let lines: Vec<_> = out.lines().collect();
        assert!(lines[0].split_whitespace().eq(["NAMESPACE", "NAME", "CLUSTER-IP", "PORTS"]), "{out}");
        assert!(lines[1].split_whitespace().eq(["default", "web", "None", "http:80/TCP,dns:53/UDP"]), "{out}");
        let endpoints: Endpoints = serde_json::from_str(
            r#"{"namespace":"default","name":"web","ports":[{"port":8080}],
                "addresses":[{"ip":"10.1.0.2","hostname":"web-0"},{"ip":"10.1.0.3","ready":false}]}"#,
        )
        .expect("endpoints");
        let out = super::endpoints(std::slice::from_ref(&endpoints), false);
        let row = out.lines().nth(1).expect("row");
        assert!(row.split_whitespace().eq(["default", "web", "10.1.0.2", "10.1.0.3", "8080/TCP"]), "{out}");
        let out = service_detail(&ServiceDetail { service: spec, endpoints }, false);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 6, "{out}");
        assert!(lines[4].split_whitespace().eq(["10.1.0.2", "web-0", "<none>", "yes", "8080/TCP"]), "{out}");
        assert!(lines[5].split_whitespace().eq(["10.1.0.3", "<none>", "<none>", "no", "8080/TCP"]), "{out}");
    }
}
