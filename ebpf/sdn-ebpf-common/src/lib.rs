//! Map key and value types shared by the eBPF programs (`sdn-ebpf`) and the node agent.
//!
//! Every type here is `#[repr(C)]` and `Copy`, so both sides agree on its layout byte for byte.
//! The crate is `no_std` because the eBPF programs link it; the node agent enables the `user`
//! feature, under which the types implement `aya::Pod` and can be read from and written to maps.
//!
//! # Padding
//!
//! None of these types has implicit padding: every gap the C layout rules would leave is an
//! explicit `_pad` field. Two reasons:
//!
//! - The agent copies whole values into the kernel (`bpf_map_update_elem`). Implicit padding bytes
//!   are uninitialised memory in Rust; copying them out as bytes is undefined behaviour, and in
//!   practice leaks stack garbage into the map. An explicit field is always written (zero), so
//!   `aya::Pod` (which promises "every byte is initialised") is sound.
//! - The layout is spelled out where a reader (or `bpftool map dump`) can see it, and the
//!   compile-time size checks below catch any change that would shift a field.
//!
//! IPv4 addresses are stored in network byte order in a `u32` (the four octets in memory order,
//! i.e. `u32::from_ne_bytes(addr.octets())`), which is how they sit in the packet, so the
//! programs compare them without swapping.
#![no_std]

/// Name of the endpoint map: pod IPv4 (`u32`, network order) → [`Endpoint`]. A hash map.
pub const MAP_ENDPOINTS: &str = "SDN_ENDPOINTS";
/// Name of the remote-subnet map: LPM key (prefix length, IPv4 network order) → [`Remote`].
pub const MAP_REMOTES: &str = "SDN_REMOTES";
/// Name of the node configuration map: an array of one [`NodeConfig`] at index 0.
pub const MAP_CONFIG: &str = "SDN_CONFIG";
/// Name of the per-decision counter map: a per-CPU array of [`Counter`] indexed by [`Decision`].
pub const MAP_COUNTERS: &str = "SDN_COUNTERS";
/// Name of the tunnel map: an array of one [`Tunnel`] at index 0. Like [`MAP_CONFIG`] it holds
/// settings the agent writes on every start, so a pin of another build's layout is replaced
/// rather than refused.
pub const MAP_TUNNEL: &str = "SDN_TUNNEL";

/// Name of the service map: [`ServiceKey`] (a frontend) → [`ServiceEntry`]. A hash map.
pub const MAP_SERVICES: &str = "SDN_SERVICES";
/// Name of the backend map: [`BackendKey`] (a service's id and a slot) → [`Backend`]. A hash map.
pub const MAP_BACKENDS: &str = "SDN_BACKENDS";
/// Name of the connection-tracking map: [`FlowKey`] → [`Translation`]. An LRU hash map: the
/// oldest connections make room for new ones.
pub const MAP_CONNTRACK: &str = "SDN_CONNTRACK";
/// Name of the session-affinity map: [`AffinityKey`] (a client and a frontend) → [`Affinity`].
/// An LRU hash map.
pub const MAP_AFFINITY: &str = "SDN_AFFINITY";

/// Name of the node map: a registered remote node's underlay IPv4 (`u32`, network order) →
/// [`PeerNode`], its subnet. VXLAN is accepted only from these addresses, carrying only their
/// subnets' sources. A hash map.
pub const MAP_NODES: &str = "SDN_NODES";
/// Name of the drop ring buffer: a [`DropEvent`] per dropped packet, for `sdn-node drops`.
pub const MAP_DROPS: &str = "SDN_DROPS";

/// Capacity of [`MAP_ENDPOINTS`].
pub const MAX_ENDPOINTS: u32 = 65536;
/// Capacity of [`MAP_NODES`].
pub const MAX_NODES: u32 = 65536;
/// Size in bytes of [`MAP_DROPS`] (a power of two pages): about 2,000 events unread.
pub const DROPS_BYTES: u32 = 256 * 1024;
/// How many leading bytes of a dropped packet a [`DropEvent`] keeps: enough for the outer and
/// inner headers of a VXLAN frame up to the inner ports.
pub const DROP_CAPTURE: usize = 96;
/// Capacity of [`MAP_REMOTES`].
pub const MAX_REMOTES: u32 = 65536;

