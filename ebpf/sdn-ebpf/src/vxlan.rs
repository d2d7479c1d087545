//! VXLAN in the programs themselves: the outer headers added on the way out of a pod (or the
//! host) and sent straight out of the underlay interface, and stripped on the way in for a local
//! pod. This skips the kernel's `vxlan0` (its transmit path, the outer route and netfilter hooks,
//! and on receive the UDP socket lookup and the GRO-cell hop), which is most of what VXLAN costs
//! beside unencapsulated routing.
//!
//! The frames are the ones `vxlan0` sends and accepts (RFC 7348, VNI 0, outer UDP checksum 0),
//! so nodes that tunnel through `vxlan0` and nodes that do not talk to each other.

use aya_ebpf::{
    bindings::{
        BPF_CSUM_LEVEL_DEC, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_F_ADJ_ROOM_FIXED_GSO, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    helpers::{bpf_csum_level, bpf_redirect_neigh},
    macros::map,
    maps::Array,
    programs::TcContext,
};
use sdn_ebpf_common::Tunnel;

use crate::{ETH_HLEN, ETH_P_IP, ETH_PROTO, Headers, IPV4_HLEN, TUNNEL_TTL};

/// The node's tunnel settings at index 0, written by the agent; all zero means "use `vxlan0`".
#[map]
static SDN_TUNNEL: Array<Tunnel> = Array::pinned(1, 0);

const UDP_HLEN: usize = 8;
const VXLAN_HLEN: usize = 8;
/// Everything between the outer Ethernet header and the inner IPv4 header.
const ENCAP_LEN: usize = IPV4_HLEN + UDP_HLEN + VXLAN_HLEN + ETH_HLEN;
/// IPv4 protocol number of UDP.
const IPPROTO_UDP: u8 = 17;
/// The VXLAN flags byte with the I flag: the VNI is valid.
const VXLAN_FLAG_VNI: u8 = 0x08;
/// `bpf_skb_adjust_room` flag (Linux 6.19+, 1 << 10): clears the UDP-tunnel GSO state of the
/// packet it strips. Older kernels refuse the unknown flag before changing anything.
const BPF_F_ADJ_ROOM_DECAP_L4_UDP: u64 = 1 << 10;
/// Outer UDP source ports, from the flow hash, in the kernel's default ephemeral range as its
/// VXLAN devices choose them: ECMP and RSS on the way spread flows, and keep each in order.
const SRC_PORT_MIN: u32 = 32768;
const SRC_PORT_SPAN: u64 = 61000 - 32768;

/// The outer IPv4, UDP and VXLAN headers and the inner Ethernet header, as one store.
#[repr(C)]
struct EncapHeaders {
    ip: [u8; IPV4_HLEN],
    udp: [u8; UDP_HLEN],
    vxlan: [u8; VXLAN_HLEN],
    inner_eth: [u8; ETH_HLEN],
}

/// The tunnel settings, if the programs do VXLAN themselves.
#[inline(always)]
pub fn tunnel() -> Option<&'static Tunnel> {
    SDN_TUNNEL.get(0).filter(|t| t.underlay_ifindex != 0)
}

/// Wraps the frame whose first bytes are `headers` for the node at `remote_ip` (network order)
/// and sends it out of the underlay interface, its MACs from the neighbour table. `None` when
/// the frame cannot be wrapped here (it is left unchanged, for `vxlan0`); `Some(Err)` when
/// wrapping failed half-way.
#[inline(always)]
pub fn encap(ctx: &TcContext, tunnel: &Tunnel, remote_ip: u32, headers: &Headers) -> Option<Result<i32, ()>> {
    let len = ctx.len() as usize;
    // A super-packet so large that the outer length field could not hold it: `vxlan0`'s
    // segmentation handles it.
    if len + ENCAP_LEN - ETH_HLEN > usize::from(u16::MAX) {
        return None;
    }
    // The pod MTU leaves room for the outer headers, so segments keep their size.
    let flags = u64::from(
        BPF_F_ADJ_ROOM_FIXED_GSO
            | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
            | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
            | BPF_F_ADJ_ROOM_ENCAP_L2_ETH,
    ) | (ETH_HLEN as u64) << 56;
    ctx.adjust_room(ENCAP_LEN as i32, BPF_ADJ_ROOM_MAC, flags).ok()?;
    Some(write_and_send(ctx, tunnel, remote_ip, len + ENCAP_LEN, headers))
}

