//! The sdn test harness: real etcd servers, real `sdn-master` processes,
//! a TCP proxy to cut their connection to etcd, and helpers to wait for the
//! cluster to reach a state. The integration tests, the benchmarks and the
//! local lab are all built on it.
//!
//! Every process the harness starts dies with the test that started it
//! (`PR_SET_PDEATHSIG`), and every run first removes what an interrupted
//! earlier run left behind ([`rundir`]).

pub mod backend;
pub mod bins;
pub mod cluster;
pub mod cni;
pub mod containerd;
pub mod cpu;
pub mod dns;
pub mod etcd;
pub mod etcd_cluster;
pub mod forge;
pub mod image;
pub mod master;
pub mod netns;
pub mod node;
pub mod pki;
pub mod podman;
pub mod process;
pub mod proxy;
pub mod rundir;
pub mod wait;

/// Why the harness could not set something up.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{name} not found at {path}: build the binaries first (`cargo build --bins`; `make test` does)")]
    MissingBinary { name: &'static str, path: std::path::PathBuf },
    #[error("{what} is not installed: {hint}")]
    MissingTool { what: &'static str, hint: &'static str },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what} did not become ready within {seconds} s; its log:\n{log}")]
    NotReady { what: String, seconds: u64, log: String },
}

impl HarnessError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| HarnessError::Io { what, source }
    }
}

/// A free TCP port on loopback. Another process may take it before it is
/// used; tests live with that small window.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("binding a free port"))?;
    Ok(listener.local_addr().map_err(HarnessError::io("reading the free port"))?.port())
}
