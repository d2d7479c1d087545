//! The agent's side of the pod API, on a unix socket only root can use
//! (mode 0600 in a 0700 directory).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::{ApiError, AttachRequest, AttachmentKey, ErrorKind, GcRequest, GcResponse, Status};
use crate::ipam::IpamError;
use crate::pods::{PodError, Pods};

fn error(code: ErrorKind, message: String) -> Response {
    let status = match code {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Exhausted | ErrorKind::Differs => StatusCode::CONFLICT,
        ErrorKind::Unknown => StatusCode::NOT_FOUND,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(ApiError { error: message, code })).into_response()
}

impl IntoResponse for PodError {
    fn into_response(self) -> Response {
        let kind = match &self {
            PodError::BadId(_) | PodError::BadIfname(_) | PodError::Netns { .. } => ErrorKind::Invalid,
            PodError::Ipam(IpamError::Exhausted(_)) => ErrorKind::Exhausted,
            PodError::Unknown { .. } => ErrorKind::Unknown,
            PodError::Differs { .. } | PodError::VethTaken { .. } => ErrorKind::Differs,
            _ => ErrorKind::Internal,
        };
        if kind == ErrorKind::Internal {
            tracing::error!("pod API: {self}");
        }
        error(kind, self.to_string())
    }
}

fn respond<T: serde::Serialize>(result: Result<T, PodError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(err) => err.into_response(),
    }
}

/// A JSON body, or what is wrong with it.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("invalid request body: {e}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ifname {
    #[serde(default = "super::default_ifname")]
    ifname: String,
}

/// Runs a request that changes the node to its end in a task of its own: a client that hangs
/// up (a runtime's timeout) drops the handler, and must not leave a pod half-made.
async fn to_the_end<T: Send + 'static>(
    work: impl Future<Output = Result<T, PodError>> + Send + 'static,
) -> Result<T, PodError> {
    tokio::spawn(work).await.unwrap_or_else(|err| Err(PodError::Interrupted(err.to_string())))
}

async fn attach(State(pods): State<Arc<Pods>>, bytes: Bytes) -> Response {
    match body::<AttachRequest>(&bytes) {
        Ok(request) => respond(to_the_end(async move { pods.attach(request).await }).await),
        Err(message) => error(ErrorKind::Invalid, message),
    }
}

async fn detach(State(pods): State<Arc<Pods>>, UrlPath(id): UrlPath<String>, Query(q): Query<Ifname>) -> Response {
    respond(to_the_end(async move { pods.detach(&AttachmentKey { id, ifname: q.ifname }).await }).await)
}

async fn check(State(pods): State<Arc<Pods>>, UrlPath(id): UrlPath<String>, Query(q): Query<Ifname>) -> Response {
    respond(pods.check(&AttachmentKey { id, ifname: q.ifname }).await)
}

async fn list(State(pods): State<Arc<Pods>>) -> Response {
    respond(pods.list().await)
}

async fn gc(State(pods): State<Arc<Pods>>, bytes: Bytes) -> Response {
    match body::<GcRequest>(&bytes) {
        Ok(request) => {
            let released = to_the_end(async move { pods.gc(&request.network, &request.valid).await }).await;
            respond(released.map(|released| GcResponse { released }))
        }
        Err(message) => error(ErrorKind::Invalid, message),
    }
}

/// Ready when the flow maps answer: the socket is only served once the node is built.
async fn status(State(pods): State<Arc<Pods>>) -> Response {
    Json(match pods.ready() {
        Ok(()) => Status { ready: true, reason: None },
        Err(err) => Status { ready: false, reason: Some(format!("the flow maps do not answer: {err}")) },
    })
    .into_response()
}

/// Binds the pod API's socket, readable and writable by root alone from the moment it can be
/// reached. A missing directory is made, mode 0700, and is the API's; an existing one is left as
/// it is (`--socket /run/sdn.sock` must not take `/run` from everyone else). The socket is bound
/// in a private directory of its own, made 0600 there, and renamed into place, so no umask and no
/// moment between `bind` and `chmod` lets anyone else connect.
pub fn bind(socket: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return Err(err),
            _ => {}
        }
    }
    let private = dir.join(format!(".sdn-bind-{}", std::process::id()));
    // Left by an agent of the same pid that died binding: its contents are a socket at most.
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let bound = (|| -> std::io::Result<std::os::unix::net::UnixListener> {
        let staged = private.join("socket");
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        // Replaces a socket left by a killed agent, which would make a plain bind fail.
        std::fs::rename(&staged, socket)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    let listener = bound?;
    listener.set_nonblocking(true)?;
    tracing::info!("pod API on {}", socket.display());
    Ok(listener)
}

/// Serves the pod API on `listener` until `shutdown` fires, on a thread of its own with a
/// single-threaded runtime. A request's accept, handler and netlink replies then never wait for
/// another thread to be woken (each such hop costs tens of microseconds on a VM, several per
/// request on the agent's shared runtime), and the API does not queue behind the agent's other
/// work. The receiver gets how serving ended.
pub fn spawn(
    listener: std::os::unix::net::UnixListener,
    pods: Arc<Pods>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("pod-api".into()).spawn(move || {
        let served = runtime.block_on(async move { serve(UnixListener::from_std(listener)?, pods, shutdown).await });
        let _ = done.send(served);
    })?;
    Ok(ended)
}

async fn serve(listener: UnixListener, pods: Arc<Pods>, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/pods", get(list).post(attach))
        .route("/v1/pods/{id}", delete(detach))
        .route("/v1/pods/{id}/check", get(check))
        .route("/v1/gc", post(gc))
        .route("/v1/status", get(status))
        .with_state(pods);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or_default()
    }

    #[test]
    fn the_socket_is_root_only_and_a_directory_not_made_here_keeps_its_mode() {
        let root = std::env::temp_dir().join(format!("sdn-podapi-bind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("temp dir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let shared = root.join("api.sock");
        let listener = bind(&shared).expect("bind in an existing directory");
        assert_eq!((mode(&root), mode(&shared)), (0o755, 0o600));
        drop(listener);
        // Again over the socket a killed agent left.
        bind(&shared).expect("bind over a stale socket");
        let own = root.join("made/here/api.sock");
        bind(&own).expect("bind in a new directory");
        assert_eq!((mode(own.parent().expect("dir")), mode(&own)), (0o700, 0o600));
        let leftovers: Vec<_> = std::fs::read_dir(&root).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no staging directory stays: {leftovers:?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
