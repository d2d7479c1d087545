//! `ClusterNetwork`: the cluster-wide network layout (seed 003 §4.2.2) and the
//! arithmetic of host subnets inside it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

pub const DEFAULT_CLUSTER_NETWORK: Ipv4Network = match Ipv4Network::new_checked(Ipv4Addr::new(10, 1, 0, 0), 16) {
    Some(n) => n,
    None => panic!("valid constant"),
};
pub const DEFAULT_HOST_SUBNET_LENGTH: u8 = 8;
pub const DEFAULT_SERVICE_NETWORK: Ipv4Network = match Ipv4Network::new_checked(Ipv4Addr::new(172, 30, 0, 0), 16) {
    Some(n) => n,
    None => panic!("valid constant"),
};
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN adds over IPv4: outer IP 20, UDP 8, VXLAN 8, inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The smallest MTU IPv4 hosts must accept (RFC 791), and a sane upper bound
/// (jumbo frames less the VXLAN overhead).
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 576..=9000;

/// The cluster network configuration, stored once at `<prefix>/config/network`.
///
/// Field names follow the OpenShift network API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// Pod addresses; every node's `HostSubnet` is carved from it.
    pub network: Ipv4Network,
    /// Host bits of each node's subnet: 8 gives a /24 per node.
    pub host_subnet_length: u8,
    /// Service (cluster) IPs; must not overlap `network`.
    pub service_network: IpNetwork,
    /// UDP port of the VXLAN overlay.
    pub vxlan_port: u16,
    /// Pod MTU. `None` means each node uses its underlay MTU less 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Send to nodes on the same underlay segment unencapsulated (flannel's `DirectRouting`,
    /// Calico's `CrossSubnet`); nodes across a router keep VXLAN. Off unless set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct_routing: bool,
}

impl Default for ClusterNetwork {
    fn default() -> Self {
        Self {
            network: DEFAULT_CLUSTER_NETWORK,
            host_subnet_length: DEFAULT_HOST_SUBNET_LENGTH,
            service_network: IpNetwork::V4(DEFAULT_SERVICE_NETWORK),
            vxlan_port: DEFAULT_VXLAN_PORT,
            mtu: None,
            direct_routing: false,
        }
    }
}

/// A `ClusterNetwork` that cannot work, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{field}: {value} has host bits set; the network address is {network}")]
    HostBitsSet { field: &'static str, value: String, network: String },
    #[error(
        "hostSubnetLength: {host_bits} host bits give a /{subnet_prefix} per node, larger than the cluster network {network}"
    )]
    SubnetLargerThanNetwork { host_bits: u8, subnet_prefix: u8, network: Ipv4Network },
    #[error("hostSubnetLength: {host_bits} host bits leave no room for a gateway and one pod (at least 2 are needed)")]
    SubnetTooSmall { host_bits: u8 },
    #[error("serviceNetwork: {service} overlaps the cluster network {network}")]
    ServiceOverlap { service: IpNetwork, network: Ipv4Network },
    #[error("vxlanPort: 0 is not a usable UDP port")]
    VxlanPortZero,
    #[error("mtu: {0} is outside {min}..={max}", min = MTU_RANGE.start(), max = MTU_RANGE.end())]
    MtuOutOfRange(u32),
}

impl NetworkError {
    /// The field at fault, as the API and etcd name it.
    pub fn field(&self) -> &'static str {
        match self {
            NetworkError::HostBitsSet { field, .. } => field,
            NetworkError::SubnetLargerThanNetwork { .. } | NetworkError::SubnetTooSmall { .. } => "hostSubnetLength",
            NetworkError::ServiceOverlap { .. } => "serviceNetwork",
            NetworkError::VxlanPortZero => "vxlanPort",
            NetworkError::MtuOutOfRange(_) => "mtu",
        }
    }
}

/// A stored `ClusterNetwork` that the configured one may not replace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field} differs: etcd holds {stored}, the configuration says {configured}; {reason}. \
     Change the configuration back, or delete the nodes first"
)]
pub struct IncompatibleChange {
    pub field: &'static str,
    pub stored: String,
    pub configured: String,
    pub reason: String,
}

