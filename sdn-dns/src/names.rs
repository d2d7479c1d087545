//! Names inside the cluster zone: a question's labels relative to the zone, the names answers
//! point at, and the IP-derived labels of endpoints (`10-1-0-2`, CoreDNS's form).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// Where a question's name stands against the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Relative {
    /// Not in the zone.
    Outside,
    /// In the zone: the labels left of it, lower case, leftmost first (empty for the apex).
    Labels(Vec<String>),
    /// In the zone, but a label no record can have (a '.' or a byte that is not UTF-8 inside a
    /// label): the name does not exist.
    Impossible,
}

/// The labels of `name` left of `zone`, compared case-insensitively.
pub(crate) fn relative(name: &Name, zone: &Name) -> Relative {
    let labels: Vec<&[u8]> = name.iter().collect();
    let zone_len = usize::from(zone.num_labels());
    let Some(split) = labels.len().checked_sub(zone_len) else { return Relative::Outside };
    let (left, tail) = labels.split_at(split);
    if !tail.iter().zip(zone.iter()).all(|(a, b)| a.eq_ignore_ascii_case(b)) {
        return Relative::Outside;
    }
    let mut out = Vec::with_capacity(left.len());
    for label in left {
        match std::str::from_utf8(label) {
            Ok(text) if !text.contains('.') => out.push(text.to_ascii_lowercase()),
            _ => return Relative::Impossible,
        }
    }
    Relative::Labels(out)
}

/// `labels` followed by the zone; `None` when the result is longer than a name may be.
pub(crate) fn absolute<'a>(labels: impl IntoIterator<Item = &'a str>, zone: &Name) -> Option<Name> {
    Name::from_labels(labels.into_iter().map(str::as_bytes)).ok()?.append_domain(zone).ok()
}

/// The label an endpoint without a hostname is known by: its address with '-' for '.' and ':'.
pub(crate) fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The addresses whose dashed label is `label`: usually one, but `::ffff:10.1.0.2` and
/// `::ffff:10:1:0:2` share theirs.
pub(crate) fn parse_dashed(label: &str) -> Vec<IpAddr> {
    let v4 = || label.replace('-', ".").parse::<Ipv4Addr>().ok().map(IpAddr::V4);
    let v6 = || label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    // An IPv4-mapped IPv6 address is written with dotted IPv4 at its end.
    let mapped = || {
        let mut parts = label.rsplitn(5, '-');
        let (d, c, b, a, head) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        format!("{}:{a}.{b}.{c}.{d}", head.replace('-', ":")).parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    };
    // Only the form `dashed` writes names an address, so each endpoint has one name.
    let mut found: Vec<IpAddr> =
        [v4(), v6(), mapped()].into_iter().flatten().filter(|ip| dashed(*ip) == label).collect();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("name")
    }

    #[test]
    fn names_are_taken_relative_to_the_zone() {
        let zone = name("cluster.local.");
        let labels = |l: &[&str]| Relative::Labels(l.iter().map(|s| s.to_string()).collect());
        assert_eq!(relative(&name("Web.NS.svc.Cluster.LOCAL."), &zone), labels(&["web", "ns", "svc"]));
        assert_eq!(relative(&name("cluster.local."), &zone), labels(&[]));
        assert_eq!(relative(&name("local."), &zone), Relative::Outside);
        assert_eq!(relative(&name("example.com."), &zone), Relative::Outside);
        assert_eq!(relative(&name("a.cluster.local.example."), &zone), Relative::Outside);
        let dotted =
            Name::from_labels([&b"a.b"[..], b"ns", b"svc"]).expect("labels").append_domain(&zone).expect("name");
        assert_eq!(relative(&dotted, &zone), Relative::Impossible);
        let binary = Name::from_labels([&[0xff_u8][..], b"svc"]).expect("labels").append_domain(&zone).expect("name");
        assert_eq!(relative(&binary, &zone), Relative::Impossible);
    }

    #[test]
    fn dashed_labels_round_trip() {
        for text in ["10.1.0.2", "fd00::1", "fd00:1:2:3:4:5:6:7", "::ffff:10.1.0.2", "2001:db8::a:b"] {
            let ip: IpAddr = text.parse().expect("ip");
            let label = dashed(ip);
            assert!(!label.contains(['.', ':']), "{label}");
            assert!(parse_dashed(&label).contains(&ip), "{label}");
        }
        assert_eq!(dashed("10.1.0.2".parse().expect("ip")), "10-1-0-2");
        assert_eq!(dashed("fd00::1".parse().expect("ip")), "fd00--1");
        assert_eq!(parse_dashed("10-1-0-2").len(), 1);
        assert_eq!(parse_dashed("--ffff-10-1-0-2").len(), 2, "mapped and unmapped look alike");
        for other in ["10-1-0-02", "10-1-0", "web-0", "fd00-0-0-0-0-0-0-1", "FD00--1", "", "-", "1-2-3-4-5"] {
            assert!(parse_dashed(other).is_empty(), "{other}");
        }
    }
}
