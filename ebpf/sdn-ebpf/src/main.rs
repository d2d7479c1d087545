//! The TC programs that sit on the ports of `br0` and make the packet-path decisions of
//! `docs/dataplane.md`:
//!
//! - [`sdn_from_pod`] on the ingress of each pod's host-side veth: anti-spoofing, then local
//!   delivery, VXLAN to a remote node's subnet, or up to the bridge (and so to `tun0`);
//! - [`sdn_from_tunnel`] on the ingress of `vxlan0`: delivery to a local pod or to the host;
//! - [`sdn_from_host`] on the ingress of `tun0-br`: delivery to a local pod or a remote subnet;
//! - [`sdn_from_underlay`] on the ingress of the underlay interface: VXLAN for a local pod,
//!   stripped and delivered (see [`vxlan`]), and what a node on this segment routed here
//!   directly (see [`direct`]).
//!
//! Who may send what (anti-spoofing, the tunnel's senders) is [`guard`]'s, and so is every drop.
//!
//! The maps are declared pinned by name: the agent loads this object with a pin directory, so a
//! restarted agent reuses the maps (and their entries) of the one before.
//!
//! Packet bytes are read and written with `bpf_skb_load_bytes`/`bpf_skb_store_bytes` at constant
//! offsets (`TcContext::load`/`store`), so the verifier needs no direct-packet-access bounds
//! checks; a packet too short for a read makes the helper fail, which is handled as an error.
#![no_std]
#![no_main]
// `AtomicU64::fetch_add` does not exist on the BPF target (it has no compare-and-swap, so core
// leaves out every read-modify-write method); the intrinsic under it lowers to BPF's atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod direct;
mod guard;
mod service;
mod vxlan;

use core::intrinsics::{AtomicOrdering, atomic_xadd};
use core::{ffi::c_void, mem::size_of, ptr};

use aya_ebpf::{
    bindings::{
        BPF_F_ZERO_CSUM_TX, TC_ACT_OK, TC_ACT_SHOT, bpf_tunnel_key, bpf_tunnel_key__bindgen_ty_1,
        bpf_tunnel_key__bindgen_ty_2, bpf_tunnel_key__bindgen_ty_3,
    },
    helpers::{bpf_map_lookup_elem, bpf_redirect, bpf_redirect_peer, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    macros::{classifier, map},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::TcContext,
};
use guard::drop_packet;
use sdn_ebpf_common::{
    Counter, Decision, ENDPOINT_STRIP_GSO, Endpoint, MAX_ENDPOINTS, MAX_REMOTES, NodeConfig, REMOTE_DIRECT, Remote,
};
use service::Forward;
use vxlan::Arrival;

/// Pod IPv4 (network order) → the pod's port and MAC, with delivery counters.
#[map]
pub static SDN_ENDPOINTS: HashMap<u32, Endpoint> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Remote node subnet → the node's underlay IPv4, with counters. `LpmTrie` adds
/// `BPF_F_NO_PREALLOC`, which the kernel requires for LPM tries.
#[map]
static SDN_REMOTES: LpmTrie<u32, Remote> = LpmTrie::pinned(MAX_REMOTES, 0);

/// The node's settings at index 0, written by the agent.
#[map]
static SDN_CONFIG: Array<NodeConfig> = Array::pinned(1, 0);

/// Per-CPU packet/byte counts per [`Decision`].
#[map]
static SDN_COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned(Decision::COUNT as u32, 0);

const ETH_HLEN: usize = 14;
const ETH_SRC: usize = 6;
const ETH_PROTO: usize = 12;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV4_HLEN: usize = 20;
/// TTL of the outer IPv4 header of tunnelled packets.
const TUNNEL_TTL: u8 = 64;

/// Ingress of each pod's host-side veth.
#[classifier]
pub fn sdn_from_pod(ctx: TcContext) -> i32 {
    from_pod(&ctx).unwrap_or_else(|reason| drop_packet(&ctx, reason))
}

/// Ingress of `vxlan0`.
#[classifier]
pub fn sdn_from_tunnel(ctx: TcContext) -> i32 {
    from_tunnel(&ctx).unwrap_or_else(|reason| drop_packet(&ctx, reason))
}

/// Ingress of `tun0-br`.
#[classifier]
pub fn sdn_from_host(ctx: TcContext) -> i32 {
    // `Err` here means a frame the program began to change (wrapping it failed half-way): it
    // must not go on as it is now.
    from_host(&ctx).unwrap_or_else(|()| drop_packet(&ctx, Decision::TunnelMiss))
}

/// Ingress of the underlay interface.
#[classifier]
pub fn sdn_from_underlay(ctx: TcContext) -> i32 {
    // Everything but VXLAN and directly routed packets for a local pod goes up the stack
    // unchanged: to `vxlan0` (which also takes what cannot be stripped here) or wherever else
    // the host sends it.
    from_underlay(&ctx).unwrap_or(TC_ACT_OK)
}

/// The Ethernet header and the 20 bytes after it (an IPv4 header without options, or the start
/// of an ARP packet), read with one helper call.
///
/// Aligned to 8 (so 40 bytes are read: every IPv4 packet with a transport header, and every ARP
/// packet, is longer): as a struct of byte arrays it would be copied byte by byte, each byte
/// spilled to a stack slot of its own, and the programs' frames would outgrow the verifier's
/// 512 bytes.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Headers {
    eth: [u8; ETH_HLEN],
    l3: [u8; IPV4_HLEN],
}