impl ClusterNetwork {
    /// The service network when it is IPv4: the dataplane translates IPv4 cluster IPs only.
    pub fn ipv4_service_network(&self) -> Option<Ipv4Network> {
        match self.service_network {
            IpNetwork::V4(v4) => Some(v4),
            IpNetwork::V6(_) => None,
        }
    }

    pub fn validate(&self) -> Result<(), NetworkError> {
        if self.network.ip() != self.network.network() {
            return Err(NetworkError::HostBitsSet {
                field: "network",
                value: self.network.to_string(),
                network: format!("{}/{}", self.network.network(), self.network.prefix()),
            });
        }
        if self.service_network.ip() != self.service_network.network() {
            return Err(NetworkError::HostBitsSet {
                field: "serviceNetwork",
                value: self.service_network.to_string(),
                network: format!("{}/{}", self.service_network.network(), self.service_network.prefix()),
            });
        }
        if self.host_subnet_length < 2 {
            return Err(NetworkError::SubnetTooSmall { host_bits: self.host_subnet_length });
        }
        let subnet_prefix = 32u8.saturating_sub(self.host_subnet_length);
        if self.host_subnet_length > 32 || subnet_prefix < self.network.prefix() {
            return Err(NetworkError::SubnetLargerThanNetwork {
                host_bits: self.host_subnet_length,
                subnet_prefix,
                network: self.network,
            });
        }
        if let IpNetwork::V4(service) = self.service_network
            && service.overlaps(self.network)
        {
            return Err(NetworkError::ServiceOverlap { service: self.service_network, network: self.network });
        }
        if self.vxlan_port == 0 {
            return Err(NetworkError::VxlanPortZero);
        }
        if let Some(mtu) = self.mtu
            && !MTU_RANGE.contains(&mtu)
        {
            return Err(NetworkError::MtuOutOfRange(mtu));
        }
        Ok(())
    }

    /// Prefix length of every node's subnet.
    pub fn subnet_prefix(&self) -> u8 {
        32 - self.host_subnet_length
    }

    /// How many host subnets fit in the cluster network.
    pub fn subnet_count(&self) -> u64 {
        1u64 << (self.subnet_prefix() - self.network.prefix())
    }

    /// The `index`-th host subnet, counting from the start of the network.
    pub fn subnet(&self, index: u64) -> Option<Ipv4Network> {
        if index >= self.subnet_count() {
            return None;
        }
        let base = u32::from(self.network.network());
        let offset = u32::try_from(index).ok()?.checked_shl(u32::from(self.host_subnet_length)).unwrap_or(0);
        Ipv4Network::new(Ipv4Addr::from(base.checked_add(offset)?), self.subnet_prefix()).ok()
    }

    /// The index of `subnet` if it is one of this network's host subnets.
    pub fn subnet_index(&self, subnet: Ipv4Network) -> Option<u64> {
        let aligned = subnet.ip() == subnet.network();
        if subnet.prefix() != self.subnet_prefix() || !aligned || !self.network.contains(subnet.ip()) {
            return None;
        }
        let offset = u32::from(subnet.ip()) - u32::from(self.network.network());
        Some(u64::from(offset.checked_shr(u32::from(self.host_subnet_length)).unwrap_or(0)))
    }

    /// Pod MTU on a node whose underlay has `underlay_mtu`.
    pub fn pod_mtu(&self, underlay_mtu: u32) -> u32 {
        self.mtu.unwrap_or(underlay_mtu.saturating_sub(VXLAN_OVERHEAD))
    }

    /// Whether `self` (configured) may replace `stored` while `allocated`
    /// subnets exist. Changing the layout is refused only when it would orphan
    /// an allocated subnet; the MTU, VXLAN port and direct routing may change freely.
    pub fn check_replaces(&self, stored: &ClusterNetwork, allocated: &[Ipv4Network]) -> Result<(), IncompatibleChange> {
        let orphan = allocated.iter().find(|s| self.subnet_index(**s).is_none());
        if let Some(orphan) = orphan {
            let (field, stored_value, configured) = if self.network != stored.network {
                ("network", stored.network.to_string(), self.network.to_string())
            } else {
                ("hostSubnetLength", stored.host_subnet_length.to_string(), self.host_subnet_length.to_string())
            };
            return Err(IncompatibleChange {
                field,
                stored: stored_value,
                configured,
                reason: format!("the allocated subnet {orphan} would be orphaned"),
            });
        }
        Ok(())
    }

