//! Every way a request can fail, and the status and JSON body the client gets for each.

use crate::{consumer_client::SyncError, publisher::PublishError};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use shared::http::error_response;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed_json`: the body is not valid JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 400 `invalid_idempotency_key`: the header is present but unusable.
    #[error("the Idempotency-Key header {0}")]
    InvalidIdempotencyKey(&'static str),
    /// 413 `payload_too_large`: the body is over the limit; it was not read further.
    #[error("the body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// 415 `unsupported_media_type`: missing or non-JSON `Content-Type`.
    #[error("the Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 422 `validation_failed`: valid JSON, but a field is missing, unknown or invalid.
    #[error("{}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Validation {
        field: Option<String>,
        message: String,
    },
    /// 422 `idempotency_key_reused`: the Idempotency-Key was used before, for this customer,
    /// with a different request. Nothing was published.
    #[error(
        "this Idempotency-Key was already used for a different change of this customer's address; nothing was queued. A retry must repeat the first request exactly; a new change needs a new key"
    )]
    IdempotencyKeyReused,
    /// 503 `overloaded`, with `Retry-After`: `MAX_IN_FLIGHT_REQUESTS` are being handled.
    #[error("too many requests are in flight; try again shortly")]
    Overloaded,
    /// 503 `broker_unavailable`, `broker_blocked`, `publish_rejected`, `unroutable`,
    /// `publish_timeout` or `broker_error`, with `Retry-After`: nothing was accepted.
    #[error("the change was not queued: {0}")]
    Publish(#[from] PublishError),
    /// Synchronous path only. 503 `consumer_unavailable`, 504 `consumer_timeout` or 502
    /// `consumer_failed`: the consumer did not record the change, and the message says so.
    #[error(
        "The change was NOT recorded: {0}. Retry later; with the same Idempotency-Key a retry can never apply it twice."
    )]
    NotRecorded(SyncError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::InvalidIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            Self::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            Self::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::NotRecorded(SyncError::Unreachable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "consumer_unavailable")
            }
            Self::NotRecorded(SyncError::Timeout(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, "consumer_timeout")
            }
            Self::NotRecorded(SyncError::KeyReused) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            Self::NotRecorded(SyncError::Failed { .. }) => {
                (StatusCode::BAD_GATEWAY, "consumer_failed")
            }
            Self::Publish(error) => (
                StatusCode::SERVICE_UNAVAILABLE,
                match error {
                    PublishError::Unavailable => "broker_unavailable",
                    PublishError::Blocked(_) => "broker_blocked",
                    PublishError::Nacked => "publish_rejected",
                    PublishError::Unroutable { .. } => "unroutable",
                    PublishError::Timeout(_) => "publish_timeout",
                    PublishError::Broker(_) => "broker_error",
                },
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let field = match &self {
            Self::Validation { field, .. } => field.clone(),
            _ => None,
        };
        // A 503 gets `Retry-After` there.
        error_response(status, code, self.to_string(), field)
    }
}
