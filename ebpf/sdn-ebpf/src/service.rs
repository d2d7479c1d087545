//! Services: a packet to a frontend (cluster IP, protocol, port) gets a backend's address and
//! port as its destination, and the replies get the frontend back as their source, so the client
//! sees the cluster IP as its peer. The choice is kept per connection in `SDN_CONNTRACK` (pinned,
//! so a restarted agent breaks no connection), both ways: the way there keyed by the client's
//! flow, the way back by the backend's. A frontend without backends refuses at once (see
//! [`reject`]).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::{bpf_csum_diff, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_skb_change_tail},
    macros::map,
    maps::{HashMap, LruHashMap},
    programs::TcContext,
};
use sdn_ebpf_common::{
    Affinity, AffinityKey, Backend, BackendKey, Decision, FLOW_REPLY, FLOW_TO_SERVICE, FlowKey, HAIRPIN_SOURCE,
    MAX_AFFINITY, MAX_BACKENDS, MAX_CONNTRACK, MAX_SERVICES, NodeConfig, ServiceEntry, ServiceKey, Translation,
};

use crate::{ETH_HLEN, Headers, IPV4_HLEN, add_atomic, count, packet_len, redirect};

/// Frontends (and cluster-IP markers) → their backends' id and count, with counters.
#[map]
static SDN_SERVICES: HashMap<ServiceKey, ServiceEntry> = HashMap::pinned(MAX_SERVICES, 0);

/// (frontend id, slot) → backend.
#[map]
static SDN_BACKENDS: HashMap<BackendKey, Backend> = HashMap::pinned(MAX_BACKENDS, 0);

/// (client, frontend id) → the backend of the client's last new connection, for `ClientIP`
/// affinity.
#[map]
static SDN_AFFINITY: LruHashMap<AffinityKey, Affinity> = LruHashMap::pinned(MAX_AFFINITY, 0);

/// Tracked flows, both ways, → what their packets become.
#[map]
static SDN_CONNTRACK: LruHashMap<FlowKey, Translation> = LruHashMap::pinned(MAX_CONNTRACK, 0);

const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
pub const L4: usize = ETH_HLEN + IPV4_HLEN;
const IP_CSUM: usize = ETH_HLEN + 10;
const IP_SADDR: usize = ETH_HLEN + 12;
const IP_DADDR: usize = ETH_HLEN + 16;
const TCP_FLAGS: usize = L4 + 13;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const TCP_RST: u8 = 0x04;

/// What [`forward`] did with a packet.
pub enum Forward {
    /// Not for a service: on as it is.
    Pass,
    /// Now addressed to a backend.
    Translated,
    /// For a frontend without backends.
    Reject,
    /// For a cluster IP, on a port its service does not have.
    NoPort,
}

/// A TCP or UDP packet's flow, and where its L4 checksum sits; `None` for anything else (other
/// protocols, IP options, fragments), which services leave alone.
#[inline(always)]
pub fn flow(ctx: &TcContext, headers: &Headers) -> Option<(FlowKey, usize)> {
    let l3 = &headers.l3;
    let protocol = l3[9];
    let csum = match protocol {
        IPPROTO_TCP => L4 + 16,
        IPPROTO_UDP => L4 + 6,
        _ => return None,
    };
    // Header length 20 (no options), and neither a later fragment nor one with more to come.
    if l3[0] != 0x45 || (l3[6] & 0x3f) != 0 || l3[7] != 0 {
        return None;
    }
    let ports: [u8; 4] = ctx.load(L4).ok()?;
    let (saddr, daddr) = headers.ipv4_addrs();
    let key = FlowKey {
        saddr,
        daddr,
        sport: u16::from_ne_bytes([ports[0], ports[1]]),
        dport: u16::from_ne_bytes([ports[2], ports[3]]),
        protocol,
        direction: FLOW_TO_SERVICE,
        _pad: [0; 2],
    };
    Some((key, csum))
}

