//! Attaching pods: a veth pair with the host side on `br0` and the pod's
//! interface in its namespace, an address from IPAM, a default route via the
//! gateway, and the flow entry that delivers to it and checks what it sends.
//! Detaching undoes each step; both are idempotent, so a retried request (or
//! one replayed after an agent restart) converges. An attachment is named by
//! its container ID and interface name, as CNI names it.

pub mod check;
pub mod gone;
mod locks;
pub mod offload;
pub mod record;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::bpf::{BpfError, Dataplane, Program};
use crate::ipam::{IpamError, IpamStore};
use crate::net::layout::{BR0, NodeLayout};
use crate::net::netlink::{Link, NetError, Netlink, PodPair, index_of, sysctl};
use crate::netns::{self, NetnsError, NodeNamespace};
use crate::podapi::{AttachRequest, Attachment, AttachmentKey, Detached, Dns};
use check::{Expected, HostSide, Observed, PodSide};
pub use locks::AttachmentLocks;
use record::{host_veth, ipam_key, mac_string};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("id: {0:?} must be 1 to 128 characters of letters, digits, '-', '_' or '.', the first a letter or digit")]
    BadId(String),
    #[error("ifname: {0:?} must be 1 to 15 characters of letters, digits, '-', '_' or '.', and not \".\" or \"..\"")]
    BadIfname(String),
    #[error(
        "the host veth {veth} that pod {id} would get belongs to another pod (its names collide); \
         the other pod is left alone"
    )]
    VethTaken { veth: String, id: String },
    #[error("netns: {path}: {source}")]
    Netns { path: PathBuf, source: std::io::Error },
    #[error("no pod {id} with interface {ifname} on this node")]
    Unknown { id: String, ifname: String },
    #[error("pod {id} ({ifname}) differs from what was attached: {}", differences.join("; "))]
    Differs { id: String, ifname: String, differences: Vec<String> },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Namespace(#[from] NetnsError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("the request stopped before it finished: {0}")]
    Interrupted(String),
}

/// The agent checks keys as strictly as `sdn-cni` does: the API is reachable without it.
fn check_key(key: &AttachmentKey) -> Result<(), PodError> {
    if !crate::podapi::container_id_ok(&key.id) {
        return Err(PodError::BadId(key.id.clone()));
    }
    if !crate::podapi::ifname_ok(&key.ifname) {
        return Err(PodError::BadIfname(key.ifname.clone()));
    }
    Ok(())
}

/// What the pod's namespace shows of its interface `ifname`, through a netlink socket made there.
async fn pod_side(netns: &Path, ifname: &str) -> Result<Option<PodSide>, PodError> {
    let nl = netns::made_in(netns, Netlink::connect)??;
    let Some(link) = nl.link(ifname).await? else { return Ok(None) };
    Ok(Some(PodSide {
        mac: link.mac,
        mtu: link.mtu,
        up: link.up,
        addresses: nl.ipv4_addresses(&link).await?,
        gateway: nl.default_gateway(&link).await?,
    }))
}

/// The node's pods: the one place that attaches, detaches, checks and collects them.
pub struct Pods {
    ns: NodeNamespace,
    layout: NodeLayout,
    ipam: IpamStore,
    dataplane: Arc<Mutex<Dataplane>>,
    dns: Dns,
    /// `br0`, the bridge every pod port joins.
    br0: Link,
    /// Woken on every change of the node's pods (the etcd pod records follow it).
    changed: Notify,
    /// Host veths of detached pods with the number of their deletions still queued (a DEL
    /// repeated quickly queues two).
    deleting: Arc<Mutex<HashMap<String, usize>>>,
    /// Requests for one attachment run one at a time.
    locks: AttachmentLocks,
}

impl Pods {
    /// The pods of a built node: its namespace and layout, the pods' addresses, the flow maps,
    /// the DNS the pods are told to use, and `br0`.
    pub fn new(
        ns: NodeNamespace,
        layout: NodeLayout,
        ipam: IpamStore,
        dataplane: Arc<Mutex<Dataplane>>,
        dns: Dns,
        br0: Link,
    ) -> Self {
        let (changed, deleting, locks) = Default::default();
        Self { ns, layout, ipam, dataplane, dns, br0, changed, deleting, locks }
    }

