//! Reverse names (`in-addr.arpa`, `ip6.arpa`): which of them are ours and what address or range
//! of addresses they name.
//!
//! IPv4 and IPv6 differ only in the width of a label (8 bits as a decimal octet, 4 bits as a hex
//! nibble) and their count, so both are handled as a number of `width`-bit digits of a u128.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use ipnetwork::IpNetwork;

/// The reverse tree of one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Family {
    suffix: [&'static [u8]; 2],
    /// Bits per label.
    width: u32,
    /// Bits per address.
    bits: u32,
}

const V4: Family = Family { suffix: [b"in-addr", b"arpa"], width: 8, bits: 32 };
const V6: Family = Family { suffix: [b"ip6", b"arpa"], width: 4, bits: 128 };

impl Family {
    fn of(net: &IpNetwork) -> Self {
        if net.is_ipv4() { V4 } else { V6 }
    }

    fn digits(self) -> u32 {
        self.bits / self.width
    }

    fn ip(self, value: u128) -> IpAddr {
        if self == V4 {
            // Only the low 32 bits are used for IPv4.
            IpAddr::V4(Ipv4Addr::from((value & u128::from(u32::MAX)) as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(value))
        }
    }

    fn parse_digit(self, label: &[u8]) -> Option<u128> {
        let text = std::str::from_utf8(label).ok()?;
        if self == V4 {
            // One canonical spelling per octet: no sign, no leading zero.
            let canonical = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
            if !canonical || (text.len() > 1 && text.starts_with('0')) {
                return None;
            }
            text.parse::<u8>().ok().map(u128::from)
        } else if text.len() == 1 {
            u128::from_str_radix(text, 16).ok()
        } else {
            None
        }
    }
}

fn value(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The `bits` low bits set.
fn low_mask(bits: u32) -> u128 {
    if bits >= 128 { u128::MAX } else { (1u128 << bits) - 1 }
}

/// The reverse zone of one network: it starts at the longest whole-label name that covers the
/// network (`1.10.in-addr.arpa` for 10.1.0.0/16, `172.in-addr.arpa` for 172.16.0.0/12), but
/// only names inside the network itself are answered.
#[derive(Debug, Clone)]
pub(crate) struct ReverseZone {
    net: IpNetwork,
    family: Family,
    /// Labels between the family's suffix and the apex.
    apex_digits: u32,
    pub apex: Name,
}

impl ReverseZone {
    /// `None` for a network wider than one label: its apex would be `in-addr.arpa` itself.
    pub fn new(net: IpNetwork) -> Option<Self> {
        let family = Family::of(&net);
        let apex_digits = u32::from(net.prefix()) / family.width;
        if apex_digits == 0 {
            return None;
        }
        let top = value(net.network());
        let labels: Vec<String> = (0..apex_digits)
            .rev()
            .map(|i| {
                let digit = (top >> (family.bits - (i + 1) * family.width)) & low_mask(family.width);
                if family == V4 { digit.to_string() } else { format!("{digit:x}") }
            })
            .collect();
        let apex = Name::from_labels(labels.iter().map(|l| l.as_bytes()).chain(family.suffix)).ok()?;
        Some(Self { net, family, apex_digits, apex })
    }
}

/// What a reverse name under one of our zones is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// A whole address.
    Address(IpAddr),
    /// Fewer labels than an address: every address from `first` to `last`. `apex` when it is
    /// the zone's apex.
    Range { first: IpAddr, last: IpAddr, apex: bool },
    /// Labels that are no address (`x.1.10.in-addr.arpa`, five IPv4 labels): it cannot exist.
    Invalid,
}

/// Where a name stands among the reverse zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reverse<'z> {
    /// Not under `in-addr.arpa` or `ip6.arpa`.
    Elsewhere,
    /// A reverse name outside our networks: someone else's to answer.
    Foreign,
    Ours {
        apex: &'z Name,
        place: Place,
    },
}

/// Classifies `name` against `zones`.
pub(crate) fn classify<'z>(name: &Name, zones: &'z [ReverseZone]) -> Reverse<'z> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let Some(split) = labels.len().checked_sub(2) else { return Reverse::Elsewhere };
    let (digits, suffix) = labels.split_at(split);
    let family = [V4, V6]
        .into_iter()
        .find(|f| suffix.iter().zip(f.suffix).all(|(label, want)| label.eq_ignore_ascii_case(want)));
    let Some(family) = family else { return Reverse::Elsewhere };

    // Digits from the top of the tree (the last label) down; stop at the first that is none.
    let mut known = 0u32;
    let mut top = 0u128;
    for label in digits.iter().rev().take(family.digits() as usize) {
        match family.parse_digit(label) {
            Some(digit) => {
                top = (top << family.width) | digit;
                known += 1;
            }
            None => break,
        }
    }
    let invalid = known as usize != digits.len();
    let known_bits = known * family.width;
    let first = if known == 0 { 0 } else { top << (family.bits - known_bits) };

    for zone in zones.iter().filter(|z| z.family == family) {
        if known < zone.apex_digits {
            continue;
        }
        let prefix = u32::from(zone.net.prefix());
        let compared = known_bits.min(prefix);
        let mask = low_mask(family.bits) & !low_mask(family.bits - compared);
        if first & mask != value(zone.net.network()) & mask {
            continue;
        }
        if invalid && known_bits < prefix {
            // The labels that would say whether it is inside the network are no digits.
            continue;
        }
        let place = if invalid {
            Place::Invalid
        } else if known == family.digits() {
            Place::Address(family.ip(first))
        } else {
            let last = first | low_mask(family.bits - known_bits);
            Place::Range { first: family.ip(first), last: family.ip(last), apex: known == zone.apex_digits }
        };
        return Reverse::Ours { apex: &zone.apex, place };
    }
    Reverse::Foreign
}

