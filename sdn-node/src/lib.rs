//! The node agent `sdn-node` and the CNI plugin `sdn-cni` (seed 003 §4.2.3).
//!
//! - [`agent`]: register, wait for the subnet, build the node, follow the cluster.
//! - [`net`]: the node's devices: a pure layout and a netlink adapter.
//! - [`bpf`]: the eBPF programs and flow maps (pinned, adopted across restarts).
//! - [`nat`]: the nftables table that masquerades traffic leaving the cluster.
//! - [`ipam`]: pod addresses from the node subnet, recorded one file each.
//! - [`podapi`]: the pod API on a root-only unix socket, its types and client;
//!   [`pods`]: attach, detach, check and GC of pods; [`podsync`]: their etcd records.
//! - [`install`]: the CNI plugin and configuration list put in place on start.
//! - [`remotes`]: which remote subnets the tunnel map holds (pure).
//! - [`services`]: which frontends and backends the service maps hold (pure).
//! - [`netns`]: running work inside a network namespace.
//! - [`status`]: `/healthz`, `/readyz`, `/metrics`; [`config`]: the flags.
//! - [`dns`]: the cluster DNS server (the answers are `sdn-dns`'s).
//! - [`cni`]: the CNI plugin's core (the spec, results, the pod API calls); `sdn-cni` is its shell.

pub mod agent;
pub mod bpf;
pub mod bpffs;
pub mod cni;
pub mod config;
pub mod dns;
pub mod durable;
pub mod install;
pub mod ipam;
pub mod maps;
pub mod nat;
pub mod net;
pub mod netns;
pub mod podapi;
pub mod pods;
pub mod podsync;
pub mod remotes;
pub mod services;
pub mod status;

/// Locks `mutex`, also after a holder panicked. Every lock of the agent guards state that each
/// holder changes with single writes (a map entry, a counter, a BPF map update), so what a
/// panicking holder left is whole; poisoning would instead fail every later pod request.
pub fn locked<T: ?Sized>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
