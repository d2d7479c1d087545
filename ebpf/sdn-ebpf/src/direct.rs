//! Direct routing: packets to a remote node on this node's underlay segment leave without VXLAN,
//! the node itself as next hop (flannel's `DirectRouting`, Calico's `CrossSubnet`), and packets
//! that arrive that way are delivered by the receiving node's underlay program.
//!
//! A node is its underlay address (`docs/dataplane.md`), and on one segment an address is a MAC
//! in the neighbour table: an unencapsulated packet whose source lies in a remote node's subnet is
//! taken only from the MAC the kernel has resolved for that node's address, and only if that
//! address is on-link (a node behind a router never sends directly; what the router forwards
//! under a remote pod's source is not believed).

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT, bpf_redir_neigh, bpf_redir_neigh__bindgen_ty_1},
    helpers::{bpf_fib_lookup, bpf_redirect_neigh},
    programs::TcContext,
};

use crate::mac_eq;

const AF_INET: u8 = 2;

/// Sends the frame out of `underlay_ifindex` to the node at `node_ip` (network order) as next
/// hop, its MACs from the neighbour table (resolved by the kernel if it is not yet).
#[inline(always)]
pub fn send(underlay_ifindex: u32, node_ip: u32) -> i32 {
    let mut next_hop = bpf_redir_neigh {
        nh_family: u32::from(AF_INET),
        __bindgen_anon_1: bpf_redir_neigh__bindgen_ty_1 { ipv4_nh: node_ip },
    };
    // SAFETY: the parameter block lives on the stack for the call; the size is the struct's.
    unsafe { bpf_redirect_neigh(underlay_ifindex, &mut next_hop, size_of::<bpf_redir_neigh>() as i32, 0) as i32 }
}

/// `struct bpf_fib_lookup` for an IPv4 output lookup, with its unions flattened to the members
/// used here. Written field by field (the verifier refuses a helper reading uninitialised stack,
/// and zeroing the bindings' struct would become a `memset` call).
#[repr(C)]
struct FibLookup {
    family: u8,
    l4_protocol: u8,
    sport: u16,
    dport: u16,
    tot_len: u16,
    ifindex: u32,
    tos: u32,
    ipv4_src: [u32; 4],
    ipv4_dst: [u32; 4],
    vlan: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

/// Whether a frame from source MAC `mac` came straight from the node at `node_ip` (network
/// order): the kernel routes `node_ip` out of `underlay_ifindex` with no gateway, and its
/// neighbour entry there holds `mac`. A node whose MAC is not resolved yet is not believed
/// (nodes that send to each other resolve each other's MACs; see `docs/dataplane.md`).
#[inline(always)]
pub fn from_node(ctx: &TcContext, underlay_ifindex: u32, node_ip: u32, mac: &[u8; 6]) -> bool {
    let mut fib = FibLookup {
        family: AF_INET,
        l4_protocol: 0,
        sport: 0,
        dport: 0,
        tot_len: 0,
        ifindex: underlay_ifindex,
        tos: 0,
        ipv4_src: [0; 4],
        ipv4_dst: [node_ip, 0, 0, 0],
        vlan: 0,
        smac: [0; 6],
        dmac: [0; 6],
    };
    // SAFETY: the block lives on the stack for the call and has the kernel struct's layout and
    // size (checked below).
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb.cast(),
            (&mut fib as *mut FibLookup).cast(),
            size_of::<FibLookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    // On success the kernel leaves `ipv4_dst` the next hop (a gateway, if the route has one)
    // and `ifindex` the interface it goes out of.
    ret == BPF_FIB_LKUP_RET_SUCCESS as i64
        && fib.ipv4_dst[0] == node_ip
        && fib.ifindex == underlay_ifindex
        && mac_eq(&fib.dmac, mac)
}

const _: () = assert!(size_of::<FibLookup>() == 64);
