//! `PUT` and `DELETE /api/v1/nodes/{name}/access`: a node's etcd role and user, so its agent can
//! connect with a client certificate whose common name is the node's name and write only its own
//! keys (see `sdn_cluster::access`). The master must be etcd's `root` for this.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sdn_cluster::Node;
use sdn_cluster::access::node_access;

use super::AppState;
use super::error::ApiError;
use super::handlers::parse;
use super::types::{NodeAccessRequest, NodeAccessView};

pub async fn authorize_node(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<NodeAccessView>, ApiError> {
    let request: NodeAccessRequest = parse(&body)?;
    // The same checks as a registration: the role will hold the node's IP claim key.
    Node { name: name.clone(), ip: request.ip }.validate()?;
    let access = node_access(state.store.keys(), &name, request.ip)?;
    state.store.authorize_node(&access).await?;
    tracing::info!("node {name} may now write its own keys in etcd as user {} (role {})", access.user, access.role);
    let writes = access.grants.iter().filter(|g| g.write).map(|g| g.key.clone()).collect();
    Ok(Json(NodeAccessView { user: access.user, role: access.role, writes }))
}

pub async fn revoke_node(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    // The IP only shapes the grants, which go with the role.
    let access = node_access(state.store.keys(), &name, std::net::Ipv4Addr::UNSPECIFIED.into())?;
    state.store.revoke_node(&access).await?;
    tracing::info!("node {name}'s etcd user and role are deleted");
    Ok(StatusCode::NO_CONTENT)
}