/// Translates a packet to a frontend (its [`flow`]): the backend its connection has, or a new one.
#[inline(never)]
pub fn forward(ctx: &TcContext, flow: Option<(FlowKey, usize)>) -> Result<Forward, ()> {
    let Some((flow, csum)) = flow else { return Ok(Forward::Pass) };
    let key = ServiceKey { ip: flow.daddr, port: flow.dport, protocol: flow.protocol, _pad: 0 };
    let Some(service) = SDN_SERVICES.get_ptr_mut(key) else {
        let marker = ServiceKey { ip: flow.daddr, port: 0, protocol: 0, _pad: 0 };
        if SDN_SERVICES.get_ptr(marker).is_some() {
            return Ok(Forward::NoPort);
        }
        forget_stale(ctx, &flow);
        return Ok(Forward::Pass);
    };
    // SAFETY: a non-null pointer from a map lookup points at the value for this program run.
    let (id, backends, affinity) = unsafe { ((*service).id, (*service).count, (*service).affinity) };
    let tracked = tracked_backend(ctx, &flow, id);
    let (backend, slot) = match tracked {
        Some(found) => found,
        None => {
            if backends == 0 {
                return Ok(Forward::Reject);
            }
            let client = AffinityKey { client: flow.saddr, id };
            // SAFETY: a helper call without arguments.
            let now = unsafe { bpf_ktime_get_ns() };
            let chosen = match (affinity != 0).then(|| affine_backend(&client, now, affinity)).flatten() {
                Some(found) => found,
                None => {
                    // SAFETY: a helper call without arguments.
                    let slot = unsafe { bpf_get_prandom_u32() } % backends;
                    // A slot past the end meets an update half-way: refuse rather than guess.
                    (*unsafe { SDN_BACKENDS.get(BackendKey { id, slot }) }.ok_or(())?, slot)
                }
            };
            if affinity != 0 {
                let (backend, slot) = chosen;
                let entry = Affinity { ip: backend.ip, port: backend.port, _pad: 0, slot, _pad2: 0, used_ns: now };
                SDN_AFFINITY.insert(client, entry, 0).map_err(|_| ())?;
            }
            chosen
        }
    };
    let hairpin = backend.ip == flow.saddr;
    let source = if hairpin { u32::from_ne_bytes(HAIRPIN_SOURCE) } else { flow.saddr };
    // A SYN starts a connection: both ways are written again, whatever an older one left.
    if tracked.is_none() || is_syn(ctx, &flow) {
        let there = Translation { ip: backend.ip, port: backend.port, _pad: 0, client: 0, id, slot };
        let back_key = FlowKey {
            saddr: backend.ip,
            daddr: source,
            sport: backend.port,
            dport: flow.sport,
            protocol: flow.protocol,
            direction: FLOW_REPLY,
            _pad: [0; 2],
        };
        let back = Translation {
            ip: flow.daddr,
            port: flow.dport,
            _pad: 0,
            client: if hairpin { flow.saddr } else { 0 },
            id,
            slot,
        };
        SDN_CONNTRACK.insert(flow, there, 0).map_err(|_| ())?;
        SDN_CONNTRACK.insert(back_key, back, 0).map_err(|_| ())?;
    }
    let udp = flow.protocol == IPPROTO_UDP;
    rewrite_addr(ctx, IP_DADDR, csum, flow.daddr, backend.ip, udp)?;
    rewrite_port(ctx, L4 + 2, csum, flow.dport, backend.port, udp)?;
    if hairpin {
        rewrite_addr(ctx, IP_SADDR, csum, flow.saddr, source, udp)?;
    }
    let len = packet_len(ctx);
    // SAFETY: as above; the counters are 8-byte aligned (`ServiceEntry` is align 8).
    unsafe { add_atomic(core::ptr::addr_of_mut!((*service).packets), core::ptr::addr_of_mut!((*service).bytes), len) };
    count(Decision::ServiceTranslated, len);
    Ok(Forward::Translated)
}