impl Headers {
    #[inline(always)]
    fn proto(&self) -> u16 {
        u16::from_be_bytes([self.eth[ETH_PROTO], self.eth[ETH_PROTO + 1]])
    }

    #[inline(always)]
    fn src_mac(&self) -> [u8; 6] {
        let e = &self.eth;
        [e[ETH_SRC], e[ETH_SRC + 1], e[ETH_SRC + 2], e[ETH_SRC + 3], e[ETH_SRC + 4], e[ETH_SRC + 5]]
    }

    /// The four bytes of the L3 header at `offset`, as the maps key addresses.
    #[inline(always)]
    fn word(&self, offset: usize) -> u32 {
        let b = &self.l3;
        u32::from_ne_bytes([b[offset], b[offset + 1], b[offset + 2], b[offset + 3]])
    }

    /// IPv4 source and destination addresses.
    #[inline(always)]
    fn ipv4_addrs(&self) -> (u32, u32) {
        (self.word(12), self.word(16))
    }
}

fn from_pod(ctx: &TcContext) -> Result<i32, Decision> {
    let port = ingress_ifindex(ctx);
    let headers: Headers = ctx.load(0).map_err(|_| Decision::Malformed)?;
    match headers.proto() {
        ETH_P_ARP => {
            guard::pod_arp(&headers, port)?;
            // On to the bridge: ARP between pods and for the gateway is answered there.
            Ok(TC_ACT_OK)
        }
        ETH_P_IP => {
            // An array's one entry always exists (zero until the agent writes it).
            let config = config().ok_or(Decision::Malformed)?;
            guard::pod_ipv4(ctx, &headers, port, config)?;
            guard::decode(pod_onward(ctx, config, port))
        }
        // The cluster network is IPv4 only; a pod's IPv6 (its neighbour discovery, too) is not
        // a spoof.
        ETH_P_IPV6 => Err(Decision::Ipv6),
        _ => Err(Decision::NotIpv4),
    }
}

/// Where an IPv4 packet from a pod goes once its source is checked: a service's translation,
/// then a local pod, a remote subnet or the host: its outcome as [`guard::encode`] makes it.
///
/// A function of its own (a BPF-to-BPF call): the checks before it, the service programs it
/// calls and the tunnel headers would not fit the verifier's 512 bytes of stack in one frame.
#[inline(never)]
fn pod_onward(ctx: &TcContext, config: &NodeConfig, port: u32) -> i64 {
    guard::encode(pod_onward_result(ctx, config, port))
}

