//! The producer's HTTP API.

mod address_changes;
mod queue_view;
mod sync_address_changes;

pub use address_changes::{Accepted, AddressChangeRequest};
pub use sync_address_changes::RecordedByConsumer;

use crate::{
    consumer_client::ConsumerClient, error::ApiError, idempotency::RecentKeys, publisher::Publisher,
};
use axum::{
    Router,
    extract::FromRequestParts,
    http::request::Parts,
    routing::{get, post},
};
use shared::{http::health_routes, queue_stats::QueueWatch, readiness::Readiness};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the handlers share, behind one `Arc` so that each request clones a pointer.
#[derive(Debug)]
pub struct AppState {
    pub publisher: Publisher,
    /// Only for the synchronous path.
    pub consumer: ConsumerClient,
    /// One permit per change request that may be handled at once (`MAX_IN_FLIGHT_REQUESTS`).
    pub in_flight: Arc<Semaphore>,
    /// The Idempotency-Keys this replica saw lately, with their requests' fingerprints.
    pub recent_keys: RecentKeys,
}

pub fn router(state: AppState, readiness: Readiness, queues: QueueWatch) -> Router {
    Router::new()
        .route("/api/v1/address-changes", post(address_changes::create))
        .route(
            "/api/v1/sync/address-changes",
            post(sync_address_changes::create),
        )
        .with_state(Arc::new(state))
        .merge(
            Router::new()
                .route("/", get(queue_view::page))
                .route("/api/v1/queues", get(queue_view::queues))
                .route("/api/v1/queues/history", get(queue_view::history))
                .with_state(queues),
        )
        .merge(health_routes(readiness))
}

/// A change request's place among those handled at once, held until it is answered. The
/// handlers take it before reading the body: beyond the limit a request is shed with a 503
/// straight away, so a flood costs a refusal, not memory. (A permit in the handler, rather
/// than tower's load-shed and concurrency-limit layers, because axum's error handling
/// around those layers clones the routes below them for every request.)
#[derive(Debug)]
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
}

impl FromRequestParts<Arc<AppState>> for InFlight {
    type Rejection = ApiError;

    async fn from_request_parts(
        _: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Arc::clone(&state.in_flight)
            .try_acquire_owned()
            .map(|permit| Self { _permit: permit })
            .map_err(|_| ApiError::Overloaded)
    }
}
