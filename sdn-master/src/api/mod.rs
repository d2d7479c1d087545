//! The admin HTTP API (axum): nodes, subnets, pods, services, endpoints and
//! the cluster network under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Reads come from the informer's cache; writes go to etcd and return once
//! the cache has caught up with them, so a client reads its own writes.
//! Everything but the two probes needs the bearer token.
//!
//! Before a request is authenticated a client only costs a connection, so
//! the listener bounds those: a time to send the header (and finish TLS), a
//! time for the whole request, and a number served at once (see
//! `docs/master.md`, "Admin API").

mod access;
mod error;
mod handlers;
mod limit;
mod services;
pub mod types;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::{Handle, Server};
use hyper_util::rt::TokioTimer;
use sdn_cluster::informer::Informer;
use sdn_cluster::store::Store;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;

pub use self::error::ApiError;
use self::limit::ConnectionLimit;
use crate::config::ApiConfig;
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// Largest request body accepted; registrations are a few dozen bytes.
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub informer: Informer,
    pub metrics: Arc<Metrics>,
    pub leadership: watch::Receiver<Option<Leadership>>,
    pub token: Arc<str>,
    /// Set once the cluster network is settled in etcd.
    pub bootstrapped: Arc<AtomicBool>,
    /// Whether etcd commits.
    pub quorum: Arc<crate::quorum::Quorum>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("admin API TLS certificate {cert} or key {key}: {source}")]
    Tls { cert: std::path::PathBuf, key: std::path::PathBuf, source: std::io::Error },
    #[error("admin API on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// The routes; a request not answered within `request_timeout` of its
/// header gets 408 (a JSON body on the API's routes, as its other errors).
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout);
    let api = Router::new()
        .route("/api/v1/nodes", get(handlers::list_nodes).post(handlers::register_node))
        .route("/api/v1/nodes/{name}", get(handlers::get_node).delete(handlers::delete_node))
        .route("/api/v1/nodes/{name}/access", put(access::authorize_node).delete(access::revoke_node))
        .route("/api/v1/subnets", get(handlers::list_subnets))
        .route("/api/v1/subnets/{node}", get(handlers::get_subnet))
        .route("/api/v1/pods", get(handlers::list_pods))
        .route("/api/v1/network", get(handlers::get_network))
        .route("/api/v1/services", get(services::list_services).post(services::create_service))
        .route("/api/v1/services/{namespace}/{name}", get(services::get_service).delete(services::delete_service))
        .route("/api/v1/endpoints", get(services::list_endpoints))
        .route("/api/v1/endpoints/{namespace}/{name}", put(services::put_endpoints).get(services::get_endpoints))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::no_route)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(timeout)
        .layer(middleware::map_response(json_errors));
    let probes =
        Router::new().route("/healthz", get(handlers::healthz)).route("/readyz", get(handlers::readyz)).layer(timeout);
    api.merge(probes).layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(state)
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if bool::from(token.as_bytes().ct_eq(state.token.as_bytes())) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// Turns the plain-text errors axum makes itself (405, 413, rejected path
/// parameters) into the API's JSON error body, so clients parse one format.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let error = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let mut response = Json(types::ErrorBody { error, field: None }).into_response();
    *response.status_mut() = status;
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

/// Serves until `shutdown` fires, then drains requests for up to 5 s.
pub async fn serve(config: &ApiConfig, state: AppState, mut shutdown: watch::Receiver<bool>) -> Result<(), ServeError> {
    let app = ConnectionLimit::new(router(state, config.request_timeout).into_make_service(), config.max_connections);
    let handle = Handle::new();
    let drain = handle.clone();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        drain.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let addr = config.listen;
    let listen_error = |source| ServeError::Listen { addr, source };
    match &config.tls {
        Some((cert, key)) => {
            let tls = RustlsConfig::from_pem_file(cert, key).await.map_err(|source| ServeError::Tls {
                cert: cert.clone(),
                key: key.clone(),
                source,
            })?;
            // axum-server offers h2 in ALPN; the connection is HTTP/1.1 only
            // (see `hardened`), so a client that took h2 would fail.
            let mut rustls = (*tls.get_inner()).clone();
            rustls.alpn_protocols = vec![b"http/1.1".to_vec()];
            let tls = RustlsConfig::from_config(Arc::new(rustls));
            // The handshake comes before the header and is as unauthenticated.
            let acceptor = RustlsAcceptor::new(tls).handshake_timeout(config.header_read_timeout);
            tracing::info!("admin API on https://{addr}");
            let server = hardened(axum_server::bind(addr).acceptor(acceptor), config);
            server.handle(handle).serve(app).await.map_err(listen_error)
        }
        None => {
            tracing::info!("admin API on http://{addr}");
            hardened(axum_server::bind(addr), config).handle(handle).serve(app).await.map_err(listen_error)
        }
    }
}

/// HTTP/1.1 with a header-read timeout. hyper has the timeout, but it only
/// runs with a timer, which axum-server does not set; it also covers the
/// wait for the next request on a kept-alive connection. HTTP/2 has no such
/// timeout in hyper (a client could open a stream and never finish its
/// headers), and sdnctl speaks HTTP/1.1, so HTTP/2 is not served.
/// `acceptor` resets the protocol choice, so this comes after it.
fn hardened<A>(server: Server<SocketAddr, A>, config: &ApiConfig) -> Server<SocketAddr, A> {
    let mut server = server.http1_only();
    server.http_builder().http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    server
}