/// Capacity of [`MAP_SERVICES`] (frontends and cluster-IP markers).
pub const MAX_SERVICES: u32 = 65536;
/// Capacity of [`MAP_BACKENDS`].
pub const MAX_BACKENDS: u32 = 262144;
/// Capacity of [`MAP_CONNTRACK`]: two entries per connection (its way there and back).
pub const MAX_CONNTRACK: u32 = 262144;
/// Capacity of [`MAP_AFFINITY`].
pub const MAX_AFFINITY: u32 = 65536;
/// The source a pod sees on a connection to a service that chose the pod itself (hairpin): a
/// link-local address no pod has, which its replies go to through the gateway, as Cilium's
/// `IPV4_LOOPBACK` does. Network order, as the maps store addresses.
pub const HAIRPIN_SOURCE: [u8; 4] = [169, 254, 42, 1];

/// Program (function symbol) on the ingress of each pod's host-side veth.
pub const PROG_FROM_POD: &str = "sdn_from_pod";
/// Program on the ingress of `vxlan0`.
pub const PROG_FROM_TUNNEL: &str = "sdn_from_tunnel";
/// Program on the ingress of `tun0-br`.
pub const PROG_FROM_HOST: &str = "sdn_from_host";
/// Program on the ingress of the underlay interface (the one holding the node's IP).
pub const PROG_FROM_UNDERLAY: &str = "sdn_from_underlay";

/// A pod on this node: where to deliver a packet whose destination is the pod's IP.
///
/// Layout (32 bytes, align 8): `ifindex` 0..4, `mac` 4..10, `flags` 10, `_pad` 11..16, `packets`
/// 16..24, `bytes` 24..32. `packets` is a `u64` and must start at offset 16, so the explicit
/// `flags` and pad cover the whole gap C layout would leave (an entry of a build before `flags`
/// reads as 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Ifindex of the pod's host-side veth (a port of `br0`); its peer is the pod's `eth0`.
    pub ifindex: u32,
    /// MAC address of the pod's `eth0`.
    pub mac: [u8; 6],
    /// [`ENDPOINT_STRIP_GSO`] or 0.
    pub flags: u8,
    /// Explicit padding up to the 8-byte aligned counters; always zero.
    pub _pad: [u8; 5],
    /// Packets delivered to this pod (atomic adds by the programs).
    pub packets: u64,
    /// Bytes delivered to this pod (atomic adds by the programs).
    pub bytes: u64,
}

/// [`Endpoint::flags`]: the pod's namespace does not forward (forwarding off, no interface but
/// its own and `lo`), so a GRO/GSO super-packet from the tunnel may be stripped in eBPF for it
/// even where the kernel cannot clear the packet's UDP-tunnel segmentation state: a packet that
/// ends in a local socket is never segmented again.
pub const ENDPOINT_STRIP_GSO: u8 = 1;

/// A remote node's subnet: where to send a packet whose destination is in it.
///
/// Layout (24 bytes, align 8): `node_ip` 0..4, `flags` 4..8, `packets` 8..16, `bytes` 16..24.
/// `flags` sits where C layout would leave a gap before the 8-byte aligned `packets` (an entry of
/// a build before it reads as 0: tunnelled).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    /// The remote node's underlay IPv4 address, network byte order: the VXLAN tunnel destination,
    /// or the next hop of direct routing.
    pub node_ip: u32,
    /// [`REMOTE_DIRECT`] or 0.
    pub flags: u32,
    /// Packets sent to this subnet (atomic adds by the programs).
    pub packets: u64,
    /// Bytes sent to this subnet (atomic adds by the programs).
    pub bytes: u64,
}

