//! The flow tables rendered for people, in the shape of `ovs-ofctl dump-flows`.

use std::{fmt::Write as _, net::Ipv4Addr};

use ipnetwork::Ipv4Network;
use sdn_ebpf_common::{Backend, Counter, Decision, ENDPOINT_STRIP_GSO, Endpoint, Remote, ServiceEntry, ServiceKey};

use super::{Transport, key_ip, remote_path};

/// Where packets to remote subnets leave.
pub struct Outputs<'a> {
    /// Tunnelled ones: `vxlan0`, or the underlay interface when the programs wrap them
    /// themselves.
    pub tunnel: &'a str,
    /// Directly routed ones: the underlay interface.
    pub direct: &'a str,
}
use super::services::key_parts;

/// Renders the flow tables like `ovs-ofctl dump-flows`: one line per local endpoint
/// (`table=local`), per remote subnet (`table=remote`), per node whose VXLAN is accepted
/// (`table=tunnel-in`, with the sources it may carry), then the decisions that have no entry:
/// traffic to the host (`table=default`), service replies and rejects, and the drops, one line
/// per reason (`table=drop`).
/// A local endpoint's `tunnel_gso` tells where super-packets from the tunnel for it are
/// stripped: `ebpf` for a pod that does not forward, else `vxlan0` (unless the kernel clears
/// their tunnel state itself). Packets leave as [`Outputs`] says. `name` gives an interface
/// index's name, as the node's namespace knows it (the index itself where it knows none).
pub fn render_flows(
    endpoints: &[(Ipv4Addr, Endpoint)],
    remotes: &[(Ipv4Network, Remote)],
    senders: &[(Ipv4Addr, Ipv4Network)],
    counters: &[Counter; Decision::COUNT],
    outputs: &Outputs,
    name: impl Fn(u32) -> Option<String>,
) -> String {
    let mut out = String::new();
    for (ip, endpoint) in endpoints {
        let _ = writeln!(
            out,
            " table=local, n_packets={}, n_bytes={}, tunnel_gso={}, ip,nw_dst={ip} actions=mod_dl_dst:{},output:{}",
            endpoint.packets,
            endpoint.bytes,
            if endpoint.flags & ENDPOINT_STRIP_GSO != 0 { "ebpf" } else { "vxlan0" },
            mac_string(&endpoint.mac),
            name(endpoint.ifindex).unwrap_or_else(|| endpoint.ifindex.to_string())
        );
    }
    for (subnet, remote) in remotes {
        let (field, output) = match remote_path(remote) {
            Transport::Tunnel => ("tun_dst", outputs.tunnel),
            Transport::Direct => ("next_hop", outputs.direct),
        };
        let _ = writeln!(
            out,
            " table=remote, n_packets={}, n_bytes={}, ip,nw_dst={subnet} actions=set_field:{}->{field},output:{output}",
            remote.packets,
            remote.bytes,
            key_ip(remote.node_ip)
        );
    }
    for (node, subnet) in senders {
        let _ = writeln!(out, " table=tunnel-in, ip,tun_src={node},nw_src={subnet} actions=accept");
    }
    let rows = [
        ("default", Decision::ToHost, "ip".to_owned(), "output:tun0"),
        ("service", Decision::ServiceReplied, "ct_state=+rpl".to_owned(), "mod_nw_src:frontend"),
        ("service", Decision::ServiceRejected, "no backends".to_owned(), "reject"),
    ];
    let drops =
        Decision::ALL.into_iter().filter(|d| d.is_drop()).map(|d| ("drop", d, format!("reason={}", d.name()), "drop"));
    for (table, decision, matches, actions) in rows.into_iter().chain(drops) {
        let counter = counters[decision.index() as usize];
        let _ = writeln!(
            out,
            " table={table}, n_packets={}, n_bytes={}, {matches} actions={actions}",
            counter.packets, counter.bytes
        );
    }
    out
}

/// One frontend of the service map with its backends, as [`render_services`] shows it.
pub struct FrontendFlows {
    pub key: ServiceKey,
    pub entry: ServiceEntry,
    pub backends: Vec<Backend>,
}

/// The service table like OVS select groups: a line per frontend (`table=service`, with the
/// packets it translated) pointing at its group, and the group's buckets, one per backend; a
/// frontend without backends rejects.
pub fn render_services(frontends: &[FrontendFlows]) -> String {
    let mut out = String::new();
    for FrontendFlows { key, entry, backends } in frontends {
        let (ip, protocol, port) = key_parts(key);
        if port == 0 && protocol == 0 {
            continue;
        }
        let protocol = match protocol {
            6 => "tcp",
            17 => "udp",
            _ => "ip",
        };
        let actions = if backends.is_empty() { "reject".to_owned() } else { format!("group:{}", entry.id) };
        let _ = writeln!(
            out,
            " table=service, n_packets={}, n_bytes={}, {protocol},nw_dst={ip},tp_dst={port} actions={actions}",
            entry.packets, entry.bytes
        );
        if !backends.is_empty() {
            let buckets: Vec<String> = backends
                .iter()
                .map(|b| format!("bucket=actions=mod_nw_dst:{},mod_tp_dst:{}", key_ip(b.ip), u16::from_be(b.port)))
                .collect();
            let _ = writeln!(out, " group_id={},type=select,{}", entry.id, buckets.join(","));
        }
    }
    out
}

