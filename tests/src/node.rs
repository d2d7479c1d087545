//! `sdn-node` agents in network namespaces, pods attached through their
//! unix-socket API, and a whole dataplane cluster for the tests.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::cluster::ControlPlane;
use crate::netns::{Netns, Underlay};
use crate::process::Process;
use crate::rundir::RunDir;
use crate::{HarnessError, bins, free_port, wait};

/// A minimal HTTP/1.1 exchange over a unix socket: the pod API has three
/// routes and the harness only needs status and body.
pub async fn unix_http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let mut stream = UnixStream::connect(socket).await.map_err(|e| format!("{}: {e}", socket.display()))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: sdn\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.map_err(|e| e.to_string())?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(response.clone())?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// One node: its namespace and its agent.
pub struct NodeAgent {
    pub name: String,
    pub ip: Ipv4Addr,
    pub ns: Netns,
    process: Option<Process>,
    pub socket: PathBuf,
    pub metrics_port: u16,
    /// The namespace as it was before the agent first ran ([`NodeAgent::snapshot`]).
    pub before: String,
    /// Whether `--node-ip` is passed, or the agent finds its address itself.
    explicit_ip: bool,
    /// Where the agent installs its CNI configuration list and `sdn-cni` (in the run directory).
    pub cni_conflist: PathBuf,
    pub cni_bin_dir: PathBuf,
    /// Further flags for `sdn-node run`, taken by the next (re)start.
    pub extra_args: Vec<String>,
    etcd_endpoint: String,
    /// `--etcd-ca-file`, `--etcd-cert-file`, `--etcd-key-file` when etcd is served over TLS.
    etcd_flags: Vec<String>,
    dir: Arc<RunDir>,
}

impl NodeAgent {
    fn args(&self, verb: &str) -> Vec<String> {
        let mut args = vec![
            verb.to_owned(),
            format!("--node-name={}", self.name),
            format!("--netns={}", self.ns.path().display()),
            format!("--etcd-endpoints={}", self.etcd_endpoint),
            format!("--state-dir={}", self.dir.path().join("state").display()),
            format!("--cni-conflist={}", self.cni_conflist.display()),
            format!("--cni-bin-dir={}", self.cni_bin_dir.display()),
        ];
        args.extend(self.etcd_flags.iter().cloned());
        if verb == "run" {
            if self.explicit_ip {
                args.push(format!("--node-ip={}", self.ip));
            }
            args.push(format!("--socket={}", self.socket.display()));
            args.push(format!("--metrics-listen=127.0.0.1:{}", self.metrics_port));
            args.extend(self.extra_args.iter().cloned());
        }
        args
    }

    /// Creates the node's namespace on the underlay and starts its agent.
    pub async fn start(
        dir: Arc<RunDir>,
        cp: &ControlPlane,
        underlay: &Underlay,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<Self, HarnessError> {
        Self::start_with(dir, cp, underlay, name, ip, true).await
    }

    /// As [`NodeAgent::start`]; without `explicit_ip` the namespace gets a
    /// default route via the underlay's .1 and the agent finds its address.
    pub async fn start_with(
        dir: Arc<RunDir>,
        cp: &ControlPlane,
        underlay: &Underlay,
        name: &str,
        ip: Ipv4Addr,
        explicit_ip: bool,
    ) -> Result<Self, HarnessError> {
        // Its own certificate, whose common name is its etcd user, when etcd has them.
        let etcd = (cp.etcd.endpoint(), cp.etcd.tls_flags(name));
        Self::start_on(dir, etcd, underlay, name, ip, explicit_ip).await
    }

    /// As [`NodeAgent::start`], against etcd at `endpoints` (comma-separated) with `flags`
    /// (its TLS files), such as an [`crate::etcd_cluster::EtcdCluster`]'s members.
    pub async fn start_on(
        dir: Arc<RunDir>,
        (endpoints, flags): (String, Vec<String>),
        underlay: &Underlay,
        name: &str,
        ip: Ipv4Addr,
        explicit_ip: bool,
    ) -> Result<Self, HarnessError> {
        let ns = Netns::create(dir.clone(), &format!("{name}-ns"))?;
        underlay.plug(&ns, ip)?;
        if !explicit_ip {
            ns.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", "ul0"])?;
        }
        dir.record_resource("path", &format!("/sys/fs/bpf/sdn/{name}"));
        let before = Self::snapshot_of(&ns);
        let mut node = Self {
            name: name.to_owned(),
            ip,
            before,
            explicit_ip,
            ns,
            process: None,
            socket: dir.path().join(format!("{name}.sock")),
            cni_conflist: dir.path().join(format!("{name}-cni/net.d/10-sdn.conflist")),
            cni_bin_dir: dir.path().join(format!("{name}-cni/bin")),
            extra_args: Vec::new(),
            metrics_port: free_port()?,
            etcd_endpoint: endpoints,
            etcd_flags: flags,
            dir,
        };
        node.launch()?;
        node.wait_ready(Duration::from_secs(30)).await?;
        Ok(node)
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let mut command = Command::new(bins::project("sdn-node")?);
        command.env("RUST_LOG", "info").args(self.args("run"));
        self.process = Some(Process::spawn(&self.name, command, &self.dir)?);
        Ok(())
    }

    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        let ready = wait::until(timeout, || async {
            match reqwest::get(&url).await {
                Ok(resp) if resp.status().is_success() && self.socket.exists() => Ok(()),
                Ok(resp) => Err(resp.status().to_string()),
                Err(err) => Err(err.to_string()),
            }
        })
        .await;
        ready.map_err(|_| HarnessError::NotReady {
            what: format!("node {}", self.name),
            seconds: timeout.as_secs(),
            log: self.log(),
        })
    }

    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// Links, addresses, routes, neighbours, nftables, forwarding and attached
    /// programs of the node's namespace, for comparing before and after.
    pub fn snapshot(&self) -> String {
        Self::snapshot_of(&self.ns)
    }

