//! Which pods may have GRO/GSO super-packets from the tunnel stripped in eBPF.
//!
//! On kernels without `BPF_F_ADJ_ROOM_DECAP_L4_UDP` a packet stripped in eBPF keeps its
//! UDP-tunnel segmentation state. That is harmless for a packet whose socket is in the pod that
//! receives it (nothing segments it again), and wrong for one the pod sends on. So the strip is
//! gated per pod: only a namespace with forwarding off and no interface but `lo` and the one the
//! agent made gets it (`ENDPOINT_STRIP_GSO` in its endpoint); every other pod's super-packets
//! go through `vxlan0`, whose receive path clears the state. Single packets take the eBPF path
//! for every pod.
//!
//! The agent decides at attach and checks every pod again at start and every [`RECHECK`]: a pod
//! that turns forwarding on (or gains an interface) leaves the fast path that soon. What it
//! forwards before then may carry the stale state: a device that segments it in software, or a
//! NIC that offloads it as a UDP tunnel, gets wrong headers and the packet is lost or corrupt
//! (TCP retransmits it once the pod is off the fast path).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{PodError, Pods};
use crate::net::netlink::{self, Netlink};
use crate::netns;

/// How often every pod is checked again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Whether a pod's namespace does not forward: `ip_forward` (the sysctl's text) is 0 and its
/// interfaces (`links`) are only `lo` and `ifname`.
pub fn does_not_forward(ip_forward: &str, links: &[String], ifname: &str) -> bool {
    ip_forward.trim() == "0" && links.iter().all(|link| link == "lo" || link == ifname)
}

/// Looks into the pod's namespace at `netns`: whether it does not forward.
pub async fn probe(netns: &Path, ifname: &str) -> Result<bool, PodError> {
    let (nl, ip_forward) = netns::made_in(netns, || {
        Ok::<_, netlink::NetError>((Netlink::connect()?, netlink::sysctl("net.ipv4.ip_forward")?))
    })??;
    let links: Vec<String> = nl.links().await?.into_iter().map(|link| link.name).collect();
    Ok(does_not_forward(&ip_forward, &links, ifname))
}

impl Pods {
    /// Checks every attached pod again and sets its endpoint's strip flag to match; how many
    /// changed.
    pub async fn recheck_offload(&self) -> Result<usize, PodError> {
        let mut changed = 0;
        for (ip, request) in self.records()? {
            // A namespace that cannot be read (gone meanwhile) is no fast path.
            let strip = probe(&request.netns, &request.ifname).await.unwrap_or(false);
            if self.dp().set_strip_gso(ip, strip)? {
                tracing::info!(
                    "pod {}/{} at {ip}: super-packets from the tunnel {}",
                    request.id,
                    request.ifname,
                    if strip { "stripped in eBPF (it does not forward)" } else { "go through vxlan0 (it forwards)" }
                );
                changed += 1;
            }
        }
        Ok(changed)
    }
}

/// Checks the pods at once (an earlier agent's among them) and every [`RECHECK`], until
/// `shutdown` fires.
pub async fn run(pods: Arc<Pods>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(err) = pods.recheck_offload().await {
            tracing::error!("checking which pods forward: {err}");
        }
        tokio::select! {
            _ = tokio::time::sleep(RECHECK) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn only_a_pod_that_cannot_forward_is_stripped_in_ebpf() {
        assert!(does_not_forward("0\n", &links(&["lo", "eth0"]), "eth0"));
        assert!(!does_not_forward("1\n", &links(&["lo", "eth0"]), "eth0"), "forwarding on");
        assert!(!does_not_forward("0\n", &links(&["lo", "eth0", "eth1"]), "eth0"), "another interface");
        assert!(!does_not_forward("0\n", &links(&["lo", "net1"]), "eth0"), "not the agent's interface");
        assert!(!does_not_forward("", &links(&["lo", "eth0"]), "eth0"), "unreadable");
    }
}