/// [`Remote::flags`]: the node is on this node's underlay segment and direct routing is on: its
/// subnet's packets go to it unencapsulated, with it as the next hop.
pub const REMOTE_DIRECT: u32 = 1;

/// The node's own settings, read by every program from index 0 of [`MAP_CONFIG`].
///
/// Layout (36 bytes, align 4): three `u32` 0..12, `gateway_mac` 12..18, `vxlan_port` 18..20,
/// `node_ip` 20..24, `underlay_ifindex` 24..28, `service_network` 28..32, `service_mask` 32..36.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// The gateway address on `tun0` (`10.1.x.1`), network byte order.
    pub gateway_ip: u32,
    /// Ifindex of `vxlan0`.
    pub vxlan_ifindex: u32,
    /// Ifindex of `tun0-br` (the bridge-side peer of `tun0`).
    pub tun_br_ifindex: u32,
    /// MAC address of `tun0`, the source MAC of packets the programs deliver.
    pub gateway_mac: [u8; 6],
    /// The VXLAN UDP port, network byte order: pods may not send to it at a node.
    pub vxlan_port: u16,
    /// The node's underlay IPv4 address, network byte order.
    pub node_ip: u32,
    /// Ifindex of the underlay interface: where directly routed packets leave and arrive.
    pub underlay_ifindex: u32,
    /// The service network's address, network byte order: only packets to it can be for a
    /// frontend, so only they are looked up in the service maps.
    pub service_network: u32,
    /// The service network's mask, network byte order. The agent writes the configuration
    /// before it attaches any program; an all-zero one would take every destination for a
    /// possible frontend and none for a tracked reply.
    pub service_mask: u32,
}

impl NodeConfig {
    /// Whether `ip` (network order) is in the service network, and so may be a cluster IP.
    #[inline(always)]
    pub fn in_service_network(&self, ip: u32) -> bool {
        ip & self.service_mask == self.service_network
    }
}

/// A registered remote node, keyed by its underlay address in [`MAP_NODES`]: the subnet whose
/// sources its VXLAN packets may carry.
///
/// Layout (8 bytes, align 4): `subnet` 0..4, `mask` 4..8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerNode {
    /// The subnet's network address, network byte order.
    pub subnet: u32,
    /// The subnet's mask, network byte order.
    pub mask: u32,
}

impl PeerNode {
    /// Whether `ip` (network order) lies in the node's subnet.
    #[inline(always)]
    pub fn owns(&self, ip: u32) -> bool {
        ip & self.mask == self.subnet
    }
}

/// A dropped packet, as the programs write it to [`MAP_DROPS`].
///
/// Layout (112 bytes, align 4): `reason` 0..4, `ifindex` 4..8, `len` 8..12, `captured` 12..16,
/// `bytes` 16..112.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// The [`Decision`] index: why it was dropped.
    pub reason: u32,
    /// The interface it arrived on (as the node's namespace numbers them).
    pub ifindex: u32,
    /// Its length (`skb->len`).
    pub len: u32,
    /// How many of `bytes` hold the packet's first bytes.
    pub captured: u32,
    /// The packet's first bytes, from its Ethernet header on.
    pub bytes: [u8; DROP_CAPTURE],
}

/// How the programs send and receive VXLAN themselves, read from index 0 of [`MAP_TUNNEL`].
///
/// All zero (the map's initial value) means they do not: packets to remote subnets go through
/// `vxlan0` and arrive from it, as with `--kernel-vxlan`. Otherwise `sdn_from_pod` and
/// `sdn_from_host` add the outer headers and send straight out of the underlay interface, and
/// `sdn_from_underlay` strips them from packets for local pods; the kernel's `vxlan0` still
/// receives what the programs leave to it, so nodes of either kind interoperate.
///
/// Layout (12 bytes, align 4): `node_ip` 0..4, `underlay_ifindex` 4..8, `port` 8..10, `_pad`
/// 10..12.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunnel {
    /// The node's underlay IPv4 address, network byte order: the outer source, and the outer
    /// destination of packets to strip.
    pub node_ip: u32,
    /// Ifindex of the underlay interface; 0 turns the programs' own VXLAN off.
    pub underlay_ifindex: u32,
    /// The VXLAN UDP port, network byte order.
    pub port: u16,
    /// Explicit trailing padding; always zero.
    pub _pad: [u8; 2],
}