#[inline(always)]
fn pod_onward_result(ctx: &TcContext, config: &NodeConfig, port: u32) -> Result<i32, Decision> {
    let malformed = |()| Decision::Malformed;
    let mut headers: Headers = ctx.load(0).map_err(|_| Decision::Malformed)?;
    // A packet to a service (the pod is a client), or a reply from a service's backend. Parsed
    // once for both; a reply goes to a client, never to a cluster IP. Only what is addressed to
    // the service network or stays on this node can be either, so pod-to-pod traffic across
    // nodes meets none of the service maps.
    let flow = service::flow(ctx, &headers);
    let (_, daddr) = headers.ipv4_addrs();
    if config.in_service_network(daddr) {
        match service::forward(ctx, flow).map_err(malformed)? {
            Forward::Pass => {}
            Forward::Translated => headers = ctx.load(0).map_err(|_| Decision::Malformed)?,
            Forward::Reject => return Ok(service::reject(ctx, &headers, config, port).unwrap_or(TC_ACT_SHOT)),
            Forward::NoPort => return Err(Decision::ServiceNoPort),
        }
    } else if let Some(remote) = lookup_remote(daddr) {
        // A backend here answering a client on another node: that node gives the reply its
        // frontend back, as it tracked the connection.
        service::forget_stale_reply(ctx, flow);
        return to_remote(ctx, &headers, remote, config).map_err(malformed);
    } else if service::reverse(ctx, flow).map_err(malformed)? {
        headers = ctx.load(0).map_err(|_| Decision::Malformed)?;
    } else {
        service::forget_stale_reply(ctx, flow);
    }
    let (_, daddr) = headers.ipv4_addrs();
    if let Some(verdict) = to_cluster(ctx, &headers, daddr, config) {
        return verdict.map_err(malformed);
    }
    // Not in the cluster's tables: straight to the host through `tun0-br`'s egress (`tun0`'s
    // ingress), addressed to the gateway. Not through the bridge: with br_netfilter loaded, a
    // bridged packet would meet the NAT hooks before routing and get its masquerade decision
    // there, where it cannot apply.
    ctx.store(0, &config.gateway_mac, 0).map_err(|_| Decision::Malformed)?;
    count(Decision::ToHost, packet_len(ctx));
    Ok(redirect(config.tun_br_ifindex))
}

/// The underlay address (network order) a packet that `vxlan0` received came from.
#[inline(always)]
fn tunnel_sender(ctx: &TcContext) -> Option<u32> {
    let mut key = tunnel_key(0, 0);
    // SAFETY: the key lives on the stack for the call; the size is the struct's.
    let ret = unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, size_of::<bpf_tunnel_key>() as u32, 0) };
    // SAFETY: the helper filled the IPv4 member (flags 0), in host byte order.
    (ret == 0).then(|| u32::to_be(unsafe { key.__bindgen_anon_1.remote_ipv4 }))
}

fn from_tunnel(ctx: &TcContext) -> Result<i32, Decision> {
    let mut headers: Headers = ctx.load(0).map_err(|_| Decision::Malformed)?;
    if headers.proto() != ETH_P_IP {
        return Err(Decision::TunnelMiss);
    }
    let sender = tunnel_sender(ctx).ok_or(Decision::TunnelUnknownNode)?;
    guard::tunnel_source(sender, headers.ipv4_addrs().0)?;
    // A remote backend's reply to a client here.
    if service::reverse(ctx, service::flow(ctx, &headers)).map_err(|()| Decision::Malformed)? {
        headers = ctx.load(0).map_err(|_| Decision::Malformed)?;
    }
    let (_, daddr) = headers.ipv4_addrs();
    let config = config().ok_or(Decision::TunnelMiss)?;
    if let Some(endpoint) = SDN_ENDPOINTS.get_ptr_mut(daddr) {
        return deliver_local(ctx, endpoint, config, Decision::FromTunnel).map_err(|()| Decision::Malformed);
    }
    if daddr == config.gateway_ip && config.gateway_ip != 0 {
        return to_host(ctx, config, Decision::ToHost).map_err(|()| Decision::Malformed);
    }
    Err(Decision::TunnelMiss)
}

fn from_host(ctx: &TcContext) -> Result<i32, ()> {
    // What cannot be parsed goes on to the bridge unchanged, as anything else from the host does.
    let Ok(headers) = ctx.load::<Headers>(0) else { return Ok(TC_ACT_OK) };
    if headers.proto() != ETH_P_IP {
        // ARP answers from `tun0` and the like reach the pods through the bridge.
        return Ok(TC_ACT_OK);
    }
    let Some(config) = config() else { return Ok(TC_ACT_OK) };
    // The node's own processes reach services too.
    let mut headers = headers;
    let flow = service::flow(ctx, &headers);
    if !config.in_service_network(headers.ipv4_addrs().1) {
        service::forget_stale_reply(ctx, flow);
    } else {
        match service::forward(ctx, flow)? {
            Forward::Pass => {}
            Forward::Translated => headers = ctx.load(0).map_err(|_| ())?,
            Forward::Reject => {
                return Ok(service::reject(ctx, &headers, config, config.tun_br_ifindex).unwrap_or(TC_ACT_SHOT));
            }
            Forward::NoPort => return Ok(drop_packet(ctx, Decision::ServiceNoPort)),
        }
    }
    let (_, daddr) = headers.ipv4_addrs();
    to_cluster(ctx, &headers, daddr, config).unwrap_or(Ok(TC_ACT_OK))
}

