//! The node agent `sdn-node` and the CNI plugin `sdn-cni` (seed 003 §4.2.3).
//!
//! - [`net`]: the node's devices: a pure layout and a netlink adapter.
//! - [`netns`]: running work inside a network namespace.
//! - [`nat`]: the nftables table that masquerades traffic leaving the cluster.
//! - [`ipam`]: pod addresses from the node subnet, recorded one file each.
//! - [`remotes`]: which remote subnets the tunnel map holds (pure).

pub mod ipam;
pub mod nat;
pub mod net;
pub mod netns;
pub mod remotes;
