//! The consumer's HTTP API: what it has applied, its dead letters, and its health.

use crate::{
    dead_letters::{DeadLetterError, DeadLetters},
    handler::{self, Processed},
    outcome::Outcome,
    store::{Applied, CurrentAddress, Store},
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
    domain::CustomerId,
    http::{BODY_LIMIT_BYTES, error_response, health_routes},
    readiness::Readiness,
};

#[derive(Debug, Clone)]
struct AppState {
    store: Store,
    dead_letters: DeadLetters,
}

pub fn router(store: Store, dead_letters: DeadLetters, readiness: Readiness) -> Router {
    Router::new()
        .route("/api/v1/address-changes", post(apply_change))
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

/// `POST /api/v1/address-changes`: the synchronous path. The body is the same
/// `address.changed` envelope the queue carries, and it goes through the same processing
/// and store, so a change applied over HTTP and delivered again by the broker (or retried
/// by the producer) is applied once.
///
/// 201 when recorded now (`outcome` `updated`, or `superseded` by a later change), 200 when
/// it had been applied before (`duplicate`), 422 `invalid_event` for a body that is not a
/// valid event or `idempotency_key_reused` for an id applied from another request, 503
/// when the store cannot record it; 413 for a body over the limit. Only a 2xx means the
/// change is recorded.
async fn apply_change(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The body is larger than {BODY_LIMIT_BYTES} bytes."),
                None,
            );
        }
        Err(rejection) => {
            return error_response(
                rejection.status(),
                "unreadable_body",
                rejection.body_text(),
                None,
            );
        }
    };
    let Some(Processed { outcome, event }) = handler::process(&state.store, &[&body]).await.pop()
    else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "No result.",
            None,
        );
    };
    let event_id = event
        .as_ref()
        .map(|(id, _)| id.to_string())
        .unwrap_or_default();
    match outcome {
        Outcome::Ack(applied) => {
            let status = if applied == Applied::Duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            tracing::info!(
                event_id,
                outcome = applied.as_str(),
                "Change applied over HTTP."
            );
            (
                status,
                Json(serde_json::json!({ "event_id": event_id, "outcome": applied.as_str() })),
            )
                .into_response()
        }
        Outcome::DeadLetter(unappliable) => {
            tracing::warn!(event_id, reason = %unappliable, "Change refused over HTTP.");
            error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                unappliable.code(),
                unappliable.to_string(),
                None,
            )
        }
        Outcome::Retry(reason) => {
            tracing::warn!(event_id, %reason, "Change not applied over HTTP.");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("The change was not recorded: {reason}"),
                None,
            )
        }
    }
}

/// `GET /api/v1/customers/{customer_id}/address`: 200 with the current address, 404 when
/// no change has been applied for that customer, 400 for an id that cannot exist.
async fn current_address(
    State(state): State<AppState>,
    Path(customer_id): Path<String>,
) -> Result<Json<CurrentAddress>, Response> {
    let customer_id = CustomerId::parse(&customer_id).map_err(|error| {
        error_response(
            StatusCode::BAD_REQUEST,
            "invalid_customer_id",
            format!("customer_id {error}"),
            Some("customer_id".into()),
        )
    })?;
    match state.store.current_address(&customer_id).await {
        Ok(Some(address)) => Ok(Json(address)),
        Ok(None) => Err(error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No address change has been applied for customer {customer_id}."),
            None,
        )),
        Err(error) => {
            tracing::error!(%error, %customer_id, "Cannot read the address.");
            Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "The address store cannot be read at the moment.",
                None,
            ))
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
) -> Result<Json<serde_json::Value>, Response> {
    let letters = state
        .dead_letters
        .list(limit.get())
        .await
        .map_err(dead_letter_error)?;
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
) -> Result<Json<serde_json::Value>, Response> {
    let replayed = state
        .dead_letters
        .replay(limit.get())
        .await
        .map_err(dead_letter_error)?;
    tracing::info!(replayed, "Dead letters replayed.");
    Ok(Json(serde_json::json!({ "replayed": replayed })))
}

fn dead_letter_error(error: DeadLetterError) -> Response {
    tracing::warn!(%error, "Dead-letter request failed.");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "broker_unavailable",
        error.to_string(),
        None,
    )
}
