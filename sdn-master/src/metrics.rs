//! Prometheus metrics of the master. Counters count events as they happen;
//! the gauges are read off the informer's cache at scrape time, so every
//! master (leader or standby) reports the cluster as etcd holds it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Cluster figures taken from one snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStats {
    pub nodes: i64,
    pub allocated: i64,
    pub free: i64,
    pub pending: i64,
}

pub struct Metrics {
    registry: Registry,
    nodes: Gauge,
    subnets_allocated: Gauge,
    subnets_free: Gauge,
    nodes_pending: Gauge,
    leader: Gauge,
    pub etcd_errors: Counter,
    pub allocations: Counter,
    pub releases: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sdn_master");
        let metrics = Self {
            nodes: Gauge::default(),
            subnets_allocated: Gauge::default(),
            subnets_free: Gauge::default(),
            nodes_pending: Gauge::default(),
            leader: Gauge::default(),
            etcd_errors: Counter::default(),
            allocations: Counter::default(),
            releases: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("nodes", "Registered nodes", metrics.nodes.clone());
        registry.register("subnets_allocated", "Host subnets allocated to nodes", metrics.subnets_allocated.clone());
        registry.register(
            "subnets_free",
            "Host subnets of the cluster network still free",
            metrics.subnets_free.clone(),
        );
        registry.register(
            "nodes_pending",
            "Registered nodes waiting for a subnet because the cluster network is exhausted",
            metrics.nodes_pending.clone(),
        );
        registry.register("leader", "1 while this master leads allocation, else 0", metrics.leader.clone());
        registry.register("etcd_errors", "etcd calls of the allocator that failed", metrics.etcd_errors.clone());
        registry.register("allocations", "Host subnets allocated by this master", metrics.allocations.clone());
        registry.register("releases", "Host subnets released by this master", metrics.releases.clone());
        Self { registry, ..metrics }
    }
}

impl Metrics {
    /// The metrics in Prometheus text format, with the gauges set from `stats`.
    pub fn render(&self, stats: ClusterStats, leader: bool) -> String {
        self.nodes.set(stats.nodes);
        self.subnets_allocated.set(stats.allocated);
        self.subnets_free.set(stats.free);
        self.nodes_pending.set(stats.pending);
        self.leader.set(i64::from(leader));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let metrics = Metrics::default();
        metrics.allocations.inc();
        let text = metrics.render(ClusterStats { nodes: 3, allocated: 2, free: 254, pending: 1 }, true);
        for line in [
            "sdn_master_nodes 3",
            "sdn_master_subnets_allocated 2",
            "sdn_master_subnets_free 254",
            "sdn_master_nodes_pending 1",
            "sdn_master_leader 1",
            "sdn_master_allocations_total 1",
            "sdn_master_etcd_errors_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