    fn snapshot_of(ns: &Netns) -> String {
        let text = |args: &[&str]| String::from_utf8_lossy(&ns.exec(args).stdout).into_owned();
        let links: String = text(&["ip", "-o", "link", "show"])
            .lines()
            .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_owned() + "\n")
            .collect();
        [
            links,
            text(&["ip", "-o", "addr", "show"])
                .lines()
                .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" ") + "\n")
                .collect(),
            text(&["ip", "route", "show"]),
            text(&["ip", "neigh", "show", "nud", "permanent"]),
            text(&["nft", "list", "ruleset"]),
            text(&["cat", "/proc/sys/net/ipv4/ip_forward"]),
            // Programs attached to the namespace's devices (TCX, tc, XDP), by device and name.
            text(&["bpftool", "net", "show"])
                .lines()
                .map(|l| l.split(" prog_id").next().unwrap_or_default().to_owned() + "\n")
                .collect(),
        ]
        .join("---\n")
    }

    /// Status endpoint text (`/metrics`).
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        match reqwest::get(&url).await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(err) => err.to_string(),
        }
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// The packets a dataplane decision (its metrics label, e.g. `ToDirect`) counted.
    pub async fn decision_packets(&self, decision: &str) -> u64 {
        self.metric(&format!("sdn_node_decision_packets{{decision=\"{decision}\"}} ")).await
    }

    /// The packets dropped for `reason` (e.g. `spoofed-ip`).
    pub async fn dropped(&self, reason: &str) -> u64 {
        self.metric(&format!("sdn_node_dropped_packets{{reason=\"{reason}\"}} ")).await
    }

    /// The value of the metric line starting with `prefix`; 0 where there is none.
    async fn metric(&self, prefix: &str) -> u64 {
        let metrics = self.metrics().await;
        metrics.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Stops the agent as a service manager does (SIGTERM) and waits up to 15 s for it to exit;
    /// its exit status, or what went wrong.
    pub async fn stop(&mut self) -> Result<std::process::ExitStatus, String> {
        let mut process = self.process.take().ok_or("the agent is not running")?;
        process.signal(libc::SIGTERM);
        process.wait_exit(Duration::from_secs(15)).await.ok_or_else(|| format!("{} ignored SIGTERM", self.name))
    }

    /// Points the next start at another etcd endpoint (a cuttable proxy).
    pub fn set_etcd_endpoint(&mut self, endpoint: String) {
        self.etcd_endpoint = endpoint;
    }

    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.launch()?;
        self.wait_ready(Duration::from_secs(30)).await
    }

    /// `sdn-node <verb>` (flows, cleanup) for this node; its stdout.
    pub fn command(&self, verb: &str) -> Result<String, HarnessError> {
        let out = self.command_line(verb, &[])?.output().map_err(HarnessError::io(format!("sdn-node {verb}")))?;
        if !out.status.success() {
            return Err(HarnessError::Io {
                what: format!("sdn-node {verb} for {}", self.name),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The command line of `sdn-node <verb> <extra>` for this node, to run or spawn.
    pub fn command_line(&self, verb: &str, extra: &[&str]) -> Result<Command, HarnessError> {
        let mut command = Command::new(bins::project("sdn-node")?);
        command.args(self.args(verb)).args(extra);
        Ok(command)
    }

    /// Attaches a new pod namespace `<node>-<pod>` through the pod API.
    pub async fn attach_pod(&self, pod: &str) -> Result<Pod, HarnessError> {
        let ns = Netns::create(self.dir.clone(), &format!("{}-{pod}", self.name))?;
        let body = format!(r#"{{"id":"{pod}","netns":"{}"}}"#, ns.path().display());
        let (status, text) = unix_http(&self.socket, "POST", "/v1/pods", Some(&body))
            .await
            .map_err(|e| HarnessError::Io { what: format!("attaching {pod}"), source: std::io::Error::other(e) })?;
        let attached: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let ip = attached["ip"].as_str().and_then(|s| s.parse().ok());
        match (status, ip) {
            (200, Some(ip)) => Ok(Pod { id: pod.to_owned(), ip, ns }),
            _ => Err(HarnessError::Io {
                what: format!("attaching {pod} on {}", self.name),
                source: std::io::Error::other(format!("{status}: {text}")),
            }),
        }
    }

    /// The pod API's view of the node's pods.
    pub async fn attachments(&self) -> Vec<serde_json::Value> {
        match unix_http(&self.socket, "GET", "/v1/pods", None).await {
            Ok((200, body)) => serde_json::from_str(&body).unwrap_or_else(|e| panic!("pod list {body}: {e}")),
            other => panic!("listing the pods of {}: {other:?}", self.name),
        }
    }

    /// The host-side pod veths in the node's namespace.
    pub fn pod_veths(&self) -> Vec<String> {
        let out = self.ns.exec(&["ip", "-o", "link", "show", "type", "veth"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
            .filter(|n| n.starts_with("veth"))
            .collect()
    }

    /// Waits up to 10 s for the node to have `count` pod veths (a DEL deletes them right after
    /// it answers; a pod's namespace takes its veth with it a little after its last process).
    pub async fn wait_pod_veths(&self, count: usize) -> Vec<String> {
        let settled = wait::until(Duration::from_secs(10), || async {
            let found = self.pod_veths();
            if found.len() == count { Ok(found) } else { Err(format!("{found:?}")) }
        })
        .await;
        settled.unwrap_or_else(|found| panic!("wanted {count} pod veths on {}, found {found}", self.name))
    }

    pub async fn detach_pod(&self, pod: &Pod) -> Result<(), String> {
        match unix_http(&self.socket, "DELETE", &format!("/v1/pods/{}", pod.id), None).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status}: {body}")),
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        if !self.dir.persistent_processes() {
            self.kill();
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/sdn/{}", self.name));
        }
    }
}

/// A pod: its namespace and address.
pub struct Pod {
    pub id: String,
    pub ip: Ipv4Addr,
    pub ns: Netns,
}

/// A whole cluster: control plane, underlay, nodes and an external host
/// (192.0.2.254) outside the cluster network.
pub struct Cluster {
    pub cp: ControlPlane,
    pub underlay: Underlay,
    pub nodes: Vec<NodeAgent>,
    pub external: Netns,
}

impl Cluster {
    pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

    /// `nodes` nodes named `<tag>-<pid>-n<i>` at 192.0.2.(11+i).
    pub async fn start(tag: &str, nodes: usize) -> Result<Self, HarnessError> {
        let dir = Arc::new(RunDir::new(tag)?);
        Self::start_in(dir, &format!("{tag}-{}", std::process::id()), nodes).await
    }

    /// As [`Cluster::start`], in a run directory of the caller's, with names
    /// `<prefix>-n<i>` (the lab uses a persistent directory).
    pub async fn start_in(dir: Arc<RunDir>, prefix: &str, nodes: usize) -> Result<Self, HarnessError> {
        Self::start_with(dir, prefix, nodes, sdn_cluster::ClusterNetwork::default()).await
    }

    /// As [`Cluster::start`], with a cluster network of the caller's (a small host subnet).
    pub async fn start_with_network(
        tag: &str,
        nodes: usize,
        network: sdn_cluster::ClusterNetwork,
    ) -> Result<Self, HarnessError> {
        let dir = Arc::new(RunDir::new(tag)?);
        Self::start_with(dir, &format!("{tag}-{}", std::process::id()), nodes, network).await
    }

    async fn start_with(
        dir: Arc<RunDir>,
        prefix: &str,
        nodes: usize,
        network: sdn_cluster::ClusterNetwork,
    ) -> Result<Self, HarnessError> {
        let cp = ControlPlane::start_in(dir, prefix, network, 1).await?;
        let underlay = Underlay::new(cp.dir.clone(), &format!("{prefix}-sw"))?;
        let external = Netns::create(cp.dir.clone(), &format!("{prefix}-ext"))?;
        underlay.plug(&external, Self::EXTERNAL_IP)?;
        let mut started = Vec::new();
        for i in 0..nodes {
            let ip = Ipv4Addr::new(192, 0, 2, 11 + i as u8);
            started.push(NodeAgent::start(cp.dir.clone(), &cp, &underlay, &format!("{prefix}-n{i}"), ip).await?);
        }
        Ok(Self { cp, underlay, nodes: started, external })
    }

    /// As [`Cluster::start`], with etcd as in production (see [`ControlPlane::start_secure`]):
    /// each node is authorized by the master (`sdnctl nodes authorize`) before its agent starts
    /// with its own certificate.
    pub async fn start_secure(tag: &str, nodes: usize) -> Result<Self, HarnessError> {
        let dir = Arc::new(RunDir::new(tag)?);
        Self::start_secure_in(dir, &format!("{tag}-{}", std::process::id()), nodes).await
    }

    /// As [`Cluster::start_secure`], in a run directory of the caller's (the lab's), with names
    /// `<prefix>-n<i>`.
    pub async fn start_secure_in(dir: Arc<RunDir>, prefix: &str, nodes: usize) -> Result<Self, HarnessError> {
        let names: Vec<String> = (0..nodes).map(|i| format!("{prefix}-n{i}")).collect();
        let users: Vec<&str> = names.iter().map(String::as_str).collect();
        let network = sdn_cluster::ClusterNetwork::default();
        let cp = ControlPlane::start_secure(dir, prefix, network, 1, &users).await?;
        let underlay = Underlay::new(cp.dir.clone(), &format!("{prefix}-sw"))?;
        let external = Netns::create(cp.dir.clone(), &format!("{prefix}-ext"))?;
        underlay.plug(&external, Self::EXTERNAL_IP)?;
        let mut started = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ip = Ipv4Addr::new(192, 0, 2, 11 + i as u8);
            let authorized = cp.masters[0].sdnctl(&["nodes", "authorize", name, "--ip", &ip.to_string()])?;
            if !authorized.0 {
                return Err(HarnessError::Io {
                    what: format!("sdnctl nodes authorize {name}"),
                    source: std::io::Error::other(format!("{}{}", authorized.1, authorized.2)),
                });
            }
            started.push(NodeAgent::start(cp.dir.clone(), &cp, &underlay, name, ip).await?);
        }
        Ok(Self { cp, underlay, nodes: started, external })
    }

    /// Every agent's and master's log, for failure messages.
    pub fn logs(&self) -> String {
        let nodes: String = self.nodes.iter().map(|n| format!("--- {} ---\n{}", n.name, n.log())).collect();
        format!("{nodes}{}", self.cp.logs())
    }
}

/// Bytes one iperf3 run of `seconds` from `from` to `to_ip` moved (the receiver's count), with
/// the server in `server` (which may be another pod than the one `to_ip` names: a forwarder's).
pub fn iperf3(from: &Pod, to_ip: Ipv4Addr, server: &Pod, seconds: u32) -> u64 {
    let listening = Command::new("ip")
        .args(["netns", "exec", server.ns.name(), "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(listening) = listening else { return 0 };
    std::thread::sleep(Duration::from_millis(300));
    let out = from.ns.exec(&["iperf3", "-c", &to_ip.to_string(), "-t", &seconds.to_string(), "-J"]);
    let _ = listening.wait_with_output();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
}

/// Whether a second of TCP from `from` to `to` moved more than a megabyte.
pub fn tcp_transfer(from: &Pod, to: &Pod) -> bool {
    iperf3(from, to.ip, to, 1) > 1_000_000
}
