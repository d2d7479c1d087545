//! A client of the pod API: one HTTP/1.1 request per connection on the
//! unix socket, which is all a CNI plugin invocation needs.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::{ApiError, AttachRequest, Attachment, Detached, GcRequest, GcResponse, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent is not there (not started, restarting, or the socket is wrong).
    #[error("the sdn-node agent is not reachable on {socket}: {reason}")]
    Unreachable { socket: PathBuf, reason: String },
    /// The agent refused or failed the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The agent answered something this client does not understand (a version mismatch).
    #[error("unexpected answer from the sdn-node agent ({status}): {detail}")]
    Protocol { status: StatusCode, detail: String },
}

/// The pod API of the agent listening on `socket`.
#[derive(Debug, Clone)]
pub struct PodClient {
    socket: PathBuf,
}

impl PodClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn unreachable(&self, reason: impl ToString) -> ClientError {
        ClientError::Unreachable { socket: self.socket.clone(), reason: reason.to_string() }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| self.unreachable(e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| self.unreachable(e))?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "sdn-node")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol { status: StatusCode::BAD_REQUEST, detail: e.to_string() })?;
        let response = sender.send_request(request).await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| self.unreachable(e))?.to_bytes();
        driver.abort();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
                status,
                detail: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(error) => Err(ClientError::Api(error)),
            Err(_) => Err(ClientError::Protocol { status, detail: String::from_utf8_lossy(&bytes).into_owned() }),
        }
    }

    fn encode(body: &impl Serialize) -> Option<Vec<u8>> {
        // Serializing these plain structs cannot fail.
        serde_json::to_vec(body).ok()
    }

    fn key_path(id: &str, ifname: &str, suffix: &str) -> Result<String, ClientError> {
        // Percent-encoding is not needed: anything outside this set is refused here.
        if !super::name_chars(id) || !super::name_chars(ifname) {
            return Err(ClientError::Api(ApiError {
                error: format!("id {id:?} and ifname {ifname:?} may only hold letters, digits, '-', '_' and '.'"),
                code: super::ErrorKind::Invalid,
            }));
        }
        Ok(format!("/v1/pods/{id}{suffix}?ifname={ifname}"))
    }

    pub async fn attach(&self, request: &AttachRequest) -> Result<Attachment, ClientError> {
        self.call(Method::POST, "/v1/pods", Self::encode(request)).await
    }

    pub async fn detach(&self, id: &str, ifname: &str) -> Result<Detached, ClientError> {
        self.call(Method::DELETE, &Self::key_path(id, ifname, "")?, None).await
    }

    pub async fn check(&self, id: &str, ifname: &str) -> Result<Attachment, ClientError> {
        self.call(Method::GET, &Self::key_path(id, ifname, "/check")?, None).await
    }

    pub async fn list(&self) -> Result<Vec<Attachment>, ClientError> {
        self.call(Method::GET, "/v1/pods", None).await
    }

    pub async fn gc(&self, request: &GcRequest) -> Result<GcResponse, ClientError> {
        self.call(Method::POST, "/v1/gc", Self::encode(request)).await
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/v1/status", None).await
    }
}
