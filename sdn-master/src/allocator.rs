//! The pure core of subnet allocation: given the registered nodes and the
//! allocated `HostSubnet`s, decide what to write. No I/O happens here; the
//! controller turns the plan into etcd transactions.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnetwork::Ipv4Network;
use sdn_cluster::{ClusterNetwork, HostSubnet};

/// A registered node as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    /// `None` when the stored record cannot be read: the node exists, so
    /// its subnet is kept, but nothing is allocated to it.
    pub ip: Option<IpAddr>,
    /// etcd create revision: nodes that registered first are served first.
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// An allocated subnet record, keyed by the node name of its etcd key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetState {
    pub node: String,
    /// `None` when the stored record cannot be read: the node counts as
    /// allocated, and the claims keep its subnet from being handed out.
    pub record: Option<HostSubnet>,
    pub mod_revision: i64,
}

/// One write the cluster needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Give `node` the free `subnet`.
    Allocate { node: String, node_ip: IpAddr, node_mod_revision: i64, subnet: Ipv4Network },
    /// The node is gone: free its subnet for reuse.
    Release { node: String, subnet: Ipv4Network, mod_revision: i64 },
    /// The node moved to a new IP: it keeps its subnet, the record follows.
    UpdateHostIp { record: HostSubnet, mod_revision: i64 },
}

/// What the cluster needs now, and the nodes that must wait for a subnet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Nodes without a subnet because the cluster network is exhausted, in
    /// the order they will be served.
    pub pending: Vec<String>,
}

/// Hands out the lowest free subnet indices of a network.
struct SubnetPool<'a> {
    network: &'a ClusterNetwork,
    used: HashSet<u64>,
    cursor: u64,
}

impl SubnetPool<'_> {
    fn take(&mut self) -> Option<Ipv4Network> {
        while self.cursor < self.network.subnet_count() {
            let index = self.cursor;
            self.cursor += 1;
            if !self.used.contains(&index) {
                return self.network.subnet(index);
            }
        }
        None
    }
}

