//! What the agent keeps of a pod: the attach request, stored as the owner
//! record of its address in IPAM (one file per address). One file holds
//! both the address and who has it, so no crash can leave one without the
//! other.

use std::net::Ipv4Addr;

use crate::podapi::{AttachRequest, AttachmentKey, default_ifname};

/// Decodes an IPAM owner record. Records of agents before CNI support hold
/// the bare pod ID; they read as that ID on `eth0`.
pub fn decode(record: &str) -> AttachRequest {
    serde_json::from_str(record).unwrap_or_else(|_| AttachRequest {
        id: record.to_owned(),
        netns: Default::default(),
        ifname: default_ifname(),
        network: None,
        namespace: None,
        name: None,
    })
}

pub fn encode(request: &AttachRequest) -> String {
    // A struct of strings and paths always serializes.
    serde_json::to_string(request).unwrap_or_default()
}

pub fn key(request: &AttachRequest) -> AttachmentKey {
    AttachmentKey { id: request.id.clone(), ifname: request.ifname.clone() }
}

/// The IPAM key of an attachment: `<id>/<ifname>` (container IDs and interface names hold no '/').
pub fn ipam_key(key: &AttachmentKey) -> String {
    format!("{}/{}", key.id, key.ifname)
}

/// The IPAM key of an owner record, for [`crate::ipam::IpamStore::open`].
pub fn record_ipam_key(record: &str) -> String {
    ipam_key(&key(&decode(record)))
}

/// The host-side veth name of an attachment: stable, 15 bytes (Linux's most), 44 bits of hash.
/// Names can still collide (and a caller choosing container IDs could make them): attaching
/// checks that an existing veth of that name is this pod's before taking it.
pub fn host_veth(key: &AttachmentKey) -> String {
    format!("veth{:011x}", fnv(key) >> 20)
}

/// The 8-hex-digit name earlier builds gave, which the agent renames on adoption.
pub fn legacy_host_veth(key: &AttachmentKey) -> String {
    format!("veth{:08x}", fnv(key) as u32)
}

/// FNV-1a of `<id>/<ifname>`: stable across builds, unlike std's hasher.
fn fnv(key: &AttachmentKey) -> u64 {
    let bytes = key.id.bytes().chain(std::iter::once(b'/')).chain(key.ifname.bytes());
    bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether `name` has the shape of [`host_veth`]'s names (or [`legacy_host_veth`]'s).
pub fn is_host_veth(name: &str) -> bool {
    name.strip_prefix("veth")
        .is_some_and(|hash| matches!(hash.len(), 8 | 11) && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The MACs of a fresh pair for the pod at `ip`, both locally administered unicast: the pod's
/// `0a:58:<ip>`, as OpenShift SDN and the CNI bridge plugin give them (an address handed out
/// again comes with the same MAC, so neighbours' caches stay right), and the host end's
/// `0a:59:<ip>`. Choosing them spares reading them back after the pair is made.
pub fn veth_macs(ip: Ipv4Addr) -> (/* pod */ [u8; 6], /* host */ [u8; 6]) {
    let [a, b, c, d] = ip.octets();
    ([0x0a, 0x58, a, b, c, d], [0x0a, 0x59, a, b, c, d])
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, ifname: &str) -> AttachmentKey {
        AttachmentKey { id: id.into(), ifname: ifname.into() }
    }

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = host_veth(&key("0123456789abcdef0123456789abcdef", "eth0"));
        assert_eq!(a, host_veth(&key("0123456789abcdef0123456789abcdef", "eth0")));
        assert!(a.len() == 15 && a.starts_with("veth") && is_host_veth(&a), "{a}");
        let legacy = legacy_host_veth(&key("0123456789abcdef0123456789abcdef", "eth0"));
        assert!(legacy.len() == 12 && is_host_veth(&legacy), "{legacy}");
        assert!(!is_host_veth("veth0123456789") && !is_host_veth("vethxyz01234"));
        assert_ne!(a, host_veth(&key("0123456789abcdef0123456789abcdee", "eth0")));
        assert_ne!(a, host_veth(&key("0123456789abcdef0123456789abcdef", "eth1")));
    }

    #[test]
    fn pair_macs_follow_the_address() {
        let (pod, host) = veth_macs(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(mac_string(pod), "0a:58:0a:01:02:03");
        assert_eq!(mac_string(host), "0a:59:0a:01:02:03");
        // Locally administered (bit 1) and unicast (bit 0 clear).
        assert_eq!(pod[0] & 0b11, 0b10);
    }

    #[test]
    fn records_round_trip_and_old_ones_read_as_eth0() {
        let request = AttachRequest {
            id: "c1".into(),
            netns: "/run/netns/p".into(),
            ifname: "net1".into(),
            network: Some("sdn".into()),
            namespace: Some("default".into()),
            name: Some("web-0".into()),
        };
        assert_eq!(decode(&encode(&request)), request);
        assert_eq!(record_ipam_key(&encode(&request)), ipam_key(&key("c1", "net1")));
        assert_ne!(record_ipam_key(&encode(&request)), ipam_key(&key("c1", "eth0")));
        let old = decode("pod-7");
        assert_eq!((old.id.as_str(), old.ifname.as_str()), ("pod-7", "eth0"));
        assert_eq!(record_ipam_key("pod-7"), "pod-7/eth0");
    }
}
