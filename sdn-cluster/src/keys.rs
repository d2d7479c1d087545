//! The etcd key layout. Every key the system writes is built here, so the
//! layout documented in `docs/etcd-layout.md` has one source.

use std::net::IpAddr;

use ipnetwork::Ipv4Network;

pub const DEFAULT_PREFIX: &str = "/sdn";

/// Key builder for one cluster, rooted at a prefix such as `/sdn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    /// `prefix` without a trailing '/'; an empty prefix roots keys at '/'.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.trim_end_matches('/').to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything the cluster stores, for one list+watch.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The directories a node agent reads: the network's, the subnets, services and endpoints.
    /// Nothing else under the prefix (node records, claims, pods) reaches an agent.
    pub fn agent_dirs(&self) -> Vec<String> {
        vec![format!("{}/config/", self.prefix), self.subnets(), self.services(), self.endpoints()]
    }

    pub fn network(&self) -> String {
        format!("{}/config/network", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}/nodes/{name}", self.prefix)
    }

    /// Index that makes node IPs unique: `node-ips/<ip>` holds the node name.
    pub fn node_ip(&self, ip: IpAddr) -> String {
        format!("{}/node-ips/{ip}", self.prefix)
    }

    pub fn subnets(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    pub fn subnet(&self, node: &str) -> String {
        format!("{}/subnets/{node}", self.prefix)
    }

    /// Index that makes subnets unique: `subnet-claims/10.1.2.0-24` holds the
    /// node name. An allocation creates it only if absent.
    pub fn subnet_claim(&self, subnet: Ipv4Network) -> String {
        format!("{}{}-{}", self.subnet_claims(), subnet.ip(), subnet.prefix())
    }

    pub fn subnet_claims(&self) -> String {
        format!("{}/subnet-claims/", self.prefix)
    }

    /// The subnet a claim key's name stands for (`10.1.2.0-24`).
    pub fn claimed_subnet(name: &str) -> Option<Ipv4Network> {
        let (ip, prefix) = name.rsplit_once('-')?;
        Ipv4Network::new(ip.parse().ok()?, prefix.parse().ok()?).ok()
    }

    /// Every node's pod records: `pods/<node>/<container-id>:<ifname>`.
    pub fn pods(&self) -> String {
        format!("{}/pods/", self.prefix)
    }

    pub fn node_pods(&self, node: &str) -> String {
        format!("{}/pods/{node}/", self.prefix)
    }

    /// Container IDs and interface names never hold ':', so the key is unambiguous.
    pub fn pod(&self, node: &str, container_id: &str, ifname: &str) -> String {
        format!("{}/pods/{node}/{container_id}:{ifname}", self.prefix)
    }

    /// Every service: `services/<namespace>/<name>`.
    pub fn services(&self) -> String {
        format!("{}/services/", self.prefix)
    }

    /// The services of one namespace.
    pub fn services_in(&self, namespace: &str) -> String {
        format!("{}/services/{namespace}/", self.prefix)
    }

    pub fn service(&self, namespace: &str, name: &str) -> String {
        format!("{}/services/{namespace}/{name}", self.prefix)
    }

    /// Every service's endpoints: `endpoints/<namespace>/<name>`.
    pub fn endpoints(&self) -> String {
        format!("{}/endpoints/", self.prefix)
    }

    /// The endpoints of one namespace's services.
    pub fn endpoints_in(&self, namespace: &str) -> String {
        format!("{}/endpoints/{namespace}/", self.prefix)
    }

    pub fn endpoints_of(&self, namespace: &str, name: &str) -> String {
        format!("{}/endpoints/{namespace}/{name}", self.prefix)
    }

    /// Claim on a cluster IP, created in the same transaction as its service, so no two
    /// services get one IP: `service-ips/<ip>`.
    pub fn service_ip_claim(&self, ip: IpAddr) -> String {
        format!("{}/service-ips/{ip}", self.prefix)
    }

    pub fn service_ip_claims(&self) -> String {
        format!("{}/service-ips/", self.prefix)
    }

    /// The master leadership key, held under a lease by the leader.
    pub fn leader(&self) -> String {
        format!("{}/master/leader", self.prefix)
    }

    /// The name part of `key` if it lies directly under `dir` (a `…/` key).
    pub fn name_in<'k>(dir: &str, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(dir).filter(|rest| !rest.is_empty() && !rest.contains('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/sdn/");
        assert_eq!(k.network(), "/sdn/config/network");
        assert_eq!(k.node("n1"), "/sdn/nodes/n1");
        assert_eq!(k.subnet("n1"), "/sdn/subnets/n1");
        let subnet = "10.1.2.0/24".parse().expect("cidr");
        assert_eq!(k.subnet_claim(subnet), "/sdn/subnet-claims/10.1.2.0-24");
        let name = Keys::name_in(&k.subnet_claims(), "/sdn/subnet-claims/10.1.2.0-24").expect("claim name");
        assert_eq!(Keys::claimed_subnet(name), Some(subnet));
        assert_eq!(Keys::claimed_subnet("10.1.2.0"), None);
        assert_eq!(Keys::claimed_subnet("10.1.2.0-33"), None);
        assert_eq!(k.node_ip("192.0.2.1".parse().expect("ip")), "/sdn/node-ips/192.0.2.1");
        assert_eq!(k.leader(), "/sdn/master/leader");
        assert_eq!(k.pod("n1", "c0ffee", "eth0"), "/sdn/pods/n1/c0ffee:eth0");
        assert!(k.pod("n1", "c0ffee", "eth0").starts_with(&k.node_pods("n1")));
        assert_eq!(k.service("default", "web"), "/sdn/services/default/web");
        assert!(k.service("default", "web").starts_with(&k.services()));
        assert_eq!(k.endpoints_of("default", "web"), "/sdn/endpoints/default/web");
        assert!(k.endpoints_of("default", "web").starts_with(&k.endpoints()));
        assert!(k.service("default", "web").starts_with(&k.services_in("default")));
        assert!(!k.service("default-2", "web").starts_with(&k.services_in("default")));
        assert!(k.endpoints_of("default", "web").starts_with(&k.endpoints_in("default")));
        let ip = "172.30.0.10".parse().expect("ip");
        assert_eq!(k.service_ip_claim(ip), "/sdn/service-ips/172.30.0.10");
        assert_eq!(Keys::name_in(&k.service_ip_claims(), &k.service_ip_claim(ip)), Some("172.30.0.10"));
        assert_eq!(Keys::name_in(&k.nodes(), "/sdn/nodes/n1"), Some("n1"));
        assert_eq!(Keys::name_in(&k.nodes(), "/sdn/nodes/"), None);
        assert_eq!(Keys::name_in(&k.nodes(), "/sdn/nodes/a/b"), None);
        assert_eq!(Keys::name_in(&k.nodes(), "/sdn/subnets/n1"), None);
    }
}
