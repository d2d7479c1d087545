//! A real three-member etcd cluster for the failure tests: members on loopback (client and peer
//! ports of their own), each with its own data directory, that can be killed, started again,
//! wiped and re-added. Clients are given every member's endpoint, as in production.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use sdn_cluster::etcd::EtcdConfig;

use crate::process::Process;
use crate::rundir::RunDir;
use crate::{HarnessError, bins, free_port};

/// One member: its name, ports and data, and its process while it runs.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    process: Option<Process>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

pub struct EtcdCluster {
    members: Vec<Member>,
    binary: PathBuf,
    token: String,
    dir: Arc<RunDir>,
}

fn failed(what: impl Into<String>) -> impl FnOnce(etcd_client::Error) -> HarnessError {
    let what = what.into();
    move |e| HarnessError::Io { what, source: std::io::Error::other(e.to_string()) }
}

impl EtcdCluster {
    /// Starts `size` members as a new cluster and waits until it has a leader.
    pub async fn start(dir: Arc<RunDir>, size: usize) -> Result<Self, HarnessError> {
        let binary = bins::tool("etcd", "install Debian's etcd-server (scripts/setup.sh does)")?;
        let mut members = Vec::new();
        for i in 0..size {
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                data: dir.path().join(format!("etcd-m{i}")),
                process: None,
            });
        }
        let token = format!("sdn-test-{}", std::process::id());
        let mut cluster = Self { members, binary, token, dir };
        for i in 0..size {
            cluster.launch(i, "new")?;
        }
        cluster.wait_leader(Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    /// Every member's client URL, as `--etcd-endpoints` takes them (comma-separated).
    pub fn endpoints(&self) -> String {
        self.members.iter().map(Member::client_url).collect::<Vec<_>>().join(",")
    }

    /// How a client reaches the cluster: every member.
    pub fn config(&self, prefix: &str) -> EtcdConfig {
        EtcdConfig {
            endpoints: self.members.iter().map(Member::client_url).collect(),
            prefix: prefix.into(),
            tls: None,
        }
    }

    /// How a client reaches member `i` alone (to see what that member holds).
    pub fn member_config(&self, i: usize, prefix: &str) -> EtcdConfig {
        EtcdConfig { endpoints: vec![self.members[i].client_url()], prefix: prefix.into(), tls: None }
    }

    fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",")
    }

    fn launch(&mut self, i: usize, state: &str) -> Result<(), HarnessError> {
        let initial = self.initial_cluster();
        let m = &self.members[i];
        let mut command = Command::new(&self.binary);
        command
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data.display()))
            .arg(format!("--listen-client-urls={}", m.client_url()))
            .arg(format!("--advertise-client-urls={}", m.client_url()))
            .arg(format!("--listen-peer-urls={}", m.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url()))
            .arg(format!("--initial-cluster={initial}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            // Elections on loopback: a dead leader is replaced within about a second.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-level=warn");
        let process = Process::spawn(&format!("etcd-{}", m.name), command, &self.dir)?;
        self.members[i].process = Some(process);
        Ok(())
    }

    /// A client of member `i` alone.
    async fn member_client(&self, i: usize) -> Result<Client, HarnessError> {
        let url = self.members[i].client_url();
        let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(1));
        Client::connect([url.as_str()], Some(options)).await.map_err(failed(format!("connecting to {url}")))
    }

    /// The index of the member that leads now, if a running member knows one.
    pub async fn leader(&self) -> Option<usize> {
        for i in self.running() {
            let Ok(mut client) = self.member_client(i).await else { continue };
            let Ok(status) = client.status().await else { continue };
            let leader = status.leader();
            if leader == 0 {
                continue;
            }
            let Ok(list) = client.member_list().await else { continue };
            let name = list.members().iter().find(|m| m.id() == leader).map(|m| m.name().to_owned());
            if let Some(found) = name.and_then(|n| self.members.iter().position(|m| m.name == n)) {
                return Some(found);
            }
        }
        None
    }

    /// Waits until a member leads.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize, HarnessError> {
        let logs = || self.members.iter().filter_map(|m| m.process.as_ref().map(Process::log)).collect::<String>();
        crate::wait::until(timeout, || async { self.leader().await.ok_or_else(|| "no leader".to_owned()) })
            .await
            .map_err(|_| HarnessError::NotReady {
                what: "an etcd leader".into(),
                seconds: timeout.as_secs(),
                log: logs(),
            })
    }

    /// The process ids of the members that run.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.process.as_ref().and_then(Process::pid)).collect()
    }

    /// The members that run now.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].process.is_some()).collect()
    }

    /// Kills member `i` (SIGKILL). Its data stays.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            process.kill();
        }
    }

    /// Starts member `i` again on its data.
    pub fn resume(&mut self, i: usize) -> Result<(), HarnessError> {
        self.launch(i, "existing")
    }

    /// Replaces member `i` by a fresh one of the same name and URLs: killed, removed from the
    /// cluster, its data directory wiped, added again and started empty (it then catches up
    /// from the leader), as an operator replaces a member whose disk died.
    pub async fn wipe_and_readd(&mut self, i: usize) -> Result<(), HarnessError> {
        self.kill(i);
        let peer = self.members[i].peer_url();
        let name = self.members[i].name.clone();
        let other = self.running().into_iter().next().ok_or_else(|| HarnessError::Io {
            what: "re-adding an etcd member".into(),
            source: std::io::Error::other("no member runs"),
        })?;
        let mut client = self.member_client(other).await?;
        let list = client.member_list().await.map_err(failed("listing etcd members"))?;
        if let Some(id) = list.members().iter().find(|m| m.name() == name).map(|m| m.id()) {
            client.member_remove(id).await.map_err(failed(format!("removing member {name}")))?;
        }
        let data = self.members[i].data.clone();
        std::fs::remove_dir_all(&data).map_err(HarnessError::io(format!("wiping {}", data.display())))?;
        // etcd refuses a new voting member until every member has been active for a while
        // ("unhealthy cluster"), as it does for etcdctl.
        let added = crate::wait::until(Duration::from_secs(20), || {
            let (mut client, peer) = (client.clone(), peer.clone());
            async move { client.member_add([peer.as_str()], None).await.map(drop).map_err(|e| e.to_string()) }
        })
        .await;
        added.map_err(|last| HarnessError::Io {
            what: format!("adding member {name}"),
            source: std::io::Error::other(last),
        })?;
        self.launch(i, "existing")
    }

    /// Compacts the keyspace to the current revision and defragments every running member.
    pub async fn compact_and_defragment(&self) -> Result<i64, HarnessError> {
        let first = self.running().into_iter().next().unwrap_or(0);
        let mut client = self.member_client(first).await?;
        let revision = client.get("/", None).await.map_err(failed("reading the revision"))?;
        let revision = revision.header().map_or(0, |h| h.revision());
        client.compact(revision, None).await.map_err(failed(format!("compacting at {revision}")))?;
        for i in self.running() {
            let mut client = self.member_client(i).await?;
            client.defragment().await.map_err(failed(format!("defragmenting member m{i}")))?;
        }
        Ok(revision)
    }
}
