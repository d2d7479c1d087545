//! The node agent `sdn-node` and the CNI plugin `sdn-cni` (seed 003 §4.2.3).
//!
//! - [`net`]: the node's devices: a pure layout and a netlink adapter.
//! - [`netns`]: running work inside a network namespace.

pub mod net;
pub mod netns;
