//! The node agent `sdn-node` and the CNI plugin `sdn-cni` (seed 003 §4.2.3).
//!
//! - [`net`]: the node's devices: a pure layout and a netlink adapter.
//! - [`netns`]: running work inside a network namespace.
//! - [`nat`]: the nftables table that masquerades traffic leaving the cluster.

pub mod nat;
pub mod net;
pub mod netns;