#[inline(always)]
fn write_and_send(
    ctx: &TcContext,
    tunnel: &Tunnel,
    remote_ip: u32,
    frame_len: usize,
    headers: &Headers,
) -> Result<i32, ()> {
    let encap = encap_headers(tunnel, remote_ip, frame_len, flow_hash(ctx, headers), headers.eth);
    ctx.store(ETH_HLEN, &encap, 0).map_err(|_| ())?;
    // No next hop given: the helper routes the outer destination out of the underlay interface
    // (through a gateway if the remote node is not on this link) and resolves its MAC.
    // SAFETY: a null parameter block with length 0 is the helper's documented "look it up".
    Ok(unsafe { bpf_redirect_neigh(tunnel.underlay_ifindex, core::ptr::null_mut(), 0, 0) } as i32)
}

/// The packet's flow hash, which the sending socket has usually set already; else one of the
/// addresses. (`bpf_get_hash_recalc` would run the flow dissector for every such packet.)
#[inline(always)]
fn flow_hash(ctx: &TcContext, headers: &Headers) -> u32 {
    // SAFETY: the context pointer is the program's `__sk_buff`, readable for the whole run.
    let hash = unsafe { (*ctx.skb.skb).hash };
    if hash != 0 {
        return hash;
    }
    let (saddr, daddr) = headers.ipv4_addrs();
    (saddr ^ daddr.rotate_left(16)).wrapping_mul(0x9e37_79b1)
}

/// The headers of a frame of `frame_len` bytes (outer Ethernet included) to `remote_ip`.
#[inline(always)]
fn encap_headers(
    tunnel: &Tunnel,
    remote_ip: u32,
    frame_len: usize,
    hash: u32,
    inner_eth: [u8; ETH_HLEN],
) -> EncapHeaders {
    let ip_len = ((frame_len - ETH_HLEN) as u16).to_be_bytes();
    let udp_len = ((frame_len - ETH_HLEN - IPV4_HLEN) as u16).to_be_bytes();
    let (src, dst) = (tunnel.node_ip.to_ne_bytes(), remote_ip.to_ne_bytes());
    let hash = hash ^ (hash << 16);
    let src_port = (SRC_PORT_MIN + ((u64::from(hash) * SRC_PORT_SPAN) >> 32) as u32) as u16;
    let sport = src_port.to_be_bytes();
    let dport = tunnel.port.to_ne_bytes();
    // DF: the pod MTU already leaves room for these headers, so the outer packet never needs
    // fragmenting on the underlay, and identification 0 is then fine (RFC 6864).
    let mut ip = [
        0x45,
        0,
        ip_len[0],
        ip_len[1],
        0,
        0,
        0x40,
        0,
        TUNNEL_TTL,
        IPPROTO_UDP,
        0,
        0,
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    ];
    let check = ipv4_checksum(&ip).to_be_bytes();
    ip[10] = check[0];
    ip[11] = check[1];
    EncapHeaders {
        ip,
        // Outer UDP checksum 0, as RFC 7348 recommends for IPv4: the inner checksums cover the
        // payload.
        udp: [sport[0], sport[1], dport[0], dport[1], udp_len[0], udp_len[1], 0, 0],
        vxlan: [VXLAN_FLAG_VNI, 0, 0, 0, 0, 0, 0, 0],
        inner_eth,
    }
}

