//! Which other nodes this node trusts, and with what: every other node's `HostSubnet` that
//! passes the checks below becomes a route (its subnet, towards its IP: tunnelled, or direct
//! when the node is on this node's segment and the cluster routes directly) and a tunnel sender
//! (its IP, speaking for its subnet). Pure: the agent applies the differences to the BPF maps
//! and the nftables set.
//!
//! Any node can write to the registry, so a record is checked before it is believed: a subnet
//! outside the cluster network or of another size than the master hands out, one overlapping
//! this node's or another node's, or a host IP that another node (or this one) holds, is
//! refused. Of two records that collide, the one created first in etcd stays: a later write
//! cannot take over a subnet or an address that is already in use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use sdn_cluster::{ClusterNetwork, HostSubnet};

use crate::net::netlink::RouteTo;

/// A `HostSubnet` with its etcd create revision (which decides who came first).
pub type Registered = (HostSubnet, i64);

/// Why a `HostSubnet` was not believed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum Refusal {
    #[error("node {node}: HostSubnet {subnet} is outside the cluster network {network}")]
    OutsideNetwork { node: String, subnet: Ipv4Network, network: Ipv4Network },
    #[error("node {node}: HostSubnet {subnet} is not a /{prefix}, the size the master allocates")]
    WrongSize { node: String, subnet: Ipv4Network, prefix: u8 },
    #[error("node {node}: HostSubnet {subnet} overlaps {other}'s {theirs}, which was there first")]
    Overlaps { node: String, subnet: Ipv4Network, other: String, theirs: Ipv4Network },
    #[error("node {node}: host IP {ip} is {other}'s")]
    HostIpTaken { node: String, ip: Ipv4Addr, other: String },
    #[error("node {node}: host IP {ip} lies in the cluster network {network}")]
    HostIpInCluster { node: String, ip: Ipv4Addr, network: Ipv4Network },
    #[error("node {node}: host IP {ip} is IPv6; the VXLAN underlay is IPv4 only, so it is not reachable")]
    NotIpv4 { node: String, ip: IpAddr },
}

/// The other nodes this node believes: subnet → node IP (the routes), node IP → subnet (the
/// tunnel senders), and the records it refused; and whether the cluster routes directly to the
/// nodes on this node's segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Peers {
    pub routes: BTreeMap<Ipv4Network, Ipv4Addr>,
    pub senders: BTreeMap<Ipv4Addr, Ipv4Network>,
    pub refused: BTreeSet<Refusal>,
    pub direct_routing: bool,
}

/// Checks every other node's record against the cluster network, this node's own record
/// (`own`, with its IP `own_ip`) and the records created before it.
pub fn admit(network: &ClusterNetwork, own: &HostSubnet, own_ip: Ipv4Addr, subnets: &[Registered]) -> Peers {
    let mut admission = Admission::new(network, own, own_ip);
    let mut ordered: Vec<&Registered> = subnets.iter().collect();
    ordered.sort_by(|(a, ra), (b, rb)| (ra, &a.host).cmp(&(rb, &b.host)));
    for (record, revision) in ordered {
        admission.add(record, *revision);
    }
    admission.peers
}

/// What an [`Admission`] changed since it was last asked: every route and sender (after it
/// was made), or only these subnets' routes and these nodes' sender entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    All,
    Some { routes: BTreeSet<Ipv4Network>, senders: BTreeSet<Ipv4Addr> },
}

impl Touched {
    /// Whether a sender was added or removed (the nftables set follows them).
    pub fn senders(&self) -> bool {
        match self {
            Touched::All => true,
            Touched::Some { senders, .. } => !senders.is_empty(),
        }
    }
}

/// [`admit`]'s verdicts kept between changes of the registry, so that what dominates a big
/// cluster's changes costs a lookup, not a pass over every record: a record created after all
/// the others (a node joining) can only be believed or refused, never displace an older one,
/// and a believed record that goes (a node leaving) frees only what it held when nothing was
/// refused. Anything else is an [`admit`] again.
#[derive(Debug, Clone)]
pub struct Admission {
    network: Ipv4Network,
    prefix: u8,
    held: Held,
    peers: Peers,
    /// Believed records by node: their subnet and IP.
    believed: HashMap<String, (Ipv4Network, Ipv4Addr)>,
    /// The newest create revision added.
    newest: i64,
    /// What changed since [`Admission::take_touched`].
    touched: Touched,
}