/// A frontend: where clients connect. Port 0 with protocol 0 is the marker that `ip` is a
/// cluster IP at all, so a packet to a port the service does not have is dropped, not routed.
///
/// Layout (8 bytes, align 4): `ip` 0..4, `port` 4..6, `protocol` 6, `_pad` 7.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// The cluster IP, network byte order.
    pub ip: u32,
    /// The port, network byte order (as it sits in the packet).
    pub port: u16,
    /// The IP protocol number: 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
}

/// A frontend's backends: `count` slots `0..count` of [`MAP_BACKENDS`] under `id`.
///
/// Layout (32 bytes, align 8): `id` 0..4, `count` 4..8, `affinity` 8..12, `_pad` 12..16,
/// `packets` 16..24, `bytes` 24..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The frontend's id, unique on the node, the first half of its backends' keys.
    pub id: u32,
    /// How many backends; 0 refuses connections at once.
    pub count: u32,
    /// `ClientIP` session affinity: how long, in seconds, a client's new connections go to the
    /// backend of its last one; 0 for none.
    pub affinity: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// Packets translated to a backend (atomic adds by the programs).
    pub packets: u64,
    /// Bytes translated to a backend (atomic adds by the programs).
    pub bytes: u64,
}

/// One slot of a frontend's backends.
///
/// Layout (8 bytes, align 4): `id` 0..4, `slot` 4..8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// The frontend's [`ServiceEntry::id`].
    pub id: u32,
    pub slot: u32,
}

/// A backend: a pod's address and target port.
///
/// Layout (8 bytes, align 4): `ip` 0..4, `port` 4..6, `_pad` 6..8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Network byte order.
    pub ip: u32,
    /// Network byte order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub _pad: u16,
}

/// A packet's flow, as the connection-tracking map keys it.
///
/// Layout (16 bytes, align 4): `saddr` 0..4, `daddr` 4..8, `sport` 8..10, `dport` 10..12,
/// `protocol` 12, `direction` 13, `_pad` 14..16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    /// [`FLOW_TO_SERVICE`] or [`FLOW_REPLY`]: both ways of a connection share the map, and a
    /// client's packet must never be taken for a reply.
    pub direction: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 2],
}

/// [`FlowKey::direction`] of a client's packets to a frontend.
pub const FLOW_TO_SERVICE: u8 = 0;
/// [`FlowKey::direction`] of a backend's replies.
pub const FLOW_REPLY: u8 = 1;

/// What a tracked flow's packets become. On the way to a service: the backend chosen (and its
/// frontend's id and slot, to tell whether it still serves); on the way back: the frontend the
/// client asked for, and, for a hairpin, the client the reply goes to.
///
/// Layout (20 bytes, align 4): `ip` 0..4, `port` 4..6, `_pad` 6..8, `client` 8..12, `id`
/// 12..16, `slot` 16..20.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// The new destination (way there) or source (way back), network byte order.
    pub ip: u32,
    pub port: u16,
    /// Explicit padding; always zero.
    pub _pad: u16,
    /// Way back of a hairpin: the client's address, which replaces the hairpin source as the
    /// destination; 0 otherwise.
    pub client: u32,
    pub id: u32,
    pub slot: u32,
}

/// A client of a frontend with `ClientIP` affinity.
///
/// Layout (8 bytes, align 4): `client` 0..4, `id` 4..8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// The client's address, network byte order.
    pub client: u32,
    /// The frontend's [`ServiceEntry::id`].
    pub id: u32,
}