/// A client that starts a flow straight to an address and port which once answered it as a
/// service's backend, from the same source port, must get that backend's replies as they are:
/// the tracked way back of the old service connection (the LRU map keeps it until it is the
/// oldest) goes. A TCP SYN starts such a flow; UDP has no start, so every UDP packet looks.
#[inline(always)]
pub fn forget_stale_reply(ctx: &TcContext, flow: Option<(FlowKey, usize)>) {
    if let Some((flow, _)) = flow {
        forget_stale(ctx, &flow);
    }
}

/// [`forget_stale_reply`] of a parsed flow.
#[inline(always)]
fn forget_stale(ctx: &TcContext, flow: &FlowKey) {
    let starts = flow.protocol == IPPROTO_UDP || is_syn(ctx, flow);
    if !starts {
        return;
    }
    let reply = FlowKey {
        saddr: flow.daddr,
        daddr: flow.saddr,
        sport: flow.dport,
        dport: flow.sport,
        protocol: flow.protocol,
        direction: FLOW_REPLY,
        _pad: [0; 2],
    };
    // SAFETY: the value is copied out at once.
    let Some(back) = (unsafe { SDN_CONNTRACK.get(reply) }).copied() else { return };
    let _ = SDN_CONNTRACK.remove(reply);
    // And the old way there, so the client's next packet to the service is tracked afresh, both
    // ways.
    let there = FlowKey { daddr: back.ip, dport: back.port, direction: FLOW_TO_SERVICE, ..*flow };
    let _ = SDN_CONNTRACK.remove(there);
}