    /// Whether `self` (configured) keeps every `claimed` cluster IP inside its service network;
    /// `stored` is the service network etcd holds, if any (for the message). A service whose IP
    /// fell outside would keep an address no node routes as a service any more.
    pub fn check_keeps_cluster_ips(
        &self,
        stored: Option<IpNetwork>,
        claimed: &[IpAddr],
    ) -> Result<(), IncompatibleChange> {
        match claimed.iter().find(|ip| !self.service_network.contains(**ip)) {
            Some(ip) => Err(IncompatibleChange {
                field: "serviceNetwork",
                stored: stored.map_or_else(|| "none".to_owned(), |n| n.to_string()),
                configured: self.service_network.to_string(),
                reason: format!("the cluster IP {ip} of a service would lie outside it"),
            }),
            None => Ok(()),
        }
    }

    /// The fields in which `self` and `other` differ, for logs.
    pub fn differing_fields(&self, other: &ClusterNetwork) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.network != other.network {
            fields.push("network");
        }
        if self.host_subnet_length != other.host_subnet_length {
            fields.push("hostSubnetLength");
        }
        if self.service_network != other.service_network {
            fields.push("serviceNetwork");
        }
        if self.vxlan_port != other.vxlan_port {
            fields.push("vxlanPort");
        }
        if self.mtu != other.mtu {
            fields.push("mtu");
        }
        if self.direct_routing != other.direct_routing {
            fields.push("directRouting");
        }
        fields
    }
}

impl fmt::Display for ClusterNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "network {} (/{} per node), services {}, vxlan port {}",
            self.network,
            self.subnet_prefix(),
            self.service_network,
            self.vxlan_port
        )?;
        match self.mtu {
            Some(mtu) => write!(f, ", mtu {mtu}")?,
            None => write!(f, ", mtu underlay-{VXLAN_OVERHEAD}")?,
        }
        if self.direct_routing {
            write!(f, ", direct routing on one segment")?;
        }
        Ok(())
    }
}