fn from_underlay(ctx: &TcContext) -> Result<i32, ()> {
    let config = config().ok_or(())?;
    if let Some(tunnel) = vxlan::tunnel()
        && let Some(verdict) = from_tunnel_port(ctx, tunnel, config)
    {
        return Ok(verdict);
    }
    from_direct(ctx, config)
}

/// VXLAN for this node, stripped and delivered here or left to `vxlan0`; `None` for anything
/// else.
#[inline(always)]
fn from_tunnel_port(ctx: &TcContext, tunnel: &sdn_ebpf_common::Tunnel, config: &NodeConfig) -> Option<i32> {
    let daddr = match vxlan::arrival(ctx, tunnel) {
        Arrival::Other => return None,
        // `vxlan0` takes it, and `sdn_from_tunnel` checks its inner source.
        Arrival::ForVxlan0 { sender } if guard::is_node(sender) => return Some(TC_ACT_OK),
        Arrival::ForVxlan0 { .. } => return Some(drop_packet(ctx, Decision::TunnelUnknownNode)),
        Arrival::Strippable { sender, source, destination } => match guard::tunnel_source(sender, source) {
            Ok(()) => destination,
            Err(reason) => return Some(drop_packet(ctx, reason)),
        },
    };
    let Some(endpoint) = SDN_ENDPOINTS.get_ptr_mut(daddr) else { return Some(TC_ACT_OK) };
    // SAFETY: a non-null pointer from a map lookup points at the value for this program run.
    let no_forwarding = unsafe { (*endpoint).flags } & ENDPOINT_STRIP_GSO != 0;
    if vxlan::decap(ctx, no_forwarding).is_err() {
        return Some(TC_ACT_OK);
    }
    // Stripped: from here on a failure must drop, the frame is no longer what arrived. A remote
    // backend's reply to a client here gets its frontend back first.
    let delivered = ctx
        .load::<Headers>(0)
        .map_err(|_| ())
        .and_then(|headers| service::reverse(ctx, service::flow(ctx, &headers)))
        .and_then(|_| deliver_local(ctx, endpoint, config, Decision::FromTunnel));
    Some(delivered.unwrap_or_else(|()| drop_packet(ctx, Decision::TunnelMiss)))
}

/// An unencapsulated packet for a local pod (or the gateway) from a remote node's subnet: taken
/// only from that node, on this segment (see [`direct`]). Everything else goes up the stack
/// unchanged.
#[inline(never)]
fn from_direct(ctx: &TcContext, config: &NodeConfig) -> Result<i32, ()> {
    let headers: Headers = ctx.load(0).map_err(|_| ())?;
    if headers.proto() != ETH_P_IP {
        return Ok(TC_ACT_OK);
    }
    let (saddr, daddr) = headers.ipv4_addrs();
    let endpoint = SDN_ENDPOINTS.get_ptr_mut(daddr);
    let to_gateway = daddr == config.gateway_ip && config.gateway_ip != 0;
    if endpoint.is_none() && !to_gateway {
        return Ok(TC_ACT_OK);
    }
    let Some(remote) = lookup_remote(saddr) else { return Ok(TC_ACT_OK) };
    // SAFETY: a non-null pointer from a map lookup points at the value for this program run.
    let node_ip = unsafe { (*remote).node_ip };
    if !direct::from_node(ctx, config.underlay_ifindex, node_ip, &headers.src_mac()) {
        return Ok(drop_packet(ctx, Decision::DirectForeignSource));
    }
    // A remote backend's reply to a client here gets its frontend back first.
    let delivered = service::reverse(ctx, service::flow(ctx, &headers)).and_then(|_| match endpoint {
        Some(endpoint) => deliver_local(ctx, endpoint, config, Decision::FromDirect),
        None => to_host(ctx, config, Decision::FromDirect),
    });
    Ok(delivered.unwrap_or_else(|()| drop_packet(ctx, Decision::Malformed)))
}