    /// Returns at the next change of the node's pods (at once if one came since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether the flow maps answer, which pods need before they can be attached.
    pub fn ready(&self) -> Result<(), BpfError> {
        self.dp().config().map(drop)
    }

    fn dp(&self) -> std::sync::MutexGuard<'_, Dataplane> {
        crate::locked(&self.dataplane)
    }

    fn deleting(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        crate::locked(&self.deleting)
    }

    /// Returns once a deletion of the host veth `host` queued by a detach has run, so an
    /// attach never finds the old pair (and keeps it) just before it goes.
    async fn deletion_done(&self, host: &str) -> Result<(), PodError> {
        if self.deleting().contains_key(host) {
            // The namespace's thread runs jobs in order: this one runs after the deletion.
            self.ns.run(|| async {}).await?;
        }
        Ok(())
    }

    pub async fn attach(&self, request: AttachRequest) -> Result<Attachment, PodError> {
        let key = record::key(&request);
        check_key(&key)?;
        let _held = self.locks.lock(&key).await;
        let pod_ns = std::fs::File::open(&request.netns)
            .map_err(|source| PodError::Netns { path: request.netns.clone(), source })?;
        // A repeated request finds the address (and the record) of the first.
        let ip = self.ipam.allocate(&ipam_key(&key), &record::encode(&request))?;
        self.changed.notify_one();
        let stored = self.record(&key).map_or(request, |(_, stored)| stored);
        let result = self.plumb(&stored, ip, pod_ns).await;
        match &result {
            Ok(_) => {}
            // Another pod's veth: it keeps it, and its program and flow entry.
            Err(PodError::VethTaken { .. }) => {
                let _ = self.ipam.release(&ipam_key(&key));
                self.changed.notify_one();
            }
            // Nothing half-made stays: the address and any veth go again.
            Err(_) => {
                let _ = self.detach_held(&key).await;
            }
        }
        result
    }

    fn record(&self, key: &AttachmentKey) -> Option<(Ipv4Addr, AttachRequest)> {
        self.ipam.get(&ipam_key(key)).map(|(ip, r)| (ip, record::decode(&r)))
    }

    fn attachment(&self, request: &AttachRequest, ip: Ipv4Addr, mac: [u8; 6], host_mac: [u8; 6]) -> Attachment {
        Attachment {
            id: request.id.clone(),
            ifname: request.ifname.clone(),
            netns: request.netns.clone(),
            network: request.network.clone(),
            namespace: request.namespace.clone(),
            name: request.name.clone(),
            ip,
            prefix: self.layout.prefix(),
            gateway: self.layout.gateway,
            mtu: self.layout.pod_mtu,
            mac: mac_string(mac),
            host_veth: host_veth(&record::key(request)),
            host_mac: mac_string(host_mac),
            dns: self.dns.clone(),
        }
    }

    async fn plumb(
        &self,
        request: &AttachRequest,
        ip: Ipv4Addr,
        pod_ns: std::fs::File,
    ) -> Result<Attachment, PodError> {
        let started = std::time::Instant::now();
        let host = host_veth(&record::key(request));
        let (mtu, ifname) = (self.layout.pod_mtu, request.ifname.as_str());
        self.deletion_done(&host).await?;
        // The node side, on this thread through a socket made in the node's namespace: the
        // pair (the pod end made inside the pod), and the program that checks what the pod
        // sends, before it can send.
        let (pod_mac, host_mac) = record::veth_macs(ip);
        let pair = PodPair { host: &host, host_mac, pod: ifname, pod_mac, mtu };
        let nl = self.ns.made_in(Netlink::connect)??;
        let created = nl.create_pod_veth(&pair, &self.br0, &pod_ns).await?;
        let host_link = if created {
            // Made just now as `pair` says, on br0 and up: only its index is new.
            let index = self.ns.made_in(|| index_of(&host))??;
            let (controller, kind) = (Some(self.br0.index), Some("veth".to_owned()));
            Link { name: host.clone(), index, mtu, mac: host_mac, controller, kind, up: true }
        } else {
            // A pair made by an earlier request for this pod is kept; its host end has the MAC
            // of this pod's address. Any other is a pod whose name collides with this one's.
            let link = nl.require(&host).await?;
            if link.mac != host_mac {
                return Err(PodError::VethTaken { veth: host, id: request.id.clone() });
            }
            nl.attach(&link, &self.br0).await?;
            link
        };
        self.ns.made_in(|| self.dp().attach_filter(Program::FromPod, &host))??;
        let node_side = started.elapsed();
        // The pod side: its interface up with the address and default route, through a netlink
        // socket made in the namespace the pair was made in (the stored request's path may name
        // another by now).
        let (gateway, prefix) = (self.layout.gateway, self.layout.prefix());
        let netns_err = |source| PodError::Netns { path: request.netns.clone(), source };
        let nl = netns::made_in_file(&pod_ns, Netlink::connect).map_err(netns_err)??;
        let mac = if created {
            let index = netns::made_in_file(&pod_ns, || index_of(ifname)).map_err(netns_err)??;
            let kind = Some("veth".to_owned());
            let eth0 = Link { name: ifname.to_owned(), index, mtu, mac: pod_mac, controller: None, kind, up: false };
            nl.configure_fresh_pod(&eth0, ip, prefix, gateway).await?;
            pod_mac
        } else {
            let eth0 = nl.require(ifname).await?;
            let eth0 = nl.rename_up(&eth0, ifname, mtu).await?;
            nl.ensure_address(&eth0, ip, prefix, true).await?;
            if let Some(lo) = nl.link("lo").await? {
                nl.rename_up(&lo, "lo", lo.mtu).await?;
            }
            nl.ensure_default_route(gateway, &eth0).await?;
            eth0.mac
        };
        // Whether its super-packets from the tunnel may be stripped in eBPF (see `offload`).
        let ip_forward = netns::made_in_file(&pod_ns, || sysctl("net.ipv4.ip_forward")).map_err(netns_err)??;
        let links: Vec<String> = nl.links().await?.into_iter().map(|link| link.name).collect();
        let strip = offload::does_not_forward(&ip_forward, &links, ifname);
        // The flow entry that delivers to the pod and names its MAC.
        let mut dp = self.dp();
        dp.upsert_endpoint(ip, host_link.index, mac)?;
        dp.set_strip_gso(ip, strip)?;
        drop(dp);
        tracing::info!(
            "attached {}/{} at {ip} in {:?} (node side {:?})",
            request.id,
            request.ifname,
            started.elapsed(),
            node_side
        );
        Ok(self.attachment(request, ip, mac, host_link.mac))
    }

    /// Detaches a pod; what is already gone is skipped. The pod stops being
    /// served at once (its program, flow entry and address go before this
    /// returns); its veth is deleted right after on the node's namespace
    /// thread, which runs jobs in order, so a later attach of the same pod
    /// finds it gone. Deleting a veth waits out RCU grace periods, the
    /// slowest step by far, and nothing depends on its timing.
    pub async fn detach(&self, key: &AttachmentKey) -> Result<Detached, PodError> {
        check_key(key)?;
        let _held = self.locks.lock(key).await;
        self.detach_held(key).await
    }

    /// [`Self::detach`] for a caller that holds the attachment's lock.
    async fn detach_held(&self, key: &AttachmentKey) -> Result<Detached, PodError> {
        let host = host_veth(key);
        self.dp().detach(&host)?;
        // The flow entry goes before the address is freed: a failure in between leaves the
        // record, so a retried DEL finds the address again, and no entry outlives its address.
        if let Some((ip, _)) = self.ipam.get(&ipam_key(key)) {
            self.dp().remove_endpoint(ip)?;
        }
        let released = self.ipam.release(&ipam_key(key))?;
        if released.is_some() {
            self.changed.notify_one();
        }
        // Deleted on the namespace's thread, which runs jobs in order; an attach of the same
        // pod meanwhile waits for it (`deletion_done`).
        *self.deleting().entry(host.clone()).or_default() += 1;
        let deleting = self.deleting.clone();
        self.ns.spawn(move || async move {
            let deleted = match Netlink::connect() {
                Ok(nl) => nl.delete(&host).await,
                Err(err) => Err(err),
            };
            if let Err(err) = deleted {
                tracing::error!("deleting the veth {host} of a detached pod: {err}");
            }
            let mut deleting = crate::locked(&deleting);
            if let Some(queued) = deleting.get_mut(&host) {
                *queued -= 1;
                if *queued == 0 {
                    deleting.remove(&host);
                }
            }
        })?;
        Ok(Detached { id: key.id.clone(), ifname: key.ifname.clone(), released })
    }

    /// Every attachment of the node, from the records, the flow map (pod
    /// MACs) and the node's links (host MACs); nothing enters a pod.
    pub async fn list(&self) -> Result<Vec<Attachment>, PodError> {
        let records = self.records()?;
        let endpoints = self.dp().endpoints()?;
        let links = self.ns.run(|| async { Netlink::connect()?.links().await }).await??;
        Ok(records
            .into_iter()
            .map(|(ip, request)| {
                let mac = endpoints.iter().find(|(e, _)| *e == ip).map_or([0; 6], |(_, e)| e.mac);
                let host = host_veth(&record::key(&request));
                let host_mac = links.iter().find(|l| l.name == host).map_or([0; 6], |l| l.mac);
                self.attachment(&request, ip, mac, host_mac)
            })
            .collect())
    }

    /// The recorded pods with their addresses.
    pub fn records(&self) -> Result<Vec<(Ipv4Addr, AttachRequest)>, PodError> {
        Ok(self.ipam.list()?.into_iter().map(|(ip, r)| (ip, record::decode(&r))).collect())
    }

    /// The attachment if it is plumbed as recorded, else every difference.
    pub async fn check(&self, key: &AttachmentKey) -> Result<Attachment, PodError> {
        check_key(key)?;
        let _held = self.locks.lock(key).await;
        let unknown = || PodError::Unknown { id: key.id.clone(), ifname: key.ifname.clone() };
        let (ip, request) = self.record(key).ok_or_else(unknown)?;
        let host = host_veth(key);
        let observed = self.observe(&request, ip, &host).await?;
        let expected = Expected {
            ifname: key.ifname.clone(),
            host_veth: host,
            ip,
            prefix: self.layout.prefix(),
            gateway: self.layout.gateway,
            mtu: self.layout.pod_mtu,
        };
        let differences = check::differences(&expected, &observed);
        if !differences.is_empty() {
            return Err(PodError::Differs { id: key.id.clone(), ifname: key.ifname.clone(), differences });
        }
        let mac = match &observed.netns {
            Ok(Some(pod)) => pod.mac,
            _ => [0; 6],
        };
        let host_mac = observed.host.as_ref().map_or([0; 6], |h| h.mac);
        Ok(self.attachment(&request, ip, mac, host_mac))
    }

    async fn observe(&self, request: &AttachRequest, ip: Ipv4Addr, host: &str) -> Result<Observed, PodError> {
        let (dataplane, host_c) = (self.dataplane.clone(), host.to_owned());
        let host = self
            .ns
            .run(move || async move {
                let nl = Netlink::connect()?;
                let Some(link) = nl.link(&host_c).await? else { return Ok::<_, PodError>(None) };
                let br0 = nl.require(BR0).await?;
                let from_pod = crate::locked(&dataplane).program_id(Program::FromPod)?;
                let checked = Dataplane::filter_programs(&host_c)?.contains(&from_pod);
                Ok(Some(HostSide {
                    index: link.index,
                    mac: link.mac,
                    on_br0: link.controller == Some(br0.index),
                    up: link.up,
                    checked,
                }))
            })
            .await??;
        let ifname = request.ifname.clone();
        let netns = if request.netns.as_os_str().is_empty() || !request.netns.exists() {
            Err(format!("{} does not exist", request.netns.display()))
        } else {
            pod_side(&request.netns, &ifname).await.map_err(|e| e.to_string())
        };
        let endpoint = self.dp().endpoints()?.into_iter().find(|(e, _)| *e == ip).map(|(_, e)| (e.ifindex, e.mac));
        Ok(Observed { netns, host, endpoint })
    }

    /// Adopts the pods an earlier agent attached: gives each host veth that
    /// still exists this build's `sdn_from_pod` (replaced atomically in its
    /// filter) and refreshes its flow entry. A pod whose veth is gone
    /// (its namespace was deleted meanwhile) is left to [`gone`]. A pod veth on `br0` that no record
    /// names lost its deletion to a crash after its DEL was answered, and goes.
    /// Returns how many pods were adopted and how many such veths deleted.
    pub async fn adopt(&self) -> Result<(usize, usize), PodError> {
        let records = self.records()?;
        let dataplane = self.dataplane.clone();
        let br0 = self.br0.index;
        self.ns
            .run(move || async move {
                let nl = Netlink::connect()?;
                let hosts: HashSet<String> = records
                    .iter()
                    .flat_map(|(_, r)| [host_veth(&record::key(r)), record::legacy_host_veth(&record::key(r))])
                    .collect();
                let mut stray = 0;
                for link in nl.links().await? {
                    let pod_port = link.controller == Some(br0) && link.kind.as_deref() == Some("veth");
                    if pod_port && record::is_host_veth(&link.name) && !hosts.contains(&link.name) {
                        nl.delete(&link.name).await?;
                        stray += 1;
                    }
                }
                let mut adopted = 0;
                for (ip, request) in records {
                    let host = host_veth(&record::key(&request));
                    // An earlier build's shorter name takes this build's (down for a moment:
                    // Linux renames no interface that is up).
                    let legacy = record::legacy_host_veth(&record::key(&request));
                    if nl.link(&host).await?.is_none()
                        && let Some(old) = nl.link(&legacy).await?
                    {
                        nl.rename_down(&old, &host).await?;
                    }
                    let Some(link) = nl.link(&host).await? else { continue };
                    let mut dp = crate::locked(&dataplane);
                    let mac = dp.endpoints()?.into_iter().find(|(e, _)| *e == ip).map(|(_, e)| e.mac);
                    if let Some(mac) = mac {
                        dp.upsert_endpoint(ip, link.index, mac)?;
                    }
                    dp.attach_filter(Program::FromPod, &host)?;
                    // A TCX link an older build gave the port would run the old program first.
                    dp.detach(&host)?;
                    adopted += 1;
                }
                Ok::<_, PodError>((adopted, stray))
            })
            .await?
    }

    /// Detaches every pod added through CNI network `network` that is not in `valid`.
    pub async fn gc(&self, network: &str, valid: &[AttachmentKey]) -> Result<Vec<AttachmentKey>, PodError> {
        let valid: HashSet<&AttachmentKey> = valid.iter().collect();
        let mut released = Vec::new();
        for (_, request) in self.records()? {
            let key = record::key(&request);
            if request.network.as_deref() == Some(network) && !valid.contains(&key) {
                // A DEL may have detached it while this waited for the lock.
                let _held = self.locks.lock(&key).await;
                if self.detach_held(&key).await?.released.is_some() {
                    released.push(key);
                }
            }
        }
        Ok(released)
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
    fn keys_are_checked() {
        let key = |id: &str, ifname: &str| AttachmentKey { id: id.into(), ifname: ifname.into() };
        check_key(&key("abc-1", "eth0")).expect("valid");
        // As strict as sdn-cni: the first character a letter or digit ("." and ".." never).
        for bad in ["", "a/b", "a b", &"x".repeat(129), ".", "..", "-a", "_a", ".hidden"] {
            assert!(check_key(&key(bad, "eth0")).is_err(), "{bad:?}");
        }
        for bad in ["eth0/../x", &"a".repeat(16), ".", "..", ""] {
            assert!(check_key(&key("a", bad)).is_err(), "{bad:?}");
        }
    }
}
