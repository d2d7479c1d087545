//! Attaching pods: a veth pair with the host side on `br0` and `eth0` in
//! the pod, an address from IPAM, a default route via the gateway, and the
//! flow entry that delivers to it and checks what it sends. Detaching
//! undoes each step; both are idempotent, so a retried request (or one
//! replayed after an agent restart) converges.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::bpf::{BpfError, Dataplane, Program};
use crate::ipam::{IpamError, IpamStore};
use crate::net::layout::{BR0, NodeLayout};
use crate::net::netlink::{NetError, Netlink};
use crate::netns::{self, NetnsError, NodeNamespace};

/// A request to attach a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// The runtime's ID of the pod (its sandbox or container ID).
    pub id: String,
    /// The pod's network namespace, e.g. `/var/run/netns/<name>` or `/proc/<pid>/ns/net`.
    pub netns: PathBuf,
    /// The interface in the pod [default: eth0].
    #[serde(default = "default_ifname")]
    pub ifname: String,
}

fn default_ifname() -> String {
    "eth0".into()
}

/// What a pod got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    pub mac: String,
    pub host_veth: String,
    pub ifname: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("id: {0:?} must be 1 to 128 characters of letters, digits, '-', '_' or '.'")]
    BadId(String),
    #[error("ifname: {0:?} is not a valid interface name")]
    BadIfname(String),
    #[error("netns: {path}: {source}")]
    Netns { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Namespace(#[from] NetnsError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

fn check(request: &AttachRequest) -> Result<(), PodError> {
    let id_ok = !request.id.is_empty()
        && request.id.len() <= 128
        && request.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !id_ok {
        return Err(PodError::BadId(request.id.clone()));
    }
    let name_ok = !request.ifname.is_empty()
        && request.ifname.len() < 16
        && request.ifname.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(PodError::BadIfname(request.ifname.clone()));
    }
    Ok(())
}

/// The host-side veth name of a pod: stable, unique per ID, at most 15 bytes.
pub fn host_veth(id: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("veth{:08x}", hash as u32)
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The pod side's name while it is still in the node namespace.
fn peer_name(host: &str) -> String {
    format!("p{}", &host[4..])
}

pub struct Pods {
    pub ns: NodeNamespace,
    pub layout: NodeLayout,
    pub ipam: IpamStore,
    pub dataplane: Arc<Mutex<Dataplane>>,
}

impl Pods {
    pub async fn attach(&self, request: AttachRequest) -> Result<Attachment, PodError> {
        check(&request)?;
        let pod_ns = std::fs::File::open(&request.netns)
            .map_err(|source| PodError::Netns { path: request.netns.clone(), source })?;
        let ip = self.ipam.allocate(&request.id)?;
        let result = self.plumb(&request, ip, pod_ns).await;
        if result.is_err() {
            // Nothing half-made stays: the address and any veth go again.
            let _ = self.detach(&request.id).await;
        }
        result
    }

    async fn plumb(
        &self,
        request: &AttachRequest,
        ip: Ipv4Addr,
        pod_ns: std::fs::File,
    ) -> Result<Attachment, PodError> {
        let host = host_veth(&request.id);
        let peer = peer_name(&host);
        let mtu = self.layout.pod_mtu;
        let (host_c, peer_c) = (host.clone(), peer.clone());
        // The node side: the pair, the host end on br0, the pod end moved out.
        let host_link = self
            .ns
            .run(move || async move {
                let nl = Netlink::connect()?;
                // A pair made by an earlier request for this pod is kept.
                let host_link = match nl.link(&host_c).await? {
                    Some(link) => link,
                    None => nl.ensure_veth(&host_c, &peer_c, mtu).await?.0,
                };
                nl.attach(&host_link, &nl.require(BR0).await?).await?;
                if let Some(peer_link) = nl.link(&peer_c).await? {
                    nl.move_to(&peer_link, &pod_ns).await?;
                }
                nl.require(&host_c).await
            })
            .await??;
        // The pod side: eth0 with its address and default route.
        let (ifname, gateway, prefix) = (request.ifname.clone(), self.layout.gateway, self.layout.prefix());
        let pod_path = request.netns.clone();
        let mac = netns::run_in(&pod_path, move || async move {
            let nl = Netlink::connect()?;
            let link = match nl.link(&ifname).await? {
                Some(link) => link,
                None => nl.require(&peer).await?,
            };
            let eth0 = nl.rename_up(&link, &ifname, mtu).await?;
            nl.ensure_address(&eth0, ip, prefix, true).await?;
            if let Some(lo) = nl.link("lo").await? {
                nl.rename_up(&lo, "lo", lo.mtu).await?;
            }
            nl.ensure_default_route(gateway, &eth0).await?;
            Ok::<_, NetError>(eth0.mac)
        })??;
        // The flow entry, then the program that checks what the pod sends.
        {
            let mut dp = self.dataplane.lock().unwrap_or_else(|p| p.into_inner());
            dp.upsert_endpoint(ip, host_link.index, mac)?;
        }
        let (dataplane, host_c) = (self.dataplane.clone(), host.clone());
        self.ns
            .run(move || async move {
                let mut dp = dataplane.lock().unwrap_or_else(|p| p.into_inner());
                dp.attach(Program::FromPod, &host_c)
            })
            .await??;
        Ok(Attachment {
            id: request.id.clone(),
            ip,
            prefix,
            gateway,
            mtu,
            mac: mac_string(mac),
            host_veth: host,
            ifname: request.ifname.clone(),
        })
    }

    /// Detaches a pod; what is already gone is skipped.
    pub async fn detach(&self, id: &str) -> Result<Option<Ipv4Addr>, PodError> {
        let host = host_veth(id);
        let (dataplane, host_c) = (self.dataplane.clone(), host.clone());
        self.ns
            .run(move || async move {
                {
                    let mut dp = dataplane.lock().unwrap_or_else(|p| p.into_inner());
                    dp.detach(&host_c)?;
                }
                let nl = Netlink::connect()?;
                nl.delete(&host_c).await?;
                Ok::<_, PodError>(())
            })
            .await??;
        let released = self.ipam.release(id)?;
        if let Some(ip) = released {
            self.dataplane.lock().unwrap_or_else(|p| p.into_inner()).remove_endpoint(ip)?;
        }
        Ok(released)
    }

    /// Every pod with an address.
    pub fn list(&self) -> Result<Vec<(Ipv4Addr, String)>, PodError> {
        Ok(self.ipam.list()?)
    }
}

/// The pods' IPAM directory under the node's state directory.
pub fn ipam_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ipam")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = host_veth("0123456789abcdef0123456789abcdef");
        assert_eq!(a, host_veth("0123456789abcdef0123456789abcdef"));
        assert!(a.len() <= 15 && a.starts_with("veth"));
        assert_ne!(a, host_veth("0123456789abcdef0123456789abcdee"));
        assert_eq!(peer_name(&a).len(), a.len() - 3);
    }

    #[test]
    fn requests_are_checked() {
        let ok = AttachRequest { id: "abc-1".into(), netns: "/run/netns/x".into(), ifname: "eth0".into() };
        check(&ok).expect("valid");
        for bad in ["", "a/b", "a b", &"x".repeat(129)] {
            assert!(check(&AttachRequest { id: bad.into(), ..ok.clone() }).is_err(), "{bad:?}");
        }
        assert!(check(&AttachRequest { ifname: "eth0/../x".into(), ..ok.clone() }).is_err());
        assert!(check(&AttachRequest { ifname: "a".repeat(16), ..ok }).is_err());
    }
}
