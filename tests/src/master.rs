//! `sdn-master` processes for tests, and reading the cluster state back from
//! etcd to check it.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use sdn_cluster::etcd::EtcdConfig;
use sdn_cluster::store::{Store, decode};
use sdn_cluster::{ClusterNetwork, HostSubnet, Keys};
use sdn_master::ctl::Client;

use crate::process::Process;
use crate::rundir::RunDir;
use crate::{HarnessError, bins, free_port};

/// The token every test master accepts.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// How a test master is started.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    pub name: String,
    pub etcd_endpoint: String,
    pub prefix: String,
    pub network: ClusterNetwork,
    pub lease_ttl_secs: u64,
    /// The admin API's bearer token.
    pub token: String,
    pub extra_args: Vec<String>,
}

impl MasterOptions {
    pub fn new(name: &str, etcd_endpoint: &str) -> Self {
        Self {
            name: name.into(),
            etcd_endpoint: etcd_endpoint.into(),
            prefix: "/sdn".into(),
            network: ClusterNetwork::default(),
            lease_ttl_secs: 3,
            token: TOKEN.into(),
            extra_args: Vec::new(),
        }
    }
}

pub struct Master {
    process: Process,
    options: MasterOptions,
    port: u16,
    dir: Arc<RunDir>,
}

impl Master {
    /// Starts a master and waits until its `/readyz` answers 200.
    pub async fn start(dir: Arc<RunDir>, options: MasterOptions) -> Result<Self, HarnessError> {
        let master = Self::spawn(dir, options)?;
        master.wait_ready(Duration::from_secs(20)).await?;
        Ok(master)
    }

    /// Starts a master without waiting for it.
    pub fn spawn(dir: Arc<RunDir>, options: MasterOptions) -> Result<Self, HarnessError> {
        let port = free_port()?;
        let process = Self::launch(&dir, &options, port)?;
        Ok(Self { process, options, port, dir })
    }

    fn launch(dir: &RunDir, options: &MasterOptions, port: u16) -> Result<Process, HarnessError> {
        let token_file = dir.path().join("token");
        write_private(&token_file, &options.token)?;
        let n = &options.network;
        let mut command = Command::new(bins::project("sdn-master")?);
        command
            .env("RUST_LOG", "info")
            .arg(format!("--name={}", options.name))
            .arg(format!("--etcd-endpoints={}", options.etcd_endpoint))
            .arg(format!("--etcd-prefix={}", options.prefix))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--token-file={}", token_file.display()))
            .arg(format!("--lease-ttl={}", options.lease_ttl_secs))
            .arg(format!("--cluster-network={}", n.network))
            .arg(format!("--host-subnet-length={}", n.host_subnet_length))
            .arg(format!("--service-network={}", n.service_network))
            .arg(format!("--vxlan-port={}", n.vxlan_port))
            .args(n.mtu.map(|m| format!("--mtu={m}")))
            .arg(format!("--direct-routing={}", n.direct_routing))
            .args(&options.extra_args);
        Process::spawn(&options.name, command, dir)
    }

    /// Restarts the master configured with `network`, which it stores in etcd on start (as an
    /// operator changes a setting such as the MTU or direct routing).
    pub async fn reconfigure(&mut self, network: ClusterNetwork) -> Result<(), HarnessError> {
        self.options.network = network;
        self.restart().await
    }

    /// Kills the master with SIGKILL and starts it again with the same options.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.kill();
        self.process = Self::launch(&self.dir, &self.options, self.port)?;
        self.wait_ready(Duration::from_secs(20)).await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// An API client with the right token.
    /// `sdnctl <args>` against this master with its token: success, stdout, stderr.
    pub fn sdnctl(&self, args: &[&str]) -> Result<(bool, String, String), HarnessError> {
        let out = std::process::Command::new(crate::bins::project("sdnctl")?)
            .env("SDN_SERVER", self.url())
            .env("SDN_TOKEN", &self.options.token)
            .env_remove("SDN_TOKEN_FILE")
            .args(args)
            .output()
            .map_err(HarnessError::io("running sdnctl"))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok((out.status.success(), text(&out.stdout), text(&out.stderr)))
    }

    pub fn client(&self) -> Client {
        self.client_with_token(&self.options.token)
    }

    pub fn client_with_token(&self, token: &str) -> Client {
        match Client::new(&self.url(), token.into(), None) {
            Ok(client) => client,
            Err(err) => panic!("building an API client for {}: {err}", self.url()),
        }
    }

    /// Status and body of an unauthenticated GET (for the probes).
    pub async fn probe(&self, path: &str) -> Result<(u16, String), String> {
        let resp = reqwest::get(format!("{}{path}", self.url())).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    }

