//! Pods whose network namespace went away without a DEL. A runtime may never
//! send one: `ctr run --cni` of containerd 1.6 and 1.7 sets a task's network
//! up and leaves it when the task is killed and deleted, and a sandbox whose
//! processes died takes its namespace with it. The kernel then destroys the
//! pod's veth pair, both ends, so a pod whose host veth is gone cannot be
//! reached or send again: the agent detaches it as a DEL would (its address,
//! flow entry and record go), and a DEL that comes later finds nothing to do.
//!
//! The kernel announces each removed link; a removal of a pod veth starts a
//! sweep, and so does a timer, which covers announcements the socket lost and
//! pods that went while no agent ran.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

use super::record::{self, host_veth, is_host_veth};
use super::{PodError, Pods};
use crate::net::netlink::{self, Netlink, index_of};
use crate::podapi::{AttachRequest, AttachmentKey};

/// A sweep runs this often even when no removal was announced.
const RESYNC: Duration = Duration::from_secs(60);
/// A removal waits this long for the ones that follow it (a node's pods dying together),
/// so a burst costs one sweep.
const GATHER: Duration = Duration::from_millis(100);

/// The attachments among `records` whose host veth is not among `links`.
pub fn without_veth(records: &[(Ipv4Addr, AttachRequest)], links: &HashSet<String>) -> Vec<AttachmentKey> {
    records.iter().map(|(_, request)| record::key(request)).filter(|key| !links.contains(&host_veth(key))).collect()
}

impl Pods {
    /// Detaches every pod whose host veth is gone; returns them with the address each gave back.
    pub async fn reap(&self) -> Result<Vec<(AttachmentKey, Ipv4Addr)>, PodError> {
        let links = self.ns.run(|| async { Netlink::connect()?.links().await }).await??;
        let names: HashSet<String> = links.into_iter().map(|link| link.name).collect();
        let mut reaped = Vec::new();
        for key in without_veth(&self.records()?, &names) {
            let _held = self.locks.lock(&key).await;
            // An attach may have made the pair again (or a detach ended the pod) while this waited.
            let host = host_veth(&key);
            if self.record(&key).is_none() || self.ns.made_in(|| index_of(&host))?.is_ok() {
                continue;
            }
            if let Some(ip) = self.detach_held(&key).await?.released {
                tracing::info!(
                    "pod {}/{} is gone (its veth {host} went with its namespace): released {ip}",
                    key.id,
                    key.ifname
                );
                reaped.push((key, ip));
            }
        }
        Ok(reaped)
    }
}

/// Announcements of removed links in the node's namespace, or why there are none.
fn subscribe(pods: &Pods) -> Option<UnboundedReceiver<String>> {
    match pods.ns.made_in(netlink::removed_links) {
        Ok(Ok(removed)) => Some(removed),
        Ok(Err(err)) => {
            tracing::warn!("following link removals: {err}; gone pods are found every {RESYNC:?} instead");
            None
        }
        Err(err) => {
            tracing::warn!("following link removals: {err}; gone pods are found every {RESYNC:?} instead");
            None
        }
    }
}

/// Runs until `shutdown` fires: a sweep at start (pods that went while no agent ran), after
/// each removal of a pod veth, and every [`RESYNC`].
pub async fn run(pods: Arc<Pods>, mut shutdown: watch::Receiver<bool>) {
    let mut removed: Option<UnboundedReceiver<String>> = None;
    loop {
        // Subscribed before the sweep, so no removal falls between the two.
        if removed.is_none() {
            removed = subscribe(&pods);
        }
        if let Err(err) = pods.reap().await {
            tracing::error!("detaching pods whose namespace is gone: {err}");
        }
        let woken = {
            let pod_veth_removed = async {
                match removed.as_mut() {
                    Some(rx) => loop {
                        match rx.recv().await {
                            Some(name) if is_host_veth(&name) => return Woken::Removed,
                            Some(_) => {}
                            None => return Woken::Lost,
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woken = pod_veth_removed => woken,
                _ = tokio::time::sleep(RESYNC) => Woken::Timer,
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        };
        match woken {
            Woken::Removed => {
                tokio::time::sleep(GATHER).await;
                if let Some(rx) = removed.as_mut() {
                    while rx.try_recv().is_ok() {}
                }
            }
            Woken::Lost => {
                tracing::warn!("the link removal announcements stopped; subscribing again");
                removed = None;
            }
            Woken::Timer => {}
        }
    }
}

/// Why a sweep is due.
enum Woken {
    Removed,
    Lost,
    Timer,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> AttachRequest {
        AttachRequest {
            id: id.into(),
            netns: "/proc/1/ns/net".into(),
            ifname: "eth0".into(),
            network: None,
            namespace: None,
            name: None,
        }
    }

    #[test]
    fn pods_without_their_host_veth_are_the_gone_ones() {
        let records =
            vec![(Ipv4Addr::new(10, 1, 0, 2), request("alive")), (Ipv4Addr::new(10, 1, 0, 3), request("dead"))];
        let alive = host_veth(&record::key(&records[0].1));
        let links: HashSet<String> = ["br0".to_owned(), "tun0".to_owned(), alive].into();
        let gone = without_veth(&records, &links);
        assert_eq!(gone, [AttachmentKey { id: "dead".into(), ifname: "eth0".into() }]);
        assert!(without_veth(&records[..1], &links).is_empty());
    }
}
