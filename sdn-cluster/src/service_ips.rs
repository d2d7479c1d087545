//! Choosing a cluster IP for a new service: the lowest address of the service network that no
//! `service-ips/<ip>` claim holds. Pure; the store makes the choice stick with a transaction that
//! creates the claim only if it is still absent.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// The lowest free address of `network`, never its network address nor, for IPv4, its
/// broadcast address; `None` when every other address is claimed. Claims of the other address
/// family or outside the network are ignored.
pub fn lowest_free(network: IpNetwork, claimed: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let (first, last) = usable_range(network)?;
    let mut candidate = first;
    // Claims in ascending order: the candidate moves past each one it meets, so the loop is
    // bounded by the number of claims, not by the size of the network.
    for taken in claimed.iter().filter_map(|ip| same_family(network, *ip)) {
        if taken < candidate {
            continue;
        }
        if taken > candidate {
            break;
        }
        candidate = candidate.checked_add(1)?;
    }
    (candidate <= last).then(|| to_ip(network, candidate))
}

/// The first and last assignable address of `network` as integers, or `None` if it has none.
fn usable_range(network: IpNetwork) -> Option<(u128, u128)> {
    match network {
        IpNetwork::V4(v4) => {
            let first = u128::from(u32::from(v4.network())).checked_add(1)?;
            let last = u128::from(u32::from(v4.broadcast())).checked_sub(1)?;
            (first <= last).then_some((first, last))
        }
        IpNetwork::V6(v6) => {
            let first = u128::from(v6.network()).checked_add(1)?;
            let last = u128::from(v6.broadcast());
            (first <= last).then_some((first, last))
        }
    }
}

fn same_family(network: IpNetwork, ip: IpAddr) -> Option<u128> {
    match (network, ip) {
        (IpNetwork::V4(_), IpAddr::V4(v4)) => Some(u128::from(u32::from(v4))),
        (IpNetwork::V6(_), IpAddr::V6(v6)) => Some(u128::from(v6)),
        _ => None,
    }
}

fn to_ip(network: IpNetwork, n: u128) -> IpAddr {
    match network {
        // The range came from a u32, so the value fits.
        IpNetwork::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        IpNetwork::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().expect("ip")).collect()
    }

    fn free(network: &str, claimed: &[&str]) -> Option<String> {
        lowest_free(network.parse().expect("cidr"), &ips(claimed)).map(|ip| ip.to_string())
    }

    #[test]
    fn lowest_address_after_the_network_address() {
        assert_eq!(free("172.30.0.0/16", &[]).as_deref(), Some("172.30.0.1"));
        assert_eq!(free("172.30.0.0/16", &["172.30.0.1", "172.30.0.2"]).as_deref(), Some("172.30.0.3"));
    }

    #[test]
    fn gaps_are_filled_first() {
        let claimed = ["172.30.0.1", "172.30.0.3", "172.30.0.4"];
        assert_eq!(free("172.30.0.0/16", &claimed).as_deref(), Some("172.30.0.2"));
    }

    #[test]
    fn foreign_claims_are_ignored() {
        let claimed = ["10.0.0.1", "172.29.255.255", "2001:db8::1", "172.30.0.1"];
        assert_eq!(free("172.30.0.0/16", &claimed).as_deref(), Some("172.30.0.2"));
    }

    #[test]
    fn broadcast_is_never_chosen_and_a_full_network_gives_none() {
        // A /30 has two assignable addresses: .1 and .2.
        assert_eq!(free("192.0.2.0/30", &["192.0.2.1"]).as_deref(), Some("192.0.2.2"));
        assert_eq!(free("192.0.2.0/30", &["192.0.2.1", "192.0.2.2"]), None);
        assert_eq!(free("192.0.2.0/31", &[]), None);
        assert_eq!(free("192.0.2.7/32", &[]), None);
    }

    #[test]
    fn ipv6_uses_the_last_address_too() {
        assert_eq!(free("fd00::/126", &[]).as_deref(), Some("fd00::1"));
        assert_eq!(free("fd00::/126", &["fd00::1", "fd00::2"]).as_deref(), Some("fd00::3"));
        assert_eq!(free("fd00::/126", &["fd00::1", "fd00::2", "fd00::3"]), None);
        assert_eq!(free("fd00::/64", &["172.30.0.1"]).as_deref(), Some("fd00::1"));
    }

    #[test]
    fn whole_ipv4_space() {
        assert_eq!(free("0.0.0.0/0", &["0.0.0.1"]).as_deref(), Some("0.0.0.2"));
        let all_but_broadcast = ["255.255.255.254"];
        assert_eq!(free("255.255.255.252/30", &all_but_broadcast).as_deref(), Some("255.255.255.253"));
    }
}
