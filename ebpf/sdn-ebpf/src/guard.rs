//! Who may speak as whom. A pod speaks only with its own address and MAC, and never to a node's
//! VXLAN port (a datagram there could carry a frame with any source inside). A tunnel packet
//! comes only from a registered node (`SDN_NODES`, which the agent keeps from the `HostSubnet`s)
//! and carries only sources of that node's subnet. Every drop is counted under its reason and
//! written to `SDN_DROPS`, which `sdn-node drops` follows.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    helpers::bpf_skb_load_bytes,
    macros::map,
    maps::{HashMap, RingBuf},
    programs::TcContext,
};
use sdn_ebpf_common::{DROP_CAPTURE, DROPS_BYTES, Decision, DropEvent, MAX_NODES, NodeConfig, PeerNode};

use crate::service::{IPPROTO_UDP, L4};
use crate::{Headers, SDN_ENDPOINTS, count, ingress_ifindex, mac_eq, packet_len};

/// A registered remote node's underlay address → its subnet.
#[map]
static SDN_NODES: HashMap<u32, PeerNode> = HashMap::pinned(MAX_NODES, 0);

/// Dropped packets, for `sdn-node drops`.
#[map]
static SDN_DROPS: RingBuf = RingBuf::pinned(DROPS_BYTES, 0);

/// Checks an ARP packet from the pod on port `ifindex`: its sender (and the frame's source)
/// must be the pod's address and MAC.
#[inline(always)]
pub fn pod_arp(headers: &Headers, ifindex: u32) -> Result<(), Decision> {
    decode(pod_arp_code(headers, ifindex)).map(drop).map_err(|_| Decision::SpoofedArp)
}

/// Checks an IPv4 packet from the pod on port `ifindex`: its source address and MAC must be
/// the pod's, and it may not be for a node's VXLAN port (see [`to_tunnel_port`]).
#[inline(always)]
pub fn pod_ipv4(ctx: &TcContext, headers: &Headers, ifindex: u32, config: &NodeConfig) -> Result<(), Decision> {
    decode(pod_ipv4_code(ctx, headers, ifindex, config)).map(drop)
}

/// An outcome as one register, for a BPF-to-BPF call (which returns only `r0`): a TC verdict
/// (never negative) or a drop's reason as `-(index + 1)`.
#[inline(always)]
pub fn encode(outcome: Result<i32, Decision>) -> i64 {
    match outcome {
        Ok(verdict) => i64::from(verdict),
        Err(reason) => -(i64::from(reason.index()) + 1),
    }
}

/// The inverse of [`encode`].
#[inline(always)]
pub fn decode(value: i64) -> Result<i32, Decision> {
    match value {
        0.. => Ok(value as i32),
        _ => Err(Decision::from_index((-value - 1) as u32).unwrap_or(Decision::Malformed)),
    }
}

// The checks are functions of their own (BPF-to-BPF calls): inlined into `sdn_from_pod`, their
// frames and those of the forwarding after them would not fit the verifier's 512 bytes of stack
// together.
#[inline(never)]
fn pod_arp_code(headers: &Headers, ifindex: u32) -> i64 {
    let a = &headers.l3;
    let sha = [a[8], a[9], a[10], a[11], a[12], a[13]];
    if !mac_eq(&sha, &headers.src_mac()) {
        return encode(Err(Decision::SpoofedArp));
    }
    encode(pod_source(headers.word(14), ifindex, &sha).map(|()| 0))
}

#[inline(never)]
fn pod_ipv4_code(ctx: &TcContext, headers: &Headers, ifindex: u32, config: &NodeConfig) -> i64 {
    let (saddr, _) = headers.ipv4_addrs();
    let checked = pod_source(saddr, ifindex, &headers.src_mac())
        .and_then(|()| if to_tunnel_port(ctx, headers, config) { Err(Decision::PodToTunnel) } else { Ok(0) });
    encode(checked)
}