/// Whether the packet is a TCP SYN without ACK: the start of a connection.
#[inline(always)]
fn is_syn(ctx: &TcContext, flow: &FlowKey) -> bool {
    flow.protocol == IPPROTO_TCP && ctx.load::<u8>(TCP_FLAGS).is_ok_and(|flags| flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
}

/// The backend (and its slot) the tracked connection `flow` has. A TCP SYN starts a connection
/// (perhaps on a port an old one used), and a UDP flow has no end: they keep the tracked backend
/// only while that backend still holds its slot, so a removed backend gets no new connections.
#[inline(always)]
fn tracked_backend(ctx: &TcContext, flow: &FlowKey, id: u32) -> Option<(Backend, u32)> {
    // SAFETY: the value is copied out at once.
    let tracked = *unsafe { SDN_CONNTRACK.get(flow) }?;
    let backend = Backend { ip: tracked.ip, port: tracked.port, _pad: 0 };
    let syn_only = is_syn(ctx, flow);
    if tracked.id != id {
        return None;
    }
    // UDP has no connection to end: a flow whose backend left moves on, as kube-proxy clears
    // the conntrack entries of a removed UDP endpoint.
    if syn_only || flow.protocol == IPPROTO_UDP {
        // SAFETY: the value is copied out at once.
        let current = *unsafe { SDN_BACKENDS.get(BackendKey { id, slot: tracked.slot }) }?;
        if current.ip != backend.ip || current.port != backend.port {
            return None;
        }
    }
    Some((backend, tracked.slot))
}

/// The backend `client`'s last new connection got, if that was less than `timeout` seconds
/// before `now` and the backend still holds its slot.
#[inline(always)]
fn affine_backend(client: &AffinityKey, now: u64, timeout: u32) -> Option<(Backend, u32)> {
    // SAFETY: the value is copied out at once.
    let last = *unsafe { SDN_AFFINITY.get(client) }?;
    if now.wrapping_sub(last.used_ns) > u64::from(timeout) * 1_000_000_000 {
        return None;
    }
    // SAFETY: the value is copied out at once.
    let current = *unsafe { SDN_BACKENDS.get(BackendKey { id: client.id, slot: last.slot }) }?;
    (current.ip == last.ip && current.port == last.port).then_some((current, last.slot))
}

/// Gives a service's reply (its [`flow`]) the frontend back as its source (and a hairpin's its client as its
/// destination); `Ok(true)` when it was one.
#[inline(never)]
pub fn reverse(ctx: &TcContext, flow: Option<(FlowKey, usize)>) -> Result<bool, ()> {
    let Some((mut flow, csum)) = flow else { return Ok(false) };
    flow.direction = FLOW_REPLY;
    // SAFETY: the value is copied out at once.
    let Some(back) = (unsafe { SDN_CONNTRACK.get(flow) }).copied() else { return Ok(false) };
    let udp = flow.protocol == IPPROTO_UDP;
    rewrite_addr(ctx, IP_SADDR, csum, flow.saddr, back.ip, udp)?;
    rewrite_port(ctx, L4, csum, flow.sport, back.port, udp)?;
    if back.client != 0 {
        rewrite_addr(ctx, IP_DADDR, csum, flow.daddr, back.client, udp)?;
    }
    count(Decision::ServiceReplied, packet_len(ctx));
    Ok(true)
}

/// Replaces the address at `offset` (network order values), fixing the IPv4 and L4 checksums.
#[inline(always)]
fn rewrite_addr(ctx: &TcContext, offset: usize, csum: usize, old: u32, new: u32, udp: bool) -> Result<(), ()> {
    let mangled = if udp { u64::from(BPF_F_MARK_MANGLED_0) } else { 0 };
    ctx.l4_csum_replace(csum, u64::from(old), u64::from(new), u64::from(BPF_F_PSEUDO_HDR) | mangled | 4)
        .map_err(|_| ())?;
    ctx.l3_csum_replace(IP_CSUM, u64::from(old), u64::from(new), 4).map_err(|_| ())?;
    ctx.store(offset, &new, 0).map_err(|_| ())
}

/// Replaces the port at `offset`, fixing the L4 checksum.
#[inline(always)]
fn rewrite_port(ctx: &TcContext, offset: usize, csum: usize, old: u16, new: u16, udp: bool) -> Result<(), ()> {
    if old == new {
        return Ok(());
    }
    let mangled = if udp { u64::from(BPF_F_MARK_MANGLED_0) } else { 0 };
    ctx.l4_csum_replace(csum, u64::from(old), u64::from(new), mangled | 2).map_err(|_| ())?;
    ctx.store(offset, &new, 0).map_err(|_| ())
}

/// The answer to a connection to a frontend without backends, as kube-proxy's reject rules and
/// the kernel answer a closed port: a TCP reset, or for UDP an ICMP port unreachable (see
/// [`unreachable`]). Made of the packet itself and sent back the way it came, out of `port` (the
/// pod's host-side veth, or `tun0-br` towards the host).
#[inline(never)]
pub fn reject(ctx: &TcContext, headers: &Headers, config: &NodeConfig, port: u32) -> Result<i32, ()> {
    count(Decision::ServiceRejected, packet_len(ctx));
    if flow(ctx, headers).is_none() {
        return Err(());
    }
    if headers.l3[9] == IPPROTO_UDP {
        return unreachable(ctx, headers, config, port);
    }
    let tcp: [u8; 20] = ctx.load(L4).map_err(|_| ())?;
    if tcp[13] & TCP_RST != 0 {
        return Err(());
    }
    let total = u16::from_be_bytes([headers.l3[2], headers.l3[3]]) as u32;
    let payload = total.saturating_sub((IPV4_HLEN as u32) + u32::from(tcp[12] >> 4) * 4);
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    // RFC 793: a segment with ACK gets a reset at its acknowledgment number; one without, a
    // reset acknowledging it (a SYN counts one).
    let (reset_seq, reset_ack, flags) = if tcp[13] & TCP_ACK != 0 {
        (u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]), 0, TCP_RST)
    } else {
        let syn = u32::from(tcp[13] & TCP_SYN != 0);
        (0, seq.wrapping_add(payload).wrapping_add(syn), TCP_RST | TCP_ACK)
    };
    // SAFETY: the context is the program's socket buffer; the new length is within bounds.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (L4 + 20) as u32, 0) } != 0 {
        return Err(());
    }
    let ip = answer_header(headers, IPPROTO_TCP, 40);
    let mut reset = [0u8; 20];
    reset[0..2].copy_from_slice(&tcp[2..4]);
    reset[2..4].copy_from_slice(&tcp[0..2]);
    reset[4..8].copy_from_slice(&reset_seq.to_be_bytes());
    reset[8..12].copy_from_slice(&reset_ack.to_be_bytes());
    reset[12] = 5 << 4;
    reset[13] = flags;
    // The pseudo-header: both addresses, the protocol and the TCP length.
    let mut pseudo = [0u8; 12];
    pseudo[0..8].copy_from_slice(&ip[12..20]);
    pseudo[9] = IPPROTO_TCP;
    pseudo[11] = 20;
    let tcp_sum = fold(csum_of(&reset, csum_of(&pseudo, 0)));
    reset[16..18].copy_from_slice(&tcp_sum.to_ne_bytes());
    send_back(ctx, headers, config, &ip, &reset, port)
}

