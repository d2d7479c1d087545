//! Map key and value types shared by the eBPF programs (`sdn-ebpf`) and the node agent.
//!
//! Every type here is `#[repr(C)]` and `Copy`, so both sides agree on its layout byte for byte.
//! The crate is `no_std` because the eBPF programs link it; the node agent enables the `user`
//! feature, under which the types implement `aya::Pod` and can be read from and written to maps.
#![no_std]