/// The backend a client's last new connection got, and when.
///
/// Layout (24 bytes, align 8): `ip` 0..4, `port` 4..6, `_pad` 6..8, `slot` 8..12, `_pad2`
/// 12..16, `used_ns` 16..24.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Affinity {
    pub ip: u32,
    pub port: u16,
    /// Explicit padding; always zero.
    pub _pad: u16,
    pub slot: u32,
    /// Explicit padding; always zero.
    pub _pad2: u32,
    /// `bpf_ktime_get_ns` of that connection.
    pub used_ns: u64,
}

/// Packet and byte counts of one [`Decision`] (one CPU's share in [`MAP_COUNTERS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (`skb->len`, the Ethernet frame without FCS).
    pub bytes: u64,
}

/// What a program decided for a packet; the index into [`MAP_COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision {
    /// Delivered to a local pod (from a pod or from the host).
    LocalDeliver = 0,
    /// Tunnelled to a remote node (from a pod or from the host).
    ToRemote = 1,
    /// Arrived from the tunnel and delivered to a local pod.
    FromTunnel = 2,
    /// Passed towards the host (`tun0`).
    ToHost = 3,
    /// Dropped: from a pod, with a source IPv4 address that is not the pod's on that port.
    SpoofedIp = 4,
    /// Dropped: arrived from the tunnel for no local pod and not the gateway.
    TunnelMiss = 5,
    /// Sent to a service: its destination translated to a backend.
    ServiceTranslated = 6,
    /// A service's reply: its source translated back to the frontend.
    ServiceReplied = 7,
    /// To a service without ready backends: refused (a TCP reset, or ICMP port unreachable).
    ServiceRejected = 8,
    /// Dropped: to a cluster IP on a port its service does not have.
    ServiceNoPort = 9,
    /// Dropped: from a pod, with its address but another source MAC.
    SpoofedMac = 10,
    /// Dropped: an ARP packet from a pod whose sender is not that pod's address and MAC.
    SpoofedArp = 11,
    /// Dropped: from a pod, neither IPv4, IPv6 nor ARP.
    NotIpv4 = 12,
    /// Dropped: IPv6 from a pod (neighbour discovery included): the cluster network is IPv4.
    /// Not a spoof.
    Ipv6 = 13,
    /// Dropped: VXLAN from an address that is no registered node's.
    TunnelUnknownNode = 14,
    /// Dropped: VXLAN from a registered node, carrying a source outside that node's subnet.
    TunnelForeignSource = 15,
    /// Dropped: from a pod, UDP to a node's VXLAN port (a pod could wrap a forged packet).
    PodToTunnel = 16,
    /// Sent to a remote node on this segment unencapsulated (direct routing).
    ToDirect = 17,
    /// Arrived unencapsulated from a remote node on this segment and delivered to a local pod
    /// (or the host).
    FromDirect = 18,
    /// Dropped: unencapsulated from the underlay, with a source in a remote node's subnet, but
    /// not from that node on this segment (another MAC, or a node behind a router).
    DirectForeignSource = 19,
    /// Dropped: too short or otherwise unreadable where a program had to read it.
    Malformed = 20,
}

impl Decision {
    /// Number of decisions: the size of [`MAP_COUNTERS`].
    pub const COUNT: usize = 21;
    /// Every decision, in index order.
    pub const ALL: [Decision; Decision::COUNT] = [
        Decision::LocalDeliver,
        Decision::ToRemote,
        Decision::FromTunnel,
        Decision::ToHost,
        Decision::SpoofedIp,
        Decision::TunnelMiss,
        Decision::ServiceTranslated,
        Decision::ServiceReplied,
        Decision::ServiceRejected,
        Decision::ServiceNoPort,
        Decision::SpoofedMac,
        Decision::SpoofedArp,
        Decision::NotIpv4,
        Decision::Ipv6,
        Decision::TunnelUnknownNode,
        Decision::TunnelForeignSource,
        Decision::PodToTunnel,
        Decision::ToDirect,
        Decision::FromDirect,
        Decision::DirectForeignSource,
        Decision::Malformed,
    ];

