//! CHECK: whether a pod is still plumbed as it was attached. The agent
//! gathers what the kernel has ([`Observed`]); the comparison is pure, and
//! names every difference, so an operator reads what broke.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

/// What an attachment should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub ifname: String,
    pub host_veth: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// The pod's interface as found in its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSide {
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub addresses: Vec<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
}

/// The host side as found in the node's namespace and the flow maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSide {
    pub index: u32,
    pub mac: [u8; 6],
    pub on_br0: bool,
    pub up: bool,
    /// Whether `sdn_from_pod` is attached to its ingress.
    pub checked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `None`: the namespace is gone or unreadable, with the reason.
    pub netns: Result<Option<PodSide>, String>,
    pub host: Option<HostSide>,
    /// The endpoint map's entry for the pod's address: host ifindex and pod MAC.
    pub endpoint: Option<(u32, [u8; 6])>,
}

/// Every way `observed` differs from `expected`; empty when the pod is intact.
pub fn differences(expected: &Expected, observed: &Observed) -> Vec<String> {
    let mut found = Vec::new();
    let ifname = &expected.ifname;
    let pod = match &observed.netns {
        Err(reason) => {
            found.push(format!("the pod's network namespace: {reason}"));
            None
        }
        Ok(None) => {
            found.push(format!("{ifname} is missing in the pod"));
            None
        }
        Ok(Some(pod)) => Some(pod),
    };
    if let Some(pod) = pod {
        let wanted = Ipv4Network::new(expected.ip, expected.prefix).ok();
        if !wanted.is_some_and(|w| pod.addresses.contains(&w)) {
            let has: Vec<String> = pod.addresses.iter().map(ToString::to_string).collect();
            found.push(format!(
                "{ifname} has address {}, expected {}/{}",
                if has.is_empty() { "none".to_owned() } else { has.join(", ") },
                expected.ip,
                expected.prefix
            ));
        }
        match pod.gateway {
            Some(gateway) if gateway == expected.gateway => {}
            Some(gateway) => found.push(format!("the default route is via {gateway}, expected {}", expected.gateway)),
            None => found.push(format!("no default route via {} on {ifname}", expected.gateway)),
        }
        if pod.mtu != expected.mtu {
            found.push(format!("{ifname} has MTU {}, expected {}", pod.mtu, expected.mtu));
        }
        if !pod.up {
            found.push(format!("{ifname} is down"));
        }
    }
    match &observed.host {
        None => found.push(format!("the host side {} is missing", expected.host_veth)),
        Some(host) => {
            if !host.on_br0 {
                found.push(format!("{} is not a port of br0", expected.host_veth));
            }
            if !host.up {
                found.push(format!("{} is down", expected.host_veth));
            }
            if !host.checked {
                found.push(format!("sdn_from_pod is not attached to {}", expected.host_veth));
            }
        }
    }
    match (observed.endpoint, &observed.host, pod) {
        (None, _, _) => found.push(format!("no flow entry for {}", expected.ip)),
        (Some((index, mac)), host, pod) => {
            if host.as_ref().is_some_and(|h| h.index != index) {
                found.push(format!(
                    "the flow entry for {} points at ifindex {index}, not {}",
                    expected.ip, expected.host_veth
                ));
            }
            if pod.is_some_and(|p| p.mac != mac) {
                found.push(format!("the flow entry for {} holds another MAC than {ifname}'s", expected.ip));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            ifname: "eth0".into(),
            host_veth: "veth01234567".into(),
            ip: Ipv4Addr::new(10, 1, 0, 5),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 1, 0, 1),
            mtu: 1450,
        }
    }

    fn intact() -> Observed {
        Observed {
            netns: Ok(Some(PodSide {
                mac: [2, 0, 0, 0, 0, 5],
                mtu: 1450,
                up: true,
                addresses: vec!["10.1.0.5/24".parse().expect("cidr")],
                gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
            })),
            host: Some(HostSide { index: 9, mac: [2, 0, 0, 0, 0, 9], on_br0: true, up: true, checked: true }),
            endpoint: Some((9, [2, 0, 0, 0, 0, 5])),
        }
    }

    #[test]
    fn an_intact_pod_has_no_differences() {
        assert_eq!(differences(&expected(), &intact()), Vec::<String>::new());
    }

    #[test]
    fn each_difference_is_named() {
        let mut o = intact();
        if let Ok(Some(pod)) = &mut o.netns {
            pod.addresses = vec!["10.1.0.9/24".parse().expect("cidr")];
            pod.gateway = None;
            pod.mtu = 1500;
        }
        o.host = Some(HostSide { index: 9, mac: [2, 0, 0, 0, 0, 9], on_br0: false, up: true, checked: false });
        o.endpoint = Some((4, [2, 0, 0, 0, 0, 5]));
        assert_eq!(
            differences(&expected(), &o),
            vec![
                "eth0 has address 10.1.0.9/24, expected 10.1.0.5/24",
                "no default route via 10.1.0.1 on eth0",
                "eth0 has MTU 1500, expected 1450",
                "veth01234567 is not a port of br0",
                "sdn_from_pod is not attached to veth01234567",
                "the flow entry for 10.1.0.5 points at ifindex 4, not veth01234567",
            ]
        );
        let gone = Observed { netns: Ok(None), host: None, endpoint: None };
        assert_eq!(
            differences(&expected(), &gone),
            vec!["eth0 is missing in the pod", "the host side veth01234567 is missing", "no flow entry for 10.1.0.5"]
        );
    }
}
