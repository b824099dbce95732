//! `POST /api/v1/sync/address-changes`: the synchronous alternative, for comparison. Same
//! validation and the same event, but handed straight to the consumer over HTTP instead of
//! through the broker: the answer waits for the consumer, and fails when it cannot answer.

use super::{AppState, InFlight, address_changes::new_event};
use crate::{
    consumer_client::SyncError, error::ApiError, extract::JsonBody, idempotency::IdempotencyKey,
};
use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use shared::sync_api::RecordedAs;
use std::sync::Arc;
use uuid::Uuid;

use super::AddressChangeRequest;

/// The 200/201 body: the consumer has recorded the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedByConsumer {
    pub event_id: Uuid,
    /// Always `applied`.
    pub status: String,
    /// `updated`, `superseded` or `duplicate`, as the consumer reported it.
    pub outcome: RecordedAs,
}

/// 201 when the consumer recorded the change now, 200 when it had already (a retry with
/// the same `Idempotency-Key`); 422 when that key was used for another change; 502, 503 or
/// 504 when it could not, saying so.
pub async fn create(
    State(state): State<Arc<AppState>>,
    _place: InFlight,
    key: Option<IdempotencyKey>,
    JsonBody(request): JsonBody<AddressChangeRequest>,
) -> Result<(StatusCode, Json<RecordedByConsumer>), ApiError> {
    let event = new_event(request, key.as_ref(), &state.recent_keys)?;
    match state.consumer.record(&event).await {
        Ok(recorded) => {
            tracing::info!(event_id = %event.event_id, customer_id = %event.customer_id, outcome = recorded.outcome.as_str(), "Change recorded by the consumer.");
            let status = if recorded.outcome.is_new() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(RecordedByConsumer {
                    event_id: event.event_id,
                    status: "applied".to_owned(),
                    outcome: recorded.outcome,
                }),
            ))
        }
        Err(SyncError::KeyReused) => {
            tracing::warn!(event_id = %event.event_id, customer_id = %event.customer_id, "Change refused by the consumer: its Idempotency-Key was used for another change.");
            Err(ApiError::IdempotencyKeyReused)
        }
        Err(error) => {
            tracing::warn!(event_id = %event.event_id, customer_id = %event.customer_id, %error, "Change NOT recorded by the consumer.");
            Err(ApiError::NotRecorded(error))
        }
    }
}
