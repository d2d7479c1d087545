//! What each node may do in etcd, when etcd authenticates its clients: a role per node that
//! reads what agents read (the whole prefix) and writes only that node's own keys, its record,
//! its IP claim and its pods' records. Allocating subnets, the network config, services and
//! endpoints stay the master's. A node's etcd user is its name, which is also the common name
//! of its client certificate under etcd's `--client-cert-auth`. Pure: [`crate::store`] applies
//! it with etcd's auth API.

use std::net::IpAddr;

use crate::keys::Keys;
use crate::records::{RecordError, validate_label};

/// One permission of a role: read or read-write on a key, or on every key under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: String,
    pub prefix: bool,
    pub write: bool,
}

/// A node's etcd role and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAccess {
    /// The etcd user: the node's name (its certificate's common name).
    pub user: String,
    /// The etcd role, `sdn-node-<name>`.
    pub role: String,
    pub grants: Vec<Grant>,
}

/// The role and user of node `node` at `ip`.
pub fn node_access(keys: &Keys, node: &str, ip: IpAddr) -> Result<NodeAccess, RecordError> {
    validate_label("name", node)?;
    let grant = |key: String, prefix: bool, write: bool| Grant { key, prefix, write };
    Ok(NodeAccess {
        user: node.to_owned(),
        role: format!("sdn-node-{node}"),
        grants: vec![
            grant(format!("{}/", keys.prefix()), true, false),
            grant(keys.node(node), false, true),
            grant(keys.node_ip(ip), false, true),
            grant(keys.node_pods(node), true, true),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_reads_everything_and_writes_only_its_own_keys() {
        let keys = Keys::new("/sdn");
        let access = node_access(&keys, "node-a", "192.0.2.11".parse().expect("ip")).expect("valid");
        assert_eq!((access.user.as_str(), access.role.as_str()), ("node-a", "sdn-node-node-a"));
        let written: Vec<(&str, bool)> =
            access.grants.iter().filter(|g| g.write).map(|g| (g.key.as_str(), g.prefix)).collect();
        assert_eq!(
            written,
            [("/sdn/nodes/node-a", false), ("/sdn/node-ips/192.0.2.11", false), ("/sdn/pods/node-a/", true)]
        );
        assert_eq!(access.grants[0], Grant { key: "/sdn/".into(), prefix: true, write: false });
        assert!(node_access(&keys, "Bad_Name", "192.0.2.11".parse().expect("ip")).is_err());
    }
}
