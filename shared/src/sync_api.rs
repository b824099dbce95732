//! The consumer's synchronous endpoint, `POST /api/v1/address-changes`, as both sides see
//! it. The consumer answers with these types and the producer's sync client reads them, so
//! the two cannot drift apart. The request body is the broker's message body
//! ([`crate::event::AddressChanged`]); errors have the usual [`crate::http::ErrorBody`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where the consumer takes changes over HTTP.
pub const PATH: &str = "/api/v1/address-changes";

/// The error code of the 422 for an event id the consumer applied before from a different
/// request (an `Idempotency-Key` reused for another change).
pub const KEY_REUSED_CODE: &str = "idempotency_key_reused";

/// The 201 or 200 body: the change is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecorded {
    pub event_id: Uuid,
    pub outcome: RecordedAs,
}

/// How the consumer's store recorded a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedAs {
    /// Recorded now, and it is the customer's current address (201).
    Updated,
    /// Recorded now, but a change that takes effect later stays current (201).
    Superseded,
    /// Recorded before: a redelivery or a client's retry; nothing changed (200).
    Duplicate,
}

impl RecordedAs {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Superseded => "superseded",
            Self::Duplicate => "duplicate",
        }
    }

    /// Whether this request recorded it (201), rather than an earlier one (200).
    pub fn is_new(self) -> bool {
        self != Self::Duplicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_written_as_its_name() {
        for outcome in [
            RecordedAs::Updated,
            RecordedAs::Superseded,
            RecordedAs::Duplicate,
        ] {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::json!(outcome.as_str())
            );
        }
    }
}