/// The reverse name of `ip`, for tests.
#[cfg(test)]
pub(crate) fn name_of(ip: IpAddr) -> Name {
    let text = match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> = format!("{:032x}", u128::from(v6)).chars().rev().map(String::from).collect();
            format!("{}.ip6.arpa.", nibbles.join("."))
        }
    };
    Name::from_ascii(text).expect("reverse name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::ip;

    fn zones(nets: &[&str]) -> Vec<ReverseZone> {
        nets.iter().filter_map(|n| ReverseZone::new(n.parse().expect("net"))).collect()
    }

    /// The apex and place of a name of ours; "foreign" or "elsewhere" otherwise.
    fn placed(name: &Name, zones: &[ReverseZone]) -> Result<(String, Place), &'static str> {
        match classify(name, zones) {
            Reverse::Ours { apex, place } => Ok((apex.to_string(), place)),
            Reverse::Foreign => Err("foreign"),
            Reverse::Elsewhere => Err("elsewhere"),
        }
    }

    fn text(name: &str) -> Name {
        Name::from_ascii(name).expect("name")
    }

    #[test]
    fn apexes_are_whole_labels() {
        let z = zones(&["10.1.0.0/16", "172.16.0.0/12", "fd00:1::/48", "fd00:2::/50", "0.0.0.0/4"]);
        let apexes: Vec<String> = z.iter().map(|z| z.apex.to_string()).collect();
        assert_eq!(
            apexes,
            [
                "1.10.in-addr.arpa.",
                "172.in-addr.arpa.",
                "0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.",
                "0.0.0.0.2.0.0.0.0.0.d.f.ip6.arpa."
            ],
            "a network wider than one label has no zone"
        );
    }

    #[test]
    fn ipv4_names_are_placed() {
        let z = zones(&["10.1.0.0/16", "172.16.0.0/12"]);
        let ours = |name: &str| placed(&text(name), &z);
        let apex = "1.10.in-addr.arpa.".to_string();
        assert_eq!(ours("4.3.1.10.in-addr.arpa."), Ok((apex.clone(), Place::Address(ip("10.1.3.4")))));
        assert_eq!(ours("4.3.1.10.IN-ADDR.ARPA."), Ok((apex.clone(), Place::Address(ip("10.1.3.4")))));
        let whole = Place::Range { first: ip("10.1.0.0"), last: ip("10.1.255.255"), apex: true };
        assert_eq!(ours("1.10.in-addr.arpa."), Ok((apex.clone(), whole)));
        let part = Place::Range { first: ip("10.1.3.0"), last: ip("10.1.3.255"), apex: false };
        assert_eq!(ours("3.1.10.in-addr.arpa."), Ok((apex.clone(), part)));
        for invalid in
            ["x.1.10.in-addr.arpa.", "04.3.1.10.in-addr.arpa.", "256.3.1.10.in-addr.arpa.", "5.4.3.1.10.in-addr.arpa."]
        {
            assert_eq!(ours(invalid), Ok((apex.clone(), Place::Invalid)), "{invalid}");
        }
        let wide = Place::Range { first: ip("172.0.0.0"), last: ip("172.255.255.255"), apex: true };
        assert_eq!(ours("172.in-addr.arpa."), Ok(("172.in-addr.arpa.".into(), wide)));
        assert_eq!(ours("1.0.20.172.in-addr.arpa.").map(|p| p.1), Ok(Place::Address(ip("172.20.0.1"))));
        let foreign = [
            "1.2.0.192.in-addr.arpa.",
            "15.172.in-addr.arpa.",
            "x.172.in-addr.arpa.",
            "10.in-addr.arpa.",
            "in-addr.arpa.",
        ];
        for name in foreign {
            assert_eq!(ours(name), Err("foreign"), "{name}");
        }
        for name in ["cluster.local.", "arpa.", ".", "in-addr.example."] {
            assert_eq!(ours(name), Err("elsewhere"), "{name}");
        }
    }

    #[test]
    fn ipv6_names_are_placed() {
        let z = zones(&["fd00:1::/48"]);
        let address = ip("fd00:1::1");
        let name = name_of(address);
        assert_eq!(placed(&name, &z).map(|p| p.1), Ok(Place::Address(address)));
        assert_eq!(
            placed(&name.to_string().to_uppercase().parse().expect("name"), &z).map(|p| p.1),
            Ok(Place::Address(address))
        );
        // Replace the lowest nibble by a label that is no nibble.
        let bad = Name::from_labels([&b"g"[..]]).expect("label").append_domain(&name.base_name()).expect("name");
        assert_eq!(placed(&bad, &z).map(|p| p.1), Ok(Place::Invalid));
        assert_eq!(placed(&name_of(ip("fd00:2::1")), &z), Err("foreign"));
    }
}
