//! The local pod API on a unix socket only root can use (mode 0600 in a
//! 0700 directory): `POST /v1/pods`, `DELETE /v1/pods/{id}`, `GET /v1/pods`.
//! `sdn-cni` is its client.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::ipam::IpamError;
use crate::pods::{AttachRequest, PodError, Pods};

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    /// `invalid` (fix the request), `exhausted` (no address left) or
    /// `internal` (the node could not do it).
    code: &'static str,
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (status, Json(ErrorBody { error: message, code })).into_response()
}

impl IntoResponse for PodError {
    fn into_response(self) -> Response {
        match &self {
            PodError::BadId(_) | PodError::BadIfname(_) | PodError::Netns { .. } => {
                error(StatusCode::BAD_REQUEST, "invalid", self.to_string())
            }
            PodError::Ipam(IpamError::Exhausted(_)) => error(StatusCode::CONFLICT, "exhausted", self.to_string()),
            _ => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", self.to_string()),
        }
    }
}

async fn attach(State(pods): State<Arc<Pods>>, body: Bytes) -> Response {
    let request: AttachRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, "invalid", format!("invalid request body: {err}")),
    };
    match pods.attach(request).await {
        Ok(attachment) => Json(attachment).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn detach(State(pods): State<Arc<Pods>>, UrlPath(id): UrlPath<String>) -> Response {
    match pods.detach(&id).await {
        Ok(released) => Json(serde_json::json!({ "id": id, "released": released })).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn list(State(pods): State<Arc<Pods>>) -> Response {
    match pods.list() {
        Ok(records) => {
            Json(records.into_iter().map(|(ip, id)| serde_json::json!({ "id": id, "ip": ip })).collect::<Vec<_>>())
                .into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// Binds the pod API's socket, readable and writable by root alone.
pub fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // A socket left by a killed agent would make bind fail.
    match std::fs::remove_file(socket) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!("pod API on {}", socket.display());
    Ok(listener)
}

/// Serves the pod API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: UnixListener,
    pods: Arc<Pods>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app =
        Router::new().route("/v1/pods", get(list).post(attach)).route("/v1/pods/{id}", delete(detach)).with_state(pods);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
