//! `POST /api/v1/address-changes`: validate, publish, and answer 202 once confirmed.

use super::{AppState, InFlight};
use crate::{
    error::ApiError,
    extract::JsonBody,
    idempotency::{self, IdempotencyKey, RecentKeys},
};
use axum::{Extension, Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use shared::{
    domain::{Address, CustomerId, EffectiveDate},
    event::AddressChanged,
    message::EventMessage,
    trace_context::TraceContext,
};
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// The `app_id` property of every message this service publishes.
pub const APP_ID: &str = "producer";

/// The request body. Parsing it validates it: each field is a domain type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressChangeRequest {
    pub customer_id: CustomerId,
    pub new_address: Address,
    /// Today (UTC) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<EffectiveDate>,
}

/// The 202 body: the change is queued (the broker has confirmed it), not yet applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub event_id: Uuid,
    pub status: String,
}

/// The event for a validated request: its id derived from the `Idempotency-Key` when
/// there is one, bound to the request's fingerprint in `recent_keys` (a key reused for a
/// different change is refused here), the effective date defaulted to today.
pub fn new_event(
    request: AddressChangeRequest,
    key: Option<&IdempotencyKey>,
    recent_keys: &RecentKeys,
) -> Result<AddressChanged, ApiError> {
    let event_id = idempotency::event_id(&request.customer_id, key);
    // Of the request as sent: a defaulted date would change at midnight, and a retry with it.
    let request_fingerprint = key.map(|_| idempotency::fingerprint(&request));
    if let Some(fingerprint) = &request_fingerprint {
        recent_keys.bind(event_id, fingerprint)?;
    }
    Ok(AddressChanged {
        event_id,
        occurred_at: OffsetDateTime::now_utc(),
        customer_id: request.customer_id,
        new_address: request.new_address,
        effective_date: request.effective_date.unwrap_or_else(EffectiveDate::today),
        request_fingerprint,
    })
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    _place: InFlight,
    Extension(trace): Extension<TraceContext>,
    key: Option<IdempotencyKey>,
    JsonBody(request): JsonBody<AddressChangeRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let event = new_event(request, key.as_ref(), &state.recent_keys)?;
    let message = EventMessage::address_changed(&event, APP_ID).with_trace_context(&trace);
    let routing_key = message.routing_key.clone();
    if let Err(error) = state.publisher.publish(message).await {
        tracing::warn!(event_id = %event.event_id, customer_id = %event.customer_id, %error, "Event not published.");
        return Err(error.into());
    }
    tracing::info!(event_id = %event.event_id, customer_id = %event.customer_id, routing_key, "Event published.");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            event_id: event.event_id,
            status: "queued".to_owned(),
        }),
    ))
}