/// Whether the IPv4 packet `headers` from a pod is for a node's VXLAN port: to this node (its
/// underlay address or gateway; anything else the host owns is guarded by the nftables table)
/// or a registered one. UDP with IP options to a node counts too (its ports were not read); a
/// later fragment does not, as it cannot be reassembled without the first.
#[inline(always)]
fn to_tunnel_port(ctx: &TcContext, headers: &Headers, config: &NodeConfig) -> bool {
    let l3 = &headers.l3;
    if l3[9] != IPPROTO_UDP || (l3[6] & 0x1f) != 0 || l3[7] != 0 {
        return false;
    }
    let (_, daddr) = headers.ipv4_addrs();
    let at_node = daddr == config.node_ip || daddr == config.gateway_ip || SDN_NODES.get_ptr(daddr).is_some();
    if !at_node {
        return false;
    }
    if l3[0] != 0x45 {
        return true;
    }
    ctx.load::<u16>(L4 + 2).is_ok_and(|dport| dport == config.vxlan_port)
}

/// Checks that a pod's IPv4 source `ip` and `mac` are the endpoint's on port `ifindex`.
#[inline(always)]
fn pod_source(ip: u32, ifindex: u32, mac: &[u8; 6]) -> Result<(), Decision> {
    let endpoint = SDN_ENDPOINTS.get_ptr(ip).ok_or(Decision::SpoofedIp)?;
    // SAFETY: a non-null pointer from a map lookup points at the value for this program run.
    let (port, own_mac) = unsafe { ((*endpoint).ifindex, (*endpoint).mac) };
    if port != ifindex {
        return Err(Decision::SpoofedIp);
    }
    if !mac_eq(&own_mac, mac) {
        return Err(Decision::SpoofedMac);
    }
    Ok(())
}

/// Checks a tunnel packet from the underlay address `outer` (network order) with the inner
/// source `inner`: a registered node, speaking for its own subnet.
#[inline(always)]
pub fn tunnel_source(outer: u32, inner: u32) -> Result<(), Decision> {
    let peer = SDN_NODES.get_ptr(outer).ok_or(Decision::TunnelUnknownNode)?;
    // SAFETY: a non-null pointer from a map lookup points at the value for this program run.
    if unsafe { (*peer).owns(inner) } { Ok(()) } else { Err(Decision::TunnelForeignSource) }
}

/// Whether `outer` is a registered node's address.
#[inline(always)]
pub fn is_node(outer: u32) -> bool {
    SDN_NODES.get_ptr(outer).is_some()
}

/// Counts the packet under `reason`, reports it to `SDN_DROPS` and drops it. A function of its
/// own (a BPF-to-BPF call): inlined at each of its many callers, it would grow the programs'
/// stack past the verifier's 512 bytes.
#[inline(never)]
pub fn drop_packet(ctx: &TcContext, reason: Decision) -> i32 {
    count(reason, packet_len(ctx));
    report(ctx, reason);
    aya_ebpf::bindings::TC_ACT_SHOT
}

/// Writes a [`DropEvent`] of the packet; a full ring (nobody reading) loses it, the counter
/// still has it.
#[inline(always)]
fn report(ctx: &TcContext, reason: Decision) {
    let Some(mut entry) = SDN_DROPS.reserve::<DropEvent>(0) else { return };
    let event = entry.as_mut_ptr();
    let len = ctx.len();
    // Through black_box, so that LLVM cannot fold the signed test below into `!= 0`: kernels
    // such as Debian 12's 6.1 learn no lower bound from `!= 0`, and their verifier then refuses
    // the helper's size as possibly zero; a signed `> 0` gives it the bound 1 on every kernel.
    // As a u64, because the verifier keeps a value's bounds across an 8-byte stack slot only.
    let captured = core::hint::black_box(u64::from(if len < DROP_CAPTURE as u32 { len } else { DROP_CAPTURE as u32 }));
    // SAFETY: `event` points at the reserved record, which this run owns until it submits it;
    // the fields are written through raw pointers (the record's bytes are not initialised), and
    // the helper writes at most `captured <= DROP_CAPTURE` bytes into `bytes`.
    unsafe {
        ptr::addr_of_mut!((*event).reason).write(reason.index());
        ptr::addr_of_mut!((*event).ifindex).write(ingress_ifindex(ctx));
        ptr::addr_of_mut!((*event).len).write(len);
        let into = ptr::addr_of_mut!((*event).bytes).cast::<c_void>();
        let loaded =
            (captured as i64) > 0 && bpf_skb_load_bytes(ctx.skb.skb as *const c_void, 0, into, captured as u32) == 0;
        ptr::addr_of_mut!((*event).captured).write(if loaded { captured as u32 } else { 0 });
    }
    entry.submit(0);
}
