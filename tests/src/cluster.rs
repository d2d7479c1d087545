//! A control plane for one test: an etcd, some masters, and a store on the
//! same etcd for registering nodes and checking what the masters wrote.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sdn_cluster::store::Store;
use sdn_cluster::{ClusterNetwork, Node};

use crate::etcd::Etcd;
use crate::master::{Allocations, Master, MasterOptions, store};
use crate::rundir::RunDir;
use crate::{HarnessError, wait};

pub struct ControlPlane {
    pub dir: Arc<RunDir>,
    pub etcd: Etcd,
    pub masters: Vec<Master>,
    pub store: Store,
    pub network: ClusterNetwork,
}

impl ControlPlane {
    /// etcd plus `masters` masters named `<name>-m0`, `<name>-m1`, …
    pub async fn start(name: &str, network: ClusterNetwork, masters: usize) -> Result<Self, HarnessError> {
        Self::start_in(Arc::new(RunDir::new(name)?), name, network, masters).await
    }

    /// As [`ControlPlane::start`], in a run directory of the caller's (the lab's).
    pub async fn start_in(
        dir: Arc<RunDir>,
        name: &str,
        network: ClusterNetwork,
        masters: usize,
    ) -> Result<Self, HarnessError> {
        let etcd = Etcd::start(dir.clone()).await?;
        let mut started = Vec::new();
        for i in 0..masters {
            let mut options = MasterOptions::new(&format!("{name}-m{i}"), &etcd.endpoint());
            options.network = network.clone();
            started.push(Master::start(dir.clone(), options).await?);
        }
        let store = store(&etcd.endpoint(), "/sdn").await;
        Ok(Self { dir, etcd, masters: started, store, network })
    }

    /// As [`ControlPlane::start_in`], with etcd as in production: TLS, client certificates, and
    /// authentication on. The masters are etcd's `root` (they allocate, and create the nodes'
    /// roles); each of `nodes` gets a client certificate whose common name is its name, and
    /// nothing more until the master authorizes it (`sdnctl nodes authorize`).
    pub async fn start_secure(
        dir: Arc<RunDir>,
        name: &str,
        network: ClusterNetwork,
        masters: usize,
        nodes: &[&str],
    ) -> Result<Self, HarnessError> {
        let pki_dir = dir.path().join("pki");
        std::fs::create_dir_all(&pki_dir).map_err(HarnessError::io("creating the PKI directory"))?;
        let users: Vec<&str> = std::iter::once("root").chain(nodes.iter().copied()).collect();
        let pki = crate::pki::Pki::generate_with(&pki_dir, &users)?;
        let mut etcd = Etcd::start_tls(dir.clone(), pki).await?;
        etcd.enable_auth().await?;
        let mut started = Vec::new();
        for i in 0..masters {
            let mut options = MasterOptions::new(&format!("{name}-m{i}"), &etcd.endpoint());
            options.network = network.clone();
            options.extra_args = etcd.tls_flags("root");
            started.push(Master::start(dir.clone(), options).await?);
        }
        let store = Store::open(&etcd.config("/sdn")).await.map_err(|e| HarnessError::Io {
            what: "connecting to etcd as root".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self { dir, etcd, masters: started, store, network })
    }

    /// Options for one more master on this control plane.
    pub fn master_options(&self, name: &str) -> MasterOptions {
        let mut options = MasterOptions::new(name, &self.etcd.endpoint());
        options.network = self.network.clone();
        options.extra_args = self.etcd.tls_flags("root");
        options
    }

    /// Registers a node directly in etcd, as an agent does.
    pub async fn register(&self, name: &str, ip: IpAddr) {
        let node = Node { name: name.into(), ip };
        if let Err(err) = self.store.register_node(&node).await {
            panic!("registering {name}: {err}");
        }
    }

    /// The name of the leading master, from the leader key.
    pub async fn leader(&self) -> Option<String> {
        let mut client = self.store.client();
        let resp = client.get(self.store.keys().leader(), None).await.ok()?;
        resp.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    }

    pub async fn allocations(&self) -> Allocations {
        Allocations::read(&self.store).await
    }

    /// Waits until exactly `count` nodes have subnets.
    pub async fn wait_allocated(&self, count: usize, timeout: Duration) -> Allocations {
        self.wait_allocations(&format!("exactly {count}"), timeout, |a| a.subnets.len() == count).await
    }

    /// Waits until at least `count` nodes have subnets.
    pub async fn wait_allocated_at_least(&self, count: usize, timeout: Duration) -> Allocations {
        self.wait_allocations(&format!("at least {count}"), timeout, |a| a.subnets.len() >= count).await
    }

    /// Waits until the allocations satisfy `done`; `what` describes it for
    /// the failure message.
    pub async fn wait_allocations(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Allocations) -> bool,
    ) -> Allocations {
        let result = wait::until(timeout, || async {
            let a = self.allocations().await;
            if done(&a) { Ok(a) } else { Err(format!("{:?}", a.subnets)) }
        })
        .await;
        match result {
            Ok(a) => a,
            Err(err) => panic!("waiting for {what} allocations: {err}\n{}", self.logs()),
        }
    }

    /// etcd's current revision.
    pub async fn revision(&self) -> i64 {
        let mut client = self.store.client();
        match client.get("/", None).await.map(|r| r.header().map(|h| h.revision())) {
            Ok(Some(revision)) => revision,
            other => panic!("reading etcd's revision: {other:?}"),
        }
    }

    /// Every master's log, for failure messages.
    pub fn logs(&self) -> String {
        self.masters.iter().map(|m| format!("--- {} ---\n{}", m.name(), m.log())).collect()
    }
}
