//! Connecting to etcd: endpoints, optional TLS client certificates, and a
//! connect loop that waits out an unreachable cluster with backoff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::Deserialize;

use crate::keys::DEFAULT_PREFIX;

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub tls: Option<EtcdTls>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self { endpoints: vec!["http://127.0.0.1:2379".into()], prefix: DEFAULT_PREFIX.into(), tls: None }
    }
}

/// TLS towards etcd: the CA that signed the servers, and optionally a client
/// certificate and key when etcd asks for client authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The etcd flags both daemons take; each overrides the same key of a
/// config file's `[etcd]` section ([`EtcdFile`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated [default: http://127.0.0.1:2379].
    #[arg(long = "etcd-endpoints", value_delimiter = ',', value_name = "URLS", env = "SDN_ETCD_ENDPOINTS")]
    pub endpoints: Option<Vec<String>>,
    /// Key prefix of everything sdn stores [default: /sdn].
    #[arg(long = "etcd-prefix", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// CA certificate that signed etcd's server certificates (https:// endpoints).
    #[arg(long = "etcd-ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key-file).
    #[arg(long = "etcd-cert-file", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Client key for etcd (with --etcd-cert-file).
    #[arg(long = "etcd-key-file", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

/// The `[etcd]` section of a config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EtcdFile {
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// An etcd setting that cannot work, named as in the config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EtcdConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl EtcdArgs {
    /// Flags over file over defaults, validated.
    pub fn resolve(self, file: EtcdFile) -> Result<EtcdConfig, EtcdConfigError> {
        let invalid = |field, reason: String| Err(EtcdConfigError { field, reason });
        let defaults = EtcdConfig::default();
        let endpoints = self.endpoints.or(file.endpoints).unwrap_or(defaults.endpoints);
        if endpoints.is_empty() {
            return invalid("etcd.endpoints", "at least one endpoint is needed".into());
        }
        if let Some(bad) = endpoints.iter().find(|e| !(e.starts_with("http://") || e.starts_with("https://"))) {
            return invalid("etcd.endpoints", format!("{bad:?} must start with http:// or https://"));
        }
        let prefix = self.prefix.or(file.prefix).unwrap_or(defaults.prefix);
        if !prefix.starts_with('/') || prefix.trim_end_matches('/').is_empty() {
            return invalid("etcd.prefix", format!("{prefix:?} must start with '/' and name a directory"));
        }
        let client = match (self.cert_file.or(file.cert_file), self.key_file.or(file.key_file)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return invalid("etcd.key-file", "needed with etcd.cert-file".into()),
            (None, Some(_)) => return invalid("etcd.cert-file", "needed with etcd.key-file".into()),
        };
        let tls = match (self.ca_file.or(file.ca_file), client) {
            (Some(ca_file), client) => Some(EtcdTls { ca_file, client }),
            (None, None) => None,
            (None, Some(_)) => {
                return invalid(
                    "etcd.ca-file",
                    "needed with a client certificate, to check etcd's server certificate".into(),
                );
            }
        };
        let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
        if (tls.is_some() && https != endpoints.len()) || (tls.is_none() && https > 0) {
            return invalid(
                "etcd.endpoints",
                "use https:// endpoints exactly when etcd.ca-file is given (and only those)".into(),
            );
        }
        Ok(EtcdConfig { endpoints, prefix, tls })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: no endpoints configured")]
    NoEndpoints,
    #[error("etcd: reading {what} {path}: {source}")]
    TlsFile { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("etcd at {endpoints}: {}", concise(source))]
    Client { endpoints: String, source: etcd_client::Error },
}

/// An etcd client error as one short line: the gRPC message and the root
/// cause ("tcp connect error: Connection refused"), without tonic's nesting.
pub fn concise(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
            let mut root = None;
            while let Some(c) = cause {
                root = Some(c);
                cause = c.source();
            }
            match root {
                Some(root) => format!("{}: {root}", status.message()),
                None => format!("{}: {}", status.code(), status.message()),
            }
        }
        other => other.to_string(),
    }
}

