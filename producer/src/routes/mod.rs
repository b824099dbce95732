//! The producer's HTTP API.

mod address_changes;
mod queue_view;
mod sync_address_changes;

pub use address_changes::{Accepted, AddressChangeRequest};
pub use sync_address_changes::Applied;

use crate::{
    consumer_client::ConsumerClient, error::ApiError, extract::BODY_LIMIT_BYTES,
    publisher::Publisher,
};
use axum::{
    BoxError, Router,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    response::IntoResponse,
    routing::{get, post},
};
use shared::{http::health_routes, queue_stats::QueueWatch, readiness::Readiness};
use std::sync::Arc;
use tower::{ServiceBuilder, limit::GlobalConcurrencyLimitLayer};

/// What the handlers share, behind one `Arc` so that each request clones a pointer.
#[derive(Debug)]
pub struct AppState {
    pub publisher: Publisher,
    /// Only for the synchronous path.
    pub consumer: ConsumerClient,
}

/// `max_in_flight` bounds the change requests handled at once: the next one is shed with a
/// 503 straight away, so a flood costs a refusal, not memory.
pub fn router(
    state: AppState,
    readiness: Readiness,
    queues: QueueWatch,
    max_in_flight: usize,
) -> Router {
    let shed_beyond_limit = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: BoxError| async {
            ApiError::Overloaded.into_response()
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(max_in_flight));
    Router::new()
        .route(
            "/api/v1/address-changes",
            post(address_changes::create).layer(shed_beyond_limit.clone()),
        )
        .route(
            "/api/v1/sync/address-changes",
            post(sync_address_changes::create).layer(shed_beyond_limit),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(Arc::new(state))
        .merge(
            Router::new()
                .route("/", get(queue_view::page))
                .route("/api/v1/queues", get(queue_view::queues))
                .with_state(queues),
        )
        .merge(health_routes(readiness))
}
