//! The HTTP side of `sdnctl`.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::types::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("no token: pass --token-file (or set SDN_TOKEN_FILE) or --token (or set SDN_TOKEN)")]
    NoToken,
    #[error("{0}")]
    Invalid(String),
    #[error("token file {path}: {source}")]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("--server {server:?}: {reason}")]
    Server { server: String, reason: String },
    #[error("cannot reach the master at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The API refused the request; its message says why.
    #[error("{message} ({status})")]
    Api { status: StatusCode, message: String },
    #[error("unexpected answer from {server}: {reason}")]
    Protocol { server: String, reason: String },
}

pub struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
}

/// The innermost cause of an error, which is the one a person can act on
/// ("connection refused"), not reqwest's outer "error sending request".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl Client {
    pub fn new(server: &str, token: String, ca_file: Option<&Path>) -> Result<Self, CtlError> {
        let url = reqwest::Url::parse(server)
            .map_err(|e| CtlError::Server { server: server.into(), reason: e.to_string() })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CtlError::Server {
                server: server.into(),
                reason: "must be an http:// or https:// URL".into(),
            });
        }
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(path) = ca_file {
            let ca_error = |reason: String| CtlError::CaFile { path: path.to_owned(), reason };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| CtlError::Server { server: server.into(), reason: root_cause(&e) })?;
        Ok(Self { http, server: server.trim_end_matches('/').to_owned(), token })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, CtlError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CtlError::Unreachable { server: self.server.clone(), reason: root_cause(&e) })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => body.error,
            // Not the API's error body (a proxy in between?): one line of it.
            Err(_) => {
                let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let line: String = line.chars().take(200).collect();
                if line.is_empty() { "no error message".into() } else { line }
            }
        };
        Err(CtlError::Api { status, message })
    }

    async fn json<T: DeserializeOwned>(&self, response: reqwest::Response) -> Result<T, CtlError> {
        response.json().await.map_err(|e| CtlError::Protocol { server: self.server.clone(), reason: root_cause(&e) })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CtlError> {
        let response = self.send(self.http.get(format!("{}{path}", self.server))).await?;
        self.json(response).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, CtlError> {
        let response = self.send(self.http.post(format!("{}{path}", self.server)).json(body)).await?;
        self.json(response).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, CtlError> {
        let response = self.send(self.http.put(format!("{}{path}", self.server)).json(body)).await?;
        self.json(response).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), CtlError> {
        self.send(self.http.delete(format!("{}{path}", self.server))).await.map(drop)
    }
}
