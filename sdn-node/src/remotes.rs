//! Which remote subnets the tunnel map must hold: every other node's
//! `HostSubnet`, towards that node's IP. Pure: the agent applies the
//! difference to the BPF map.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use sdn_cluster::HostSubnet;

/// Changes that bring the map from `current` to what `subnets` call for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RemoteChanges {
    pub upsert: Vec<(Ipv4Network, Ipv4Addr)>,
    pub remove: Vec<Ipv4Network>,
    /// Nodes whose IP is not IPv4: the VXLAN underlay is IPv4 only.
    pub skipped: Vec<String>,
}

pub fn diff(own_node: &str, subnets: &[HostSubnet], current: &[(Ipv4Network, Ipv4Addr)]) -> RemoteChanges {
    let mut changes = RemoteChanges::default();
    let mut wanted = BTreeMap::new();
    for s in subnets.iter().filter(|s| s.host != own_node) {
        match s.host_ip {
            IpAddr::V4(ip) => {
                wanted.insert(s.subnet, ip);
            }
            IpAddr::V6(_) => changes.skipped.push(s.host.clone()),
        }
    }
    let current: BTreeMap<_, _> = current.iter().copied().collect();
    for (subnet, ip) in &wanted {
        if current.get(subnet) != Some(ip) {
            changes.upsert.push((*subnet, *ip));
        }
    }
    changes.remove = current.keys().filter(|s| !wanted.contains_key(s)).copied().collect();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(host: &str, ip: &str, cidr: &str) -> HostSubnet {
        HostSubnet { host: host.into(), host_ip: ip.parse().expect("ip"), subnet: cidr.parse().expect("cidr") }
    }

    #[test]
    fn adds_new_moves_changed_withdraws_gone_and_never_maps_itself() {
        let subnets = [
            hs("me", "192.0.2.1", "10.1.0.0/24"),
            hs("b", "192.0.2.2", "10.1.1.0/24"),
            hs("c", "192.0.2.33", "10.1.2.0/24"),
            hs("v6", "2001:db8::1", "10.1.9.0/24"),
        ];
        let current = [
            ("10.1.2.0/24".parse().expect("cidr"), "192.0.2.3".parse().expect("ip")),
            ("10.1.5.0/24".parse().expect("cidr"), "192.0.2.5".parse().expect("ip")),
        ];
        let changes = diff("me", &subnets, &current);
        assert_eq!(
            changes.upsert,
            [
                ("10.1.1.0/24".parse().expect("cidr"), "192.0.2.2".parse().expect("ip")),
                ("10.1.2.0/24".parse().expect("cidr"), "192.0.2.33".parse().expect("ip")),
            ]
        );
        assert_eq!(changes.remove, ["10.1.5.0/24".parse::<Ipv4Network>().expect("cidr")]);
        assert_eq!(changes.skipped, ["v6"]);
        assert_eq!(diff("me", &subnets[..3], &[]).upsert.len(), 2);
    }
}
