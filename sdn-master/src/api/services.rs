//! Handlers of services and endpoints. Reads come from the cache; writes go through the store's
//! transactions, and answer once the cache shows them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sdn_cluster::store::{claim_owner, decode};
use sdn_cluster::{ClusterIp, Endpoints, Service, ServiceSpec};

use super::AppState;
use super::error::ApiError;
use super::handlers::{cached, cached_network, catch_up, parse, valid_name};
use super::types::SetEndpoints;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceFilter {
    namespace: Option<String>,
}

/// The cache directory a list reads: everything, or one namespace.
fn list_dir(filter: &NamespaceFilter, all: String, of: impl Fn(&str) -> String) -> Result<String, ApiError> {
    match &filter.namespace {
        Some(namespace) => {
            valid_name("namespace", namespace)?;
            Ok(of(namespace))
        }
        None => Ok(all),
    }
}

fn valid_path(namespace: &str, name: &str) -> Result<(), ApiError> {
    valid_name("namespace", namespace)?;
    valid_name("name", name)
}

/// One record from the cache; an unreadable one is an error, not an absence.
fn cached_one<T: serde::de::DeserializeOwned>(state: &AppState, key: &str) -> Result<Option<T>, ApiError> {
    let cache = state.informer.read();
    Ok(cache.get(key).map(|entry| decode(key, &entry.value)).transpose()?)
}

fn not_found(namespace: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!("service {} not found", claim_owner(namespace, name)))
}

pub async fn list_services(
    State(state): State<AppState>,
    Query(filter): Query<NamespaceFilter>,
) -> Result<Json<Vec<ServiceSpec>>, ApiError> {
    let keys = state.store.keys();
    let dir = list_dir(&filter, keys.services(), |ns| keys.services_in(ns))?;
    Ok(Json(cached::<Service>(&state, &dir).into_iter().map(ServiceSpec::from).collect()))
}

pub async fn create_service(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ServiceSpec>), ApiError> {
    let spec: ServiceSpec = parse(&body)?;
    // Refuse a bad request as such even while etcd is unreachable; the store checks again
    // against the network etcd holds.
    if let Some(network) = cached_network(&state) {
        spec.to_service(spec.cluster_ip.and_then(ClusterIp::ip)).validate(&network)?;
    }
    let (service, revision) = state.store.create_service(&spec).await?;
    catch_up(&state, revision).await;
    Ok((StatusCode::CREATED, Json(service.into())))
}

pub async fn get_service(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<ServiceSpec>, ApiError> {
    valid_path(&namespace, &name)?;
    let service: Option<Service> = cached_one(&state, &state.store.keys().service(&namespace, &name))?;
    service.map(|s| Json(s.into())).ok_or_else(|| not_found(&namespace, &name))
}

pub async fn delete_service(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    valid_path(&namespace, &name)?;
    let revision = state.store.delete_service(&namespace, &name).await?;
    catch_up(&state, revision).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_endpoints(
    State(state): State<AppState>,
    Query(filter): Query<NamespaceFilter>,
) -> Result<Json<Vec<Endpoints>>, ApiError> {
    let keys = state.store.keys();
    let dir = list_dir(&filter, keys.endpoints(), |ns| keys.endpoints_in(ns))?;
    Ok(Json(cached(&state, &dir)))
}

/// A service's endpoints; a service whose endpoints were never set has none.
pub async fn get_endpoints(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Endpoints>, ApiError> {
    valid_path(&namespace, &name)?;
    let keys = state.store.keys();
    if let Some(endpoints) = cached_one(&state, &keys.endpoints_of(&namespace, &name))? {
        return Ok(Json(endpoints));
    }
    if state.informer.read().get(&keys.service(&namespace, &name)).is_none() {
        return Err(not_found(&namespace, &name));
    }
    Ok(Json(Endpoints { namespace, name, addresses: Vec::new(), ports: Vec::new() }))
}

pub async fn put_endpoints(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Endpoints>, ApiError> {
    valid_path(&namespace, &name)?;
    let request: SetEndpoints = parse(&body)?;
    for (field, given, path) in [("namespace", &request.namespace, &namespace), ("name", &request.name, &name)] {
        if let Some(given) = given.as_ref().filter(|given| *given != path) {
            return Err(ApiError::BadRequest {
                field: Some(field.into()),
                message: format!("{field}: {given:?} differs from {path:?} in the path"),
            });
        }
    }
    let endpoints = Endpoints { namespace, name, addresses: request.addresses, ports: request.ports };
    if let Some(network) = cached_network(&state) {
        endpoints.validate(&network)?;
    }
    let revision = state.store.set_endpoints(&endpoints).await?;
    catch_up(&state, revision).await;
    Ok(Json(endpoints))
}