/// Whether a call failed before its request left: the connection to the endpoint it was given
/// could not be made (a member that is down). Sending it again cannot apply it twice.
pub fn never_sent(err: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = err else { return false };
    // tonic gives a failed connect as "unavailable: tcp connect error", its cause the refusal.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = c.source();
    }
    status.message().starts_with("tcp connect error")
}

/// Backoff between retries of an etcd call: doubles from 200 ms to 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(10);

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile { what, path: path.to_owned(), source })
}

impl EtcdConfig {
    pub fn endpoints_display(&self) -> String {
        self.endpoints.join(",")
    }

    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        // HTTP/2 keepalives notice a dead server, so watches break and
        // resume instead of hanging on a half-open connection. etcd answers
        // pings more often than every 5 s (--grpc-keepalive-min-time) with a
        // GOAWAY, hence 10 s. Requiring a leader makes a member cut off from
        // its cluster fail calls and watches instead of serving stale data.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &self.tls {
            let mut tls_options =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read("CA certificate", &tls.ca_file)?));
            if let Some((cert, key)) = &tls.client {
                tls_options = tls_options
                    .identity(Identity::from_pem(read("client certificate", cert)?, read("client key", key)?));
            }
            options = options.with_tls(tls_options);
        }
        Ok(options)
    }

    /// A client that connects on first use; fails only on configuration.
    pub async fn client(&self) -> Result<Client, EtcdError> {
        if self.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        Client::connect(&self.endpoints, Some(self.options()?))
            .await
            .map_err(|source| EtcdError::Client { endpoints: self.endpoints_display(), source })
    }

    /// Connects and proves the connection with one read.
    pub async fn connect(&self) -> Result<Client, EtcdError> {
        let mut client = self.client().await?;
        client.status().await.map_err(|source| EtcdError::Client { endpoints: self.endpoints_display(), source })?;
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_settings_are_named() {
        let file = EtcdFile { endpoints: Some(vec!["http://192.0.2.1:2379".into()]), ..Default::default() };
        let args = EtcdArgs { prefix: Some("/other".into()), ..Default::default() };
        let config = args.resolve(file).expect("valid");
        assert_eq!(config.endpoints, ["http://192.0.2.1:2379"]);
        assert_eq!(config.prefix, "/other");
        let cases = [
            (EtcdArgs { endpoints: Some(vec!["127.0.0.1:2379".into()]), ..Default::default() }, "etcd.endpoints"),
            (EtcdArgs { endpoints: Some(vec![]), ..Default::default() }, "etcd.endpoints"),
            (EtcdArgs { prefix: Some("//".into()), ..Default::default() }, "etcd.prefix"),
            (EtcdArgs { cert_file: Some("/c".into()), ..Default::default() }, "etcd.key-file"),
            (EtcdArgs { key_file: Some("/k".into()), ..Default::default() }, "etcd.cert-file"),
            (
                EtcdArgs { cert_file: Some("/c".into()), key_file: Some("/k".into()), ..Default::default() },
                "etcd.ca-file",
            ),
            (
                EtcdArgs { endpoints: Some(vec!["https://127.0.0.1:2379".into()]), ..Default::default() },
                "etcd.endpoints",
            ),
            (EtcdArgs { ca_file: Some("/ca".into()), ..Default::default() }, "etcd.endpoints"),
        ];
        for (args, field) in cases {
            assert_eq!(args.resolve(EtcdFile::default()).expect_err(field).field, field);
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 200);
    }

    #[tokio::test]
    async fn missing_tls_file_is_named() {
        let config = EtcdConfig {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            tls: Some(EtcdTls { ca_file: "/nonexistent/ca.pem".into(), client: None }),
            ..Default::default()
        };
        let Err(err) = config.client().await else { panic!("client must fail") };
        assert!(err.to_string().contains("CA certificate /nonexistent/ca.pem"), "{err}");
    }
}
