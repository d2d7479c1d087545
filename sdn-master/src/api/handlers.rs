//! Request handlers. Each validates fully before it writes anything.

use crate::quorum::Lost;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use sdn_cluster::records::{PodRecord, validate_label};
use sdn_cluster::store::{Registered, decode};
use sdn_cluster::{ClusterNetwork, HostSubnet, Node};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use super::types::{NodeView, Phase, RegisterNode};
use crate::allocator::NodeState;
use crate::controller::Snapshot;
use crate::metrics::ClusterStats;

/// How long a write waits for the cache to show it before answering anyway.
const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(2);

/// Waits (boundedly) until the cache shows `revision`, so the writer reads its own write.
pub(super) async fn catch_up(state: &AppState, revision: i64) {
    let _ = tokio::time::timeout(READ_YOUR_WRITE_WAIT, state.informer.wait_for(revision)).await;
}

fn snapshot(state: &AppState) -> Snapshot {
    Snapshot::from_cache(&state.informer.read(), state.store.keys())
}

/// A node as the API shows it; `None` for a node whose record cannot be read.
fn view(snapshot: &Snapshot, node: &NodeState) -> Option<NodeView> {
    let subnet = snapshot.subnet_of(&node.name).map(|s| s.subnet);
    let phase = if subnet.is_some() { Phase::Allocated } else { Phase::Pending };
    Some(NodeView { name: node.name.clone(), ip: node.ip?, subnet, phase })
}

fn find_view(snapshot: &Snapshot, name: &str) -> Option<NodeView> {
    snapshot.nodes.iter().find(|n| n.name == name).and_then(|n| view(snapshot, n))
}

/// Parses a JSON body; a refusal names the offending field.
pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let syntax = err.inner().is_syntax() || err.inner().is_eof();
        let inner = err.inner().to_string();
        let path = err.path().to_string();
        // A missing field is reported at the object that lacks it, so its name is added from
        // the message: `ports[0].port`.
        let missing = inner.starts_with("missing field");
        let name = inner.split('`').nth(1);
        let root = path == "." || path == "?";
        let field = if syntax {
            None
        } else if root {
            name.map(str::to_owned)
        } else if let (true, Some(name)) = (missing, name) {
            Some(format!("{path}.{name}"))
        } else {
            Some(path)
        };
        let message = match &field {
            Some(f) => format!("invalid request body: {f}: {inner}"),
            None => format!("invalid request body: {inner}"),
        };
        ApiError::BadRequest { field, message }
    })?;
    de.end().map_err(|err| ApiError::BadRequest { field: None, message: format!("invalid request body: {err}") })?;
    Ok(value)
}

pub(super) fn valid_name(field: &'static str, name: &str) -> Result<(), ApiError> {
    validate_label(field, name).map_err(ApiError::from)
}

pub async fn list_nodes(State(state): State<AppState>) -> Json<Vec<NodeView>> {
    let snapshot = snapshot(&state);
    Json(snapshot.nodes.iter().filter_map(|n| view(&snapshot, n)).collect())
}

