//! A real etcd server for one test, on free loopback ports and a data
//! directory of its own. It can be stopped and started again on the same
//! data, to test restarts and disconnects.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use etcd_client::Client;

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
}

impl Etcd {
    pub async fn start(dir: std::sync::Arc<RunDir>) -> Result<Self, HarnessError> {
        let binary = bins::tool("etcd", "install Debian's etcd-server (scripts/setup.sh does)")?;
        let mut etcd = Self {
            process: None,
            binary,
            data: dir.path().join("etcd-data"),
            client_port: free_port()?,
            peer_port: free_port()?,
            dir,
        };
        etcd.resume().await?;
        Ok(etcd)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
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
        let process = Process::spawn("etcd", command, &self.dir)?;
        let endpoint = self.endpoint();
        let ready = crate::wait::until(Duration::from_secs(15), || {
            let endpoint = endpoint.clone();
            async move {
                let mut client = Client::connect([endpoint], None).await.map_err(|e| e.to_string())?;
                client.status().await.map(drop).map_err(|e| e.to_string())
            }
        })
        .await;
        if ready.is_err() {
            return Err(HarnessError::NotReady { what: "etcd".into(), seconds: 15, log: process.log() });
        }
        self.process = Some(process);
        Ok(())
    }

    pub async fn client(&self) -> Result<Client, HarnessError> {
        Client::connect([self.endpoint()], None).await.map_err(|e| HarnessError::Io {
            what: format!("connecting to etcd at {}", self.endpoint()),
            source: std::io::Error::other(e.to_string()),
        })
    }
}
