//! Keeps the node's pod records in etcd (`pods/<node>/…`) equal to the
//! pods the agent has attached, so `sdnctl pods` lists every pod of the
//! cluster. Attaching never waits for etcd: a pod comes up while etcd is
//! away, and its record follows once etcd answers again.

use std::sync::Arc;
use std::time::Duration;

use sdn_cluster::etcd::Backoff;
use sdn_cluster::records::PodRecord;
use sdn_cluster::store::Store;
use tokio::sync::watch;

use crate::podapi::AttachRequest;
use crate::pods::Pods;

/// Records are compared with etcd this often even without a local change,
/// which repairs what someone else deleted or edited.
const RESYNC: Duration = Duration::from_secs(60);
/// A change waits this long for the ones that follow it, so a burst of pod
/// starts costs etcd one transaction, not one (and one fsync) per pod.
const GATHER: Duration = Duration::from_secs(1);

/// The records `node` should have for its attached pods.
pub fn records(node: &str, pods: &[(std::net::Ipv4Addr, AttachRequest)]) -> Vec<PodRecord> {
    let mut records: Vec<PodRecord> = pods
        .iter()
        .map(|(ip, request)| PodRecord {
            node: node.to_owned(),
            container_id: request.id.clone(),
            ifname: request.ifname.clone(),
            ip: *ip,
            namespace: request.namespace.clone(),
            name: request.name.clone(),
        })
        .collect();
    records.sort();
    records
}

/// Runs until `shutdown` fires.
pub async fn run(store: Store, node: String, pods: Arc<Pods>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::default();
    let mut failing = false;
    loop {
        let outcome = match pods.records() {
            Ok(attached) => store.replace_node_pods(&node, &records(&node, &attached)).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        let wait = match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!("pod records in etcd are up to date again");
                }
                failing = false;
                backoff.reset();
                RESYNC
            }
            Err(err) => {
                let delay = backoff.next_delay();
                if !failing {
                    tracing::warn!("updating the pod records in etcd: {err}; retrying every {delay:?} or so");
                }
                failing = true;
                delay
            }
        };
        let changed = tokio::select! {
            _ = pods.changed() => true,
            _ = tokio::time::sleep(wait) => false,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        if changed {
            tokio::time::sleep(GATHER).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_the_node_and_the_pod_metadata() {
        let pods = vec![(
            std::net::Ipv4Addr::new(10, 1, 0, 7),
            AttachRequest {
                id: "c1".into(),
                netns: "/run/netns/x".into(),
                ifname: "eth0".into(),
                network: Some("sdn".into()),
                namespace: Some("default".into()),
                name: Some("web-0".into()),
            },
        )];
        let records = records("node-1", &pods);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.node.as_str(), r.container_id.as_str(), r.ifname.as_str()), ("node-1", "c1", "eth0"));
        assert_eq!((r.namespace.as_deref(), r.name.as_deref()), (Some("default"), Some("web-0")));
        assert_eq!(r.ip, std::net::Ipv4Addr::new(10, 1, 0, 7));
    }
}