/// Decides the writes that bring `subnets` in line with `nodes`.
///
/// `claimed` are the subnets etcd holds a claim for; they are never handed
/// out, even when no readable record explains the claim. Releases come first
/// in the plan: a subnet freed here may go to a waiting node in the same
/// plan, and the controller applies releases before allocations.
pub fn plan(network: &ClusterNetwork, nodes: &[NodeState], subnets: &[SubnetState], claimed: &[Ipv4Network]) -> Plan {
    let by_name: BTreeMap<&str, &NodeState> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut actions = Vec::new();
    let mut used: HashSet<u64> = claimed.iter().filter_map(|s| network.subnet_index(*s)).collect();
    let mut allocated = HashSet::new();
    for s in subnets {
        let node = by_name.get(s.node.as_str());
        match (&s.record, node) {
            (Some(record), None) => {
                used.remove(&network.subnet_index(record.subnet).unwrap_or(u64::MAX));
                actions.push(Action::Release {
                    node: s.node.clone(),
                    subnet: record.subnet,
                    mod_revision: s.mod_revision,
                });
            }
            // An unreadable record of a deleted node: its subnet is unknown,
            // so its claim stays and the subnet is not reused.
            (None, None) => {}
            (record, Some(node)) => {
                allocated.insert(node.name.as_str());
                let Some(record) = record else { continue };
                // A subnet outside the current layout stays with its node; the
                // master refuses layouts that would orphan one, so this only
                // happens when etcd was edited by hand.
                if let Some(index) = network.subnet_index(record.subnet) {
                    used.insert(index);
                }
                if let Some(ip) = node.ip
                    && ip != record.host_ip
                {
                    actions.push(Action::UpdateHostIp {
                        record: HostSubnet { host_ip: ip, ..record.clone() },
                        mod_revision: s.mod_revision,
                    });
                }
            }
        }
    }
    let mut waiting: Vec<(&NodeState, IpAddr)> =
        nodes.iter().filter(|n| !allocated.contains(n.name.as_str())).filter_map(|n| n.ip.map(|ip| (n, ip))).collect();
    waiting.sort_by(|(a, _), (b, _)| (a.create_revision, &a.name).cmp(&(b.create_revision, &b.name)));
    let mut pool = SubnetPool { network, used, cursor: 0 };
    let mut pending = Vec::new();
    for (node, node_ip) in waiting {
        match pool.take() {
            Some(subnet) => actions.push(Action::Allocate {
                node: node.name.clone(),
                node_ip,
                node_mod_revision: node.mod_revision,
                subnet,
            }),
            None => pending.push(node.name.clone()),
        }
    }
    Plan { actions, pending }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, rev: i64) -> NodeState {
        NodeState {
            name: name.into(),
            ip: Some(format!("192.0.2.{rev}").parse().expect("ip")),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    fn subnet_of(node: &NodeState, cidr: &str) -> SubnetState {
        SubnetState {
            node: node.name.clone(),
            record: Some(HostSubnet {
                host: node.name.clone(),
                host_ip: node.ip.expect("test nodes have IPs"),
                subnet: cidr.parse().expect("cidr"),
            }),
            mod_revision: 100,
        }
    }

    fn cidrs(list: &[&str]) -> Vec<Ipv4Network> {
        list.iter().map(|c| c.parse().expect("cidr")).collect()
    }

    fn allocated(plan: &Plan) -> Vec<(String, String)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Allocate { node, subnet, .. } => Some((node.clone(), subnet.to_string())),
                _ => None,
            })
            .collect()
    }

    fn net(cidr: &str, host_bits: u8) -> ClusterNetwork {
        let n = ClusterNetwork {
            network: cidr.parse().expect("cidr"),
            host_subnet_length: host_bits,
            ..Default::default()
        };
        n.validate().expect("valid test network");
        n
    }

    #[test]
    fn first_subnets_go_in_registration_order() {
        let nodes = [node("b", 2), node("a", 3), node("c", 1)];
        let plan = plan(&ClusterNetwork::default(), &nodes, &[], &[]);
        assert_eq!(
            allocated(&plan),
            [
                ("c".into(), "10.1.0.0/24".into()),
                ("b".into(), "10.1.1.0/24".into()),
                ("a".into(), "10.1.2.0/24".into())
            ]
        );
        assert!(plan.pending.is_empty());
    }

    #[test]
    fn last_subnet_then_exhaustion() {
        let network = net("10.1.0.0/22", 8);
        let nodes: Vec<_> = (1..=6).map(|i| node(&format!("n{i}"), i)).collect();
        let plan = plan(&network, &nodes, &[], &[]);
        let got = allocated(&plan);
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], ("n4".into(), "10.1.3.0/24".into()));
        assert_eq!(plan.pending, ["n5", "n6"]);
    }

    #[test]
    fn allocated_nodes_are_left_alone_and_gaps_are_filled() {
        let nodes = [node("a", 1), node("b", 2), node("c", 3)];
        let subnets = [subnet_of(&nodes[0], "10.1.0.0/24"), subnet_of(&nodes[2], "10.1.2.0/24")];
        let plan = plan(&ClusterNetwork::default(), &nodes, &subnets, &cidrs(&["10.1.0.0/24", "10.1.2.0/24"]));
        assert_eq!(
            plan.actions,
            [Action::Allocate {
                node: "b".into(),
                node_ip: nodes[1].ip.expect("ip"),
                node_mod_revision: 2,
                subnet: "10.1.1.0/24".parse().expect("cidr"),
            }]
        );
    }

    #[test]
    fn deleted_node_releases_and_the_subnet_is_reused_at_once() {
        let network = net("10.1.0.0/23", 8);
        let gone = node("gone", 1);
        let stay = node("stay", 2);
        let waiting = node("new", 3);
        let subnets = [subnet_of(&gone, "10.1.0.0/24"), subnet_of(&stay, "10.1.1.0/24")];
        let plan = plan(&network, &[stay, waiting], &subnets, &cidrs(&["10.1.0.0/24", "10.1.1.0/24"]));
        assert_eq!(
            plan.actions[0],
            Action::Release { node: "gone".into(), subnet: "10.1.0.0/24".parse().expect("cidr"), mod_revision: 100 }
        );
        assert_eq!(allocated(&plan), [("new".into(), "10.1.0.0/24".into())]);
        assert!(plan.pending.is_empty());
    }

    #[test]
    fn ip_change_keeps_the_subnet() {
        let mut n = node("a", 1);
        let subnets = [subnet_of(&n, "10.1.5.0/24")];
        n.ip = Some("198.51.100.7".parse().expect("ip"));
        let plan = plan(&ClusterNetwork::default(), &[n.clone()], &subnets, &cidrs(&["10.1.5.0/24"]));
        assert_eq!(
            plan.actions,
            [Action::UpdateHostIp {
                record: HostSubnet {
                    host: "a".into(),
                    host_ip: n.ip.expect("ip"),
                    subnet: "10.1.5.0/24".parse().expect("cidr"),
                },
                mod_revision: 100,
            }]
        );
    }

    #[test]
    fn odd_prefix_lengths() {
        // A /13 cut into /23s (9 host bits): 1024 subnets.
        let network = net("10.8.0.0/13", 9);
        assert_eq!(network.subnet_count(), 1024);
        let nodes: Vec<_> = (1..=3).map(|i| node(&format!("n{i}"), i)).collect();
        let got = allocated(&plan(&network, &nodes, &[], &[]));
        assert_eq!(got[2].1, "10.8.4.0/23");
        // The smallest subnet that fits a gateway and one pod: a /30.
        let network = net("10.9.0.0/29", 2);
        let nodes: Vec<_> = (1..=3).map(|i| node(&format!("n{i}"), i)).collect();
        let plan = plan(&network, &nodes, &[], &[]);
        assert_eq!(
            allocated(&plan).iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
            ["10.9.0.0/30", "10.9.0.4/30"]
        );
        assert_eq!(plan.pending, ["n3"]);
    }

    #[test]
    fn subnet_outside_the_layout_stays_but_is_not_reused() {
        let n = node("a", 1);
        let subnets = [subnet_of(&n, "10.200.0.0/24")];
        let plan = plan(&ClusterNetwork::default(), &[n], &subnets, &[]);
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn unreadable_node_record_keeps_its_subnet() {
        let network = net("10.1.0.0/23", 8);
        let unreadable = NodeState { ip: None, ..node("a", 1) };
        let subnets = [subnet_of(&node("a", 1), "10.1.0.0/24")];
        let planned = plan(&network, &[unreadable, node("b", 2), node("c", 3)], &subnets, &cidrs(&["10.1.0.0/24"]));
        assert_eq!(allocated(&planned), [("b".into(), "10.1.1.0/24".into())], "a's subnet is not reused");
        assert_eq!(planned.pending, ["c"]);
        let unreadable_new = NodeState { ip: None, ..node("d", 4) };
        assert!(plan(&network, &[unreadable_new], &[], &[]).actions.is_empty(), "no subnet without an address");
    }

    #[test]
    fn unreadable_subnet_record_counts_as_allocated_and_claims_are_never_reused() {
        let network = net("10.1.0.0/23", 8);
        let a = node("a", 1);
        let unreadable = SubnetState { node: "a".into(), record: None, mod_revision: 7 };
        // The claim of a's subnet (unknown from the record) and a stray claim
        // both keep their subnets out of the pool.
        let plan = plan(&network, &[a, node("b", 2)], &[unreadable], &cidrs(&["10.1.0.0/24", "10.1.1.0/24"]));
        assert!(allocated(&plan).is_empty(), "{plan:?}");
        assert_eq!(plan.pending, ["b"]);
    }

    #[test]
    fn large_cluster_plans_every_node_once() {
        let network = net("10.0.0.0/8", 8);
        let nodes: Vec<_> = (1..=5000)
            .map(|i| NodeState {
                name: format!("n{i}"),
                ip: Some(IpAddr::from([192, 0, (i / 256) as u8, (i % 256) as u8])),
                create_revision: i,
                mod_revision: i,
            })
            .collect();
        let plan = plan(&network, &nodes, &[], &[]);
        let got = allocated(&plan);
        assert_eq!(got.len(), 5000);
        let distinct: HashSet<_> = got.iter().map(|(_, s)| s).collect();
        assert_eq!(distinct.len(), 5000);
    }
}
