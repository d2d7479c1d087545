//! API errors and their HTTP status: 400 names the field, 409 the conflict,
//! 503 the unreachable etcd. Nothing is written when an error is returned.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sdn_cluster::store::{ServiceStoreError, StoreError};
use sdn_cluster::{RecordError, ServiceError};

use super::types::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { field: Option<String>, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { field: Option<String>, message: String },
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    Unavailable(String),
}

impl From<RecordError> for ApiError {
    fn from(err: RecordError) -> Self {
        let field = match &err {
            RecordError::InvalidName { field, .. } | RecordError::InvalidIp { field, .. } => *field,
        };
        ApiError::BadRequest { field: Some(field.into()), message: err.to_string() }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(record) => record.into(),
            StoreError::DuplicateIp { .. } => ApiError::Conflict { field: Some("ip".into()), message: err.to_string() },
            StoreError::NodeNotFound(_) => ApiError::NotFound(err.to_string()),
            StoreError::Contention { .. } => ApiError::Conflict { field: None, message: err.to_string() },
            StoreError::Etcd(_) | StoreError::Corrupt { .. } | StoreError::Auth { .. } => {
                ApiError::Unavailable(err.to_string())
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        ApiError::BadRequest { field: Some(err.field().to_owned()), message: err.to_string() }
    }
}

impl From<ServiceStoreError> for ApiError {
    fn from(err: ServiceStoreError) -> Self {
        let conflict = |field: Option<&str>, err: &ServiceStoreError| ApiError::Conflict {
            field: field.map(str::to_owned),
            message: err.to_string(),
        };
        match err {
            ServiceStoreError::Store(store) => store.into(),
            ServiceStoreError::Invalid(invalid) => invalid.into(),
            ServiceStoreError::NoNetwork => ApiError::Unavailable(err.to_string()),
            ServiceStoreError::NotFound(_) => ApiError::NotFound(err.to_string()),
            ServiceStoreError::Exists(_) => conflict(Some("name"), &err),
            ServiceStoreError::IpTaken { .. } | ServiceStoreError::Exhausted { .. } => {
                conflict(Some("clusterIP"), &err)
            }
            ServiceStoreError::Contention { .. } => conflict(None, &err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            ApiError::BadRequest { field, .. } => (StatusCode::BAD_REQUEST, field.clone()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ApiError::Conflict { field, .. } => (StatusCode::CONFLICT, field.clone()),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let body = Json(ErrorBody { error: self.to_string(), field });
        if status == StatusCode::UNAUTHORIZED {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        (status, body).into_response()
    }
}