pub async fn get_node(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<NodeView>, ApiError> {
    valid_name("name", &name)?;
    find_view(&snapshot(&state), &name).map(Json).ok_or_else(|| ApiError::NotFound(format!("node {name} not found")))
}

pub async fn register_node(State(state): State<AppState>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let request: RegisterNode = parse(&body)?;
    let node = Node { name: request.name, ip: request.ip };
    node.validate()?;
    // Lookups of the few keys this node needs, not a snapshot of the whole registry: a thousand
    // nodes registering at once would each decode every other's records, several times over.
    if let Some(network) = cached_network(&state) {
        node.validate_outside(&network)?;
    }
    let (registered, revision) = state.store.register_node(&node).await?;
    // Answer with the subnet when the leader allocates it promptly; a node
    // that has to wait (exhaustion, no leader) is answered as pending.
    let subnet_key = state.store.keys().subnet(&node.name);
    let allocated = async {
        state.informer.wait_for(revision).await;
        let mut changes = state.informer.subscribe();
        while state.informer.read().get(&subnet_key).is_none() && !exhausted(&state) {
            if changes.changed().await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(READ_YOUR_WRITE_WAIT, allocated).await;
    let status = match registered {
        Registered::Created => StatusCode::CREATED,
        Registered::Unchanged | Registered::IpChanged { .. } => StatusCode::OK,
    };
    let subnet = state
        .informer
        .read()
        .get(&subnet_key)
        .and_then(|entry| decode::<HostSubnet>(&subnet_key, &entry.value).ok())
        .filter(|record| record.host == node.name)
        .map(|record| record.subnet);
    let phase = if subnet.is_some() { Phase::Allocated } else { Phase::Pending };
    Ok((status, Json(NodeView { name: node.name, ip: node.ip, subnet, phase })))
}

/// Whether every host subnet is taken, so a new node cannot be served now.
fn exhausted(state: &AppState) -> bool {
    let Some(network) = cached_network(state) else {
        return false;
    };
    // The kept count of the directory: asked by every waiting registration on every change.
    state.informer.read().fingerprint(&state.store.keys().subnets()).0 as u64 >= network.subnet_count()
}

/// The cluster network as the cache holds it, if it is there and readable.
pub(super) fn cached_network(state: &AppState) -> Option<ClusterNetwork> {
    let network_key = state.store.keys().network();
    let cache = state.informer.read();
    cache.get(&network_key).and_then(|e| decode::<ClusterNetwork>(&network_key, &e.value).ok())
}

/// Every readable record under `dir` in the cache. An unreadable one is logged and skipped, so
/// one bad record does not hide the others.
pub(super) fn cached<T: DeserializeOwned>(state: &AppState, dir: &str) -> Vec<T> {
    let cache = state.informer.read();
    cache
        .range(dir)
        .filter_map(|(key, entry)| match decode::<T>(key, &entry.value) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!("{err}");
                None
            }
        })
        .collect()
}

pub async fn delete_node(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    valid_name("name", &name)?;
    let revision = state.store.delete_node(&name).await?;
    catch_up(&state, revision).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_subnets(State(state): State<AppState>) -> Json<Vec<HostSubnet>> {
    Json(snapshot(&state).subnets.into_iter().filter_map(|s| s.record).collect())
}

pub async fn get_subnet(State(state): State<AppState>, Path(node): Path<String>) -> Result<Json<HostSubnet>, ApiError> {
    valid_name("node", &node)?;
    snapshot(&state)
        .subnet_of(&node)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("node {node} has no subnet")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodFilter {
    node: Option<String>,
}

/// Every pod the agents recorded, by node and container; `?node=` narrows
/// it to one node. Unreadable records are skipped (and logged), not fatal.
pub async fn list_pods(
    State(state): State<AppState>,
    Query(filter): Query<PodFilter>,
) -> Result<Json<Vec<PodRecord>>, ApiError> {
    let dir = match &filter.node {
        Some(node) => {
            valid_name("node", node)?;
            state.store.keys().node_pods(node)
        }
        None => state.store.keys().pods(),
    };
    Ok(Json(cached::<PodRecord>(&state, &dir)))
}

pub async fn get_network(State(state): State<AppState>) -> Result<Json<ClusterNetwork>, ApiError> {
    snapshot(&state).network.map(Json).ok_or_else(|| ApiError::Unavailable("no cluster network is stored yet".into()))
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if !state.bootstrapped.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: the cluster network is not settled in etcd yet\n".into());
    }
    if state.informer.read().revision() == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: the first read from etcd has not completed\n".into());
    }
    // Before the connection: the informer of an etcd without quorum loses its watch and cannot
    // list again either, and "unreachable" would hide why.
    if let Some(Lost::CannotCommit(why)) = state.quorum.lost() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: etcd cannot commit (no quorum?): {why}\n"));
    }
    if !state.informer.is_connected() || state.quorum.lost().is_some() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: etcd is unreachable\n".into());
    }
    (StatusCode::OK, "ok\n".into())
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = snapshot(&state);
    let allocated = i64::try_from(snapshot.subnets.len()).unwrap_or(i64::MAX);
    let capacity = snapshot.network.as_ref().map_or(0, |n| i64::try_from(n.subnet_count()).unwrap_or(i64::MAX));
    let stats = ClusterStats {
        nodes: i64::try_from(snapshot.nodes.len()).unwrap_or(i64::MAX),
        allocated,
        free: capacity.saturating_sub(allocated).max(0),
        pending: snapshot
            .nodes
            .iter()
            .filter(|n| snapshot.subnet_of(&n.name).is_none())
            .count()
            .try_into()
            .unwrap_or(0),
    };
    let leader = state.leadership.borrow().is_some();
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(stats, leader),
    )
}

pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such resource: {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use sdn_cluster::ServiceSpec;

    use super::*;

    #[test]
    fn refused_bodies_name_the_field() {
        let cases = [
            (r#"{"namespace":"a"}"#, Some("name")),
            (r#"{"namespace":"a","name":"b","type":"x"}"#, Some("type")),
            (r#"{"namespace":"a","name":"b","ports":[{"port":80,"nme":"x"}]}"#, Some("ports[0].nme")),
            (r#"{"namespace":"a","name":"b","ports":[{"name":"x"}]}"#, Some("ports[0].port")),
            (r#"{"namespace":"a","name":"b","ports":[{"port":70000}]}"#, Some("ports[0].port")),
            (r#"{"namespace":"a","name":"b","ports":[{"port":1,"protocol":"ICMP"}]}"#, Some("ports[0].protocol")),
            (r#"{"namespace":"a","name":"b","clusterIP":"x"}"#, Some("clusterIP")),
            (r#"{"namespace":"a""#, None),
            (r#"{"namespace":"a","name":"b"} {}"#, None),
        ];
        for (body, expected) in cases {
            match parse::<ServiceSpec>(body.as_bytes()) {
                Err(ApiError::BadRequest { field, message }) => {
                    assert_eq!(field.as_deref(), expected, "{body}: {message}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
