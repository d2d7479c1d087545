//! What the DNS core is told (`Config`) and the checked form it answers from (`Settings`).

use std::net::IpAddr;

use hickory_proto::rr::Name;
use ipnetwork::IpNetwork;
use sdn_cluster::ClusterNetwork;
use sdn_cluster::records::validate_label;

use crate::reverse::ReverseZone;

/// The cluster domain of the design brief.
pub const DEFAULT_ZONE: &str = "cluster.local";
/// TTL of positive answers, in seconds.
pub const DEFAULT_TTL: u32 = 30;
/// TTL of negative answers (the SOA's TTL and minimum): short, so a new service is found soon.
pub const DEFAULT_NEGATIVE_TTL: u32 = 5;
/// Largest UDP reply by default: the DNS flag day 2020 size, which avoids IP fragmentation.
pub const DEFAULT_UDP_MAX: u16 = 1232;
/// The Kubernetes DNS schema version `dns-version.<zone>` answers.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// RFC 2181 §8: a TTL is at most 2^31 - 1.
pub const MAX_TTL: u32 = i32::MAX as u32;

/// How the cluster DNS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The cluster domain, e.g. `cluster.local` (case-insensitive, a trailing dot is allowed).
    pub zone: String,
    /// TTL of positive answers.
    pub ttl: u32,
    /// TTL of negative answers: the TTL and minimum of the SOA they carry.
    pub negative_ttl: u32,
    /// Networks whose reverse names (`in-addr.arpa`, `ip6.arpa`) this server owns: the cluster
    /// and service networks. Reverse names outside them are forwarded.
    pub reverse_networks: Vec<IpNetwork>,
    /// The RA bit of answers: set it when the shell forwards other names upstream.
    pub recursion_available: bool,
}

impl Config {
    /// The defaults, owning the reverse names of `network`'s cluster and service networks.
    pub fn for_network(network: &ClusterNetwork) -> Self {
        Self {
            zone: DEFAULT_ZONE.into(),
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            reverse_networks: vec![IpNetwork::V4(network.network), network.service_network],
            recursion_available: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::for_network(&ClusterNetwork::default())
    }
}

/// A `Config` that cannot work, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("zone: {value:?} is not a usable cluster domain: {reason}")]
    Zone { value: String, reason: String },
    #[error("{field}: {value} is larger than the largest TTL ({MAX_TTL})")]
    Ttl { field: &'static str, value: u32 },
}

/// A checked `Config`, with the names every answer needs built once.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub config: Config,
    /// The zone, lower case.
    pub zone: Name,
    /// SOA MNAME and RNAME, as CoreDNS names them.
    pub mname: Name,
    pub rname: Name,
    pub reverse: Vec<ReverseZone>,
}

impl Settings {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let zone = zone_name(&config.zone)?;
        for (field, value) in [("ttl", config.ttl), ("negativeTtl", config.negative_ttl)] {
            if value > MAX_TTL {
                return Err(ConfigError::Ttl { field, value });
            }
        }
        let under = |labels: &[&str]| {
            Name::from_labels(labels.iter().map(|l| l.as_bytes()))
                .and_then(|name| name.append_domain(&zone))
                .map_err(|e| ConfigError::Zone { value: config.zone.clone(), reason: format!("it is too long: {e}") })
        };
        let mname = under(&["ns", "dns"])?;
        let rname = under(&["hostmaster"])?;
        let reverse = config.reverse_networks.iter().filter_map(|net| ReverseZone::new(*net)).collect();
        Ok(Self { zone, mname, rname, reverse, config })
    }

    /// Whether `ip` is inside a network whose reverse names are ours.
    pub fn owns_reverse(&self, ip: IpAddr) -> bool {
        self.config.reverse_networks.iter().any(|net| net.contains(ip))
    }
}

/// Parses the zone: DNS-1123 labels (any case), not the root, not under `arpa`.
fn zone_name(value: &str) -> Result<Name, ConfigError> {
    let fail = |reason: String| ConfigError::Zone { value: value.to_owned(), reason };
    let lower = value.strip_suffix('.').unwrap_or(value).to_ascii_lowercase();
    if lower.is_empty() {
        return Err(fail("the root zone would capture every name".into()));
    }
    for label in lower.split('.') {
        validate_label("zone", label).map_err(|e| fail(e.to_string()))?;
    }
    if lower == "arpa" || lower.ends_with(".arpa") {
        return Err(fail("names under arpa are the reverse zones".into()));
    }
    Name::from_labels(lower.split('.').map(str::as_bytes)).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_checked_and_lowered() {
        let settings = Settings::new(Config { zone: "Cluster.Local.".into(), ..Config::default() }).expect("zone");
        assert_eq!(settings.zone.to_string(), "cluster.local.");
        assert_eq!(settings.mname.to_string(), "ns.dns.cluster.local.");
        assert_eq!(settings.rname.to_string(), "hostmaster.cluster.local.");
        for bad in ["", ".", "a..b", "under_score.local", "1.10.in-addr.arpa", "-x.local"] {
            let err = Settings::new(Config { zone: bad.into(), ..Config::default() }).expect_err(bad);
            assert!(err.to_string().starts_with("zone: "), "{err}");
        }
        let err = Settings::new(Config { ttl: u32::MAX, ..Config::default() }).expect_err("ttl");
        assert!(err.to_string().starts_with("ttl: 4294967295 is larger"), "{err}");
    }

    #[test]
    fn the_default_owns_the_default_networks() {
        let settings = Settings::new(Config::default()).expect("default");
        assert!(settings.owns_reverse("10.1.2.3".parse().expect("ip")));
        assert!(settings.owns_reverse("172.30.0.1".parse().expect("ip")));
        assert!(!settings.owns_reverse("192.0.2.1".parse().expect("ip")));
    }
}