fn mac_string(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::ip_key;

    #[test]
    fn flows_render_like_ovs_dump_flows() {
        let endpoints = [(
            Ipv4Addr::new(10, 1, 0, 2),
            Endpoint { ifindex: 5, mac: [0xaa, 0xbb, 0xcc, 0, 1, 2], flags: 1, _pad: [0; 5], packets: 12, bytes: 1176 },
        )];
        let remotes = [
            (
                "10.1.1.0/24".parse().expect("test network"),
                Remote { node_ip: ip_key(Ipv4Addr::new(192, 0, 2, 12)), flags: 0, packets: 3, bytes: 294 },
            ),
            (
                "10.1.2.0/24".parse().expect("test network"),
                Remote { node_ip: ip_key(Ipv4Addr::new(192, 0, 2, 13)), flags: 1, packets: 0, bytes: 0 },
            ),
        ];
        let mut counters = [Counter::default(); Decision::COUNT];
        counters[Decision::ToHost as usize] = Counter { packets: 7, bytes: 700 };
        counters[Decision::SpoofedIp as usize] = Counter { packets: 1, bytes: 42 };
        let senders = [(Ipv4Addr::new(192, 0, 2, 12), "10.1.1.0/24".parse().expect("test network"))];
        let expected = [
            " table=local, n_packets=12, n_bytes=1176, tunnel_gso=ebpf, ip,nw_dst=10.1.0.2 \
             actions=mod_dl_dst:aa:bb:cc:00:01:02,output:veth1a2b3c4d",
            " table=remote, n_packets=3, n_bytes=294, ip,nw_dst=10.1.1.0/24 \
             actions=set_field:192.0.2.12->tun_dst,output:vxlan0",
            " table=remote, n_packets=0, n_bytes=0, ip,nw_dst=10.1.2.0/24 \
             actions=set_field:192.0.2.13->next_hop,output:eth0",
            " table=tunnel-in, ip,tun_src=192.0.2.12,nw_src=10.1.1.0/24 actions=accept",
            " table=default, n_packets=7, n_bytes=700, ip actions=output:tun0",
            " table=service, n_packets=0, n_bytes=0, ct_state=+rpl actions=mod_nw_src:frontend",
            " table=service, n_packets=0, n_bytes=0, no backends actions=reject",
            " table=drop, n_packets=1, n_bytes=42, reason=spoofed-ip actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=tunnel-miss actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=service-no-port actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=spoofed-mac actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=spoofed-arp actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=not-ipv4 actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=ipv6 actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=tunnel-unknown-node actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=tunnel-foreign-source actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=pod-to-tunnel-port actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=direct-foreign-source actions=drop",
            " table=drop, n_packets=0, n_bytes=0, reason=malformed actions=drop",
            "",
        ]
        .join("\n");
        let name = |ifindex| (ifindex == 5).then(|| "veth1a2b3c4d".to_owned());
        let outputs = Outputs { tunnel: "vxlan0", direct: "eth0" };
        assert_eq!(render_flows(&endpoints, &remotes, &senders, &counters, &outputs, name), expected);
        let unnamed = render_flows(&endpoints, &remotes, &senders, &counters, &outputs, |_| None);
        assert!(unnamed.contains("output:5\n"), "an index without a name stays a number: {unnamed}");
    }

    #[test]
    fn services_render_like_select_groups() {
        use crate::bpf::services::{backend_value, frontend_key, marker_key};
        use crate::services::{Backend as Target, Frontend};
        let frontend =
            Frontend { ip: Ipv4Addr::new(172, 30, 0, 1), protocol: sdn_cluster::services::Protocol::Tcp, port: 80 };
        let idle = Frontend { port: 81, ..frontend };
        let backends = [
            Target { ip: Ipv4Addr::new(10, 1, 0, 2), port: 8080 },
            Target { ip: Ipv4Addr::new(10, 1, 1, 2), port: 8080 },
        ];
        let entry = ServiceEntry { id: 3, count: 2, packets: 5, bytes: 300, ..ServiceEntry::default() };
        let frontends = [
            FrontendFlows {
                key: frontend_key(&frontend),
                entry,
                backends: backends.iter().map(backend_value).collect(),
            },
            FrontendFlows {
                key: frontend_key(&idle),
                entry: ServiceEntry { id: 4, ..ServiceEntry::default() },
                backends: Vec::new(),
            },
            FrontendFlows { key: marker_key(frontend.ip), entry: ServiceEntry::default(), backends: Vec::new() },
        ];
        let expected = [
            " table=service, n_packets=5, n_bytes=300, tcp,nw_dst=172.30.0.1,tp_dst=80 actions=group:3",
            " group_id=3,type=select,bucket=actions=mod_nw_dst:10.1.0.2,mod_tp_dst:8080,\
             bucket=actions=mod_nw_dst:10.1.1.2,mod_tp_dst:8080",
            " table=service, n_packets=0, n_bytes=0, tcp,nw_dst=172.30.0.1,tp_dst=81 actions=reject",
            "",
        ]
        .join("\n");
        assert_eq!(render_services(&frontends), expected);
    }
}