    /// The index into [`MAP_COUNTERS`].
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// A short lower-case name, for logs and flow dumps.
    pub const fn name(self) -> &'static str {
        match self {
            Decision::LocalDeliver => "local-deliver",
            Decision::ToRemote => "to-remote",
            Decision::FromTunnel => "from-tunnel",
            Decision::ToHost => "to-host",
            Decision::SpoofedIp => "spoofed-ip",
            Decision::TunnelMiss => "tunnel-miss",
            Decision::ServiceTranslated => "service-translated",
            Decision::ServiceReplied => "service-replied",
            Decision::ServiceRejected => "service-rejected",
            Decision::ServiceNoPort => "service-no-port",
            Decision::SpoofedMac => "spoofed-mac",
            Decision::SpoofedArp => "spoofed-arp",
            Decision::NotIpv4 => "not-ipv4",
            Decision::Ipv6 => "ipv6",
            Decision::TunnelUnknownNode => "tunnel-unknown-node",
            Decision::TunnelForeignSource => "tunnel-foreign-source",
            Decision::PodToTunnel => "pod-to-tunnel-port",
            Decision::ToDirect => "to-direct",
            Decision::FromDirect => "from-direct",
            Decision::DirectForeignSource => "direct-foreign-source",
            Decision::Malformed => "malformed",
        }
    }

    /// Whether the packet was dropped: the decisions a drop reason names.
    pub const fn is_drop(self) -> bool {
        !matches!(
            self,
            Decision::LocalDeliver
                | Decision::ToRemote
                | Decision::FromTunnel
                | Decision::ToHost
                | Decision::ServiceTranslated
                | Decision::ServiceReplied
                | Decision::ServiceRejected
                | Decision::ToDirect
                | Decision::FromDirect
        )
    }

    /// The decision of index `index`, if there is one.
    pub const fn from_index(index: u32) -> Option<Decision> {
        if (index as usize) < Decision::COUNT { Some(Decision::ALL[index as usize]) } else { None }
    }
}

// The layouts above, checked at compile time on both sides (the BPF target and the host).
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Endpoint>() == 32 && align_of::<Endpoint>() == 8);
    assert!(offset_of!(Endpoint, mac) == 4 && offset_of!(Endpoint, flags) == 10 && offset_of!(Endpoint, packets) == 16);
    assert!(size_of::<Remote>() == 24 && offset_of!(Remote, packets) == 8);
    assert!(size_of::<Remote>() == 24 && offset_of!(Remote, flags) == 4);
    assert!(size_of::<NodeConfig>() == 36 && offset_of!(NodeConfig, service_mask) == 32);
    assert!(size_of::<PeerNode>() == 8 && size_of::<DropEvent>() == 112);
    assert!(size_of::<Counter>() == 16);
    assert!(size_of::<Tunnel>() == 12 && offset_of!(Tunnel, port) == 8);
    assert!(Decision::ALL.len() == Decision::COUNT);
    assert!(Decision::Malformed as usize == Decision::COUNT - 1);
    assert!(size_of::<ServiceKey>() == 8 && offset_of!(ServiceKey, protocol) == 6);
    assert!(size_of::<ServiceEntry>() == 32 && offset_of!(ServiceEntry, packets) == 16);
    assert!(size_of::<AffinityKey>() == 8 && size_of::<Affinity>() == 24 && offset_of!(Affinity, used_ns) == 16);
    assert!(size_of::<BackendKey>() == 8 && size_of::<Backend>() == 8);
    assert!(size_of::<FlowKey>() == 16 && offset_of!(FlowKey, protocol) == 12);
    assert!(size_of::<Translation>() == 20 && offset_of!(Translation, client) == 8);
};

// SAFETY: each type is `#[repr(C)]`, `Copy`, made only of integers and byte arrays, and has no
// implicit padding (checked above), so every bit pattern is valid and every byte is initialised.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Endpoint {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Remote {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for NodeConfig {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Counter {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Tunnel {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceEntry {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for BackendKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Backend {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Translation {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AffinityKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Affinity {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PeerNode {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropEvent {}