impl Admission {
    /// Nothing admitted yet but this node's own record.
    pub fn new(network: &ClusterNetwork, own: &HostSubnet, own_ip: Ipv4Addr) -> Self {
        Self {
            network: network.network,
            prefix: 32 - network.host_subnet_length,
            held: Held {
                own: (own.host.clone(), own.subnet),
                subnets: BTreeMap::new(),
                ips: HashMap::from([(own_ip, own.host.clone())]),
            },
            peers: Peers { direct_routing: network.direct_routing, ..Peers::default() },
            believed: HashMap::new(),
            newest: 0,
            touched: Touched::All,
        }
    }

    /// Checks `record`, created at `revision`; this node's own record is skipped. `false` if it
    /// is older than one added before (the verdicts so far might change: admit all again).
    pub fn add(&mut self, record: &HostSubnet, revision: i64) -> bool {
        if revision < self.newest {
            return false;
        }
        self.newest = revision;
        if record.host == self.held.own.0 {
            return true;
        }
        match self.held.check(self.network, self.prefix, record) {
            Ok(ip) => {
                self.held.subnets.insert(record.subnet.network(), (record.host.clone(), record.subnet));
                self.held.ips.insert(ip, record.host.clone());
                self.believed.insert(record.host.clone(), (record.subnet, ip));
                self.peers.routes.insert(record.subnet, ip);
                self.peers.senders.insert(ip, record.subnet);
                self.touch(record.subnet, ip);
            }
            Err(refusal) => {
                self.peers.refused.insert(refusal);
            }
        }
        true
    }

    /// Forgets node `host`'s record. `false` if the verdicts might change (it was refused, or
    /// something is refused that its going could let in): admit all again.
    pub fn remove(&mut self, host: &str) -> bool {
        if !self.peers.refused.is_empty() {
            return false;
        }
        let Some((subnet, ip)) = self.believed.remove(host) else { return false };
        self.held.subnets.remove(&subnet.network());
        self.held.ips.remove(&ip);
        self.peers.routes.remove(&subnet);
        self.peers.senders.remove(&ip);
        self.touch(subnet, ip);
        true
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// What changed since the last call (everything, the first time).
    pub fn take_touched(&mut self) -> Touched {
        let none = Touched::Some { routes: BTreeSet::new(), senders: BTreeSet::new() };
        std::mem::replace(&mut self.touched, none)
    }

    fn touch(&mut self, subnet: Ipv4Network, ip: Ipv4Addr) {
        if let Touched::Some { routes, senders } = &mut self.touched {
            routes.insert(subnet);
            senders.insert(ip);
        }
    }
}

/// What is taken so far: this node's subnet, the accepted ones by network address (all of the
/// size the master allocates, so two overlap only when they are equal), and every host IP.
/// Looked up, not scanned: a thousand nodes are checked on every registry change.
#[derive(Debug, Clone)]
struct Held {
    own: (String, Ipv4Network),
    subnets: BTreeMap<Ipv4Addr, (String, Ipv4Network)>,
    ips: HashMap<Ipv4Addr, String>,
}

impl Held {
    fn check(&self, network: Ipv4Network, prefix: u8, record: &HostSubnet) -> Result<Ipv4Addr, Refusal> {
        let (node, subnet) = (record.host.clone(), record.subnet);
        let ip = match record.host_ip {
            IpAddr::V4(ip) => ip,
            ip @ IpAddr::V6(_) => return Err(Refusal::NotIpv4 { node, ip }),
        };
        if !network.contains(subnet.network()) || subnet.prefix() < network.prefix() {
            return Err(Refusal::OutsideNetwork { node, subnet, network });
        }
        if subnet.prefix() != prefix {
            return Err(Refusal::WrongSize { node, subnet, prefix });
        }
        if network.contains(ip) {
            return Err(Refusal::HostIpInCluster { node, ip, network });
        }
        let (own, own_subnet) = &self.own;
        let taken = if overlap(subnet, *own_subnet) {
            Some((own, own_subnet))
        } else {
            self.subnets.get(&subnet.network()).map(|(other, theirs)| (other, theirs))
        };
        if let Some((other, theirs)) = taken {
            return Err(Refusal::Overlaps { node, subnet, other: other.clone(), theirs: *theirs });
        }
        if let Some(other) = self.ips.get(&ip) {
            return Err(Refusal::HostIpTaken { node, ip, other: other.clone() });
        }
        Ok(ip)
    }
}

/// How packets to a remote node's subnet travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// In VXLAN.
    Tunnel,
    /// Unencapsulated, with the node as next hop on the underlay segment.
    Direct,
}

