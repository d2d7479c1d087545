//! The cluster data model shared by `sdn-master` and `sdn-node`: the network, nodes and their
//! subnets, pods, services and endpoints.
//!
//! The pure parts (the network layout, the records and their validation, the
//! key layout) carry no I/O and are unit-tested as plain data. The etcd parts
//! are thin adapters: [`etcd`] connects, [`informer`] keeps a list+watch cache
//! of a key prefix, [`store`] does the typed reads and transactions.

pub mod access;
pub mod etcd;
pub mod informer;
pub mod keys;
pub mod network;
pub mod records;
pub mod service_ips;
pub mod services;
pub mod store;

pub use keys::Keys;
pub use network::{ClusterNetwork, NetworkError};
pub use records::{HostSubnet, Node, RecordError};
pub use services::{ClusterIp, EndpointAddress, Endpoints, Port, Protocol, Service, ServiceError, ServiceSpec};