/// To the host: makes the frame `tun0`'s and hands it to `tun0-br`'s egress, which is `tun0`'s
/// ingress (`bpf_redirect_peer` cannot target the same namespace).
#[inline(always)]
fn to_host(ctx: &TcContext, config: &NodeConfig, decision: Decision) -> Result<i32, ()> {
    ctx.store(0, &config.gateway_mac, 0).map_err(|_| ())?;
    count(decision, packet_len(ctx));
    Ok(redirect(config.tun_br_ifindex))
}

/// A destination in the cluster's tables: a local pod (delivered) or a remote subnet
/// (tunnelled). `None` for anything else, which each caller handles its own way.
#[inline(always)]
fn to_cluster(ctx: &TcContext, headers: &Headers, daddr: u32, config: &NodeConfig) -> Option<Result<i32, ()>> {
    if let Some(endpoint) = SDN_ENDPOINTS.get_ptr_mut(daddr) {
        return Some(deliver_local(ctx, endpoint, config, Decision::LocalDeliver));
    }
    lookup_remote(daddr).map(|remote| to_remote(ctx, headers, remote, config))
}

/// Rewrites the MACs (source the gateway, destination the pod) and hands the frame to the pod's
/// `eth0` (the peer of its host-side veth) with `bpf_redirect_peer`.
fn deliver_local(ctx: &TcContext, endpoint: *mut Endpoint, config: &NodeConfig, decision: Decision) -> Result<i32, ()> {
    // SAFETY: a non-null pointer from a map lookup points at the value for this program run.
    let (ifindex, mac) = unsafe { ((*endpoint).ifindex, (*endpoint).mac) };
    let macs = EthAddrs { dst: mac, src: config.gateway_mac };
    ctx.store(0, &macs, 0).map_err(|_| ())?;
    let len = packet_len(ctx);
    // SAFETY: as above; the counters are 8-byte aligned (the map value is, `Endpoint` is align 8).
    unsafe { add_atomic(ptr::addr_of_mut!((*endpoint).packets), ptr::addr_of_mut!((*endpoint).bytes), len) };
    count(decision, len);
    // SAFETY: a helper call with plain integer arguments.
    Ok(unsafe { bpf_redirect_peer(ifindex, 0) } as i32)
}

/// Sends the frame to the remote node: unencapsulated if it is on this segment and direct
/// routing is on, else wrapped here and out of the underlay interface, or else through `vxlan0`.
#[inline(always)]
fn to_remote(ctx: &TcContext, headers: &Headers, remote: *mut Remote, config: &NodeConfig) -> Result<i32, ()> {
    // SAFETY: a non-null pointer from a map lookup points at the value for this program run.
    let (node_ip, flags) = unsafe { ((*remote).node_ip, (*remote).flags) };
    let len = packet_len(ctx);
    let (verdict, decision) = if flags & REMOTE_DIRECT != 0 && config.underlay_ifindex != 0 {
        (direct::send(config.underlay_ifindex, node_ip), Decision::ToDirect)
    } else {
        let verdict = match vxlan::tunnel().and_then(|tunnel| vxlan::encap(ctx, tunnel, node_ip, headers)) {
            Some(verdict) => verdict?,
            None => via_vxlan0(ctx, node_ip, config)?,
        };
        (verdict, Decision::ToRemote)
    };
    // SAFETY: as above; the counters are 8-byte aligned.
    unsafe { add_atomic(ptr::addr_of_mut!((*remote).packets), ptr::addr_of_mut!((*remote).bytes), len) };
    count(decision, len);
    Ok(verdict)
}