/// The gateway address of a host subnet: its first host address (`10.1.x.1`).
pub fn gateway(subnet: Ipv4Network) -> Option<IpAddr> {
    subnet.nth(1).map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn default_is_valid_and_gives_256_slash_24s() {
        let n = ClusterNetwork::default();
        n.validate().expect("default valid");
        assert_eq!(n.subnet_count(), 256);
        assert_eq!(n.subnet(0), Some(net("10.1.0.0/24")));
        assert_eq!(n.subnet(255), Some(net("10.1.255.0/24")));
        assert_eq!(n.subnet(256), None);
        assert_eq!(gateway(net("10.1.7.0/24")), Some("10.1.7.1".parse().expect("ip")));
    }

    #[test]
    fn subnet_index_round_trips_and_rejects_foreign_subnets() {
        let n = ClusterNetwork { network: net("10.128.0.0/14"), host_subnet_length: 9, ..Default::default() };
        n.validate().expect("valid");
        assert_eq!(n.subnet_count(), 512);
        for i in [0, 1, 300, 511] {
            let s = n.subnet(i).expect("in range");
            assert_eq!(n.subnet_index(s), Some(i));
        }
        assert_eq!(n.subnet(1), Some(net("10.128.2.0/23")));
        assert_eq!(n.subnet_index(net("10.1.0.0/23")), None);
        assert_eq!(n.subnet_index(net("10.128.0.0/24")), None);
        assert_eq!(n.subnet_index(Ipv4Network::new("10.128.1.0".parse().expect("ip"), 23).expect("net")), None);
    }

    #[test]
    fn whole_ipv4_space_as_one_subnet_does_not_overflow() {
        let n = ClusterNetwork {
            network: net("0.0.0.0/0"),
            host_subnet_length: 32,
            service_network: "2001:db8::/64".parse().expect("cidr"),
            ..Default::default()
        };
        n.validate().expect("valid, if odd");
        assert_eq!(n.subnet_count(), 1);
        assert_eq!(n.subnet(0), Some(net("0.0.0.0/0")));
        assert_eq!(n.subnet_index(net("0.0.0.0/0")), Some(0));
    }

    #[test]
    fn whole_network_as_one_subnet() {
        let n = ClusterNetwork { network: net("10.9.0.0/24"), host_subnet_length: 8, ..Default::default() };
        n.validate().expect("valid");
        assert_eq!(n.subnet_count(), 1);
        assert_eq!(n.subnet(0), Some(net("10.9.0.0/24")));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (ClusterNetwork { host_subnet_length: 17, ..Default::default() }, "hostSubnetLength"),
            (ClusterNetwork { host_subnet_length: 1, ..Default::default() }, "hostSubnetLength"),
            (ClusterNetwork { host_subnet_length: 40, ..Default::default() }, "hostSubnetLength"),
            (ClusterNetwork { network: net("10.1.0.5/16"), ..Default::default() }, "network"),
            (
                ClusterNetwork { service_network: "10.1.128.0/17".parse().expect("cidr"), ..Default::default() },
                "serviceNetwork",
            ),
            (
                ClusterNetwork { service_network: "10.0.0.0/8".parse().expect("cidr"), ..Default::default() },
                "serviceNetwork",
            ),
            (ClusterNetwork { vxlan_port: 0, ..Default::default() }, "vxlanPort"),
            (ClusterNetwork { mtu: Some(100), ..Default::default() }, "mtu"),
        ];
        for (config, field) in cases {
            let err = config.validate().expect_err("must be refused");
            assert_eq!(err.field(), field);
            assert!(err.to_string().starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn change_refused_only_when_it_orphans_a_subnet() {
        let stored = ClusterNetwork::default();
        let allocated = [net("10.1.3.0/24")];
        let wider = ClusterNetwork { network: net("10.0.0.0/15"), ..Default::default() };
        wider.check_replaces(&stored, &allocated).expect("superset keeps subnets");
        let moved = ClusterNetwork { network: net("10.2.0.0/16"), ..Default::default() };
        let err = moved.check_replaces(&stored, &allocated).expect_err("orphans");
        assert_eq!(err.field, "network");
        let resized = ClusterNetwork { host_subnet_length: 9, ..Default::default() };
        assert_eq!(resized.check_replaces(&stored, &allocated).expect_err("orphans").field, "hostSubnetLength");
        resized.check_replaces(&stored, &[]).expect("nothing allocated");
        let mtu = ClusterNetwork { mtu: Some(1400), ..Default::default() };
        mtu.check_replaces(&stored, &allocated).expect("mtu may change");
        let claimed: [IpAddr; 1] = ["172.30.4.5".parse().expect("ip")];
        let wider = ClusterNetwork { service_network: "172.30.0.0/15".parse().expect("cidr"), ..Default::default() };
        wider.check_keeps_cluster_ips(Some(stored.service_network), &claimed).expect("superset keeps IPs");
        let moved = ClusterNetwork { service_network: "172.31.0.0/16".parse().expect("cidr"), ..Default::default() };
        let err = moved.check_keeps_cluster_ips(Some(stored.service_network), &claimed).expect_err("outside");
        assert_eq!(err.field, "serviceNetwork");
        assert!(err.reason.contains("172.30.4.5"), "{}", err.reason);
        moved.check_keeps_cluster_ips(None, &[]).expect("no services");
        assert_eq!(mtu.differing_fields(&stored), vec!["mtu"]);
        let direct = ClusterNetwork { direct_routing: true, ..Default::default() };
        direct.check_replaces(&stored, &allocated).expect("direct routing may change");
        assert_eq!(direct.differing_fields(&stored), vec!["directRouting"]);
    }

    #[test]
    fn pod_mtu_defaults_to_underlay_less_vxlan() {
        assert_eq!(ClusterNetwork::default().pod_mtu(1500), 1450);
        assert_eq!(ClusterNetwork { mtu: Some(1400), ..Default::default() }.pod_mtu(1500), 1400);
    }

    #[test]
    fn json_uses_openshift_names() {
        let json = serde_json::to_value(ClusterNetwork::default()).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"network": "10.1.0.0/16", "hostSubnetLength": 8,
                "serviceNetwork": "172.30.0.0/16", "vxlanPort": 4789})
        );
        let direct = ClusterNetwork { direct_routing: true, ..Default::default() };
        assert_eq!(serde_json::to_value(&direct).expect("serialize")["directRouting"], true);
        // Records written before the setting existed read as "off".
        let old: ClusterNetwork = serde_json::from_value(json).expect("deserialize");
        assert!(!old.direct_routing);
    }
}