    /// Waits until `/readyz` answers 503, as it does while etcd is unreachable.
    pub async fn wait_unready(&self, timeout: Duration) -> Result<String, String> {
        crate::wait::until(timeout, || async {
            match self.probe("/readyz").await? {
                (503, body) => Ok(body),
                (status, body) => Err(format!("{status} {body}")),
            }
        })
        .await
    }

    /// The master's metrics, in Prometheus text format.
    pub async fn metrics(&self) -> Result<String, String> {
        let resp = reqwest::Client::new()
            .get(format!("{}/metrics", self.url()))
            .bearer_auth(&self.options.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.text().await.map_err(|e| e.to_string())
    }

    /// Waits until this master reports that it leads.
    pub async fn wait_leading(&self, timeout: Duration) -> Result<(), String> {
        crate::wait::until(timeout, || async {
            let metrics = self.metrics().await?;
            if metrics.lines().any(|l| l == "sdn_master_leader 1") { Ok(()) } else { Err("not leading".into()) }
        })
        .await
    }

    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let ready = crate::wait::until(timeout, || async {
            match self.probe("/readyz").await? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            }
        })
        .await;
        ready.map_err(|_| HarnessError::NotReady {
            what: format!("master {}", self.options.name),
            seconds: timeout.as_secs(),
            log: self.log(),
        })
    }
}

/// Writes a file only its owner can read, as a token file should be.
fn write_private(path: &std::path::Path, content: &str) -> Result<(), HarnessError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(HarnessError::io(format!("writing {}", path.display())))?;
    file.write_all(content.as_bytes()).map_err(HarnessError::io(format!("writing {}", path.display())))
}

/// A store on the test's etcd, for writing and checking state directly.
pub async fn store(etcd_endpoint: &str, prefix: &str) -> Store {
    let config = EtcdConfig { endpoints: vec![etcd_endpoint.into()], prefix: prefix.into(), tls: None };
    match Store::open(&config).await {
        Ok(store) => store,
        Err(err) => panic!("connecting to the test etcd: {err}"),
    }
}

/// Every allocation as etcd holds it: node → subnet, and subnet claim → node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Allocations {
    pub subnets: BTreeMap<String, Ipv4Network>,
    pub claims: BTreeMap<String, String>,
}

impl Allocations {
    /// Reads subnets and claims in one transaction, so both are of one
    /// revision even while the master is writing.
    pub async fn read(store: &Store) -> Self {
        Self::try_read(store).await.unwrap_or_else(|err| panic!("{err}"))
    }

    /// As [`Allocations::read`], failing with etcd's error (a member may be down).
    pub async fn try_read(store: &Store) -> Result<Self, String> {
        let keys: &Keys = store.keys();
        let prefix = || Some(etcd_client::GetOptions::new().with_prefix());
        let txn = etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::get(keys.subnets(), prefix()),
            etcd_client::TxnOp::get(keys.subnet_claims(), prefix()),
        ]);
        let resp = store.txn(txn).await.map_err(|err| format!("reading allocations: {err}"))?;
        let responses = resp.op_responses();
        let kvs = |i: usize| match responses.get(i) {
            Some(etcd_client::TxnOpResponse::Get(get)) => get.kvs().to_vec(),
            other => panic!("unexpected txn response {other:?}"),
        };
        let subnets = kvs(0)
            .iter()
            .map(|kv| {
                let record: HostSubnet = decode_record(&String::from_utf8_lossy(kv.key()), kv.value());
                (record.host, record.subnet)
            })
            .collect();
        let claims_dir = keys.subnet_claims();
        let claims = kvs(1)
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                (key.trim_start_matches(&claims_dir).to_owned(), String::from_utf8_lossy(kv.value()).into_owned())
            })
            .collect();
        Ok(Self { subnets, claims })
    }

    /// Panics unless every allocation is distinct, inside `network`, and
    /// matched one to one by a claim.
    pub fn assert_consistent(&self, network: &ClusterNetwork) {
        let mut seen = BTreeMap::new();
        for (node, subnet) in &self.subnets {
            assert!(network.subnet_index(*subnet).is_some(), "{node} got {subnet}, not a host subnet of {network}");
            if let Some(other) = seen.insert(*subnet, node) {
                panic!("{subnet} allocated to both {other} and {node}");
            }
            let claim = format!("{}-{}", subnet.ip(), subnet.prefix());
            assert_eq!(self.claims.get(&claim), Some(node), "claim of {subnet} should name {node}");
        }
        assert_eq!(self.claims.len(), self.subnets.len(), "claims without subnets: {:?}", self.claims);
    }
}

/// Decodes one record from etcd, panicking with the key on failure.
pub fn decode_record<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> T {
    match decode(key, value) {
        Ok(v) => v,
        Err(err) => panic!("{err}"),
    }
}
