//! The consumer's HTTP API: what it has applied, its dead letters, and its health.

use crate::{
    dead_letters::{DeadLetterError, DeadLetters},
    handler::{self, Processed},
    outcome::{Outcome, Transient, Unappliable},
    store::{CurrentAddress, Store},
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State, rejection::BytesRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use shared::{
    domain::{CustomerId, InvalidValue},
    http::{BODY_LIMIT_BYTES, error_response, health_routes},
    readiness::Readiness,
    sync_api::{self, ChangeRecorded},
};

#[derive(Debug, Clone)]
struct AppState {
    store: Store,
    dead_letters: DeadLetters,
}

pub fn router(store: Store, dead_letters: DeadLetters, readiness: Readiness) -> Router {
    Router::new()
        .route(sync_api::PATH, post(apply_change))
        .route(
            "/api/v1/customers/{customer_id}/address",
            get(current_address),
        )
        .route("/api/v1/dead-letters", get(list_dead_letters))
        .route("/api/v1/dead-letters/replay", post(replay_dead_letters))
        .with_state(AppState {
            store,
            dead_letters,
        })
        .merge(health_routes(readiness))
}

/// Every way a request to the consumer can fail, and the status and JSON body each gets.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    /// 413 `payload_too_large`: the body is over the limit; it was not read further.
    #[error("The body is larger than {BODY_LIMIT_BYTES} bytes.")]
    PayloadTooLarge,
    /// 400 (or the status axum chose) `unreadable_body`: the body could not be read.
    #[error("{}", .0.body_text())]
    UnreadableBody(BytesRejection),
    /// 422 `invalid_event` or `idempotency_key_reused`: the change can never be applied.
    #[error("{0}")]
    Unappliable(Unappliable),
    /// 503 `store_unavailable`: the change was not recorded; it may be on a retry.
    #[error("The change was not recorded: {0}")]
    NotRecorded(Transient),
    /// 400 `invalid_customer_id`: no customer can have this id.
    #[error("customer_id {0}")]
    InvalidCustomerId(InvalidValue),
    /// 404 `not_found`: nothing applied for this customer yet.
    #[error("No address change has been applied for customer {0}.")]
    NoChangeFor(CustomerId),
    /// 503 `store_unavailable`: the store cannot be read at the moment.
    #[error("The address store cannot be read at the moment.")]
    StoreUnreadable,
    /// 503 `broker_unavailable`: the dead letters cannot be reached or moved.
    #[error("{0}")]
    DeadLetters(#[from] DeadLetterError),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnreadableBody(rejection) => (rejection.status(), "unreadable_body"),
            Self::Unappliable(unappliable) => {
                (StatusCode::UNPROCESSABLE_ENTITY, unappliable.code())
            }
            Self::NotRecorded(_) | Self::StoreUnreadable => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            Self::InvalidCustomerId(_) => (StatusCode::BAD_REQUEST, "invalid_customer_id"),
            Self::NoChangeFor(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::DeadLetters(_) => (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable"),
        };
        let field = matches!(self, Self::InvalidCustomerId(_)).then(|| "customer_id".to_owned());
        // A 503 gets `Retry-After` there.
        error_response(status, code, self.to_string(), field)
    }
}

/// `POST /api/v1/address-changes`: the synchronous path. The body is the same
/// `address.changed` envelope the queue carries, and it goes through the same processing
/// and store, so a change applied over HTTP and delivered again by the broker (or retried
/// by the producer) is applied once.
///
/// 201 when recorded now (`outcome` `updated`, or `superseded` by a later change), 200 when
/// it had been applied before (`duplicate`), 422 `invalid_event` for a body that is not a
/// valid event or `idempotency_key_reused` for an id applied from another request, 503
/// when the store cannot record it; 413 for a body over the limit. Only a 2xx means the
/// change is recorded. The bodies are `shared::sync_api`'s, which the producer reads.
async fn apply_change(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ChangeRecorded>), HttpError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::PayloadTooLarge
        } else {
            HttpError::UnreadableBody(rejection)
        }
    })?;
    let Processed { outcome, event } = handler::process_one(&state.store, &body).await;
    let event_id = event.as_ref().map(|(id, _)| *id);
    match outcome {
        Outcome::Ack(recorded) => {
            tracing::info!(
                event_id = %event_id.unwrap_or_default(),
                outcome = recorded.as_str(),
                "Change applied over HTTP."
            );
            let status = if recorded.is_new() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(ChangeRecorded {
                    event_id: event_id.unwrap_or_default(),
                    outcome: recorded,
                }),
            ))
        }
        Outcome::DeadLetter(unappliable) => {
            tracing::warn!(event_id = %event_id.unwrap_or_default(), reason = %unappliable, "Change refused over HTTP.");
            Err(HttpError::Unappliable(unappliable))
        }
        Outcome::Retry(cause) => {
            tracing::warn!(event_id = %event_id.unwrap_or_default(), %cause, "Change not applied over HTTP.");
            Err(HttpError::NotRecorded(cause))
        }
    }
}

/// `GET /api/v1/customers/{customer_id}/address`: 200 with the current address, 404 when
/// no change has been applied for that customer, 400 for an id that cannot exist.
async fn current_address(
    State(state): State<AppState>,
    Path(customer_id): Path<String>,
) -> Result<Json<CurrentAddress>, HttpError> {
    let customer_id = CustomerId::parse(&customer_id).map_err(HttpError::InvalidCustomerId)?;
    match state.store.current_address(&customer_id).await {
        Ok(Some(address)) => Ok(Json(address)),
        Ok(None) => Err(HttpError::NoChangeFor(customer_id)),
        Err(error) => {
            tracing::error!(%error, %customer_id, "Cannot read the address.");
            Err(HttpError::StoreUnreadable)
        }
    }
}

#[derive(Debug, Deserialize)]
struct Limit {
    /// At most this many messages; 100 when omitted.
    limit: Option<usize>,
}

impl Limit {
    fn get(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 10_000)
    }
}

/// `GET /api/v1/dead-letters?limit=N`: what is in `<QUEUE>.dlq`, oldest first, and why.
/// The messages stay in the queue.
async fn list_dead_letters(
    State(state): State<AppState>,
    Query(limit): Query<Limit>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let letters = state
        .dead_letters
        .list(limit.get())
        .await
        .inspect_err(|error| tracing::warn!(%error, "Listing the dead letters failed."))?;
    Ok(Json(serde_json::json!({
        "queue": state.dead_letters.queue_name(),
        "count": letters.len(),
        "dead_letters": letters,
    })))
}

/// `POST /api/v1/dead-letters/replay?limit=N`: moves dead letters back into the work queue
/// with their attempts reset, once the cause is fixed. Answers how many were moved.
async fn replay_dead_letters(
    State(state): State<AppState>,
    Query(limit): Query<Limit>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let replayed = state
        .dead_letters
        .replay(limit.get())
        .await
        .inspect_err(|error| tracing::warn!(%error, "Replaying the dead letters failed."))?;
    tracing::info!(replayed, "Dead letters replayed.");
    Ok(Json(serde_json::json!({ "replayed": replayed })))
}