/// Whether the underlay reaches `node` on-link: the route to it leaves the underlay interface
/// (`underlay`) and names no gateway. A node behind a router (or routed out of another
/// interface) keeps the tunnel, as flannel's `DirectRouting` decides it.
pub fn on_link(route: Option<RouteTo>, underlay: u32) -> bool {
    route.is_some_and(|r| r.gateway.is_none() && r.oif == Some(underlay))
}

/// How packets to node `ip` travel: directly where `direct_routing` is on and the node is in
/// `on_link`, tunnelled everywhere else.
pub fn transport(direct_routing: bool, on_link: &BTreeSet<Ipv4Addr>, ip: Ipv4Addr) -> Transport {
    if direct_routing && on_link.contains(&ip) { Transport::Direct } else { Transport::Tunnel }
}

fn overlap(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Changes that bring a map from `current` to `wanted`: entries to write, keys to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes<K, V> {
    pub upsert: Vec<(K, V)>,
    pub remove: Vec<K>,
}

pub fn diff<K: Ord + Copy, V: PartialEq + Copy>(wanted: &BTreeMap<K, V>, current: &[(K, V)]) -> Changes<K, V> {
    let current: BTreeMap<K, V> = current.iter().copied().collect();
    Changes {
        upsert: wanted.iter().filter(|(k, v)| current.get(k) != Some(v)).map(|(k, v)| (*k, *v)).collect(),
        remove: current.keys().filter(|k| !wanted.contains_key(k)).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(host: &str, ip: &str, cidr: &str) -> HostSubnet {
        HostSubnet { host: host.into(), host_ip: ip.parse().expect("ip"), subnet: cidr.parse().expect("cidr") }
    }

    fn net(cidr: &str) -> Ipv4Network {
        cidr.parse().expect("cidr")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    fn me() -> HostSubnet {
        hs("me", "192.0.2.1", "10.1.0.0/24")
    }

    #[test]
    fn other_nodes_become_routes_and_senders_and_this_one_neither() {
        let subnets = [(me(), 1), (hs("b", "192.0.2.2", "10.1.1.0/24"), 2), (hs("c", "192.0.2.3", "10.1.2.0/24"), 3)];
        let peers = admit(&ClusterNetwork::default(), &me(), ip("192.0.2.1"), &subnets);
        assert_eq!(
            peers.routes,
            BTreeMap::from([(net("10.1.1.0/24"), ip("192.0.2.2")), (net("10.1.2.0/24"), ip("192.0.2.3"))])
        );
        assert_eq!(peers.senders[&ip("192.0.2.3")], net("10.1.2.0/24"));
        assert!(peers.refused.is_empty());
    }

    #[test]
    fn forged_records_are_refused_with_their_reason_and_the_first_holder_stays() {
        let subnets = [
            (me(), 1),
            (hs("b", "192.0.2.2", "10.1.1.0/24"), 2),
            (hs("everything", "192.0.2.9", "0.0.0.0/0"), 3),
            (hs("big", "192.0.2.10", "10.1.0.0/16"), 4),
            (hs("mine", "192.0.2.11", "10.1.0.0/24"), 5),
            (hs("thief", "192.0.2.12", "10.1.1.0/24"), 6),
            (hs("twin", "192.0.2.2", "10.1.3.0/24"), 7),
            (hs("self-ip", "192.0.2.1", "10.1.4.0/24"), 8),
            (hs("inside", "10.1.200.1", "10.1.5.0/24"), 9),
            (hs("v6", "2001:db8::1", "10.1.9.0/24"), 10),
        ];
        let peers = admit(&ClusterNetwork::default(), &me(), ip("192.0.2.1"), &subnets);
        assert_eq!(peers.routes, BTreeMap::from([(net("10.1.1.0/24"), ip("192.0.2.2"))]));
        let reasons: Vec<String> = peers.refused.iter().map(ToString::to_string).collect();
        for wanted in [
            "node everything: HostSubnet 0.0.0.0/0 is outside the cluster network 10.1.0.0/16",
            "node big: HostSubnet 10.1.0.0/16 is not a /24, the size the master allocates",
            "node mine: HostSubnet 10.1.0.0/24 overlaps me's 10.1.0.0/24, which was there first",
            "node thief: HostSubnet 10.1.1.0/24 overlaps b's 10.1.1.0/24, which was there first",
            "node twin: host IP 192.0.2.2 is b's",
            "node self-ip: host IP 192.0.2.1 is me's",
            "node inside: host IP 10.1.200.1 lies in the cluster network 10.1.0.0/16",
            "node v6: host IP 2001:db8::1 is IPv6; the VXLAN underlay is IPv4 only, so it is not reachable",
        ] {
            assert!(reasons.iter().any(|r| r == wanted), "{wanted} in {reasons:#?}");
        }
        assert_eq!(peers.refused.len(), 8);
    }

    #[test]
    fn the_older_record_wins_whatever_the_order_read() {
        let subnets = [(hs("late", "192.0.2.7", "10.1.1.0/24"), 9), (hs("early", "192.0.2.8", "10.1.1.0/24"), 3)];
        let peers = admit(&ClusterNetwork::default(), &me(), ip("192.0.2.1"), &subnets);
        assert_eq!(peers.senders.keys().collect::<Vec<_>>(), [&ip("192.0.2.8")]);
    }

    #[test]
    fn a_thousand_nodes_are_all_believed() {
        let subnets: Vec<Registered> = (1..=1000u32)
            .map(|i| {
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 0, 0, 0)) + i);
                let subnet = Ipv4Network::new(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i << 8)), 24);
                (
                    HostSubnet { host: format!("n{i}"), host_ip: ip.into(), subnet: subnet.expect("subnet") },
                    i64::from(i),
                )
            })
            .collect();
        let network = ClusterNetwork { network: net("10.0.0.0/8"), ..ClusterNetwork::default() };
        let own = HostSubnet { host: "me".into(), host_ip: ip("192.1.0.1").into(), subnet: net("10.255.0.0/24") };
        let peers = admit(&network, &own, ip("192.1.0.1"), &subnets);
        assert_eq!((peers.routes.len(), peers.senders.len(), peers.refused.len()), (1000, 1000, 0));
    }

    #[test]
    fn joins_and_leaves_keep_the_verdicts_admit_gives() {
        let network = ClusterNetwork::default();
        let b = hs("b", "192.0.2.2", "10.1.1.0/24");
        let c = hs("c", "192.0.2.3", "10.1.2.0/24");
        let mut admission = Admission::new(&network, &me(), ip("192.0.2.1"));
        assert!(admission.add(&b, 2) && admission.add(&c, 3));
        let all = [(me(), 1), (b.clone(), 2), (c.clone(), 3)];
        assert_eq!(admission.peers(), &admit(&network, &me(), ip("192.0.2.1"), &all));
        assert!(admission.remove("c"));
        assert_eq!(admission.peers(), &admit(&network, &me(), ip("192.0.2.1"), &all[..2]));
        // A thief joining is refused and stays refused; an older record arriving late asks
        // for a full admit, as does a leave while something is refused.
        assert!(admission.add(&hs("thief", "192.0.2.9", "10.1.1.0/24"), 5));
        assert_eq!(admission.peers().refused.len(), 1);
        assert!(!admission.add(&c, 3), "older than what was added");
        assert!(!admission.remove("b"), "a refusal might pass now");
        let mut fresh = Admission::new(&network, &me(), ip("192.0.2.1"));
        assert_eq!(fresh.take_touched(), Touched::All, "everything, the first time");
        fresh.add(&b, 2);
        let touched = fresh.take_touched();
        let wanted = Touched::Some { routes: [net("10.1.1.0/24")].into(), senders: [ip("192.0.2.2")].into() };
        assert_eq!(touched, wanted);
        assert!(!fresh.take_touched().senders(), "nothing since");
    }

    #[test]
    fn only_on_link_nodes_are_routed_directly_and_only_when_the_cluster_says_so() {
        let underlay = 4;
        let direct = RouteTo { oif: Some(underlay), gateway: None };
        assert!(on_link(Some(direct), underlay));
        assert!(!on_link(Some(RouteTo { gateway: Some(ip("192.0.2.254")), ..direct }), underlay), "via a router");
        assert!(!on_link(Some(RouteTo { oif: Some(9), ..direct }), underlay), "out of another interface");
        assert!(!on_link(None, underlay), "unreachable");

        let near = BTreeSet::from([ip("192.0.2.2")]);
        assert_eq!(transport(true, &near, ip("192.0.2.2")), Transport::Direct);
        assert_eq!(transport(true, &near, ip("198.51.100.3")), Transport::Tunnel, "not on this segment");
        assert_eq!(transport(false, &near, ip("192.0.2.2")), Transport::Tunnel, "direct routing off");
    }

    #[test]
    fn diff_writes_new_and_changed_and_removes_gone() {
        let wanted = BTreeMap::from([(1, 'a'), (2, 'b')]);
        let changes = diff(&wanted, &[(2, 'x'), (3, 'c')]);
        assert_eq!(changes.upsert, [(1, 'a'), (2, 'b')]);
        assert_eq!(changes.remove, [3]);
        assert!(diff(&wanted, &[(1, 'a'), (2, 'b')]).upsert.is_empty());
    }
}
