//! The producer's HTTP API.

mod address_changes;

pub use address_changes::{Accepted, AddressChangeRequest};

use crate::{extract::BODY_LIMIT_BYTES, publisher::Publisher};
use axum::{Router, extract::DefaultBodyLimit, routing::post};
use shared::{http::health_routes, readiness::Readiness};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub publisher: Publisher,
}

pub fn router(publisher: Publisher, readiness: Readiness) -> Router {
    Router::new()
        .route("/api/v1/address-changes", post(address_changes::create))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(AppState { publisher })
        .merge(health_routes(readiness))
}