/// The IPv4 header checksum of `header` (whose checksum field is zero).
#[inline(always)]
fn ipv4_checksum(header: &[u8; IPV4_HLEN]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < IPV4_HLEN {
        sum += u32::from(u16::from_be_bytes([header[i], header[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// An encapsulated frame's headers up to the inner IPv4 header's end, read with one helper
/// call.
#[repr(C)]
struct Encapsulated {
    eth: [u8; ETH_HLEN],
    headers: EncapHeaders,
    inner_ip: [u8; IPV4_HLEN],
}

/// What a frame that arrived on the underlay interface is to the tunnel.
pub enum Arrival {
    /// Not VXLAN for this node, as far as can be told here (fragments and IP options included,
    /// which the kernel reassembles or parses for `vxlan0`): on up the stack unchanged.
    Other,
    /// VXLAN for this node that `vxlan0` must take (a checked outer UDP checksum, a VNI flag
    /// missing, an inner frame that is not IPv4), from underlay address `sender`.
    ForVxlan0 { sender: u32 },
    /// VXLAN for this node carrying IPv4, which the program strips itself. Addresses in
    /// network order.
    Strippable { sender: u32, source: u32, destination: u32 },
}

/// Classifies a frame from the underlay (see [`Arrival`]).
#[inline(always)]
pub fn arrival(ctx: &TcContext, tunnel: &Tunnel) -> Arrival {
    let Ok(frame) = ctx.load::<Encapsulated>(0) else { return Arrival::Other };
    let (eth, outer, udp, vxlan) = (&frame.eth, &frame.headers.ip, &frame.headers.udp, &frame.headers.vxlan);
    let inner_eth = &frame.headers.inner_eth;
    let ipv4 = ETH_P_IP.to_be_bytes();
    let is_ipv4 = |eth: &[u8; ETH_HLEN]| eth[ETH_PROTO] == ipv4[0] && eth[ETH_PROTO + 1] == ipv4[1];
    let fragment = (outer[6] & 0x3f) | outer[7];
    let saddr = u32::from_ne_bytes([outer[12], outer[13], outer[14], outer[15]]);
    let daddr = u32::from_ne_bytes([outer[16], outer[17], outer[18], outer[19]]);
    let dport = u16::from_ne_bytes([udp[2], udp[3]]);
    if !is_ipv4(eth) || outer[0] != 0x45 || outer[9] != IPPROTO_UDP || fragment != 0 || daddr != tunnel.node_ip {
        return Arrival::Other;
    }
    if dport != tunnel.port {
        return Arrival::Other;
    }
    // A sender that sets the outer UDP checksum wants it checked: `vxlan0` does that.
    let checksummed = (udp[6] | udp[7]) != 0;
    if checksummed || vxlan[0] & VXLAN_FLAG_VNI == 0 || (vxlan[4] | vxlan[5] | vxlan[6]) != 0 || !is_ipv4(inner_eth) {
        return Arrival::ForVxlan0 { sender: saddr };
    }
    let ip = &frame.inner_ip;
    Arrival::Strippable {
        sender: saddr,
        source: u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
        destination: u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
    }
}

/// Strips the outer IPv4, UDP and VXLAN headers and the inner Ethernet header, leaving the outer
/// Ethernet header in front of the inner IPv4 packet. `Err` leaves the frame unchanged.
///
/// A GRO/GSO super-packet is stripped where the kernel can also clear its UDP-tunnel
/// segmentation state (`BPF_F_ADJ_ROOM_DECAP_L4_UDP`), or for a pod that does not forward
/// (`no_forwarding`, the endpoint's `ENDPOINT_STRIP_GSO`): left behind, that state would break
/// the packet's segmentation should the pod send it on. Elsewhere such packets go to `vxlan0`,
/// whose receive path clears it.
#[inline(always)]
pub fn decap(ctx: &TcContext, no_forwarding: bool) -> Result<(), ()> {
    let fixed = u64::from(BPF_F_ADJ_ROOM_FIXED_GSO);
    let stripped = ctx.adjust_room(-(ENCAP_LEN as i32), BPF_ADJ_ROOM_MAC, fixed | BPF_F_ADJ_ROOM_DECAP_L4_UDP).is_ok()
        // SAFETY: the context pointer is the program's `__sk_buff`, readable for the whole run.
        || ((no_forwarding || unsafe { (*ctx.skb.skb).gso_size } == 0)
            && ctx.adjust_room(-(ENCAP_LEN as i32), BPF_ADJ_ROOM_MAC, fixed).is_ok());
    if !stripped {
        return Err(());
    }
    // A NIC's "checksum verified" for the outer UDP header must not carry over to the inner
    // packet, as the kernel's own VXLAN receive path makes sure too: one level less.
    // SAFETY: a helper call on the program's own context with a constant mode.
    unsafe { bpf_csum_level(ctx.skb.skb, u64::from(BPF_CSUM_LEVEL_DEC)) };
    Ok(())
}
