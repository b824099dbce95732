//! The synchronous path's HTTP client: hands an event straight to the consumer's
//! `POST /api/v1/address-changes` and waits for it to be recorded.
//!
//! It exists to show what the queue saves you from: the producer now depends on the
//! consumer being up, fast and healthy at the moment of the request, and on knowing its
//! address. When it is not, the change is not recorded and the client must retry.

use shared::{
    event::AddressChanged,
    http::ErrorBody,
    sync_api::{self, ChangeRecorded, KEY_REUSED_CODE},
};
use std::time::Duration;

/// Why the consumer did not record a change. Each becomes a 5xx whose message says so.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Nothing answered at `CONSUMER_URL` (down, wrong address): 503.
    #[error("the consumer at {url} cannot be reached ({reason})")]
    Unreachable { url: String, reason: String },
    /// It did not answer within `CONSUMER_TIMEOUT_MS` (overloaded, hung): 504.
    #[error("the consumer did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// It refused the change: its event id was applied before from a different request
    /// (an `Idempotency-Key` reused for another change): 422, as when the producer notices.
    #[error("the consumer applied this event id before, from a different request")]
    KeyReused,
    /// It answered with an error (its store failing, a bug): 502.
    #[error("the consumer failed with {status}: {message}")]
    Failed { status: u16, message: String },
}

/// Cheap to clone; keeps its connections to the consumer open between requests.
#[derive(Debug, Clone)]
pub struct ConsumerClient {
    http: reqwest::Client,
    endpoint: String,
    timeout: Duration,
}

impl ConsumerClient {
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::new(),
            endpoint: format!("{}{}", base_url.trim_end_matches('/'), sync_api::PATH),
            timeout,
        }
    }

    /// Sends `event` and waits, at most the timeout, for the consumer to record it.
    pub async fn record(&self, event: &AddressChanged) -> Result<ChangeRecorded, SyncError> {
        let response = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(event.to_json())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|error| self.classify(&error));
        }
        match response.json::<ErrorBody>().await {
            Ok(body) if body.error.code == KEY_REUSED_CODE => Err(SyncError::KeyReused),
            Ok(body) => Err(SyncError::Failed {
                status: status.as_u16(),
                message: body.error.message,
            }),
            Err(_) => Err(SyncError::Failed {
                status: status.as_u16(),
                message: "no details".to_owned(),
            }),
        }
    }

    fn classify(&self, error: &reqwest::Error) -> SyncError {
        if error.is_timeout() {
            SyncError::Timeout(self.timeout)
        } else {
            SyncError::Unreachable {
                url: self.endpoint.clone(),
                reason: std::error::Error::source(error)
                    .map_or_else(|| error.to_string(), ToString::to_string),
            }
        }
    }
}