/// ICMP destination unreachable, port unreachable (RFC 792), from the cluster IP: the original
/// IPv4 header and the first 8 bytes after it, behind a new IPv4 and ICMP header.
fn unreachable(ctx: &TcContext, headers: &Headers, config: &NodeConfig, port: u32) -> Result<i32, ()> {
    const QUOTED: usize = IPV4_HLEN + 8;
    const ICMP_LEN: usize = 8 + QUOTED;
    let quoted: [u8; QUOTED] = ctx.load(ETH_HLEN).map_err(|_| ())?;
    // SAFETY: the context is the program's socket buffer; the new length is within bounds.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (L4 + ICMP_LEN) as u32, 0) } != 0 {
        return Err(());
    }
    let ip = answer_header(headers, IPPROTO_ICMP, (IPV4_HLEN + ICMP_LEN) as u8);
    let mut icmp = [0u8; ICMP_LEN];
    icmp[0] = ICMP_DEST_UNREACH;
    icmp[1] = ICMP_PORT_UNREACH;
    icmp[8..].copy_from_slice(&quoted);
    let icmp_sum = fold(csum_of(&icmp, 0));
    icmp[2..4].copy_from_slice(&icmp_sum.to_ne_bytes());
    send_back(ctx, headers, config, &ip, &icmp, port)
}

/// Writes an answer (`ip` and `l4` after a new Ethernet header to the packet's sender, from the
/// gateway) over the packet and sends it out of `port`.
#[inline(always)]
fn send_back<const N: usize>(
    ctx: &TcContext,
    headers: &Headers,
    config: &NodeConfig,
    ip: &[u8; IPV4_HLEN],
    l4: &[u8; N],
    port: u32,
) -> Result<i32, ()> {
    let eth = crate::EthAddrs { dst: headers.src_mac(), src: config.gateway_mac };
    ctx.store(0, &eth, 0).map_err(|_| ())?;
    ctx.store(ETH_HLEN, ip, 0).map_err(|_| ())?;
    ctx.store(L4, l4, 0).map_err(|_| ())?;
    Ok(redirect(port))
}

/// The IPv4 header of an answer to the packet of `headers`: its addresses swapped (the cluster
/// IP as source), `protocol`, `total` bytes long, DF, TTL 64, with its checksum.
#[inline(always)]
fn answer_header(headers: &Headers, protocol: u8, total: u8) -> [u8; IPV4_HLEN] {
    let (saddr, daddr) = headers.ipv4_addrs();
    let mut ip = [0u8; IPV4_HLEN];
    ip[0] = 0x45;
    ip[3] = total;
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&daddr.to_ne_bytes());
    ip[16..20].copy_from_slice(&saddr.to_ne_bytes());
    let sum = fold(csum_of(&ip, 0));
    ip[10..12].copy_from_slice(&sum.to_ne_bytes());
    ip
}

/// The one's-complement sum of `bytes` (a multiple of 4 long) added to `seed`.
#[inline(always)]
fn csum_of<const N: usize>(bytes: &[u8; N], seed: u32) -> u32 {
    // SAFETY: the buffer lives on the stack for the call; its size is a multiple of 4, as the
    // helper requires.
    unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, bytes.as_ptr() as *mut u32, N as u32, seed) as u32 }
}

/// A 32-bit one's-complement sum folded to the 16-bit checksum field (inverted), in the order
/// the header stores it.
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
