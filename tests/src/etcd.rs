//! A real etcd server for one test, on free loopback ports and a data
//! directory of its own. It can be stopped and started again on the same
//! data, to test restarts and disconnects.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use etcd_client::Client;
use sdn_cluster::etcd::{EtcdConfig, EtcdTls};

use crate::pki::Pki;
use crate::process::Process;
use crate::rundir::RunDir;
use crate::{HarnessError, bins, free_port};

pub struct Etcd {
    process: Option<Process>,
    binary: PathBuf,
    data: PathBuf,
    client_port: u16,
    peer_port: u16,
    dir: std::sync::Arc<RunDir>,
    /// Serve clients over TLS and require client certificates.
    tls: Option<Pki>,
    /// Authentication is on: clients are the users their certificates name.
    auth: bool,
}

impl Etcd {
    pub async fn start(dir: std::sync::Arc<RunDir>) -> Result<Self, HarnessError> {
        Self::start_with(dir, None).await
    }

    /// etcd over TLS with client-certificate authentication.
    pub async fn start_tls(dir: std::sync::Arc<RunDir>, pki: Pki) -> Result<Self, HarnessError> {
        Self::start_with(dir, Some(pki)).await
    }

    async fn start_with(dir: std::sync::Arc<RunDir>, tls: Option<Pki>) -> Result<Self, HarnessError> {
        let binary = bins::tool("etcd", "install Debian's etcd-server (scripts/setup.sh does)")?;
        let mut etcd = Self {
            process: None,
            binary,
            data: dir.path().join("etcd-data"),
            client_port: free_port()?,
            peer_port: free_port()?,
            dir,
            tls,
            auth: false,
        };
        etcd.resume().await?;
        Ok(etcd)
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// How a client reaches this etcd, certificates included: as `root` once [`Etcd::enable_auth`]
    /// ran, else with the plain client certificate.
    pub fn config(&self, prefix: &str) -> EtcdConfig {
        self.config_as(prefix, if self.auth { "root" } else { "" })
    }

    /// As [`Etcd::config`], with the client certificate of etcd user `user` (its common name).
    pub fn config_as(&self, prefix: &str, user: &str) -> EtcdConfig {
        let tls = self.tls.as_ref().map(|pki| EtcdTls {
            ca_file: pki.ca.clone(),
            client: Some(pki.user(user).unwrap_or_else(|| (pki.client_cert.clone(), pki.client_key.clone()))),
        });
        EtcdConfig { endpoints: vec![self.endpoint()], prefix: prefix.into(), tls }
    }

    /// The CA, certificate and key files of user `user`, as `--etcd-*-file` flags.
    pub fn tls_flags(&self, user: &str) -> Vec<String> {
        let Some(EtcdTls { ca_file, client }) = self.config_as("/", user).tls else { return Vec::new() };
        let mut flags = vec![format!("--etcd-ca-file={}", ca_file.display())];
        if let Some((cert, key)) = client {
            flags.push(format!("--etcd-cert-file={}", cert.display()));
            flags.push(format!("--etcd-key-file={}", key.display()));
        }
        flags
    }

    /// Turns etcd's authentication on, as an admin does before the first master starts:
    /// user `root` (no password: its certificate's common name says who it is) with the `root`
    /// role. Needs TLS with a `root` client certificate ([`Pki::generate_with`]).
    pub async fn enable_auth(&mut self) -> Result<(), HarnessError> {
        let client = self.config_as("/", "root").connect().await.map_err(|e| HarnessError::Io {
            what: "connecting to etcd as root".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut auth = client.auth_client();
        let failed = |what: &str| {
            let what = what.to_owned();
            move |e: etcd_client::Error| HarnessError::Io { what, source: std::io::Error::other(e.to_string()) }
        };
        auth.user_add("root", "", Some(etcd_client::UserAddOptions::new().with_no_pwd()))
            .await
            .map_err(failed("adding etcd user root"))?;
        auth.user_grant_role("root", "root").await.map_err(failed("granting root the root role"))?;
        auth.auth_enable().await.map_err(failed("enabling etcd auth"))?;
        self.auth = true;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// Kills etcd (SIGKILL: no clean shutdown). The data stays.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts etcd again on the same data and ports.
    pub async fn resume(&mut self) -> Result<(), HarnessError> {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(&self.binary);
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data.display()))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=warn");
        if let Some(pki) = &self.tls {
            command
                .arg(format!("--cert-file={}", pki.server_cert.display()))
                .arg(format!("--key-file={}", pki.server_key.display()))
                .arg(format!("--trusted-ca-file={}", pki.ca.display()))
                .arg("--client-cert-auth");
        }
        let process = Process::spawn("etcd", command, &self.dir)?;
        let config = self.config("/");
        let ready = crate::wait::until(Duration::from_secs(15), || async {
            config.connect().await.map(drop).map_err(|e| e.to_string())
        })
        .await;
        if ready.is_err() {
            return Err(HarnessError::NotReady { what: "etcd".into(), seconds: 15, log: process.log() });
        }
        self.process = Some(process);
        Ok(())
    }

    pub async fn client(&self) -> Result<Client, HarnessError> {
        self.config("/").connect().await.map_err(|e| HarnessError::Io {
            what: format!("connecting to etcd at {}", self.endpoint()),
            source: std::io::Error::other(e.to_string()),
        })
    }
}
