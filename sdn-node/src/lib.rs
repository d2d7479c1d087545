//! The node agent `sdn-node` and the CNI plugin `sdn-cni`.
//!
//! This crate is the agreed home of the node side (issue 3 builds the agent,
//! issue 4 the CNI plugin, issue 5 the cluster DNS); it holds nothing yet.