/// Sets the VXLAN tunnel destination to the remote node and redirects to `vxlan0`'s egress.
#[inline(always)]
fn via_vxlan0(ctx: &TcContext, node_ip: u32, config: &NodeConfig) -> Result<i32, ()> {
    let mut key = tunnel_key(node_ip, TUNNEL_TTL);
    // No outer UDP checksum, as RFC 7348 recommends for IPv4 and as the kernel's and flannel's
    // VXLAN devices send by default: the inner TCP/UDP checksum already covers the payload.
    let flags = u64::from(BPF_F_ZERO_CSUM_TX);
    // SAFETY: the key lives on the stack for the call; the size is the struct's.
    let ret = unsafe { bpf_skb_set_tunnel_key(ctx.skb.skb, &mut key, size_of::<bpf_tunnel_key>() as u32, flags) };
    if ret != 0 {
        return Err(());
    }
    Ok(redirect(config.vxlan_ifindex))
}

/// A tunnel key to remote `ip` (network order) with `ttl`, every other field zero.
#[inline(always)]
fn tunnel_key(ip: u32, ttl: u8) -> bpf_tunnel_key {
    // Every byte is written (the verifier refuses a helper reading uninitialised stack), field
    // by field: `mem::zeroed()` would become a call to `memset`, a BPF-to-BPF call to a loop.
    // The IPv4 address goes in the first word of the IPv6 union member, where `remote_ipv4`
    // lives, in host byte order: the helpers convert it to and from network order themselves.
    bpf_tunnel_key {
        tunnel_id: 0,
        __bindgen_anon_1: bpf_tunnel_key__bindgen_ty_1 { remote_ipv6: [u32::from_be(ip), 0, 0, 0] },
        tunnel_tos: 0,
        tunnel_ttl: ttl,
        __bindgen_anon_2: bpf_tunnel_key__bindgen_ty_2 { tunnel_ext: 0 },
        tunnel_label: 0,
        __bindgen_anon_3: bpf_tunnel_key__bindgen_ty_3 { local_ipv6: [0; 4] },
    }
}

/// The two MAC addresses at the start of an Ethernet frame, written with one store.
#[repr(C)]
struct EthAddrs {
    dst: [u8; 6],
    src: [u8; 6],
}

/// Longest-prefix match of `ip` (network order) in the remote subnets.
#[inline(always)]
fn lookup_remote(ip: u32) -> Option<*mut Remote> {
    let key = Key::new(32, ip);
    // `LpmTrie::get` only hands out a shared reference; the counters need a writable pointer,
    // so look the key up with the helper directly. The map static is the map definition itself
    // (`repr(transparent)`), whose address the loader relocates to the map's fd.
    // SAFETY: the map pointer is the map definition and the key a live stack value.
    let value = unsafe {
        bpf_map_lookup_elem(ptr::addr_of!(SDN_REMOTES).cast_mut().cast::<c_void>(), ptr::addr_of!(key).cast())
    };
    (!value.is_null()).then_some(value.cast::<Remote>())
}

#[inline(always)]
fn config() -> Option<&'static NodeConfig> {
    SDN_CONFIG.get(0)
}

/// Compares MACs byte by byte (`==` on arrays may become a `bcmp` call, which BPF lacks).
#[inline(always)]
pub fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5]) == 0
}

#[inline(always)]
pub fn ingress_ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: the context pointer is the program's `__sk_buff`, readable for the whole run.
    unsafe { (*ctx.skb.skb).ifindex }
}

#[inline(always)]
fn packet_len(ctx: &TcContext) -> u64 {
    u64::from(ctx.len())
}

#[inline(always)]
fn redirect(ifindex: u32) -> i32 {
    // SAFETY: a helper call with plain integer arguments.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

/// Adds one packet of `len` bytes to a map entry's counters, atomically: other CPUs update the
/// same entry at the same time. The result is unused, so this is BPF's plain atomic add.
///
/// # Safety
///
/// Both pointers must be valid, 8-byte aligned and only accessed atomically by the programs.
#[inline(always)]
unsafe fn add_atomic(packets: *mut u64, bytes: *mut u64, len: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(packets, 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(bytes, len);
    }
}

/// Adds one packet of `len` bytes to this CPU's counter of `decision`.
#[inline(always)]
fn count(decision: Decision, len: u64) {
    if let Some(counter) = SDN_COUNTERS.get_ptr_mut(decision.index()) {
        // SAFETY: a per-CPU slot: only this CPU writes it, and a program run is not preempted
        // by another run on the same CPU at the TC hook.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}

// Never reached: the programs do not panic, and a panic path the optimiser could not remove would
// show up as this unbounded loop, which the verifier rejects at load time.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
