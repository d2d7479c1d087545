//! The sdn master (seed 003 §4.2.2): it keeps the node registry in etcd and
//! allocates each registered node a `HostSubnet` of the `ClusterNetwork`.
//!
//! - [`allocator`]: the pure planning core (nodes and subnets in, writes out).
//! - [`controller`]: the leader's loop that applies plans as etcd transactions.
//! - [`leader`]: lease-based leader election among masters.
//! - [`bootstrap`]: storing or checking the `ClusterNetwork` at startup.
//! - [`quorum`]: whether etcd can commit, for `/readyz`.
//! - [`api`]: the authenticated admin HTTP API; [`metrics`]: its `/metrics`.
//! - [`config`]: file and flags; [`ctl`]: the `sdnctl` client.

pub mod allocator;
pub mod api;
pub mod bootstrap;
pub mod config;
pub mod controller;
pub mod ctl;
pub mod leader;
pub mod metrics;
pub mod quorum;
